"""Instrument check: does re-detecting the face mesh on a render follow the brow raise it was driven with?

    python benchmarks/brow_redetection.py --media ../shared/media [--model DIR] [--scales 0.5 1 2 3]

The strength calibration (``emotion_oracle.py --strength-output``) re-detects landmarks on rendered frames. This
script tests that instrument on its own: each MEAD actor's neutral frame is driven, through the pure warp (stage 2
untrained: the landmark warp of the photo, no learned texture), by the neutral stage-1 landmarks plus ``scale`` ×
a surprised offset — the model's (stage 1 at its calibrated strength, minus its neutral) and the actor's real one
(their level-3 clip's mean landmarks minus their neutral clip's, aligned to the photo) — and prints the mean
vertical brow motion driven and re-detected (crop units, negative = up) and their ratio. A linear instrument keeps
the ratio constant over the scales.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from emotalk_common.topology import LANDMARK_GROUPS
from emotion_oracle import aligned_crop_landmarks, oracle_frames, sample_frames  # sibling scripts
from emotion_sheet import demo_speech, mead_clips

from modeling_emotalk import EmoTalkGenerator

BROWS = list(LANDMARK_GROUPS["brows"])
FRAMES = 6


def brow_motion(moved: np.ndarray, rest: np.ndarray) -> float:
    """Mean vertical motion of the brow points from ``rest`` to ``moved`` ``(T, 478, 3)`` (negative = up)."""
    return float(moved[:, BROWS, 1].mean() - rest[:, BROWS, 1].mean())


def stage1_landmarks(pipe, photo: np.ndarray, emotion: str, audio: np.ndarray) -> np.ndarray:
    """``FRAMES`` driving frames of the pipeline's still-pose landmarks for ``emotion``."""
    video = pipe(photo, {"array": audio, "sampling_rate": 16000}, emotion=emotion, pose="still", blink=False,
                 gaze=False, seed=0, paste_back=False, progress=False)  # fmt: skip
    return video.landmarks[np.linspace(0, video.num_frames - 1, FRAMES).astype(int)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, required=True, help="the development media (its MEAD clips)")
    parser.add_argument("--model", default=None, help="model folder (default: the embedded default)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    args = parser.parse_args(argv)

    import emotalk_pipeline  # noqa: F401  (registers the task)
    from transformers import pipeline

    torch.manual_seed(0)
    pipe = pipeline("emotional-talking-face", model=args.model) if args.model else pipeline("emotional-talking-face")
    warp = EmoTalkGenerator(pipe.model.generator.config).eval()  # untrained: the pure landmark warp
    audio = demo_speech(2.5)
    print("| actor | offset | scale | driven | re-detected | ratio |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for actor, paths in mead_clips(args.media).items():
        neutral = sample_frames(paths["neutral"], FRAMES)
        photo = neutral[FRAMES // 2]
        face = pipe.face_processor(photo)
        rest = stage1_landmarks(pipe, photo, "neutral", audio)
        offsets = {
            "model": stage1_landmarks(pipe, photo, "surprised", audio) - rest,
            "real": (
                aligned_crop_landmarks(pipe.face_processor, sample_frames(paths["surprised"], FRAMES), face)
                - aligned_crop_landmarks(pipe.face_processor, neutral, face)
            ).mean(0, keepdims=True),
        }
        base = aligned_crop_landmarks(pipe.face_processor, oracle_frames(warp, face, rest), face)
        for name, offset in offsets.items():
            for scale in args.scales:
                driving = rest + scale * offset
                found = aligned_crop_landmarks(pipe.face_processor, oracle_frames(warp, face, driving), face)
                driven, seen = brow_motion(driving, rest), brow_motion(found, base)
                print(
                    f"| {actor} | {name} | {scale:g} | {driven:+.4f} | {seen:+.4f} | {seen / driven:.2f} |", flush=True
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
