"""Speech corpus for stage 1: synthetic speech with forced-aligned phones, augmentation, and real pseudo-labelled clips.

    python -m recipes.default_model.corpus --output <dir> [--num-sentences 600] [--voices all|espeak|festival|<ids>]
        [--voices-per-sentence 2] [--augment-copies 1] [--media ../shared/media | --no-real] [--tiny] [--seed 0]

What it writes under ``<dir>`` (never inside the repository: the real clips are media):

- ``clips/<id>.wav``: 16 kHz mono PCM16.
- ``manifest.jsonl``: one JSON record per *training* clip: ``id``, ``audio`` (relative path), ``duration``,
  ``source`` (``espeak`` / ``festival`` / ``real``), ``text``, ``voice``, ``rate``, ``pitch``, ``emotion``
  (the prosody preset, one of the 8 MEAD labels; ``null`` for real clips), ``augmentation`` (``null`` for a clean
  clip, else its parameters and ``clean_id``), ``phones`` (``[phone, start_s, end_s]``, ARPAbet without stress,
  ``SIL`` for pauses) and ``phone_method`` (``forced-alignment`` against the sentence, or ``phone-loop`` for real
  clips, whose transcripts are unknown).
- ``heldout.jsonl``: the real clips kept for evaluation only (same fields, ``split: "heldout"``). The split is
  by source repository (:data:`HELDOUT_SOURCES`: EDTalk, LatentSync, V-Express — the sources whose talking
  videos the evaluation uses); training code reads ``manifest.jsonl`` only.
- ``corpus.json``: the settings, counts and speed of the last run.

Synthetic speech: Debian ``espeak-ng`` (:data:`ESPEAK_VOICES`, ≥ 10 voice variants and accents; rate and pitch
drawn per clip) and ``festival`` (:data:`FESTIVAL_VOICES`; rate and pitch changed with ``sox``), each clip with
an emotional prosody preset (:data:`PROSODY`: rate, pitch, loudness and pauses per emotion), over the
phonetically balanced sentences of ``recipes/default_model/resources/sentences.txt`` (:func:`generate_sentences`). Phone timings
come from pocketsphinx forced alignment of the clean audio against the sentence (a fresh decoder per clip, so
labels do not depend on the order of the clips); augmented copies (noise at 0–20 dB SNR, gain, band-limiting, room reverb) share those timings.

Resumable: clips already in the manifests are skipped, so an interrupted run continues where it stopped.
Needs ``apt-get install espeak-ng festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k sox`` and
``pip install pocketsphinx``. ``--tiny`` (2 sentences, 2 voices, 1 augmented copy, no real clips) runs in seconds.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from emotalk_common.alignment import align_phones, recognize_phones
from emotalk_common.alignment import transcript_words as sentence_words
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS
from emotalk_common.constants import SAMPLING_RATE

SENTENCES_FILE = Path(__file__).resolve().parent / "resources" / "sentences.txt"

ESPEAK_VOICES = (
    "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+m5", "en-us+m6", "en-us+m7",
    "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en-us+f5",
    "en-gb+m3", "en-gb+f2", "en-gb-scotland+m2", "en-029+f3", "en-us-nyc+m4", "en-gb-x-rp+f4",
)  # fmt: skip
FESTIVAL_VOICES = ("cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone")
HELDOUT_SOURCES = ("EDTalk", "LatentSync", "V-Express")


@dataclass(frozen=True)
class Prosody:
    """An emotional prosody preset: multipliers of the speaking rate, pitch shift (espeak units 0–99 / semitones
    for sox), loudness (espeak amplitude) and the extra gap between words (espeak units of 10 ms)."""

    rate: float
    pitch: float
    amplitude: int
    word_gap: int


PROSODY = {
    "neutral": Prosody(1.00, 0, 100, 0),
    "happy": Prosody(1.08, 12, 120, 0),
    "angry": Prosody(1.12, -4, 170, 0),
    "sad": Prosody(0.78, -12, 70, 4),
    "fear": Prosody(1.18, 16, 110, 1),
    "surprised": Prosody(1.02, 20, 130, 0),
    "disgusted": Prosody(0.86, -8, 110, 2),
    "contempt": Prosody(0.90, -6, 90, 2),
}


# ------------------------------------------------------------------------------------------------- sentences

_NAMES = [
    "Anna",
    "Bob",
    "Maria",
    "Peter",
    "Paul",
    "Mike",
    "Emma",
    "Tom",
    "Sam",
    "Kate",
    "Jack",
    "Lucy",
    "Ben",
    "Molly",
    "Frank",
    "Ruth",
    "Victor",
    "Grace",
    "Oscar",
    "Judy",
]
_ADJECTIVES = [
    "big",
    "small",
    "old",
    "young",
    "quiet",
    "noisy",
    "happy",
    "busy",
    "cheap",
    "warm",
    "cold",
    "bright",
    "dark",
    "heavy",
    "empty",
    "famous",
    "purple",
    "yellow",
    "brown",
    "golden",
    "smooth",
    "rough",
    "tiny",
    "huge",
    "gentle",
    "brave",
    "lazy",
    "clever",
    "polite",
    "strange",
    "pleasant",
    "modern",
    "ancient",
    "proud",
    "wooden",
    "plastic",
    "shiny",
    "muddy",
    "dusty",
    "fresh",
    "thick",
    "thin",
    "sharp",
    "soft",
    "broken",
    "lucky",
    "angry",
    "careful",
    "calm",
    "fancy",
    "humble",
    "joyful",
    "loyal",
    "unusual",
    "casual",
    "loud",
]
_NOUNS = [
    "farmer",
    "teacher",
    "baker",
    "doctor",
    "pilot",
    "sailor",
    "painter",
    "player",
    "singer",
    "driver",
    "neighbor",
    "artist",
    "butcher",
    "plumber",
    "monkey",
    "puppy",
    "kitten",
    "rabbit",
    "pony",
    "beaver",
    "pigeon",
    "buffalo",
    "lamb",
    "mouse",
    "boat",
    "map",
    "book",
    "lamp",
    "box",
    "cup",
    "jar",
    "bottle",
    "basket",
    "blanket",
    "ribbon",
    "pebble",
    "apple",
    "peach",
    "melon",
    "potato",
    "tomato",
    "sandwich",
    "pizza",
    "pepper",
    "cabbage",
    "mushroom",
    "muffin",
    "biscuit",
    "cookie",
    "candle",
    "mirror",
    "pillow",
    "umbrella",
    "envelope",
    "bicycle",
    "engine",
    "ladder",
    "hammer",
    "shovel",
    "bucket",
    "window",
    "door",
    "carpet",
    "table",
    "chair",
    "toy",
    "coin",
    "oyster",
    "treasure",
    "television",
    "cow",
    "owl",
    "flower",
    "crown",
    "cowboy",
]
_PLURALS = {"mouse": "mice", "potato": "potatoes", "tomato": "tomatoes", "sandwich": "sandwiches", "box": "boxes",
            "peach": "peaches", "butcher": "butchers", "pony": "ponies", "puppy": "puppies"}  # fmt: skip
_VERBS = {  # base: past
    "carry": "carried", "paint": "painted", "push": "pushed", "pull": "pulled", "bring": "brought",
    "buy": "bought", "find": "found", "fix": "fixed", "wash": "washed", "move": "moved", "hide": "hid",
    "drop": "dropped", "grab": "grabbed", "borrow": "borrowed", "open": "opened", "watch": "watched",
    "touch": "touched", "choose": "chose", "throw": "threw", "keep": "kept", "share": "shared", "sell": "sold",
    "measure": "measured", "polish": "polished", "wrap": "wrapped", "bake": "baked", "examine": "examined",
    "describe": "described", "deliver": "delivered", "repair": "repaired", "juggle": "juggled",
    "enjoy": "enjoyed", "avoid": "avoided", "destroy": "destroyed", "employ": "employed", "count": "counted",
}  # fmt: skip
_PLACES = [
    "market",
    "harbor",
    "garden",
    "kitchen",
    "village",
    "museum",
    "station",
    "library",
    "bakery",
    "bridge",
    "beach",
    "park",
    "palace",
    "meadow",
    "valley",
    "mountain",
    "forest",
    "island",
    "office",
    "hospital",
    "theater",
    "stadium",
    "zoo",
    "farm",
    "river",
    "lake",
    "town",
    "house",
    "garage",
]
_PREPOSITIONS = ["to", "into", "behind", "beside", "across", "near", "under", "above", "toward", "inside"]
_TIMES = [
    "this morning",
    "last night",
    "every Monday",
    "before breakfast",
    "after lunch",
    "during the storm",
    "in the evening",
    "at midnight",
    "on Sunday",
    "all summer",
    "yesterday",
    "at dawn",
    "later today",
    "by the weekend",
    "in May",
]
_NUMBERS = [
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "fifteen",
    "twenty",
]
_ADVERBS = [
    "quickly",
    "slowly",
    "gently",
    "proudly",
    "bravely",
    "quietly",
    "happily",
    "calmly",
    "boldly",
    "politely",
    "carefully",
    "eagerly",
]
_FEELINGS = [
    "amazed",
    "worried",
    "pleased",
    "shocked",
    "thrilled",
    "puzzled",
    "annoyed",
    "delighted",
    "scared",
    "bored",
    "surprised",
]
_TEMPLATES = (
    "The {adj} {noun} {past} the {adj2} {noun2} {prep} the {place}.",
    "{name} {past} {number} {adj} {plural} {time}.",
    "Did {name} {base} the {adj} {noun} {prep} the {place}?",
    "Please {base} the {adj} {noun} before {name} gets back.",
    "My {noun} {adverb} {past} a {adj} {noun2} near the {place}.",
    "When the {noun} {past} the {noun2}, {name} was {feeling}.",
    "Why would a {adj} {noun} {base} {number} {plural}?",
    "We {past} the {noun} {time}, and {name} {past2} the {noun2}.",
    "{name} thinks the {noun} at the {place} is too {adj}.",
    "Maybe the {adj} {noun} will {base} a {noun2} {time}.",
    "Every {noun} in the {place} {past} {adverb}.",
    "{name} and {name2} {past} a {adj} {noun} {prep} the {place}.",
    "Oh, what a {adj} {noun}, {name} said with a smile.",
    "I was {feeling} when the {noun} {past} my {adj} {noun2}.",
    "Could you {base} {number} {plural} from the {place} {time}?",
    "The {place} was {adj} and the {plural} were {adj2}.",
    "Nobody {past} the {adj} {noun} except {name}.",
    "Bring me the {adj} {noun} and the {adj2} {noun2}, please.",
    "{name} {adverb} {past} the {noun} {prep} the {adj} {place}.",
    "How many {plural} did the {noun} {base} {time}?",
)


def _plural(noun: str) -> str:
    return _PLURALS.get(noun, noun + "s")


@functools.lru_cache(maxsize=1)
def _dictionary() -> dict[str, list[str]]:
    """The pocketsphinx en-us dictionary: word → phones of its first pronunciation (stress removed)."""
    from pocketsphinx import get_model_path

    out: dict[str, list[str]] = {}
    with open(get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if parts and "(" not in parts[0]:
                out[parts[0]] = [re.sub(r"\d", "", p) for p in parts[1:]]
    return out


def generate_sentences(count: int = 600, seed: int = 0, candidates: int = 12000) -> list[str]:
    """A phonetically balanced sentence set: template sentences greedily chosen for diphone coverage.

    ``candidates`` random fillings of :data:`_TEMPLATES` (every word in the pocketsphinx dictionary) are
    scored by the diphones (phone pairs across word boundaries, with silence at both ends) they add, rare
    diphones counting more (weight ``1 / (1 + times already covered)``); bilabial and open-vowel phones get a
    small bonus, since lip sync is measured on them. The best sentence is taken and the scores updated.
    """
    dictionary = _dictionary()
    rng = np.random.default_rng(seed)
    pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    pool: dict[str, list[str]] = {}
    for _ in range(candidates):
        template = pick(_TEMPLATES)
        noun, noun2 = rng.choice(_NOUNS, 2, replace=False)
        adj, adj2 = rng.choice(_ADJECTIVES, 2, replace=False)
        base, base2 = rng.choice(list(_VERBS), 2, replace=False)
        name, name2 = rng.choice(_NAMES, 2, replace=False)
        text = template.format(
            adj=adj, adj2=adj2, noun=noun, noun2=noun2, plural=_plural(pick(_NOUNS)), base=base,
            past=_VERBS[base], past2=_VERBS[base2], prep=pick(_PREPOSITIONS), place=pick(_PLACES),
            name=name, name2=name2, time=pick(_TIMES), number=pick(_NUMBERS), adverb=pick(_ADVERBS),
            feeling=pick(_FEELINGS),
        )  # fmt: skip
        words = sentence_words(text)
        if text in pool or any(w not in dictionary for w in words):
            continue
        pool[text] = ["SIL"] + [p for w in words for p in dictionary[w]] + ["SIL"]
    from scipy.sparse import csr_matrix

    texts = list(pool)
    index: dict[tuple[str, str], int] = {}
    rows, cols = [], []
    for row, phones in enumerate(pool.values()):
        for diphone in set(itertools.pairwise(phones)):
            rows.append(row)
            cols.append(index.setdefault(diphone, len(index)))
    incidence = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(index)))
    targets = {"P", "B", "M", "AA", "AE", "AH", "AO", "AW", "AY"}
    bonus = np.array([sum(p in targets for p in pool[t]) for t in texts], dtype=np.float64)
    covered = np.zeros(len(index))
    chosen: list[int] = []
    available = np.ones(len(texts), dtype=bool)
    for _ in range(min(count, len(texts))):
        scores = incidence @ (1.0 / (1.0 + covered)) + 0.05 * bonus
        best = int(np.argmax(np.where(available, scores, -np.inf)))
        chosen.append(best)
        available[best] = False
        covered[incidence[best].indices] += 1
    return [texts[i] for i in chosen]


def load_sentences(path: str | Path | None = None) -> list[str]:
    """The sentence set (one per line, ``#`` comments skipped)."""
    path = Path(path) if path is not None else SENTENCES_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def sentence_statistics(sentences: Sequence[str]) -> dict:
    """Phone and diphone coverage of a sentence set (for the sentences file header and the report)."""
    dictionary = _dictionary()
    phones: dict[str, int] = {}
    diphones: set[tuple[str, str]] = set()
    for sentence in sentences:
        sequence = ["SIL"] + [p for w in sentence_words(sentence) for p in dictionary.get(w, [])] + ["SIL"]
        for phone in sequence[1:-1]:
            phones[phone] = phones.get(phone, 0) + 1
        diphones.update(itertools.pairwise(sequence))
    return {"sentences": len(sentences), "phones": len(phones), "diphones": len(diphones),
            "rarest_phones": sorted(phones.items(), key=lambda kv: kv[1])[:5]}  # fmt: skip


# ------------------------------------------------------------------------------------------------- synthesis


def _run(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), check=True, capture_output=True, timeout=120, **kwargs)


