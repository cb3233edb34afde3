"""Face-mesh tracking through a video, gap filling, temporal smoothing and jitter-free crop alignment.

Tracking runs :class:`emotalk_common.facemesh.FaceMesh` in video mode (``static=False``: it follows the face from frame to
frame and re-detects by itself when it loses it); when a frame still has no face, :class:`FaceTracker` falls
back to :meth:`FaceProcessor.detect` (downscaled, zoomed and padded retries) at most every
``redetect_interval`` frames. Short gaps are then interpolated (``frame_valid`` stays False there), long gaps
split the video into clips, landmarks are lightly smoothed over time (Savitzky–Golay: lip motion survives),
and the crop follows a Gaussian-smoothed similarity so that it does not jitter.
"""

from __future__ import annotations

import numpy as np
from emotalk_common.facemesh import FaceMesh
from emotalk_common.geometry import bounding_box

from modeling_emotalk.errors import EmoTalkInputError
from modeling_emotalk.face_alignment import face_width, to_crop_landmarks
from modeling_emotalk.face_processing import FaceProcessor


class FaceTracker:
    """Per-frame ``(478, 3)`` landmarks in image pixels (z in pixels) or None, for one video.

    Args:
        processor: the :class:`FaceProcessor` whose detector is the fallback.
        redetect_interval: frames between fallback detections while the face is lost.
        min_face_size: faces narrower than this (pixels) count as missing.
    """

    def __init__(self, processor: FaceProcessor, redetect_interval: int = 5, min_face_size: float = 32.0) -> None:
        self.processor = processor
        self.redetect_interval = max(1, int(redetect_interval))
        self.min_face_size = float(min_face_size)
        self._mesh = FaceMesh(static=False, max_num_faces=1)
        self._since_detection = self.redetect_interval
        self._last: np.ndarray | None = None

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        try:
            faces = self.processor.detect(frame)
        except EmoTalkInputError:  # a fallback: MediaPipe failing on this frame (NoFaceError) means "no face here"
            return None
        if not faces:
            return None
        if self._last is None:
            return faces[0].astype(np.float64)
        centre = bounding_box(self._last).reshape(2, 2).mean(0)
        return min(faces, key=lambda f: np.linalg.norm(bounding_box(f).reshape(2, 2).mean(0) - centre)).astype(
            np.float64
        )

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        frame = np.ascontiguousarray(frame)
        points = self._mesh.first(frame)
        if points is None:
            self._since_detection += 1
            if self._since_detection >= self.redetect_interval:
                self._since_detection = 0
                points = self._detect(frame)
        if points is not None and face_width(points) < self.min_face_size:
            points = None
        if points is not None:
            self._last = points
        return points


def segments(valid: np.ndarray, max_gap: int, min_length: int) -> list[tuple[int, int]]:
    """``[start, end)`` runs of valid frames, bridging gaps of at most ``max_gap`` invalid frames.

    Runs shorter than ``min_length`` frames are dropped; leading and trailing invalid frames are trimmed.
    """
    valid = np.asarray(valid, dtype=bool)
    index = np.flatnonzero(valid)
    if index.size == 0:
        return []
    runs = []
    start = previous = int(index[0])
    for i in index[1:]:
        i = int(i)
        if i - previous - 1 > max_gap:
            runs.append((start, previous + 1))
            start = i
        previous = i
    runs.append((start, previous + 1))
    return [(a, b) for a, b in runs if b - a >= min_length]


def interpolate_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linearly interpolate ``values`` ``(T, ...)`` over time where ``valid`` is False (edges: nearest valid)."""
    valid = np.asarray(valid, dtype=bool)
    if valid.all() or not valid.any():
        return values.copy()
    flat = values.reshape(len(values), -1).astype(np.float64)
    times = np.arange(len(values))
    known = np.flatnonzero(valid)
    out = np.empty_like(flat)
    for column in range(flat.shape[1]):
        out[:, column] = np.interp(times, known, flat[known, column])
    return out.reshape(values.shape).astype(values.dtype)


def smooth_landmarks(points: np.ndarray, window: int) -> np.ndarray:
    """Savitzky–Golay smoothing over time (order 2, ``window`` frames, odd); 1 or fewer frames: unchanged."""
    window = int(window)
    if window <= 2 or len(points) < 3:
        return points.copy()
    from scipy.signal import savgol_filter

    window = min(window if window % 2 else window + 1, len(points) if len(points) % 2 else len(points) - 1)
    if window < 3:
        return points.copy()
    return savgol_filter(points, window_length=window, polyorder=2, axis=0, mode="interp").astype(points.dtype)


def crop_matrices(points: np.ndarray, processor: FaceProcessor, sigma_frames: float) -> np.ndarray:
    """``(T, 2, 3)`` image → crop similarities from landmarks Gaussian-smoothed over ``sigma_frames`` frames.

    Reuses :meth:`FaceProcessor.alignment_matrix`, so training crops match the pipeline's crops of a photo.
    """
    if sigma_frames > 0 and len(points) > 1:
        from scipy.ndimage import gaussian_filter1d

        points = gaussian_filter1d(points.astype(np.float64), sigma=sigma_frames, axis=0, mode="nearest")
    return np.stack([processor.alignment_matrix(p) for p in points])


def to_crop_coordinates(points: np.ndarray, matrices: np.ndarray, crop_size: int) -> np.ndarray:
    """Image-pixel landmarks ``(T, 478, 3)`` → normalized crop coordinates in [-1, 1] (z scaled alike)."""
    out = np.empty_like(points, dtype=np.float32)
    for t, (p, m) in enumerate(zip(points, matrices, strict=True)):
        out[t] = to_crop_landmarks(p, m, crop_size)
    return out


__all__ = ["FaceTracker", "crop_matrices", "interpolate_gaps", "segments", "smooth_landmarks", "to_crop_coordinates"]
