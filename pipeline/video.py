"""Streaming H.264 + AAC MP4 writing with PyAV, atomically (temporary file, then rename).

diffusers' ``encode_video`` muxes audio too, but sets no x264 preset (the default "medium" costs more
than the whole generator on these CPUs), takes integer fps only and writes in place; this writer
streams frame batches, interleaves audio, and never leaves a half-written file behind: the temporary
``.<name>.p<pid>.<hex>.partial.mp4`` is removed on any error or interruption, and partials of the same
output left by a killed process are removed by the next write.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from modeling_emotalk.errors import EmoTalkInputError

# the rates FFmpeg's AAC encoder accepts; any other rate is resampled to the next one up
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1"}
STALE_PARTIAL_SECONDS = 3600  # a partial older than this is stale even when its process id is in use again


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


def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: replicate the last row / column when a side is odd."""
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return frames


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
    return _resample(planar, int(sampling_rate), target, layout), target, layout


def _resample(planar: np.ndarray, rate: int, target: int, layout: str) -> np.ndarray:
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
    sampling_rate: int = 16000,
    *,
    preset: str = "veryfast",
    crf: int = 20,
) -> Path:
    """Encode ``(b, H, W, 3)`` uint8 frame batches (and ``(N,)`` or ``(N, C)`` float audio) into an MP4 at ``path``.

    The audio is muxed as AAC at its own rate and channel count when AAC supports them (see
    :func:`prepare_audio`). The file appears only when encoding succeeded; on any error or interruption
    the temporary file is removed.
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
