"""The base class of EmoTalk's input errors, torch-free so that every package (evaluation too) can raise it.

``modeling_emotalk.errors`` re-exports it and derives the specific errors from it.
"""

from __future__ import annotations


class EmoTalkInputError(ValueError):
    """Base class of all the errors caused by an invalid user input."""


__all__ = ["EmoTalkInputError"]
