"""Face front-end: image loading, MediaPipe face-mesh detection, similarity alignment, paste-back.

Pixel coordinates here are *continuous*: the centre of pixel ``(row i, column j)`` is at
``(x, y) = (j + 0.5, i + 0.5)``, which is what makes ``2 * x / size - 1`` the ``align_corners=False``
convention of ``grid_sample`` (see :mod:`.landmarks`). MediaPipe and OpenCV are imported lazily, so this
module stays importable as Hub remote code.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .errors import EmoTalkInputError, FaceTooSmallError, ImageReadError, ImageSizeError, NoFaceError
from .landmarks import FACE_OVAL, LEFT_EYE_CORNERS, MOUTH_CORNERS, NUM_LANDMARKS, RIGHT_EYE_CORNERS

__all__ = ["MAX_IMAGE_PIXELS", "FaceCrop", "FaceProcessor", "read_image_file"]

# Template positions in the crop, as fractions of its size: eye centres (subject's right eye on the image left),
# mouth centre. The eye distance is 0.25 S and the eye-mouth distance 1.1 eye distances (the median of real faces),
# which leaves the forehead, some hair and the chin (about 1.9 eye distances below the eyes) inside the crop.
TEMPLATE = np.array([[0.375, 0.40], [0.625, 0.40], [0.5, 0.675]])

_MIN_SIDE = 32
# Photos with more pixels are refused before decoding (read from the file header): 50 MP is a 8660² photo, more
# than any camera portrait needs, and decoding it takes 150 MB as RGB.
MAX_IMAGE_PIXELS = 50_000_000
_DETECT_LONG_SIDE = 640  # size of the downscaled retry copy


@dataclass(eq=False)
class FaceCrop:
    """An aligned face crop and the transform that relates it to the photo."""

    crop: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray  # (478, 3) float32 in crop space [-1, 1]
    image_landmarks: np.ndarray  # (478, 3) float32 in image pixels (z in pixels)
    matrix: np.ndarray  # (2, 3) float64 similarity, image pixel -> crop pixel
    image_size: tuple[int, int]  # (H, W)
    num_faces: int
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def crop_size(self) -> int:
        """Side of the crop in pixels."""
        return int(self.crop.shape[0])

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


# ----------------------------------------------------------------------------------------------- geometry helpers


def _to_cv(matrix: np.ndarray) -> np.ndarray:
    """Continuous-coordinate affine -> OpenCV's pixel-centre convention."""
    out = np.array(matrix, dtype=np.float64)
    out[:, 2] = matrix[:, :2] @ np.array([0.5, 0.5]) + matrix[:, 2] - 0.5
    return out


