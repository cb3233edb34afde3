"""Audio front-end: read any speech input as 16 kHz mono float32 and turn it into wav2vec2 inputs.

librosa, soundfile, PyAV and transformers are imported lazily, so this module stays importable as Hub remote code.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from emotalk_common.constants import SAMPLING_RATE

from .errors import AudioLengthError, AudioReadError, EmoTalkInputError, InvalidAudioError, SilentAudioError

__all__ = ["SAMPLING_RATE", "AudioProcessor", "LoadedAudio", "load_audio", "read_audio"]

SILENCE_PEAK = 1e-4  # peak amplitude below which audio counts as silent
SILENCE_RMS_DB = -60.0  # RMS level (dBFS) below which audio counts as silent
_MAX_CHANNELS = 16
NOISE_FLATNESS = 0.1
"""Median spectral flatness (over the louder frames) above which audio is taken for noise, not speech.
Measured: speech 0.0007-0.007 (the bundled demo 0.003, 17 talking-head demo clips), white noise 0.56,
pink-ish noise 0.30, a pure tone ~0."""
_DECODE_MARGIN_SECONDS = 1.0  # decoding stops this far past the duration limit (a header may lie)


@dataclass
class LoadedAudio:
    """Decoded speech: the model's input and the recording as it was given.

    Attributes:
        samples: ``(N,)`` float32 mono at 16 kHz (the model's input).
        original: ``(M,)`` or ``(M, C)`` float32 at ``original_sampling_rate`` (for the video's sound track).
        original_sampling_rate: the rate of ``original`` in Hz.
    """

    samples: np.ndarray
    original: np.ndarray
    original_sampling_rate: int


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"an object of type {type(value).__module__}.{type(value).__qualname__}"


def _check_duration(seconds: float, min_seconds: float, max_seconds: float | None, what: str) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioLengthError(
            f"{what} is too long ({seconds:.1f} s): the limit is {max_seconds:g} s; audio longer than the limit of "
            f"{max_seconds:g} s is refused: trim it or raise the limit with max_seconds=... (max_audio_seconds=... "
            "in the pipeline; None disables it)"
        )
    if seconds < min_seconds:
        raise AudioLengthError(f"{what} is too short ({seconds:.3f} s): expected at least {min_seconds:g} s of speech")


def _check_rate(sampling_rate: Any) -> int:
    try:
        rate = float(sampling_rate)
    except (TypeError, ValueError) as err:
        raise InvalidAudioError(
            f"invalid sampling rate {sampling_rate!r}: expected a number of Hz, e.g. 16000"
        ) from err
    if not np.isfinite(rate) or rate != round(rate) or not 1000 <= rate <= 768000:
        raise InvalidAudioError(
            f"invalid sampling rate {sampling_rate!r}: expected a whole number of Hz between 1000 and 768000"
        )
    return int(rate)


# ----------------------------------------------------------------------------------------------- decoding


def _decode_limit(max_seconds: float | None, rate: int) -> int | None:
    """The most frames worth decoding: the limit plus a margin (None: no limit)."""
    return None if max_seconds is None else int((max_seconds + _DECODE_MARGIN_SECONDS) * rate)


def _decode_file(source: str | io.BytesIO, name: str, min_seconds: float, max_seconds: float | None):
    """Decode a file (path or in-memory bytes) -> (mono float32, its rate, original (M,) / (M, C), its rate).

    The duration is checked from the container's metadata before decoding, and decoding stops past the
    limit (plus a margin) whatever the metadata says, so a long or lying file cannot exhaust memory.
    """
    import soundfile as sf

    # 1. libsndfile (wav, flac, ogg/vorbis/opus, mp3, aiff, ...): the duration is known before decoding.
    try:
        info = sf.info(source)
    except Exception:  # any libsndfile refusal means "try FFmpeg", which reports the error
        info = None
    finally:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    if info is not None and info.frames > 0 and info.samplerate > 0:
        _check_duration(info.frames / info.samplerate, min_seconds, max_seconds, f"the audio in {name}")
    if info is not None:
        _warn_if_truncated_wav(source, name)
        try:
            data, rate = _read_bounded(source, max_seconds)
        except EmoTalkInputError:
            raise
        except Exception:  # e.g. an mp3 flavour libsndfile cannot decode: FFmpeg next
            if isinstance(source, io.BytesIO):
                source.seek(0)
        else:
            original = np.ascontiguousarray(data[:, 0]) if data.shape[1] == 1 else data
            return data.mean(axis=1, dtype=np.float32), int(rate), original, int(rate)
    # 2. FFmpeg through PyAV (m4a/aac, mp4/webm/mkv audio tracks, and whatever libsndfile refuses).
    try:
        mono, original, rate = _decode_av(source, name, min_seconds, max_seconds)
        return mono, SAMPLING_RATE, original, rate
    except EmoTalkInputError:
        raise
    except Exception as err:
        raise AudioReadError(
            f"cannot decode audio from {name}: {type(err).__name__}: {err}. Expected a readable audio file "
            "(wav, flac, ogg, mp3, m4a, ...)"
        ) from err


def _read_bounded(source: str | io.BytesIO, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """libsndfile decode of at most the limit + margin: ``(frames, channels)`` float32 and the rate."""
    import soundfile as sf

    with sf.SoundFile(source) as f:
        limit = _decode_limit(max_seconds, f.samplerate)
        data = f.read(frames=-1 if limit is None else limit + 1, dtype="float32", always_2d=True)
        rate = f.samplerate
    if limit is not None and len(data) > limit:
        raise AudioLengthError(
            f"the audio is too long (more than {len(data) / rate:.1f} s, whatever its header says): the limit is "
            f"{max_seconds:g} s; audio longer than the limit of {max_seconds:g} s is refused"
        )
    return data, rate


def _warn_if_truncated_wav(source: str | io.BytesIO, name: str) -> None:
    """Warn when a RIFF/WAVE file holds less audio data than its header declares (a cut-off download or copy)."""
    if isinstance(source, io.BytesIO):
        head, total = source.getbuffer()[: 1 << 16].tobytes(), source.getbuffer().nbytes
    else:
        with open(source, "rb") as f:
            head = f.read(1 << 16)
            total = f.seek(0, io.SEEK_END)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(head):
        chunk, size = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
        if chunk == b"data":
            available = total - offset - 8
            if size not in (0, 0xFFFFFFFF) and available < size:  # 0 / 0xFFFFFFFF: a streamed, unsized WAV
                warnings.warn(
                    f"{name} is truncated: its WAV header declares {size} bytes of audio data but the file holds "
                    f"only {max(available, 0)} ({100 * max(available, 0) / size:.0f}%); the missing end is ignored",
                    UserWarning,
                    stacklevel=4,
                )
            return
        offset += 8 + size + (size & 1)


def _decode_av(
    source: str | io.BytesIO, name: str, min_seconds: float, max_seconds: float | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode the first audio stream with PyAV: 16 kHz mono float32 (libswresample) for the model, and the
    original channels at the original rate (float32 ``(M,)`` or ``(M, C)``), and that rate."""
    import av

    with av.open(source, mode="r") as container:
        if not container.streams.audio:
            raise AudioReadError(f"{name} has no audio track: expected an audio file or a video with sound")
        stream = container.streams.audio[0]
        if container.duration is not None:
            _check_duration(container.duration / av.time_base, 0.0, max_seconds, f"the audio in {name}")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLING_RATE)
        channels = stream.codec_context.channels or 1
        native_rate = stream.codec_context.sample_rate or SAMPLING_RATE
        keeper = av.AudioResampler(format="flt", layout=stream.codec_context.layout.name, rate=native_rate)
        chunks, originals = [], []
        limit = _decode_limit(max_seconds, SAMPLING_RATE)
        total = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
            originals.extend(out.to_ndarray().reshape(-1, channels) for out in keeper.resample(frame))
            if limit is not None and total > limit:
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
        originals.extend(out.to_ndarray().reshape(-1, channels) for out in keeper.resample(None))
        # MP4/M4A: the edit list gives the exact duration; the decoder leaves the last AAC frame's padding.
        exact = exact_original = None
        if container.duration is not None and "mp4" in (container.format.name or ""):
            exact = round(container.duration / av.time_base * SAMPLING_RATE)
            exact_original = round(container.duration / av.time_base * native_rate)
    if not chunks:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32), native_rate
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if not originals:  # the original-rate resampler produced nothing: keep the model's input
        return (samples[:exact] if exact else samples), samples, SAMPLING_RATE
    original = np.concatenate(originals).astype(np.float32, copy=False)
    original = original[:exact_original] if exact_original else original
    original = np.ascontiguousarray(original[:, 0]) if original.shape[1] == 1 else original
    return (samples[:exact] if exact else samples), original, native_rate


