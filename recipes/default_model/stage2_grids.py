"""Side-by-side PNGs of held-out clips: source | warp only | trained | ground truth, plus mouth strips.

    python -m recipes.default_model.stage2_grids outputs/stage2_data outputs/stage2_grids \\
        outputs/warp_generator outputs/stage2_run2 W009 M030 PC-AVS d19 mouth_source DPE

Per ``test`` clip whose id contains one of the given names: a grid of four frames spread over the clip plus its
widest mouth opening, and a 2× strip of the mouth box over 8 consecutive frames around that opening (one row per
model, then the ground truth), which shows flicker.
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
    return widest


def main(argv: list[str] | None = None) -> int:
    """Write the PNGs of every matching held-out clip."""
    import torch
    from emotalk_training.data import ShardReader
    from emotalk_training.prepare import load_index

    args = parse_args(argv)
    torch.set_num_threads(1)
    index, reader = load_index(args.dataset), ShardReader(args.dataset)
    generators = [load_generator(args.warp), load_generator(args.trained)]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for clip in index["clips"]:
        if clip["split"] == "test" and any(name in clip["id"] for name in args.names):
            print(clip["id"], "widest frame", clip_grids(reader, clip, generators, output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
