"""Speaker, emotion and intensity of a training video: from MEAD paths, CREMA-D names, a CSV, or defaults.

- MEAD: ``<actor>/video/front/<emotion>/level_<n>/<id>.mp4`` (and the flattened
  ``<actor>_front_<emotion>_level<n>_<id>.mp4`` that several repositories use). Levels 1–3 map to
  intensities 1/3, 2/3, 1; neutral clips get intensity 1 (neutral is a class of its own).
- CREMA-D: ``<actor>_<sentence>_<EMO>_<level>.<ext>`` with EMO in ANG DIS FEA HAP NEU SAD and level
  LO / MD / HI / XX (unspecified, mapped to the middle level).
- A CSV with a ``path`` column (relative to the input folder, or a file name) and any of ``speaker``,
  ``emotion``, ``intensity``, ``split``.
- Anything else is custom footage: speaker = the file's stem (or ``--speaker``), emotion "neutral" with
  ``emotion_known = False`` (the emotion-classification and supervised-contrastive losses skip it).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from emotalk_common.constants import EMOTION_LABELS as EMOTIONS

CREMAD_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgusted",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_LEVELS = {"LO": 1 / 3, "MD": 2 / 3, "HI": 1.0, "XX": 2 / 3}
MEAD_LEVELS = 3
SPLITS = ("train", "validation", "test")

_MEAD_PATH = re.compile(
    r"(?:^|/)(?P<actor>[MW]\d{3})/video/front/(?P<emotion>[a-z]+)/level_(?P<level>\d)/(?P<clip>[^/]+)$"
)
_MEAD_NAME = re.compile(
    r"(?:^|[/_])(?P<actor>[MW]\d{3})_front_(?P<emotion>[a-z]+)_level_?(?P<level>\d)(?:_(?P<clip>\w+))?$"
)
_CREMAD_NAME = re.compile(r"(?:^|/)(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


@dataclass
class ClipLabels:
    """What is known about the person and the emotion of a video."""

    speaker: str
    emotion: str = "neutral"
    emotion_known: bool = False
    intensity: float = 1.0
    source: str = "custom"  # mead | crema-d | csv | custom
    split: str | None = None  # forced split (from a CSV); None: decided by prepare

    def to_dict(self) -> dict:
        return asdict(self)


def _level_intensity(emotion: str, level: int) -> float:
    if emotion == "neutral":
        return 1.0
    return round(min(max(level, 1), MEAD_LEVELS) / MEAD_LEVELS, 4)


def parse_mead(path: str | Path) -> ClipLabels | None:
    """Labels from a MEAD path or flattened MEAD file name; None when ``path`` is not one."""
    text = str(path).replace("\\", "/")
    suffix = Path(text).suffix
    match = _MEAD_PATH.search(text) or _MEAD_NAME.search(text[: len(text) - len(suffix)])
    if match is None or match["emotion"] not in EMOTIONS:
        return None
    emotion = match["emotion"]
    return ClipLabels(
        speaker=match["actor"],
        emotion=emotion,
        emotion_known=True,
        intensity=_level_intensity(emotion, int(match["level"])),
        source="mead",
    )


def parse_cremad(path: str | Path) -> ClipLabels | None:
    """Labels from a CREMA-D file name (``1001_DFA_ANG_XX.flv``); None when ``path`` is not one."""
    stem = Path(str(path).replace("\\", "/")).stem
    match = _CREMAD_NAME.search(stem)
    if match is None or match["emotion"] not in CREMAD_EMOTIONS or match["level"] not in CREMAD_LEVELS:
        return None
    emotion = CREMAD_EMOTIONS[match["emotion"]]
    intensity = 1.0 if emotion == "neutral" else round(CREMAD_LEVELS[match["level"]], 4)
    return ClipLabels(
        speaker=match["actor"], emotion=emotion, emotion_known=True, intensity=intensity, source="crema-d"
    )


def _normalize_emotion(value: str, where: str) -> str:
    emotion = value.strip().lower()
    aliases = {"anger": "angry", "disgust": "disgusted", "fearful": "fear", "surprise": "surprised", "neu": "neutral"}
    emotion = aliases.get(emotion, emotion)
    if emotion.upper() in CREMAD_EMOTIONS:
        emotion = CREMAD_EMOTIONS[emotion.upper()]
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {value!r} in {where}: expected one of {', '.join(EMOTIONS)}")
    return emotion


def _parse_intensity(value: str, where: str) -> float:
    text = value.strip().lower()
    levels = {"lo": 1 / 3, "low": 1 / 3, "md": 2 / 3, "medium": 2 / 3, "hi": 1.0, "high": 1.0, "xx": 2 / 3}
    if text in levels:
        return round(levels[text], 4)
    if text.startswith("level_"):
        text = text[len("level_") :]
    try:
        number = float(text)
    except ValueError as err:
        raise ValueError(
            f"cannot read intensity {value!r} in {where}: expected a number in [0, 1] or a level"
        ) from err
    if number > 1 and float(number).is_integer() and number <= MEAD_LEVELS:
        number = number / MEAD_LEVELS  # a MEAD level 1..3
    if not (0.0 <= number <= 1.0) or math.isnan(number):
        raise ValueError(f"intensity {value!r} in {where} is out of range: expected a number in [0, 1] or a level 1-3")
    return round(number, 4)


def read_metadata_csv(path: str | Path) -> dict[str, dict[str, str]]:
    """Rows of a metadata CSV keyed by their ``path`` column (as written, with forward slashes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata CSV not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "path" not in fields:
            raise ValueError(f"{path} must have a 'path' column (and any of speaker, emotion, intensity, split)")
        rows = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row.get("path"):
                raise ValueError(f"{path}:{line}: empty 'path'")
            rows[row["path"].replace("\\", "/")] = row | {"_where": f"{path}:{line}"}
    return rows


def _csv_row(relative: str, rows: dict[str, dict[str, str]]) -> dict[str, str] | None:
    if relative in rows:
        return rows[relative]
    name = relative.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    for key in (name, stem):
        if key in rows:
            return rows[key]
    return None


def labels_for(
    relative_path: str,
    rows: dict[str, dict[str, str]] | None = None,
    speaker: str | None = None,
    emotion: str | None = None,
    intensity: float | None = None,
) -> ClipLabels:
    """Labels of one video (``relative_path`` inside the input folder): CSV row > MEAD > CREMA-D > custom.

    ``speaker`` / ``emotion`` / ``intensity`` (the command-line overrides) apply where the source does not say.
    """
    relative_path = relative_path.replace("\\", "/")
    labels = parse_mead(relative_path) or parse_cremad(relative_path)
    if labels is None:
        labels = ClipLabels(speaker=speaker or Path(relative_path).stem)
        if emotion is not None:
            labels.emotion, labels.emotion_known = _normalize_emotion(emotion, "--emotion"), True
        if intensity is not None:
            labels.intensity = float(intensity)
    row = _csv_row(relative_path, rows) if rows else None
    if row is not None:
        where = row["_where"]
        labels.source = "csv"
        if row.get("speaker"):
            labels.speaker = row["speaker"]
        if row.get("emotion"):
            labels.emotion, labels.emotion_known = _normalize_emotion(row["emotion"], where), True
        if row.get("intensity"):
            labels.intensity = _parse_intensity(row["intensity"], where)
        elif row.get("emotion"):
            labels.intensity = 1.0
        if row.get("split"):
            split = row["split"].lower()
            if split not in SPLITS:
                raise ValueError(f"unknown split {row['split']!r} in {where}: expected one of {', '.join(SPLITS)}")
            labels.split = split
    return labels


__all__ = ["ClipLabels", "labels_for", "parse_cremad", "parse_mead", "read_metadata_csv"]
