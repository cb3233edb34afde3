"""Checkpoint folders that the installed package loads: no copied modeling code, no ``auto_map``.

``save_pretrained`` of a model registered for the auto classes copies its modeling files and writes ``auto_map``
(Hub remote code). The embedded default and the folders the training and conversion scripts write are loaded
through the installed package instead (``conversion/export_to_hub.py`` adds remote code for the Hub).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

SUB_CONFIGS = ("landmark_config", "generator_config")


def strip_remote_code(folder: str | Path, sub_config_keys: Iterable[str] = ("auto_map",)) -> Path:
    """Delete the ``*.py`` files of ``folder`` and ``auto_map`` from its ``config.json``.

    ``sub_config_keys`` are removed from the stage sub-configs as well (e.g. ``_name_or_path`` and
    ``architectures`` too, so that no local path ends up in a shipped config).
    """
    folder = Path(folder)
    for code in folder.glob("*.py"):
        code.unlink()
    config_path = folder / "config.json"
    data = json.loads(config_path.read_text())
    data.pop("auto_map", None)
    keys = tuple(sub_config_keys)
    for sub in SUB_CONFIGS:
        if isinstance(data.get(sub), dict):
            for key in keys:
                data[sub].pop(key, None)
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return folder
