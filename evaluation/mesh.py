"""MediaPipe face-mesh tracking (478 points with irises) and the geometric quantities read from it.

The tracker uses the legacy ``mediapipe.solutions.face_mesh`` graph bundled in ``mediapipe==0.10.14``,
imported lazily. Landmarks are returned in pixels: ``(T, 478, 3)`` with x, y in pixels and z in the
same scale as x (MediaPipe's normalized depth times the image width); frames without a face are NaN.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NUM_POINTS = 478
UPPER_LIP_INNER_CENTRE = 13
LOWER_LIP_INNER_CENTRE = 14
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
EYE_OUTER_CORNERS = (33, 263)  # subject's right (image left), subject's left
MOUTH_CORNERS = (61, 291)
# Rigid upper-face points (eye corners, nose bridge and tip, forehead): they do not move with expressions.
RIGID = (33, 133, 263, 362, 168, 6, 197, 195, 5, 4, 10, 151, 9)
# Mouth region for crops (outer lip contour).
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375)


class FaceMeshTracker:
    """Track one face through a sequence of frames with MediaPipe Face Mesh.

    Use one tracker per video (``static_image_mode=False`` keeps tracking state between frames), or
    ``static=True`` for unrelated images.
    """

    def __init__(self, static: bool = False, min_detection_confidence: float = 0.5) -> None:
        try:
            import mediapipe as mp
        except ImportError as error:  # pragma: no cover - mediapipe is a core dependency
            raise ImportError("the face mesh needs mediapipe==0.10.14 (pip install mediapipe==0.10.14)") from error
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=0.5,
        )

    def __enter__(self) -> FaceMeshTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._mesh.close()

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Landmarks ``(478, 3)`` in pixels for one RGB ``uint8`` frame, NaN when no face is found."""
        frame = np.ascontiguousarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return np.full((NUM_POINTS, 3), np.nan, dtype=np.float32)
        points = result.multi_face_landmarks[0].landmark
        out = np.array([(p.x * width, p.y * height, p.z * width) for p in points], dtype=np.float32)
        return out


def track_mesh(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Track a face through ``frames`` and return ``(T, 478, 3)`` pixel landmarks (NaN where lost)."""
    with FaceMeshTracker(static=False) as tracker:
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
    mesh = _check_mesh(mesh)
    return np.linalg.norm(mesh[:, EYE_OUTER_CORNERS[0], :2] - mesh[:, EYE_OUTER_CORNERS[1], :2], axis=-1)


def lip_aperture(mesh: np.ndarray) -> np.ndarray:
    """Inner-lip opening per frame divided by the inter-ocular distance (0 = lips together).

    The opening is the mean 2D distance between corresponding upper and lower inner-lip points over the
    central part of the inner lip ring (the 7 pairs around points 13/14), which is less noisy than the
    single 13–14 pair. NaN where the face was lost.
    """
    mesh = _check_mesh(mesh)
    upper = np.array(LIPS_INNER_UPPER[2:-2])
    lower = np.array(LIPS_INNER_LOWER[2:-2])
    gaps = np.linalg.norm(mesh[:, upper, :2] - mesh[:, lower, :2], axis=-1).mean(axis=1)
    return gaps / inter_ocular(mesh)


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
