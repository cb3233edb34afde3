"""The procedural articulation teacher: lip closure, jaw opening, anticipation, blinks, emotion, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from emotalk_common.lip_measures import lip_opening_3d

from recipes.default_model.teacher import (
    EMOTIONS,
    MOUTH_PARAMS,
    ArticulationTeacher,
    TeacherBases,
    as_segments,
    parameter_tracks,
    teacher_landmarks,
)

FPS = 25.0
# "Bob bought a map of the palm" spoken slowly, with pauses: (phone, start, end) seconds.
PHONES = [
    ("SIL", 0.0, 0.40), ("B", 0.40, 0.48), ("AA1", 0.48, 0.68), ("B", 0.68, 0.76), ("B", 0.76, 0.82),
    ("AO1", 0.82, 1.00), ("T", 1.00, 1.08), ("AH0", 1.08, 1.16), ("M", 1.16, 1.26), ("AE1", 1.26, 1.46),
    ("P", 1.46, 1.56), ("AH0", 1.56, 1.64), ("V", 1.64, 1.70), ("DH", 1.70, 1.76), ("AH0", 1.76, 1.84),
    ("P", 1.84, 1.94), ("AA1", 1.94, 2.16), ("M", 2.16, 2.28), ("SIL", 2.28, 2.80),
]  # fmt: skip
NUM_FRAMES = 70


@pytest.fixture(scope="module")
def teacher() -> ArticulationTeacher:
    return ArticulationTeacher()


@pytest.fixture(scope="module")
def neutral(teacher) -> dict:
    return teacher.generate(PHONES, NUM_FRAMES, FPS, emotion="neutral", rng=0)


def _frames_inside(start: float, end: float) -> np.ndarray:
    """Frames whose centre lies inside ``[start, end)`` (the evaluation suite's convention)."""
    centres = (np.arange(NUM_FRAMES) + 0.5) / FPS
    return np.flatnonzero((centres >= start) & (centres < end))


def test_calibration_file_is_consistent():
    bases = TeacherBases.load()
    assert bases.template.shape == (478, 3) and bases.emotion_offsets.shape == (8, 478, 3)
    assert set(bases.basis) >= {"open", "spread", "protrusion", "upper_raise", "lower_tuck"}
    assert np.allclose(bases.emotion_offsets[0], 0.0)  # neutral
    assert lip_opening_3d(bases.rest) < 1e-6  # the rest face has its lips together
    # The jaw basis is normalized: one unit of coefficient opens the mouth by one unit of aperture.
    assert lip_opening_3d(bases.rest + 0.12 * bases.basis["open"]) == pytest.approx(0.12, rel=0.02)
    # Real talking videos open the mouth 0.08-0.2 eye-corner distances at the 95th percentile.
    assert 0.08 < bases.open_aperture < 0.2


def test_output_shapes_and_ranges(neutral):
    assert neutral["expression"].shape == (NUM_FRAMES, 478, 3)
    assert neutral["head_pose"].shape == (NUM_FRAMES, 6)
    assert neutral["gaze"].shape == (NUM_FRAMES, 2)
    assert neutral["blink"].shape == (NUM_FRAMES, 2)
    assert neutral["mouth_params"].shape == (NUM_FRAMES, len(MOUTH_PARAMS))
    assert neutral["emotion_weights"].shape == (NUM_FRAMES, 8)
    assert all(np.isfinite(v).all() for v in neutral.values())
    assert neutral["blink"].min() >= 0 and neutral["blink"].max() <= 1
    assert np.abs(neutral["gaze"]).max() < 0.35
    assert np.abs(neutral["head_pose"][:, :3]).max() < 0.4


def test_lips_close_at_every_bilabial(neutral):
    ap = neutral["aperture"]
    for phone, start, end in as_segments(PHONES):
        if phone in {"P", "B", "M"}:
            frames = _frames_inside(start, end)
            assert len(frames) and ap[frames].max() < 0.005, (phone, start, ap[frames])


def test_jaw_opens_for_open_vowels(teacher, neutral):
    ap = neutral["aperture"]
    peaks = [ap[_frames_inside(s, e)].max() for p, s, e in as_segments(PHONES) if p in {"AA", "AE", "AO", "AH"}]
    assert min(peaks) > 0.03
    aa = [ap[_frames_inside(s, e)].max() for p, s, e in as_segments(PHONES) if p == "AA"]
    # In the real videos' range: an /AA/ opens about as wide as their 95th percentile.
    assert 0.6 * teacher.bases.open_aperture < min(aa) and max(aa) < 1.5 * teacher.bases.open_aperture
    # Rest (silence) is nearly closed.
    assert ap[:5].max() < 0.02 and ap[-5:].max() < 0.02


def test_open_vowel_vs_bilabial_separation(neutral):
    from emotalk_evaluation.lipsync import auc

    ap = neutral["aperture"]
    segments = as_segments(PHONES)
    vowels = [ap[_frames_inside(s, e)].max() for p, s, e in segments if p in {"AA", "AE", "AH", "AO", "AW", "AY"}]
    bilabials = [ap[_frames_inside(s, e)].max() for p, s, e in segments if p in {"P", "B", "M"}]
    assert auc(np.array(vowels), np.array(bilabials)) == 1.0


def test_mouth_leads_the_sound_by_one_to_two_frames(teacher):
    onset = 1.0
    phones = [("SIL", 0.0, onset), ("AA", onset, onset + 0.3), ("SIL", onset + 0.3, 2.0)]
    fps = 100.0  # fine frames to measure the lead in 25-fps frames precisely
    ap = teacher.generate(phones, 200, fps, rng=0)["aperture"]
    rest, peak = ap[:50].mean(), ap.max()
    half = np.flatnonzero(ap > rest + 0.5 * (peak - rest))[0]
    lead_frames_25 = (onset - (half + 0.5) / fps) * 25.0
    assert 1.0 <= lead_frames_25 <= 2.0, lead_frames_25


def test_anticipation_and_closure_timing_in_tracks():
    # Lip rounding of /UW/ starts before the /S/ that precedes it (anticipatory coarticulation).
    phones = [("SIL", 0.0, 0.5), ("S", 0.5, 0.62), ("UW", 0.62, 0.9), ("SIL", 0.9, 1.5)]
    tracks = parameter_tracks(phones, 150, 100.0)
    rounding = tracks[:, MOUTH_PARAMS.index("round")]
    assert rounding[56] > 0.3 * rounding.max()  # during the /S/


def test_blink_rate_over_a_minute(teacher):
    phones = [("SIL", 0.0, 60.0)]
    rates = []
    for seed in range(5):
        blink = teacher.generate(phones, int(60 * FPS), FPS, rng=seed)["blink"][:, 0]
        closed = blink > 0.5
        rates.append(int(np.sum(closed[1:] & ~closed[:-1]) + closed[0]))
    assert all(8 <= r <= 30 for r in rates), rates
    # Closures last 100-200 ms (plus the raised cosine's shoulders).
    blink = teacher.generate(phones, int(60 * FPS), FPS, rng=0)["blink"][:, 0]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, blink > 0.05, 0])))[::2]
    assert runs.max() <= round(0.35 * FPS)


