"""Full-reference image metrics on aligned face crops: PSNR and SSIM.

Each frame is aligned by a similarity transform from five of its dlib-68 landmarks (eye centres, nose
tip, mouth corners) to a fixed 256×256 template, so the metrics compare faces rather than framing and
work across videos of different resolutions.
"""

from __future__ import annotations

import numpy as np
from emotalk_common.geometry import fit_similarity

CROP_SIZE = 256
# Five-point template (eye centres, nose tip, mouth corners) for a 256² crop with some background,
# from the common ArcFace 112² template scaled by 1.71 about its centre and moved up 10 px.
TEMPLATE_5 = (np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]]) - 56.0) * (256 / 112 * 0.75) + np.array([128.0, 118.0])  # fmt: skip


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners ``(5, 2)`` from 68 iBUG landmarks (image-left eye first)."""
    landmarks68 = np.asarray(landmarks68, dtype=np.float64)
    return np.stack([
        landmarks68[36:42].mean(axis=0),
        landmarks68[42:48].mean(axis=0),
        landmarks68[30],
        landmarks68[48],
        landmarks68[54],
    ])  # fmt: skip


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity (rotation, uniform scale, translation) mapping ``source`` onto ``target``.

    :func:`emotalk_common.geometry.fit_similarity` (Umeyama's closed form) as a 3×3 homogeneous matrix.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"expected two (N>=2, 2) point sets of the same shape, got {source.shape} and {target.shape}")
    matrix = np.eye(3)
    matrix[:2] = fit_similarity(source, target)
    return matrix


def aligned_crop(frame: np.ndarray, landmarks68: np.ndarray, size: int = CROP_SIZE) -> np.ndarray | None:
    """The face of ``frame`` warped to a ``size``² crop by a similarity fit of its landmarks; None without a face."""
    from PIL import Image

    landmarks68 = np.asarray(landmarks68, dtype=np.float64)
    if not np.isfinite(landmarks68).all():
        return None
    matrix = similarity_transform(five_points(landmarks68), TEMPLATE_5 * (size / CROP_SIZE))
    inverse = np.linalg.inv(matrix)  # output pixel -> input pixel
    coefficients = tuple(inverse[:2].ravel())
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two images of the same shape (``inf`` when identical)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity (scikit-image, 7×7 window, mean over RGB channels) of two same-shape images."""
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(structural_similarity(a, b, data_range=data_range, channel_axis=-1 if a.ndim == 3 else None))


def mean_psnr(values: list[float]) -> float:
    """Mean of per-frame PSNRs; ``inf`` only when every frame is identical (NaN for an empty list)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("inf")
    # Identical frames count at a 100 dB cap so that one perfect frame does not make the mean infinite.
    return float(np.mean(np.minimum(values, 100.0)))
