"""Reading and writing media with PyAV: the one place EmoTalk decodes videos and writes MP4 files.

Everything above this layer works on numpy arrays: frames are RGB ``uint8 (H, W, 3)``, speech is mono ``float32``
at :data:`~emotalk_common.constants.SAMPLING_RATE`.

Reading: :func:`probe` (stream facts), :func:`iter_frames` / :func:`read_frames` (optionally resampled to a
target frame rate and downscaled), :func:`read_audio`, :func:`load_image`, :func:`find_videos`, :func:`prefetch`.

Writing: :func:`write_mp4` streams H.264 + AAC atomically (temporary file, then rename). diffusers'
``encode_video`` muxes audio too, but sets no x264 preset (the default "medium" costs more than the whole
generator on these CPUs), takes integer fps only and writes in place; this writer streams frame batches,
interleaves audio at its own rate and channel count, and never leaves a half-written file behind: the temporary
``.<name>.p<pid>.<hex>.partial.mp4`` is removed on any error or interruption, and partials of the same output
left by a killed process are removed by the next write.

PyAV is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from .constants import SAMPLING_RATE
from .exceptions import EmoTalkInputError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".flv", ".m4v", ".mpg", ".mpeg")
# the rates FFmpeg's AAC encoder accepts; any other rate is resampled to the next one up
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1"}
STALE_PARTIAL_SECONDS = 3600  # a partial older than this is stale even when its process id is in use again
_EPS = 1e-6  # seconds: timestamps closer than this count as equal


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class VideoInfo:
    """A video's stream facts: its own frame rate, size, duration, frame count and audio presence.

    ``start_time`` is the video stream's first timestamp in seconds (audio read with ``video_start=start_time``
    is aligned to the first frame).
    """

    path: str
    fps: float
    width: int
    height: int
    duration: float
    num_frames: int
    has_audio: bool
    start_time: float = 0.0

    def frames_at(self, fps: float) -> int:
        """How many frames :func:`iter_frames` yields for this video resampled to ``fps``."""
        return frame_count(self.duration, fps)


def frame_count(seconds: float, fps: float) -> int:
    """Frames at ``fps`` that start before ``seconds``: ``ceil(seconds * fps)`` (with a rounding tolerance)."""
    return max(0, math.ceil(seconds * fps - _EPS * fps))


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"media file not found: {str(path)!r}")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise EmoTalkInputError(f"cannot open {str(path)!r} as a video or audio file: {error}") from error


def _video_stream(container, path: str | Path):
    if not container.streams.video:
        raise EmoTalkInputError(f"{str(path)!r} has no video stream, expected a video file")
    return container.streams.video[0]


def _stream_start(stream) -> float | None:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else None


def probe(path: str | Path) -> VideoInfo:
    """Stream facts of the video file ``path``.

    Raises ``FileNotFoundError`` for a missing file and :class:`EmoTalkInputError` for a file without a decodable
    video stream.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = (stream.frames or 0) / fps
        return VideoInfo(
            path=str(path),
            fps=fps,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            duration=duration,
            num_frames=int(stream.frames or round(duration * fps)),
            has_audio=bool(container.streams.audio),
            start_time=_stream_start(stream) or 0.0,
        )


def resample_indices(
    num_source: int, source_fps: float, target_fps: float, num_target: int | None = None
) -> np.ndarray:
    """Indices into a ``num_source``-frame sequence at ``source_fps`` that sample it at ``target_fps``.

    Frame ``k`` of the result shows the source frame on screen at time ``k / target_fps`` (the last one that
    started at or before it, with a small tolerance for rounding). Identity when the rates match.
    """
    if num_source <= 0:
        raise EmoTalkInputError(f"num_source must be positive, got {num_source}")
    if source_fps <= 0 or target_fps <= 0:
        raise EmoTalkInputError(f"frame rates must be positive, got source_fps={source_fps}, target_fps={target_fps}")
    if num_target is None:
        num_target = max(1, int(np.floor(num_source * target_fps / source_fps + _EPS)))
    times = np.arange(num_target) / target_fps
    indices = np.floor(times * source_fps + _EPS).astype(np.int64)
    return np.clip(indices, 0, num_source - 1)


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # Even sizes keep swscale and the encoders happy.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _timed_frames(container, stream, size: tuple[int, int], period: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(seconds since the stream start, RGB frame)`` in decoding order; a frame without pts follows the last."""
    start = _stream_start(stream)
    previous = None
    for frame in container.decode(stream):
        if frame.pts is None:
            seconds = previous + period if previous is not None else 0.0
        else:
            seconds = float(frame.pts * stream.time_base)
            if start is None:
                start = seconds
            seconds -= start
        previous = seconds
        yield seconds, frame.to_ndarray(format="rgb24", width=size[0], height=size[1])


