"""Rigid lashes (``eyelids="rigid_lashes"``): a closing lid carries its lashes, the skin above them stretches."""

from __future__ import annotations

import pytest
import torch
from emotalk_common import topology as L
from test_modeling import tiny_generator_config

from modeling_emotalk import EmoTalkGenerator, EmoTalkGeneratorConfig
from modeling_emotalk.landmarks import apply_blink
from modeling_emotalk.warp import eyelid_grids, landmark_flow, pixel_centres

SIZE = 256
(UPPER, LOWER, BROW), _ = (tuple(torch.tensor(c) for c in eye) for eye in L.EYELID_CONTOURS)


def _close(points: torch.Tensor, amount: float) -> torch.Tensor:
    """The face with both upper lids (and irises) moved ``amount`` of the way to the lower lids, as the pipeline's
    blinks do (:func:`apply_blink`, here on crop coordinates: a frontal face's y is down in both)."""
    return apply_blink(points, torch.full((1, 2), amount / 0.95))


@pytest.fixture()
def source(face_crop):
    return torch.from_numpy(face_crop[1])[None]


def _centre(points: torch.Tensor) -> tuple[int, int, int, float]:
    """The right eye's centre column, its brow row and upper-lid row (pixels), and the lid's y there."""
    lid, brow = points[0, 159], points[0, BROW].mean(0)
    column, brow_row, lid_row = (int((float(v) + 1) * SIZE / 2) for v in (lid[0], brow[1], lid[1]))
    return column, brow_row, lid_row, float(lid[1])


def test_an_eye_no_more_closed_than_the_source_keeps_the_spline(source):
    for driving in (source, _close(source, -0.1)):  # the same face, a wider-open eye
        grid = landmark_flow(source, driving, SIZE)
        grids = [grid, landmark_flow(source, driving, 64)]
        assert eyelid_grids(grids, source, driving, UPPER, LOWER, BROW) is grids


def test_a_closing_lid_carries_its_lashes_and_stretches_the_skin_above(source):
    closed = _close(source, 0.95)
    spline = landmark_flow(source, closed, SIZE)
    (grid,) = eyelid_grids([spline], source, closed, UPPER, LOWER, BROW, lash_band=0.3)
    column, brow_row, lid_row, lid_y = _centre(closed)
    source_lid = float(source[0, 159, 1])
    axis = pixel_centres(SIZE)
    row = lid_row - 1  # just above the closed lid: the source just above its own lid, at the same distance
    assert abs(float(grid[0, row, column, 1]) - (source_lid - float(lid_y - axis[row]))) < 0.006
    opening = float(source[0, 145, 1] - source[0, 159, 1])
    middle = (brow_row + lid_row) // 2  # halfway up to the brow: skin above the lashes' band, not the band
    assert float(grid[0, middle, column, 1]) < source_lid - 0.3 * opening
    assert float(spline[0, middle, column, 1]) > float(grid[0, middle, column, 1]) + 0.01  # the spline: lashes
    rows = ((closed[0, list(UPPER) + list(BROW), 1] + 1) * SIZE / 2).tolist()
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[int(min(rows)) - 1 : int(max(rows)) + 2] = False
    assert torch.equal(grid[0][outside], spline[0][outside])  # above the brow, below the lid: the spline


def test_a_closed_eye_shows_lashes_over_skin_not_the_eyeball(source):
    """The pure warp (untrained generator) of a closed eye, on a source with a 4-pixel dark lash band over its lid
    and a blue eyeball: with rigid lashes the lid is skin with the band at its foot; the spline pulls the eyeball up
    into the closed lid and smears the band."""
    column = _centre(source)[0]
    lid_row, low_row = (int((float(source[0, i, 1]) + 1) * SIZE / 2) for i in (159, 145))
    image = torch.full((1, 3, SIZE, SIZE), 0.8)
    image[..., lid_row - 4 : lid_row, :] = 0.1  # the lashes, the whole width of the crop
    image[:, :, lid_row:low_row] = torch.tensor([0.2, 0.2, 0.9])[:, None, None]  # the eyeball
    closed = _close(source, 0.95)
    _, brow_row, closed_row, _ = _centre(closed)
    lid = {}
    for mode in ("spline", "rigid_lashes"):
        torch.manual_seed(0)
        generator = EmoTalkGenerator(tiny_generator_config(image_size=SIZE, flow_size=64, eyelids=mode)).eval()
        with torch.no_grad():
            lid[mode] = generator(image, source, closed).frames[0, :, brow_row + 1 : closed_row, column]
    rigid, spline = lid["rigid_lashes"], lid["spline"]
    assert not bool((rigid[2] - rigid[0] > 0.3).any())  # no eyeball through the closed lid
    assert 3 <= int((rigid[0] < 0.5).sum()) <= 6  # the band keeps its height...
    assert bool((rigid[0, -3:] < 0.5).any()) and bool((rigid[0, :3] > 0.7).all())  # ...at the lid, skin above
    assert bool((spline[2] - spline[0] > 0.3).any())  # the spline: the eyeball shows in the lid


@pytest.mark.parametrize(
    ("key", "value"), [("eyelids", "closed"), ("lash_band", 0), ("lash_band", 1.5), ("lash_band", True)]
)
def test_bad_eyelid_settings_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        EmoTalkGeneratorConfig(**{key: value})
