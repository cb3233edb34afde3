"""The teacher dataset converter writes the `emotalk prepare` format that stage 1 trains on."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from emotalk_training.data import LandmarkWindowDataset, ShardReader
from emotalk_training.prepare import load_index

from recipes.default_model.teacher_dataset import main

PHONES = [["SIL", 0.0, 0.2], ["M", 0.2, 0.35], ["AA", 0.35, 0.6], ["P", 0.6, 0.7], ["IY", 0.7, 1.0], ["SIL", 1.0, 1.3]]


def _write_wav(path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(
        size=t.size
    )
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "clips").mkdir()
    records = []
    for number, (emotion, source) in enumerate([("happy", "espeak"), (None, "real")]):
        clip_id = f"clip{number}"
        _write_wav(root / "clips" / f"{clip_id}.wav", 1.3 + 0.4 * number, number)
        records.append({"id": clip_id, "audio": f"clips/{clip_id}.wav", "emotion": emotion, "source": source,
                        "voice": "v1" if source != "real" else None, "phones": PHONES})  # fmt: skip
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    held = {**records[0], "id": "held0", "emotion": None, "source": "real", "split": "heldout"}
    (root / "heldout.jsonl").write_text(json.dumps(held) + "\n")
    return root


def test_converts_corpus_to_a_stage1_dataset(corpus, tmp_path):
    output = tmp_path / "dataset"
    args = ["--corpus", str(corpus), "--output", str(output), "--faces", "--quiet"]
    assert main(args) == 0
    index = load_index(output)
    assert index["fps"] == 25.0 and index["settings"]["stage1_only"]
    assert [c["split"] for c in index["clips"]] == ["train", "train", "test"]
    happy, real, _ = index["clips"]
    assert happy["emotion"] == "happy" and happy["emotion_known"] and 0.3 <= happy["intensity"] <= 1.0
    assert real["emotion"] == "neutral" and not real["emotion_known"]
    reader = ShardReader(output)
    for clip in index["clips"]:
        landmarks = reader.read(clip["shard"], "landmarks")
        audio = reader.read(clip["shard"], "audio")
        assert landmarks.shape == (clip["num_frames"], 478, 3) and landmarks.dtype == np.float32
        assert np.isfinite(landmarks).all() and np.abs(landmarks[..., :2]).max() < 1.5
        assert audio.shape == (round(clip["num_frames"] / 25 * 16000),) and audio.dtype == np.float32
        assert reader.read(clip["shard"], "frame_valid").all()
        assert reader.metadata(clip["shard"])["id"] == clip["id"]
    # the mouth moves (the teacher articulates the phones)
    lips = reader.read(happy["shard"], "landmarks")[:, [13, 14], 1]
    assert np.ptp(lips[:, 1] - lips[:, 0]) > 0.01

    dataset = LandmarkWindowDataset(output, window_frames=25, seed=0, samples_per_epoch=4)
    item = dataset[0]
    assert item["landmarks"].shape == (25, 478, 3) and item["input_values"].shape == (16000,)
    assert item["reference"].shape == (478, 3)

    # each clip's neutral reference is used instead of a random frame, and its phones are the phone target
    from emotalk_training.data import IGNORE_INDEX, load_clip_phones, load_clip_references
    from emotalk_training.phones import PHONES as INVENTORY

    references = load_clip_references(output)
    assert set(references) == {c["id"] for c in index["clips"]}
    item = dataset.window(happy, 0, 3)
    np.testing.assert_array_equal(item["reference"].numpy(), references[happy["id"]])
    phones = load_clip_phones(output)
    assert set(phones) == {c["id"] for c in index["clips"]}
    ids = item["phone_ids"].numpy()
    assert ids.shape == (100,) and (ids != IGNORE_INDEX).all()  # 1 s at 100 Hz, all inside labelled phones
    assert [INVENTORY[ids[i]] for i in (0, 25, 50, 65, 80)] == ["SIL", "M", "AA", "P", "IY"]

    # resumable and seeded: a second run adds nothing and a fresh run writes the same landmarks
    first = reader.read(happy["shard"], "landmarks").copy()
    assert main(args) == 0
    assert len(load_index(output)["clips"]) == 3
    again = tmp_path / "again"
    assert main(["--corpus", str(corpus), "--output", str(again), "--faces", "--quiet", "--no-heldout"]) == 0
    np.testing.assert_array_equal(ShardReader(again).read(happy["shard"], "landmarks"), first)
