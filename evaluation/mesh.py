"""MediaPipe face-mesh tracking (478 points with irises) and the geometric quantities read from it.

The tracker is the project's one face-mesh wrapper, :class:`emotalk_common.facemesh.FaceMesh` (the legacy graph
bundled in ``mediapipe==0.10.14``, imported lazily); the index groups come from :mod:`emotalk_common.topology`,
shared with the model. Landmarks are returned in pixels: ``(T, 478, 3)`` with x, y in pixels and z in the
same scale as x (MediaPipe's normalized depth times the image width); frames without a face are NaN.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from emotalk_common.facemesh import FaceMesh
from emotalk_common.lip_measures import eye_corner_distance
from emotalk_common.topology import (
    EYE_OUTER_CORNERS,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER,
    LOWER_LIP_CENTER_INNER,
    MOUTH_CORNERS,
    RIGID,
    UPPER_LIP_CENTER_INNER,
)
from emotalk_common.topology import NUM_LANDMARKS as NUM_POINTS

UPPER_LIP_INNER_CENTRE = UPPER_LIP_CENTER_INNER
LOWER_LIP_INNER_CENTRE = LOWER_LIP_CENTER_INNER

__all__ = [
    "EYE_OUTER_CORNERS",
    "LIPS_INNER_LOWER",
    "LIPS_INNER_UPPER",
    "LIPS_OUTER",
    "LOWER_LIP_INNER_CENTRE",
    "MOUTH_CORNERS",
    "NUM_POINTS",
    "RIGID",
    "UPPER_LIP_INNER_CENTRE",
    "FaceMeshTracker",
    "fill_missing",
    "inter_ocular",
    "mesh_image",
    "track_mesh",
]


class FaceMeshTracker:
    """Track one face through a sequence of frames with MediaPipe Face Mesh (:class:`emotalk_common.facemesh.FaceMesh`).

    Use one tracker per video (``static=False`` keeps tracking state between frames), or ``static=True`` for
    unrelated images.
    """

    def __init__(self, static: bool = False, min_detection_confidence: float = 0.5) -> None:
        self._mesh = FaceMesh(static=static, max_num_faces=1, min_detection_confidence=min_detection_confidence)

    def __enter__(self) -> FaceMeshTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._mesh.close()

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Landmarks ``(478, 3)`` in pixels for one RGB ``uint8`` frame, NaN when no face is found."""
        return self._mesh.landmarks(np.ascontiguousarray(frame))


def track_mesh(frames: Iterable[np.ndarray], static: bool = False) -> np.ndarray:
    """Track a face through ``frames`` and return ``(T, 478, 3)`` pixel landmarks (NaN where lost).

    ``static=True`` detects the face afresh in every frame (unrelated images) instead of tracking it.
    """
    with FaceMeshTracker(static=static) as tracker:
        out = [tracker.process(frame) for frame in frames]
    if not out:
        return np.zeros((0, NUM_POINTS, 3), dtype=np.float32)
    return np.stack(out)


def mesh_image(image: np.ndarray) -> np.ndarray:
    """Face-mesh landmarks ``(478, 3)`` of a single image (NaN when no face is found)."""
    with FaceMeshTracker(static=True) as tracker:
        return tracker.process(image)


def _check_mesh(mesh: np.ndarray) -> np.ndarray:
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.ndim != 3 or mesh.shape[1] != NUM_POINTS or mesh.shape[2] not in (2, 3):
        raise ValueError(f"expected face-mesh landmarks (T, {NUM_POINTS}, 2 or 3), got {mesh.shape}")
    return mesh


def inter_ocular(mesh: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (points 33 and 263) per frame, in the landmarks' units (2D)."""
    return eye_corner_distance(_check_mesh(mesh), dims=2)


def fill_missing(values: np.ndarray) -> np.ndarray:
    """Linearly interpolate NaN entries along the first axis (edges take the nearest valid value)."""
    values = np.array(values, dtype=np.float64, copy=True)
    flat = values.reshape(len(values), -1)
    t = np.arange(len(values))
    for column in range(flat.shape[1]):
        good = np.isfinite(flat[:, column])
        if good.all() or not good.any():
            continue
        flat[~good, column] = np.interp(t[~good], t[good], flat[good, column])
    return flat.reshape(values.shape)
