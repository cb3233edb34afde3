"""No-reference sharpness: Laplacian variance of the mouth region, and CPBD when the ``cpbd`` package runs.

CPBD (cumulative probability of blur detection, Narvekar & Karam 2011) is what the field reports. The PyPI
``cpbd`` package imports ``scipy.ndimage.imread``, removed from SciPy long ago: a stub is installed before
importing it (the function is only used by its command-line entry point). ``cpbd`` is not a dependency of
this project (its licence is the authors' own); when it is missing the CPBD value is NaN.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .mesh import LIPS_OUTER

MOUTH_CROP_WIDTH = 96  # mouth crops are resized to this width so that the values compare across resolutions


def to_gray(image: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) of an RGB image as float64 in [0, 255]; 2D input is returned as float64."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB (H, W, 3) or grey (H, W) image, got {image.shape}")
    return image @ np.array([0.299, 0.587, 0.114])


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (higher = sharper; 0 for a flat image)."""
    from scipy.ndimage import laplace

    gray = to_gray(image)
    if min(gray.shape) < 3:
        raise ValueError(f"image too small for a Laplacian: {gray.shape}")
    return float(laplace(gray, mode="reflect")[1:-1, 1:-1].var())


def mouth_crop(frame: np.ndarray, mesh_points: np.ndarray, margin: float = 0.25) -> np.ndarray | None:
    """The mouth region of one frame, boxed by the outer lip contour (+ ``margin``), resized to 96 px wide.

    ``mesh_points`` are that frame's ``(478, 2 or 3)`` face-mesh pixels; None when the face was lost.
    """
    from PIL import Image

    lips = np.asarray(mesh_points, dtype=np.float64)[list(LIPS_OUTER), :2]
    if not np.isfinite(lips).all():
        return None
    (x0, y0), (x1, y1) = lips.min(axis=0), lips.max(axis=0)
    pad = margin * (x1 - x0)
    height, width = frame.shape[:2]
    left, right = int(max(0, x0 - pad)), int(min(width, x1 + pad + 1))
    top, bottom = int(max(0, y0 - pad)), int(min(height, y1 + pad + 1))
    if right - left < 4 or bottom - top < 4:
        return None
    crop = Image.fromarray(np.ascontiguousarray(frame[top:bottom, left:right]))
    scale = MOUTH_CROP_WIDTH / crop.width
    return np.asarray(crop.resize((MOUTH_CROP_WIDTH, max(4, round(crop.height * scale))), Image.BILINEAR))


def mouth_sharpness(frames: np.ndarray, mesh: np.ndarray) -> float:
    """Mean Laplacian variance of the mouth crops over the frames where the face was found (NaN if none)."""
    values = []
    for frame, points in zip(frames, mesh, strict=True):
        crop = mouth_crop(frame, points)
        if crop is not None:
            values.append(laplacian_variance(crop))
    return float(np.mean(values)) if values else float("nan")


@lru_cache(maxsize=1)
def _cpbd_module():
    import scipy.ndimage

    if not hasattr(scipy.ndimage, "imread"):

        def _imread_removed(*args, **kwargs):
            raise NotImplementedError("scipy.ndimage.imread was removed from SciPy; read images with PIL")

        scipy.ndimage.imread = _imread_removed
    import cpbd

    return cpbd


def cpbd_available() -> bool:
    """Whether the ``cpbd`` package can be imported (with the SciPy stub)."""
    try:
        _cpbd_module()
    except ImportError:
        return False
    return True


def cpbd_sharpness(image: np.ndarray) -> float:
    """CPBD score of one image in [0, 1] (higher = sharper); NaN when ``cpbd`` is not installed."""
    try:
        module = _cpbd_module()
    except ImportError:
        return float("nan")
    gray = np.clip(to_gray(image), 0, 255).astype(np.uint8)
    return float(module.compute(gray))
