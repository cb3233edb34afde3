"""Constants every EmoTalk package agrees on: the audio rate and the emotion classes."""

from __future__ import annotations

SAMPLING_RATE = 16000
"""Hz of all speech inside EmoTalk: the audio encoder's input, training clips, alignment and evaluation audio."""

EMOTION_LABELS: tuple[str, ...] = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
"""MEAD's eight emotion classes in label-id order: the default of ``EmoTalkLandmarkConfig.emotion_labels``."""

__all__ = ["EMOTION_LABELS", "SAMPLING_RATE"]
