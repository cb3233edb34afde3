#!/usr/bin/env python
"""What the generator paints inside a mouth that opens wider than the source's, measured on training video.

    python -m recipes.default_model.mouth_interior_prior --dataset_dir outputs/stage2_emotion/data2 --output prior.json

Per distinct training video of a prepared dataset: up to ``--frames`` frames among its more open half of mouths
(inner-lip gap, points 13–14). Printed (and written to ``--output``):

- ``mouth_prior`` (for ``mouth_interior="prior"``): each frame's interior read into a texture in the mouth's own
  coordinates (``warp.mouth_texture_grid``: corner to corner, upper inner lip to lower), averaged per opening
  (widest gap over width; each frame shared linearly between the two nearest ``--openings``), with the mean lip
  colour of the same frames (``warp.lip_color``), by which the generator divides the source's lip colour;
- ``cavity_color`` (for ``mouth_interior="rigid"``): the median over the videos of the mean colour inside the
  inner-lip contour (eroded by one pixel, so no lip), and the pixel-weighted mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

DEFAULT_OPENINGS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


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


def interior_textures(
    crops: np.ndarray, landmarks: np.ndarray, rows: int, columns: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mouth interiors of ``crops`` (uint8 ``(T, S, S, 3)``) as ``(T, 3, rows, columns)`` textures, their
    openings ``(T,)`` and lip colours ``(T, 3)``, with the generator's own geometry."""
    from emotalk_common import topology as L

    from modeling_emotalk.warp import lip_color, mouth_coordinates, mouth_texture_grid

    upper, lower = torch.tensor(L.LIPS_INNER_UPPER), torch.tensor(L.LIPS_INNER_LOWER)
    points = torch.from_numpy(np.ascontiguousarray(landmarks[..., :2], dtype=np.float32))
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    grid = mouth_texture_grid(points, upper, lower, rows, columns)
    textures = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    _, opening = mouth_coordinates(points, upper, lower, 64)
    outer = torch.tensor(L.LIPS_OUTER_UPPER + L.LIPS_OUTER_LOWER)
    inner = torch.tensor(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER)
    return textures, opening, lip_color(images, points, outer, inner)


def fit_prior(textures: torch.Tensor, opening: torch.Tensor, lips: torch.Tensor, openings: tuple[float, ...]) -> dict:
    """``EmoTalkGeneratorConfig.mouth_prior`` from interiors ``(T, 3, V, U)``, openings ``(T,)``, lip colours."""
    from modeling_emotalk.warp import opening_weights

    centres = torch.tensor(openings, dtype=torch.float32)
    weights = opening_weights(opening, centres)
    if (weights.sum(0) == 0).any():
        raise ValueError(f"no frame near the openings {openings}; weights {weights.sum(0).tolist()}")
    texture = torch.einsum("to,tchw->ochw", weights, textures) / weights.sum(0)[:, None, None, None]
    return {
        "openings": [round(float(c), 3) for c in centres],
        "texture": np.round(texture.clamp(0, 1).numpy(), 3).tolist(),
        "lip_color": [round(float(c), 3) for c in lips.mean(0)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True, help="a folder written by `emotalk prepare`")
    parser.add_argument("--split", default="train")
    parser.add_argument("--frames", type=int, default=40, help="open-mouth frames per video")
    parser.add_argument("--rows", type=int, default=8, help="texture rows (upper inner lip to lower)")
    parser.add_argument("--columns", type=int, default=12, help="texture columns (corner to corner)")
    parser.add_argument("--openings", type=float, nargs="+", default=list(DEFAULT_OPENINGS))
    parser.add_argument("--output", help="write the JSON here too")
    args = parser.parse_args(argv)

    from emotalk_training.data import GeneratorPairDataset

    data = GeneratorPairDataset(args.dataset_dir, image_size=256, split=args.split)
    per_video, total, count, seen = [], np.zeros(3), 0, set()
    textures, opening, lips = [], [], []
    for clip in data.clips:
        if clip["video"] in seen:
            continue
        seen.add(clip["video"])
        gaps = data.lip_gap(clip)
        frames = np.flatnonzero(gaps >= np.quantile(gaps, 0.5))
        frames = np.unique(frames[np.linspace(0, len(frames) - 1, min(args.frames, len(frames))).astype(int)])
        crops = data.reader.read(clip["shard"], "crops", frames)
        landmarks = data.reader.read(clip["shard"], "landmarks", frames)
        colors, pixels = interior_color(crops, landmarks)
        if pixels:
            per_video.append(colors / pixels)
            total, count = total + colors, count + pixels
        for store, value in zip(
            (textures, opening, lips), interior_textures(crops, landmarks, args.rows, args.columns), strict=True
        ):
            store.append(value)
    textures, opening, lips = torch.cat(textures), torch.cat(opening), torch.cat(lips)
    keep = torch.isfinite(opening) & torch.isfinite(textures).flatten(1).all(1)
    result = {
        "videos": len(per_video),
        "frames": int(keep.sum()),
        "cavity_color": {
            "median_of_videos": np.round(np.median(per_video, axis=0), 3).tolist(),
            "pixel_mean": np.round(total / max(count, 1), 3).tolist(),
        },
        "mouth_prior": fit_prior(textures[keep], opening[keep], lips[keep], tuple(args.openings)),
    }
    text = json.dumps(result)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(json.dumps({**result, "mouth_prior": {k: v for k, v in result["mouth_prior"].items() if k != "texture"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
