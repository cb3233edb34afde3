"""Phone segments from speech with pocketsphinx: forced alignment to a transcript, or phone-loop recognition.

pocketsphinx (imported lazily) bundles the CMU en-us acoustic model, dictionary and phone language model, so
this works offline. Forced alignment is the accurate one when the transcript is known (the synthetic training
corpus, evaluation with ``--transcript``); phone-loop recognition on unknown or non-English speech still yields
usable bilabial (P B M) and open-vowel segments, with more errors.

Every call builds a fresh decoder: pocketsphinx carries its cepstral-mean and noise estimates from one
utterance to the next (``set_cmn`` does not fully reset them), which would make the labels depend on the order
of the clips. A decoder costs about 0.4 s to load (0.1 s for the phone loop).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .constants import SAMPLING_RATE
from .exceptions import EmoTalkInputError

FRAME_SECONDS = 0.01  # pocketsphinx frames are 10 ms
DITHER = 1e-4  # about 3 LSB of PCM16
SILENCE = "SIL"
BILABIALS = frozenset({"P", "B", "M"})
# Open vowels: the jaw drops and the lips part widely (CMU/ARPAbet).
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})
_SILENCE_LABELS = frozenset({"<S>", "</S>", "<SIL>", "SIL", "[NOISE]"})
# The wider beams of the retry when the default ones find no alignment (about 1 % of synthetic clips).
WIDE_BEAMS = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}


class PhoneSegment(NamedTuple):
    """One phone: ARPAbet label (stress removed, ``SIL`` for silence and noise) and its span in seconds.

    A tuple, so it unpacks as ``phone, start, end`` and is written to JSON as ``[phone, start, end]``.
    """

    phone: str
    start: float
    end: float


class AlignmentError(EmoTalkInputError):
    """The transcript cannot be aligned to the audio (unknown words, or no alignment path found)."""


def transcript_words(text: str) -> list[str]:
    """Lower-case words of a transcript as the aligner sees them (letters and apostrophes)."""
    return re.sub(r"[^a-z' ]+", " ", str(text).lower()).split()


def clean_label(label: str) -> str:
    """A pocketsphinx phone label without stress digits; silences and noises (``+NSN+``...) become ``SIL``."""
    label = re.sub(r"\d", "", label.upper())
    return SILENCE if label in _SILENCE_LABELS or label.startswith("+") else label


def pcm16(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """Mono float audio at 16 kHz as the PCM16 bytes pocketsphinx decodes, with a seeded dither.

    The dither (:data:`DITHER`): stretches of exact digital silence (synthetic or gated audio) give log(0)
    energies that make pocketsphinx's alignment search fail. Audio louder than full scale is normalized.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise EmoTalkInputError(f"audio must be mono (N,), got shape {audio.shape}")
    if sampling_rate != SAMPLING_RATE:
        raise EmoTalkInputError(
            f"phone alignment needs {SAMPLING_RATE} Hz audio, got {sampling_rate} Hz; resample first"
        )
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    audio = audio + DITHER * np.random.default_rng(0).standard_normal(audio.shape).astype(np.float32)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def _segment(label: str, start_frame: int, end_frame: int) -> PhoneSegment:
    return PhoneSegment(clean_label(label), round(start_frame * FRAME_SECONDS, 3), round(end_frame * FRAME_SECONDS, 3))


def merge_silence(segments: Sequence[PhoneSegment]) -> list[PhoneSegment]:
    """Consecutive ``SIL`` segments joined into one."""
    merged: list[PhoneSegment] = []
    for segment in segments:
        if merged and segment.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1] = merged[-1]._replace(end=segment.end)
        else:
            merged.append(segment)
    return merged


def _aligner(beams: dict):
    from pocketsphinx import Decoder

    return Decoder(samprate=SAMPLING_RATE, bestpath=False, loglevel="FATAL", **beams)


def _align_once(decoder, pcm: bytes, words: list[str]) -> list[PhoneSegment]:
    """Two-pass forced alignment with ``decoder``; :class:`AlignmentError` when it finds no alignment path."""
    text = " ".join(words)
    try:
        decoder.set_align_text(text)
        for second_pass in (False, True):
            if second_pass:
                decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
        alignment = decoder.get_alignment()
    except RuntimeError as error:  # pocketsphinx's "alignment failed": no path within the beams
        raise AlignmentError(f"pocketsphinx could not align the transcript {text!r} to the audio: {error}") from error
    if alignment is None:
        raise AlignmentError(f"pocketsphinx returned no alignment for the transcript {text!r}")
    return [_segment(p.name, p.start, p.start + p.duration) for word in alignment for p in word]


def align_phones(audio: np.ndarray, transcript: str, sampling_rate: int = SAMPLING_RATE) -> list[PhoneSegment]:
    """Forced alignment of an English transcript: phone segments from pocketsphinx's two-pass aligner.

    When the default beams find no path (about 1 % of synthetic clips, mostly accented voices), the alignment is
    retried once with :data:`WIDE_BEAMS`. Raises :class:`AlignmentError` (an :class:`EmoTalkInputError`) when
    the transcript has no words, a word is missing from the CMU dictionary, or the audio cannot be aligned.
    """
    words = transcript_words(transcript)
    if not words:
        raise AlignmentError(f"the transcript has no words to align: {transcript!r}")
    decoder = _aligner({})
    missing = [w for w in words if decoder.lookup_word(w) is None]
    if missing:
        raise AlignmentError(f"words not in the pocketsphinx en-us dictionary: {missing} (in {transcript!r})")
    pcm = pcm16(audio, sampling_rate)
    try:
        segments = _align_once(decoder, pcm, words)
    except AlignmentError:
        segments = _align_once(_aligner(WIDE_BEAMS), pcm, words)
    return merge_silence(segments)


def recognize_phones(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[PhoneSegment]:
    """Phone-loop recognition (no transcript): the most likely phone sequence under the en-us phone LM."""
    from pocketsphinx import Decoder, get_model_path

    pcm = pcm16(audio, sampling_rate)
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
    return merge_silence([_segment(s.word, s.start_frame, s.end_frame + 1) for s in decoder.seg()])


def phone_segments(
    audio: np.ndarray, sampling_rate: int = SAMPLING_RATE, transcript: str | None = None
) -> tuple[list[PhoneSegment], str]:
    """Phone segments and the method used: forced alignment when a transcript is given, else the phone loop."""
    if transcript:
        return align_phones(audio, transcript, sampling_rate), "forced-alignment"
    return recognize_phones(audio, sampling_rate), "phone-loop"


__all__ = [
    "BILABIALS",
    "FRAME_SECONDS",
    "OPEN_VOWELS",
    "SILENCE",
    "AlignmentError",
    "PhoneSegment",
    "align_phones",
    "clean_label",
    "merge_silence",
    "pcm16",
    "phone_segments",
    "recognize_phones",
    "transcript_words",
]
