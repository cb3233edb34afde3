"""2-D affine helpers in continuous pixel coordinates: similarity fits, composition, point and image warps.

Pixel coordinates are *continuous*: the centre of pixel ``(row i, column j)`` is at ``(x, y) = (j + 0.5, i + 0.5)``
(what makes ``2 * x / size - 1`` the ``align_corners=False`` convention of ``grid_sample``). Matrices are
``(2, 3)`` float64 affines mapping ``(x, y)`` of one image to another. OpenCV is imported lazily.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "affine_scale",
    "apply_affine",
    "bounding_box",
    "compose_affine",
    "fit_similarity",
    "invert_affine",
    "to_opencv",
    "warp_affine",
]


def to_opencv(matrix: np.ndarray) -> np.ndarray:
    """A continuous-coordinate affine in OpenCV's pixel-centre convention (for ``cv2.warpAffine``)."""
    out = np.array(matrix, dtype=np.float64)
    out[:, 2] = matrix[:, :2] @ np.array([0.5, 0.5]) + matrix[:, 2] - 0.5
    return out


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse ``(2, 3)`` affine."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner`` (both ``(2, 3)``): first ``inner``, then ``outer``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map the ``(..., 2+)`` points' x, y through ``matrix``; returns ``(..., 2)`` (any z is dropped)."""
    return points[..., :2] @ matrix[:, :2].T + matrix[:, 2]


def affine_scale(matrix: np.ndarray) -> float:
    """The (geometric mean) scale of an affine: output pixels per input pixel."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (Umeyama, 2-D).

    Args:
        src, dst: ``(N, 2)`` corresponding points.
    """
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    s0, d0 = s - s.mean(), d - d.mean()
    a = (d0 * s0.conj()).sum() / max((abs(s0) ** 2).sum(), 1e-12)
    b = d.mean() - a * s.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def bounding_box(points: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of the points' x, y."""
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: int | None = None) -> np.ndarray:
    """``cv2.warpAffine`` in continuous coordinates, anti-aliased when it shrinks (ROI + ``INTER_AREA`` first).

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` array.
        matrix: ``(2, 3)`` affine, ``image`` pixel -> output pixel.
        size: output ``(width, height)``.
        border: an OpenCV border mode (default ``cv2.BORDER_REPLICATE``).
    """
    import cv2

    border = cv2.BORDER_REPLICATE if border is None else border
    width, height = size
    scale = affine_scale(matrix)
    if scale < 0.75:
        image, matrix = _shrink_first(image, matrix, size, scale)
    return cv2.warpAffine(image, to_opencv(matrix), (width, height), flags=cv2.INTER_LINEAR, borderMode=border)


def _shrink_first(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], scale: float):
    """Crop the source region the warp reads and area-resize it, adjusting ``matrix``, so that warping aliases less."""
    import cv2

    width, height = size
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
    back = apply_affine(invert_affine(matrix), corners)
    pad = 2.0 / scale + 2
    x0, y0 = np.floor(back.min(0) - pad).astype(int)
    x1, y1 = np.ceil(back.max(0) + pad).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, matrix
    new_w, new_h = max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1)
    image = cv2.resize(image[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    linear = matrix[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
    matrix = np.hstack([linear, (matrix[:, :2] @ np.array([x0, y0]) + matrix[:, 2])[:, None]])
    return image, matrix
