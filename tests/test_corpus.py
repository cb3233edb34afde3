"""The speech-corpus generator: sentences, voices, augmentation, forced alignment, the tiny end-to-end run."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from emotalk_common.alignment import align_phones, recognize_phones

from recipes.default_model import corpus
from recipes.default_model.teacher import VISEMES

pocketsphinx = pytest.importorskip("pocketsphinx")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="Debian espeak-ng is not installed")
SHARED_MEDIA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "media").resolve()


def test_sentence_set_is_large_balanced_and_in_the_dictionary():
    sentences = corpus.load_sentences()
    assert len(sentences) >= 500
    assert len(set(sentences)) == len(sentences)
    dictionary = corpus._dictionary()
    words = {w for s in sentences for w in corpus.sentence_words(s)}
    assert not [w for w in words if w not in dictionary]
    stats = corpus.sentence_statistics(sentences)
    assert stats["phones"] == 39  # every ARPAbet phone of the CMU dictionary
    assert stats["diphones"] > 900
    assert min(count for _, count in stats["rarest_phones"]) >= 50


def test_sentence_generator_is_deterministic():
    assert corpus.generate_sentences(5, seed=3, candidates=300) == corpus.generate_sentences(5, seed=3, candidates=300)


def test_voices_and_job_plan():
    voices = corpus.voice_list("all")
    assert len([v for e, v in voices if e == "espeak"]) >= 10
    assert {v for e, v in voices if e == "festival"} == set(corpus.FESTIVAL_VOICES)
    sentences = ["one two three.", "four five six."]
    jobs = corpus.plan_jobs(sentences, voices, per_sentence=3, seed=0)
    assert jobs == corpus.plan_jobs(sentences, voices, per_sentence=3, seed=0)
    assert len(jobs) == 6 and len({j.id for j in jobs}) == 6
    assert len({j.voice for j in jobs if j.sentence_index == 0}) == 3
    assert all(j.emotion in corpus.PROSODY for j in jobs)
    assert set(corpus.PROSODY) == set(corpus.EMOTIONS)
    with pytest.raises(ValueError):
        corpus.voice_list("klingon")


def test_augmentation_keeps_length_and_is_seeded():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    seen = set()
    for seed in range(12):
        out, params = corpus.augment(speech, np.random.default_rng(seed))
        again, params_again = corpus.augment(speech, np.random.default_rng(seed))
        assert np.array_equal(out, again) and params == params_again
        assert out.shape == speech.shape and np.abs(out).max() <= 0.99 + 1e-6 and np.isfinite(out).all()
        assert "gain_db" in params and len(params) >= 2
        seen.update(params)
    assert {"reverb_rt60", "band", "noise"} <= seen
    # Additive noise lands near the requested SNR (measured on the speech-active samples).
    clean = speech.astype(np.float64)
    for seed in range(40):
        out, params = corpus.augment(speech, np.random.default_rng(seed))
        if set(params) == {"noise", "gain_db"}:
            noisy = out / 10 ** (params["gain_db"] / 20)
            active = np.abs(clean) > 0.05 * np.abs(clean).max()
            snr = 10 * np.log10(np.mean(clean[active] ** 2) / np.mean((noisy - clean) ** 2))
            assert abs(snr - params["noise"]["snr_db"]) < 1.5
            break
    del rng


def test_real_clip_split_is_by_source():
    if not (SHARED_MEDIA / "manifest.json").is_file():
        pytest.skip("no ../shared/media")
    clips = corpus.english_real_clips(SHARED_MEDIA)
    assert clips and len({c[0] for c in clips}) == len(clips)
    for clip_id, path, split in clips:
        heldout = any(path.name.startswith(source) for source in corpus.HELDOUT_SOURCES)
        assert (split == "heldout") == heldout, clip_id
    assert {"train", "heldout"} == {split for *_, split in clips}
    assert not any(p.name.startswith(("dreamtalk__data__audio__German", "SadTalker")) for _, p, _ in clips)


@needs_espeak
def test_tiny_corpus_end_to_end(tmp_path):
    output = tmp_path / "corpus"
    assert corpus.main(["--output", str(output), "--tiny"]) == 0
    records = corpus.read_manifest(output / "manifest.jsonl")
    assert len(records) == 4  # 2 sentences x 1 voice x (clean + 1 augmented)
    import soundfile as sf

    for record in records:
        audio, rate = sf.read(output / record["audio"])
        assert rate == 16000 and audio.ndim == 1
        assert record["duration"] == pytest.approx(len(audio) / 16000, abs=1e-3)
        phones = record["phones"]
        assert phones[0][1] == 0.0
        # The aligned phones tile the whole clip: contiguous, ending within 20 ms of the audio's end.
        assert all(a[2] == pytest.approx(b[1]) for a, b in itertools.pairwise(phones))
        assert phones[-1][2] == pytest.approx(record["duration"], abs=0.02)
        assert all(p in VISEMES for p, _, _ in phones)
        assert record["phone_method"] == "forced-alignment" and record["split"] == "train"
        assert record["emotion"] in corpus.EMOTIONS
        words = [p for p, _, _ in phones if p != "SIL"]
        assert len(words) > 10
    clean = [r for r in records if r["augmentation"] is None]
    augmented = [r for r in records if r["augmentation"] is not None]
    assert len(clean) == len(augmented) == 2
    for r in augmented:
        twin = next(c for c in clean if c["id"] == r["augmentation"]["clean_id"])
        assert r["phones"] == twin["phones"]
    summary = json.loads((output / "corpus.json").read_text())
    assert summary["counts"]["clean"] == 2 and summary["counts"]["failed"] == 0
    # Resumable: a second run makes nothing new.
    assert corpus.main(["--output", str(output), "--tiny"]) == 0
    assert len(corpus.read_manifest(output / "manifest.jsonl")) == 4
    assert json.loads((output / "corpus.json").read_text())["counts"]["skipped"] == 4


@needs_espeak
def test_alignment_finds_bilabials_in_quiet_stretches(tmp_path):
    text = "Bob bought a map of the palm park."
    audio = corpus.synthesize_espeak(text, "en-us+m3", 150, 50, corpus.PROSODY["neutral"], tmp_path)
    audio = corpus.pad_silence(audio, np.random.default_rng(0))
    phones = align_phones(audio, text)
    assert phones == align_phones(audio, text)  # deterministic (no state carried between utterances)
    labels = [p for p, _, _ in phones]
    assert labels.count("B") + labels.count("P") + labels.count("M") >= 6
    assert labels[0] == "SIL" and labels[-1] == "SIL"

    def loudness(phone_set):
        values = [
            np.sqrt(np.mean(audio[int(s * 16000) : int(e * 16000)] ** 2)) for p, s, e in phones if p in phone_set
        ]
        return float(np.mean(values))

    assert loudness({"P", "B"}) < 0.5 * loudness({"AA", "AO", "AH"})
    with pytest.raises(ValueError):
        align_phones(audio, "qwxzv blorptastic")
    recognized = recognize_phones(audio)
    assert recognized and all(p in VISEMES or p == "SIL" for p, _, _ in recognized)


@pytest.mark.skipif(shutil.which("text2wave") is None or shutil.which("sox") is None, reason="festival/sox missing")
def test_festival_voice(tmp_path):
    audio = corpus.synthesize_festival("Peter bought a map.", "kal_diphone", 1.1, 1.0, tmp_path)
    assert audio.ndim == 1 and 0.5 < len(audio) / 16000 < 4.0 and np.abs(audio).max() > 0.05