def _to_float(array: np.ndarray, original: Any) -> np.ndarray:
    """PCM integers or floats -> float32 in about [-1, 1]."""
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.int32:
        return (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    if array.dtype == np.int8:
        return array.astype(np.float32) / 128.0
    if array.dtype == np.uint8:  # 8-bit WAV convention
        return (array.astype(np.float32) - 128.0) / 128.0
    if array.dtype == np.uint16:
        return (array.astype(np.float32) - 32768.0) / 32768.0
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise InvalidAudioError(
                f"the audio ({_describe(original)}) contains NaN or infinite values: expected finite samples"
            )
        return array
    raise InvalidAudioError(
        f"unsupported audio dtype in {_describe(original)}: expected float samples in [-1, 1] or int16/int32 PCM"
    )


def _downmix(array: np.ndarray, original: Any) -> np.ndarray:
    if array.size == 0:
        return np.zeros(0, dtype=np.float32)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        if 1 in array.shape:
            array = array.reshape(-1)
        else:
            axis = int(np.argmin(array.shape))
            if array.shape[axis] > _MAX_CHANNELS:
                raise InvalidAudioError(
                    f"cannot tell the channel axis of {_describe(original)}: expected (samples,), "
                    f"(channels, samples) or (samples, channels) with at most {_MAX_CHANNELS} channels"
                )
            array = array.mean(axis=axis, dtype=np.float32)
    if array.ndim != 1:
        raise InvalidAudioError(
            f"unsupported audio shape in {_describe(original)}: expected (samples,), (channels, samples) or "
            "(samples, channels)"
        )
    return array


def _array_from(audio: Any) -> np.ndarray:
    """numpy / torch / list -> numpy, with a clear error for anything else."""
    if isinstance(audio, np.ndarray):
        return audio
    if type(audio).__module__.startswith("torch"):
        import torch

        if isinstance(audio, torch.Tensor):
            tensor = audio.detach().cpu()
            if tensor.is_complex():
                raise InvalidAudioError(f"unsupported complex audio tensor ({tensor.dtype}): expected real samples")
            if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
                tensor = tensor.float()
            return tensor.numpy()
    if isinstance(audio, (list, tuple)):
        try:
            array = np.asarray(audio)
        except (ValueError, TypeError) as err:
            raise InvalidAudioError(f"cannot read audio from a ragged {type(audio).__name__}: {err}") from err
        if array.dtype.kind in "fiu":
            return array
    raise InvalidAudioError(
        f"cannot read audio from {_describe(audio)}: expected a file path, bytes, a numpy array or torch tensor "
        "(with sampling_rate), a (sampling_rate, array) tuple or a {'array': ..., 'sampling_rate': ...} dict"
    )


def _channels_last(array: np.ndarray) -> np.ndarray:
    """A valid audio array (see :func:`_downmix`) as ``(M,)`` mono or ``(M, C)`` channels-last float32."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    elif array.ndim == 2 and int(np.argmin(array.shape)) == 0:
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32)


def _flatness_and_rms(samples: np.ndarray, size: int = 512, hop: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame spectral flatness and RMS of ``samples``, as ``librosa.feature.spectral_flatness`` and
    ``librosa.feature.rms`` compute them (centred zero-padded frames, periodic Hann window for the spectrum,
    power 2, amin 1e-10) in plain numpy: librosa's first call costs seconds of numba compilation."""
    padded = np.pad(samples.astype(np.float64), size // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size)
    power = np.maximum(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2, 1e-10)
    flatness = np.exp(np.log(power).mean(axis=-1)) / power.mean(axis=-1)
    return flatness, np.sqrt(np.mean(np.square(frames), axis=-1))


def _warn_if_noise(samples: np.ndarray, name: str) -> None:
    """Warn when the audio sounds like noise, not speech (median spectral flatness of its louder frames)."""
    segment = samples[: 30 * SAMPLING_RATE]  # the first 30 s tell speech from noise
    flatness, rms = _flatness_and_rms(segment)
    active = rms > 0.1 * rms.max()
    if not active.any():
        return
    median = float(np.median(flatness[active]))
    if median > NOISE_FLATNESS:
        warnings.warn(
            f"{name} sounds like noise, not speech (spectral flatness {median:.2f}; speech is below "
            f"{NOISE_FLATNESS:g}): the mouth will not follow any words. Check that this is the right recording",
            UserWarning,
            stacklevel=3,
        )


def load_audio(
    audio: Any,
    sampling_rate: int | None = None,
    *,
    max_seconds: float | None = 600.0,
    min_seconds: float = 0.1,
) -> np.ndarray:
    """Read speech as mono float32 at 16 kHz (:func:`read_audio` without the original recording).

    Args:
        audio: a path or raw file bytes (wav, flac, ogg, mp3, m4a, a video's audio track...); a numpy array or
            torch tensor (1-D, or 2-D channels-first/last, float in [-1, 1] or int16/int32 PCM) with
            ``sampling_rate``; a ``{"array" | "raw": ..., "sampling_rate": ...}`` dict (datasets/transformers);
            a ``(sampling_rate, array)`` tuple (Gradio).
        sampling_rate: the rate of an array input in Hz.
        max_seconds: longest accepted audio (None: no limit). min_seconds: shortest accepted audio.

    Raises:
        AudioReadError, InvalidAudioError, AudioLengthError, SilentAudioError (all ``EmoTalkInputError``).
    """
    return read_audio(audio, sampling_rate, max_seconds=max_seconds, min_seconds=min_seconds).samples


def read_audio(
    audio: Any,
    sampling_rate: int | None = None,
    *,
    max_seconds: float | None = 600.0,
    min_seconds: float = 0.1,
) -> LoadedAudio:
    """Read speech: the 16 kHz mono model input and the original recording (rate and channels kept).

    Arguments and errors as in :func:`load_audio`. Files are checked against ``max_seconds`` from their
    metadata before decoding, and decoding stops past the limit whatever the metadata says. Warns
    (``UserWarning``) when a WAV file is shorter than its header declares or when the audio sounds like noise.
    """
    name = "the audio"
    from_file = False
    if isinstance(audio, dict):
        key = "array" if "array" in audio else "raw" if "raw" in audio else None
        if key is None:
            if "path" in audio and audio["path"] is not None:
                return read_audio(audio["path"], max_seconds=max_seconds, min_seconds=min_seconds)
            raise InvalidAudioError(
                f"cannot read audio from a dict with keys {sorted(map(str, audio))}: expected "
                "{'array': ..., 'sampling_rate': ...} (or 'raw' instead of 'array')"
            )
        rate = audio.get("sampling_rate")
        if rate is not None and sampling_rate is not None and _check_rate(rate) != _check_rate(sampling_rate):
            raise InvalidAudioError(
                f"the dict says sampling_rate={rate} but sampling_rate={sampling_rate} was passed: expected one rate"
            )
        audio, sampling_rate = audio[key], rate if rate is not None else sampling_rate
    elif (
        isinstance(audio, tuple)
        and len(audio) == 2
        and isinstance(audio[0], (int, float, np.integer, np.floating))
        and not isinstance(audio[1], (int, float, np.integer, np.floating))
    ):
        sampling_rate, audio = audio  # Gradio's (rate, data)
    elif hasattr(audio, "get_all_samples"):  # torchcodec AudioDecoder (datasets >= 4)
        samples = audio.get_all_samples()
        audio, sampling_rate = samples.data, samples.sample_rate

    if isinstance(audio, (str, Path, bytes, bytearray, memoryview)):
        if isinstance(audio, (str, Path)):
            path = Path(audio)
            name = repr(str(path))
            if not path.is_file():
                raise AudioReadError(f"audio file not found: {name} (expected an existing audio file)")
            source: str | io.BytesIO = str(path)
        else:
            name = f"<{len(audio)} bytes>"
            if len(audio) == 0:
                raise AudioReadError("cannot read audio from empty bytes: expected the contents of an audio file")
            source = io.BytesIO(bytes(audio))
        samples, rate, original, original_rate = _decode_file(source, name, min_seconds, max_seconds)
        from_file = True
        if not np.isfinite(samples).all():
            raise InvalidAudioError(f"{name} decodes to NaN or infinite samples: expected finite audio")
    else:
        array = _array_from(audio)
        if sampling_rate is None:
            raise InvalidAudioError(
                f"got {_describe(array)} without a sampling rate: pass load_audio(array, sampling_rate=...) "
                "(or a {'array': ..., 'sampling_rate': ...} dict)"
            )
        rate = original_rate = _check_rate(sampling_rate)
        floats = _to_float(array, array)
        samples = _downmix(floats, array)
        original = _channels_last(floats)
    if samples.size == 0:
        raise AudioLengthError(f"{name} is empty (0 samples): expected at least {min_seconds:g} s of speech")
    _check_duration(samples.size / rate, min_seconds, max_seconds, name)
    peak = float(np.abs(samples).max())
    if peak > 1.0 + 1e-3 and from_file:  # lossy decoders overshoot on loud masters: rescale quietly
        samples, original = samples / peak, original / peak
        peak = 1.0
    elif peak > 1.0 + 1e-3:
        warnings.warn(
            f"{name} has samples beyond [-1, 1] (peak {peak:.3g}); rescaling it to peak 1. Pass float samples in "
            "[-1, 1] or int16/int32 PCM",
            UserWarning,
            stacklevel=2,
        )
        samples, original = samples / peak, original / peak
        peak = 1.0
    rms_db = 20.0 * np.log10(max(float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))), 1e-12))
    if peak < SILENCE_PEAK or rms_db < SILENCE_RMS_DB:
        raise SilentAudioError(
            f"{name} is silent (peak {peak:.2g}, RMS {rms_db:.0f} dBFS): expected audible speech "
            f"(peak above {SILENCE_PEAK:g} and RMS above {SILENCE_RMS_DB:g} dBFS)"
        )
    if rate != SAMPLING_RATE:
        import librosa

        try:
            samples = librosa.resample(samples, orig_sr=rate, target_sr=SAMPLING_RATE)
        except Exception as err:  # pragma: no cover - defensive
            raise InvalidAudioError(f"cannot resample {name} from {rate} Hz to {SAMPLING_RATE} Hz: {err}") from err
        samples = np.clip(samples, -1.0, 1.0)  # the band-limited resampler overshoots steps (Gibbs)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    _warn_if_noise(samples, name)
    return LoadedAudio(samples, np.ascontiguousarray(original, dtype=np.float32), int(original_rate))


