"""Side-by-side PNGs (source | warp only | trained | ground truth) of held-out clips, plus a 2x mouth strip at the
widest opening and a flicker strip (mouth box of 8 consecutive frames around it)."""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from emotalk_training.data import ShardReader
from emotalk_training.prepare import load_index
from evaluate_stage2 import load_generator, mouth_boxes, reconstruct

dataset, out, warp_dir, trained_dir, *names = sys.argv[1:]
torch.set_num_threads(1)
index, reader = load_index(dataset), ShardReader(dataset)
gens = [load_generator(warp_dir), load_generator(trained_dir)]
out = Path(out)
out.mkdir(parents=True, exist_ok=True)
for clip in index["clips"]:
    if clip["split"] != "test" or not any(n in clip["id"] for n in names):
        continue
    truth = reader.read(clip["shard"], "crops")
    marks = reader.read(clip["shard"], "landmarks").astype(np.float32)
    aperture = np.linalg.norm(marks[:, 13, :2] - marks[:, 14, :2], axis=-1)
    widest = int(aperture.argmax())
    picks = sorted(set([*np.linspace(1, len(truth) - 1, 4).round().astype(int).tolist(), widest]))
    frames = [reconstruct(g, truth[0], marks[0], marks[picks]) for g in gens]
    rows = [np.concatenate([truth[0], frames[0][k], frames[1][k], truth[i]], axis=1) for k, i in enumerate(picks)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / f"{clip['id'][:40]}.png")
    seq = list(range(max(1, widest - 4), min(len(truth), widest + 4)))
    x0, y0, x1, y1 = mouth_boxes(marks[[widest]], truth.shape[1])[0]
    seqs = [reconstruct(g, truth[0], marks[0], marks[seq]) for g in gens] + [truth[seq]]
    strip = np.concatenate(
        [np.concatenate([s[k, y0:y1, x0:x1] for k in range(len(seq))], axis=1) for s in seqs], axis=0
    )
    im = Image.fromarray(strip)
    im.resize((im.width * 2, im.height * 2), Image.NEAREST).save(out / f"{clip['id'][:40]}_mouth_seq.png")
    print(clip["id"], "widest frame", widest, "picks", picks)