def _read_wav(path: Path) -> np.ndarray:
    import librosa

    audio, _ = librosa.load(str(path), sr=SAMPLING_RATE, mono=True)
    return audio.astype(np.float32)


def synthesize_espeak(text: str, voice: str, rate: int, pitch: int, prosody: Prosody, workdir: Path) -> np.ndarray:
    """16 kHz mono speech from ``espeak-ng`` (rate in words per minute, pitch 0–99)."""
    path = workdir / "espeak.wav"
    _run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(int(np.clip(pitch, 0, 99))),
          "-a", str(prosody.amplitude), "-g", str(prosody.word_gap), "-w", str(path), text])  # fmt: skip
    return _read_wav(path)


def synthesize_festival(text: str, voice: str, tempo: float, semitones: float, workdir: Path) -> np.ndarray:
    """16 kHz mono speech from festival's ``text2wave`` with ``sox`` changing its tempo and pitch."""
    text_path, raw, out = workdir / "text.txt", workdir / "festival.wav", workdir / "festival_sox.wav"
    text_path.write_text(text + "\n", encoding="utf-8")
    _run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(raw), str(text_path)])
    effects = ["tempo", "-s", f"{tempo:.3f}", "pitch", f"{100 * semitones:.0f}", "rate", str(SAMPLING_RATE)]
    _run(["sox", str(raw), "-c", "1", str(out), *effects])
    return _read_wav(out)