def default_feature_extractor() -> Any:
    """The project's feature extractor: 16 kHz mono, normalized, with an attention mask."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


class AudioProcessor:
    """Speech -> wav2vec2 inputs (16 kHz mono, zero-mean unit-variance) plus the raw audio for muxing.

    Args:
        feature_extractor: a ``Wav2Vec2FeatureExtractor``; the default normalizes and returns an attention mask.
        max_seconds: longest accepted audio (None: no limit). min_seconds: shortest accepted audio.
    """

    sampling_rate = SAMPLING_RATE

    def __init__(self, feature_extractor: Any = None, max_seconds: float | None = 600.0, min_seconds: float = 0.1):
        if feature_extractor is None:
            feature_extractor = default_feature_extractor()
        if getattr(feature_extractor, "sampling_rate", SAMPLING_RATE) != SAMPLING_RATE:
            raise ValueError(
                f"the feature extractor must work at {SAMPLING_RATE} Hz, got {feature_extractor.sampling_rate}"
            )
        self.feature_extractor = feature_extractor
        self.max_seconds = max_seconds
        self.min_seconds = min_seconds

    def load(self, audio: Any, sampling_rate: int | None = None) -> np.ndarray:
        """:func:`load_audio` with this processor's limits."""
        return load_audio(audio, sampling_rate, max_seconds=self.max_seconds, min_seconds=self.min_seconds)

    def __call__(self, audio: Any, sampling_rate: int | None = None) -> dict[str, Any]:
        """Returns ``{"input_values": (1, N) float32, "attention_mask": (1, N) int64, "audio": (N,) float32,
        "duration": seconds}``."""
        samples = self.load(audio, sampling_rate)
        features = self.feature_extractor(
            samples, sampling_rate=SAMPLING_RATE, return_tensors="pt", return_attention_mask=True
        )
        input_values = features["input_values"].float()
        attention_mask = features.get("attention_mask")
        if attention_mask is None:
            import torch

            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        return {
            "input_values": input_values,
            "attention_mask": attention_mask.long(),
            "audio": samples,
            "duration": samples.size / SAMPLING_RATE,
        }
