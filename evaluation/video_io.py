"""Reading videos, images and audio with PyAV, and resampling frame sequences to a target frame rate.

Everything above this layer works on numpy arrays: frames are ``uint8 (T, H, W, 3)`` RGB, audio is
``float32`` mono at 16 kHz.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000


@dataclass
class VideoInfo:
    """What a video file holds: frame rate, size, frame count estimate and whether it has audio."""

    path: str
    fps: float
    width: int
    height: int
    duration: float
    num_frames: int
    has_audio: bool


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:  # pragma: no cover - depends on the file
        raise ValueError(f"cannot open {path} as a video: {error}") from error


def probe(path: str | Path) -> VideoInfo:
    """Return the frame rate, size, duration and audio presence of a video file."""
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = (stream.frames or 0) / fps
        num_frames = int(stream.frames or round(duration * fps))
        return VideoInfo(
            path=str(path),
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=duration,
            num_frames=num_frames,
            has_audio=bool(container.streams.audio),
        )


def resample_indices(
    num_source: int, source_fps: float, target_fps: float, num_target: int | None = None
) -> np.ndarray:
    """Indices into a ``num_source``-frame sequence at ``source_fps`` that sample it at ``target_fps``.

    Frame ``k`` of the result shows the source frame on screen at time ``k / target_fps`` (the last
    one that started at or before it, with a small tolerance for rounding). Identity when the rates match.
    """
    if num_source <= 0:
        raise ValueError(f"num_source must be positive, got {num_source}")
    if source_fps <= 0 or target_fps <= 0:
        raise ValueError(f"frame rates must be positive, got source_fps={source_fps}, target_fps={target_fps}")
    if num_target is None:
        num_target = max(1, int(np.floor(num_source * target_fps / source_fps + 1e-6)))
    times = np.arange(num_target) / target_fps
    indices = np.floor(times * source_fps + 1e-6).astype(np.int64)
    return np.clip(indices, 0, num_source - 1)


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # Even sizes keep swscale and the encoders happy.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def iter_frames(
    path: str | Path,
    fps: float | None = None,
    max_side: int | None = None,
    max_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB ``uint8 (H, W, 3)`` frames of a video, optionally resampled to ``fps`` and downscaled.

    Args:
        path: a video file PyAV can read.
        fps: when given, frames are repeated or dropped so that frame ``k`` is the one on screen at
            ``k / fps`` seconds (nearest earlier frame). ``None`` keeps the file's own frames.
        max_side: downscale (keeping the aspect ratio) so that the longer side is at most this many pixels.
        max_seconds: stop after this much video.
    """
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = _scaled_size(stream.codec_context.width, stream.codec_context.height, max_side)
        start = None
        next_index = 0
        last = None
        for frame in container.decode(stream):
            time = float(frame.pts * stream.time_base) if frame.pts is not None else None
            if start is None:
                start = time or 0.0
            time = (time - start) if time is not None else None
            if max_seconds is not None and time is not None and time >= max_seconds - 1e-6:
                break
            image = frame.to_ndarray(format="rgb24", width=width, height=height)
            if fps is None:
                yield image
                continue
            if time is None:
                raise ValueError(f"{path}: frames carry no timestamps, cannot resample to {fps} fps")
            # Emit every target frame whose time falls before this frame's start with the previous frame.
            while last is not None and next_index / fps < time - 1e-6:
                yield last
                next_index += 1
            last = image
        if fps is not None and last is not None:
            # The last frame stays on screen for one source frame period.
            source_fps = float(stream.average_rate or fps)
            end = (time if time is not None else 0.0) + 1.0 / source_fps
            if max_seconds is not None:
                end = min(end, max_seconds)
            while next_index / fps < end - 1e-6:
                yield last
                next_index += 1


def read_frames(
    path: str | Path,
    fps: float | None = None,
    max_side: int | None = None,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, float]:
    """Read a whole video as ``uint8 (T, H, W, 3)`` and return it with its frame rate (``fps`` if given)."""
    info = probe(path)
    frames = list(iter_frames(path, fps=fps, max_side=max_side, max_seconds=max_seconds))
    if not frames:
        raise ValueError(f"{path} contains no decodable video frames")
    return np.stack(frames), float(fps or info.fps)


def read_audio(path: str | Path, sampling_rate: int = SAMPLING_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of a media file (video or audio) as mono float32 at ``sampling_rate``."""
    import av

    with _open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks = []
        total = 0
        limit = None if max_seconds is None else int(max_seconds * sampling_rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += chunk.size
            if limit is not None and total >= limit:
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return audio[:limit] if limit is not None else audio


def load_image(path: str | Path) -> np.ndarray:
    """Load an image file as RGB ``uint8 (H, W, 3)``."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_audio(path: str | Path, sampling_rate: int = SAMPLING_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Load speech from an audio or video file as mono float32 at ``sampling_rate``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    return read_audio(path, sampling_rate=sampling_rate, max_seconds=max_seconds)


def write_video(path: str | Path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None) -> None:
    """Write ``uint8 (T, H, W, 3)`` frames (and optional 16 kHz mono audio) as H.264 (+ AAC) MP4.

    Used by the benchmark's reference rows and by tests; generated videos come from the pipeline.
    """
    import fractions

    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        frames = frames[:, : height - height % 2, : width - width % 2]
        height, width = frames.shape[1:3]
    rate = fractions.Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "18"}
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=SAMPLING_RATE)
            audio_stream.layout = "mono"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = SAMPLING_RATE
            for packet in audio_stream.encode(frame):
                container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)