def pad_silence(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0.15–0.5 s of near-silence (a -70 dB noise floor) before and after the speech, and peak level -3 to -1 dB."""
    peak = float(np.abs(audio).max()) or 1.0
    audio = audio / peak * 10 ** (rng.uniform(-3, -1) / 20)
    before, after = (int(rng.uniform(0.15, 0.5) * SAMPLING_RATE) for _ in range(2))
    out = np.concatenate([np.zeros(before), audio, np.zeros(after)])
    return (out + 10 ** (-70 / 20) * rng.standard_normal(len(out))).astype(np.float32)


# ---------------------------------------------------------------------------------------------- augmentation


def _colored_noise(length: int, color: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(length)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)
    frequency = np.maximum(np.fft.rfftfreq(length, 1 / SAMPLING_RATE), 20.0)
    spectrum /= frequency ** (0.5 if color == "pink" else 1.0)
    return np.fft.irfft(spectrum, length)


def _room_impulse(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: direct path, a few early reflections, exponentially decaying noise tail."""
    length = int(min(rt60, 1.0) * SAMPLING_RATE)
    t = np.arange(length) / SAMPLING_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.005 * SAMPLING_RATE)] = 0.0
    response = 0.3 * tail / (np.abs(tail).max() + 1e-9)
    for _ in range(4):
        response[int(rng.uniform(0.003, 0.03) * SAMPLING_RATE)] += rng.uniform(0.2, 0.5) * rng.choice([-1, 1])
    response[0] = 1.0
    return response


