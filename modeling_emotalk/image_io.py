"""Reading a portrait: paths, encoded bytes, PIL images, numpy arrays and tensors -> RGB uint8, sizes checked first.

Files are refused from their header when too large (never decoded); EXIF orientation is applied, transparency is
composited on white, 16-bit and float images are scaled to 8 bits. PIL is the only image dependency; torch is
imported only to convert a tensor, so this module stays importable as Hub remote code.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .errors import EmoTalkInputError, ImageReadError, ImageSizeError

__all__ = ["MAX_IMAGE_PIXELS", "MIN_SIDE", "check_image_size", "is_rgb_uint8", "load_image", "read_image_file"]

MIN_SIDE = 32
"""Smallest accepted side of a photo, in pixels."""
MAX_IMAGE_PIXELS = 50_000_000
"""Photos with more pixels are refused before decoding (read from the file header): 50 MP is a 8660² photo, more
than any camera portrait needs, and decoding it takes 150 MB as RGB."""
PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
"""What Pillow's decoders raise on a missing, truncated or malformed file (``UnidentifiedImageError`` is an
OSError; PNG chunk errors are SyntaxError; short reads are EOFError or struct.error; bad deflate data zlib.error)."""

_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "RGBa", "La", "PA")


def describe(value: Any) -> str:
    """A short description of a value for error messages (shape and dtype of arrays, else the type)."""
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"an object of type {type(value).__module__}.{type(value).__qualname__}"


def is_rgb_uint8(image: Any) -> bool:
    """Whether ``image`` is already an ``(H, W, 3)`` uint8 numpy array."""
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def check_image_size(height: int, width: int, max_size: int | None) -> None:
    """Raise :class:`ImageSizeError` unless the photo has at least :data:`MIN_SIDE` and at most ``max_size``
    pixels on each side and at most :data:`MAX_IMAGE_PIXELS` pixels."""
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageSizeError(
            f"the image is too large ({height}x{width} pixels, HxW, {height * width / 1e6:.0f} MP): expected at "
            f"most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; downscale it first (a portrait needs no more than about "
            "2000 pixels on its longer side)"
        )
    if min(height, width) < MIN_SIDE:
        raise ImageSizeError(
            f"the image is too small ({height}x{width} pixels, HxW): expected at least {MIN_SIDE} pixels on each "
            "side (and a clearly visible face)"
        )
    if max_size is not None and max(height, width) > max_size:
        raise ImageSizeError(
            f"the image is too large ({height}x{width} pixels, HxW): expected at most {max_size} pixels on each "
            "side; downscale it first or raise FaceProcessor(max_image_size=...)"
        )


def pil_to_array(img: Image.Image) -> np.ndarray:
    """Any PIL image (EXIF-corrected) -> RGB uint8 (transparency composited on white)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in _16BIT_MODES:
        return array_to_rgb(np.asarray(img))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("RGB")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"))


def array_to_rgb(array: np.ndarray, max_size: int | None = None) -> np.ndarray:
    """A numpy image (HxW, HxWxC or CxHxW; any sensible dtype) -> RGB uint8 HxWx3."""
    original = array
    array = _to_hwc(array)
    if array.size == 0:
        raise ImageSizeError(f"the image is empty ({describe(original)}): expected a photo of at least 32x32 pixels")
    height, width = array.shape[:2]
    check_image_size(height, width, max_size)
    if array.dtype == np.uint8 and array.shape[-1] in (1, 3):  # fast path, no float round trip
        return np.ascontiguousarray(np.broadcast_to(array, (height, width, 3)))
    array = _to_unit_range(array, original)
    if array.shape[-1] in (2, 4):  # composite on white
        alpha = array[..., -1:]
        array = array[..., :-1] * alpha + (1.0 - alpha)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8))


