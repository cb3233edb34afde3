"""User-facing input errors.

Every error raised for a bad input (image or audio) derives from :class:`EmoTalkInputError`, itself a
``ValueError``, so callers can catch one class and show its message as is: each message names what was
received and what is expected.
"""

from __future__ import annotations

from emotalk_common.exceptions import EmoTalkInputError  # the base class, shared with the torch-free layer

__all__ = [
    "AudioLengthError",
    "AudioReadError",
    "EmoTalkInputError",
    "FaceTooSmallError",
    "ImageReadError",
    "ImageSizeError",
    "InvalidAudioError",
    "NoFaceError",
    "SilentAudioError",
]


class ImageReadError(EmoTalkInputError):
    """The image could not be read: missing or corrupt file, unsupported type, dtype or values."""


class ImageSizeError(EmoTalkInputError):
    """The image is empty, too small or too large."""


class NoFaceError(EmoTalkInputError):
    """No face was detected in the image."""


class FaceTooSmallError(EmoTalkInputError):
    """A face was found but it is too small to animate."""


class AudioReadError(EmoTalkInputError):
    """The audio could not be read or decoded: missing or corrupt file, no audio track."""


class InvalidAudioError(EmoTalkInputError):
    """The audio has an unsupported type, shape or dtype, NaN/inf values, or no/invalid sampling rate."""


class SilentAudioError(EmoTalkInputError):
    """The audio is (nearly) silent."""


class AudioLengthError(EmoTalkInputError):
    """The audio is empty, too short or too long."""
