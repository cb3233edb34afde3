"""Face detection on a photo: MediaPipe's face mesh, cross-checked by its face detectors, with retries.

:class:`FaceDetector` runs the face mesh on the whole photo; faces that only the full-range detector sees (small
faces, group photos: the detector is also tiled over large photos) are meshed again on a zoomed view; mesh faces
that no detector confirms confidently (a logo, a pattern) are dropped when a confirmed face exists; when nothing
is found, a downscaled and a padded copy are tried. MediaPipe and OpenCV are imported lazily (Hub remote code).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from emotalk_common.facemesh import FaceMesh, FaceMeshError, mediapipe_solutions, run_solution
from emotalk_common.geometry import affine_scale, apply_affine, bounding_box, invert_affine, warp_affine

from .errors import NoFaceError

__all__ = ["DETECT_LONG_SIDE", "FaceDetector"]

DETECT_LONG_SIDE = 640
"""Longer side of the downscaled retry copy; photos over 1.5 times this get a tiled full-range detector."""
_STRONG_FULL_RANGE = 0.5  # detector scores that confirm a mesh face (short range: >= 0.8 on real portraits)
_STRONG_SHORT_RANGE = 0.75


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _centre(points: np.ndarray) -> np.ndarray:
    return bounding_box(points).reshape(2, 2).mean(0)


def tile_starts(length: int, tile: int) -> list[int]:
    """Offsets of tiles of size ``tile`` covering ``length`` with about 50% overlap."""
    if length <= tile:
        return [0]
    count = int(np.ceil((length - tile) / (tile / 2))) + 1
    return [round(v) for v in np.linspace(0, length - tile, count)]


Box = tuple[float, np.ndarray]  # (score, (x0, y0, x1, y1) in pixels)


class FaceDetector:
    """All faces of a photo as ``(478, 3)`` float32 pixel landmarks, largest first.

    Args:
        max_num_faces: faces the mesh looks for per pass.

    The MediaPipe graphs are created on first use and shared by the threads using this detector.
    """

    def __init__(self, max_num_faces: int = 4) -> None:
        self.max_num_faces = int(max_num_faces)
        self._lock = threading.Lock()
        self._graphs: dict[str, Any] | None = None

    def close(self) -> None:
        """Release the MediaPipe graphs (they are re-created on the next call)."""
        with self._lock:
            for graph in (self._graphs or {}).values():
                graph.close()
            self._graphs = None

    def _models(self) -> dict[str, Any]:
        with self._lock:
            if self._graphs is None:
                face_detection = mediapipe_solutions().face_detection
                self._graphs = {
                    "mesh": FaceMesh(static=True, max_num_faces=self.max_num_faces),
                    # short range (faces within ~2 m, what the mesh uses internally) and full range (small faces)
                    "short": face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5),
                    "full": face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5),
                }
            return self._graphs

    # -- single passes
    def run_mesh(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face mesh on an RGB uint8 image -> ``(478, 3)`` float64 pixel landmarks per face."""
        return self._models()["mesh"].faces(np.ascontiguousarray(rgb))

    def run_detector(self, rgb: np.ndarray, name: str = "full") -> list[Box]:
        """Face detector (``"short"`` or ``"full"`` range) -> (score, box in pixels) per face."""
        result = run_solution(self._models()[name], rgb, self._lock)
        height, width = rgb.shape[:2]
        boxes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            corners = np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height])
            boxes.append((float(detection.score[0]), corners * np.array([width, height, width, height])))
        return boxes

    def mesh_view(
        self, image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: int | None = None
    ) -> list[np.ndarray]:
        """Face mesh on a warped view of ``image`` (``matrix``: image -> view), landmarks mapped back to ``image``."""
        view = warp_affine(image, matrix, size, border)
        inverse = invert_affine(matrix)
        scale = affine_scale(matrix)
        faces = []
        for points in self.run_mesh(view):
            back = np.empty_like(points)
            back[:, :2] = apply_affine(inverse, points)
            back[:, 2] = points[:, 2] / scale
            faces.append(back)
        return faces

    # -- the whole detection
    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """All faces in an RGB uint8 photo: ``(478, 3)`` float32 landmarks in pixels (z in pixels), largest first.

        Raises :class:`NoFaceError` when MediaPipe itself fails on the photo; any other error propagates.
        """
        height, width = image.shape[:2]
        try:
            faces = self._find(image)
        except FaceMeshError as err:
            raise NoFaceError(f"face detection failed on the image ({height}x{width}): {err}") from err
        unique: list[np.ndarray] = []
        for face in faces:
            if all(iou(bounding_box(face), bounding_box(other)) < 0.4 for other in unique):
                unique.append(face)
        unique.sort(key=lambda f: -float(np.prod(np.ptp(f[:, :2], axis=0))))
        return [f.astype(np.float32) for f in unique]

    def _find(self, image: np.ndarray) -> list[np.ndarray]:
        faces = self.run_mesh(image)
        full = self._full_range_boxes(image)
        short = self.run_detector(image, "short") if faces else []
        strong = [self._confirmed(face, full, short) for face in faces]
        for found in self._faces_only_the_detector_sees(image, faces, full):
            faces.append(found)
            strong.append(True)
        if any(strong):
            faces = [f for f, keep in zip(faces, strong, strict=True) if keep]
        if not faces:
            faces = self._retry_downscaled(image)
        if not faces:
            faces = self._retry_padded(image)
        return faces

    def _full_range_boxes(self, image: np.ndarray) -> list[Box]:
        """The full-range detector on the photo and, on large photos (group photos: small faces), on tiles."""
        import cv2

        height, width = image.shape[:2]
        full = self.run_detector(image, "full")
        if max(height, width) <= 1.5 * DETECT_LONG_SIDE:
            return full
        factor = min(1.0, 3 * DETECT_LONG_SIDE / max(height, width))
        small = image if factor == 1.0 else cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        tile = max(small.shape[:2]) // 2
        for y in tile_starts(small.shape[0], tile):
            for x in tile_starts(small.shape[1], tile):
                for score, box in self.run_detector(small[y : y + tile, x : x + tile], "full"):
                    box = (box + np.array([x, y, x, y])) / factor
                    if all(iou(box, other) < 0.3 for _, other in full):
                        full.append((score, box))
        return full

    @staticmethod
    def _confirmed(face: np.ndarray, full: list[Box], short: list[Box]) -> bool:
        """A mesh face is "strong" when a detector confirms it confidently."""
        box = bounding_box(face)
        best_full = max((score for score, other in full if iou(box, other) > 0.3), default=0.0)
        best_short = max((score for score, other in short if iou(box, other) > 0.3), default=0.0)
        return best_full >= _STRONG_FULL_RANGE or best_short >= _STRONG_SHORT_RANGE

    def _faces_only_the_detector_sees(self, image: np.ndarray, faces: list[np.ndarray], full: list[Box]):
        """Mesh each detector box that no mesh face covers, on a view zoomed onto it."""
        import cv2

        for _, box in full:
            centre = (box[:2] + box[2:]) / 2
            if any(_contains(bounding_box(f), centre) for f in faces):
                continue
            side = 2.2 * max(box[2] - box[0], box[3] - box[1], 8.0)
            view = int(np.clip(side, 256, 768))  # zoom in on small faces, keep detail of large ones
            s = view / side
            matrix = np.array([[s, 0.0, view / 2 - s * centre[0]], [0.0, s, view / 2 - s * centre[1]]])
            found = self.mesh_view(image, matrix, (view, view), cv2.BORDER_CONSTANT)
            if found:
                yield min(found, key=lambda f: np.linalg.norm(_centre(f) - centre))

    def _retry_downscaled(self, image: np.ndarray) -> list[np.ndarray]:
        height, width = image.shape[:2]
        if max(height, width) <= DETECT_LONG_SIDE:
            return []
        s = DETECT_LONG_SIDE / max(height, width)
        size = (max(round(width * s), 1), max(round(height * s), 1))
        matrix = np.diag([size[0] / width, size[1] / height, 1.0])[:2]
        return self.mesh_view(image, matrix, size)

    def _retry_padded(self, image: np.ndarray) -> list[np.ndarray]:
        """A face filling the frame: give it some room."""
        import cv2

        height, width = image.shape[:2]
        pad = max(height, width) // 2
        matrix = np.array([[1.0, 0.0, pad], [0.0, 1.0, pad]])
        if max(height, width) > DETECT_LONG_SIDE:
            matrix = matrix * (DETECT_LONG_SIDE / max(height, width))
        size = (round(matrix[0, 0] * width + 2 * matrix[0, 2]), round(matrix[1, 1] * height + 2 * matrix[1, 2]))
        return self.mesh_view(image, matrix, size, cv2.BORDER_CONSTANT)
