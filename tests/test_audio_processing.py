"""Audio front-end: decoding, downmixing, resampling, validation and wav2vec2 features (generated audio only)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import synthetic_speech
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modeling_emotalk.audio_processing import SAMPLING_RATE, AudioProcessor, load_audio
from modeling_emotalk.errors import (
    AudioLengthError,
    AudioReadError,
    EmoTalkInputError,
    InvalidAudioError,
    SilentAudioError,
)


def write_with_pyav(path, audio: np.ndarray, fmt: str, codec: str, rate: int = SAMPLING_RATE) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory, speech):
    import soundfile as sf

    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for ext in ("wav", "flac", "ogg"):
        files[ext] = folder / f"speech.{ext}"
        sf.write(files[ext], speech, SAMPLING_RATE)
    files["mp3"] = folder / "speech.mp3"
    write_with_pyav(files["mp3"], speech, "mp3", "libmp3lame")
    files["m4a"] = folder / "speech.m4a"
    write_with_pyav(files["m4a"], speech, "mp4", "aac")
    return files


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 1200) -> float:
    n = min(len(a), len(b)) - max_lag
    return max(float(np.corrcoef(a[lag : lag + n], b[:n])[0, 1]) for lag in range(0, max_lag, 8))


# --------------------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3", "m4a"])
def test_file_formats(audio_files, speech, ext):
    audio = load_audio(audio_files[ext])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(speech)) <= 160  # same length (within 10 ms for lossy codecs)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert best_correlation(audio, speech) > 0.95


def test_bytes_and_str_paths(audio_files, speech_wav, speech):
    from_bytes = load_audio(audio_files["m4a"].read_bytes())
    np.testing.assert_array_equal(from_bytes, load_audio(str(audio_files["m4a"])))
    np.testing.assert_allclose(load_audio(speech_wav), speech, atol=1e-4)


def test_file_resampled_and_downmixed(tmp_path, speech):
    import soundfile as sf

    path = tmp_path / "stereo44k.wav"
    stereo = np.stack([synthetic_speech(1.0, 44100), synthetic_speech(1.0, 44100, seed=1)], axis=1)
    sf.write(path, stereo, 44100)
    audio = load_audio(path)
    assert len(audio) == 16000


# --------------------------------------------------------------------------------------------------------- arrays


def test_stereo_arrays_downmix(speech):
    other = synthetic_speech(2.0, seed=3)
    expected = (speech + other) / 2
    np.testing.assert_allclose(load_audio(np.stack([speech, other]), 16000), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(np.stack([speech, other], axis=1), 16000), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(speech[None], 16000), speech)
    np.testing.assert_allclose(load_audio(speech[:, None], 16000), speech)


def test_integer_pcm_scaling(speech):
    pcm16 = np.round(speech * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm16, 16000), speech, atol=1e-4)
    pcm32 = np.round(speech * 2147483647).astype(np.int32)
    np.testing.assert_allclose(load_audio(pcm32, 16000), speech, atol=1e-6)


def test_dict_tuple_and_tensor_inputs(speech):
    np.testing.assert_array_equal(load_audio({"array": speech, "sampling_rate": 16000}), speech)
    np.testing.assert_array_equal(load_audio({"raw": speech, "sampling_rate": 16000}), speech)
    np.testing.assert_array_equal(load_audio({"array": speech}, 16000), speech)
    pcm16 = np.round(speech * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio((16000, pcm16)), speech, atol=1e-4)  # Gradio's (rate, data)
    np.testing.assert_allclose(load_audio(torch.from_numpy(speech)[None], 16000), speech)
    np.testing.assert_allclose(load_audio(torch.from_numpy(speech).to(torch.bfloat16), 16000), speech, atol=1e-2)


def test_resampling_44k_to_16k():
    audio = synthetic_speech(1.5, 44100)
    out = load_audio(audio, 44100)
    assert len(out) == pytest.approx(len(audio) * 16000 / 44100, abs=1)
    # The pitch survives: same dominant frequency as a 16 kHz rendering of the same signal.
    reference = synthetic_speech(1.5, 16000)
    spectrum = np.abs(np.fft.rfft(out[: len(reference)]))
    assert abs(int(np.argmax(spectrum)) - int(np.argmax(np.abs(np.fft.rfft(reference))))) <= 3


def test_out_of_range_floats_are_rescaled_with_a_warning(speech):
    with pytest.warns(UserWarning, match=r"beyond \[-1, 1\].*rescaling"):
        out = load_audio(speech * 10, 16000)
    assert np.abs(out).max() == pytest.approx(1.0)


def test_float_in_range_does_not_warn(speech):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(speech, 16000)


# --------------------------------------------------------------------------------------------------------- errors


def test_unreadable_inputs(tmp_path):
    with pytest.raises(AudioReadError, match="audio file not found"):
        load_audio(tmp_path / "missing.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20)
    with pytest.raises(AudioReadError, match=r"cannot decode audio from .*corrupt\.wav.*Expected a readable audio"):
        load_audio(corrupt)
    with pytest.raises(AudioReadError, match=r"cannot decode audio from <\d+ bytes>"):
        load_audio(b"not audio at all" * 64)
    with pytest.raises(AudioReadError, match="empty bytes"):
        load_audio(b"")


def test_video_without_audio_track(tmp_path):
    import av

    path = tmp_path / "silent_video.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(AudioReadError, match="has no audio track"):
        load_audio(path)


@pytest.mark.parametrize(
    ("audio", "kwargs", "error", "message"),
    [
        (np.zeros(0, np.float32), {"sampling_rate": 16000}, AudioLengthError, r"empty \(0 samples\)"),
        (synthetic_speech(0.05), {"sampling_rate": 16000}, AudioLengthError, r"too short \(0.050 s\).*at least 0.1 s"),
        (
            synthetic_speech(3.0),
            {"sampling_rate": 16000, "max_seconds": 2.0},
            AudioLengthError,
            r"too long \(3.0 s\): the limit is 2 s.*max_seconds=",
        ),
        (np.zeros(16000, np.float32), {"sampling_rate": 16000}, SilentAudioError, r"silent \(peak 0, RMS -240 dBFS\)"),
        (np.full(16000, 5e-5, np.float32), {"sampling_rate": 16000}, SilentAudioError, "expected audible speech"),
        (synthetic_speech(1.0) * 1e-3, {"sampling_rate": 16000}, SilentAudioError, "RMS"),
        (np.full(16000, np.nan, np.float32), {"sampling_rate": 16000}, InvalidAudioError, "NaN or infinite"),
        (np.full(16000, np.inf), {"sampling_rate": 16000}, InvalidAudioError, "NaN or infinite"),
        (
            synthetic_speech(1.0),
            {},
            InvalidAudioError,
            r"without a sampling rate: pass load_audio\(array, sampling_rate",
        ),
        (synthetic_speech(1.0), {"sampling_rate": 0}, InvalidAudioError, "invalid sampling rate 0"),
        (synthetic_speech(1.0), {"sampling_rate": 16000.5}, InvalidAudioError, "whole number of Hz"),
        (synthetic_speech(1.0), {"sampling_rate": "fast"}, InvalidAudioError, "invalid sampling rate 'fast'"),
        (
            np.zeros((100, 200), np.float32),
            {"sampling_rate": 16000},
            InvalidAudioError,
            "cannot tell the channel axis",
        ),
        (np.zeros((2, 3, 4), np.float32), {"sampling_rate": 16000}, InvalidAudioError, "unsupported audio shape"),
        (np.ones(16000, bool), {"sampling_rate": 16000}, InvalidAudioError, "unsupported audio dtype"),
        (np.ones(16000, np.int64), {"sampling_rate": 16000}, InvalidAudioError, "int16/int32 PCM"),
        (42, {}, InvalidAudioError, "cannot read audio from an object of type builtins.int"),
        (["a", "b"], {}, InvalidAudioError, "cannot read audio"),
        ({"audio": [0.1]}, {}, InvalidAudioError, r"dict with keys \['audio'\]"),
        (
            {"array": synthetic_speech(1.0), "sampling_rate": 16000},
            {"sampling_rate": 22050},
            InvalidAudioError,
            "the dict says sampling_rate=16000 but sampling_rate=22050",
        ),
    ],
    ids=lambda value: None,
)
def test_invalid_audio(audio, kwargs, error, message):
    with pytest.raises(error, match=message):
        load_audio(audio, **kwargs)


def test_long_file_is_rejected_before_decoding(tmp_path):
    import soundfile as sf

    path = tmp_path / "long.flac"
    sf.write(path, synthetic_speech(3.0), 16000)
    with pytest.raises(AudioLengthError, match=r"the audio in .*long\.flac' is too long \(3.0 s\)"):
        load_audio(path, max_seconds=2.0)
    assert len(load_audio(path, max_seconds=None)) == 48000


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        load_audio(np.zeros(10), 16000)


# --------------------------------------------------------------------------------------------------------- processor


def test_audio_processor(speech):
    processor = AudioProcessor()
    out = processor(speech, sampling_rate=16000)
    assert set(out) == {"input_values", "attention_mask", "audio", "duration"}
    assert out["input_values"].shape == (1, len(speech)) and out["input_values"].dtype == torch.float32
    assert out["attention_mask"].shape == (1, len(speech)) and out["attention_mask"].dtype == torch.long
    assert bool(out["attention_mask"].all())
    assert out["duration"] == pytest.approx(2.0)
    np.testing.assert_array_equal(out["audio"], speech)
    values = out["input_values"][0]
    assert abs(float(values.mean())) < 1e-3 and float(values.std()) == pytest.approx(1.0, abs=1e-2)


def test_audio_processor_limits(audio_files):
    processor = AudioProcessor(max_seconds=1.0)
    with pytest.raises(AudioLengthError, match="the limit is 1 s"):
        processor(audio_files["wav"])
    assert AudioProcessor(max_seconds=None)(audio_files["m4a"])["duration"] == pytest.approx(2.0, abs=0.01)


# --------------------------------------------------------------------------------------------------------- properties

_DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.bool_]


@st.composite
def _audio(draw):
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    length = st.one_of(st.integers(0, 4), st.integers(100, 3000))
    shape = draw(
        st.one_of(
            st.tuples(length),
            st.tuples(st.integers(0, 3), length),
            st.tuples(length, st.integers(0, 3)),
            st.tuples(st.integers(1, 2), st.integers(1, 3), length),
        )
    )
    if dtype.kind == "f":
        clean = st.floats(-1.0, 1.0, width=dtype.itemsize * 8)
        wild = st.floats(-1e6, 1e6, width=dtype.itemsize * 8) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0])
        elements = draw(st.sampled_from([clean, wild]))
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    audio=_audio(),
    sampling_rate=st.sampled_from([8000, 16000, 22050, 44100, None, 0, -5, 1e9, float("nan")]),
    min_seconds=st.sampled_from([0.0, 0.001, 0.1]),
    as_tensor=st.booleans(),
)
def test_load_audio_property(audio, sampling_rate, min_seconds, as_tensor):
    source = torch.from_numpy(audio) if as_tensor and audio.dtype != np.uint16 else audio
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = load_audio(source, sampling_rate, min_seconds=min_seconds)
    except EmoTalkInputError as err:
        event(type(err).__name__)
        return
    event("valid audio")
    assert out.dtype == np.float32 and out.ndim == 1 and len(out) > 0
    assert np.isfinite(out).all()
    assert np.abs(out).max() <= 1.0
