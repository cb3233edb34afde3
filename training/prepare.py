"""``emotalk prepare``: a folder of talking-face videos → a training dataset for both EmoTalk stages.

Per video: decode at a fixed frame rate (25 fps by default), track the face mesh (478 points with irises),
bridge short tracking gaps, split at long ones, smooth the landmarks over time, align a jitter-free crop
(the pipeline's own template, so training crops look like the crops of a photo at inference), extract the
speech at 16 kHz, and write one shard per clip plus ``index.json``. Re-running skips the videos already
done; a video without a usable face is reported and skipped, never fatal.

    emotalk prepare --input videos/ --output data/ [--metadata labels.csv] [--holdout-seconds 10]

The dataset contract (shard keys, shapes, index fields) is documented in ``training/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeling_emotalk.errors import EmoTalkInputError

from .metadata import ClipLabels, labels_for, read_metadata_csv

DATASET_FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SHARD_DIR = "shards"
SHARD_FORMATS = ("safetensors", "npz")


@dataclass
class PrepareSettings:
    """Options that change a dataset's content (a resumed run must use the same ones)."""

    fps: float = 25.0
    crop_size: int = 256
    margin: float = 1.0
    shard_format: str = "safetensors"
    holdout_seconds: float = 0.0
    max_gap_seconds: float = 0.4
    min_clip_seconds: float = 1.0
    max_clip_seconds: float = 60.0
    landmark_smoothing: int = 5
    crop_smoothing_seconds: float = 0.5
    min_face_size: int = 48
    max_seconds: float | None = None


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``emotalk prepare``."""
    parser.add_argument("--input", required=True, help="a folder of videos (searched recursively) or one video")
    parser.add_argument("--output", required=True, help="the dataset folder (created; resumed when it exists)")
    parser.add_argument(
        "--metadata",
        default=None,
        help="a CSV with a 'path' column (relative to --input, or a file name) and any of speaker, emotion, "
        "intensity, split; overrides what MEAD / CREMA-D names say",
    )
    parser.add_argument("--speaker", default=None, help="speaker of custom footage (default: the file's stem)")
    parser.add_argument(
        "--emotion", default=None, help="emotion of custom footage when known (default: neutral, marked unknown)"
    )
    parser.add_argument("--intensity", type=float, default=None, help="intensity of custom footage in [0, 1]")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the dataset (default 25)")
    parser.add_argument("--crop-size", type=int, default=256, help="side of the aligned crops (default 256)")
    parser.add_argument(
        "--margin", type=float, default=1.0, help="crop zoom around the template, as FaceProcessor (default 1.0)"
    )
    parser.add_argument("--shard-format", choices=SHARD_FORMATS, default="safetensors", help="default safetensors")
    parser.add_argument(
        "--holdout-seconds",
        type=float,
        default=0.0,
        help="put the last N seconds of every video in a 'test' clip that training never reads (default 0)",
    )
    parser.add_argument(
        "--max-gap-seconds",
        type=float,
        default=0.4,
        help="tracking gaps up to this long are interpolated (frame_valid False); longer ones split the clip",
    )
    parser.add_argument("--min-clip-seconds", type=float, default=1.0, help="shorter clips are dropped (default 1)")
    parser.add_argument("--max-clip-seconds", type=float, default=60.0, help="longer clips are split (default 60)")
    parser.add_argument(
        "--landmark-smoothing",
        type=int,
        default=5,
        help="Savitzky-Golay window (frames) of the landmark smoothing; 1 disables it (default 5)",
    )
    parser.add_argument(
        "--crop-smoothing-seconds",
        type=float,
        default=0.5,
        help="Gaussian sigma of the crop alignment over time; 0 aligns every frame on its own (default 0.5)",
    )
    parser.add_argument("--min-face-size", type=int, default=48, help="narrower faces (pixels) count as missing")
    parser.add_argument("--max-seconds", type=float, default=None, help="use at most this much of each video")
    parser.add_argument("--redetect-interval", type=int, default=5, help="frames between fallback detections")
    parser.add_argument(
        "--frame-cache-mb",
        type=int,
        default=1024,
        help="keep decoded frames in memory up to this size instead of decoding twice (default 1024)",
    )
    parser.add_argument("--num-workers", type=int, default=1, help="videos processed in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="start the dataset over")
    parser.add_argument("--retry-failed", action="store_true", help="also retry videos skipped for having no face")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def settings_from_args(args: argparse.Namespace) -> PrepareSettings:
    """Validated :class:`PrepareSettings` from parsed arguments."""
    checks = [
        ("--fps", args.fps, 1.0, 120.0),
        ("--crop-size", args.crop_size, 16, 2048),
        ("--margin", args.margin, 0.1, 10.0),
        ("--holdout-seconds", args.holdout_seconds, 0.0, float("inf")),
        ("--max-gap-seconds", args.max_gap_seconds, 0.0, float("inf")),
        ("--min-clip-seconds", args.min_clip_seconds, 0.0, float("inf")),
        ("--max-clip-seconds", args.max_clip_seconds, 0.1, float("inf")),
        ("--crop-smoothing-seconds", args.crop_smoothing_seconds, 0.0, float("inf")),
    ]
    for name, value, low, high in checks:
        if not low <= value <= high:
            raise EmoTalkInputError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise EmoTalkInputError(f"--max-seconds must be positive, got {args.max_seconds}")
    if args.intensity is not None and not 0.0 <= args.intensity <= 1.0:
        raise EmoTalkInputError(f"--intensity must be in [0, 1], got {args.intensity}")
    return PrepareSettings(
        fps=float(args.fps),
        crop_size=int(args.crop_size),
        margin=float(args.margin),
        shard_format=args.shard_format,
        holdout_seconds=float(args.holdout_seconds),
        max_gap_seconds=float(args.max_gap_seconds),
        min_clip_seconds=float(args.min_clip_seconds),
        max_clip_seconds=float(args.max_clip_seconds),
        landmark_smoothing=int(args.landmark_smoothing),
        crop_smoothing_seconds=float(args.crop_smoothing_seconds),
        min_face_size=int(args.min_face_size),
        max_seconds=None if args.max_seconds is None else float(args.max_seconds),
    )


# ------------------------------------------------------------------------------------------------ index
def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(temporary, path)


def load_index(dataset_dir: str | Path) -> dict:
    """The ``index.json`` of a prepared dataset."""
    path = Path(dataset_dir) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `emotalk prepare --input <videos> --output {dataset_dir}`")
    index = json.loads(path.read_text())
    if index.get("format_version") != DATASET_FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {index.get('format_version')}, expected {DATASET_FORMAT_VERSION}: "
            "prepare the dataset again"
        )
    return index


def _new_index(settings: PrepareSettings) -> dict:
    from emotalk_common.constants import EMOTION_LABELS as EMOTIONS

    return {
        "format_version": DATASET_FORMAT_VERSION,
        "fps": settings.fps,
        "crop_size": settings.crop_size,
        "sampling_rate": 16000,
        "shard_format": settings.shard_format,
        "emotions": list(EMOTIONS),
        "settings": asdict(settings),
        "clips": [],
        "videos": {},
    }


def _video_key(relative: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", relative.rsplit(".", 1)[0])[-80:].strip("._") or "video"
    digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime": round(stat.st_mtime, 3)}


# ------------------------------------------------------------------------------------------------ shards
def write_shard(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any], shard_format: str) -> None:
    """Write one clip's arrays atomically (safetensors or npz), with ``metadata`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if shard_format == "safetensors":
        from safetensors.numpy import save_file

        save_file(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(temporary), {"json": json.dumps(metadata)}
        )
    else:
        with temporary.open("wb") as handle:
            np.savez(handle, metadata=np.array(json.dumps(metadata)), **arrays)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------------ one video