def augment(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A randomly degraded copy (timings unchanged) and its parameters: at least one of room reverb, band-limiting,
    additive noise at 0/5/10/20 dB SNR; gain -12 to +6 dB always (clipping-safe)."""
    from scipy.signal import butter, fftconvolve, sosfilt

    out = np.asarray(audio, dtype=np.float64)
    params: dict = {}
    chosen = [name for name in ("reverb", "band", "noise") if rng.random() < 0.5] or [
        ("reverb", "band", "noise")[int(rng.integers(3))]
    ]
    if "reverb" in chosen:
        rt60 = float(rng.uniform(0.2, 0.8))
        out = fftconvolve(out, _room_impulse(rt60, rng))[: len(out)]
        params["reverb_rt60"] = round(rt60, 3)
    if "band" in chosen:
        kind = ["telephone", "lowpass4k", "lowpass6k", "highpass200"][int(rng.integers(4))]
        sos = {
            "telephone": lambda: butter(6, (300, 3400), btype="band", fs=SAMPLING_RATE, output="sos"),
            "lowpass4k": lambda: butter(8, 4000, btype="low", fs=SAMPLING_RATE, output="sos"),
            "lowpass6k": lambda: butter(8, 6000, btype="low", fs=SAMPLING_RATE, output="sos"),
            "highpass200": lambda: butter(4, 200, btype="high", fs=SAMPLING_RATE, output="sos"),
        }[kind]()
        out = sosfilt(sos, out)
        params["band"] = kind
    if "noise" in chosen:
        snr = float([0, 5, 10, 20][int(rng.integers(4))])
        color = ["white", "pink", "brown"][int(rng.integers(3))]
        noise = _colored_noise(len(out), color, rng)
        speech_power = np.mean(out[np.abs(out) > 0.05 * np.abs(out).max()] ** 2)
        noise *= np.sqrt(speech_power / (np.mean(noise**2) * 10 ** (snr / 10)))
        out = out + noise
        params["noise"] = {"snr_db": snr, "color": color}
    gain = float(rng.uniform(-12, 6))
    out = out * 10 ** (gain / 20)
    peak = np.abs(out).max()
    if peak > 0.99:
        out *= 0.99 / peak
        gain -= 20 * np.log10(peak / 0.99)
    params["gain_db"] = round(gain, 2)
    return out.astype(np.float32), params


# ------------------------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Job:
    """One clean synthetic clip to make."""

    id: str
    sentence_index: int
    text: str
    engine: str  # espeak | festival
    voice: str
    emotion: str


def _stable_rng(*keys: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, keys)).encode()))


def voice_list(spec: str) -> list[tuple[str, str]]:
    """``(engine, voice)`` pairs from ``all``, ``espeak``, ``festival`` or a comma-separated list of voice ids."""
    everything = [("espeak", v) for v in ESPEAK_VOICES] + [("festival", v) for v in FESTIVAL_VOICES]
    if spec == "all":
        return everything
    if spec in ("espeak", "festival"):
        return [(e, v) for e, v in everything if e == spec]
    wanted = [v.strip() for v in spec.split(",") if v.strip()]
    known = dict((v, e) for e, v in everything)
    unknown = [v for v in wanted if v not in known and not v.startswith("en")]
    if unknown:
        raise ValueError(f"unknown voices {unknown}; espeak voices start with 'en', festival ones: {FESTIVAL_VOICES}")
    return [(known.get(v, "espeak"), v) for v in wanted]


def plan_jobs(sentences: Sequence[str], voices: Sequence[tuple[str, str]], per_sentence: int, seed: int) -> list[Job]:
    """Deterministic jobs: each sentence spoken by ``per_sentence`` distinct voices, each with a prosody preset.

    Voices cycle in a seeded order so that all are used evenly; presets are drawn (neutral twice as likely).
    """
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(voices)))
    presets = [*list(EMOTIONS), "neutral"]
    jobs = []
    cursor = 0
    for index, text in enumerate(sentences):
        chosen = []
        while len(chosen) < min(per_sentence, len(voices)):
            candidate = order[cursor % len(order)]
            cursor += 1
            if candidate not in chosen:
                chosen.append(candidate)
        for v in chosen:
            engine, voice = voices[v]
            emotion = presets[int(rng.integers(len(presets)))]
            key = re.sub(r"[^A-Za-z0-9]+", "-", voice)
            jobs.append(Job(f"s{index:04d}_{key}_{emotion}", index, text, engine, voice, emotion))
    return jobs


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    tmp = path.with_suffix(".tmp.wav")
    sf.write(tmp, np.clip(audio, -1, 1), SAMPLING_RATE, subtype="PCM_16")
    os.replace(tmp, path)


def _existing_ids(*paths: Path) -> set[str]:
    ids = set()
    for path in paths:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        ids.add(json.loads(line)["id"])
                    except (json.JSONDecodeError, KeyError):
                        continue  # a torn last line from an interrupted run: that clip is redone
    return ids


def synthesize_job(job: Job, workdir: Path) -> tuple[np.ndarray, dict]:
    """Clean padded speech for a job and its voice settings (rate, pitch drawn from the job's own seed)."""
    rng = _stable_rng("synth", job.id)
    prosody = PROSODY[job.emotion]
    if job.engine == "espeak":
        rate = round(rng.uniform(135, 185) * prosody.rate)
        pitch = round(rng.uniform(35, 65) + prosody.pitch)
        audio = synthesize_espeak(job.text, job.voice, rate, pitch, prosody, workdir)
        settings = {"rate": rate, "pitch": int(np.clip(pitch, 0, 99)), "amplitude": prosody.amplitude}
    else:
        tempo = float(rng.uniform(0.9, 1.15) * prosody.rate)
        semitones = float(rng.uniform(-2, 2) + prosody.pitch / 6)
        audio = synthesize_festival(job.text, job.voice, tempo, semitones, workdir)
        settings = {"rate": round(tempo, 3), "pitch": round(semitones, 2)}
    return pad_silence(audio, rng), settings


def english_real_clips(media: Path) -> list[tuple[str, Path, str]]:
    """``(id, path, split)`` for the English speech clips of the media manifest (``lang=en``/``en?``), one file per
    recording (``.mov``/``.mp3`` twins deduplicated), split by source repository (:data:`HELDOUT_SOURCES`)."""
    manifest = json.loads((media / "manifest.json").read_text(encoding="utf-8"))
    out, seen = [], set()
    for entry in sorted(manifest, key=lambda e: e["file"]):
        notes = entry.get("notes", "")
        if entry.get("kind") != "speech" or not re.match(r"lang=en\??[;\s]|lang=en\??$", notes):
            continue
        path = media / entry["file"]
        stem = path.stem
        if stem in seen or not path.is_file():
            continue
        seen.add(stem)
        source = entry.get("source", "").split("/", 1)[-1].split(":", 1)[0]
        split = "heldout" if any(source.startswith(s) or stem.startswith(s) for s in HELDOUT_SOURCES) else "train"
        out.append((f"real_{re.sub(r'[^A-Za-z0-9]+', '-', stem)[:80]}", path, split))
    return out


def build_corpus(
    output: str | Path,
    sentences: Sequence[str],
    voices: Sequence[tuple[str, str]],
    per_sentence: int = 2,
    augment_copies: int = 1,
    media: Path | None = None,
    seed: int = 0,
    log=print,
) -> dict:
    """Generate (or resume) the corpus under ``output``; returns the run's summary (also in ``corpus.json``)."""
    output = Path(output)
    clips = output / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    manifest_path, heldout_path = output / "manifest.jsonl", output / "heldout.jsonl"
    done = _existing_ids(manifest_path, heldout_path)
    jobs = plan_jobs(sentences, voices, per_sentence, seed)
    counts = {"clean": 0, "augmented": 0, "real_train": 0, "real_heldout": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="emotalk_corpus_") as tmp,
        manifest_path.open("a", encoding="utf-8") as manifest,
    ):
        workdir = Path(tmp)
        for number, job in enumerate(jobs):
            ids = [job.id] + [f"{job.id}_aug{k}" for k in range(augment_copies)]
            if all(i in done for i in ids):
                counts["skipped"] += len(ids)
                continue
            try:
                audio, settings = synthesize_job(job, workdir)
                phones = align_phones(audio, job.text)
            except (subprocess.SubprocessError, ValueError, OSError) as error:
                counts["failed"] += 1
                failures.append(f"{job.id}: {type(error).__name__}: {str(error)[:200]}")
                continue
            base = {
                "source": job.engine, "text": job.text, "sentence_index": job.sentence_index, "voice": job.voice,
                **settings, "emotion": job.emotion, "phones": phones, "phone_method": "forced-alignment",
                "split": "train", "sampling_rate": SAMPLING_RATE,
            }  # fmt: skip
            records = [(job.id, audio, None)]
            for k in range(augment_copies):
                augmented, params = augment(audio, _stable_rng("augment", job.id, k))
                records.append((f"{job.id}_aug{k}", augmented, {**params, "clean_id": job.id}))
            for clip_id, clip_audio, augmentation in records:
                if clip_id in done:
                    continue
                _write_wav(clips / f"{clip_id}.wav", clip_audio)
                record = {"id": clip_id, "audio": f"clips/{clip_id}.wav", "duration": round(len(clip_audio) / SAMPLING_RATE, 4),
                          **base, "augmentation": augmentation}  # fmt: skip
                manifest.write(json.dumps(record) + "\n")
                manifest.flush()
                counts["augmented" if augmentation else "clean"] += 1
            if (number + 1) % 50 == 0:
                log(f"{number + 1}/{len(jobs)} sentences·voices, {time.perf_counter() - start:.0f} s")
        if media is not None and (media / "manifest.json").is_file():
            from emotalk_common.video_io import read_audio

            with heldout_path.open("a", encoding="utf-8") as heldout:
                for clip_id, path, split in english_real_clips(media):
                    if clip_id in done:
                        counts["skipped"] += 1
                        continue
                    audio = read_audio(path)
                    phones = recognize_phones(audio)
                    _write_wav(clips / f"{clip_id}.wav", audio)
                    record = {
                        "id": clip_id, "audio": f"clips/{clip_id}.wav", "duration": round(len(audio) / SAMPLING_RATE, 4),
                        "source": "real", "media_file": path.name, "text": None, "voice": None, "emotion": None,
                        "augmentation": None, "phones": phones, "phone_method": "phone-loop", "split": split,
                        "sampling_rate": SAMPLING_RATE,
                    }  # fmt: skip
                    target = heldout if split == "heldout" else manifest
                    target.write(json.dumps(record) + "\n")
                    target.flush()
                    counts[f"real_{split}"] += 1
    elapsed = time.perf_counter() - start
    made = counts["clean"] + counts["augmented"] + counts["real_train"] + counts["real_heldout"]
    summary = {
        "output": str(output),
        "sentences": len(sentences),
        "voices": [v for _, v in voices],
        "voices_per_sentence": per_sentence,
        "augment_copies": augment_copies,
        "seed": seed,
        "counts": counts,
        "failures": failures[:50],
        "seconds": round(elapsed, 1),
        "clips_per_minute": round(60 * made / elapsed, 1) if elapsed > 0 else None,
        "heldout_sources": list(HELDOUT_SOURCES),
    }
    (output / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def read_manifest(path: str | Path) -> list[dict]:
    """Records of a ``manifest.jsonl`` / ``heldout.jsonl`` (torn lines skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def check_tools(voices: Iterable[tuple[str, str]]) -> list[str]:
    """Missing command-line tools for the requested voices (empty when everything is installed)."""
    engines = {e for e, _ in voices}
    needed = (["espeak-ng"] if "espeak" in engines else []) + (["text2wave", "sox"] if "festival" in engines else [])
    return [tool for tool in needed if shutil.which(tool) is None]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="corpus folder (outside the repository)")
    parser.add_argument("--sentences", default=str(SENTENCES_FILE))
    parser.add_argument("--num-sentences", type=int, default=None, help="use the first N sentences (default: all)")
    parser.add_argument("--voices", default="all", help="all | espeak | festival | comma-separated voice ids")
    parser.add_argument("--voices-per-sentence", type=int, default=2)
    parser.add_argument("--augment-copies", type=int, default=1)
    default_media = Path(__file__).resolve().parents[2] / ".." / "shared" / "media"
    parser.add_argument("--media", default=str(default_media), help="media folder with manifest.json (real speech)")
    parser.add_argument("--no-real", action="store_true", help="skip the real speech clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="2 sentences, 2 espeak voices, 1 augmented copy, no real")
    parser.add_argument("--write-sentences", type=int, default=None, metavar="N",
                        help="regenerate the sentence file with N sentences and exit")  # fmt: skip
    args = parser.parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.write_sentences:
        sentences = generate_sentences(args.write_sentences, seed=args.seed)
        stats = sentence_statistics(sentences)
        header = [
            "# Phonetically balanced sentences for the EmoTalk speech corpus, generated by the project (no external text).",
            f"# Regenerate: python -m recipes.default_model.corpus --write-sentences {args.write_sentences}"
            + (f" --seed {args.seed}" if args.seed else ""),
            f"# {stats['sentences']} sentences, {stats['phones']} phones, {stats['diphones']} diphones covered.",
        ]
        Path(args.sentences).write_text("\n".join(header + sentences) + "\n", encoding="utf-8")
        print(json.dumps(stats))
        return 0
    if not args.output:
        parser.error("--output is required")
    sentences = load_sentences(args.sentences)
    voices = voice_list(args.voices)
    per_sentence, copies, media = (
        args.voices_per_sentence,
        args.augment_copies,
        None if args.no_real else Path(args.media),
    )
    if args.tiny:
        sentences, voices, per_sentence, copies, media = sentences[:2], voices[:2], 1, 1, None
    elif args.num_sentences:
        sentences = sentences[: args.num_sentences]
    missing = check_tools(voices)
    if missing:
        print(f"missing tools: {missing}; apt-get install espeak-ng festival festvox-us-slt-hts "
              "festvox-kallpc16k festvox-kdlpc16k sox", file=sys.stderr)  # fmt: skip
        return 1
    summary = build_corpus(args.output, sentences, voices, per_sentence, copies, media, args.seed, log)
    print(json.dumps({k: summary[k] for k in ("counts", "seconds", "clips_per_minute")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
