"""The one MediaPipe face-mesh wrapper: 478 landmarks (with irises) in pixels, for photos or video frames.

It runs the legacy ``mediapipe.solutions.face_mesh`` graph whose models ``mediapipe==0.10.14`` bundles in its
wheel (imported lazily). Landmarks come back as ``(478, 3)`` float64 pixels: x, y in pixels of the frame and z in
the same scale as x (MediaPipe's normalized depth times the frame width).

``static=True`` treats every image on its own (photos); ``static=False`` tracks a face from frame to frame and
re-detects it by itself when it loses it (one instance per video). MediaPipe reports failures of its graph as
:class:`RuntimeError` and refused inputs as :class:`ValueError` (``SolutionBase.process``): both, and only those,
become :class:`FaceMeshError`, so that callers can tell "MediaPipe failed on this image" from a bug.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any

import numpy as np

from .topology import NUM_LANDMARKS

__all__ = ["MEDIAPIPE_ERRORS", "FaceMesh", "FaceMeshError", "mediapipe_solutions", "run_solution"]

MEDIAPIPE_ERRORS = (RuntimeError, ValueError)
"""What ``SolutionBase.process`` raises: RuntimeError (an error in the graph), ValueError (not an RGB image)."""


class FaceMeshError(RuntimeError):
    """MediaPipe could not process an image (its own RuntimeError or ValueError, chained as ``__cause__``)."""


def mediapipe_solutions() -> Any:
    """``mediapipe.python.solutions`` (the legacy graphs with bundled models), with a clear error when missing."""
    try:
        from mediapipe.python import solutions
    except ImportError as err:  # pragma: no cover - mediapipe is a core dependency
        raise ImportError(
            "the face mesh needs mediapipe==0.10.14 (it bundles the face-mesh models): pip install mediapipe==0.10.14"
        ) from err
    return solutions


def run_solution(solution: Any, rgb: np.ndarray, lock: threading.Lock | None = None) -> Any:
    """``solution.process(rgb)`` (a MediaPipe graph), its failures as :class:`FaceMeshError`.

    ``lock`` serializes calls when the graph is shared between threads (a graph is not thread-safe).
    """
    rgb = np.ascontiguousarray(rgb)
    with lock or contextlib.nullcontext(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GetPrototype", category=UserWarning)
        try:
            return solution.process(rgb)
        except MEDIAPIPE_ERRORS as err:
            raise FaceMeshError(
                f"MediaPipe failed on an image of shape {rgb.shape} ({rgb.dtype}): {type(err).__name__}: {err}"
            ) from err


class FaceMesh:
    """MediaPipe Face Mesh with iris refinement; landmarks in pixels.

    Args:
        static: True for unrelated photos; False to track one face through a video (keeps state between frames).
        max_num_faces: faces looked for per image.
        min_detection_confidence, min_tracking_confidence: MediaPipe's thresholds.

    Thread-safe: calls on one instance are serialized. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        static: bool = True,
        max_num_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        self._graph = mediapipe_solutions().face_mesh.FaceMesh(
            static_image_mode=bool(static),
            refine_landmarks=True,
            max_num_faces=int(max_num_faces),
            min_detection_confidence=float(min_detection_confidence),
            min_tracking_confidence=float(min_tracking_confidence),
        )
        self._lock = threading.Lock()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graph."""
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None

    def faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Every face in an RGB uint8 ``(H, W, 3)`` image: ``(478, 3)`` float64 pixel landmarks each (may be empty).

        Raises :class:`FaceMeshError` when MediaPipe fails on the image, :class:`ValueError` for a closed mesh or
        an image that is not RGB uint8.
        """
        _check_rgb(rgb)
        if self._graph is None:
            raise ValueError("this FaceMesh is closed: create a new one")
        result = run_solution(self._graph, rgb, self._lock)
        height, width = rgb.shape[:2]
        scale = np.array([width, height, width], dtype=np.float64)
        faces = []
        for face in result.multi_face_landmarks or []:
            points = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            if points.shape == (NUM_LANDMARKS, 3):
                faces.append(points * scale)
        return faces

    def first(self, rgb: np.ndarray) -> np.ndarray | None:
        """The first face's ``(478, 3)`` float64 pixel landmarks, or None when there is no face."""
        faces = self.faces(rgb)
        return faces[0] if faces else None

    def landmarks(self, rgb: np.ndarray) -> np.ndarray:
        """The first face's ``(478, 3)`` float32 pixel landmarks, all NaN when there is no face."""
        points = self.first(rgb)
        if points is None:
            return np.full((NUM_LANDMARKS, 3), np.nan, dtype=np.float32)
        return points.astype(np.float32)


def _check_rgb(rgb: Any) -> None:
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[-1] == 3 and rgb.dtype == np.uint8):
        shape = getattr(rgb, "shape", None)
        raise ValueError(
            f"expected an RGB uint8 (H, W, 3) frame, got {getattr(rgb, 'dtype', type(rgb).__name__)} {shape}"
        )
