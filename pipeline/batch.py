"""Batch mode: many (image, audio, emotion) jobs from a CSV or JSON-lines manifest.

Re-running skips outputs that already exist; a failing row is reported and the others go on. Under
``accelerate launch --num_processes N`` the rows are split across processes with accelerate's
``PartialState.split_between_processes``.
"""

from __future__ import annotations

import csv
import json
import traceback
from pathlib import Path
from typing import Any

from modeling_emotalk.errors import EmoTalkInputError

COLUMNS = ("image", "audio", "emotion", "intensity", "output")


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` (header: image,audio[,emotion,intensity,output]) or ``.jsonl`` manifest.

    Relative media paths are resolved against the manifest's folder; ``output`` defaults to
    ``<row number>_<image stem>.mp4``.
    """
    path = Path(path)
    if not path.is_file():
        raise EmoTalkInputError(f"manifest {str(path)!r} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise EmoTalkInputError(f"{path.name} line {number} is not valid JSON: {err}") from err
    else:
        raise EmoTalkInputError(f"the manifest must be a .csv or .jsonl file, got {path.name!r}")
    jobs = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("image") or not row.get("audio"):
            raise EmoTalkInputError(f"{path.name} row {number} needs 'image' and 'audio' columns, got {row!r}")
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise EmoTalkInputError(
                f"{path.name} row {number} has unknown columns {sorted(unknown)}; expected {COLUMNS}"
            )
        job = {"row": number, "image": str(path.parent / row["image"]), "audio": str(path.parent / row["audio"])}
        emotion = row.get("emotion") or "neutral"
        job["emotion"] = emotion.strip() if isinstance(emotion, str) else emotion
        job["intensity"] = float(row["intensity"]) if row.get("intensity") not in (None, "") else 1.0
        job["output"] = row.get("output") or f"{number:04d}_{Path(row['image']).stem}.mp4"
        jobs.append(job)
    return jobs


def process_state():
    """Accelerate's view of this process. Without CUDA, ``accelerate launch --multi_gpu --num_processes N`` gives
    N CPU processes (gloo), which ``PartialState`` only recognizes when asked for the CPU explicitly."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def run_manifest(pipe, manifest: str | Path, output_dir: str | Path, **call_kwargs) -> dict[str, list]:
    """Render every job not yet done; returns ``{"done": [...], "skipped": [...], "failed": [...]}`` for this process."""
    from .emotion import parse_emotion_string

    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise EmoTalkInputError(f"the output directory {str(output_dir)!r} does not exist: create it first")
    jobs = read_manifest(manifest)
    state = process_state()
    report: dict[str, list] = {"done": [], "skipped": [], "failed": []}
    with state.split_between_processes(jobs) as mine:
        for job in mine:
            target = output_dir / job["output"]
            if target.exists():
                report["skipped"].append(str(target))
                continue
            try:
                emotion = job["emotion"]
                emotion = parse_emotion_string(emotion) if isinstance(emotion, str) else emotion
                video = pipe(job["image"], job["audio"], emotion=emotion, intensity=job["intensity"], **call_kwargs)
                video.save(target)
                report["done"].append(str(target))
            except EmoTalkInputError as err:
                report["failed"].append({"row": job["row"], "output": str(target), "error": str(err)})
            except Exception as err:  # one broken row must not stop the others; keep the cause
                report["failed"].append(
                    {"row": job["row"], "output": str(target), "error": f"{type(err).__name__}: {err}",
                     "traceback": traceback.format_exc(limit=3)}
                )  # fmt: skip
    return report
