"""`emotalk prepare`: labels from MEAD / CREMA-D / CSV, tracking gaps, frame-rate resampling, shards and index.

Generated media only: a moving crop of the public-domain astronaut photo with synthetic speech, and a blank
video that has no face.
"""

from __future__ import annotations

import contextlib
import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import synthetic_speech
from emotalk_cli import main as cli_main
from emotalk_common.video_io import iter_frames, probe
from emotalk_training.metadata import labels_for, parse_cremad, parse_mead, read_metadata_csv
from emotalk_training.prepare import load_index
from emotalk_training.tracking import interpolate_gaps, segments, smooth_landmarks
from PIL import Image
from safetensors.numpy import load_file

FRAMES = 30  # 1.2 s at 25 fps
CROP = 64


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, audio: np.ndarray | None = None) -> Path:
    """An H.264 (+ AAC) MP4 from RGB uint8 frames and optional 16 kHz mono audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def face_frames(astronaut: np.ndarray, count: int = FRAMES, phase: float = 0.0) -> list[np.ndarray]:
    """The astronaut's head and shoulders (face about 80 px wide), moving a few pixels."""
    frames = []
    for t in range(count):
        dx = round(6 * np.sin(2 * np.pi * t / count + phase))
        dy = round(3 * np.cos(2 * np.pi * t / count + phase))
        window = astronaut[10 + dy : 310 + dy, 80 + dx : 380 + dx]
        frames.append(np.asarray(Image.fromarray(window).resize((192, 192), Image.Resampling.BILINEAR)))
    return frames


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory, astronaut) -> Path:
    root = tmp_path_factory.mktemp("videos")
    speech = synthetic_speech(FRAMES / 25.0)
    write_video(
        root / "M003" / "video" / "front" / "happy" / "level_2" / "001.mp4", face_frames(astronaut), audio=speech
    )
    write_video(root / "1001_DFA_ANG_HI.mp4", face_frames(astronaut, phase=1.0), audio=speech)
    blank = [np.full((96, 96, 3), 128, dtype=np.uint8)] * 10
    write_video(root / "blank.mp4", blank, audio=synthetic_speech(0.4))
    return root


def prepare(*arguments: str) -> int:
    return cli_main(["prepare", "--crop-size", str(CROP), "--min-clip-seconds", "0.5", "--quiet", *arguments])


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory, video_folder) -> tuple[Path, str, str]:
    """The dataset of ``video_folder`` and what `emotalk prepare` printed (stdout, stderr)."""
    output = tmp_path_factory.mktemp("dataset")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert prepare("--input", str(video_folder), "--output", str(output)) == 0
    return output, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def prepared(prepared_run) -> Path:
    return prepared_run[0]


# ------------------------------------------------------------------------------------------------ labels
def test_mead_and_cremad_labels():
    mead = parse_mead("M003/video/front/happy/level_2/001.mp4")
    assert (mead.speaker, mead.emotion, mead.emotion_known, mead.intensity) == ("M003", "happy", True, 0.6667)
    flat = parse_mead("clips/M030_front_neutral_level1_001.mp4")
    assert (flat.speaker, flat.emotion, flat.intensity) == ("M030", "neutral", 1.0)
    assert parse_mead("M003/video/front/bored/level_2/001.mp4") is None
    crema = parse_cremad("1001_DFA_ANG_HI.flv")
    assert (crema.speaker, crema.emotion, crema.intensity, crema.source) == ("1001", "angry", 1.0, "crema-d")
    assert parse_cremad("1001_DFA_HAP_LO.mp4").intensity == 0.3333
    assert parse_cremad("holiday_video.mp4") is None
    custom = labels_for("me/talking.mp4")
    assert (custom.speaker, custom.emotion, custom.emotion_known) == ("talking", "neutral", False)
    assert labels_for("me/talking.mp4", speaker="alice", emotion="Happy").emotion == "happy"


