"""Decoding training videos with PyAV: frames resampled to a fixed frame rate, audio as 16 kHz mono float32."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".flv", ".m4v", ".mpg", ".mpeg")


@dataclass
class VideoInfo:
    """A video's stream facts. ``num_frames`` is the frame count at the *target* frame rate."""

    path: str
    width: int
    height: int
    source_fps: float
    duration: float
    num_frames: int
    has_audio: bool
    start_time: float  # of the video stream, seconds


def probe_video(path: str | Path, fps: float) -> VideoInfo:
    """Stream facts of ``path``; raises ``ValueError`` for a file without a decodable video stream."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"cannot open {path} as a video: {err}") from err
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        source_fps = float(stream.average_rate or stream.guessed_rate or fps)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = (stream.frames or 0) / source_fps
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        return VideoInfo(
            path=str(path),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            source_fps=source_fps,
            duration=duration,
            num_frames=max(0, math.ceil(duration * fps - 1e-6)),
            has_audio=bool(container.streams.audio),
            start_time=start,
        )


def iter_frames(path: str | Path, fps: float, max_seconds: float | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of ``path`` at ``fps``: frame ``k`` is the source frame nearest to time ``k / fps``.

    Works with variable frame rates (timestamps, not counts, decide); stops after ``max_seconds``.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        start = float(stream.start_time * base) if stream.start_time is not None else None
        frame_period = 1.0 / float(stream.average_rate or stream.guessed_rate or fps)
        limit = None if max_seconds is None else round(max_seconds * fps)
        k = 0
        previous, previous_time = None, None
        for frame in container.decode(stream):
            if frame.pts is None:
                time = (previous_time + frame_period) if previous_time is not None else 0.0
            else:
                time = float(frame.pts * base)
                if start is None:
                    start = time
                time -= start
            image = frame.to_ndarray(format="rgb24")
            if previous is not None:
                while k / fps < (previous_time + time) / 2:  # nearest frame in time
                    if limit is not None and k >= limit:
                        return
                    yield previous
                    k += 1
            previous, previous_time = image, time
        if previous is not None:
            while k / fps < previous_time + frame_period / 2 - 1e-6:
                if limit is not None and k >= limit:
                    return
                yield previous
                k += 1


def prefetch(iterator: Iterator[np.ndarray], size: int = 16) -> Iterator[np.ndarray]:
    """Run ``iterator`` in a background thread, ``size`` items ahead (decoding overlaps the face mesh)."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as err:  # handed to the consumer
            items.put(err)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def read_audio(path: str | Path, video_start: float = 0.0) -> np.ndarray | None:
    """The first audio track as 16 kHz mono float32, aligned so that sample 0 is the first video frame.

    Returns None when the file has no audio track.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLING_RATE)
        chunks = []
        for frame in container.decode(stream):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = round((start - video_start) * SAMPLING_RATE)
    if offset > 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    return np.clip(audio, -1.0, 1.0)


def find_videos(root: str | Path) -> list[Path]:
    """Video files under ``root`` (recursively, sorted), or ``[root]`` when it is a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {root} (expected a folder of videos or a video file)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


__all__ = [
    "SAMPLING_RATE",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "find_videos",
    "iter_frames",
    "prefetch",
    "probe_video",
    "read_audio",
]
