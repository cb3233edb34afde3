"""Paste-back: a feathered face mask in crop space and the blend of generated crops into the original photo.

Pixels outside the warped mask stay bit-identical to the photo; the per-face work (mask, bounding box, warps) is
cached on the :class:`~.face_alignment.FaceCrop`. OpenCV is imported lazily (Hub remote code).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from emotalk_common.geometry import apply_affine, compose_affine, invert_affine, to_opencv
from emotalk_common.topology import FACE_OVAL

from .errors import EmoTalkInputError
from .face_alignment import FaceCrop, eye_mouth

__all__ = ["PastePlan", "face_mask", "paste_back", "paste_plan"]


class PastePlan(NamedTuple):
    """Per-face paste-back data: the mask's box in the image, the crop -> box warp, the box's alpha and 1 - alpha."""

    x0: int
    y0: int
    x1: int
    y1: int
    crop_to_box: np.ndarray | None
    alpha: np.ndarray | None
    keep: np.ndarray | None


_EMPTY_PLAN = PastePlan(0, 0, 0, 0, None, None, None)


def face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` float32 feathered mask from crop-space landmarks ([-1, 1]): 1 over the face (oval grown to
    cover forehead and chin), exactly 0 near the crop borders."""
    import cv2

    points = (np.asarray(landmarks, dtype=np.float64)[:, :2] + 1.0) * (size / 2.0)
    right, left, _ = eye_mouth(points)
    eye_centre = (right + left) / 2
    eye_distance = float(np.linalg.norm(left - right))
    x_axis = (left - right) / max(eye_distance, 1e-8)
    y_axis = np.array([-x_axis[1], x_axis[0]])
    oval = points[list(FACE_OVAL)] - eye_centre
    u, v = oval @ x_axis, oval @ y_axis
    # Grow the oval: wider cheeks, higher forehead, lower chin (room for an open jaw and small head motion).
    u = u * 1.08
    v = np.where(v < 0, v * 1.25, v * 1.06)
    grown = eye_centre + u[:, None] * x_axis + v[:, None] * y_axis
    hull = cv2.convexHull(np.round(grown * 16).astype(np.int32))
    mask = np.zeros((size, size), dtype=np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    sigma = max(0.1 * eye_distance, 1.0)  # 6.4 px at the default 256 template
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    # Fade to exactly 0 at the crop borders.
    border = max(2.0, 0.03 * size)
    ramp = np.clip((np.minimum(np.arange(size), size - 1 - np.arange(size)) - 2.0) / border, 0.0, 1.0)
    mask *= ramp[:, None] * ramp[None, :]
    mask[mask < 1.0 / 512] = 0.0
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def cached_face_mask(face: FaceCrop) -> np.ndarray:
    """:func:`face_mask` of ``face`` at its crop size, cached on ``face``."""
    key = ("mask", face.crop_size)
    if key not in face._cache:
        face._cache[key] = face_mask(face.landmarks, face.crop_size)
    return face._cache[key]


def paste_plan(face: FaceCrop, crop_size: int) -> PastePlan:
    """The :class:`PastePlan` of ``face`` for crops of side ``crop_size`` (cached on ``face``)."""
    key = ("paste", crop_size)
    if key not in face._cache:
        face._cache[key] = _make_plan(face, crop_size)
    return face._cache[key]


def _mask_box(mask: np.ndarray, to_image: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding box in the image (clipped) of the mask's non-zero crop pixels mapped by ``to_image``."""
    height, width = image_size
    ys, xs = np.nonzero(mask > 0)
    corners = np.array(
        [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1], [xs.max() + 1, ys.max() + 1]],
        dtype=np.float64,
    )
    pts = apply_affine(to_image, corners)
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _make_plan(face: FaceCrop, crop_size: int) -> PastePlan:
    import cv2

    mask = cached_face_mask(face)
    if not (mask > 0).any():
        return _EMPTY_PLAN
    x0, y0, x1, y1 = _mask_box(mask, invert_affine(face.matrix), face.image_size)
    box_size = (max(x1 - x0, 0), max(y1 - y0, 0))
    if box_size[0] == 0 or box_size[1] == 0:
        return _EMPTY_PLAN
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
    crop_to_box = to_opencv(compose_affine(shift, invert_affine(face.matrix * (crop_size / face.crop_size))))
    # The mask lives at ``face.crop_size`` resolution; map it through the same transform (scaled).
    mask_to_box = to_opencv(compose_affine(shift, invert_affine(face.matrix)))
    alpha = cv2.warpAffine(
        mask, mask_to_box, box_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    alpha[alpha < 1.0 / 512] = 0.0
    alpha = np.ascontiguousarray(np.clip(alpha, 0.0, 1.0), dtype=np.float32)
    return PastePlan(x0, y0, x1, y1, crop_to_box, alpha, 1.0 - alpha)


def check_crops(crops: np.ndarray) -> np.ndarray:
    """``(T, S, S, 3)`` (or one ``(S, S, 3)``) uint8 crops, else :class:`EmoTalkInputError`."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2]:
        raise EmoTalkInputError(f"paste_back expects crops of shape (T, S, S, 3), got {crops.shape}")
    if crops.dtype != np.uint8:
        raise EmoTalkInputError(f"paste_back expects uint8 crops, got {crops.dtype}")
    return crops


def paste_back(image: np.ndarray, crops: np.ndarray, face: FaceCrop) -> np.ndarray:
    """Blend generated crops into the photo: ``(T, S', S', 3)`` uint8 -> ``(T, H, W, 3)`` uint8.

    ``image`` is the RGB uint8 photo the face was found in. Pixels outside the warped face mask are bit-identical
    to ``image``; crops of another square size than the face's crop are accepted (the transform is rescaled).
    """
    import cv2

    if image.shape[:2] != tuple(face.image_size):
        raise EmoTalkInputError(
            f"paste_back got an image of size {image.shape[0]}x{image.shape[1]}, expected the photo the face was "
            f"found in ({face.image_size[0]}x{face.image_size[1]})"
        )
    crops = check_crops(crops)
    plan = paste_plan(face, crops.shape[1])
    out = np.empty((len(crops), *image.shape), dtype=np.uint8)
    out[:] = image
    if plan.x1 <= plan.x0 or plan.y1 <= plan.y0:
        return out
    region = image[plan.y0 : plan.y1, plan.x0 : plan.x1]
    size = (plan.x1 - plan.x0, plan.y1 - plan.y0)
    for t, crop in enumerate(crops):
        warped = cv2.warpAffine(crop, plan.crop_to_box, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # blendLinear divides by (w0 + w1 + 1e-5) and rounds: exact copies where alpha is 0 (or 1).
        out[t, plan.y0 : plan.y1, plan.x0 : plan.x1] = cv2.blendLinear(region, warped, plan.keep, plan.alpha)
    return out
