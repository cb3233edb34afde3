"""Where visible emotion is lost: stage 1's geometry or stage 2's texture (MEAD actors, FER2013 classifier).

    python benchmarks/emotion_oracle.py --media ../shared/media --output-dir /tmp/emotion_oracle [--model DIR]

For each MEAD actor of ``MEDIA/videos`` the middle frame of the neutral clip is the *photo*. Three renderings of
each level-3 emotion are scored against their own neutral rendering, as ``emotion_sheet.py`` scores portraits:

- ``real``: the actor's own clip (the ceiling, the instrument check of ``EMOTION.md``);
- ``oracle``: stage 2 alone, the photo driven by the actor's *real* landmarks of that clip (re-detected per
  frame, aligned to the photo on the rigid points): what the renderer can show given perfect geometry;
- ``model``: the whole pipeline on the photo (stage-1 emotion offsets, intensity 1, ``pose="still"``, the first
  2.5 s of the bundled demo speech), i.e. stage 1's geometry through the same renderer.

``real`` > ``oracle`` is the texture the renderer does not synthesize; ``oracle`` > ``model`` is geometry stage 1
does not produce. Writes ``oracle.md``, ``oracle.json`` and ``oracle_<actor>.png`` (rows: oracle, model; columns:
neutral and the six emotions). MEAD is internal media: keep the outputs out of the repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from emotalk_common.geometry import apply_affine, fit_similarity
from emotalk_common.topology import RIGID
from emotalk_common.video_io import read_frames
from emotalk_evaluation.expression import COMPARABLE_EMOTIONS, ExpressionClassifier, class_gains, relative_top1
from emotalk_evaluation.report import to_jsonable
from emotion_sheet import demo_speech, mead_clips  # the sibling script (benchmarks/ is on sys.path when run)

from modeling_emotalk.face_alignment import to_crop_landmarks

KINDS = ("real", "oracle", "model")


def sample_frames(path: Path, count: int) -> np.ndarray:
    """``count`` frames spread over the middle 70 % of a clip (its start and end are often at rest)."""
    frames = read_frames(path)[0]
    return frames[np.linspace(len(frames) * 0.15, len(frames) * 0.85 - 1, count).astype(int)]


def aligned_crop_landmarks(face_processor, frames: np.ndarray, face) -> np.ndarray:
    """Per-frame landmarks of ``frames`` in ``face``'s crop space, similarity-aligned to it on the rigid points."""
    anchor = face.image_landmarks.astype(np.float64)[list(RIGID), :2]
    out = []
    for frame in frames:
        points = face_processor.detect(frame)[0].astype(np.float64)
        matrix = fit_similarity(points[list(RIGID), :2], anchor)
        points[:, :2] = apply_affine(matrix, points)
        points[:, 2] *= np.sqrt(abs(np.linalg.det(matrix[:, :2])))
        out.append(to_crop_landmarks(points, face.matrix, face.crop_size))
    return np.stack(out).astype(np.float32)


