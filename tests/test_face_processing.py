"""Face front-end: loading, detection, alignment, mask and paste-back (generated media only)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from modeling_emotalk.errors import (
    EmoTalkInputError,
    FaceTooSmallError,
    ImageReadError,
    ImageSizeError,
    NoFaceError,
)
from modeling_emotalk.face_processing import TEMPLATE, FaceCrop, FaceProcessor
from modeling_emotalk.landmarks import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS, canonical_frame

S = 256


@pytest.fixture(scope="module")
def processor() -> FaceProcessor:
    return FaceProcessor(crop_size=S)


@pytest.fixture(scope="module")
def face(processor, astronaut) -> FaceCrop:
    return processor(astronaut)


def eye_centres(points: np.ndarray) -> np.ndarray:
    return np.stack([points[list(RIGHT_EYE_CORNERS), :2].mean(0), points[list(LEFT_EYE_CORNERS), :2].mean(0)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def warp_to_image(values: np.ndarray, face: FaceCrop) -> np.ndarray:
    """Independent inverse warp (torch ``grid_sample``, ``align_corners=False``) of a crop-space map to the photo."""
    height, width = face.image_size
    size = values.shape[0]
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    pixels = np.stack([xs, ys], -1).reshape(-1, 2)
    crop_px = pixels @ face.matrix[:, :2].T + face.matrix[:, 2]
    grid = torch.tensor(crop_px * (2.0 / size) - 1.0, dtype=torch.float32).view(1, height, width, 2)
    source = torch.tensor(values, dtype=torch.float32).permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------------------- alignment


def test_astronaut_crop(face, astronaut):
    assert face.num_faces == 1
    assert face.image_size == (512, 512)
    assert face.crop.shape == (S, S, 3) and face.crop.dtype == np.uint8
    assert face.landmarks.shape == (478, 3) and face.landmarks.dtype == np.float32
    assert face.image_landmarks.shape == (478, 3) and face.image_landmarks.dtype == np.float32
    assert face.matrix.shape == (2, 3) and face.matrix.dtype == np.float64
    assert np.abs(face.landmarks).max() <= 1.0
    # The eyes land on the template (the 3-point least-squares fit leaves a few pixels of slack).
    eyes_px = (eye_centres(face.landmarks) + 1.0) * (S / 2)
    np.testing.assert_allclose(eyes_px, TEMPLATE[:2] * S, atol=0.04 * S)
    # The face lies within the photo, about where the astronaut's face is.
    assert 150 < face.image_landmarks[:, 0].mean() < 300 and 60 < face.image_landmarks[:, 1].mean() < 200


def test_matrix_relates_image_and_crop_landmarks(face):
    projected = face.image_landmarks[:, :2].astype(np.float64) @ face.matrix[:, :2].T + face.matrix[:, 2]
    crop_px = (face.landmarks[:, :2].astype(np.float64) + 1.0) * (S / 2)
    np.testing.assert_allclose(projected, crop_px, atol=1e-2)
    np.testing.assert_allclose(face.landmarks[:, 2] * (S / 2), face.image_landmarks[:, 2] * face.scale, atol=1e-2)


def test_crop_follows_grid_sample_convention(face, astronaut):
    """The crop equals ``grid_sample(align_corners=False)`` of the photo at the inverse-mapped pixel centres."""
    inverse = np.linalg.inv(np.vstack([face.matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:S, 0:S] + 0.5
    image_px = np.stack([xs, ys], -1).reshape(-1, 2) @ inverse[:, :2].T + inverse[:, 2]
    grid = torch.tensor(image_px * (2.0 / 512) - 1.0, dtype=torch.float32).view(1, S, S, 2)
    source = torch.tensor(astronaut, dtype=torch.float32).permute(2, 0, 1)[None]
    expected = torch.nn.functional.grid_sample(source, grid, align_corners=False, padding_mode="border")
    expected = expected[0].permute(1, 2, 0).numpy()
    assert np.abs(expected - face.crop).mean() < 1.0


def test_canonical_frame_of_frontal_face(face):
    scale, rotation, _ = canonical_frame(torch.tensor(face.landmarks))
    assert 0.3 < float(scale) < 0.7  # eye distance in crop units: 0.25 S -> 0.5
    assert torch.diagonal(rotation).min() > 0.9


def test_crop_size_and_margin():
    small = FaceProcessor(crop_size=128, margin=1.2)
    assert small.to_dict()["crop_size"] == 128
    assert repr(small).startswith("FaceProcessor(crop_size=128")


def test_custom_crop_size(astronaut):
    face = FaceProcessor(crop_size=128)(astronaut)
    assert face.crop.shape == (128, 128, 3)
    np.testing.assert_allclose((eye_centres(face.landmarks) + 1) * 64, TEMPLATE[:2] * 128, atol=0.04 * 128)


def test_large_photo_is_antialiased(processor, astronaut):
    import cv2

    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    face = processor(big)
    reference = processor(astronaut)
    assert face.scale == pytest.approx(reference.scale / 4, rel=0.05)
    assert psnr(face.crop, reference.crop) > 25


# --------------------------------------------------------------------------------------------------------- inputs


def _astronaut_variants(astronaut, tmp_path):
    pil = Image.fromarray(astronaut)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": stored image is turned counter-clockwise
    pil.transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif, quality=95)
    rgba = pil.convert("RGBA")
    rgba.putalpha(200)
    gray16 = tmp_path / "gray16.png"
    gray = np.asarray(pil.convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(gray16)
    png = io.BytesIO()
    pil.save(png, format="PNG")
    return {
        "exif_rotated_jpeg": rotated,
        "rgba_pil": rgba,
        "grayscale_pil": pil.convert("L"),
        "gray16_png": gray16,
        "palette_pil": pil.convert("P"),
        "uint16_rgb": astronaut.astype(np.uint16) * 257,
        "float_rgb": astronaut.astype(np.float32) / 255,
        "rgba_array": np.concatenate([astronaut, np.full((512, 512, 1), 255, np.uint8)], -1),
        "chw_tensor": torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255,
        "hwc_uint8_tensor": torch.from_numpy(astronaut.copy()),
        "png_bytes": png.getvalue(),
        "path_str": str(gray16),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "exif_rotated_jpeg",
        "rgba_pil",
        "grayscale_pil",
        "gray16_png",
        "palette_pil",
        "uint16_rgb",
        "float_rgb",
        "rgba_array",
        "chw_tensor",
        "hwc_uint8_tensor",
        "png_bytes",
        "path_str",
    ],
)
def test_input_variants_detect_the_face(processor, face, astronaut, tmp_path, kind):
    source = _astronaut_variants(astronaut, tmp_path)[kind]
    image = processor.load_image(source)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    if kind in ("exif_rotated_jpeg", "uint16_rgb", "float_rgb", "rgba_array", "chw_tensor", "png_bytes"):
        assert np.abs(image.astype(int) - astronaut).mean() < 3  # upright and same colours
    result = processor(source)
    assert result.num_faces == 1
    np.testing.assert_allclose(eye_centres(result.image_landmarks), eye_centres(face.image_landmarks), atol=4)


def test_rgba_is_composited_on_white(processor):
    image = np.zeros((40, 40, 4), np.uint8)
    image[:20, :, 3] = 255
    out = processor.load_image(image)
    assert (out[:20] == 0).all() and (out[20:] == 255).all()


def test_bool_and_grayscale_arrays(processor):
    out = processor.load_image(np.eye(40, dtype=bool))
    assert out.shape == (40, 40, 3) and out[0, 0, 0] == 255 and out[0, 1, 0] == 0
    assert processor.load_image(np.full((40, 50, 1), 7, np.uint8)).shape == (40, 50, 3)


@pytest.mark.parametrize(
    "image",
    [np.zeros((512, 512, 3), np.uint8), np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)],
    ids=["blank", "noise"],
)
def test_no_face(processor, image):
    with pytest.raises(NoFaceError, match=r"no face found in the image \(512x512\): expected a photo"):
        processor(image)


def test_several_faces(processor, astronaut):
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    with pytest.warns(UserWarning, match=r"found 2 faces.*face_index=0\.\.1"):
        first = processor(pair)
    assert first.num_faces == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = processor(pair, face_index=1)
    faces = processor.detect(pair)
    assert len(faces) == 2
    area = [np.prod(np.ptp(f[:, :2], axis=0)) for f in faces]
    assert area[0] >= area[1]
    np.testing.assert_allclose(first.image_landmarks, faces[0])
    np.testing.assert_allclose(second.image_landmarks, faces[1])
    assert abs(first.image_landmarks[:, 0].mean() - second.image_landmarks[:, 0].mean()) > 300
    with pytest.raises(EmoTalkInputError, match=r"face_index=2 is out of range: 2 face\(s\) found"):
        processor(pair, face_index=2)
    with pytest.raises(EmoTalkInputError, match="face_index must be an integer"):
        processor(pair, face_index="1")


def test_face_too_small(processor, astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.LANCZOS))
    with pytest.raises(FaceTooSmallError, match=r"too small \(\d+ pixels wide in the 256x256 image\).*at least 64"):
        processor(small)
    assert FaceProcessor(min_face_size=32)(small).crop.shape == (S, S, 3)


def test_face_filling_the_frame(processor, astronaut):
    tight = np.ascontiguousarray(astronaut[60:230, 170:290])
    assert processor(tight).num_faces == 1


def test_unreadable_files(processor, tmp_path):
    garbage = tmp_path / "photo.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    with pytest.raises(ImageReadError, match=r"cannot read an image from .*photo\.jpg"):
        processor.load_image(garbage)
    with pytest.raises(ImageReadError, match=r"cannot read an image from <\d+ bytes>"):
        processor(b"garbage bytes" * 50)
    with pytest.raises(ImageReadError, match="image file not found"):
        processor(tmp_path / "missing.png")
    truncated = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(truncated, format="PNG")
    with pytest.raises(ImageReadError):
        processor.load_image(truncated.getvalue()[:60])


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((10, 10, 3), np.uint8), ImageSizeError, r"too small \(10x10 pixels"),
        (np.zeros((0, 0, 3), np.uint8), ImageSizeError, "empty"),
        (np.zeros((8200, 40), np.uint8), ImageSizeError, r"too large \(8200x40 pixels.*max_image_size"),
        (np.zeros((64, 64, 5), np.uint8), ImageReadError, "expected HxW"),
        (np.zeros((64,), np.uint8), ImageReadError, "expected HxW"),
        (np.full((64, 64, 3), np.nan, np.float32), ImageReadError, "NaN"),
        (np.full((64, 64, 3), -5.0), ImageReadError, r"expected float pixel values in \[0, 1\]"),
        (np.full((64, 64, 3), 70000, np.int32), ImageReadError, "integer pixel values"),
        (np.zeros((64, 64, 3), np.complex64), ImageReadError, "expected uint8"),
        (3, ImageReadError, "expected a file path"),
        ([[1, 2], [3, 4]], ImageReadError, "builtins.list"),
    ],
)
def test_invalid_images(processor, image, error, message):
    with pytest.raises(error, match=message):
        processor.load_image(image)


def test_huge_file_is_rejected_before_decoding(processor, tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (9000, 40)).save(path)
    with pytest.raises(ImageSizeError, match=r"40x9000 pixels"):
        processor(path)
    with pytest.raises(ImageSizeError):
        FaceProcessor(max_image_size=256).load_image(Image.new("RGB", (300, 100)))


def test_processor_pickles(processor, astronaut):
    import pickle

    clone = pickle.loads(pickle.dumps(processor))
    assert clone.to_dict() == processor.to_dict()
    assert clone(astronaut).num_faces == 1
    clone.close()


# --------------------------------------------------------------------------------------------------------- mask, paste


def test_face_mask(processor, face):
    mask = processor.face_mask(face)
    assert mask.shape == (S, S) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() <= 1.0
    assert (mask[:3] == 0).all() and (mask[-3:] == 0).all() and (mask[:, :3] == 0).all() and (mask[:, -3:] == 0).all()
    features = ((face.landmarks[[33, 263, 61, 291, 1, 152, 10], :2] + 1) * S / 2).astype(int)
    assert mask[features[:, 1], features[:, 0]].min() > 0.5  # eyes, mouth corners, nose, chin, forehead
    assert mask[features[:5, 1], features[:5, 0]].min() > 0.99
    assert processor.face_mask(face) is mask  # cached


def test_paste_back_identity(processor, face, astronaut):
    frames = processor.paste_back(astronaut, np.stack([face.crop] * 3), face)
    assert frames.shape == (3, 512, 512, 3) and frames.dtype == np.uint8
    alpha = warp_to_image(processor.face_mask(face)[..., None], face)[..., 0]
    inside = alpha > 0.5
    assert inside.sum() > 5000
    assert psnr(frames[0][inside], astronaut[inside]) > 30
    assert (frames[0] == frames[2]).all()


def test_paste_back_leaves_the_rest_untouched(processor, face, astronaut):
    import cv2

    crops = np.stack([np.zeros_like(face.crop), np.full_like(face.crop, 255)])
    frames = processor.paste_back(astronaut, crops, face)
    alpha = warp_to_image(processor.face_mask(face)[..., None], face)[..., 0]
    outside = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert outside.mean() > 0.7
    for frame in frames:
        assert np.array_equal(frame[outside], astronaut[outside])  # bit-identical
    changed = (frames[0] != astronaut).any(-1)
    assert changed.sum() > 5000  # the face itself was replaced
    # Full weight in the middle of the face: black in, black out.
    nose = np.round(face.image_landmarks[1, :2]).astype(int)
    assert (frames[0][nose[1], nose[0]] == 0).all() and (frames[1][nose[1], nose[0]] == 255).all()


def test_paste_back_other_crop_size_and_single_frame(processor, face, astronaut):
    import cv2

    big = cv2.resize(face.crop, (2 * S, 2 * S), interpolation=cv2.INTER_CUBIC)
    frames = processor.paste_back(astronaut, big, face)
    assert frames.shape == (1, 512, 512, 3)
    reference = processor.paste_back(astronaut, face.crop[None], face)
    assert psnr(frames[0], reference[0]) > 35


def test_paste_back_rejects_mismatches(processor, face, astronaut):
    with pytest.raises(EmoTalkInputError, match=r"image of size 256x256, expected the photo .* \(512x512\)"):
        processor.paste_back(astronaut[:256, :256], face.crop[None], face)
    with pytest.raises(EmoTalkInputError, match=r"crops of shape \(T, S, S, 3\)"):
        processor.paste_back(astronaut, np.zeros((2, 256, 128, 3), np.uint8), face)
    with pytest.raises(EmoTalkInputError, match="uint8 crops"):
        processor.paste_back(astronaut, np.zeros((2, 256, 256, 3), np.float32), face)


# --------------------------------------------------------------------------------------------------------- properties

_DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]


@st.composite
def _images(draw):
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    side = st.one_of(st.integers(0, 3), st.integers(28, 70))
    channels = st.integers(0, 5)
    shape = draw(
        st.one_of(
            st.tuples(side, side),
            st.tuples(side, side, channels),
            st.tuples(channels, side, side),
            st.tuples(st.just(1), side, side, channels),
            st.tuples(st.integers(0, 3)),
        )
    )
    if dtype.kind == "f":
        clean = st.floats(0.0, 1.0, width=dtype.itemsize * 8)
        wild = st.floats(-2.0, 300.0, width=dtype.itemsize * 8) | st.sampled_from([np.nan, np.inf, -np.inf])
        elements = draw(st.sampled_from([clean, wild]))
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image=_images())
def test_load_image_property(image):
    processor = FaceProcessor(max_image_size=64)
    try:
        out = processor.load_image(image)
    except EmoTalkInputError as err:
        event(type(err).__name__)
        return
    event("valid image")
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[-1] == 3
    assert 32 <= out.shape[0] <= 64 and 32 <= out.shape[1] <= 64
    assert out.flags["C_CONTIGUOUS"]


# --------------------------------------------------------------------------------------------------------- real photos


@pytest.mark.media
def test_shared_photos(processor, shared_media):
    photos = shared_media / "photos"
    group = photos / "LivePortrait__src__utils__dependencies__insightface__data__images__t1.jpg"
    large = photos / "hallo__examples__reference_images__7.jpg"
    if group.exists():
        with pytest.warns(UserWarning, match="faces in the image"):
            face = processor(group)
        assert face.num_faces >= 3
    if large.exists():
        face = processor(large)
        assert face.num_faces == 1 and face.crop.shape == (S, S, 3)
