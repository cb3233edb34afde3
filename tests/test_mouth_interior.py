"""The rigid mouth interior (``mouth_interior="rigid"``): teeth follow their lip, the gap between is a cavity, filled
with one colour or (``"prior"``) with the mean interior of open mouths measured on video."""

from __future__ import annotations

import pytest
import torch
from emotalk_common import topology as L

from modeling_emotalk import EmoTalkGenerator, EmoTalkGeneratorConfig
from modeling_emotalk.warp import (
    landmark_flow,
    lip_color,
    mouth_coordinates,
    mouth_interior_grid,
    mouth_prior_texture,
    mouth_texture_grid,
    opening_weights,
    pixel_centres,
)

UPPER, LOWER = torch.tensor(L.LIPS_INNER_UPPER), torch.tensor(L.LIPS_INNER_LOWER)
SIZE = 256


def _open(points: torch.Tensor, amount: float) -> torch.Tensor:
    """The face with its lower lip and jaw lowered by ``amount`` (normalized units)."""
    driving = points.clone()
    driving[:, list(L.LOWER_LIP), 1] += amount
    return driving


@pytest.fixture()
def faces(face_crop):
    source = torch.from_numpy(face_crop[1])[None]
    return source, _open(source, 0.12)


def _column_and_rows(driving: torch.Tensor):
    """The pixel column at the mouth's centre and the rows of its inner lips there."""
    x = float(driving[0, [13, 14], 0].mean())
    column = int((x + 1) * SIZE / 2)
    top, bottom = ((float(driving[0, i, 1]) + 1) * SIZE / 2 for i in (13, 14))
    return column, int(top), int(bottom)


def test_a_mouth_no_wider_than_the_source_keeps_the_spline(faces):
    source = faces[0]
    for driving in (source, _open(source, -0.005)):  # the same face, a slightly closing one
        grid = landmark_flow(source, driving, SIZE)
        new, cavity, window = mouth_interior_grid(grid, source, driving, UPPER, LOWER)
        assert torch.equal(new, grid) and cavity.numel() == 0 and window == (slice(0, 0), slice(0, 0))


