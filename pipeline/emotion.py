"""Emotion requests → per-frame emotion weights.

Accepted forms: a label (``"happy"``), ``"auto"`` / ``None`` (inferred from the voice), a blend
(``{"happy": 0.7, "surprised": 0.3}``) and a schedule (``[(0.0, "neutral"), (2.5, "happy")]``, each
entry a start time in seconds and a label or a blend). The CLI's string forms are parsed by
:func:`parse_emotion_string`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modeling_emotalk.errors import EmoTalkInputError

EmotionSpec = str | Mapping[str, float] | Sequence[tuple[float, Any]] | None
TRANSITION_SECONDS = 0.3  # cross-fade between the segments of a schedule
MAX_WEIGHT = 1e6
"""Largest blend weight: weights are relative, and the float32 sum of larger ones can overflow to NaN."""


def _check_label(name: Any, labels: Sequence[str]) -> int:
    if not isinstance(name, str) or name.strip().lower() not in labels:
        raise EmoTalkInputError(f"unknown emotion {name!r}: expected one of {', '.join(labels)} or 'auto'")
    return list(labels).index(name.strip().lower())


def emotion_vector(spec: str | Mapping[str, float], labels: Sequence[str]) -> np.ndarray:
    """One label or a blend → a weight vector ``(E,)`` summing to 1."""
    weights = np.zeros(len(labels), dtype=np.float32)
    if isinstance(spec, str):
        weights[_check_label(spec, labels)] = 1.0
        return weights
    if not isinstance(spec, Mapping) or not spec:
        raise EmoTalkInputError(f"an emotion blend must be a non-empty dict of label -> weight, got {spec!r}")
    for name, value in spec.items():
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
            raise EmoTalkInputError(f"the weight of emotion {name!r} must be a number, got {value!r}")
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise EmoTalkInputError(f"the weight of emotion {name!r} must be finite and >= 0, got {value}")
        if value > MAX_WEIGHT:
            raise EmoTalkInputError(
                f"the weight of emotion {name!r} is too large ({value:g}): weights are relative, use values up to "
                f"{MAX_WEIGHT:g} (e.g. happy:0.7,surprised:0.3)"
            )
        weights[_check_label(name, labels)] += value
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        raise EmoTalkInputError(f"an emotion blend needs a positive, finite total weight, got {dict(spec)}")
    return weights / total


def is_auto(spec: EmotionSpec) -> bool:
    return spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto")


def validate_emotion(spec: EmotionSpec, labels: Sequence[str]) -> None:
    """Raise a clear error for a malformed request (cheap; runs before any heavy work)."""
    emotion_weights(spec, labels, num_frames=1, fps=25.0)


def emotion_weights(spec: EmotionSpec, labels: Sequence[str], num_frames: int, fps: float) -> np.ndarray | None:
    """Per-frame weights ``(T, E)``, or ``None`` for "auto" (the model's audio-emotion head decides)."""
    if is_auto(spec):
        return None
    if isinstance(spec, (str, Mapping)):
        return np.repeat(emotion_vector(spec, labels)[None], num_frames, axis=0)
    if not isinstance(spec, Sequence) or not spec:
        raise EmoTalkInputError(
            f"emotion must be a label, 'auto', a dict of label -> weight, or a list of (start_seconds, emotion); "
            f"got {spec!r}"
        )
    starts, vectors = [], []
    for entry in spec:
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 2:
            raise EmoTalkInputError(f"each emotion schedule entry must be (start_seconds, emotion), got {entry!r}")
        start, emotion = entry
        if not isinstance(start, numbers.Real) or isinstance(start, (bool, np.bool_)):
            raise EmoTalkInputError(f"schedule start times must be numbers of seconds, got {start!r}")
        start = float(start)
        if not np.isfinite(start) or start < 0 or (starts and start <= starts[-1]):
            raise EmoTalkInputError(f"schedule start times must be >= 0 and increasing, got {[e[0] for e in spec]}")
        if is_auto(emotion):
            raise EmoTalkInputError("'auto' cannot be part of a schedule: give a label or a blend for each segment")
        starts.append(start)
        vectors.append(emotion_vector(emotion, labels))
    times = (np.arange(num_frames) + 0.5) / fps
    out = np.repeat(vectors[0][None], num_frames, axis=0)
    for start, vector in zip(starts[1:], vectors[1:], strict=True):
        ramp = np.clip((times - start) / TRANSITION_SECONDS + 0.5, 0, 1)[:, None]
        out = out * (1 - ramp) + vector[None] * ramp
    return out.astype(np.float32)


def parse_emotion_string(text: str) -> EmotionSpec:
    """CLI syntax: ``happy`` | ``auto`` | ``happy:0.7,surprised:0.3`` (blend) | ``0:neutral,2.5:happy`` (schedule)."""
    text = text.strip()
    if ":" not in text:
        return text
    items = [item.strip() for item in text.split(",") if item.strip()]
    pairs = []
    for item in items:
        left, sep, right = item.partition(":")
        if not sep:
            raise EmoTalkInputError(
                f"cannot parse emotion {text!r}: expected 'label:weight,...' or 'seconds:label,...'"
            )
        pairs.append((left.strip(), right.strip()))
    try:
        schedule = [(float(left), right) for left, right in pairs]
    except ValueError:
        schedule = None
    if schedule is not None:
        return schedule
    try:
        return {left: float(right) for left, right in pairs}
    except ValueError as err:
        raise EmoTalkInputError(
            f"cannot parse emotion {text!r}: expected 'label:weight,...' (blend) or 'seconds:label,...' (schedule)"
        ) from err
