"""Face front-end: :class:`FaceProcessor` finds the face in a portrait, aligns it and pastes generated crops back.

The work is split by stage, and this module ties them together (and re-exports their public names, so that
``from modeling_emotalk.face_processing import FaceCrop, FaceProcessor, read_image_file`` keeps working):

- :mod:`.image_io`: reading any image input as RGB uint8, with size checks before decoding;
- :mod:`.face_detection`: MediaPipe face mesh + detectors, tiling, cross-check and retries;
- :mod:`.face_alignment`: the crop template, the similarity alignment and :class:`FaceCrop`;
- :mod:`.compositing`: the feathered face mask and the paste-back into the photo.

Pixel coordinates are *continuous* (see :mod:`emotalk_common.geometry`). MediaPipe and OpenCV are imported
lazily, so this module stays importable as Hub remote code.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .compositing import PastePlan, cached_face_mask, paste_back, paste_plan
from .errors import EmoTalkInputError, FaceTooSmallError, NoFaceError
from .face_alignment import TEMPLATE, FaceCrop, align_face, alignment_matrix, face_width
from .face_detection import FaceDetector
from .image_io import MAX_IMAGE_PIXELS, is_rgb_uint8, load_image, read_image_file

__all__ = ["MAX_IMAGE_PIXELS", "TEMPLATE", "FaceCrop", "FaceProcessor", "read_image_file"]


class FaceProcessor:
    """Finds the face in a portrait, aligns it to a ``crop_size`` square and pastes generated crops back.

    Args:
        crop_size: side of the aligned crop in pixels.
        margin: zoom of the crop around the template; > 1 shows more context (hair, shoulders), < 1 zooms in.
        min_face_size: faces narrower than this (pixels, in the photo) are rejected.
        max_image_size: photos larger than this on a side are rejected.
        max_num_faces: faces MediaPipe looks for per pass.
    """

    def __init__(
        self,
        crop_size: int = 256,
        margin: float = 1.0,
        min_face_size: int = 64,
        max_image_size: int = 8192,
        max_num_faces: int = 4,
    ) -> None:
        if crop_size < 16:
            raise ValueError(f"crop_size must be at least 16, got {crop_size}")
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.crop_size = int(crop_size)
        self.margin = float(margin)
        self.min_face_size = int(min_face_size)
        self.max_image_size = int(max_image_size)
        self.max_num_faces = int(max_num_faces)
        self.detector = FaceDetector(max_num_faces=self.max_num_faces)

    # -- serialization
    def to_dict(self) -> dict[str, Any]:
        """Constructor arguments (for a preprocessor config)."""
        return {
            "crop_size": self.crop_size,
            "margin": self.margin,
            "min_face_size": self.min_face_size,
            "max_image_size": self.max_image_size,
            "max_num_faces": self.max_num_faces,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict[str, Any]:
        return self.to_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def close(self) -> None:
        """Release the MediaPipe graphs (they are re-created on the next call)."""
        self.detector.close()

    # -- stages
    def load_image(self, image: Any) -> np.ndarray:
        """Read a path, bytes, PIL image, numpy array or torch tensor as an RGB uint8 ``(H, W, 3)`` array.

        See :func:`.image_io.load_image`; photos over ``max_image_size`` on a side are refused.
        """
        return load_image(image, self.max_image_size)

    def detect(self, image: Any) -> list[np.ndarray]:
        """All faces in a photo: ``(478, 3)`` float32 landmarks in image pixels (z in pixels), largest first.

        See :class:`.face_detection.FaceDetector`. Raises :class:`NoFaceError` only when MediaPipe itself fails.
        """
        return self.detector.detect(image if is_rgb_uint8(image) else self.load_image(image))

    def alignment_matrix(self, points: np.ndarray) -> np.ndarray:
        """The similarity (2, 3) mapping image pixels to crop pixels for a face's landmarks."""
        return alignment_matrix(points, self.crop_size, self.margin)

    def __call__(self, image: Any, face_index: int | None = None) -> FaceCrop:
        """Detect, select and align one face.

        Args:
            image: anything :meth:`load_image` accepts.
            face_index: which face (0 = largest); by default the largest, with a warning when there are several.
        """
        image = self.load_image(image)
        height, width = image.shape[:2]
        faces = self.detect(image)
        if not faces:
            raise NoFaceError(
                f"no face found in the image ({height}x{width}): expected a photo with one clearly visible "
                "frontal face"
            )
        points = faces[_select_face(face_index, len(faces))].astype(np.float64)
        width_px = face_width(points)
        if width_px < self.min_face_size:
            raise FaceTooSmallError(
                f"the face is too small ({width_px:.0f} pixels wide in the {height}x{width} image): expected a face "
                f"at least {self.min_face_size} pixels wide; use a larger photo or a closer crop"
            )
        return align_face(image, points, self.crop_size, self.margin, num_faces=len(faces))

    # -- mask and paste-back
    def face_mask(self, face: FaceCrop) -> np.ndarray:
        """(S, S) float32 feathered mask in crop space: 1 over the face (oval grown to cover forehead and chin),
        0 near the crop borders."""
        return cached_face_mask(face)

    def paste_back(self, image: Any, crops: Any, face: FaceCrop) -> np.ndarray:
        """Blend generated crops into the photo: ``(T, S', S', 3)`` uint8 -> ``(T, H, W, 3)`` uint8.

        Pixels outside the warped face mask are bit-identical to ``image``; crops of another square size than
        ``crop_size`` are accepted (the transform is rescaled). Per-face work is cached on ``face``.
        """
        image = image if is_rgb_uint8(image) else self.load_image(image)
        return paste_back(image, crops, face)

    def _paste_plan(self, face: FaceCrop, crop_size: int) -> PastePlan:
        """Per-face paste-back data (see :func:`.compositing.paste_plan`)."""
        return paste_plan(face, crop_size)


def _select_face(face_index: int | None, count: int) -> int:
    """The index of the face to use among ``count`` (the largest, with a warning, when not given)."""
    if face_index is None:
        if count > 1:
            warnings.warn(
                f"found {count} faces in the image; using the largest one. Pass "
                f"face_index=0..{count - 1} to pick another (faces are sorted by size, largest first)",
                UserWarning,
                stacklevel=3,
            )
        return 0
    if not isinstance(face_index, (int, np.integer)) or isinstance(face_index, bool):
        raise EmoTalkInputError(f"face_index must be an integer or None, got {face_index!r}")
    if not 0 <= face_index < count:
        raise EmoTalkInputError(
            f"face_index={face_index} is out of range: {count} face(s) found in the image, expected "
            f"face_index in 0..{count - 1}"
        )
    return int(face_index)