def _frame_ranges(num_frames: int, settings: PrepareSettings) -> list[tuple[int, int, str]]:
    """``[start, end)`` frame ranges and their split: the held-out tail is its own range."""
    holdout = round(settings.holdout_seconds * settings.fps)
    if holdout <= 0:
        return [(0, num_frames, "train")]
    boundary = max(0, num_frames - holdout)
    ranges = [(0, boundary, "train")] if boundary > 0 else []
    return [*ranges, (boundary, num_frames, "test")]


def prepare_video(
    path: str | Path,
    relative: str,
    labels: ClipLabels,
    settings: PrepareSettings,
    output_dir: str | Path,
    *,
    redetect_interval: int = 5,
    frame_cache_mb: int = 1024,
    progress: bool = False,
) -> dict:
    """Process one video; returns its index record ``{"status": "done" | "no_face", "clips": [...], ...}``.

    Raises only for unreadable files (the caller reports those as errors and goes on).
    """
    from emotalk_common.constants import SAMPLING_RATE
    from emotalk_common.geometry import warp_affine
    from emotalk_common.video_io import frame_count, iter_frames, prefetch, probe, read_audio
    from tqdm.auto import tqdm

    from modeling_emotalk.face_processing import FaceProcessor

    from .tracking import (
        FaceTracker,
        crop_matrices,
        interpolate_gaps,
        segments,
        smooth_landmarks,
        to_crop_coordinates,
    )

    path, output_dir = Path(path), Path(output_dir)
    fps, size = settings.fps, settings.crop_size
    started = time.perf_counter()
    info = probe(path)
    expected = info.frames_at(fps)
    if settings.max_seconds is not None:
        expected = min(expected, frame_count(settings.max_seconds, fps))
    processor = FaceProcessor(crop_size=size, margin=settings.margin, min_face_size=settings.min_face_size)

    # Pass 1: track the face mesh through every frame (keeping the frames while they fit the cache).
    points: list[np.ndarray | None] = []
    cache: list[np.ndarray] | None = []
    budget = frame_cache_mb * 2**20
    bar = tqdm(total=expected or None, unit="frame", desc=path.name[:30], leave=False, disable=not progress)
    try:
        with FaceTracker(processor, redetect_interval, settings.min_face_size) as tracker:
            for frame in prefetch(iter_frames(path, fps, max_seconds=settings.max_seconds, pick="nearest")):
                points.append(tracker(frame))
                if cache is not None:
                    cache.append(frame)
                    if len(cache) * frame.nbytes > budget:
                        cache = None
                bar.update(1)
    finally:
        bar.close()
        processor.close()
    num_frames = len(points)
    valid = np.array([p is not None for p in points], dtype=bool)
    record = {
        "video": relative,
        "source": str(path.resolve()),
        "frames": num_frames,
        "seconds": round(num_frames / fps, 3),
        "face_fraction": round(float(valid.mean()) if num_frames else 0.0, 4),
        "labels": labels.to_dict(),
        "clips": [],
    }
    if num_frames == 0:
        return record | {"status": "no_face", "reason": "the video has no decodable frames"}
    if not valid.any():
        return record | {"status": "no_face", "reason": f"no face found in any of its {num_frames} frames"}

    # Clips: bridge short gaps, split at long ones and at the hold-out boundary, cap the length.
    max_gap = round(settings.max_gap_seconds * fps)
    min_length = max(2, round(settings.min_clip_seconds * fps))
    max_length = max(min_length, round(settings.max_clip_seconds * fps))
    clips = []
    for low, high, split in _frame_ranges(num_frames, settings):
        for a, b in segments(valid[low:high], max_gap, min_length):
            for start in range(low + a, low + b, max_length):
                end = min(start + max_length, low + b)
                if end - start >= min_length:
                    clips.append((start, end, labels.split or split))
    if not clips:
        return record | {
            "status": "no_face",
            "reason": f"the face is tracked in {valid.mean():.0%} of the frames but in no run of at least "
            f"{settings.min_clip_seconds:g} s",
        }

    image_points = np.zeros((num_frames, 478, 3), dtype=np.float64)
    image_points[valid] = np.stack([p for p in points if p is not None])
    audio = read_audio(path, video_start=info.start_time) if info.has_audio else None
    key = _video_key(relative)
    sigma = settings.crop_smoothing_seconds * fps
    plans = []
    for number, (start, end, split) in enumerate(clips):
        raw = interpolate_gaps(image_points[start:end], valid[start:end])
        smoothed = smooth_landmarks(raw, settings.landmark_smoothing)
        matrices = crop_matrices(raw, processor, sigma)
        plans.append(
            {
                "id": f"{key}-{number:03d}",
                "start": start,
                "end": end,
                "split": split,
                "image_landmarks": smoothed.astype(np.float32),
                "matrices": matrices,
                "landmarks": to_crop_coordinates(smoothed, matrices, size),
                "crops": np.zeros((end - start, size, size, 3), dtype=np.uint8),
            }
        )

    # Pass 2: aligned crops (from the cache, or decoding again).
    if cache is not None and len(cache) == num_frames:
        frames = cache
    else:
        frames = prefetch(iter_frames(path, fps, max_seconds=settings.max_seconds, pick="nearest"))
    owner = {t: plan for plan in plans for t in range(plan["start"], plan["end"])}
    for t, frame in enumerate(frames):
        plan = owner.get(t)
        if plan is not None:
            plan["crops"][t - plan["start"]] = warp_affine(frame, plan["matrices"][t - plan["start"]], (size, size))
    cache = None

    for plan in plans:
        start, end = plan["start"], plan["end"]
        first, last = round(start / fps * SAMPLING_RATE), round(end / fps * SAMPLING_RATE)
        clip_audio = np.zeros(last - first, dtype=np.float32)
        if audio is not None and first < len(audio):
            piece = audio[first:last]
            clip_audio[: len(piece)] = piece
        has_audio = audio is not None and first < len(audio) and float(np.abs(clip_audio).max()) > 1e-4
        shard = f"{SHARD_DIR}/{plan['id']}.{'safetensors' if settings.shard_format == 'safetensors' else 'npz'}"
        clip = {
            "id": plan["id"],
            "shard": shard,
            "video": relative,
            "source": str(path.resolve()),
            "split": plan["split"],
            "start_frame": start,
            "num_frames": end - start,
            "start_seconds": round(start / fps, 4),
            "num_samples": len(clip_audio),
            "has_audio": bool(has_audio),
            "audio_mean": float(clip_audio.mean()),
            "audio_std": float(clip_audio.std()),
            "valid_fraction": round(float(valid[start:end].mean()), 4),
            "speaker": labels.speaker,
            "emotion": labels.emotion,
            "emotion_known": labels.emotion_known,
            "intensity": labels.intensity,
            "label_source": labels.source,
        }
        arrays = {
            "landmarks": plan["landmarks"].astype(np.float32),
            "crops": plan["crops"],
            "audio": clip_audio,
            "frame_valid": valid[start:end].copy(),
            "crop_matrices": plan["matrices"].astype(np.float32),
            "image_landmarks": plan["image_landmarks"],
        }
        write_shard(output_dir / shard, arrays, clip | {"fps": fps, "crop_size": size}, settings.shard_format)
        record["clips"].append(clip)
    record["status"] = "done"
    record["processing_seconds"] = round(time.perf_counter() - started, 2)
    return record