def test_emotion_offsets_move_the_right_regions(teacher):
    bases = teacher.bases
    offsets = dict(zip(EMOTIONS, bases.emotion_offsets, strict=True))
    corners = [61, 291]
    lip_middle = [0, 17]

    def corner_lift(offset):  # y down: corners moving up relative to the lip middle is negative
        return offset[corners, 1].mean() - offset[lip_middle, 1].mean()

    assert corner_lift(offsets["happy"]) < -0.01  # a smile raises the mouth corners
    assert corner_lift(offsets["sad"]) > corner_lift(offsets["happy"])
    brows = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]
    assert offsets["surprised"][brows, 1].mean() < -0.02  # surprise raises the brows
    assert offsets["angry"][[107, 336, 55, 285], 1].mean() > offsets["surprised"][[107, 336, 55, 285], 1].mean()
    # Emotion changes the face, not the rigid frame points.
    rigid = [33, 133, 263, 362, 168, 6, 4]
    for offset in offsets.values():
        assert np.abs(offset[rigid]).max() < 0.05


def test_emotion_label_changes_expression_but_keeps_closure(teacher, neutral):
    happy = teacher.generate(PHONES, NUM_FRAMES, FPS, emotion="happy", rng=0)
    assert np.abs(happy["expression"] - neutral["expression"]).max() > 0.02
    for phone, start, end in as_segments(PHONES):
        if phone in {"P", "B", "M"}:
            assert happy["aperture"][_frames_inside(start, end)].max() < 0.005
    # Per-frame weights: the second half happy.
    weights = np.zeros((NUM_FRAMES, 8))
    weights[: NUM_FRAMES // 2, 0] = 1.0
    weights[NUM_FRAMES // 2 :, EMOTIONS.index("happy")] = 1.0
    mixed = teacher.generate(PHONES, NUM_FRAMES, FPS, emotion=weights, rng=0)
    assert np.allclose(mixed["expression"][:10], neutral["expression"][:10], atol=1e-6)
    assert np.allclose(mixed["expression"][-5:], happy["expression"][-5:], atol=1e-6)
    # Intensity 0 is neutral.
    zero = teacher.generate(PHONES, NUM_FRAMES, FPS, emotion="angry", intensity=0.0, rng=0)
    assert np.allclose(zero["expression"], neutral["expression"], atol=1e-6)


def test_louder_speech_moves_the_head_more(teacher):
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 8) / 16000
    quiet = (0.02 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    loud = quiet.copy()
    loud[len(loud) // 2 :] *= 10
    pose = teacher.generate([("SIL", 0, 8)], 200, FPS, rng=rng, audio=loud)["head_pose"]
    assert np.abs(pose[100:, :3]).mean() > np.abs(pose[:100, :3]).mean()
    sad = teacher.generate([("SIL", 0, 8)], 200, FPS, emotion="sad", rng=1)["head_pose"]
    angry = teacher.generate([("SIL", 0, 8)], 200, FPS, emotion="angry", rng=1)["head_pose"]
    assert np.abs(angry[:, 0]).mean() > np.abs(sad[:, 0]).mean()  # same seed, larger amplitude


def test_deterministic_and_seeded(teacher, neutral):
    again = teacher.generate(PHONES, NUM_FRAMES, FPS, emotion="neutral", rng=0)
    for key in neutral:
        assert np.array_equal(neutral[key], again[key])
    other = teacher.generate(PHONES, NUM_FRAMES, FPS, emotion="neutral", rng=1)
    assert np.array_equal(other["expression"], neutral["expression"])  # articulation is not random
    assert not np.array_equal(other["blink"], neutral["blink"])


def test_open_mouthed_reference_still_closes(teacher):
    reference = teacher.bases.rest + 0.15 * teacher.bases.basis["open"]  # a photo with the mouth open
    assert lip_opening_3d(reference) > 0.1
    out = teacher.generate(PHONES, NUM_FRAMES, FPS, rng=0, reference=reference)
    assert out["aperture"][:5].max() < 0.02  # brought to rest
    for phone, start, end in as_segments(PHONES):
        if phone in {"P", "B", "M"}:
            assert out["aperture"][_frames_inside(start, end)].max() < 0.005


def test_phone_labels_are_normalized():
    segments = as_segments([("aa1", 0.0, 0.1), ("+NSN+", 0.1, 0.2), ("AX", 0.2, 0.3), ("B", 0.3, 0.3)])
    assert segments == [("AA", 0.0, 0.1), ("SIL", 0.1, 0.2), ("AH", 0.2, 0.3)]


def test_teacher_landmarks_in_crop_space(teacher):
    import torch

    from modeling_emotalk.landmarks import from_canonical

    reference = from_canonical(
        torch.from_numpy(teacher.bases.template).float()[None],
        torch.tensor([0.25]),
        torch.eye(3)[None],
        torch.tensor([[0.0, -0.2, 0.0]]),
    )[0].numpy()
    landmarks = teacher_landmarks(reference, PHONES, NUM_FRAMES, FPS, teacher=teacher, rng=0)
    assert landmarks.shape == (NUM_FRAMES, 478, 3)
    assert np.abs(landmarks[..., :2]).max() < 1.0  # stays in the crop
    from emotalk_common.lip_measures import lip_opening_2d

    ap = lip_opening_2d(landmarks)
    for phone, start, end in as_segments(PHONES):
        if phone in {"P", "B", "M"}:
            assert ap[_frames_inside(start, end)].max() < 0.01
    assert ap.max() > 0.05


def test_calibration_regression_recovers_bases():
    from recipes.default_model.calibrate_emotions import emotion_offsets, mouth_regression
    from recipes.default_model.teacher import mouth_width

    bases = TeacherBases.load()
    rest, open_basis, spread_basis = bases.rest, bases.basis["open"], bases.basis["spread"]
    rng = np.random.default_rng(0)
    videos = []
    for _ in range(3):
        a = rng.uniform(0.0, 0.15, 200)
        w = rng.normal(0.0, 0.03, 200)
        frames = rest + a[:, None, None] * open_basis + w[:, None, None] * spread_basis
        videos.append(frames + rng.normal(0, 1e-4, frames.shape))
    fitted_open, fitted_spread = mouth_regression(videos)
    # The regressors are the measured aperture and width, which the bases move by ~1 per unit: slopes come back.
    assert np.corrcoef(fitted_open.ravel(), open_basis.ravel())[0, 1] > 0.95
    assert np.corrcoef(fitted_spread.ravel(), spread_basis.ravel())[0, 1] > 0.9
    assert mouth_width(rest + 0.05 * fitted_spread) - mouth_width(rest) == pytest.approx(0.05, rel=0.2)
    # Emotion offsets: a clip that smiles while speaking gives the smile, not the speech opening.
    smile = bases.emotion_offsets[EMOTIONS.index("happy")]
    speech = rng.uniform(0.0, 0.15, 100)[:, None, None] * open_basis
    clips = {"neutral": rest + speech, "happy": rest + smile + 1.5 * speech}
    offsets, gains = emotion_offsets(clips, open_basis)
    happy = EMOTIONS.index("happy")
    assert np.abs(offsets[happy] - smile).max() < 0.02
    assert gains[happy] == pytest.approx(1.5, rel=0.1)
    assert np.allclose(offsets[0], 0.0) and gains[0] == 1.0


def test_the_visemes_cover_exactly_the_training_phone_inventory():
    from emotalk_training.phones import PHONES as INVENTORY
    from emotalk_training.phones import normalize_phone

    from recipes.default_model.teacher import VISEMES

    assert set(VISEMES) == set(INVENTORY) and len(INVENTORY) == 40
    assert tuple(sorted(VISEMES)) == INVENTORY  # the phone classifier's output order
    assert [normalize_phone(p) for p in ("aa1", "AX", "sp", "M", "<sil>")] == ["AA", "AH", "SIL", "M", "SIL"]


@pytest.mark.parametrize(
    "script",
    [
        "corpus",
        "teacher_dataset",
        "calibrate_emotions",
        "evaluate_stage1",
        "evaluate_stage2",
        "stage2_grids",
        "mouth_interior_prior",
    ],
)
def test_recipe_scripts_run_from_the_repository_root(script):
    """The documented commands: ``python -m recipes.default_model.<script>`` from the checkout, nothing installed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", f"recipes.default_model.{script}", "--help"]
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")


def test_stage2_blink_frames_are_the_real_clips_most_closed_eyes():
    """evaluate_stage2 scores the lids where the real clip blinks: its lowest 5 % of eye aspect ratios."""
    from recipes.default_model.evaluate_stage2 import blink_frames

    ear = np.full(61, 0.3)
    ear[0] = 0.0  # the source frame is never scored
    ear[[40, 41, 42]] = [0.2, 0.05, 0.12]
    ear[60] = np.nan  # face lost
    assert blink_frames(ear).tolist() == [40, 41, 42]
    assert blink_frames(np.full(5, np.nan)).tolist() == []
