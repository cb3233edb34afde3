"""Hard stage-2 samples: mouth-synthesis pairs (``--closed_mouth_references``: closed-mouth references, open-mouth
windows) and blink windows (``--blink_windows``)."""

from __future__ import annotations

import numpy as np
import pytest
from emotalk_training.data import GeneratorPairDataset, openings
from test_training import write_synthetic_dataset


@pytest.fixture(scope="module")
def talking_clips(tmp_path_factory, face_crop):
    clips = [{"frames": 40, "speaker": "A"}, {"frames": 40, "speaker": "A"}, {"frames": 40, "speaker": "B"}]
    return write_synthetic_dataset(tmp_path_factory.mktemp("mouth"), face_crop, clips)


def _gap(landmarks) -> np.ndarray:
    return openings(landmarks.numpy())[0]


@pytest.mark.parametrize("cross_clip", [0.0, 1.0])
def test_references_are_closed_and_windows_open(talking_clips, cross_clip):
    data = GeneratorPairDataset(
        talking_clips,
        image_size=32,
        num_references=2,
        num_frames=2,
        closed_mouth_references=1.0,
        cross_clip_references=cross_clip,
    )
    every_gap = np.concatenate([data.lip_gap(clip) for clip in data.clips])
    closed, opened = np.quantile(every_gap, 0.4), np.quantile(every_gap, 0.6)  # pools differ a little per clip
    for index in range(16):
        item = data[index]
        assert (_gap(item["reference_landmarks"]) <= closed).all()
        assert _gap(item["landmarks"])[0] >= opened


def test_random_pairs_see_open_references_and_the_default_is_unchanged(talking_clips):
    default = GeneratorPairDataset(talking_clips, image_size=32, num_references=2, num_frames=2, seed=4)
    explicit = GeneratorPairDataset(
        talking_clips, image_size=32, num_references=2, num_frames=2, seed=4, closed_mouth_references=0.0
    )
    every_gap = np.concatenate([default.lip_gap(clip) for clip in default.clips])
    reference_gaps = []
    for index in range(16):
        a, b = default[index], explicit[index]
        for key in ("references", "reference_landmarks", "frames", "landmarks"):
            assert np.array_equal(a[key].numpy(), b[key].numpy())
        reference_gaps.extend(_gap(a["reference_landmarks"]))
    assert max(reference_gaps) > np.quantile(every_gap, 0.5)  # random references are often open
    with pytest.raises(ValueError, match="closed_mouth_references"):
        GeneratorPairDataset(talking_clips, image_size=32, closed_mouth_references=-0.1)


def _eye_gap(landmarks) -> np.ndarray:
    return openings(landmarks.numpy())[1]


def test_blink_windows_start_at_the_blink(talking_clips):
    """The synthetic clips blink at 0.4-0.5 s (frames 10-12 of 40): blink windows start there, random ones rarely."""
    blinks = GeneratorPairDataset(talking_clips, image_size=32, num_references=1, num_frames=2, blink_windows=1.0)
    plain = GeneratorPairDataset(talking_clips, image_size=32, num_references=1, num_frames=2)
    closed = [float(_eye_gap(blinks[i]["landmarks"])[0]) for i in range(12)]
    assert max(closed) < 1e-6  # upper lids on the lower ones
    assert np.mean([float(_eye_gap(plain[i]["landmarks"])[0]) < 1e-6 for i in range(24)]) < 0.3
    with pytest.raises(ValueError, match="blink_windows"):
        GeneratorPairDataset(talking_clips, image_size=32, closed_mouth_references=0.7, blink_windows=0.5)
