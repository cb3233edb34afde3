"""Identity preservation: cosine similarity of dlib face-recognition embeddings (a CSIM stand-in).

The field's CSIM uses ArcFace, whose weights are not available offline. dlib's 128-d ResNet embedding
(bundled in ``face_recognition_models``, non-commercial training data: evaluation only) plays the same
role, on a compressed scale: dlib's embeddings are not zero-centred, so frames of the same person score
≈ 0.93–1.0 cosine while *different* people still score ≈ 0.80–0.92 (measured on the development portraits).
Read it together with ``same_identity_rate``, the fraction of frames within dlib's own "same person"
Euclidean threshold (0.6). Values are not comparable with ArcFace CSIM numbers from papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .landmarks68 import _check_image, detect_face, model_path, shape68

LABEL = "CSIM stand-in: cosine of dlib ResNet face embeddings (not ArcFace; different people score 0.80-0.92)"
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance between embeddings


@lru_cache(maxsize=1)
def _recognizer():
    import dlib

    return dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))


def face_embedding(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
    """128-d dlib face embedding of the largest face in an RGB ``uint8`` image, or None if no face is found."""
    image = _check_image(image)
    box = detect_face(image) if box is None else box
    if box is None:
        return None
    shape = shape68(image, box)
    return np.asarray(_recognizer().compute_face_descriptor(image, shape), dtype=np.float64)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity between the rows of ``a`` ``(N, D)`` (or one ``(D,)``) and a vector ``b`` ``(D,)``."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"embedding sizes differ: {a.shape[1]} vs {b.shape[0]}")
    return (a @ b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b) + 1e-12)


def identity_scores(source: np.ndarray | None, frames: Sequence[np.ndarray | None]) -> dict:
    """Identity similarity between a source embedding and per-frame embeddings (None = no face found).

    Returns ``csim_mean``, ``csim_min`` (cosine), ``distance_mean`` (dlib's Euclidean distance),
    ``same_identity_rate`` (fraction of frames with distance < 0.6, dlib's "same person" threshold; frames
    without a face count as failures), ``face_found_rate`` and ``num_frames``; NaN where undefined.
    """
    found = [e for e in frames if e is not None]
    rate = len(found) / len(frames) if len(frames) else float("nan")
    nan = float("nan")
    if source is None or not found:
        return {"csim_mean": nan, "csim_min": nan, "distance_mean": nan, "same_identity_rate": nan,
                "face_found_rate": rate, "num_frames": len(frames)}  # fmt: skip
    embeddings = np.stack(found)
    cosine = cosine_similarity(embeddings, source)
    distance = np.linalg.norm(embeddings - np.asarray(source)[None], axis=1)
    return {
        "csim_mean": float(cosine.mean()),
        "csim_min": float(cosine.min()),
        "distance_mean": float(distance.mean()),
        "same_identity_rate": float((distance < SAME_PERSON_DISTANCE).sum() / len(frames)),
        "face_found_rate": rate,
        "num_frames": len(frames),
    }


def sample_indices(num_frames: int, max_samples: int) -> np.ndarray:
    """Up to ``max_samples`` evenly spaced frame indices (all of them when there are fewer)."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    count = min(num_frames, max(1, max_samples))
    return np.unique(np.linspace(0, num_frames - 1, count).round().astype(np.int64))
