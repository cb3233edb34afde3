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

**Strength calibration** (``--strength-output FILE``). The landmarks are re-detected on the ``oracle`` and ``model``
renders too, and each emotion's mean offset from its neutral rendering (brows, eyelids and mouth corners, x and y,
in crop units) is projected on the real clip's offset: ``ratio = Σ <rendered, real> / Σ |real|²`` over the actors.
``oracle`` says how much of the real motion the renderer carries, ``model`` how far intensity 1 moves the rendered
face against MEAD level 3. Stage 1 is close to linear in the emotion weight (``benchmarks/EMOTION.md``), so the
strength that makes the rendered motion equal level 3's is ``current strength / ratio``, kept within [1, 2] (beyond
2 the smile turns into a grin and the brows fold on the development portraits), and only where the rendered motion
goes the real way (pooled cosine ≥ 0.6; elsewhere more of it looks no more like the emotion: 1). FILE gets
``{"emotion_strength": {...}}`` for ``EmoTalkConfig.emotion_strength``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from emotalk_common.geometry import apply_affine, fit_similarity
from emotalk_common.topology import LANDMARK_GROUPS, MOUTH_CORNERS, RIGID
from emotalk_common.video_io import read_frames
from emotalk_evaluation.expression import COMPARABLE_EMOTIONS, ExpressionClassifier, class_gains, relative_top1
from emotalk_evaluation.report import to_jsonable
from emotion_sheet import demo_speech, mead_clips  # the sibling script (benchmarks/ is on sys.path when run)

from modeling_emotalk.face_alignment import to_crop_landmarks

KINDS = ("real", "oracle", "model")
RENDERED = ("oracle", "model")
EXPRESSION_POINTS = sorted(set(LANDMARK_GROUPS["brows"]) | set(LANDMARK_GROUPS["eyes"]) | set(MOUTH_CORNERS))
"""Where an emotion shows in the geometry and speech moves little: brows, eyelids, mouth corners."""
STRENGTH_RANGE = (1.0, 2.0)
MIN_COSINE = 0.6


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


