#!/usr/bin/env python
"""Stage-2 acceptance on whole held-out clips: source = the clip's first frame, driving = its tracked landmarks.

    python -m recipes.default_model.evaluate_stage2 --dataset_dir outputs/stage2_data \
        --model warp=pipeline/checkpoints/emotalk-default --model trained=outputs/stage2_final \
        --output outputs/stage2_eval.json --grids outputs/stage2_grids

--model NAME=folder: a composite EmoTalk folder or an emotalk_generator (save_pretrained) folder.

Per clip and model: the evaluation suite's reference group (PSNR / SSIM on dlib-aligned 256² face crops, M-LMD /
F-LMD by re-detecting dlib 68 points on the generated frames), PSNR / SSIM in the mouth box (the ground truth's
MediaPipe lip points in the dataset crop, widened by 40 % — the generated frames are pixel-registered with the
ground-truth crop), the identity stand-in (dlib embedding cosine of 16 frames vs the source frame) and the
rigid-landmark jitter (MediaPipe tracked on the generated frames) and the suite's mouth sharpness (Laplacian
variance of the tracked mouth crops, every frame) next to the ground-truth clip's, and how far the lids close at
the clip's blinks: the eye aspect ratio re-detected on the generated frames where the real clip's is lowest (its
most closed 5 % of frames; the real clip's own value beside it) and ``blink_eye_psnr``, the PSNR of the eyes' box
(both eyes and brows) on those of them where the real eyes are closed (EAR below 0.15; none in a clip that does not
blink), where the lids have to close over the source's open eyes. ``open_mouth_psnr``: the mouth PSNR over the
frames among the clip's most open quarter of mouths (inner-lip gap), where the mouth's interior has to be drawn.
``--source closed`` takes the clip's most closed mouth as the reference instead of its first frame (how a portrait
with closed lips is made to speak: the teeth cannot be copied from it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from emotalk_common import topology as T

LIPS = sorted({61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
               78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415})  # fmt: skip


def load_generator(folder: str):
    """The generator of a composite EmoTalk folder or of an ``emotalk_generator`` (save_pretrained) folder."""
    from emotalk_training.utils import load_stage

    return load_stage(folder, "generator").eval()


def reconstruct(generator, crop, landmarks, driving, batch_size=8):
    """``evaluate_holdout.reconstruct``, resized back to the crop's size when the generator's differs."""
    from emotalk_training.evaluate_holdout import reconstruct as render

    out = render(generator, crop, landmarks, driving, batch_size)
    if out.shape[1] != crop.shape[0]:
        t = torch.from_numpy(out).permute(0, 3, 1, 2).float()
        t = torch.nn.functional.interpolate(t, size=crop.shape[:2], mode="bilinear", antialias=True)
        out = t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def widest_mouth(landmarks: np.ndarray, frames: int | None = None) -> int:
    """The frame (among the first ``frames``, default all) with the largest inner-lip aperture (points 13-14)."""
    aperture = np.linalg.norm(landmarks[:frames, 13, :2] - landmarks[:frames, 14, :2], axis=-1)
    return int(aperture.argmax())


def landmark_boxes(
    landmarks: np.ndarray, index: list[int], size: int, widen: float, min_half: float = 0.0
) -> np.ndarray:
    """(T, 4) integer boxes x0, y0, x1, y1 around the points ``index`` (normalized crop coordinates → pixels),
    widened by ``widen`` and at least ``min_half`` pixels from the centre to each side."""
    pts = (landmarks[:, index, :2] + 1) * size / 2
    lo, hi = pts.min(1), pts.max(1)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2 * (1 + widen), min_half)
    box = np.concatenate([centre - half, centre + half], axis=1)
    return np.clip(np.round(box), 0, size).astype(int)


def mouth_boxes(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(T, 4) boxes around the lips, widened by 40 % (at least 12 px to each side)."""
    return landmark_boxes(landmarks, LIPS, size, 0.4, 12)


EYES = sorted({*T.EYES, *T.RIGHT_EYE_CORNERS, *T.LEFT_EYE_CORNERS, *T.RIGHT_EYEBROW, *T.LEFT_EYEBROW})
"""Both eyes' lids and corners and both brows: the box of ``blink_eye_psnr``."""