def _worker(job: tuple) -> tuple[str, dict]:
    path, relative, labels, settings, output_dir, redetect_interval, frame_cache_mb = job
    try:
        record = prepare_video(
            path,
            relative,
            labels,
            settings,
            output_dir,
            redetect_interval=redetect_interval,
            frame_cache_mb=frame_cache_mb,
        )
    except Exception as err:  # reported and skipped: one bad file never stops the run
        record = {"video": relative, "status": "error", "reason": f"{type(err).__name__}: {err}", "clips": []}
    return relative, record


# ------------------------------------------------------------------------------------------------ run
def run(args: argparse.Namespace) -> int:
    """``emotalk prepare``: returns 0 when the dataset holds at least one clip, 1 otherwise."""
    from emotalk_common.video_io import find_videos
    from tqdm.auto import tqdm

    settings = settings_from_args(args)
    source = Path(args.input)
    if not source.exists():
        raise EmoTalkInputError(f"--input {source} does not exist: expected a folder of videos or a video file")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    rows = read_metadata_csv(args.metadata) if args.metadata else None
    videos = find_videos(source)
    if not videos:
        raise EmoTalkInputError(f"no videos found under {source} (looked for {', '.join(_extensions())})")

    index_path = output / INDEX_NAME
    if index_path.is_file() and not args.overwrite:
        index = load_index(output)
        if index.get("settings") != asdict(settings):
            changed = {
                k: (index.get("settings", {}).get(k), v)
                for k, v in asdict(settings).items()
                if index.get("settings", {}).get(k) != v
            }
            raise EmoTalkInputError(
                f"{output} was prepared with other settings {changed} (old, new): pass the same options to resume, "
                "or --overwrite to start over"
            )
    else:
        index = _new_index(settings)
        if args.overwrite and (output / SHARD_DIR).is_dir():
            for stale in (output / SHARD_DIR).iterdir():
                stale.unlink()

    root = source if source.is_dir() else source.parent
    jobs, skipped = [], 0
    for path in videos:
        relative = path.relative_to(root).as_posix()
        labels = labels_for(relative, rows, args.speaker, args.emotion, args.intensity)
        previous = index["videos"].get(relative)
        fingerprint = _fingerprint(path)
        if previous is not None and previous.get("fingerprint") == fingerprint:
            finished = previous["status"] == "done" and all((output / c["shard"]).is_file() for c in previous["clips"])
            if finished or (previous["status"] == "no_face" and not args.retry_failed):
                skipped += 1
                continue
        jobs.append((str(path), relative, labels, settings, str(output), args.redetect_interval, args.frame_cache_mb))
    if skipped:
        print(f"resuming: {skipped} of {len(videos)} videos already processed", file=sys.stderr)

    def record_result(relative: str, record: dict, fingerprint: dict) -> None:
        record["fingerprint"] = fingerprint
        index["videos"][relative] = record
        index["clips"] = [clip for video in index["videos"].values() for clip in video.get("clips", [])]
        _write_json(index_path, index)
        if record["status"] != "done":
            print(f"skipped {relative}: {record['reason']}", file=sys.stderr)

    started = time.perf_counter()
    seconds = 0.0
    bar = tqdm(total=len(jobs), unit="video", desc="prepare", disable=args.quiet or not jobs)
    try:
        if args.num_workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                try:
                    record = prepare_video(
                        *job[:5], redetect_interval=job[5], frame_cache_mb=job[6], progress=not args.quiet
                    )
                except Exception as err:
                    record = {
                        "video": job[1],
                        "status": "error",
                        "reason": f"{type(err).__name__}: {err}",
                        "clips": [],
                    }
                record_result(job[1], record, _fingerprint(Path(job[0])))
                seconds += record.get("seconds", 0.0)
                bar.update(1)
                bar.set_postfix(speed=f"{seconds / max(time.perf_counter() - started, 1e-6):.1f}x")
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")  # MediaPipe graphs must not be forked
            paths = {job[1]: Path(job[0]) for job in jobs}
            with ProcessPoolExecutor(max_workers=args.num_workers, mp_context=context) as pool:
                futures = [pool.submit(_worker, job) for job in jobs]
                for future in as_completed(futures):
                    relative, record = future.result()
                    record_result(relative, record, _fingerprint(paths[relative]))
                    seconds += record.get("seconds", 0.0)
                    bar.update(1)
                    bar.set_postfix(speed=f"{seconds / max(time.perf_counter() - started, 1e-6):.1f}x")
    finally:
        bar.close()
    if not index_path.is_file():
        _write_json(index_path, index)

    elapsed = time.perf_counter() - started
    clips = index["clips"]
    failed = {k: v for k, v in index["videos"].items() if v["status"] != "done"}
    total = sum(c["num_frames"] for c in clips) / settings.fps
    speed = f", {seconds / elapsed:.1f}x real time" if jobs and elapsed > 0 else ""
    print(
        f"{output}: {len(clips)} clips ({total:.1f} s) from {len(index['videos']) - len(failed)} videos; "
        f"processed {len(jobs)} video(s) ({seconds:.1f} s of video) in {elapsed:.1f} s{speed}; "
        f"{len(failed)} skipped without a usable face or unreadable"
    )
    if not clips:
        print("emotalk prepare: no usable clip in the dataset", file=sys.stderr)
        return 1
    return 0


def _extensions() -> tuple[str, ...]:
    from emotalk_common.video_io import VIDEO_EXTENSIONS

    return VIDEO_EXTENSIONS


def main(argv: list[str] | None = None) -> int:
    """``python -m emotalk_training.prepare`` (same options as ``emotalk prepare``)."""
    parser = argparse.ArgumentParser(prog="emotalk prepare", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except EmoTalkInputError as err:
        print(f"emotalk prepare: error: {err}", file=sys.stderr)
        return 2


__all__ = ["PrepareSettings", "add_arguments", "load_index", "prepare_video", "run", "settings_from_args"]


if __name__ == "__main__":
    sys.exit(main())
