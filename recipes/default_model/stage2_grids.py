"""Side-by-side PNGs of held-out clips: source | warp only | trained | ground truth, plus mouth and blink strips.

    python -m recipes.default_model.stage2_grids outputs/stage2_data outputs/stage2_grids \\
        outputs/warp_generator outputs/stage2_run2 W009 M030 PC-AVS d19 mouth_source DPE [--also outputs/other]

Per ``test`` clip whose id contains one of the given names: a grid of four frames spread over the clip plus its
widest mouth opening, a 2× strip of the mouth box over 8 consecutive frames around that opening and one of the
eyes over 8 frames around the most closed eyes (its blink, when it has one), one row per model (``--also`` adds
models after the trained one), then the ground truth; the strips show flicker and lid smears.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .evaluate_stage2 import load_generator, mouth_boxes, reconstruct, widest_mouth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The dataset, the output folder, the two generators and the clip-name filters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a prepared dataset with a test split")
    parser.add_argument("output", help="folder for the PNGs")
    parser.add_argument("warp", help="the untrained (pure warp) generator or composite folder")
    parser.add_argument("trained", help="the trained generator or composite folder")
    parser.add_argument("names", nargs="+", help="keep the test clips whose id contains one of these")
    parser.add_argument("--also", action="append", default=[], help="more generator or composite folders")
    return parser.parse_args(argv)


def clip_grids(reader, clip: dict, generators: list, output: Path) -> int:
    """Write the grid and the mouth strip of ``clip``; returns the frame of the widest opening."""
    from PIL import Image

    truth = reader.read(clip["shard"], "crops")
    marks = reader.read(clip["shard"], "landmarks").astype(np.float32)
    widest = widest_mouth(marks)
    picks = sorted({*np.linspace(1, len(truth) - 1, 4).round().astype(int).tolist(), widest})
    frames = [reconstruct(g, truth[0], marks[0], marks[picks]) for g in generators]
    rows = [np.concatenate([truth[0], *(f[k] for f in frames), truth[i]], axis=1) for k, i in enumerate(picks)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(output / f"{clip['id'][:40]}.png")
    sequence = list(range(max(1, widest - 4), min(len(truth), widest + 4)))
    x0, y0, x1, y1 = mouth_boxes(marks[[widest]], truth.shape[1])[0]
    series = [reconstruct(g, truth[0], marks[0], marks[sequence]) for g in generators] + [truth[sequence]]
    strip = np.concatenate(
        [np.concatenate([s[k, y0:y1, x0:x1] for k in range(len(sequence))], axis=1) for s in series], axis=0
    )
    image = Image.fromarray(strip)
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(output / f"{clip['id'][:40]}_mouth_seq.png")
    blink_strip(truth, marks, generators, output / f"{clip['id'][:40]}_blink_seq.png")
    return widest


def most_closed_eyes(landmarks: np.ndarray) -> int:
    """The frame (after the source) whose mean upper-to-lower eyelid distance is smallest."""
    from emotalk_training.data import openings

    return 1 + int(np.argmin(openings(landmarks)[1][1:]))


def blink_strip(truth: np.ndarray, marks: np.ndarray, generators: list, path: Path) -> int:
    """A 2× strip of both eyes over 8 frames around the most closed eyes; returns that frame."""
    from emotalk_common.topology import EYES, LEFT_EYEBROW, RIGHT_EYEBROW
    from PIL import Image

    closed = most_closed_eyes(marks)
    sequence = list(range(max(1, closed - 4), min(len(truth), closed + 4)))
    size = truth.shape[1]
    points = (marks[closed, list(EYES + LEFT_EYEBROW + RIGHT_EYEBROW), :2] + 1) * size / 2
    (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int) - 4, np.ceil(points.max(0)).astype(int) + 4
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    series = [reconstruct(g, truth[0], marks[0], marks[sequence]) for g in generators] + [truth[sequence]]
    rows = [np.concatenate([s[k, y0:y1, x0:x1] for k in range(len(sequence))], axis=1) for s in series]
    image = Image.fromarray(np.concatenate(rows, axis=0))
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(path)
    return closed


def main(argv: list[str] | None = None) -> int:
    """Write the PNGs of every matching held-out clip."""
    import torch
    from emotalk_training.data import ShardReader
    from emotalk_training.prepare import load_index

    args = parse_args(argv)
    torch.set_num_threads(1)
    index, reader = load_index(args.dataset), ShardReader(args.dataset)
    generators = [load_generator(folder) for folder in (args.warp, args.trained, *args.also)]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for clip in index["clips"]:
        if clip["split"] == "test" and any(name in clip["id"] for name in args.names):
            print(clip["id"], "widest frame", clip_grids(reader, clip, generators, output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
