"""Similarity alignment of a face to the crop template: the transform, the aligned crop and its landmarks.

The crop template places the eye centres and the mouth centre at fixed fractions of the crop; a least-squares
similarity (rotation, uniform scale, translation) maps the detected face onto it. Coordinates are continuous
pixels (see :mod:`emotalk_common.geometry`); crop landmarks are normalized to [-1, 1] (see :mod:`.landmarks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from emotalk_common.geometry import affine_scale, apply_affine, fit_similarity, warp_affine
from emotalk_common.topology import FACE_OVAL, LEFT_EYE_CORNERS, MOUTH_CORNERS, RIGHT_EYE_CORNERS

from .errors import ImageReadError

__all__ = ["TEMPLATE", "FaceCrop", "align_face", "alignment_matrix", "eye_mouth", "face_width"]

TEMPLATE = np.array([[0.375, 0.40], [0.625, 0.40], [0.5, 0.675]])
"""Template positions in the crop, as fractions of its size: eye centres (subject's right eye on the image left),
mouth centre. The eye distance is 0.25 S and the eye-mouth distance 1.1 eye distances (the median of real faces),
which leaves the forehead, some hair and the chin (about 1.9 eye distances below the eyes) inside the crop."""


@dataclass(eq=False)
class FaceCrop:
    """An aligned face crop and the transform that relates it to the photo."""

    crop: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray  # (478, 3) float32 in crop space [-1, 1]
    image_landmarks: np.ndarray  # (478, 3) float32 in image pixels (z in pixels)
    matrix: np.ndarray  # (2, 3) float64 similarity, image pixel -> crop pixel
    image_size: tuple[int, int]  # (H, W)
    num_faces: int
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def crop_size(self) -> int:
        """Side of the crop in pixels."""
        return int(self.crop.shape[0])

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return affine_scale(self.matrix)


def eye_mouth(points: np.ndarray) -> np.ndarray:
    """``(3, 2)``: right eye centre, left eye centre, mouth centre of ``(478, 2+)`` landmarks."""
    return np.stack(
        [
            points[list(RIGHT_EYE_CORNERS), :2].mean(0),
            points[list(LEFT_EYE_CORNERS), :2].mean(0),
            points[list(MOUTH_CORNERS), :2].mean(0),
        ]
    )


def face_width(points: np.ndarray) -> float:
    """Width of the face oval along the eye axis, in the units of ``points``."""
    right, left, _ = eye_mouth(points)
    axis = (left - right) / max(float(np.linalg.norm(left - right)), 1e-8)
    return float(np.ptp(points[list(FACE_OVAL), :2] @ axis))


def alignment_matrix(points: np.ndarray, crop_size: int, margin: float = 1.0) -> np.ndarray:
    """The ``(2, 3)`` similarity mapping image pixels to crop pixels for a face's ``(478, 2+)`` landmarks.

    ``margin`` > 1 shows more context around the template, < 1 zooms in.
    """
    template = (TEMPLATE - 0.5) / margin + 0.5
    return fit_similarity(eye_mouth(np.asarray(points, dtype=np.float64)), template * crop_size)


def to_crop_landmarks(points: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """Image-pixel landmarks ``(..., 3)`` -> normalized crop coordinates in [-1, 1] (z scaled alike), float64."""
    out = np.empty(points.shape, dtype=np.float64)
    out[..., :2] = apply_affine(matrix, points) * (2.0 / crop_size) - 1.0
    out[..., 2] = points[..., 2] * affine_scale(matrix) * (2.0 / crop_size)
    return out


def align_face(image: np.ndarray, points: np.ndarray, crop_size: int, margin: float = 1.0, num_faces: int = 1):
    """Warp the face with landmarks ``points`` (``(478, 3)`` image pixels) out of ``image`` -> :class:`FaceCrop`."""
    import cv2

    height, width = image.shape[:2]
    points = np.asarray(points, dtype=np.float64)
    matrix = alignment_matrix(points, crop_size, margin)
    try:
        # Where the crop reaches past the photo's edge (a tightly cropped portrait), mirror the photo: a repeated
        # edge row shows as streaks above the head or under the chin, and the generator carries them along.
        crop = warp_affine(image, matrix, (crop_size, crop_size), cv2.BORDER_REFLECT_101)
    except cv2.error as err:
        raise ImageReadError(f"cannot warp the face crop from the image ({height}x{width}): {err}") from err
    return FaceCrop(
        crop=crop,
        landmarks=to_crop_landmarks(points, matrix, crop_size).astype(np.float32),
        image_landmarks=points.astype(np.float32),
        matrix=matrix,
        image_size=(height, width),
        num_faces=num_faces,
    )
