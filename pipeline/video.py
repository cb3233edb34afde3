"""Streaming H.264 + AAC MP4 writing with PyAV, atomically (temporary file, then rename).

diffusers' ``encode_video`` muxes audio too, but sets no x264 preset (the default "medium" costs more
than the whole generator on these CPUs), takes integer fps only and writes in place; this writer
streams frame batches, interleaves audio, and never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from modeling_emotalk.errors import EmoTalkInputError


def check_output_path(path: str | os.PathLike) -> Path:
    """Validate an output path before any work is done: its folder must exist; the file must end in .mp4."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise EmoTalkInputError(f"the output file must end in .mp4, got {str(path)!r}")
    if not path.parent.is_dir():
        raise EmoTalkInputError(f"the output directory {str(path.parent)!r} does not exist: create it first")
    if path.is_dir():
        raise EmoTalkInputError(f"the output path {str(path)!r} is a directory, expected a file name")
    return path


def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: replicate the last row / column when a side is odd."""
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return frames


def write_mp4(
    path: str | os.PathLike,
    frame_batches: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
    *,
    preset: str = "veryfast",
    crf: int = 20,
) -> Path:
    """Encode ``(b, H, W, 3)`` uint8 frame batches (and mono float audio) into an MP4 at ``path``.

    The file appears only when encoding succeeded; on any error the temporary file is removed.
    """
    import av

    path = check_output_path(path)
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial.mp4")
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(str(temporary), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=rate)
            video.pix_fmt = "yuv420p"
            video.options = {"preset": preset, "crf": str(crf)}
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=sampling_rate)
                sound.layout = "mono"
                audio = np.ascontiguousarray(np.clip(audio, -1, 1), dtype=np.float32)
            written_frames = written_samples = 0
            for batch in frame_batches:
                batch = _even(np.asarray(batch, dtype=np.uint8))
                if written_frames == 0:
                    video.width, video.height = batch.shape[2], batch.shape[1]
                for image in batch:
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = written_frames
                    frame.time_base = 1 / rate
                    container.mux(video.encode(frame))
                    written_frames += 1
                if sound is not None:  # interleave: audio up to the current video time
                    until = min(len(audio), round(written_frames / fps * sampling_rate))
                    written_samples = _encode_audio(container, sound, audio, written_samples, until, sampling_rate)
            if written_frames == 0:
                raise EmoTalkInputError("no frames to write: the video would be empty")
            container.mux(video.encode())
            if sound is not None:
                _encode_audio(container, sound, audio, written_samples, len(audio), sampling_rate)
                container.mux(sound.encode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _encode_audio(container, stream, audio: np.ndarray, start: int, end: int, sampling_rate: int) -> int:
    import av

    if end <= start:
        return start
    frame = av.AudioFrame.from_ndarray(audio[None, start:end], format="fltp", layout="mono")
    frame.sample_rate = sampling_rate
    frame.pts = start
    frame.time_base = Fraction(1, sampling_rate)
    container.mux(stream.encode(frame))
    return end
