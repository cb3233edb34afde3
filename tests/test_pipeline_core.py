"""The pipeline core: model-side orchestration (predict_landmarks / render), devices and dtypes, option
validation, audio limits and warnings, the original sound track, and transformers' conventions."""

from __future__ import annotations

import base64
import io
import math
import tracemalloc
import warnings

import av
import emotalk_pipeline
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synthetic_speech
from PIL import Image
from test_modeling import save_tiny_composite
from transformers import pipeline

from modeling_emotalk import EmoTalkConfig, EmoTalkGeneratorConfig, EmoTalkLandmarkConfig, EmoTalkModel
from modeling_emotalk.audio_processing import load_audio, read_audio
from modeling_emotalk.errors import AudioLengthError, EmoTalkInputError
from modeling_emotalk.landmarks import canonicalize, relocate
from modeling_emotalk.modeling_generator import EmoTalkGeneratorOutput, SourceFeatures
from modeling_emotalk.modeling_landmark import num_video_frames

QUIET = {"progress": False}
STILL = {"pose": "still", "blink": False, "gaze": False}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_composite(tmp_path_factory.mktemp("tiny-core"), emotion_std=0.5, expression_std=0.5)


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return pipeline("emotional-talking-face", model=str(tiny_dir))


@pytest.fixture(scope="module")
def audio():
    return {"array": synthetic_speech(1.2), "sampling_rate": 16000}