def measure_actor(pipe, classifier, paths: dict[str, Path], count: int, audio: np.ndarray) -> tuple[dict, dict, dict]:
    """Gains per emotion and kind for one actor, its expression geometry, and the mid frames of the two renders."""
    neutral = sample_frames(paths["neutral"], count)
    photo = neutral[count // 2]
    face = pipe.face_processor(photo)
    emotions = ["neutral", *(e for e in COMPARABLE_EMOTIONS if e in paths)]
    frames = {kind: {} for kind in KINDS}
    real_landmarks = {}  # the oracle's driving landmarks, also the real side of the geometry
    for emotion in emotions:
        real = neutral if emotion == "neutral" else sample_frames(paths[emotion], count)
        frames["real"][emotion] = real
        real_landmarks[emotion] = aligned_crop_landmarks(pipe.face_processor, real, face)
        frames["oracle"][emotion] = oracle_frames(pipe.model.generator, face, real_landmarks[emotion])
        frames["model"][emotion] = model_frames(pipe, photo, emotion, audio, count)
    geometry = expression_geometry(pipe.face_processor, face, frames, real_landmarks)
    gains = {}
    for kind in KINDS:
        probs = {emotion: classifier.probabilities(f, static=True) for emotion, f in frames[kind].items()}
        for emotion in emotions[1:]:
            g = class_gains(probs[emotion], probs["neutral"])
            gains.setdefault(emotion, {})[kind] = {"gain": g[emotion], "relative_top": relative_top1(g)}
    mids = {kind: [frames[kind][e][count // 2] for e in emotions] for kind in RENDERED}
    return gains, geometry, mids


def expression_geometry(face_processor, face, frames: dict, real_landmarks: dict[str, np.ndarray]) -> dict:
    """Per emotion: ``{"real_sq": |real|², kind: <rendered, real>, kind + "_sq": |rendered|²}`` of the mean expression
    offsets (see module doc); ``real_landmarks`` ``{emotion: (T, 478, 3)}`` (neutral first), the renders' are
    re-detected here."""
    emotions = list(real_landmarks)
    means = {"real": {e: real_landmarks[e].mean(0) for e in emotions}} | {
        kind: {e: aligned_crop_landmarks(face_processor, frames[kind][e], face).mean(0) for e in emotions}
        for kind in RENDERED
    }
    offset = {
        kind: {e: (m[e] - m["neutral"])[EXPRESSION_POINTS, :2] for e in emotions[1:]} for kind, m in means.items()
    }
    return {
        e: {"real_sq": float((offset["real"][e] ** 2).sum())}
        | {kind: float((offset[kind][e] * offset["real"][e]).sum()) for kind in RENDERED}
        | {f"{kind}_sq": float((offset[kind][e] ** 2).sum()) for kind in RENDERED}
        for e in emotions[1:]
    }


def strength_ratios(geometry: dict) -> dict:
    """``{kind: {emotion: Σ <rendered, real> / Σ |real|²}}`` over the actors, and ``{kind + "_cosine": {emotion: ...}}``
    (the pooled cosine of the rendered and real offsets: how much of the rendered motion goes the real way)."""
    emotions = sorted({e for actor in geometry.values() for e in actor})
    ratios = {}
    for kind in RENDERED:
        for e in emotions:
            cells = [actor[e] for actor in geometry.values() if e in actor]
            dot, real, rendered = (sum(c[key] for c in cells) for key in (kind, "real_sq", f"{kind}_sq"))
            ratios.setdefault(kind, {})[e] = dot / max(real, 1e-12)
            ratios.setdefault(f"{kind}_cosine", {})[e] = dot / max(np.sqrt(real * rendered), 1e-12)
    return ratios


def calibrated_strength(ratios: dict, current: dict[str, float]) -> dict[str, float]:
    """The strength per emotion that makes the model's rendered motion equal MEAD level 3's (module doc), from
    :func:`strength_ratios` measured with the ``current`` strengths."""
    low, high = STRENGTH_RANGE
    out = {}
    for emotion, ratio in ratios["model"].items():
        aligned = ratio > 0 and ratios["model_cosine"][emotion] >= MIN_COSINE
        out[emotion] = round(float(np.clip(current.get(emotion, 1.0) / ratio, low, high)) if aligned else low, 2)
    return out


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
    parser.add_argument("--strength-output", type=Path, help="write the calibrated emotion_strength JSON here")
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
    results, geometry = {}, {}
    for actor, paths in mead_clips(args.media).items():
        results[actor], geometry[actor], mids = measure_actor(pipe, classifier, paths, args.frames, audio)
        rows = [np.concatenate(mids[kind], axis=1) for kind in RENDERED]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.output_dir / f"oracle_{actor}.png")
    summary = summarize(results)
    ratios = strength_ratios(geometry)
    current = dict(zip(pipe.emotion_labels, pipe.model.config.emotion_strength_vector(), strict=True))
    strength = calibrated_strength(ratios, current)
    text = markdown(results, summary) + "\n" + ratio_markdown(ratios, current, strength)
    (args.output_dir / "oracle.md").write_text(text)
    report = {"results": results, "summary": summary, "geometry": geometry, "ratios": ratios, "strength": strength}
    (args.output_dir / "oracle.json").write_text(json.dumps(to_jsonable(report), indent=2))
    if args.strength_output:
        args.strength_output.write_text(json.dumps({"emotion_strength": strength}, indent=2) + "\n")
    print(text)
    return 0


def ratio_markdown(ratios: dict, current: dict[str, float], strength: dict[str, float]) -> str:
    """The rendered-over-real motion ratios and the calibrated strength as a markdown table."""
    lines = ["| emotion | oracle: rendered / real motion (cosine) | model: rendered / real motion (cosine) | strength now → calibrated |"]  # fmt: skip
    lines.append("| --- | ---: | ---: | ---: |")
    for e in ratios["model"]:
        oracle, model = (f"{ratios[k][e]:.2f} ({ratios[k + '_cosine'][e]:.2f})" for k in RENDERED)
        lines.append(f"| {e} | {oracle} | {model} | {current.get(e, 1.0):.2f} → {strength[e]:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
