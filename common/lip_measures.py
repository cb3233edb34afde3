"""Mouth-opening measures of face-mesh landmarks, numpy only.

Two related scale-free measures of how far the lips are apart, both the mean distance of the 7 central
inner-lip pairs (around points 13/14: less noisy than the single 13–14 pair) divided by the distance between
the outer eye corners (33, 263):

- :func:`lip_opening_2d`: in the image plane (x, y). What a viewer sees; the evaluation suite's measure.
- :func:`lip_opening_3d`: in 3D, rotation-invariant; the training teacher's measure. On frontal faces the two
  agree within about 5 % on real videos.

Both are 0 with the lips together. (Training's differentiable loss uses a third, different quantity, the signed
vertical gap between the upper and lower lip in canonical coordinates: ``emotalk_training.losses.vertical_lip_gap``.)
"""

from __future__ import annotations

import numpy as np

from .exceptions import EmoTalkInputError
from .topology import EYE_OUTER_CORNERS, LIPS_INNER_LOWER, LIPS_INNER_UPPER, NUM_LANDMARKS

# the 7 central pairs of the 11-point inner lip rings (the mouth corners and their neighbours left out)
OPENING_UPPER = LIPS_INNER_UPPER[2:-2]
OPENING_LOWER = LIPS_INNER_LOWER[2:-2]


def _check_points(points: np.ndarray, dims: int) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2] != NUM_LANDMARKS or points.shape[-1] < dims:
        raise EmoTalkInputError(
            f"expected face-mesh landmarks (..., {NUM_LANDMARKS}, {'2 or 3' if dims == 2 else 3}), got {points.shape}"
        )
    return points[..., :dims]


def eye_corner_distance(points: np.ndarray, dims: int = 3) -> np.ndarray:
    """Distance between the outer eye corners (33, 263) of ``(..., 478, >= dims)`` landmarks in ``dims`` D, ``(...)``."""
    points = _check_points(points, dims)
    return np.linalg.norm(points[..., EYE_OUTER_CORNERS[0], :] - points[..., EYE_OUTER_CORNERS[1], :], axis=-1)


def _lip_opening(points: np.ndarray, dims: int) -> np.ndarray:
    points = _check_points(points, dims)
    gaps = np.linalg.norm(points[..., OPENING_UPPER, :] - points[..., OPENING_LOWER, :], axis=-1).mean(-1)
    return gaps / eye_corner_distance(points, dims)


def lip_opening_2d(points: np.ndarray) -> np.ndarray:
    """Image-plane inner-lip opening over the image-plane eye-corner distance, ``(...)`` for ``(..., 478, 2|3)``.

    NaN where the landmarks are NaN (a lost face).
    """
    return _lip_opening(points, 2)


def lip_opening_3d(points: np.ndarray) -> np.ndarray:
    """3D inner-lip opening over the 3D eye-corner distance (rotation-invariant), ``(...)`` for ``(..., 478, 3)``."""
    return _lip_opening(points, 3)


__all__ = ["OPENING_LOWER", "OPENING_UPPER", "eye_corner_distance", "lip_opening_2d", "lip_opening_3d"]
