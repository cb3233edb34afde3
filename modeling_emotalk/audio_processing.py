"""Audio front-end: read any speech input as 16 kHz mono float32 and turn it into wav2vec2 inputs.

librosa, soundfile, PyAV and transformers are imported lazily, so this module stays importable as Hub remote code.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AudioLengthError, AudioReadError, EmoTalkInputError, InvalidAudioError, SilentAudioError

__all__ = ["SAMPLING_RATE", "AudioProcessor", "load_audio"]

SAMPLING_RATE = 16000
SILENCE_PEAK = 1e-4  # peak amplitude below which audio counts as silent
SILENCE_RMS_DB = -60.0  # RMS level (dBFS) below which audio counts as silent
_MAX_CHANNELS = 16


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"an object of type {type(value).__module__}.{type(value).__qualname__}"


def _check_duration(seconds: float, min_seconds: float, max_seconds: float | None, what: str) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioLengthError(
            f"{what} is too long ({seconds:.1f} s): the limit is {max_seconds:g} s; trim it or raise the limit "
            "with max_seconds=... (None disables it)"
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


def _decode_file(source: str | io.BytesIO, name: str, min_seconds: float, max_seconds: float | None):
    """Decode a file (path or in-memory bytes) -> (mono float32 at the file's or 16 kHz rate, rate)."""
    import soundfile as sf

    # 1. libsndfile (wav, flac, ogg/vorbis/opus, mp3, aiff, ...): the duration is known before decoding.
    try:
        info = sf.info(source)
    except Exception:
        info = None
    finally:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    if info is not None and info.frames > 0 and info.samplerate > 0:
        _check_duration(info.frames / info.samplerate, min_seconds, max_seconds, f"the audio in {name}")
    if info is not None:
        try:
            data, rate = sf.read(source, dtype="float32", always_2d=True)
            return data.mean(axis=1, dtype=np.float32), int(rate)
        except Exception:
            if isinstance(source, io.BytesIO):
                source.seek(0)
    # 2. FFmpeg through PyAV (m4a/aac, mp4/webm/mkv audio tracks, and whatever libsndfile refuses).
    try:
        return _decode_av(source, name, min_seconds, max_seconds), SAMPLING_RATE
    except EmoTalkInputError:
        raise
    except Exception as err:
        raise AudioReadError(
            f"cannot decode audio from {name}: {type(err).__name__}: {err}. Expected a readable audio file "
            "(wav, flac, ogg, mp3, m4a, ...)"
        ) from err


def _decode_av(source: str | io.BytesIO, name: str, min_seconds: float, max_seconds: float | None) -> np.ndarray:
    """Decode the first audio stream with PyAV, resampled to 16 kHz mono float32 by libswresample."""
    import av

    with av.open(source, mode="r") as container:
        if not container.streams.audio:
            raise AudioReadError(f"{name} has no audio track: expected an audio file or a video with sound")
        stream = container.streams.audio[0]
        if container.duration is not None:
            _check_duration(container.duration / av.time_base, 0.0, max_seconds, f"the audio in {name}")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLING_RATE)
        chunks = []
        limit = None if max_seconds is None else int((max_seconds + 1) * SAMPLING_RATE)
        total = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
            if limit is not None and total > limit:
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
        # MP4/M4A: the edit list gives the exact duration; the decoder leaves the last AAC frame's padding.
        exact = None
        if container.duration is not None and "mp4" in (container.format.name or ""):
            exact = round(container.duration / av.time_base * SAMPLING_RATE)
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    return samples[:exact] if exact else samples


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


def load_audio(
    audio: Any,
    sampling_rate: int | None = None,
    *,
    max_seconds: float | None = 600.0,
    min_seconds: float = 0.1,
) -> np.ndarray:
    """Read speech as mono float32 at 16 kHz.

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
    name = "the audio"
    from_file = False
    if isinstance(audio, dict):
        key = "array" if "array" in audio else "raw" if "raw" in audio else None
        if key is None:
            if "path" in audio and audio["path"] is not None:
                return load_audio(audio["path"], max_seconds=max_seconds, min_seconds=min_seconds)
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
        samples, rate = _decode_file(source, name, min_seconds, max_seconds)
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
        rate = _check_rate(sampling_rate)
        samples = _downmix(_to_float(array, array), array)
    if samples.size == 0:
        raise AudioLengthError(f"{name} is empty (0 samples): expected at least {min_seconds:g} s of speech")
    _check_duration(samples.size / rate, min_seconds, max_seconds, name)
    peak = float(np.abs(samples).max())
    if peak > 1.0 + 1e-3 and from_file:  # lossy decoders overshoot on loud masters: rescale quietly
        samples = samples / peak
        peak = 1.0
    elif peak > 1.0 + 1e-3:
        warnings.warn(
            f"{name} has samples beyond [-1, 1] (peak {peak:.3g}); rescaling it to peak 1. Pass float samples in "
            "[-1, 1] or int16/int32 PCM",
            UserWarning,
            stacklevel=2,
        )
        samples = samples / peak
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
    return np.ascontiguousarray(samples, dtype=np.float32)


class AudioProcessor:
    """Speech -> wav2vec2 inputs (16 kHz mono, zero-mean unit-variance) plus the raw audio for muxing.

    Args:
        feature_extractor: a ``Wav2Vec2FeatureExtractor``; the default normalizes and returns an attention mask.
        max_seconds: longest accepted audio (None: no limit). min_seconds: shortest accepted audio.
    """

    sampling_rate = SAMPLING_RATE

    def __init__(self, feature_extractor: Any = None, max_seconds: float | None = 600.0, min_seconds: float = 0.1):
        if feature_extractor is None:
            from transformers import Wav2Vec2FeatureExtractor

            feature_extractor = Wav2Vec2FeatureExtractor(
                feature_size=1,
                sampling_rate=SAMPLING_RATE,
                padding_value=0.0,
                do_normalize=True,
                return_attention_mask=True,
            )
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
