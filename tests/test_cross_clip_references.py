"""Stage-2 samples whose references come from another clip of the same speaker (``--cross_clip_references``)."""

from __future__ import annotations

import numpy as np
import pytest
from emotalk_training.data import GeneratorPairDataset, ShardReader
from test_training import write_synthetic_dataset


@pytest.fixture(scope="module")
def two_clips_of_one_speaker(tmp_path_factory, face_crop):
    clips = [
        {"frames": 30, "speaker": "A", "emotion": "neutral"},
        {"frames": 30, "speaker": "A", "emotion": "happy", "emotion_known": True},
        {"frames": 30, "speaker": "B"},
    ]
    return write_synthetic_dataset(tmp_path_factory.mktemp("cross"), face_crop, clips)


def _clip_of_references(root, item) -> set[str]:
    """Which clip each reference frame was read from (matched by its landmarks)."""
    reader = ShardReader(root)
    found = set()
    for reference in item["reference_landmarks"].numpy():
        for clip in ("clip0", "clip1", "clip2"):
            rows = reader.read(f"shards/{clip}.safetensors", "landmarks")
            if np.any(np.all(np.isclose(rows, reference), axis=(1, 2))):
                found.add(clip)
    return found


def test_references_come_from_the_same_speakers_other_clip(two_clips_of_one_speaker):
    root = two_clips_of_one_speaker
    data = GeneratorPairDataset(root, image_size=32, num_references=2, num_frames=2, cross_clip_references=1.0)
    assert {c["id"] for c in data.same_speaker["clip0"]} == {"clip1"} and not data.same_speaker["clip2"]
    happy = data.emotion_ids["happy"]
    seen = set()
    for index in range(24):
        item = data[index]
        sources = _clip_of_references(root, item)
        if data.speakers[int(item["speaker"])] == "B":  # speaker B has one clip: its own frames
            assert sources == {"clip2"}
        else:  # speaker A: driven by clip0 (neutral) or clip1 (happy), references from the other one
            driving = "clip1" if int(item["emotion"]) == happy else "clip0"
            assert sources == {"clip0", "clip1"} - {driving}
            seen.add(driving)
    assert seen == {"clip0", "clip1"}


def test_default_keeps_references_in_the_driving_clip_and_the_same_draws(two_clips_of_one_speaker):
    root = two_clips_of_one_speaker
    default = GeneratorPairDataset(root, image_size=32, num_references=2, num_frames=2, seed=3)
    explicit = GeneratorPairDataset(
        root, image_size=32, num_references=2, num_frames=2, seed=3, cross_clip_references=0
    )
    happy = default.emotion_ids["happy"]
    for index in range(8):
        a, b = default[index], explicit[index]
        driving = (
            "clip2"
            if default.speakers[int(a["speaker"])] == "B"
            else "clip1"
            if int(a["emotion"]) == happy
            else "clip0"
        )
        assert _clip_of_references(root, a) == {driving}
        for key in ("references", "reference_landmarks", "frames", "landmarks"):
            assert np.array_equal(a[key].numpy(), b[key].numpy())
    with pytest.raises(ValueError, match="probability"):
        GeneratorPairDataset(root, image_size=32, cross_clip_references=1.5)