@torch.inference_mode()
def oracle_frames(generator, face, driving: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Stage 2 on the photo's crop driven by ``driving`` ``(T, 478, 3)`` crop landmarks → ``(T, S, S, 3)`` uint8."""
    from emotalk_training.evaluate_holdout import reconstruct

    return reconstruct(generator, face.crop, face.landmarks, driving, batch_size)


def model_frames(pipe, photo: np.ndarray, emotion: str, audio: np.ndarray, count: int) -> np.ndarray:
    """The pipeline's aligned-crop render of ``emotion`` (still pose, no blinks or gaze), ``count`` frames of it."""
    video = pipe(
        photo,
        {"array": audio, "sampling_rate": 16000},
        emotion=emotion,
        pose="still",
        blink=False,
        gaze=False,
        seed=0,
        paste_back=False,
        progress=False,
    )
    return video.frames[np.linspace(0, video.num_frames - 1, count).astype(int)]


def measure_actor(pipe, classifier, paths: dict[str, Path], count: int, audio: np.ndarray) -> tuple[dict, dict]:
    """Gains per emotion and kind for one actor, and the mid frames of the oracle and model renders."""
    neutral = sample_frames(paths["neutral"], count)
    photo = neutral[count // 2]
    face = pipe.face_processor(photo)
    emotions = ["neutral", *(e for e in COMPARABLE_EMOTIONS if e in paths)]
    frames = {kind: {} for kind in KINDS}
    for emotion in emotions:
        real = neutral if emotion == "neutral" else sample_frames(paths[emotion], count)
        frames["real"][emotion] = real
        driving = aligned_crop_landmarks(pipe.face_processor, real, face)
        frames["oracle"][emotion] = oracle_frames(pipe.model.generator, face, driving)
        frames["model"][emotion] = model_frames(pipe, photo, emotion, audio, count)
    gains = {}
    for kind in KINDS:
        probs = {emotion: classifier.probabilities(f, static=True) for emotion, f in frames[kind].items()}
        for emotion in emotions[1:]:
            g = class_gains(probs[emotion], probs["neutral"])
            gains.setdefault(emotion, {})[kind] = {"gain": g[emotion], "relative_top": relative_top1(g)}
    mids = {kind: [frames[kind][e][count // 2] for e in emotions] for kind in ("oracle", "model")}
    return gains, mids


def summarize(results: dict) -> dict:
    """Mean gain and relative top-1 per kind over every actor and emotion."""
    summary = {}
    for kind in KINDS:
        cells = [(e, cell[kind]) for actor in results.values() for e, cell in actor.items()]
        summary[kind] = {
            "mean_gain": float(np.mean([c["gain"] for _, c in cells])),
            "relative_top1": float(np.mean([c["relative_top"] == e for e, c in cells])),
        }
    return summary


def markdown(results: dict, summary: dict) -> str:
    """The gains as a markdown table (bold: relative top-1 hit)."""
    lines = ["| actor | emotion | real | oracle (stage 2, real geometry) | model (stage 1 + 2) |", "| --- | --- | ---: | ---: | ---: |"]  # fmt: skip
    for actor, cells in results.items():
        for emotion, cell in cells.items():
            text = []
            for kind in KINDS:
                value, top = cell[kind]["gain"], cell[kind]["relative_top"]
                text.append(f"**{value:+.3f}**" if top == emotion else f"{value:+.3f} ({top})")
            lines.append(f"| {actor} | {emotion} | " + " | ".join(text) + " |")
    means = " | ".join(f"**{summary[k]['mean_gain']:+.3f}** / {summary[k]['relative_top1']:.2f}" for k in KINDS)
    lines.append(f"| all | mean gain / relative top-1 | {means} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, required=True, help="the development media folder (MEAD clips)")
    parser.add_argument("--model", help="model folder (default: the pipeline's embedded default)")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/emotion_oracle"))
    parser.add_argument("--frames", type=int, default=16, help="frames scored per clip and kind")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure every MEAD actor, write the table, the JSON and the frames."""
    import emotalk_pipeline
    from PIL import Image
    from transformers import pipeline

    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    pipe = pipeline("emotional-talking-face", model=args.model or str(emotalk_pipeline.DEFAULT_CHECKPOINT))
    classifier = ExpressionClassifier()
    audio = demo_speech(2.5)
    results = {}
    for actor, paths in mead_clips(args.media).items():
        results[actor], mids = measure_actor(pipe, classifier, paths, args.frames, audio)
        rows = [np.concatenate(mids[kind], axis=1) for kind in ("oracle", "model")]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.output_dir / f"oracle_{actor}.png")
    summary = summarize(results)
    (args.output_dir / "oracle.md").write_text(markdown(results, summary))
    (args.output_dir / "oracle.json").write_text(
        json.dumps(to_jsonable({"results": results, "summary": summary}), indent=2)
    )
    print(markdown(results, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