def _to_hwc(array: np.ndarray) -> np.ndarray:
    """Drop leading singleton axes, CHW -> HWC, HW -> HW1; refuse other layouts."""
    original = array
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4) and array.shape[0] in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"cannot read an image from {describe(original)}: expected HxW (grayscale), HxWxC or CxHxW with "
            "C in 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)"
        )
    return array


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
        return _integers_to_unit_range(array, original)
    if kind == "f":
        return _floats_to_unit_range(array, original)
    raise ImageReadError(
        f"cannot read an image from {describe(original)}: expected uint8, uint16, bool or float pixel values"
    )


def _integers_to_unit_range(array: np.ndarray, original: np.ndarray) -> np.ndarray:
    low, high = int(array.min()), int(array.max())
    if low >= 0 and high <= 255:
        return array.astype(np.float32) / 255.0
    if low >= 0 and high <= 65535:
        return array.astype(np.float32) / 65535.0
    raise ImageReadError(
        f"cannot read an image from {describe(original)} with values in [{low}, {high}]: expected integer "
        "pixel values in [0, 255] (8-bit) or [0, 65535] (16-bit)"
    )


def _floats_to_unit_range(array: np.ndarray, original: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ImageReadError(
            f"the image ({describe(original)}) contains NaN or infinite values: expected finite pixel values"
        )
    low, high = float(array.min()), float(array.max())
    if low >= -1e-3 and high <= 1.0 + 1e-3:
        return np.clip(array, 0.0, 1.0)
    if low >= -0.5 and high <= 255.5:
        return np.clip(array / 255.0, 0.0, 1.0)
    raise ImageReadError(
        f"cannot read an image from {describe(original)} with values in [{low:.3g}, {high:.3g}]: expected "
        "float pixel values in [0, 1] (or [0, 255])"
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
            check_image_size(height, width, max_image_size)
            if max_side is not None and max(width, height) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
            img.load()
            return pil_to_array(img)
    except EmoTalkInputError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageSizeError(
            f"the image in {name} is too large ({err}): expected at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
        ) from err
    except PIL_DECODE_ERRORS as err:
        raise ImageReadError(
            f"cannot read an image from {name}: {type(err).__name__}: {err}. Expected a readable image file "
            "(JPEG, PNG, WebP, ...)"
        ) from err


def load_image(image: Any, max_image_size: int | None = 8192) -> np.ndarray:
    """Read a path, bytes, PIL image, numpy array or torch tensor as an RGB uint8 ``(H, W, 3)`` array.

    Paths and PIL images get their EXIF orientation applied; transparency is composited on white; 16-bit
    images are scaled to 8 bits; float arrays must be in [0, 1] (or [0, 255]); tensors may be CHW or HWC.
    Photos with a side over ``max_image_size`` are refused (:class:`ImageSizeError`).
    """
    if isinstance(image, (str, Path, bytes, bytearray, memoryview)):
        image = read_image_file(image, max_image_size=max_image_size)
    if isinstance(image, Image.Image):
        array = _pil_image_to_array(image, max_image_size)
    elif isinstance(image, np.ndarray):
        array = array_to_rgb(image, max_image_size)
    elif type(image).__module__.startswith("torch"):
        array = array_to_rgb(_tensor_to_numpy(image), max_image_size)
    else:
        raise ImageReadError(
            f"cannot read an image from {describe(image)}: expected a file path, bytes, a PIL image, "
            "a numpy array or a torch tensor"
        )
    check_image_size(array.shape[0], array.shape[1], max_image_size)
    return array


def _pil_image_to_array(image: Image.Image, max_image_size: int | None) -> np.ndarray:
    check_image_size(image.height, image.width, max_image_size)
    try:
        return pil_to_array(image)
    except EmoTalkInputError:
        raise
    except PIL_DECODE_ERRORS as err:  # a lazily loaded PIL image decodes here
        raise ImageReadError(f"cannot convert the PIL image (mode {image.mode}, {image.size}): {err}") from err


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise ImageReadError(f"cannot read an image from {describe(tensor)}: expected a torch.Tensor")
    tensor = tensor.detach().cpu()
    if tensor.is_complex():
        raise ImageReadError(f"cannot read an image from a complex tensor ({tensor.dtype}): expected real values")
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.numpy()
