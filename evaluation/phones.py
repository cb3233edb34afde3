"""Phone segments from speech with pocketsphinx: phone-loop recognition, or forced alignment to a transcript.

pocketsphinx bundles the CMU en-us acoustic model, dictionary and phone language model, so this works
offline. Phone-loop recognition on non-English speech still yields usable bilabial (P B M) and open-vowel
segments, but with more errors; a transcript (forced alignment) is more accurate when available.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .video_io import SAMPLING_RATE

FRAME_SECONDS = 0.01  # pocketsphinx frames are 10 ms
DITHER = 1e-4
BILABIALS = frozenset({"P", "B", "M"})
# Open vowels: the jaw drops and the lips part widely (CMU/ARPAbet).
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})


@dataclass(frozen=True)
class PhoneSegment:
    """One phone: ARPAbet label (stress removed, ``SIL`` for silence) and its span in seconds."""

    phone: str
    start: float
    end: float


def _pcm16(audio: np.ndarray, sampling_rate: int) -> bytes:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {audio.shape}")
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"phone recognition needs {SAMPLING_RATE} Hz audio, got {sampling_rate} Hz; resample first")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    # Seeded dither of about 3 LSB: stretches of exact digital silence (synthetic or gated audio) give
    # log(0) energies that make pocketsphinx's alignment search fail.
    audio = audio + DITHER * np.random.default_rng(0).standard_normal(audio.shape).astype(np.float32)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def _clean(label: str) -> str:
    label = re.sub(r"\d", "", label.upper())
    if label in {"<S>", "</S>", "<SIL>", "SIL", "+NSN+", "+SPN+", "[NOISE]"} or label.startswith("+"):
        return "SIL"
    return label


def recognize_phones(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[PhoneSegment]:
    """Phone-loop recognition (no transcript): the most likely phone sequence under the en-us phone LM."""
    from pocketsphinx import Decoder, get_model_path

    pcm = _pcm16(audio, sampling_rate)
    decoder = Decoder(
        allphone=get_model_path("en-us/en-us-phone.lm.bin"),
        samprate=SAMPLING_RATE,
        lw=2.0,
        pip=0.3,
        beam=1e-20,
        pbeam=1e-20,
        loglevel="FATAL",
    )
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    segments = [
        PhoneSegment(_clean(s.word), s.start_frame * FRAME_SECONDS, (s.end_frame + 1) * FRAME_SECONDS)
        for s in decoder.seg()
    ]
    return _merge_silence(segments)


def align_phones(audio: np.ndarray, transcript: str, sampling_rate: int = SAMPLING_RATE) -> list[PhoneSegment]:
    """Forced alignment of an English transcript: phone segments from pocketsphinx's two-pass aligner.

    Raises ``ValueError`` when a word is missing from the CMU dictionary or the audio cannot be aligned.
    """
    from pocketsphinx import Decoder

    pcm = _pcm16(audio, sampling_rate)
    words = re.sub(r"[^a-z' ]+", " ", transcript.lower()).split()
    if not words:
        raise ValueError(f"transcript has no words to align: {transcript!r}")
    decoder = Decoder(samprate=SAMPLING_RATE, bestpath=False, loglevel="FATAL")
    missing = [w for w in words if decoder.lookup_word(w) is None]
    if missing:
        raise ValueError(f"words not in the pocketsphinx en-us dictionary: {missing}")
    try:
        decoder.set_align_text(" ".join(words))
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        alignment = decoder.get_alignment()
    except RuntimeError as error:
        raise ValueError(f"pocketsphinx could not align the transcript to the audio: {error}") from error
    if alignment is None:
        raise ValueError("pocketsphinx returned no alignment for the transcript")
    segments = [
        PhoneSegment(_clean(phone.name), phone.start * FRAME_SECONDS, (phone.start + phone.duration) * FRAME_SECONDS)
        for word in alignment
        for phone in word
    ]
    return _merge_silence(segments)


def _merge_silence(segments: list[PhoneSegment]) -> list[PhoneSegment]:
    merged: list[PhoneSegment] = []
    for segment in segments:
        if merged and segment.phone == "SIL" and merged[-1].phone == "SIL":
            merged[-1] = PhoneSegment("SIL", merged[-1].start, segment.end)
        else:
            merged.append(segment)
    return merged


def phone_segments(
    audio: np.ndarray, sampling_rate: int = SAMPLING_RATE, transcript: str | None = None
) -> tuple[list[PhoneSegment], str]:
    """Phone segments and the method used: forced alignment when a transcript is given, else the phone loop."""
    if transcript:
        return align_phones(audio, transcript, sampling_rate), "forced-alignment"
    return recognize_phones(audio, sampling_rate), "phone-loop"
