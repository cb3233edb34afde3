#!/usr/bin/env python
"""The cavity colour of ``mouth_interior="rigid"``: the median over clips of the mean colour inside open mouths.

    python -m recipes.default_model.mouth_interior_color --dataset_dir outputs/stage2_emotion/data2

Per distinct training video of a prepared dataset: up to 10 frames among its most open quarter of mouths
(inner-lip gap, points 13–14), the pixels inside the inner-lip contour (eroded by one pixel, so no lip), their
mean RGB in [0, 1]; printed: the median over the videos (what the generator's ``cavity_color`` default is) and the
pixel-weighted mean.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def interior_color(crops: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, int]:
    """Sum of the RGB values inside the inner-lip contours of ``crops`` (uint8 ``(T, S, S, 3)``) and their count."""
    import cv2
    from emotalk_common.topology import LIPS_INNER_LOWER, LIPS_INNER_UPPER

    size = crops.shape[1]
    total, count = np.zeros(3), 0
    for image, points in zip(crops, landmarks, strict=True):
        contour = points[list(LIPS_INNER_UPPER) + list(LIPS_INNER_LOWER[::-1]), :2]
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [((contour + 1) * size / 2).astype(np.int32)], 1)
        pixels = image[cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0]
        total += pixels.sum(0)
        count += len(pixels)
    return total / 255.0, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True, help="a folder written by `emotalk prepare`")
    parser.add_argument("--split", default="train")
    parser.add_argument("--frames", type=int, default=10, help="open-mouth frames per video")
    args = parser.parse_args(argv)

    from emotalk_training.data import GeneratorPairDataset

    data = GeneratorPairDataset(args.dataset_dir, image_size=256, split=args.split)
    per_video, total, count, seen = [], np.zeros(3), 0, set()
    for clip in data.clips:
        if clip["video"] in seen:
            continue
        seen.add(clip["video"])
        gaps = data.lip_gap(clip)
        frames = np.flatnonzero(gaps >= np.quantile(gaps, 0.75))
        frames = frames[np.linspace(0, len(frames) - 1, min(args.frames, len(frames))).astype(int)]
        colors, pixels = interior_color(
            data.reader.read(clip["shard"], "crops", frames), data.reader.read(clip["shard"], "landmarks", frames)
        )
        if pixels:
            per_video.append(colors / pixels)
            total, count = total + colors, count + pixels
    result = {
        "videos": len(per_video),
        "median_of_videos": np.round(np.median(per_video, axis=0), 3).tolist(),
        "pixel_mean": np.round(total / max(count, 1), 3).tolist(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