BLINK_FRACTION = 0.05  # the real clip's most closed 5 % of frames (its blinks, when it has any)
CLOSED_EAR = 0.15  # below this eye aspect ratio the real eyes are closed (open eyes: 0.2-0.35)


def blink_frames(truth_ear: np.ndarray) -> np.ndarray:
    """The frames (after the source) where the real clip's eye aspect ratio is among its lowest 5 %."""
    ear = np.asarray(truth_ear, dtype=np.float64)
    found = np.flatnonzero(np.isfinite(ear) & (np.arange(len(ear)) > 0))
    count = int(np.ceil(BLINK_FRACTION * len(found)))
    return np.sort(found[np.argsort(ear[found], kind="stable")[:count]])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument(
        "--max_frames", type=int, default=0, help="evaluate at most this many frames per clip (0: all)"
    )
    parser.add_argument(
        "--clips", nargs="+", default=None, help="only the clips whose id contains one of these strings"
    )
    parser.add_argument(
        "--source",
        choices=("first", "closed"),
        default="first",
        help="the reference: the clip's first frame, or its most closed mouth (a closed-mouth portrait made to speak)",
    )
    parser.add_argument("--output", default=None)
    parser.add_argument("--grids", default=None, help="folder for side-by-side PNGs source | models... | ground truth")
    parser.add_argument("--grid_frames", type=int, default=6)
    args = parser.parse_args()

    from emotalk_evaluation.evaluate import identity_group, reference_group
    from emotalk_evaluation.image_metrics import psnr, ssim
    from emotalk_evaluation.mesh import track_mesh
    from emotalk_evaluation.motion import eye_aspect_ratio, rigid_jitter
    from emotalk_evaluation.sharpness import mouth_sharpness
    from emotalk_training.data import ShardReader, openings, select_clips
    from emotalk_training.prepare import load_index
    from PIL import Image

    torch.set_num_threads(1)
    index = load_index(args.dataset_dir)
    reader = ShardReader(args.dataset_dir)
    clips = select_clips(index, args.split, 2, False)
    if args.clips:
        clips = [clip for clip in clips if any(part in clip["id"] for part in args.clips)]
    models = dict(item.split("=", 1) for item in args.model)
    generators = {name: load_generator(folder) for name, folder in models.items()}
    report = {"dataset": args.dataset_dir, "source": args.source, "models": models, "clips": {}, "mean": {}}
    for clip in clips:
        started = time.perf_counter()
        truth = reader.read(clip["shard"], "crops")
        marks = reader.read(clip["shard"], "landmarks").astype(np.float32)
        if args.max_frames:
            truth, marks = truth[: args.max_frames], marks[: args.max_frames]
        size = truth.shape[1]
        lip_gap = openings(marks)[0]
        first = int(np.argmin(lip_gap)) if args.source == "closed" else 0
        source, source_marks = truth[first], marks[first]
        gt_mesh = track_mesh(truth)
        entry = {"video": clip["video"], "frames": len(truth), "gt_jitter_pct_iod": rigid_jitter(gt_mesh),
                 "gt_mouth_sharpness": mouth_sharpness(truth, gt_mesh)}  # fmt: skip
        gt_ear = eye_aspect_ratio(gt_mesh)
        blinks = blink_frames(gt_ear)
        entry["gt_blink_ear"] = float(np.nanmean(gt_ear[blinks]))
        entry["closed_eye_frames"] = int((gt_ear[blinks] < CLOSED_EAR).sum())  # those blink_eye_psnr scores
        boxes = mouth_boxes(marks, size)
        eye_boxes = landmark_boxes(marks, EYES, size, 0.15)
        picked = np.arange(1, len(truth), args.stride)
        picked = picked[picked != first]  # not the source itself (frame 0 by default)
        wide = lip_gap[picked] >= np.quantile(lip_gap, 0.75)  # the clip's most open quarter of mouths
        outputs = {}
        for name, generator in generators.items():
            frames = reconstruct(generator, source, source_marks, marks)
            outputs[name] = frames
            metrics = reference_group(frames[picked], truth[picked])
            mp, ms = [], []
            for i in picked:
                x0, y0, x1, y1 = boxes[i]
                a, b = frames[i, y0:y1, x0:x1], truth[i, y0:y1, x0:x1]
                mp.append(min(psnr(a, b), 100.0))
                ms.append(ssim(a, b))
            metrics["mouth_psnr"] = float(np.mean(mp))
            metrics["mouth_ssim"] = float(np.mean(ms))
            metrics["open_mouth_psnr"] = float(np.mean(np.asarray(mp)[wide])) if wide.any() else float("nan")
            ident = identity_group(np.delete(frames, first, axis=0), source)
            metrics["identity_cos_mean"] = ident.get("csim_mean")
            metrics["identity_cos_min"] = ident.get("csim_min")
            mesh = track_mesh(frames)
            metrics["jitter_pct_iod"] = rigid_jitter(mesh)
            metrics["mouth_sharpness"] = mouth_sharpness(frames, mesh)
            metrics["blink_ear"] = float(np.nanmean(eye_aspect_ratio(mesh)[blinks]))
            eye_psnr = []
            for i in blinks[gt_ear[blinks] < CLOSED_EAR]:
                x0, y0, x1, y1 = eye_boxes[i]
                eye_psnr.append(min(psnr(frames[i, y0:y1, x0:x1], truth[i, y0:y1, x0:x1]), 100.0))
            metrics["blink_eye_psnr"] = float(np.mean(eye_psnr)) if eye_psnr else float("nan")
            entry[name] = {k: v for k, v in metrics.items() if not isinstance(v, str)}
        gt_ident = identity_group(np.delete(truth, first, axis=0), source)
        entry["gt_identity_cos_mean"] = gt_ident.get("csim_mean")
        entry["seconds"] = round(time.perf_counter() - started, 1)
        report["clips"][clip["id"]] = entry
        print(clip["id"], json.dumps(entry, default=float), flush=True)
        if args.grids:
            out = Path(args.grids)
            out.mkdir(parents=True, exist_ok=True)
            rows = []
            for i in np.linspace(0, len(truth) - 1, args.grid_frames).round().astype(int):
                rows.append(np.concatenate([source] + [outputs[n][i] for n in generators] + [truth[i]], axis=1))
            Image.fromarray(np.concatenate(rows, axis=0)).save(out / f"{clip['id']}.png")
            # the mouth with the widest opening: crops of each column, 2× enlarged
            deepest_blink = int(blinks[np.nanargmin(gt_ear[blinks])]) if len(blinks) else 0
            for i, box, axis, name in (
                (widest_mouth(marks), boxes, 1, "mouth"),
                (deepest_blink, eye_boxes, 0, "blink"),
            ):
                x0, y0, x1, y1 = box[i]  # source | models | truth, side by side (mouth) or stacked (eyes), 2x
                crops = [source] + [outputs[n][i] for n in generators] + [truth[i]]
                strip = Image.fromarray(np.concatenate([c[y0:y1, x0:x1] for c in crops], axis=axis))
                strip.resize((strip.width * 2, strip.height * 2), Image.NEAREST).save(out / f"{clip['id']}_{name}.png")
    keys = ["psnr", "ssim", "mouth_psnr", "mouth_ssim", "open_mouth_psnr", "m_lmd", "f_lmd", "identity_cos_mean", "jitter_pct_iod",
            "mouth_sharpness", "blink_ear", "blink_eye_psnr"]  # fmt: skip
    for name in generators:
        report["mean"][name] = {
            k: float(np.nanmean([float(e[name][k]) for e in report["clips"].values()])) for k in keys
        }
    report["mean"]["ground_truth"] = {
        "jitter_pct_iod": float(np.nanmean([e["gt_jitter_pct_iod"] for e in report["clips"].values()])),
        "identity_cos_mean": float(np.nanmean([e["gt_identity_cos_mean"] for e in report["clips"].values()])),
        "mouth_sharpness": float(np.nanmean([e["gt_mouth_sharpness"] for e in report["clips"].values()])),
        "blink_ear": float(np.nanmean([e["gt_blink_ear"] for e in report["clips"].values()])),
    }
    print(json.dumps(report["mean"], indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
