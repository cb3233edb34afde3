#!/usr/bin/env python
"""Stage 2 with one vs two reference photos on whole held-out clips (issue 16, item 4).

    python -m recipes.default_model.evaluate_references --dataset_dir outputs/stage2_data \
        --model pipeline/checkpoints/emotalk-default --max_frames 250 --output references.json

The protocol of ``evaluate_stage2.py`` (source = the clip's frame 0, driving = the clip's own tracked landmarks,
every ``--stride``-th frame scored, face PSNR/SSIM from the evaluation suite's ``reference_group``, mouth PSNR in
the widened lip box), rendered twice: with frame 0 alone, and with frame 0 plus the frame of the widest lip
opening in the first ``--search_seconds`` as a second reference (the first reference's landmarks drive the warp,
as in the pipeline's ``reference_images``). Frame 0 and the extra reference's frame are not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from emotalk_training.evaluate_holdout import reconstruct

from .evaluate_stage2 import load_generator, mouth_boxes, widest_mouth


def score(frames: np.ndarray, truth: np.ndarray, boxes: np.ndarray, picked: np.ndarray) -> dict:
    """Face PSNR/SSIM (``reference_group``) and mouth-box PSNR over the ``picked`` frames."""
    from emotalk_evaluation.evaluate import reference_group
    from emotalk_evaluation.image_metrics import psnr

    metrics = reference_group(frames[picked], truth[picked])
    mouth = []
    for i in picked:
        x0, y0, x1, y1 = boxes[i]
        mouth.append(min(psnr(frames[i, y0:y1, x0:x1], truth[i, y0:y1, x0:x1]), 100.0))
    return {
        "face_psnr": float(metrics["psnr"]),
        "face_ssim": float(metrics["ssim"]),
        "mouth_psnr": float(np.mean(mouth)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset_dir", required=True, help="a dataset prepared with the held-out clips as split=test"
    )
    parser.add_argument("--model", required=True, help="a composite EmoTalk folder or an emotalk_generator folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--max_frames", type=int, default=250, help="frames per clip (0: all; 250 = 10 s)")
    parser.add_argument("--search_seconds", type=float, default=3.0, help="where the widest mouth is looked for")
    parser.add_argument(
        "--clips", nargs="+", default=None, help="only the clips whose id contains one of these strings"
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    from emotalk_training.data import ShardReader, select_clips
    from emotalk_training.prepare import load_index

    torch.set_num_threads(1)
    index = load_index(args.dataset_dir)
    reader = ShardReader(args.dataset_dir)
    generator = load_generator(args.model)
    fps = float(index["fps"])
    report: dict = {"dataset": args.dataset_dir, "model": args.model, "clips": {}}
    clips = select_clips(index, args.split, 2, False)
    if args.clips:
        clips = [clip for clip in clips if any(part in clip["id"] for part in args.clips)]
    for clip in clips:
        truth = reader.read(clip["shard"], "crops")
        marks = reader.read(clip["shard"], "landmarks").astype(np.float32)
        if args.max_frames:
            truth, marks = truth[: args.max_frames], marks[: args.max_frames]
        extra = widest_mouth(marks, round(args.search_seconds * fps))
        picked = np.array([i for i in range(1, len(truth), args.stride) if i != extra])
        boxes = mouth_boxes(marks, truth.shape[1])
        entry = {"frames": len(truth), "scored": len(picked), "extra_reference_frame": extra}
        for name, refs in (("one", [0]), ("two", [0, extra])):
            frames = reconstruct(generator, truth[refs], marks[refs], marks, 8)
            entry[name] = score(frames, truth, boxes, picked)
        report["clips"][clip["id"]] = entry
        print(clip["id"], json.dumps(entry), flush=True)
    keys = ("face_psnr", "face_ssim", "mouth_psnr")
    clips = report["clips"].values()
    report["mean"] = {name: {k: float(np.mean([c[name][k] for c in clips])) for k in keys} for name in ("one", "two")}
    print(json.dumps(report["mean"], indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