def _resampled(
    timed: Iterable[tuple[float, np.ndarray]], fps: float, period: float, end: float, switch: float
) -> Iterator[np.ndarray]:
    """Frame ``k`` at time ``k / fps``: a source frame gives way to the next at ``switch`` of the way to it."""
    k = 0
    previous, previous_time = None, 0.0
    for seconds, image in timed:
        if previous is not None:
            boundary = min(previous_time + switch * (seconds - previous_time), end)
            while k / fps < boundary - _EPS:
                yield previous
                k += 1
            if k / fps >= end - _EPS:
                return
        previous, previous_time = image, seconds
    if previous is not None:  # the last frame stays on screen for one source frame period
        while k / fps < min(previous_time + period, end) - _EPS:
            yield previous
            k += 1


def iter_frames(
    path: str | Path,
    fps: float | None = None,
    *,
    max_side: int | None = None,
    max_seconds: float | None = None,
    pick: Literal["previous", "nearest"] = "previous",
) -> Iterator[np.ndarray]:
    """Yield RGB ``uint8 (H, W, 3)`` frames of a video, optionally resampled to ``fps`` and downscaled.

    Args:
        path: a video file PyAV can read.
        fps: when given, frames are repeated or dropped so that frame ``k`` shows time ``k / fps``; the timestamps
            (not the frame counts) decide, so variable frame rates work. ``None`` keeps the file's own frames.
        max_side: downscale (keeping the aspect ratio) so that the longer side is at most this many pixels.
        max_seconds: only the frames that start before this time.
        pick: with ``fps``, which source frame shows time ``t``: ``"previous"``, the one on screen at ``t`` (what a
            player shows; evaluation), or ``"nearest"``, the one whose timestamp is closest to ``t`` (at most half
            a source frame off the audio; training data).
    """
    if pick not in ("previous", "nearest"):
        raise EmoTalkInputError(f"pick must be 'previous' or 'nearest', got {pick!r}")
    if fps is not None and not fps > 0:
        raise EmoTalkInputError(f"fps must be positive, got {fps!r}")
    end = math.inf if max_seconds is None else float(max_seconds)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        size = _scaled_size(stream.codec_context.width, stream.codec_context.height, max_side)
        period = 1.0 / float(stream.average_rate or stream.guessed_rate or fps or 25)
        timed = _timed_frames(container, stream, size, period)
        if fps is None:
            for seconds, image in timed:
                if seconds >= end - _EPS:
                    return
                yield image
            return
        yield from _resampled(timed, fps, period, end, 0.5 if pick == "nearest" else 1.0)


def read_frames(
    path: str | Path,
    fps: float | None = None,
    *,
    max_side: int | None = None,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, float]:
    """Read a whole video as ``uint8 (T, H, W, 3)`` and return it with its frame rate (``fps`` if given)."""
    info = probe(path)
    frames = list(iter_frames(path, fps=fps, max_side=max_side, max_seconds=max_seconds))
    if not frames:
        raise EmoTalkInputError(f"{str(path)!r} contains no decodable video frames")
    return np.stack(frames), float(fps or info.fps)


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
        except BaseException as err:  # handed to the consumer, which raises it
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


def read_audio(
    path: str | Path,
    sampling_rate: int = SAMPLING_RATE,
    *,
    max_seconds: float | None = None,
    video_start: float | None = None,
) -> np.ndarray:
    """The first audio stream of a media file (video or audio) as mono float32 in [-1, 1] at ``sampling_rate``.

    Args:
        max_seconds: decode at most this much audio.
        video_start: the video stream's start time (:attr:`VideoInfo.start_time`): the audio is then shifted
            (padded with silence or trimmed) so that sample 0 plays with the first video frame.

    Raises ``FileNotFoundError`` for a missing file and :class:`EmoTalkInputError` when it has no audio stream.
    """
    import av

    with _open(path) as container:
        if not container.streams.audio:
            raise EmoTalkInputError(f"{str(path)!r} has no audio stream, expected a file with sound")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        limit = None if max_seconds is None else int(max_seconds * sampling_rate)
        chunks, total = [], 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                total += chunks[-1].size
            if limit is not None and total >= limit:
                break
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        audio_start = _stream_start(stream) or 0.0
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if video_start is not None:
        offset = round((audio_start - video_start) * sampling_rate)
        audio = np.concatenate([np.zeros(offset, np.float32), audio]) if offset > 0 else audio[-offset:]
    return np.clip(audio[:limit] if limit is not None else audio, -1.0, 1.0)


