"""dlib's 68-point iBUG landmarks and the field's landmark distances (M-LMD, F-LMD).

dlib ships no models; ``face_recognition_models`` bundles the 68-point shape predictor and the face
recognition ResNet. Their training data is licensed for non-commercial research, so they are used for
evaluation only, never at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

MOUTH = tuple(range(48, 68))
ALL_68 = tuple(range(68))
LMD_REFERENCE_SIZE = 256  # LMD is reported in pixels of a frame rescaled to 256 px on its longer side
DETECTION_MAX_SIDE = 640


def model_path(name: str) -> Path:
    """Path of a model file bundled in ``face_recognition_models`` (found without importing the package).

    Importing ``face_recognition_models`` needs ``pkg_resources``, which recent setuptools no longer ships,
    so the files are located through the import system instead.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "dlib's models come from the face_recognition_models package: pip install 'emotalk[eval]' "
            "(or pip install dlib-bin face_recognition_models)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"face_recognition_models has no {name} (looked at {path})")
    return path


@lru_cache(maxsize=1)
def _detector_and_predictor():
    try:
        import dlib
    except ImportError as error:
        raise ImportError("68-point landmarks need dlib: pip install 'emotalk[eval]' (dlib-bin)") from error
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
    return detector, predictor


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Most confident frontal face box ``(left, top, right, bottom)`` in pixels, or None (dlib HOG detector)."""
    detector, _ = _detector_and_predictor()
    image = _check_image(image)
    height, width = image.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
    small = image
    if scale < 1.0:
        from PIL import Image

        small = np.asarray(Image.fromarray(image).resize((round(width * scale), round(height * scale))))
    boxes, scores, _ = detector.run(small, 0, 0.0)
    if not len(boxes) and max(small.shape[:2]) < 400:
        boxes, scores, _ = detector.run(small, 1, 0.0)  # small faces: one pyramid upsampling
    if not len(boxes):
        return None
    # The most confident detection (not the largest: false positives can be as large as the face).
    box = boxes[int(np.argmax(scores))]
    return tuple(round(v / scale) for v in (box.left(), box.top(), box.right(), box.bottom()))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return image


def shape68(image: np.ndarray, box: tuple[int, int, int, int]):
    """dlib ``full_object_detection`` (68 points) for a face box; see :func:`landmarks68`."""
    import dlib

    _, predictor = _detector_and_predictor()
    return predictor(_check_image(image), dlib.rectangle(*box))


def landmarks68(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """68 iBUG landmarks ``(68, 2)`` in pixels (x, y); NaN when no face is found."""
    image = _check_image(image)
    box = detect_face(image) if box is None else box
    if box is None:
        return np.full((68, 2), np.nan)
    shape = shape68(image, box)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def track_landmarks68(frames: Iterable[np.ndarray]) -> np.ndarray:
    """68 landmarks per frame ``(T, 68, 2)``; a frame where detection fails reuses the previous face box."""
    out = []
    box = None
    for frame in frames:
        found = detect_face(frame)
        box = found if found is not None else box
        out.append(landmarks68(frame, box) if box is not None else np.full((68, 2), np.nan))
    return np.stack(out) if out else np.zeros((0, 68, 2))


def landmark_distance(predicted: np.ndarray, reference: np.ndarray, points: Iterable[int] = ALL_68) -> float:
    """Mean L2 distance over ``points`` between two ``(T, 68, 2)`` landmark sequences, mean-centred per frame.

    Each frame's 68 points are centred on their own mean (removing head translation), then the Euclidean
    distance of every selected point is averaged over points and frames. Frames where either side has no
    face are skipped; NaN if none is left.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if predicted.shape != reference.shape or predicted.ndim != 3 or predicted.shape[1:] != (68, 2):
        raise ValueError(
            f"expected two (T, 68, 2) landmark sequences of the same length, got {predicted.shape} and {reference.shape}"
        )
    good = np.isfinite(predicted).all(axis=(1, 2)) & np.isfinite(reference).all(axis=(1, 2))
    if not good.any():
        return float("nan")
    p = predicted[good] - predicted[good].mean(axis=1, keepdims=True)
    r = reference[good] - reference[good].mean(axis=1, keepdims=True)
    points = list(points)
    return float(np.linalg.norm(p[:, points] - r[:, points], axis=-1).mean())


def m_lmd(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Mouth landmark distance: :func:`landmark_distance` over points 48–67."""
    return landmark_distance(predicted, reference, MOUTH)


def f_lmd(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Face landmark distance: :func:`landmark_distance` over all 68 points."""
    return landmark_distance(predicted, reference, ALL_68)


def to_reference_scale(landmarks: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Rescale pixel landmarks of ``(height, width)`` frames to a frame of 256 px on its longer side.

    The field reports LMD in pixels of 256×256 face-crop videos; this makes videos of other sizes comparable.
    """
    return np.asarray(landmarks, dtype=np.float64) * (LMD_REFERENCE_SIZE / max(frame_size))