# ------------------------------------------------------------------- frozen copy of the pre-change code path
def _old_landmarks(pipe, inputs, fps=25.0, emotion_weights=None, window_seconds=10.0, overlap_seconds=1.0):
    """The pipeline's former stage-1 loop (numpy cross-fade) with pose still, no blink, no gaze."""
    model, face = pipe.model, inputs["face"]
    num_frames = math.ceil(inputs["audio"].size / 16000 * fps)
    canonical, frame = canonicalize(torch.from_numpy(face.landmarks)[None])
    values = inputs["input_values"].float()
    window = max(1, round(window_seconds * fps))
    overlap = min(max(1, round(overlap_seconds * fps)), window // 2)
    totals, coverage = {}, np.zeros(num_frames, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    start = 0
    while True:
        end = min(start + window, num_frames)
        first, last = round(start / fps * 16000), min(round(end / fps * 16000), values.shape[1])
        emotion = None if emotion_weights is None else torch.from_numpy(emotion_weights[start:end])[None]
        out = model.landmark_model(
            values[:, first:last], reference_landmarks=canonical, emotion=emotion, num_frames=end - start, fps=fps
        )
        fade = np.ones(end - start, np.float32)
        if start > 0:
            fade[:overlap] = ramp
        if end < num_frames:
            fade[-overlap:] = np.minimum(fade[-overlap:], ramp[::-1])
        for key in ("expression", "head_pose", "gaze", "blink"):
            value = getattr(out, key)[0].float().numpy()
            totals.setdefault(key, np.zeros((num_frames, *value.shape[1:]), np.float32))
            totals[key][start:end] += value * fade.reshape(-1, *([1] * (value.ndim - 1)))
        coverage[start:end] += fade
        if end >= num_frames:
            break
        start += hop if (hop := window - overlap) else 1
    motion = {k: v / coverage.reshape(-1, *([1] * (v.ndim - 1))) for k, v in totals.items()}
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]  # noqa: E731
    zeros = lambda x: np.zeros_like(x)  # noqa: E731
    return relocate(
        canonical, t(motion["expression"]), t(motion["head_pose"] * 0.0), t(zeros(motion["gaze"])),
        t(zeros(motion["blink"])), frame,
    )[0]  # fmt: skip


def _old_frames(pipe, inputs, landmarks, batch_size=8):
    generator, face = pipe.model.generator, inputs["face"]
    pixels = torch.from_numpy(face.crop).permute(2, 0, 1)[None].float() / 255
    source = generator.encode_source(pixels, torch.from_numpy(face.landmarks)[None])
    out = [
        generator(source=source, driving_landmarks=landmarks[s : s + batch_size]).frames
        for s in range(0, len(landmarks), batch_size)
    ]
    return (torch.cat(out).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


@torch.inference_mode()
def test_outputs_match_the_pre_change_code_path(pipe, astronaut):
    """Stage-1 landmarks bit for bit (windowed, cross-faded), frames within float rounding of the generator."""
    audio = {"array": synthetic_speech(3.0, seed=2), "sampling_rate": 16000}
    inputs = pipe.preprocess({"image": astronaut, "audio": audio})
    pipe.window_seconds, pipe.overlap_seconds = 1.0, 0.3
    try:
        video = pipe(astronaut, audio, emotion="happy", paste_back=False, seed=0, **STILL, **QUIET)
    finally:
        del pipe.window_seconds, pipe.overlap_seconds
    happy = np.zeros((video.num_frames, 8), np.float32)
    happy[:, 5] = 1
    old = _old_landmarks(pipe, inputs, emotion_weights=happy, window_seconds=1.0, overlap_seconds=0.3)
    np.testing.assert_array_equal(video.landmarks, old.numpy())
    frames = _old_frames(pipe, inputs, old)
    assert np.abs(video.frames.astype(int) - frames).max() <= 2


@pytest.mark.parametrize("num_samples", [4480, 19200, 16001])
def test_pipeline_counts_frames_as_stage_1_does(pipe, astronaut, num_samples):
    """One frame count everywhere: 4480 samples at 25 fps are exactly 7 frames (float rounding once made it 8)."""
    audio = {"array": synthetic_speech(num_samples / 16000 + 0.01, seed=1)[:num_samples], "sampling_rate": 16000}
    video = pipe(astronaut, audio, paste_back=False, seed=0, **STILL, **QUIET)
    expected = {4480: 7, 19200: 30, 16001: 26}[num_samples]
    assert video.num_frames == expected == num_video_frames(num_samples, 25.0)


# -------------------------------------------------------------------------------------- device and dtype
def test_render_moves_every_batch_to_the_model_device(pipe, astronaut, audio, monkeypatch):
    """The renderer puts the source and every driving batch on the model's device (checked with "meta")."""
    video = pipe(astronaut, audio, seed=0, paste_back=False, batch_size=4, **QUIET)
    seen = []
    generator = pipe.model.generator

    def encode_source(pixel_values, landmarks):
        seen.append(("source", pixel_values.device, landmarks.device, pixel_values.dtype))
        return SourceFeatures(pixel_values=pixel_values[:, None], features=(), landmarks=landmarks[:, None])

    def forward(source, driving_landmarks, **kwargs):
        seen.append(("driving", driving_landmarks.device, source.landmarks.device, driving_landmarks.dtype))
        return EmoTalkGeneratorOutput(frames=torch.zeros(len(driving_landmarks), 3, 64, 64))

    monkeypatch.setattr(generator, "encode_source", encode_source)
    monkeypatch.setattr(generator, "forward", forward)
    monkeypatch.setattr(EmoTalkModel, "device", property(lambda self: torch.device("meta")))
    frames = video.frames
    assert frames.shape == (video.num_frames, 64, 64, 3)
    assert [kind for kind, *_ in seen] == ["source"] + ["driving"] * math.ceil(video.num_frames / 4)
    assert all(a.type == "meta" and b.type == "meta" and dtype == torch.float32 for _, a, b, dtype in seen)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_end_to_end(tiny_dir, astronaut, audio, dtype):
    reference = pipeline("emotional-talking-face", model=str(tiny_dir))(astronaut, audio, seed=0, **QUIET)
    half = pipeline("emotional-talking-face", model=str(tiny_dir), dtype=dtype)
    assert half.model.dtype == dtype
    seen = []
    hook = half.model.landmark_model.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    try:
        video = half(astronaut, audio, seed=0, **QUIET)
        frames = video.frames
    finally:
        hook.remove()
    assert seen and set(seen) == {dtype}
    assert video.landmarks.dtype == np.float32 and video.emotion_weights.dtype == np.float32
    assert frames.dtype == np.uint8 and frames.shape == reference.frames.shape
    assert np.isfinite(video.landmarks).all()
    assert np.abs(video.landmarks - reference.landmarks).max() < 0.1
    assert np.abs(frames.astype(int) - reference.frames).mean() < 3


# ---------------------------------------------------------------------------------------- model API
def test_model_render_batches_and_forward_uses_the_same_operations(tiny_dir, face_crop):
    model = EmoTalkModel.from_pretrained(tiny_dir).eval()
    crop, points = face_crop
    pixels = torch.from_numpy(np.array(Image.fromarray(crop).resize((64, 64)))).permute(2, 0, 1)
    points = torch.from_numpy(points)
    audio = torch.from_numpy(synthetic_speech(0.8))[None]
    with torch.no_grad():
        motion = model.predict_landmarks(audio, points[None], emotion=torch.tensor([5]), fps=25)
        batches = list(model.render(pixels, points, motion.landmarks[0], batch_size=8))
        full = model(audio, pixels[None].float() / 255, points[None], emotion=torch.tensor([5]), fps=25)
    assert motion.landmarks.shape == (1, 20, 478, 3) and motion.landmarks.dtype == torch.float32
    assert [b.shape for b in batches] == [(8, 64, 64, 3), (8, 64, 64, 3), (4, 64, 64, 3)]
    assert all(b.dtype == torch.uint8 for b in batches)
    torch.testing.assert_close(full.landmarks, motion.landmarks)
    as_uint8 = (full.frames[0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    torch.testing.assert_close(as_uint8, torch.cat(batches))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(model.render(pixels, points, motion.landmarks[0], batch_size=0))


# ---------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"paste_back": "False"}, r"paste_back must be True or False, got 'False'"),
        ({"blink": "no"}, r"blink must be True or False, got 'no'"),
        ({"gaze": 1}, r"gaze must be True or False, got 1"),
        ({"progress": None, "blink": 0}, r"blink must be True or False"),
        ({"intensity": "0.5"}, r"intensity must be a number in \[0, 1\], got '0.5'"),
        ({"pose": "0.5"}, r"pose must be 'natural', 'still' or a number in \[0, 3\], got '0.5'"),
        ({"fps": "25"}, r"fps must be a number"),
        ({"intensity": True}, r"intensity must be a number"),
        ({"batch_size": 257}, r"batch_size must be a positive integer up to 256"),
        ({"batch_size": 2.0}, r"batch_size must be a positive integer"),
        ({"seed": "1"}, r"seed must be a non-negative integer"),
        ({"face_index": -1}, r"face_index must be a non-negative integer"),
        ({"sampling_rate": "16000"}, r"sampling_rate must be a rate in Hz"),
        ({"emotion": {"happy": 1e39}}, r"weight of emotion 'happy' is too large"),
        ({"emotion": {"happy": 9e5, "sad": 9e5, "fear": 1e39}}, r"too large"),
        ({"emotion": {"happy": "0.5"}}, r"weight of emotion 'happy' must be a number, got '0.5'"),
        ({"emotion": [("0", "happy")]}, r"schedule start times must be numbers"),
        ({"output_type": "video"}, r"output_type must be one of uint8, np, pil"),
    ],
)
def test_every_option_is_validated_the_same_way(pipe, astronaut, audio, kwargs, message):
    with pytest.raises(EmoTalkInputError, match=message):
        pipe(astronaut, audio, **kwargs)


def test_numpy_scalars_are_accepted_for_every_option(pipe, astronaut, audio):
    video = pipe(
        astronaut, audio, seed=np.int64(2), batch_size=np.int32(5), intensity=np.float32(0.5), pose=np.float64(0.5),
        fps=np.int64(20), blink=np.bool_(True), gaze=np.bool_(False), paste_back=np.bool_(False), **QUIET,
    )  # fmt: skip
    assert video.frames.shape == (math.ceil(1.2 * 20), 64, 64, 3) and video.seed == 2


def test_cli_style_overflowing_blend_is_refused(pipe, astronaut, audio):
    from emotalk_pipeline.emotion import parse_emotion_string

    with pytest.raises(EmoTalkInputError, match="too large"):
        pipe(astronaut, audio, emotion=parse_emotion_string("happy:1e39"))


# ------------------------------------------------------------------------------------------------ audio
def test_truncated_wav_warns(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, synthetic_speech(2.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"truncated: its WAV header declares 64000 bytes .* only 31978"):
        samples = load_audio(path)
    assert abs(samples.size - 16000) < 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(data)  # the complete file: no warning


def test_noise_warns_and_speech_does_not():
    noise = (0.3 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    with pytest.warns(UserWarning, match="sounds like noise"):
        load_audio(noise, 16000)
    from emotalk_pipeline import ASSETS

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(ASSETS / "demo_speech.flac")
        load_audio(synthetic_speech(2.0), 16000)


@pytest.fixture(scope="module")
def two_hour_flac(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "tone.flac"
    minute = np.full(8000 * 60, 0.25, np.float32)  # a constant: FLAC stores it in a few bytes per block
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, format="FLAC") as f:
        for _ in range(120):
            f.write(minute)
    return path


def test_long_file_is_refused_from_its_metadata_before_decoding(two_hour_flac):
    assert two_hour_flac.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(AudioLengthError, match=r"too long \(7200.0 s\): the limit is 600 s"):
            load_audio(two_hour_flac)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_decoding_is_bounded_when_the_header_lies(two_hour_flac, monkeypatch):
    class Lying:
        frames, samplerate, channels = 8000 * 5, 8000, 1

    monkeypatch.setattr(sf, "info", lambda source: Lying())
    tracemalloc.start()
    try:
        with pytest.raises(AudioLengthError, match=r"whatever its header says\): the limit is 10 s"):
            load_audio(two_hour_flac, max_seconds=10.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # 11 s at 8 kHz, not 2 h


def test_pipeline_passes_its_limit_down(pipe, astronaut, two_hour_flac):
    tracemalloc.start()
    try:
        with pytest.raises(AudioLengthError, match="longer than the limit of 30 s"):
            pipe(astronaut, str(two_hour_flac), max_audio_seconds=30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_original_audio_is_kept_and_written(pipe, astronaut, tmp_path):
    mono = synthetic_speech(1.0, sampling_rate=44100)
    stereo = np.stack([mono, 0.5 * mono], axis=0)  # channels first: kept as (N, C)
    video = pipe(astronaut, {"array": stereo, "sampling_rate": 44100}, seed=0, paste_back=False, **QUIET)
    assert video.original_sampling_rate == 44100 and video.original_audio.shape == (44100, 2)
    np.testing.assert_array_equal(video.original_audio, stereo.T)
    assert video.sampling_rate == 16000 and video.audio.ndim == 1 and abs(video.audio.size - 16000) <= 1
    path = video.save(tmp_path / "stereo.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == 44100 and stream.codec_context.channels == 2
    wav = tmp_path / "in.wav"
    sf.write(wav, stereo.T, 44100)
    loaded = read_audio(wav)
    assert loaded.original.shape == (44100, 2) and loaded.original_sampling_rate == 44100


# --------------------------------------------------------------------------------- transformers' edges
def test_lists_in_lists_out(pipe, astronaut, audio):
    other = {"array": synthetic_speech(0.6, seed=1), "sampling_rate": 16000}
    pairs = pipe([astronaut, astronaut], [audio, other], seed=0, **STILL, **QUIET)
    dicts = pipe(
        [{"image": astronaut, "audio": audio}, {"image": astronaut, "audio": other}], seed=0, **STILL, **QUIET
    )
    single = pipe(astronaut, other, seed=0, **STILL, **QUIET)
    assert isinstance(pairs, list) and len(pairs) == 2 and isinstance(dicts, list)
    assert [v.num_frames for v in pairs] == [30, 15]
    np.testing.assert_array_equal(pairs[1].landmarks, single.landmarks)
    np.testing.assert_array_equal(dicts[1].landmarks, single.landmarks)
    with pytest.raises(EmoTalkInputError, match="2 images need a list of 2 audio inputs"):
        pipe([astronaut, astronaut], [audio])


def test_base64_data_uri_and_url_images(pipe, astronaut, audio, monkeypatch):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    expected = pipe(astronaut, audio, seed=0, **STILL, **QUIET).landmarks
    for image in (encoded, f"data:image/png;base64,{encoded}"):
        np.testing.assert_array_equal(pipe(image, audio, seed=0, **STILL, **QUIET).landmarks, expected)
    import transformers.image_utils

    asked = []
    monkeypatch.setattr(
        transformers.image_utils, "load_image", lambda url: asked.append(url) or Image.fromarray(astronaut)
    )
    video = pipe("https://example.com/face.png", audio, seed=0, **STILL, **QUIET)
    assert asked == ["https://example.com/face.png"]
    np.testing.assert_array_equal(video.landmarks, expected)


def test_output_reads_as_a_mapping(pipe, astronaut, audio):
    video = pipe(astronaut, audio, seed=0, paste_back=False, **QUIET)
    assert "frames" in video and "audio" in video and "nothing" not in video
    assert {"frames", "audio", "sampling_rate", "original_audio"} <= set(video.keys())
    assert video["sampling_rate"] == 16000 and video["audio"] is video.audio
    np.testing.assert_array_equal(video["frames"], video.frames)
    with pytest.raises(KeyError):
        video["nothing"]


@pytest.mark.parametrize("output_type", ["pil", "np"])
def test_frames_go_to_diffusers_export_to_video_without_warnings(pipe, astronaut, audio, tmp_path, output_type):
    pytest.importorskip("imageio_ffmpeg")
    from diffusers.utils import export_to_video

    video = pipe(astronaut, audio, seed=0, output_type=output_type, **QUIET)
    uint8 = pipe(astronaut, audio, seed=0, **QUIET).frames
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = export_to_video(video.frames, str(tmp_path / "out.mp4"), fps=25)
    with av.open(path) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == uint8.shape
    assert np.abs(decoded.astype(int) - uint8).mean() < 8


# --------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: EmoTalkGeneratorConfig(block_out_channels=(8, 16)), ValueError, "three positive integers"),
        (lambda: EmoTalkGeneratorConfig(block_out_channels=(8, 16, 32)), ValueError, "multiples of norm_num_groups"),
        (lambda: EmoTalkGeneratorConfig(image_sise=64), TypeError, r"'image_sise' \(did you mean 'image_size'\?\)"),
        (lambda: EmoTalkLandmarkConfig(hiden_size=8), TypeError, r"did you mean 'hidden_size'"),
        (lambda: EmoTalkConfig(crop_sise=64), TypeError, r"did you mean 'crop_size'"),
    ],
)
def test_configs_refuse_bad_values_at_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_known_config_keys_still_load(tmp_path):
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(emotalk_pipeline.DEFAULT_CHECKPOINT).crop_size == 256
    config = EmoTalkConfig(name_or_path="x", torch_dtype="float32", architectures=["EmoTalkModel"], auto_map={})
    config.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is EmoTalkConfig