def load_image(path: str | Path) -> np.ndarray:
    """Load an image file as RGB ``uint8 (H, W, 3)``."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def find_videos(root: str | Path) -> list[Path]:
    """Video files under ``root`` (recursively, sorted by path), or ``[root]`` when it is a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {str(root)!r} (expected a folder of videos or a video file)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


# ------------------------------------------------------------------------------------------ output paths
def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output_path(
    path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = True
) -> Path:
    """Validate an output path before any work is done.

    Its folder must exist and be writable, the file must end in .mp4, and it must not be one of
    ``inputs`` (the portrait or the speech: writing there would destroy the input). An existing file
    is refused unless ``overwrite``.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise EmoTalkInputError(f"the output file must end in .mp4, got {str(path)!r}")
    if not path.parent.is_dir():
        raise EmoTalkInputError(f"the output directory {str(path.parent)!r} does not exist: create it first")
    if path.is_dir():
        raise EmoTalkInputError(f"the output path {str(path)!r} is a directory, expected a file name")
    for source in inputs:
        if isinstance(source, str | os.PathLike) and _same_file(path, Path(source)):
            raise EmoTalkInputError(
                f"the output {str(path)!r} is also an input ({str(source)!r}): writing it would replace the input; "
                "choose another output name"
            )
    if path.exists() and not overwrite:
        raise EmoTalkInputError(f"the output {str(path)!r} already exists: pass --overwrite to replace it")
    check_writable(path.parent)
    return path


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse a folder where no file can be created (read-only, no permission), before any rendering."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".emotalk-write-check-"):
            pass
    except OSError as err:
        raise EmoTalkInputError(
            f"the output directory {str(folder)!r} is not writable ({err.strerror or err}): choose another folder"
        ) from err


def partial_pattern(path: Path) -> re.Pattern:
    """The names of this output's temporary files: ``.<stem>.p<pid>.<hex8>.partial.mp4`` (``.<stem>.<hex8>...`` before)."""
    return re.compile(rf"\.{re.escape(path.stem)}\.(?:p(\d+)\.)?[0-9a-f]{{8}}\.partial\.mp4")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of this output left by a killed writer; returns the removed paths.

    Only names that match this output's partial pattern exactly are considered; one is stale when the
    process that wrote it no longer exists, or when it is older than ``STALE_PARTIAL_SECONDS``.
    """
    path = Path(path)
    pattern = partial_pattern(path)
    removed = []
    for candidate in path.parent.glob(f".{glob_escape(path.stem)}.*.partial.mp4"):
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        try:
            age = time.time() - candidate.stat().st_mtime
        except FileNotFoundError:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        if age > STALE_PARTIAL_SECONDS or (pid is not None and pid != os.getpid() and not _process_alive(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped (``[``, ``*``, ``?``)."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


# ------------------------------------------------------------------------------------------------- writing
def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: replicate the last row / column when a side is odd."""
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return frames


