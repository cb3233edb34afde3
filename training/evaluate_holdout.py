#!/usr/bin/env python
"""Before/after metrics on the held-out tail of a prepared dataset (``emotalk prepare --holdout-seconds N``).

    python training/evaluate_holdout.py --dataset_dir data/ \\
        --model before=<default composite> --model after=<fine-tuned composite> --output report.json

Two modes, both against the real held-out frames (aligned crops from the dataset):

- ``reconstruction`` — stage 2 alone: one reference frame from the training part of the same video and the
  held-out frames' own tracked landmarks as the driving landmarks (self-reenactment).
- ``audio`` — the whole pipeline: the reference frame as the photo and the held-out speech as the audio
  (``pipeline(..., paste_back=False, pose="still", seed=0)``), so stage 1 decides the motion.

Metrics come from the evaluation suite (``emotalk_evaluation``, the ``eval`` extra): PSNR and SSIM on
dlib-aligned 256² crops, M-LMD and F-LMD (dlib 68 points, pixels at 256 px).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True, help="a dataset prepared with --holdout-seconds")
    parser.add_argument(
        "--model", action="append", required=True, help="NAME=composite folder (repeatable), e.g. before=<dir>"
    )
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    parser.add_argument("--modes", default="reconstruction,audio", help="reconstruction, audio or both")
    parser.add_argument("--split", default="test", help="the held-out split (default test)")
    parser.add_argument("--reference_frame", type=int, default=0, help="frame of the training part used as the photo")
    parser.add_argument("--stride", type=int, default=2, help="evaluate every n-th held-out frame (reconstruction)")
    parser.add_argument("--audio_seconds", type=float, default=5.0, help="seconds of held-out speech (audio mode)")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args(argv)
    for mode in args.modes.split(","):
        if mode not in ("reconstruction", "audio"):
            parser.error(f"unknown mode {mode!r}: expected reconstruction and/or audio")
    if args.stride < 1:
        parser.error(f"--stride must be at least 1, got {args.stride}")
    return args


def _reference(reader, index: dict, clip: dict, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Crop, landmarks and (when the source video is readable) the original frame of the training part."""
    from emotalk_common.video_io import iter_frames
    from emotalk_training.data import select_clips

    train = [c for c in select_clips(index, "train") if c["video"] == clip["video"]] or select_clips(index, "train")
    if not train:
        raise ValueError("the dataset has no training clip to take the reference frame from")
    source_clip = train[0]
    frame = min(frame, source_clip["num_frames"] - 1)
    crop = reader.read(source_clip["shard"], "crops", slice(frame, frame + 1))[0]
    landmarks = reader.read(source_clip["shard"], "landmarks", slice(frame, frame + 1))[0]
    photo = None
    source = Path(source_clip.get("source", ""))
    if source.is_file():
        target = source_clip["start_frame"] + frame
        for number, image in enumerate(iter_frames(source, float(index["fps"]), pick="nearest")):
            if number == target:
                photo = image
                break
    return crop, landmarks.astype(np.float32), photo


@torch.no_grad()
def reconstruct(
    generator, crop: np.ndarray, landmarks: np.ndarray, driving: np.ndarray, batch_size: int
) -> np.ndarray:
    """Stage 2 driven by ``driving`` ``(T, 478, 3)`` from reference(s) → ``(T, S, S, 3)`` uint8.

    ``crop`` ``(S, S, 3)`` / ``landmarks`` ``(478, 3)`` is one reference; ``(K, S, S, 3)`` / ``(K, 478, 3)`` are K
    references of the same person, fused by the generator (the first one's landmarks drive the warp).
    """
    size = generator.config.image_size
    crops, marks = (crop, landmarks) if crop.ndim == 4 else (crop[None], landmarks[None])
    pixels = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    if pixels.shape[-1] != size:
        pixels = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
    source = generator.encode_source(pixels[None], torch.from_numpy(marks)[None])
    out = []
    for start in range(0, len(driving), batch_size):
        frames = generator(source=source, driving_landmarks=torch.from_numpy(driving[start : start + batch_size]))
        out.append((frames.frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
    return np.concatenate(out)


def main(args: argparse.Namespace) -> int:
    import emotalk_pipeline  # noqa: F401  (registers the task)
    from emotalk_evaluation.evaluate import reference_group
    from emotalk_training.data import ShardReader, select_clips
    from emotalk_training.prepare import load_index
    from transformers import pipeline

    from modeling_emotalk import EmoTalkModel

    index = load_index(args.dataset_dir)
    reader = ShardReader(args.dataset_dir)
    clips = select_clips(index, args.split, 2, False)
    if not clips:
        print(f"no {args.split!r} clip in {args.dataset_dir}: prepare it with --holdout-seconds", file=sys.stderr)
        return 1
    models = dict(item.split("=", 1) for item in args.model)
    modes = args.modes.split(",")
    fps = float(index["fps"])
    report: dict = {"dataset": str(args.dataset_dir), "clips": [c["id"] for c in clips], "results": {}}
    for name, folder in models.items():
        report["results"][name] = {}
        model = EmoTalkModel.from_pretrained(folder).eval()
        pipe = pipeline("emotional-talking-face", model=folder) if "audio" in modes else None
        for clip in clips:
            crop, landmarks, photo = _reference(reader, index, clip, args.reference_frame)
            truth_all = reader.read(clip["shard"], "crops")
            driving_all = reader.read(clip["shard"], "landmarks").astype(np.float32)
            if "reconstruction" in modes:
                started = time.perf_counter()
                picked = np.arange(0, clip["num_frames"], args.stride)
                frames = reconstruct(model.generator, crop, landmarks, driving_all[picked], args.batch_size)
                metrics = reference_group(frames, truth_all[picked])
                metrics["seconds"] = round(time.perf_counter() - started, 1)
                report["results"][name].setdefault("reconstruction", {})[clip["id"]] = metrics
            if "audio" in modes:
                started = time.perf_counter()
                count = min(clip["num_frames"], round(args.audio_seconds * fps))
                audio = reader.read(clip["shard"], "audio", slice(0, round(count / fps * 16000)))
                video = pipe(
                    photo if photo is not None else crop,
                    {"array": audio, "sampling_rate": 16000},
                    paste_back=False,
                    pose="still",
                    seed=0,
                    fps=fps,
                    progress=False,
                )
                frames = video.frames[:count]
                metrics = reference_group(frames, truth_all[: len(frames)])
                metrics["seconds"] = round(time.perf_counter() - started, 1)
                report["results"][name].setdefault("audio", {})[clip["id"]] = metrics
        print(f"{name}: {json.dumps(report['results'][name], default=float)}", flush=True)

    rows = [
        "| model | mode | PSNR ↑ | SSIM ↑ | M-LMD ↓ | F-LMD ↓ | frames |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, modes_result in report["results"].items():
        for mode, per_clip in modes_result.items():
            values = list(per_clip.values())
            mean = {key: float(np.mean([v[key] for v in values])) for key in ("psnr", "ssim", "m_lmd", "f_lmd")}
            rows.append(
                f"| {name} | {mode} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['m_lmd']:.2f} | "
                f"{mean['f_lmd']:.2f} | {sum(v['num_frames'] for v in values)} |"
            )
    report["table"] = "\n".join(rows)
    print(report["table"])
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