def test_metadata_csv_overrides_names(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("path,speaker,emotion,intensity,split\ntalking.mp4,bob,surprise,2,test\n1001_DFA_ANG_HI.mp4,,,,\n")
    rows = read_metadata_csv(path)
    labels = labels_for("folder/talking.mp4", rows)
    assert (labels.speaker, labels.emotion, labels.intensity, labels.split) == ("bob", "surprised", 0.6667, "test")
    assert labels_for("1001_DFA_ANG_HI.mp4", rows).emotion == "angry"  # empty cells keep the parsed labels
    bad = tmp_path / "bad.csv"
    bad.write_text("path,emotion\nx.mp4,bored\n")
    with pytest.raises(ValueError, match="unknown emotion 'bored'"):
        labels_for("x.mp4", read_metadata_csv(bad))


# ------------------------------------------------------------------------------------------------ tracking helpers
def test_gaps_are_bridged_and_long_gaps_split_clips():
    valid = np.array([0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert segments(valid, max_gap=2, min_length=2) == [(1, 8), (12, 15)]
    assert segments(valid, max_gap=2, min_length=4) == [(1, 8)]
    assert segments(np.zeros(5, dtype=bool), 2, 1) == []
    values = np.arange(8, dtype=np.float32)[:, None] * np.array([[1.0, 2.0]], dtype=np.float32)
    holes = values.copy()
    mask = np.array([1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    holes[~mask] = 0
    np.testing.assert_allclose(interpolate_gaps(holes, mask), values)
    noisy = values + np.random.default_rng(0).normal(0, 0.1, values.shape).astype(np.float32)
    assert np.abs(smooth_landmarks(noisy, 5) - values).mean() < np.abs(noisy - values).mean()


def test_frames_are_resampled_to_25_fps(tmp_path):
    levels = [np.full((32, 32, 3), 8 * i, dtype=np.uint8) for i in range(15)]  # 0.5 s at 30 fps
    path = write_video(tmp_path / "thirty.mp4", levels, fps=30.0)
    frames = list(iter_frames(path, 25.0, pick="nearest"))
    assert len(frames) == probe(path).frames_at(25.0) == 13  # frame 12 (0.48 s) is still on screen
    shown = [round(float(f.mean()) / 8) for f in frames]
    expected = [min(14, round(k / 25 * 30)) for k in range(len(frames))]
    assert all(abs(a - b) <= 1 for a, b in zip(shown, expected, strict=True))


# ------------------------------------------------------------------------------------------------ prepare
def test_prepare_writes_shards_and_skips_the_faceless_video(prepared_run):
    prepared, stdout, stderr = prepared_run
    assert "skipped blank.mp4: no face found" in stderr
    assert "2 clips" in stdout and "1 skipped" in stdout
    index = load_index(prepared)
    assert index["fps"] == 25.0 and index["crop_size"] == CROP and index["sampling_rate"] == 16000
    clips = {clip["video"]: clip for clip in index["clips"]}
    assert sorted(clips) == ["1001_DFA_ANG_HI.mp4", "M003/video/front/happy/level_2/001.mp4"]
    assert index["videos"]["blank.mp4"]["status"] == "no_face"
    assert "no face" in index["videos"]["blank.mp4"]["reason"]

    mead = clips["M003/video/front/happy/level_2/001.mp4"]
    assert (mead["speaker"], mead["emotion"], mead["intensity"], mead["emotion_known"]) == (
        "M003",
        "happy",
        0.6667,
        True,
    )
    crema = clips["1001_DFA_ANG_HI.mp4"]
    assert (crema["speaker"], crema["emotion"], crema["intensity"]) == ("1001", "angry", 1.0)
    for clip in clips.values():
        shard = load_file(str(prepared / clip["shard"]))
        frames = clip["num_frames"]
        assert frames == FRAMES and clip["split"] == "train" and clip["has_audio"]
        assert shard["landmarks"].shape == (frames, 478, 3) and shard["landmarks"].dtype == np.float32
        assert shard["crops"].shape == (frames, CROP, CROP, 3) and shard["crops"].dtype == np.uint8
        assert shard["audio"].shape == (round(frames / 25 * 16000),) and shard["audio"].dtype == np.float32
        assert shard["frame_valid"].shape == (frames,) and shard["frame_valid"].mean() > 0.9
        assert shard["crop_matrices"].shape == (frames, 2, 3)
        assert np.abs(shard["audio"]).max() > 0.05
        # the crop follows the pipeline's template: eye centres at y = 0.4 of the crop (-0.2 normalized)
        eyes = shard["landmarks"][:, [33, 133, 263, 362], 1].mean()
        assert abs(eyes - (-0.2)) < 0.08
        assert shard["crops"].std() > 20  # a picture, not a blank border


def test_prepare_resumes_without_redoing_finished_videos(prepared, video_folder, capsys):
    shards = {p: p.stat().st_mtime_ns for p in (prepared / "shards").iterdir()}
    before = json.loads((prepared / "index.json").read_text())
    assert prepare("--input", str(video_folder), "--output", str(prepared)) == 0
    assert "3 of 3 videos already processed" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (prepared / "shards").iterdir()} == shards
    assert json.loads((prepared / "index.json").read_text())["clips"] == before["clips"]
    # other content settings cannot silently mix into the same dataset
    assert prepare("--input", str(video_folder), "--output", str(prepared), "--fps", "30") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_holdout_puts_the_tail_in_a_test_clip(tmp_path, video_folder):
    source = video_folder / "1001_DFA_ANG_HI.mp4"
    output = tmp_path / "held-out"
    assert (
        prepare("--input", str(source), "--output", str(output), "--holdout-seconds", "0.6", "--num-workers", "1") == 0
    )
    clips = load_index(output)["clips"]
    assert [(c["split"], c["start_frame"], c["num_frames"]) for c in clips] == [("train", 0, 15), ("test", 15, 15)]
    test = load_file(str(output / clips[1]["shard"]))
    assert test["audio"].shape == (15 * 640,)


def test_prepare_reports_a_missing_input(tmp_path, capsys):
    assert prepare("--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "out")) == 2
    assert "does not exist" in capsys.readouterr().err