def rgb_to_yuv420(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` RGB uint8 frame (even sides) as ``(3H/2, W)`` planar yuv420p, BT.601 limited range.

    OpenCV's conversion gives swscale's levels (luma within 1, 2x2-averaged chroma) ~20x faster than the
    conversion the encoder would otherwise run per frame (~2 ms at 512², as much as H.264 encoding itself)."""
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)


def _check_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise EmoTalkInputError(f"frame batches must be uint8 (b, H, W, 3) RGB, got {batch.dtype} {batch.shape}")
    return batch


def prepare_audio(audio: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, int, str]:
    """``(N,)`` or ``(N, C)`` float audio → planar ``(C, N)`` float32 at a rate AAC supports, and its layout.

    The rate and channel count are kept when AAC supports them (8–96 kHz, 1–6 channels); another rate is
    resampled to the next supported one with PyAV's resampler.
    """
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2) or audio.shape[0] == 0 or not np.issubdtype(audio.dtype, np.floating):
        raise EmoTalkInputError(
            f"audio must be a non-empty (N,) or (N, channels) float array, got {audio.dtype} {audio.shape}"
        )
    planar = audio[None] if audio.ndim == 1 else audio.T
    if planar.shape[0] not in AAC_LAYOUTS:
        raise EmoTalkInputError(f"audio must have 1 to 6 channels (shape (N, channels)), got shape {audio.shape}")
    if not isinstance(sampling_rate, int | np.integer) or sampling_rate <= 0:
        raise EmoTalkInputError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    layout = AAC_LAYOUTS[planar.shape[0]]
    planar = np.ascontiguousarray(np.clip(planar, -1, 1), dtype=np.float32)
    if sampling_rate in AAC_RATES:
        return planar, int(sampling_rate), layout
    target = next((r for r in AAC_RATES if r >= sampling_rate), AAC_RATES[-1])
    return _resample_audio(planar, int(sampling_rate), target, layout), target, layout


def _resample_audio(planar: np.ndarray, rate: int, target: int, layout: str) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="fltp", layout=layout, rate=target)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
    frame.sample_rate = rate
    frame.pts = 0
    chunks = [out.to_ndarray() for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)


def write_mp4(
    path: str | os.PathLike,
    frame_batches: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sampling_rate: int = SAMPLING_RATE,
    *,
    preset: str = "veryfast",
    crf: int = 20,
) -> Path:
    """Encode ``(b, H, W, 3)`` uint8 frame batches (and ``(N,)`` or ``(N, C)`` float audio) into an MP4 at ``path``.

    A whole ``(T, H, W, 3)`` video is one batch: ``write_mp4(path, [frames], fps)``. The audio is muxed as AAC
    at its own rate and channel count when AAC supports them (see :func:`prepare_audio`). The file appears
    only when encoding succeeded; on any error or interruption the temporary file is removed.
    """
    import av

    path = check_output_path(path)
    remove_stale_partials(path)
    temporary = path.with_name(f".{path.stem}.p{os.getpid()}.{uuid.uuid4().hex[:8]}.partial.mp4")
    rate = Fraction(fps).limit_denominator(1001)
    layout = None
    if audio is not None:
        audio, sampling_rate, layout = prepare_audio(audio, sampling_rate)
    try:
        with av.open(str(temporary), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=rate)
            video.pix_fmt = "yuv420p"
            video.options = {"preset": preset, "crf": str(crf)}
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=sampling_rate)
                sound.layout = layout
            written_frames = written_samples = 0
            for batch in frame_batches:
                batch = _even(_check_batch(batch))
                if written_frames == 0:
                    video.width, video.height = batch.shape[2], batch.shape[1]
                for image in batch:
                    frame = av.VideoFrame.from_ndarray(rgb_to_yuv420(image), format="yuv420p")
                    frame.pts = written_frames
                    frame.time_base = 1 / rate
                    container.mux(video.encode(frame))
                    written_frames += 1
                if sound is not None:  # interleave: audio up to the current video time
                    until = min(audio.shape[1], round(written_frames / fps * sampling_rate))
                    written_samples = _encode_audio(container, sound, audio, written_samples, until, sampling_rate)
            if written_frames == 0:
                raise EmoTalkInputError("no frames to write: the video would be empty")
            container.mux(video.encode())
            if sound is not None:
                _encode_audio(container, sound, audio, written_samples, audio.shape[1], sampling_rate)
                container.mux(sound.encode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _encode_audio(container, stream, planar: np.ndarray, start: int, end: int, sampling_rate: int) -> int:
    import av

    if end <= start:
        return start
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(planar[:, start:end]), format="fltp", layout=stream.layout.name
    )
    frame.sample_rate = sampling_rate
    frame.pts = start
    frame.time_base = Fraction(1, sampling_rate)
    container.mux(stream.encode(frame))
    return end


__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "check_output_path",
    "check_writable",
    "find_videos",
    "frame_count",
    "iter_frames",
    "load_image",
    "partial_pattern",
    "prefetch",
    "prepare_audio",
    "probe",
    "read_audio",
    "read_frames",
    "remove_stale_partials",
    "resample_indices",
    "rgb_to_yuv420",
    "write_mp4",
]