def test_a_wider_mouth_moves_teeth_with_their_lips_and_opens_a_cavity(faces):
    source, opened = faces
    grid = landmark_flow(source, opened, SIZE)
    new, window_cavity, (rows, cols) = mouth_interior_grid(grid, source, opened, UPPER, LOWER)
    cavity = torch.zeros(1, 1, SIZE, SIZE)
    cavity[..., rows, cols] = window_cavity  # the weights of the window that holds the mouth
    column, top, bottom = _column_and_rows(opened)
    source_top = float(source[0, 13, 1])
    axis = pixel_centres(SIZE)
    # just under the upper inner lip the source is sampled just under the source's upper lip (moved with it)
    row = top + 2
    assert abs(float(new[0, row, column, 1]) - (source_top + float(axis[row] - opened[0, 13, 1]))) < 0.01
    assert cavity[0, 0, (top + bottom) // 2, column] == 1  # the middle of the opening is cavity
    assert cavity[0, 0, top - 3, column] == 0 and cavity[0, 0, bottom + 3, column] == 0  # the lips are not
    lips = ((opened[0, list(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER), 1] + 1) * SIZE / 2).tolist()
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[int(min(lips)) - 1 : int(max(lips)) + 2] = False
    assert torch.equal(new[0][outside], grid[0][outside])  # rows above and below the mouth: the spline


def test_the_rigid_generator_fills_the_cavity_and_equals_the_spline_at_rest(faces):
    source, opened = faces
    kwargs = TINY
    image = torch.rand(1, 3, SIZE, SIZE)
    out = {}
    for mode in ("spline", "rigid"):
        torch.manual_seed(0)
        generator = EmoTalkGenerator(EmoTalkGeneratorConfig(mouth_interior=mode, **kwargs)).eval()
        with torch.no_grad():
            out[mode] = [generator(image, source, driving).frames for driving in (source, opened)]
    torch.testing.assert_close(out["rigid"][0], out["spline"][0], atol=0, rtol=0)  # nothing opens: the same
    column, top, bottom = _column_and_rows(opened)
    middle = out["rigid"][1][0, :, (top + bottom) // 2, column]  # the untrained generator is the pure warp
    torch.testing.assert_close(middle, torch.tensor(EmoTalkGeneratorConfig().cavity_color), atol=1e-4, rtol=0)
    assert (out["spline"][1][0, :, (top + bottom) // 2, column] - middle).abs().max() > 0.05


TINY = dict(block_out_channels=(32, 32, 32), landmark_channels=32, num_fat_blocks=1, flow_size=16, heatmap_size=32)  # fmt: skip


def _prior(texture: torch.Tensor, openings=(0.1, 0.5), lip=(0.5, 0.4, 0.3)) -> dict:
    return {"openings": list(openings), "texture": texture.tolist(), "lip_color": list(lip)}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mouth_interior", "stretch"),
        ("cavity_color", (0.2, 0.1)),
        ("cavity_color", (0, 0, 2)),
        ("mouth_prior", {"openings": [0.1], "texture": [[[[0.5]]] * 3]}),  # no lip_color
        ("mouth_prior", _prior(torch.full((2, 3, 4, 4), 0.5), openings=(0.5, 0.1))),  # not increasing
        ("mouth_prior", _prior(torch.full((1, 3, 4, 4), 0.5))),  # one texture for two openings
        ("mouth_prior", _prior(torch.full((2, 3, 4, 4), 1.5))),  # not a colour
        ("mouth_prior", _prior(torch.full((2, 3, 4, 4), 0.5), lip=(0, 0.4, 0.3))),  # would divide by zero
    ],
)
def test_bad_mouth_interior_settings_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        EmoTalkGeneratorConfig(**{key: value})


def test_a_prior_interior_needs_its_texture():
    with pytest.raises(ValueError, match="mouth_prior"):
        EmoTalkGeneratorConfig(mouth_interior="prior")


def test_mouth_coordinates_invert_the_texture_grid(faces):
    """A texel read from the image (``mouth_texture_grid``) is where the painted texture puts it back."""
    opened = faces[1]
    grid = mouth_texture_grid(opened, UPPER, LOWER, 8, 12)  # (1, 8, 12, 2) image positions of the texel centres
    coordinates, opening = mouth_coordinates(opened, UPPER, LOWER, SIZE)
    sampled = torch.nn.functional.grid_sample(
        coordinates.permute(0, 3, 1, 2), grid, mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1)
    texels = torch.stack(
        torch.meshgrid((torch.arange(8) + 0.5) / 8 * 2 - 1, (torch.arange(12) + 0.5) / 12 * 2 - 1, indexing="ij")[
            ::-1
        ],
        dim=-1,
    )
    # (the corner columns, where the gap is a pixel or two, change faster than bilinear reading can follow)
    torch.testing.assert_close(sampled[0, :, 1:-1], texels[:, 1:-1], atol=0.03, rtol=0)
    x = opened[0, list(L.LIPS_INNER_UPPER), 0]
    width = float(x.max() - x.min())
    assert abs(float(opening[0]) - float(opened[0, 14, 1] - opened[0, 13, 1]) / width) < 0.1  # about the centre gap


def test_opening_weights_interpolate_between_the_nearest_openings():
    openings = torch.tensor([0.1, 0.3, 0.6])
    weights = opening_weights(torch.tensor([0.0, 0.1, 0.2, 0.45, 0.9]), openings)
    expected = torch.tensor([[1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 1.0]])
    torch.testing.assert_close(weights, expected)
    texture = torch.arange(3.0)[:, None, None, None].expand(3, 3, 2, 2)
    torch.testing.assert_close(
        mouth_prior_texture(texture, openings, torch.tensor([0.45]))[0], torch.full((3, 2, 2), 1.5)
    )


def test_lip_color_reads_between_the_lip_contours(faces):
    source = faces[0]
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[:, 0] = 0.8  # red everywhere; green only on the rows of the lips
    rows = ((source[0, list(L.LIPS), 1] + 1) * SIZE / 2).tolist()
    image[:, 1, int(min(rows)) : int(max(rows)) + 1] = 0.6
    outer = torch.tensor(L.LIPS_OUTER_UPPER + L.LIPS_OUTER_LOWER)
    inner = torch.tensor(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER)
    torch.testing.assert_close(lip_color(image, source, outer, inner)[0], torch.tensor([0.8, 0.6, 0.0]))


def test_the_prior_generator_paints_the_texture_of_the_opening_in_the_sources_lip_colour(faces):
    """Untrained (the pure warp), the middle of a mouth opened wider than the source's is the prior texture at the
    driving mouth's opening, scaled by the source's lip brightness over the prior's; at rest nothing changes."""
    source, opened = faces
    texture = torch.zeros(2, 3, 4, 6)
    texture[0], texture[1] = 0.2, torch.tensor([0.3, 0.2, 0.1])[:, None, None]  # closed: grey; open: brown
    prior = _prior(texture, openings=(0.0, 1.0), lip=(0.5, 0.5, 0.5))
    image = torch.rand(1, 3, SIZE, SIZE)
    out = {}
    for mode in ("spline", "prior"):
        torch.manual_seed(0)
        generator = EmoTalkGenerator(EmoTalkGeneratorConfig(mouth_interior=mode, mouth_prior=prior, **TINY)).eval()
        with torch.no_grad():
            out[mode] = [generator(image, source, driving).frames for driving in (source, opened)]
    torch.testing.assert_close(out["prior"][0], out["spline"][0], atol=0, rtol=0)
    _, opening = mouth_coordinates(opened, UPPER, LOWER, SIZE)
    expected = torch.lerp(texture[0, :, 0, 0], texture[1, :, 0, 0], opening[0])
    outer = torch.tensor(L.LIPS_OUTER_UPPER + L.LIPS_OUTER_LOWER)
    inner = torch.tensor(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER)
    expected = expected * lip_color(image, source, outer, inner)[0].mean() / 0.5  # brightness, not hue
    column, top, bottom = _column_and_rows(opened)
    torch.testing.assert_close(out["prior"][1][0, :, (top + bottom) // 2, column], expected, atol=1e-4, rtol=0)


def test_the_prior_is_measured_inside_open_mouths_with_the_generators_geometry(faces):
    """``mouth_interior_prior``: a frame's interior read into the texture, its lips' colour, one texture per opening."""
    import cv2
    import numpy as np

    from recipes.default_model.mouth_interior_prior import fit_prior, interior_textures

    landmarks = faces[1][0].numpy()  # an open mouth
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    to_pixels = lambda index: ((landmarks[list(index), :2] + 1) * SIZE / 2).astype(np.int32)  # noqa: E731
    cv2.fillPoly(image, [to_pixels(L.LIPS_OUTER_UPPER + L.LIPS_OUTER_LOWER[::-1])], (150, 80, 80))  # lips
    cv2.fillPoly(image, [to_pixels(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER[::-1])], (30, 50, 70))  # interior
    textures, opening, lips = interior_textures(np.stack([image, image]), np.stack([landmarks, landmarks]), 8, 12)
    interior = torch.tensor([30, 50, 70]) / 255
    torch.testing.assert_close(textures[0, :, 1:-1, 2:-2].mean((1, 2)), interior, atol=0.02, rtol=0)
    torch.testing.assert_close(lips[0], torch.tensor([150, 80, 80]) / 255, atol=0.03, rtol=0)
    torch.testing.assert_close(opening[0], mouth_coordinates(faces[1], UPPER, LOWER, 64)[1][0])
    # two frames, one near each opening: each texture is (mostly) its own frame's
    textures[1] = 1 - textures[1]
    prior = fit_prior(textures, torch.tensor([0.1, 0.5]), lips, (0.1, 0.5))
    assert prior["openings"] == [0.1, 0.5] and len(prior["texture"]) == 2
    torch.testing.assert_close(torch.tensor(prior["texture"]), textures.clamp(0, 1), atol=1e-3, rtol=0)
    EmoTalkGeneratorConfig(mouth_interior="prior", mouth_prior=prior)  # a valid config


def test_the_cavity_modes_train(faces):
    """The in-place painting and blanking keep the graph: a loss on the frames reaches the same weights as with the
    spline (the fusion scores only with several references), with finite gradients."""
    source, opened = faces
    prior = _prior(torch.full((2, 3, 4, 6), 0.3))
    image = torch.rand(2, 3, SIZE, SIZE)
    reached = {}
    for mode in ("spline", "rigid", "prior"):
        torch.manual_seed(0)
        generator = EmoTalkGenerator(EmoTalkGeneratorConfig(mouth_interior=mode, mouth_prior=prior, **TINY))
        torch.nn.init.normal_(generator.to_output.weight, std=0.01)  # zero-initialized: let gradients flow back
        generator(image, source.expand(2, -1, -1), torch.cat([opened, source])).frames.square().mean().backward()
        grads = {name: p.grad for name, p in generator.named_parameters() if p.grad is not None}
        assert all(torch.isfinite(g).all() for g in grads.values()) and grads["stem.weight"].abs().sum() > 0
        reached[mode] = set(grads)
    assert reached["rigid"] == reached["prior"] == reached["spline"]


@pytest.mark.parametrize("mode", ["spline", "prior"])
def test_half_precision_weights_keep_the_geometry_in_float32(face_crop, mode):
    """With bfloat16 weights (``pipeline(dtype=torch.bfloat16)``) the default-size generator renders what float32
    renders: the spline, grids and mouth are computed in float32 (in bfloat16 they turned the face into noise) and the
    warps sample in float32 (torch's CPU bfloat16 ``grid_sample`` on channels-last features returned NaN: black)."""
    crop, points = face_crop
    source = torch.from_numpy(points)[None]
    opened = _open(source, 0.12)
    prior = _prior(torch.full((2, 3, 4, 6), 0.3))
    torch.manual_seed(0)
    generator = EmoTalkGenerator(EmoTalkGeneratorConfig(mouth_interior=mode, mouth_prior=prior)).eval()
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    driving = torch.cat([opened, source])
    with torch.no_grad():
        full = generator(image, source, driving).frames
        half = generator.to(torch.bfloat16)(image.bfloat16(), source.bfloat16(), driving.bfloat16()).frames
    assert torch.isfinite(half.float()).all()
    assert (half.float() - full).abs().mean() < 0.01
