"""The emotional-talking-face pipeline, MP4 output, batch mode and CLI, end to end on CPU."""

from __future__ import annotations

import csv
import math

import av
import emotalk_pipeline
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synthetic_speech
from emotalk_cli import main as cli_main
from emotalk_pipeline.emotion import emotion_weights, parse_emotion_string
from PIL import Image
from test_modeling import save_tiny_composite
from transformers import pipeline

from modeling_emotalk import EMOTIONS
from modeling_emotalk.errors import EmoTalkInputError

QUIET = {"progress": False}


def probe(path) -> dict:
    """Stream facts of an MP4: codec, frame count and duration per stream type."""
    facts = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            duration = float(stream.duration * stream.time_base) if stream.duration else None
            facts[stream.type] = {"codec": stream.codec_context.name, "frames": stream.frames, "duration": duration}
        facts["count"] = len(container.streams)
    return facts


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny seeded composite model whose stage 1 visibly reacts to emotion (64² crops: fast)."""
    # emotion and audio move the landmarks by a visible amount
    return save_tiny_composite(tmp_path_factory.mktemp("tiny-emotalk"), emotion_std=0.5, expression_std=0.5)


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model_dir):
    return pipeline("emotional-talking-face", model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def default_pipe():
    return pipeline("emotional-talking-face")


# ------------------------------------------------------------------------------------------- end to end
def test_default_model_end_to_end_mp4(default_pipe, astronaut, speech, tmp_path):
    duration = speech.size / 16000
    video = default_pipe(astronaut, {"array": speech, "sampling_rate": 16000}, emotion="happy", seed=0, **QUIET)
    frames = video.frames
    expected = round(duration * 25)
    assert frames.dtype == np.uint8 and frames.shape[1:] == astronaut.shape
    assert abs(len(frames) - expected) <= 1
    path = video.save(tmp_path / "out.mp4")
    facts = probe(path)
    assert facts["count"] == 2
    assert facts["video"]["codec"] == "h264" and abs(facts["video"]["frames"] - expected) <= 1
    assert facts["audio"]["codec"] == "aac"
    assert abs(facts["audio"]["duration"] - duration) <= 1 / 25
    assert abs(facts["video"]["duration"] - duration) <= 1 / 25
    assert not list(tmp_path.glob(".*partial*"))
    # outside the face mask every frame is the photo, bit for bit
    face = default_pipe.face_processor(astronaut)
    mask = default_pipe.face_processor._paste_plan(face, 256)
    x0, y0, x1, y1 = mask[:4]
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (frames[:, outside] == astronaut[outside]).all()
    # the mouth region changes over time
    mouth = face.image_landmarks[[13, 14, 61, 291], :2].mean(0).astype(int)
    patch = frames[:, mouth[1] - 10 : mouth[1] + 10, mouth[0] - 15 : mouth[0] + 15].astype(np.float32)
    assert patch.std(axis=0).mean() > 0.5


def test_same_seed_same_video_and_other_seed_differs(tiny_pipe, astronaut, speech):
    audio = {"array": speech, "sampling_rate": 16000}
    a = tiny_pipe(astronaut, audio, seed=3, **QUIET)
    b = tiny_pipe(astronaut, audio, seed=3, **QUIET)
    c = tiny_pipe(astronaut, audio, seed=4, **QUIET)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.seed == 3
    assert np.abs(a.landmarks - c.landmarks).max() > 1e-3


def test_very_short_audio(tiny_pipe, astronaut):
    video = tiny_pipe(astronaut, {"array": synthetic_speech(0.3), "sampling_rate": 16000}, seed=0, **QUIET)
    assert video.frames.shape[0] == math.ceil(0.3 * 25)


def test_crop_output_fps_and_frame_count(tiny_pipe, astronaut):
    audio = synthetic_speech(1.3)
    video = tiny_pipe(astronaut, audio, sampling_rate=16000, fps=30, paste_back=False, batch_size=5, **QUIET)
    assert video.frames.shape == (math.ceil(1.3 * 30), 64, 64, 3)
    assert video.landmarks.shape == (math.ceil(1.3 * 30), 478, 3)


def test_emotion_schedule_and_blend_change_the_landmarks_where_they_should(tiny_pipe, astronaut):
    audio = {"array": synthetic_speech(4.0), "sampling_rate": 16000}
    still = dict(pose="still", blink=False, gaze=False, seed=0, **QUIET)
    neutral = tiny_pipe(astronaut, audio, emotion="neutral", **still).landmarks
    happy = tiny_pipe(astronaut, audio, emotion="happy", **still).landmarks
    scheduled = tiny_pipe(astronaut, audio, emotion=[(0.0, "neutral"), (3.0, "happy")], **still)
    blend = tiny_pipe(astronaut, audio, emotion={"happy": 0.5, "sad": 0.5}, **still)
    assert np.abs(neutral - happy).max() > 1e-3
    # Frames further from the switch than the decoder's reach (2 layers × 1 s) are exactly "neutral";
    # the last frames are much closer to "happy" than to "neutral".
    np.testing.assert_allclose(scheduled.landmarks[:20], neutral[:20], atol=1e-5)
    tail = slice(-10, None)
    to_happy = np.abs(scheduled.landmarks[tail] - happy[tail]).mean()
    assert to_happy < 0.5 * np.abs(scheduled.landmarks[tail] - neutral[tail]).mean()
    assert scheduled.emotion_weights[0, EMOTIONS.index("neutral")] == 1
    assert scheduled.emotion_weights[-1, EMOTIONS.index("happy")] == 1
    np.testing.assert_allclose(blend.emotion_weights[0, [EMOTIONS.index("happy"), EMOTIONS.index("sad")]], 0.5)
    assert np.abs(blend.landmarks - happy).max() > 1e-4
    auto = tiny_pipe(astronaut, audio, emotion="auto", **still)
    np.testing.assert_allclose(auto.emotion_weights.sum(1), 1.0, atol=1e-5)
    assert auto.emotion in EMOTIONS


def test_pose_and_blink_options(default_pipe, astronaut):
    """Landmarks only (no frames are rendered): head motion for "natural", none for "still"; blinks on request."""
    from modeling_emotalk.landmarks import RIGHT_EYE_LOWER, RIGHT_EYE_UPPER, canonical_frame

    audio = {"array": synthetic_speech(6.0), "sampling_rate": 16000}
    natural = default_pipe(astronaut, audio, pose="natural", blink=True, seed=1, **QUIET).landmarks
    still = default_pipe(astronaut, audio, pose="still", blink=False, gaze=False, seed=1, **QUIET).landmarks

    def head_motion(landmarks):
        _, rotation, translation = canonical_frame(torch.from_numpy(landmarks))
        return np.ptp(translation[:, :2].numpy(), axis=0).max(), np.ptp(rotation[:, 0, 2].numpy())

    moving, steady = head_motion(natural), head_motion(still)
    assert min(moving) > 0.005
    assert steady[0] < 0.2 * moving[0] and steady[1] < 0.2 * moving[1]

    def eye_opening(landmarks):
        return np.abs(landmarks[:, list(RIGHT_EYE_UPPER), 1] - landmarks[:, list(RIGHT_EYE_LOWER), 1]).mean(1)

    assert eye_opening(natural).min() < 0.3 * np.median(eye_opening(natural))  # at least one blink in 6 s
    assert eye_opening(still).min() > 0.7 * np.median(eye_opening(still))


def test_long_audio_windows_are_seamless(tiny_pipe, astronaut):
    """Stage 1 in overlapping windows: the result matches a single window away from the seams and is continuous."""
    audio = {"array": synthetic_speech(6.0, seed=2), "sampling_rate": 16000}
    kwargs = dict(pose="still", blink=False, gaze=False, seed=0, emotion="happy", **QUIET)
    whole = tiny_pipe(astronaut, audio, **kwargs).landmarks
    tiny_pipe.window_seconds, tiny_pipe.overlap_seconds = 2.0, 0.5
    try:
        windowed = tiny_pipe(astronaut, audio, **kwargs).landmarks
    finally:
        del tiny_pipe.window_seconds, tiny_pipe.overlap_seconds
    assert windowed.shape == whole.shape
    step = np.abs(np.diff(windowed, axis=0)).max(axis=(1, 2))
    assert step.max() < 3 * np.abs(np.diff(whole, axis=0)).max(axis=(1, 2)).max() + 1e-6
    np.testing.assert_allclose(windowed[5:30], whole[5:30], atol=0.05)


def test_pipeline_save_pretrained_round_trip(tiny_pipe, tmp_path, astronaut):
    tiny_pipe.save_pretrained(tmp_path)
    # transformers treats a folder with `custom_pipelines` as remote code: the saved pipeline file runs from it
    reloaded = pipeline(model=str(tmp_path), trust_remote_code=True)
    audio = {"array": synthetic_speech(1.0), "sampling_rate": 16000}
    a = tiny_pipe(astronaut, audio, seed=0, **QUIET)
    b = reloaded(astronaut, audio, seed=0, **QUIET)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "preprocessor_config.json").exists()


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"emotion": "joyful"}, "unknown emotion 'joyful': expected one of neutral, angry, contempt"),
        ({"emotion": {"happy": -1}}, "must be finite and >= 0"),
        ({"emotion": [(1.0, "happy"), (0.5, "sad")]}, "increasing"),
        ({"intensity": 1.5}, r"intensity must be a number in \[0, 1\]"),
        ({"intensity": "strong"}, "intensity must be a number"),
        ({"fps": 0}, r"fps must be a number in \[1, 60\]"),
        ({"fps": 1000}, r"fps must be a number in \[1, 60\]"),
        ({"pose": "wild"}, "pose must be 'natural', 'still' or a number"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_parameters_are_refused_clearly(tiny_pipe, astronaut, speech, kwargs, message):
    with pytest.raises(EmoTalkInputError, match=message):
        tiny_pipe(astronaut, {"array": speech, "sampling_rate": 16000}, **kwargs)


def test_bad_media_is_refused_clearly(tiny_pipe, astronaut, speech, tmp_path):
    audio = {"array": speech, "sampling_rate": 16000}
    with pytest.raises(EmoTalkInputError, match="no face found"):
        tiny_pipe(np.full((256, 256, 3), 128, np.uint8), audio)
    small = np.array(Image.fromarray(astronaut).resize((96, 96)))
    tiny_face = np.full((800, 800, 3), 200, np.uint8)
    tiny_face[300:396, 300:396] = small
    with pytest.raises(EmoTalkInputError, match=r"too small|no face"):
        tiny_pipe(tiny_face, audio)
    garbage = tmp_path / "broken.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(EmoTalkInputError, match=r"broken\.jpg"):
        tiny_pipe(str(garbage), audio)
    with pytest.raises(EmoTalkInputError):
        tiny_pipe(astronaut, str(garbage))
    with pytest.raises(EmoTalkInputError, match="silent"):
        tiny_pipe(astronaut, {"array": np.zeros(16000, np.float32), "sampling_rate": 16000})
    with pytest.raises(EmoTalkInputError, match=r"NaN|nan|finite"):
        tiny_pipe(astronaut, {"array": np.full(16000, np.nan, np.float32), "sampling_rate": 16000})
    with pytest.raises(EmoTalkInputError, match=r"empty|short"):
        tiny_pipe(astronaut, {"array": np.zeros(0, np.float32), "sampling_rate": 16000})
    with pytest.raises(EmoTalkInputError, match="longer than the limit of 1 s"):
        tiny_pipe(astronaut, audio, max_audio_seconds=1.0)


def test_missing_output_directory_is_an_error_and_nothing_is_written(tiny_pipe, astronaut, speech, tmp_path):
    video = tiny_pipe(astronaut, {"array": speech, "sampling_rate": 16000}, **QUIET)
    with pytest.raises(EmoTalkInputError, match="does not exist"):
        video.save(tmp_path / "missing" / "out.mp4")
    with pytest.raises(EmoTalkInputError, match=r"\.mp4"):
        video.save(tmp_path / "out.avi")

    def broken():
        yield np.zeros((2, 64, 64, 3), np.uint8)
        raise RuntimeError("renderer died")

    from emotalk_common.video_io import write_mp4

    with pytest.raises(RuntimeError, match="renderer died"):
        write_mp4(tmp_path / "half.mp4", broken(), 25.0)
    assert list(tmp_path.iterdir()) == []


def test_emotion_parsing():
    assert parse_emotion_string("happy") == "happy"
    assert parse_emotion_string("happy:0.7,surprised:0.3") == {"happy": 0.7, "surprised": 0.3}
    assert parse_emotion_string("0:neutral,2.5:happy") == [(0.0, "neutral"), (2.5, "happy")]
    weights = emotion_weights([(0.0, "neutral"), (1.0, "sad")], EMOTIONS, num_frames=50, fps=25)
    assert weights.shape == (50, 8)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
    assert emotion_weights("auto", EMOTIONS, 10, 25) is None


# ----------------------------------------------------------------------------------------- batch and CLI
def test_batch_manifest_with_one_bad_row(tiny_model_dir, astronaut, tmp_path, capsys):
    Image.fromarray(astronaut).save(tmp_path / "face.png")
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(tmp_path / "blank.png")
    sf.write(tmp_path / "speech.wav", synthetic_speech(1.0), 16000)
    with (tmp_path / "jobs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "audio", "emotion", "intensity", "output"])
        writer.writerow(["face.png", "speech.wav", "happy", "0.5", "a.mp4"])
        writer.writerow(["blank.png", "speech.wav", "sad", "1", "b.mp4"])
        writer.writerow(["face.png", "speech.wav", "happy:0.5,surprised:0.5", "", "c.mp4"])
    out = tmp_path / "out"
    out.mkdir()
    argv = [
        "generate",
        "--manifest",
        str(tmp_path / "jobs.csv"),
        "--output-dir",
        str(out),
        "--model",
        str(tiny_model_dir),
    ]
    assert cli_main([*argv, "--seed", "0"]) == 1
    captured = capsys.readouterr()
    assert "row 2 failed: no face found" in captured.err
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a.mp4", "c.mp4"]
    assert probe(out / "a.mp4")["video"]["frames"] == 25
    # re-running skips the finished rows
    assert cli_main([*argv, "--seed", "0"]) == 1
    assert '"skipped": 2' in capsys.readouterr().out


def test_cli_generate_and_errors(tiny_model_dir, astronaut, tmp_path, capsys):
    Image.fromarray(astronaut).save(tmp_path / "face.jpg")
    sf.write(tmp_path / "speech.flac", synthetic_speech(1.0), 16000)
    out = tmp_path / "talk.mp4"
    argv = ["generate", "--image", str(tmp_path / "face.jpg"), "--audio", str(tmp_path / "speech.flac")]
    argv += ["--model", str(tiny_model_dir), "--seed", "1"]
    assert cli_main([*argv, "--emotion", "0:neutral,0.5:happy", "--output", str(out)]) == 0
    assert probe(out)["count"] == 2
    assert cli_main([*argv, "--emotion", "furious", "--output", str(tmp_path / "x.mp4")]) == 2
    assert "unknown emotion 'furious'" in capsys.readouterr().err
    assert cli_main([*argv, "--output", str(tmp_path / "nope" / "x.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_registration_defaults_to_the_embedded_checkpoint():
    assert emotalk_pipeline.DEFAULT_CHECKPOINT.joinpath("model.safetensors").is_file()
    assert emotalk_pipeline.ASSETS.joinpath("demo_speech.flac").is_file()


def test_batch_manifest_split_across_two_accelerate_processes(tiny_model_dir, astronaut, tmp_path):
    import os
    import socket
    import subprocess

    Image.fromarray(astronaut).save(tmp_path / "face.png")
    sf.write(tmp_path / "speech.wav", synthetic_speech(0.5), 16000)
    rows = "".join(f"face.png,speech.wav,neutral,1,v{i}.mp4\n" for i in range(4))
    (tmp_path / "jobs.csv").write_text("image,audio,emotion,intensity,output\n" + rows)
    out = tmp_path / "out"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(port)]
    command += ["-m", "emotalk_cli", "generate", "--manifest", str(tmp_path / "jobs.csv")]
    command += ["--output-dir", str(out), "--model", str(tiny_model_dir), "--seed", "0"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count('"done": 2') == 2  # each process rendered its half
    assert sorted(p.name for p in out.glob("*.mp4")) == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]


def test_blinks_are_visible_in_the_rendered_frames(default_pipe, astronaut):
    """Re-detect the face on the rendered frames: the eyes close at the blink (not only in the landmarks)."""
    from modeling_emotalk.landmarks import LEFT_EYE_LOWER, LEFT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER

    upper, lower = list(RIGHT_EYE_UPPER + LEFT_EYE_UPPER), list(RIGHT_EYE_LOWER + LEFT_EYE_LOWER)
    video = default_pipe(
        astronaut, {"array": synthetic_speech(6.0), "sampling_rate": 16000}, pose="still", seed=1, **QUIET
    )
    closure = np.abs(video.landmarks[:, upper, 1] - video.landmarks[:, lower, 1]).mean(1)
    blink = int(closure.argmin())
    assert closure[blink] < 0.2 * np.median(closure)  # seed 1 blinks within the first 6 s

    def opening(frame):
        points = default_pipe.face_processor.detect(frame)[0]
        return np.abs(points[upper, 1] - points[lower, 1]).mean()

    assert opening(video.frames[blink]) < 0.4 * opening(video.frames[0])
