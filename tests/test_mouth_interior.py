"""The rigid mouth interior (``mouth_interior="rigid"``): teeth follow their lip, the gap between is a cavity."""

from __future__ import annotations

import pytest
import torch
from emotalk_common import topology as L

from modeling_emotalk import EmoTalkGenerator, EmoTalkGeneratorConfig
from modeling_emotalk.warp import landmark_flow, mouth_interior_grid, pixel_centres

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
        new, cavity = mouth_interior_grid(grid, source, driving, UPPER, LOWER)
        assert torch.equal(new, grid) and cavity.max() == 0


def test_a_wider_mouth_moves_teeth_with_their_lips_and_opens_a_cavity(faces):
    source, opened = faces
    grid = landmark_flow(source, opened, SIZE)
    new, cavity = mouth_interior_grid(grid, source, opened, UPPER, LOWER)
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
    kwargs = dict(block_out_channels=(32, 32, 32), landmark_channels=32, num_fat_blocks=1, flow_size=16, heatmap_size=32)  # fmt: skip
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


@pytest.mark.parametrize(
    ("key", "value"), [("mouth_interior", "stretch"), ("cavity_color", (0.2, 0.1)), ("cavity_color", (0, 0, 2))]
)
def test_bad_mouth_interior_settings_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        EmoTalkGeneratorConfig(**{key: value})
