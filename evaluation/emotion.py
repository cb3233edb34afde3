"""Emotion accuracy without Emotion-FAN: geometric expression features and a nearest-prototype classifier.

Features are distances between face-mesh points in a pose-normalized (canonical) frame, chosen after
the FACS action units that separate the 8 MEAD emotions: mouth-corner lift and asymmetry (AU12/15/14),
mouth width (AU20), inner/outer/mid brow height and brow gap (AU1/2/4), eye opening (AU5/7), lip thickness
(AU23/24 lip press), jaw drop and mouth opening (AU26/27), nose–lip distance and nose-wing height (AU9/10
nose wrinkle), chin–lip distance (AU17), corner–eye distances and cheek height (AU6/12).

Identity dominates these absolute distances (two people differ more than one person's emotions), so the
default classifier is *relative*: features minus those of a reference face of the same person (for MEAD
calibration the actor's neutral clip, for generated videos the source photo). Prototypes are per-emotion
means of the relative features; distances are Mahalanobis with the pooled within-class (diagonal) variance.
An *absolute* classifier (no reference) is calibrated as well, and is weaker.

Calibration data: the 16 MEAD clips of ../shared/media (actors M030, W009; 8 emotions; level 3, neutral
level 1). Only derived statistics (feature means/variances) are stored in ``data/emotion_prototypes.json``.
Validation: fit on one actor, test on the other (both directions); the numbers are stored in the same file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS

PROTOTYPES_FILE = Path(__file__).resolve().parent / "data" / "emotion_prototypes.json"

# Canonical frame: origin between the eye centres, x towards the subject's left eye, y down the face.
_RIGHT_EYE = (33, 133)
_LEFT_EYE = (263, 362)
_FOREHEAD = (10, 151, 9)
_NOSE_TIP = (4, 5, 195)

FEATURE_NAMES = (
    "corner_lift",
    "corner_asymmetry",
    "mouth_width",
    "inner_brow_height",
    "outer_brow_height",
    "mid_brow_height",
    "brow_gap",
    "eye_opening",
    "upper_lip_thickness",
    "lower_lip_thickness",
    "jaw_drop",
    "mouth_opening",
    "nose_lip_distance",
    "nose_wing_height",
    "chin_lip_distance",
    "corner_eye_distance",
    "cheek_height",
    "corner_height",
)


def canonical_points(mesh: np.ndarray) -> np.ndarray:
    """Face-mesh points ``(T, 478, 3)`` in the face's own frame, in units of the eye-centre distance.

    The frame is built from rigid points only (eye corners, forehead, nose tip), so head rotation,
    translation and scale are removed while expressions are kept.
    """
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.ndim != 3 or mesh.shape[1] != 478 or mesh.shape[2] != 3:
        raise ValueError(f"expected face-mesh landmarks (T, 478, 3), got {mesh.shape}")
    right = mesh[:, _RIGHT_EYE].mean(axis=1)
    left = mesh[:, _LEFT_EYE].mean(axis=1)
    origin = (right + left) / 2
    x = left - right
    scale = np.linalg.norm(x, axis=-1, keepdims=True)
    x = x / scale
    down = mesh[:, _NOSE_TIP].mean(axis=1) - mesh[:, _FOREHEAD].mean(axis=1)
    y = down - (down * x).sum(axis=-1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    z = np.cross(x, y)
    rotation = np.stack([x, y, z], axis=1)  # rows are the frame's axes
    return np.einsum("tij,tnj->tni", rotation, mesh - origin[:, None]) / scale[:, None]


def expression_features(mesh: np.ndarray) -> np.ndarray:
    """Geometric expression features ``(T, len(FEATURE_NAMES))`` from face-mesh landmarks ``(T, 478, 3)``.

    Heights are measured along the face's vertical axis (positive = up for brows and mouth corners);
    all values are in units of the eye-centre distance. NaN rows where the face was lost.
    """
    c = canonical_points(mesh)

    def d(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(c[:, a] - c[:, b], axis=-1)

    def y(i: int) -> np.ndarray:
        return c[:, i, 1]

    lip_middle = (y(0) + y(17)) / 2
    features = {
        "corner_lift": lip_middle - (y(61) + y(291)) / 2,
        "corner_asymmetry": np.abs(y(61) - y(291)),
        "mouth_width": d(61, 291),
        "inner_brow_height": ((y(133) - y(107)) + (y(362) - y(336))) / 2,
        "outer_brow_height": ((y(33) - y(70)) + (y(263) - y(300))) / 2,
        "mid_brow_height": ((y(159) - y(105)) + (y(386) - y(334))) / 2,
        "brow_gap": d(107, 336),
        "eye_opening": (d(159, 145) + d(386, 374)) / 2,
        "upper_lip_thickness": d(0, 13),
        "lower_lip_thickness": d(14, 17),
        "jaw_drop": d(4, 152),
        "mouth_opening": d(13, 14),
        "nose_lip_distance": d(2, 0),
        "nose_wing_height": (d(98, 133) + d(327, 362)) / 2,
        "chin_lip_distance": d(17, 152),
        "corner_eye_distance": (d(61, 33) + d(291, 263)) / 2,
        "cheek_height": (d(145, 205) + d(374, 425)) / 2,
        "corner_height": ((y(61) - y(33)) + (y(291) - y(263))) / 2,
    }
    return np.stack([features[name] for name in FEATURE_NAMES], axis=1)


@dataclass
class EmotionPrototypes:
    """Per-emotion feature means and a pooled within-class variance: a nearest-prototype classifier.

    Attributes:
        classes: emotion labels, one per row of ``means``.
        means: ``(C, F)`` prototype feature vectors.
        variance: ``(F,)`` pooled within-class variance (the Mahalanobis metric, diagonal).
        relative: whether features are taken relative to a reference face of the same person.
        feature_names: names of the F features (must match :data:`FEATURE_NAMES`).
        fitted_on: which clips/actors the prototypes come from.
    """

    classes: tuple[str, ...]
    means: np.ndarray
    variance: np.ndarray
    relative: bool
    feature_names: tuple[str, ...] = FEATURE_NAMES
    fitted_on: list[str] = field(default_factory=list)

    @classmethod
    def fit(
        cls, features: Mapping[str, np.ndarray], relative: bool, fitted_on: Sequence[str] = (), min_variance=1e-6
    ) -> EmotionPrototypes:
        """Fit from ``{emotion: (N, F) frame features}`` (already made relative when ``relative``)."""
        classes = tuple(e for e in EMOTIONS if e in features) + tuple(sorted(set(features) - set(EMOTIONS)))
        if len(classes) < 2:
            raise ValueError(f"need features for at least 2 emotions, got {list(features)}")
        means, residuals = [], []
        for label in classes:
            values = np.asarray(features[label], dtype=np.float64)
            values = values[np.isfinite(values).all(axis=1)]
            if len(values) == 0:
                raise ValueError(f"no valid feature rows for emotion {label!r}")
            means.append(values.mean(axis=0))
            residuals.append(values - means[-1])
        variance = np.maximum(np.concatenate(residuals).var(axis=0), min_variance)
        return cls(classes, np.stack(means), variance, relative, FEATURE_NAMES, list(fitted_on))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances ``(N, C)`` from feature rows ``(N, F)`` to each prototype."""
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if features.shape[1] != self.means.shape[1]:
            raise ValueError(f"expected {self.means.shape[1]} features per row, got {features.shape[1]}")
        diff = features[:, None, :] - self.means[None]
        return (diff**2 / self.variance).sum(axis=-1)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Nearest-prototype label for each feature row (``""`` for rows with NaN)."""
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        labels = np.array(self.classes, dtype=object)[self.distances(np.nan_to_num(features)).argmin(axis=1)]
        labels[~np.isfinite(features).all(axis=1)] = ""
        return labels

    def to_dict(self) -> dict:
        """JSON-ready form."""
        out = asdict(self)
        out["means"] = {c: [round(float(v), 6) for v in row] for c, row in zip(self.classes, self.means, strict=True)}
        out["variance"] = [round(float(v), 8) for v in self.variance]
        out["classes"] = list(self.classes)
        out["feature_names"] = list(self.feature_names)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> EmotionPrototypes:
        """Inverse of :meth:`to_dict`; refuses files written for a different feature set."""
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(f"prototype file has features {names}, this version computes {FEATURE_NAMES}")
        classes = tuple(data["classes"])
        means = np.array([data["means"][c] for c in classes], dtype=np.float64)
        return cls(classes, means, np.asarray(data["variance"], dtype=np.float64), bool(data["relative"]), names,
                   list(data.get("fitted_on", [])))  # fmt: skip


def load_prototypes(relative: bool = True, fitted_on: str = "all", path: str | Path = PROTOTYPES_FILE):
    """Load the calibrated prototypes (``fitted_on``: ``"all"`` or one actor, e.g. ``"M030"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"emotion prototypes not found at {path}; run python -m emotalk_evaluation.calibrate")
    data = json.loads(path.read_text())
    key = "relative" if relative else "absolute"
    try:
        return EmotionPrototypes.from_dict(data["prototypes"][key][fitted_on])
    except KeyError as error:
        raise ValueError(f"{path} has no {key} prototypes fitted on {fitted_on!r}") from error


