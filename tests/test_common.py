"""The torch-free shared layer ``emotalk_common``: one definition of the constants, one video reader/writer,
one forced aligner, distinct lip measures, one input-error base class, and its place in the Hub remote code."""

from __future__ import annotations

import ast
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import synthetic_speech
from emotalk_common import alignment
from emotalk_common.alignment import AlignmentError, PhoneSegment, align_phones, clean_label, merge_silence, pcm16
from emotalk_common.constants import EMOTION_LABELS, SAMPLING_RATE
from emotalk_common.exceptions import EmoTalkInputError
from emotalk_common.lip_measures import eye_corner_distance, lip_opening_2d, lip_opening_3d
from emotalk_common.topology import EYE_OUTER_CORNERS, LIPS_INNER_LOWER, LIPS_INNER_UPPER
from emotalk_common.video_io import frame_count, iter_frames, probe, read_audio, write_mp4

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = (
    "modeling_emotalk",
    "pipeline",
    "training",
    "evaluation",
    "recipes",
    "benchmarks",
    "space",
    "conversion",
)


# ------------------------------------------------------------------------------------------- constants
def _assignments(name: str) -> list[tuple[str, ast.expr]]:
    found = []
    for folder in (*SOURCE_FOLDERS, "common"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                    for target in targets:
                        if isinstance(target, ast.Name) and target.id == name:
                            found.append((str(file.relative_to(ROOT)), node.value))
    return found


def test_sampling_rate_is_defined_once():
    literal = [where for where, value in _assignments("SAMPLING_RATE") if isinstance(value, ast.Constant)]
    assert literal == ["common/constants.py"]


def test_the_emotion_list_is_written_once():
    written = []
    for folder in (*SOURCE_FOLDERS, "common"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                literal = isinstance(node, ast.Tuple | ast.List) and all(
                    isinstance(e, ast.Constant) for e in node.elts
                )
                if literal and [e.value for e in node.elts] == list(EMOTION_LABELS):
                    written.append(str(file.relative_to(ROOT)))
    assert written == ["common/constants.py"]


def test_every_package_uses_the_shared_constants():
    from emotalk_evaluation.emotion import EMOTIONS as evaluation_emotions
    from emotalk_training.metadata import EMOTIONS as training_emotions

    from modeling_emotalk import EMOTIONS, EmoTalkLandmarkConfig
    from modeling_emotalk.audio_processing import SAMPLING_RATE as audio_rate

    assert EMOTIONS is EMOTION_LABELS and evaluation_emotions is EMOTION_LABELS and training_emotions is EMOTION_LABELS
    assert tuple(EmoTalkLandmarkConfig().emotion_labels) == EMOTION_LABELS
    assert audio_rate == SAMPLING_RATE == 16000


def test_one_input_error_base_class():
    from modeling_emotalk import errors

    assert errors.EmoTalkInputError is EmoTalkInputError
    assert issubclass(errors.NoFaceError, EmoTalkInputError) and issubclass(AlignmentError, EmoTalkInputError)


# ------------------------------------------------------------------------------------------------- video
def _levels_video(path: Path, count: int, fps: float, audio: np.ndarray | None = None) -> Path:
    """Grey frames of level 8 * i, so a decoded frame tells which source frame it was."""
    frames = np.stack([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(count)])
    return write_mp4(path, [frames], fps, audio, crf=0)


def _shown(frames) -> list[int]:
    return [round(float(f.mean()) / 8) for f in frames]


def test_resampling_picks_the_previous_or_the_nearest_frame(tmp_path):
    path = _levels_video(tmp_path / "thirty.mp4", 15, 30.0)  # 0.5 s
    previous = _shown(iter_frames(path, 25.0))
    nearest = _shown(iter_frames(path, 25.0, pick="nearest"))
    assert previous == [int(np.floor(k / 25 * 30 + 1e-6)) for k in range(13)]
    assert nearest == [min(14, round(k / 25 * 30)) for k in range(13)]
    assert previous != nearest
    assert len(previous) == len(nearest) == probe(path).frames_at(25.0) == 13


def test_upsampling_keeps_the_last_frame_for_a_whole_period(tmp_path):
    """25 → 50 fps doubles every frame, the last one too, with either pick (the old training reader lost it)."""
    path = _levels_video(tmp_path / "v.mp4", 10, 25.0)
    for pick in ("previous", "nearest"):
        frames = _shown(iter_frames(path, 50.0, pick=pick))
        assert len(frames) == 20 == probe(path).frames_at(50.0), pick
        assert frames[-2:] == [9, 9]
    assert _shown(iter_frames(path, 50.0)) == [k // 2 for k in range(20)]


def test_max_seconds_and_frame_count_agree(tmp_path):
    path = _levels_video(tmp_path / "v.mp4", 25, 25.0)
    assert len(list(iter_frames(path, max_seconds=0.5))) == frame_count(0.5, 25.0) == 13  # 0.00 ... 0.48 s
    assert len(list(iter_frames(path, 30.0, max_seconds=0.41))) == frame_count(0.41, 30.0) == 13
    with pytest.raises(EmoTalkInputError, match="pick"):
        next(iter_frames(path, 25.0, pick="closest"))


def test_read_audio_aligns_to_the_video_start(tmp_path):
    speech = synthetic_speech(0.4)
    path = _levels_video(tmp_path / "a.mp4", 10, 25.0, audio=speech)
    plain = read_audio(path)
    shifted = read_audio(path, video_start=-0.1)  # the video started 0.1 s before the audio
    assert len(shifted) == len(plain) + 1600 and not shifted[:1600].any()
    np.testing.assert_array_equal(shifted[1600:], plain)
    assert len(read_audio(path, max_seconds=0.2)) == 3200
    silent = _levels_video(tmp_path / "silent.mp4", 5, 25.0)
    with pytest.raises(EmoTalkInputError, match="no audio stream"):
        read_audio(silent)


def test_write_mp4_refuses_frames_that_are_not_rgb_uint8(tmp_path):
    with pytest.raises(EmoTalkInputError, match=r"uint8 \(b, H, W, 3\)"):
        write_mp4(tmp_path / "f.mp4", [np.zeros((2, 16, 16, 3), np.float32)], 25)
    with pytest.raises(EmoTalkInputError, match=r"uint8 \(b, H, W, 3\)"):
        write_mp4(tmp_path / "g.mp4", [np.zeros((16, 16, 3), np.uint8)], 25)
    assert list(tmp_path.iterdir()) == []


def test_written_video_round_trips(tmp_path):
    path = _levels_video(tmp_path / "r.mp4", 6, 29.97)
    info = probe(path)
    assert info.fps == pytest.approx(29.97, abs=0.01) and (info.width, info.height) == (32, 32)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(2997, 100)
    assert _shown(iter_frames(path)) == list(range(6))


# --------------------------------------------------------------------------------------------- alignment
def test_phone_segments_are_tuples_written_to_json_as_lists():
    segment = PhoneSegment("B", 0.1, 0.2)
    phone, start, end = segment
    assert (phone, start, end) == ("B", 0.1, 0.2) and json.loads(json.dumps([segment])) == [["B", 0.1, 0.2]]
    merged = merge_silence([PhoneSegment("SIL", 0, 0.1), PhoneSegment("SIL", 0.1, 0.3), segment])
    assert merged == [("SIL", 0, 0.3), ("B", 0.1, 0.2)]
    assert [clean_label(x) for x in ("AA1", "+NSN+", "<sil>", "m")] == ["AA", "SIL", "SIL", "M"]


def test_pcm16_refuses_wrong_audio_and_dithers_silence():
    with pytest.raises(EmoTalkInputError, match="16000 Hz"):
        pcm16(np.zeros(100, np.float32), 8000)
    with pytest.raises(EmoTalkInputError, match="mono"):
        pcm16(np.zeros((100, 2), np.float32))
    samples = np.frombuffer(pcm16(np.zeros(1000, np.float32)), np.int16)
    assert samples.any() and np.abs(samples).max() < 20  # a few LSB of seeded dither, same every call
    np.testing.assert_array_equal(samples, np.frombuffer(pcm16(np.zeros(1000, np.float32)), np.int16))


class _FakeDecoder:
    """pocketsphinx's Decoder, reduced to what forced alignment calls: fails unless built with wide beams."""

    def __init__(self, beams: dict):
        self.wide = bool(beams)

    def lookup_word(self, word):
        return None if word == "zzxqv" else "B AA B"

    def set_align_text(self, text):
        pass

    def set_alignment(self):
        pass

    def start_utt(self):
        pass

    def process_raw(self, pcm, full_utt):
        if not self.wide:
            raise RuntimeError("alignment failed")

    def end_utt(self):
        pass

    def get_alignment(self):
        class Phone:
            def __init__(self, name, start, duration):
                self.name, self.start, self.duration = name, start, duration

        return [[Phone("SIL", 0, 5), Phone("SIL", 5, 5)], [Phone("B", 10, 8), Phone("AA1", 18, 12)]]


def test_alignment_is_retried_with_wide_beams_then_reports_what_failed(monkeypatch):
    built = []
    monkeypatch.setattr(alignment, "_aligner", lambda beams: built.append(beams) or _FakeDecoder(beams))
    audio = synthetic_speech(0.5)
    assert align_phones(audio, "Bob!") == [("SIL", 0.0, 0.1), ("B", 0.1, 0.18), ("AA", 0.18, 0.3)]
    assert built == [{}, alignment.WIDE_BEAMS]
    with pytest.raises(AlignmentError, match=r"dictionary: \['zzxqv'\]"):
        align_phones(audio, "bob zzxqv")
    with pytest.raises(AlignmentError, match="no words"):
        align_phones(audio, " ?! ")
    monkeypatch.setattr(alignment, "_aligner", lambda beams: _FakeDecoder({}))
    with pytest.raises(AlignmentError, match=r"could not align .*alignment failed"):
        align_phones(audio, "bob")


# ------------------------------------------------------------------------------------------ lip measures
def _face(gap: np.ndarray, eye_distance: float = 2.0) -> np.ndarray:
    """A (478, 3) mesh: eye corners ``eye_distance`` apart along x, the inner lips ``gap`` (3-vector) apart."""
    points = np.zeros((478, 3))
    points[EYE_OUTER_CORNERS[0]] = (-eye_distance / 2, -1.0, 0.0)
    points[EYE_OUTER_CORNERS[1]] = (eye_distance / 2, -1.0, 0.0)
    for upper, lower in zip(LIPS_INNER_UPPER, LIPS_INNER_LOWER, strict=True):
        points[lower] = points[upper] + (0.0 if upper == lower else 1.0) * np.asarray(gap)
    return points


def test_2d_and_3d_lip_openings_differ_only_in_depth():
    facing = _face(np.array([0.0, 0.3, 0.0]))
    assert lip_opening_2d(facing) == pytest.approx(0.15) and lip_opening_3d(facing) == pytest.approx(0.15)
    in_depth = _face(np.array([0.0, 0.0, 0.3]))  # lips parted along the camera axis: invisible in the image
    assert lip_opening_2d(in_depth) == pytest.approx(0.0) and lip_opening_3d(in_depth) == pytest.approx(0.15)
    angle = 0.7
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    assert lip_opening_3d(facing @ rotation.T) == pytest.approx(0.15)  # rotation-invariant
    assert lip_opening_2d(facing @ rotation.T) < 0.15
    video = np.stack([facing, in_depth, np.full((478, 3), np.nan)])
    assert lip_opening_2d(video)[:2] == pytest.approx([0.15, 0.0]) and np.isnan(lip_opening_2d(video)[2])
    assert eye_corner_distance(video[:1], dims=2) == pytest.approx([2.0])


def test_lip_measures_refuse_a_mesh_that_is_not_478_points():
    with pytest.raises(EmoTalkInputError, match=r"\(\.\.\., 478, 3\), got \(10, 68, 3\)"):
        lip_opening_3d(np.zeros((10, 68, 3)))
    with pytest.raises(EmoTalkInputError, match="478"):
        lip_opening_3d(np.zeros((478, 2)))


# ------------------------------------------------------------------------------------------ remote code
def test_the_hub_remote_code_carries_the_common_modules_flat():
    from emotalk_pipeline.hub_folder import PIPELINE_MODULE, collect_remote_code

    remote = collect_remote_code(
        ["modeling_emotalk.configuration_emotalk", "modeling_emotalk.modeling_emotalk", PIPELINE_MODULE]
    )
    assert {"constants.py", "exceptions.py", "video_io.py"} <= set(remote)
    assert "from .constants import SAMPLING_RATE" in remote["video_io.py"].text
    assert "emotalk_common" not in remote["errors.py"].text.split("\n", 1)[1]
    assert "alignment.py" not in remote and "lip_measures.py" not in remote  # not needed by inference


def test_flat_remote_code_passes_the_export_check(tmp_path):
    from emotalk_pipeline.hub_folder import PIPELINE_MODULE, check_remote_code, collect_remote_code

    for name, flat in collect_remote_code([PIPELINE_MODULE]).items():
        (tmp_path / name).write_text(flat.text, encoding="utf-8")
    assert "video_io.py" in check_remote_code(tmp_path)