def _invert(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points[..., :2] @ matrix[:, :2].T + matrix[:, 2]


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (Umeyama, 2-D)."""
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    s0, d0 = s - s.mean(), d - d.mean()
    a = (d0 * s0.conj()).sum() / max((abs(s0) ** 2).sum(), 1e-12)
    b = d.mean() - a * s.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: int | None = None) -> np.ndarray:
    """``cv2.warpAffine`` with continuous coordinates, anti-aliased when it shrinks (ROI + ``INTER_AREA`` first)."""
    import cv2

    border = cv2.BORDER_REPLICATE if border is None else border
    width, height = size
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.75:
        corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
        back = _apply(_invert(matrix), corners)
        pad = 2.0 / scale + 2
        x0, y0 = np.floor(back.min(0) - pad).astype(int)
        x1, y1 = np.ceil(back.max(0) + pad).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            new_w, new_h = max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1)
            image = cv2.resize(image[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
            linear = matrix[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
            matrix = np.hstack([linear, (matrix[:, :2] @ np.array([x0, y0]) + matrix[:, 2])[:, None]])
    return cv2.warpAffine(image, _to_cv(matrix), (width, height), flags=cv2.INTER_LINEAR, borderMode=border)


def _bbox(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _eye_mouth(points: np.ndarray) -> np.ndarray:
    """(3, 2): right eye centre, left eye centre, mouth centre."""
    return np.stack(
        [
            points[list(RIGHT_EYE_CORNERS), :2].mean(0),
            points[list(LEFT_EYE_CORNERS), :2].mean(0),
            points[list(MOUTH_CORNERS), :2].mean(0),
        ]
    )


def _face_width(points: np.ndarray) -> float:
    """Width of the face oval along the eye axis, in the units of ``points``."""
    right, left, _ = _eye_mouth(points)
    axis = (left - right) / max(float(np.linalg.norm(left - right)), 1e-8)
    return float(np.ptp(points[list(FACE_OVAL), :2] @ axis))


# ----------------------------------------------------------------------------------------------- image loading


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"an object of type {type(value).__module__}.{type(value).__qualname__}"


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Any PIL image (EXIF-corrected) -> RGB uint8 (transparency composited on white)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(img))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("RGB")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"))


def _array_to_rgb(array: np.ndarray, max_size: int | None = None) -> np.ndarray:
    """A numpy image (HxW, HxWxC or CxHxW; any sensible dtype) -> RGB uint8 HxWx3."""
    original = array
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4) and array.shape[0] in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"cannot read an image from {_describe(original)}: expected HxW (grayscale), HxWxC or CxHxW with "
            "C in 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)"
        )
    if array.size == 0:
        raise ImageSizeError(f"the image is empty ({_describe(original)}): expected a photo of at least 32x32 pixels")
    height, width = array.shape[:2]
    _check_size(height, width, max_size)
    if array.dtype == np.uint8 and array.shape[-1] in (1, 3):  # fast path, no float round trip
        return np.ascontiguousarray(np.broadcast_to(array, (height, width, 3)))
    array = _to_unit_range(array, original)
    channels = array.shape[-1]
    if channels in (2, 4):  # composite on white
        alpha = array[..., -1:]
        color = array[..., :-1]
        array = color * alpha + (1.0 - alpha)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8))


def _to_unit_range(array: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Pixel values -> float32 in [0, 1]."""
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 255:
            return array.astype(np.float32) / 255.0
        if low >= 0 and high <= 65535:
            return array.astype(np.float32) / 65535.0
        raise ImageReadError(
            f"cannot read an image from {_describe(original)} with values in [{low}, {high}]: expected integer "
            "pixel values in [0, 255] (8-bit) or [0, 65535] (16-bit)"
        )
    if kind == "f":
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise ImageReadError(
                f"the image ({_describe(original)}) contains NaN or infinite values: expected finite pixel values"
            )
        low, high = float(array.min()), float(array.max())
        if low >= -1e-3 and high <= 1.0 + 1e-3:
            return np.clip(array, 0.0, 1.0)
        if low >= -0.5 and high <= 255.5:
            return np.clip(array / 255.0, 0.0, 1.0)
        raise ImageReadError(
            f"cannot read an image from {_describe(original)} with values in [{low:.3g}, {high:.3g}]: expected "
            "float pixel values in [0, 1] (or [0, 255])"
        )
    raise ImageReadError(
        f"cannot read an image from {_describe(original)}: expected uint8, uint16, bool or float pixel values"
    )


def _check_size(height: int, width: int, max_size: int | None) -> None:
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageSizeError(
            f"the image is too large ({height}x{width} pixels, HxW, {height * width / 1e6:.0f} MP): expected at "
            f"most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; downscale it first (a portrait needs no more than about "
            "2000 pixels on its longer side)"
        )
    if min(height, width) < _MIN_SIDE:
        raise ImageSizeError(
            f"the image is too small ({height}x{width} pixels, HxW): expected at least {_MIN_SIDE} pixels on each "
            "side (and a clearly visible face)"
        )
    if max_size is not None and max(height, width) > max_size:
        raise ImageSizeError(
            f"the image is too large ({height}x{width} pixels, HxW): expected at most {max_size} pixels on each "
            "side; downscale it first or raise FaceProcessor(max_image_size=...)"
        )


def read_image_file(
    source: str | Path | bytes | bytearray | memoryview,
    *,
    max_side: int | None = None,
    max_image_size: int | None = 8192,
) -> np.ndarray:
    """Read an image file (path or encoded bytes) as RGB uint8, checking its size before decoding it.

    The size comes from the file header: images over :data:`MAX_IMAGE_PIXELS`, or with a side over
    ``max_image_size``, are refused without being decoded. With ``max_side``, larger images are decoded
    reduced (JPEG's DCT scaling via PIL's draft mode, ``reduce`` for other formats) and resized so that their
    longer side is ``max_side``. Raises :class:`ImageReadError` (missing, truncated, not an image) or
    :class:`ImageSizeError`, whose messages name the file.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise ImageReadError(f"image file not found: {name!r} (expected an existing image file)")
        opener: Any = path
    else:
        name = f"<{len(source)} bytes>"
        opener = io.BytesIO(bytes(source))
    try:
        with Image.open(opener) as img:
            width, height = img.size
            _check_size(height, width, max_image_size)
            if max_side is not None and max(width, height) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
            img.load()
            return _pil_to_array(img)
    except EmoTalkInputError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageSizeError(
            f"the image in {name} is too large ({err}): expected at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
        ) from err
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise ImageReadError(
            f"cannot read an image from {name}: {type(err).__name__}: {err}. Expected a readable image file "
            "(JPEG, PNG, WebP, ...)"
        ) from err


# ----------------------------------------------------------------------------------------------- processor


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
        self._lock = threading.Lock()
        self._models_cache: dict[str, Any] | None = None

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
        with self._lock:
            for model in (self._models_cache or {}).values():
                model.close()
            self._models_cache = None

    # -- loading
    def load_image(self, image: Any) -> np.ndarray:
        """Read a path, bytes, PIL image, numpy array or torch tensor as an RGB uint8 ``(H, W, 3)`` array.

        Paths and PIL images get their EXIF orientation applied; transparency is composited on white; 16-bit
        images are scaled to 8 bits; float arrays must be in [0, 1] (or [0, 255]); tensors may be CHW or HWC.
        """
        if isinstance(image, (str, Path, bytes, bytearray, memoryview)):
            return self._read_file(image)
        if isinstance(image, Image.Image):
            try:
                _check_size(image.height, image.width, self.max_image_size)
                array = _pil_to_array(image)
            except EmoTalkInputError:
                raise
            except Exception as err:
                raise ImageReadError(f"cannot convert the PIL image (mode {image.mode}, {image.size}): {err}") from err
        elif isinstance(image, np.ndarray):
            array = _array_to_rgb(image, self.max_image_size)
        elif type(image).__module__.startswith("torch"):
            array = _array_to_rgb(self._tensor_to_numpy(image), self.max_image_size)
        else:
            raise ImageReadError(
                f"cannot read an image from {_describe(image)}: expected a file path, bytes, a PIL image, "
                "a numpy array or a torch tensor"
            )
        _check_size(array.shape[0], array.shape[1], self.max_image_size)
        return array

    @staticmethod
    def _tensor_to_numpy(tensor: Any) -> np.ndarray:
        import torch

        if not isinstance(tensor, torch.Tensor):
            raise ImageReadError(f"cannot read an image from {_describe(tensor)}: expected a torch.Tensor")
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()
        if tensor.is_complex():
            raise ImageReadError(f"cannot read an image from a complex tensor ({tensor.dtype}): expected real values")
        return tensor.numpy()

    def _read_file(self, source: str | Path | bytes | bytearray | memoryview) -> np.ndarray:
        return self.load_image(read_image_file(source, max_image_size=self.max_image_size))

    # -- detection
    def _models(self) -> dict[str, Any]:
        if self._models_cache is None:
            try:
                from mediapipe.python.solutions import face_detection, face_mesh
            except ImportError as err:  # pragma: no cover - environment issue
                raise ImportError(
                    "FaceProcessor needs mediapipe==0.10.14 (it bundles the face-mesh models): "
                    "pip install mediapipe==0.10.14"
                ) from err
            self._models_cache = {
                "mesh": face_mesh.FaceMesh(
                    static_image_mode=True,
                    refine_landmarks=True,
                    max_num_faces=self.max_num_faces,
                    min_detection_confidence=0.5,
                ),
                # short range (faces within ~2 m, what the mesh uses internally) and full range (small faces)
                "short": face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5),
                "full": face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5),
            }
        return self._models_cache

    def _process(self, name: str, rgb: np.ndarray) -> Any:
        with self._lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*GetPrototype", category=UserWarning)
            return self._models()[name].process(np.ascontiguousarray(rgb))

    def _run_mesh(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face mesh on an RGB uint8 image -> pixel landmarks (478, 3) per face."""
        result = self._process("mesh", rgb)
        height, width = rgb.shape[:2]
        faces = []
        for face in result.multi_face_landmarks or []:
            points = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            if points.shape == (NUM_LANDMARKS, 3):
                faces.append(points * np.array([width, height, width]))
        return faces

    def _run_detector(self, rgb: np.ndarray, name: str = "full") -> list[tuple[float, np.ndarray]]:
        """Face detector -> (score, box (x0, y0, x1, y1) in pixels) per face."""
        result = self._process(name, rgb)
        height, width = rgb.shape[:2]
        boxes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            corners = np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height])
            boxes.append((float(detection.score[0]), corners * np.array([width, height, width, height])))
        return boxes

    def _mesh_view(self, image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: int | None = None):
        """Face mesh on a warped view of ``image`` (``matrix``: image -> view), landmarks mapped back to ``image``."""
        view = _warp(image, matrix, size, border)
        inverse = _invert(matrix)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        faces = []
        for points in self._run_mesh(view):
            back = np.empty_like(points)
            back[:, :2] = _apply(inverse, points)
            back[:, 2] = points[:, 2] / scale
            faces.append(back)
        return faces

    def detect(self, image: Any) -> list[np.ndarray]:
        """All faces in a photo: ``(478, 3)`` float32 landmarks in image pixels (z in pixels), largest face first.

        MediaPipe's face mesh runs on the whole photo; faces that only the full-range detector sees (small faces,
        group photos) are meshed again on a zoomed view; mesh faces that no detector confirms confidently are
        dropped when a confirmed face exists; when nothing is found, a downscaled and a padded copy are tried.
        """
        import cv2

        image = image if _is_rgb_uint8(image) else self.load_image(image)
        height, width = image.shape[:2]
        try:
            faces = self._run_mesh(image)
            full = self._run_detector(image, "full")
            if max(height, width) > 1.5 * _DETECT_LONG_SIDE:  # group photos: small faces, tile the detector
                factor = min(1.0, 3 * _DETECT_LONG_SIDE / max(height, width))
                small = (
                    image
                    if factor == 1.0
                    else cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
                )
                tile = max(small.shape[:2]) // 2
                for y in _tile_starts(small.shape[0], tile):
                    for x in _tile_starts(small.shape[1], tile):
                        for score, box in self._run_detector(small[y : y + tile, x : x + tile], "full"):
                            box = (box + np.array([x, y, x, y])) / factor
                            if all(_iou(box, other) < 0.3 for _, other in full):
                                full.append((score, box))
            short = self._run_detector(image, "short") if faces else []
            # A mesh face is "strong" when a detector confirms it confidently; weak ones (a logo, a pattern) are
            # dropped when a strong face exists. On real portraits the short-range score is >= 0.8.
            strong = [
                max((score for score, box in full if _iou(_bbox(f), box) > 0.3), default=0.0) >= 0.5
                or max((score for score, box in short if _iou(_bbox(f), box) > 0.3), default=0.0) >= 0.75
                for f in faces
            ]
            for _, box in full:
                centre = (box[:2] + box[2:]) / 2
                if any(_contains(_bbox(f), centre) for f in faces):
                    continue
                side = 2.2 * max(box[2] - box[0], box[3] - box[1], 8.0)
                view = int(np.clip(side, 256, 768))  # zoom in on small faces, keep detail of large ones
                s = view / side
                matrix = np.array([[s, 0.0, view / 2 - s * centre[0]], [0.0, s, view / 2 - s * centre[1]]])
                found = self._mesh_view(image, matrix, (view, view), cv2.BORDER_CONSTANT)
                if found:
                    faces.append(min(found, key=lambda f: np.linalg.norm(_bbox(f).reshape(2, 2).mean(0) - centre)))
                    strong.append(True)
            if any(strong):
                faces = [f for f, keep in zip(faces, strong, strict=True) if keep]
            if not faces and max(height, width) > _DETECT_LONG_SIDE:
                s = _DETECT_LONG_SIDE / max(height, width)
                size = (max(round(width * s), 1), max(round(height * s), 1))
                matrix = np.diag([size[0] / width, size[1] / height, 1.0])[:2]
                faces = self._mesh_view(image, matrix, size)
            if not faces:  # a face filling the frame: give it some room
                pad = max(height, width) // 2
                matrix = np.array([[1.0, 0.0, pad], [0.0, 1.0, pad]])
                if max(height, width) > _DETECT_LONG_SIDE:
                    matrix = matrix * (_DETECT_LONG_SIDE / max(height, width))
                size = (
                    round(matrix[0, 0] * width + 2 * matrix[0, 2]),
                    round(matrix[1, 1] * height + 2 * matrix[1, 2]),
                )
                faces = self._mesh_view(image, matrix, size, cv2.BORDER_CONSTANT)
        except EmoTalkInputError:
            raise
        except Exception as err:
            raise NoFaceError(
                f"face detection failed on the image ({height}x{width}): {type(err).__name__}: {err}"
            ) from err
        unique: list[np.ndarray] = []
        for face in faces:
            if all(_iou(_bbox(face), _bbox(other)) < 0.4 for other in unique):
                unique.append(face)
        unique.sort(key=lambda f: -float(np.prod(np.ptp(f[:, :2], axis=0))))
        return [f.astype(np.float32) for f in unique]

    # -- alignment
    def alignment_matrix(self, points: np.ndarray) -> np.ndarray:
        """The similarity (2, 3) mapping image pixels to crop pixels for a face's landmarks."""
        size = self.crop_size
        template = (TEMPLATE - 0.5) / self.margin + 0.5
        return _similarity(_eye_mouth(np.asarray(points, dtype=np.float64)), template * size)

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
        if face_index is None:
            if len(faces) > 1:
                warnings.warn(
                    f"found {len(faces)} faces in the image; using the largest one. Pass "
                    f"face_index=0..{len(faces) - 1} to pick another (faces are sorted by size, largest first)",
                    UserWarning,
                    stacklevel=2,
                )
            face_index = 0
        if not isinstance(face_index, (int, np.integer)) or isinstance(face_index, bool):
            raise EmoTalkInputError(f"face_index must be an integer or None, got {face_index!r}")
        if not 0 <= face_index < len(faces):
            raise EmoTalkInputError(
                f"face_index={face_index} is out of range: {len(faces)} face(s) found in the image, expected "
                f"face_index in 0..{len(faces) - 1}"
            )
        points = faces[face_index].astype(np.float64)
        face_width = _face_width(points)
        if face_width < self.min_face_size:
            raise FaceTooSmallError(
                f"the face is too small ({face_width:.0f} pixels wide in the {height}x{width} image): expected a face "
                f"at least {self.min_face_size} pixels wide; use a larger photo or a closer crop"
            )
        matrix = self.alignment_matrix(points)
        size = self.crop_size
        try:
            crop = _warp(image, matrix, (size, size))
        except Exception as err:
            raise ImageReadError(f"cannot warp the face crop from the image ({height}x{width}): {err}") from err
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        crop_points = np.empty_like(points)
        crop_points[:, :2] = _apply(matrix, points) * (2.0 / size) - 1.0
        crop_points[:, 2] = points[:, 2] * scale * (2.0 / size)
        return FaceCrop(
            crop=crop,
            landmarks=crop_points.astype(np.float32),
            image_landmarks=points.astype(np.float32),
            matrix=matrix,
            image_size=(height, width),
            num_faces=len(faces),
        )

    # -- mask and paste-back
    def face_mask(self, face: FaceCrop) -> np.ndarray:
        """(S, S) float32 feathered mask in crop space: 1 over the face (oval grown to cover forehead and chin),
        0 near the crop borders."""
        key = ("mask", face.crop_size)
        if key not in face._cache:
            face._cache[key] = _face_mask(face.landmarks, face.crop_size)
        return face._cache[key]

    def paste_back(self, image: Any, crops: Any, face: FaceCrop) -> np.ndarray:
        """Blend generated crops into the photo: ``(T, S', S', 3)`` uint8 -> ``(T, H, W, 3)`` uint8.

        Pixels outside the warped face mask are bit-identical to ``image``; crops of another square size than
        ``crop_size`` are accepted (the transform is rescaled). Per-face work is cached on ``face``.
        """
        import cv2

        image = image if _is_rgb_uint8(image) else self.load_image(image)
        if image.shape[:2] != tuple(face.image_size):
            raise EmoTalkInputError(
                f"paste_back got an image of size {image.shape[0]}x{image.shape[1]}, expected the photo the face was "
                f"found in ({face.image_size[0]}x{face.image_size[1]})"
            )
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2]:
            raise EmoTalkInputError(f"paste_back expects crops of shape (T, S, S, 3), got {crops.shape}")
        if crops.dtype != np.uint8:
            raise EmoTalkInputError(f"paste_back expects uint8 crops, got {crops.dtype}")
        x0, y0, x1, y1, to_box, alpha, keep = self._paste_plan(face, crops.shape[1])
        out = np.empty((len(crops), *image.shape), dtype=np.uint8)
        out[:] = image
        if x1 <= x0 or y1 <= y0:
            return out
        region = image[y0:y1, x0:x1]
        size = (x1 - x0, y1 - y0)
        for t, crop in enumerate(crops):
            warped = cv2.warpAffine(crop, to_box, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # blendLinear divides by (w0 + w1 + 1e-5) and rounds: exact copies where alpha is 0 (or 1).
            out[t, y0:y1, x0:x1] = cv2.blendLinear(region, warped, keep, alpha)
        return out

    def _paste_plan(self, face: FaceCrop, crop_size: int):
        """Per-face paste-back data: the mask's bounding box in the image, the crop -> box warp, the box's alpha."""
        import cv2

        key = ("paste", crop_size)
        if key in face._cache:
            return face._cache[key]
        mask = self.face_mask(face)
        height, width = face.image_size
        to_crop = face.matrix * (crop_size / face.crop_size)
        to_image = _invert(to_crop)
        ys, xs = np.nonzero(mask > 0)
        if len(xs) == 0:
            plan = (0, 0, 0, 0, None, None, None)
        else:
            corners = np.array(
                [
                    [xs.min(), ys.min()],
                    [xs.max() + 1, ys.min()],
                    [xs.min(), ys.max() + 1],
                    [xs.max() + 1, ys.max() + 1],
                ],
                dtype=np.float64,
            )
            pts = _apply(_invert(face.matrix), corners)
            x0, y0 = np.floor(pts.min(0)).astype(int) - 1
            x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
            crop_to_box = _to_cv(_compose(shift, to_image))
            box_size = (max(x1 - x0, 0), max(y1 - y0, 0))
            if box_size[0] == 0 or box_size[1] == 0:
                plan = (0, 0, 0, 0, None, None, None)
            else:
                # The mask lives at ``crop_size`` resolution; map it through the same transform (scaled).
                mask_to_box = _to_cv(_compose(shift, _invert(face.matrix)))
                alpha = cv2.warpAffine(
                    mask, mask_to_box, box_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
                )
                alpha[alpha < 1.0 / 512] = 0.0
                alpha = np.ascontiguousarray(np.clip(alpha, 0.0, 1.0), dtype=np.float32)
                plan = (x0, y0, x1, y1, crop_to_box, alpha, 1.0 - alpha)
        face._cache[key] = plan
        return plan


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Affine ``outer ∘ inner`` (both 2x3)."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def _tile_starts(length: int, tile: int) -> list[int]:
    """Offsets of tiles of size ``tile`` covering ``length`` with about 50% overlap."""
    if length <= tile:
        return [0]
    count = int(np.ceil((length - tile) / (tile / 2))) + 1
    return [round(v) for v in np.linspace(0, length - tile, count)]


def _contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _is_rgb_uint8(image: Any) -> bool:
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def _face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Feathered face mask from crop-space landmarks ([-1, 1])."""
    import cv2

    points = (np.asarray(landmarks, dtype=np.float64)[:, :2] + 1.0) * (size / 2.0)
    right, left, _ = _eye_mouth(points)
    eye_centre = (right + left) / 2
    eye_distance = float(np.linalg.norm(left - right))
    x_axis = (left - right) / max(eye_distance, 1e-8)
    y_axis = np.array([-x_axis[1], x_axis[0]])
    oval = points[list(FACE_OVAL)] - eye_centre
    u, v = oval @ x_axis, oval @ y_axis
    # Grow the oval: wider cheeks, higher forehead, lower chin (room for an open jaw and small head motion).
    u = u * 1.08
    v = np.where(v < 0, v * 1.25, v * 1.06)
    grown = eye_centre + u[:, None] * x_axis + v[:, None] * y_axis
    hull = cv2.convexHull(np.round(grown * 16).astype(np.int32))
    mask = np.zeros((size, size), dtype=np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    sigma = max(0.1 * eye_distance, 1.0)  # 6.4 px at the default 256 template
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    # Fade to exactly 0 at the crop borders.
    border = max(2.0, 0.03 * size)
    ramp = np.clip((np.minimum(np.arange(size), size - 1 - np.arange(size)) - 2.0) / border, 0.0, 1.0)
    mask *= ramp[:, None] * ramp[None, :]
    mask[mask < 1.0 / 512] = 0.0
    return np.clip(mask, 0.0, 1.0).astype(np.float32)