def reference_features(mesh: np.ndarray) -> np.ndarray:
    """The reference vector for relative features: the per-feature median over valid frames of ``mesh``."""
    features = expression_features(mesh)
    features = features[np.isfinite(features).all(axis=1)]
    if len(features) == 0:
        raise ValueError("no face found in the reference for relative emotion features")
    return np.median(features, axis=0)


def emotion_scores(
    features: np.ndarray,
    requested: str | None,
    prototypes: EmotionPrototypes,
    reference: np.ndarray | None = None,
) -> dict:
    """Classify a video's frames and compare with the requested emotion.

    Args:
        features: ``(T, F)`` expression features of the video.
        requested: the emotion the video should show (None or ``"auto"``: no accuracy is computed).
        prototypes: the classifier; relative prototypes need ``reference``.
        reference: ``(F,)`` features of the same person's reference face (the source photo).

    Returns ``predicted`` (label of the mean feature vector), ``correct`` (1/0, NaN without a request),
    ``frame_accuracy`` (fraction of frames classified as requested), ``frame_distribution`` and ``mode``.
    """
    features = np.asarray(features, dtype=np.float64)
    if prototypes.relative:
        if reference is None:
            raise ValueError("relative emotion prototypes need reference features (e.g. from the source image)")
        features = features - np.asarray(reference, dtype=np.float64)[None]
    valid = features[np.isfinite(features).all(axis=1)]
    if requested is not None and requested != "auto" and requested not in prototypes.classes:
        raise ValueError(f"unknown emotion {requested!r}; expected one of {list(prototypes.classes)}")
    if len(valid) == 0:
        return {"predicted": None, "correct": float("nan"), "frame_accuracy": float("nan"),
                "frame_distribution": {}, "mode": "relative" if prototypes.relative else "absolute"}  # fmt: skip
    frame_labels = prototypes.predict(valid)
    predicted = str(prototypes.predict(valid.mean(axis=0, keepdims=True))[0])
    has_request = requested is not None and requested != "auto"
    return {
        "predicted": predicted,
        "correct": float(predicted == requested) if has_request else float("nan"),
        "frame_accuracy": float(np.mean(frame_labels == requested)) if has_request else float("nan"),
        "frame_distribution": {c: float(np.mean(frame_labels == c)) for c in prototypes.classes},
        "mode": "relative" if prototypes.relative else "absolute",
    }


_MEAD_NAME = re.compile(r"(?P<actor>[MW]\d{3})_front_(?P<emotion>[a-z]+)_level_?(?P<level>\d)")
_MEAD_PATH = re.compile(r"(?P<actor>[MW]\d{3})/video/front/(?P<emotion>[a-z]+)/level_(?P<level>\d)/")


def parse_mead_name(path: str | Path) -> tuple[str, str, int] | None:
    """``(actor, emotion, level)`` from a MEAD file name or ``<actor>/video/front/<emotion>/level_<n>/`` path."""
    text = str(path).replace("\\", "/")
    match = _MEAD_NAME.search(text) or _MEAD_PATH.search(text)
    if match is None or match["emotion"] not in EMOTIONS:
        return None
    return match["actor"], match["emotion"], int(match["level"])
