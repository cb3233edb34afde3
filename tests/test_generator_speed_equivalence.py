"""The optimized stage 2 computes the same function as the straightforward formulation it replaced.

Each rewrite (separable heat maps, the spline evaluated on a lattice with linear resampling matrices, stacked
spatial-norm modulations, references warped once for all frames, channels-last memory) is checked against the
dense reference computation; the bfloat16 convolutions against float32. No timing here: see
``benchmarks/model_speed.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diffusers.models.resnet import ResnetBlockCondNorm2D
from torch.nn import functional as F

from modeling_emotalk import EmoTalkGenerator, EmoTalkGeneratorConfig, EmoTalkModel
from modeling_emotalk import landmarks as L
from modeling_emotalk.errors import EmoTalkInputError
from modeling_emotalk.modeling_generator import _modulate, fat_block, spatial_modulation
from modeling_emotalk.warp import (
    evaluate_tps,
    fit_tps,
    identity_grid,
    landmark_flows,
    rasterize_landmarks,
    resize_grid,
    warp,
)

CHECKPOINT = Path(__file__).resolve().parents[1] / "pipeline" / "checkpoints" / "emotalk-default"


def tiny_config(**overrides) -> EmoTalkGeneratorConfig:
    kwargs = dict(image_size=64, block_out_channels=(32, 32, 32), landmark_channels=16, heatmap_size=32, flow_size=16)
    kwargs.update(overrides)
    return EmoTalkGeneratorConfig(**kwargs)


def tiny_generator(seed: int = 0, **overrides) -> EmoTalkGenerator:
    """A seeded tiny generator whose zero-initialized output layer is randomized (a non-zero residual)."""
    torch.manual_seed(seed)
    model = EmoTalkGenerator(tiny_config(**overrides)).eval()
    with torch.no_grad():
        model.to_output.weight.normal_(0, 0.05)
        for module in model.modules():  # non-trivial norm affines, so that folding γ, β is exercised
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def driving_from(points: torch.Tensor, frames: int) -> torch.Tensor:
    """``frames`` driving sets that open the mouth and raise the brows."""
    opening = torch.linspace(0, 0.08, frames)[:, None]
    driving = points.expand(frames, -1, -1).clone()
    driving[:, list(L.LOWER_LIP), 1] += opening
    driving[:, list(L.RIGHT_EYEBROW + L.LEFT_EYEBROW), 1] -= opening / 3
    return driving


# ------------------------------------------------------------------ the straightforward reference formulation
def dense_heatmaps(landmarks: torch.Tensor, groups: list[torch.Tensor], size: int, sigma: float) -> torch.Tensor:
    grid = identity_grid(size, size, dtype=landmarks.dtype).flatten(0, 1)
    channels = []
    for index in groups:
        points = landmarks[:, index, :2]
        squared = torch.cdist(points, grid.expand(points.shape[0], -1, -1)).square()
        channels.append(torch.exp(-squared.min(dim=1).values / (2 * sigma**2)))
    return torch.stack(channels, dim=1).unflatten(-1, (size, size))


def dense_flow(source: torch.Tensor, driving: torch.Tensor, size: int, flow_size: int, reg) -> torch.Tensor:
    source, driving = source[..., :2], driving[..., :2]
    coefficients = fit_tps(driving, source - driving, reg)
    coarse = identity_grid(flow_size, flow_size, dtype=source.dtype).flatten(0, 1).expand(source.shape[0], -1, -1)
    displacement = evaluate_tps(coefficients, driving, coarse).unflatten(1, (flow_size, flow_size)).permute(0, 3, 1, 2)
    if flow_size != size:
        displacement = F.interpolate(displacement, size=(size, size), mode="bilinear", align_corners=False)
    return identity_grid(size, size, dtype=source.dtype) + displacement.permute(0, 2, 3, 1)


def reference_forward(model: EmoTalkGenerator, pixels, source_landmarks, driving) -> torch.Tensor:
    """The generator's forward as first written: diffusers blocks, dense maps, references repeated per frame."""
    config = model.config
    source = model.encode_source(pixels, source_landmarks)
    batch, refs = driving.shape[0], source.pixel_values.shape[1]

    def per_frame(x: torch.Tensor) -> torch.Tensor:
        return x.expand(batch, *x.shape[1:]).flatten(0, 1)

    control = model.control_index
    # the control points, border points and ridges are settings of the spline, not part of the speed work
    source_control, driving_control, ridge = model.spline_controls(
        per_frame(source.landmarks[..., control, :2]), driving[:, control, :2].repeat_interleave(refs, dim=0)
    )
    grid = dense_flow(source_control, driving_control, config.image_size, config.flow_size, ridge)
    heatmaps = dense_heatmaps(driving, model.landmark_groups, config.heatmap_size, config.heatmap_sigma)
    condition64 = model.landmark_in(heatmaps)
    condition32 = model.landmark_down(condition64)
    warped_features, weights = [], None
    for level, feature in enumerate(source.features):
        warped = warp(per_frame(feature), resize_grid(grid, feature.shape[-1])).unflatten(0, (batch, refs))
        fused, level_weights = model.fuse[level](warped, condition64)
        warped_features.append(fused)
        weights = level_weights if weights is None else weights
    image = warp(per_frame(source.pixel_values), grid, "reflection").unflatten(0, (batch, refs))
    if refs > 1:
        weights = F.interpolate(weights, size=image.shape[-2:], mode="bilinear", align_corners=False)
        image = (weights.unsqueeze(2) * image).sum(1)
    else:
        image = image[:, 0]
    h = warped_features[1]
    for block in model.bottleneck:
        h = block(h, condition32)
    h = F.interpolate(model.up1(h), scale_factor=2.0, mode="nearest") + warped_features[0]
    h = model.decoder1(h, condition64)
    out = F.pixel_shuffle(model.to_output(F.silu(model.out_norm(h))), 4)
    return (image + torch.sigmoid(out[:, 3:]) * out[:, :3]).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# ------------------------------------------------------------------ the pieces
def test_separable_heatmaps_equal_the_dense_formula(face_crop):
    points = driving_from(torch.from_numpy(face_crop[1])[None], 4)
    points[1:, :, :2] += 0.02 * torch.randn(3, 478, 2, generator=torch.Generator().manual_seed(0))
    groups = [torch.tensor(index) for index in L.LANDMARK_GROUPS.values()]
    for size, sigma in [(64, 0.025), (32, 0.05), (17, 0.1)]:
        maps = rasterize_landmarks(points, groups, size, sigma)
        assert maps.shape == (4, len(groups), size, size)
        # against the dense formula in float64: the float32 cdist (|a|² + |b|² - 2ab) is itself off by ~3e-5
        dense = dense_heatmaps(points.double(), groups, size, sigma).float()
        torch.testing.assert_close(maps, dense, atol=1e-5, rtol=0)
    assert maps.is_contiguous(memory_format=torch.channels_last)  # what the landmark encoder's convolution wants


@pytest.mark.parametrize(
    ("size", "flow_size", "sizes"), [(64, 16, (64, 16, 8)), (256, 64, (256, 64, 32)), (32, 32, (32,))]
)
def test_lattice_flows_equal_the_pointwise_spline_resized(face_crop, size, flow_size, sizes):
    source = torch.from_numpy(face_crop[1])[None].expand(3, -1, -1)
    driving = driving_from(source[:1], 3)
    index = torch.tensor(sorted({i for group in L.LANDMARK_GROUPS.values() for i in group}))
    grids = landmark_flows(source[:, index], driving[:, index], size, sizes, flow_size, 1e-3)
    full = dense_flow(source[:, index].double(), driving[:, index].double(), size, flow_size, 1e-3).float()
    for side, grid in zip(sizes, grids, strict=True):
        assert grid.shape == (3, side, side, 2)
        torch.testing.assert_close(grid, resize_grid(full, side), atol=1e-5, rtol=0)
    same = landmark_flows(source[:, index], source[:, index], size, sizes, flow_size, 1e-3)
    for side, grid in zip(sizes, same, strict=True):  # equal landmarks: the identity warp
        torch.testing.assert_close(grid[0], identity_grid(side, side), atol=1e-5, rtol=0)


def test_lattice_kernel_at_inference_equals_the_autograd_path(face_crop):
    """Without gradients the spline kernel is (r² + ε) log(r² + ε) in place; with them, xlogy(r², r²): the same
    grids in float64 (the formulas agree to ~1e-11), including where a lattice point coincides with a control
    point (r = 0); in float32 the inference path is no further from float64 than the autograd path."""
    source = torch.from_numpy(face_crop[1])[None].expand(2, -1, -1)[..., :2].double()
    driving = driving_from(source[:1].float(), 2)[..., :2].double()
    driving[0, 0] = torch.tensor([1 / 64 - 1, 1 / 64 - 1])  # exactly on the first pixel centre of a 64² lattice
    args = (256, (256, 64, 32), 64, 1e-3)
    expected = landmark_flows(source, driving, *args)
    autograd32 = landmark_flows(source.float(), driving.float(), *args)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            got = landmark_flows(source, driving, *args)
            got32 = landmark_flows(source.float(), driving.float(), *args)
        for grid, grid32, float32, reference in zip(got, got32, autograd32, expected, strict=True):
            assert torch.isfinite(grid).all()
            torch.testing.assert_close(grid, reference, atol=1e-9, rtol=0)
            error, autograd_error = ((g.double() - reference).abs().max() for g in (grid32, float32))
            assert error <= 2 * autograd_error + 1e-6


def test_fat_block_with_stacked_modulations_equals_the_diffusers_block():
    torch.manual_seed(0)
    blocks = [
        ResnetBlockCondNorm2D(in_channels=64, out_channels=64, temb_channels=16, time_embedding_norm="spatial").eval()
        for _ in range(2)
    ]
    with torch.no_grad():
        for block in blocks:
            for norm in (block.norm1.norm_layer, block.norm2.norm_layer):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.3, 0.3)
    hidden, condition = torch.randn(2, 64, 8, 8), torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        modulation = spatial_modulation(condition, [n for b in blocks for n in (b.norm1, b.norm2)])
        expected = blocks[1](blocks[0](hidden, condition), condition)
        got = fat_block(blocks[1], fat_block(blocks[0], hidden, modulation[:2]), modulation[2:])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_bfloat16_modulation_rounds_once_and_keeps_the_layout():
    """At inference the modulation feeding a bfloat16 convolution runs on bfloat16 operands (the modulations
    already are): the same values as the float32 formula to bfloat16 rounding, in the input's memory layout."""
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(8, 32, affine=False)
    x = (torch.randn(2, 32, 16, 16) * 3 + 1).contiguous(memory_format=torch.channels_last)
    scale, shift = (torch.randn(2, 32, 16, 16).to(torch.bfloat16) for _ in range(2))
    expected = F.silu(F.group_norm(x, 8) * scale.float() + shift.float())
    with torch.no_grad():
        got = _modulate(x, norm, scale, shift, torch.bfloat16)
        same = _modulate(x, norm, scale.float(), shift.float(), torch.float32)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=2e-2)  # bfloat16 keeps 8 bits
    torch.testing.assert_close(same, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ the whole generator
@pytest.mark.parametrize("layout", ["one shared reference", "two references per frame"])
def test_generator_equals_the_reference_formulation(face_crop, layout):
    crop, points = face_crop
    model = tiny_generator().set_conv_precision("float32")
    image = F.interpolate(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255, size=64, mode="area")
    landmarks = torch.from_numpy(points)[None]
    driving = driving_from(landmarks, 3)
    if layout == "one shared reference":
        pixels, source_landmarks = image, landmarks
    else:
        pixels = torch.stack([image[0], image[0].flip(-1)])[None].expand(3, -1, -1, -1, -1)
        source_landmarks = torch.stack([landmarks[0], landmarks[0] + 0.01])[None].expand(3, -1, -1, -1)
    with torch.no_grad():
        out = model(pixels, source_landmarks, driving)
        # in float64 the reformulations agree to rounding; float32's own cdist error (~3e-5) would blur the check
        model.double()
        frames64 = model(pixels.double(), source_landmarks.double(), driving.double()).frames
        expected = reference_forward(model, pixels.double(), source_landmarks.double(), driving.double())
    torch.testing.assert_close(frames64, expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(out.frames, expected.float(), atol=5e-5, rtol=0)
    assert out.frames.is_contiguous() and out.mask.is_contiguous() and out.warped.is_contiguous()


def test_output_does_not_depend_on_the_inputs_memory_layout(face_crop):
    crop, points = face_crop
    model = tiny_generator().set_conv_precision("float32")
    image = F.interpolate(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255, size=64, mode="area")
    landmarks = torch.from_numpy(points)[None]
    driving = driving_from(landmarks, 2)
    layouts = {
        "contiguous": (image.contiguous(), landmarks.contiguous(), driving.contiguous()),
        "channels-last": (image.contiguous(memory_format=torch.channels_last), landmarks, driving),
        "strided views": (
            image.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),  # an NHWC buffer seen as NCHW
            torch.cat([landmarks, landmarks], dim=-1)[..., :3],
            driving.transpose(1, 2).contiguous().transpose(1, 2),
        ),
    }
    with torch.no_grad():
        frames = {name: model(*inputs).frames for name, inputs in layouts.items()}
        source = model.encode_source(image, landmarks)
        from_source = model(source=source, driving_landmarks=driving).frames
    for name, value in frames.items():
        torch.testing.assert_close(value, frames["contiguous"], atol=1e-5, rtol=0, msg=name)
    torch.testing.assert_close(from_source, frames["contiguous"], atol=1e-5, rtol=0)


def test_bfloat16_convolutions_stay_close_and_training_keeps_float32(face_crop):
    crop, points = face_crop
    model = tiny_generator()
    image = F.interpolate(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255, size=64, mode="area")
    landmarks = torch.from_numpy(points)[None]
    driving = driving_from(landmarks, 3)
    with torch.no_grad():
        full = model.set_conv_precision("float32")(image, landmarks, driving).frames
        low = model.set_conv_precision("bfloat16")(image, landmarks, driving)
    assert low.frames.dtype == low.mask.dtype == torch.float32
    assert psnr(low.frames, full) >= 45
    # "auto" never rounds when gradients are recorded: training sees exactly the float32 function
    model.set_conv_precision("auto").train()
    frames = model(image, landmarks, driving).frames
    torch.testing.assert_close(frames, full, atol=1e-5, rtol=0)
    frames.mean().backward()
    for name in ("to_output.weight", "landmark_in.2.weight", "bottleneck.0.norm1.conv_y.weight", "stem.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    with pytest.raises(EmoTalkInputError, match="'float16'"):
        model.set_conv_precision("float16")


def test_default_checkpoint_loads_strictly():
    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("the embedded default checkpoint is not present")
    model, info = EmoTalkModel.from_pretrained(CHECKPOINT, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    fresh = EmoTalkGenerator(model.generator.config)
    fresh.load_state_dict(model.generator.state_dict(), strict=True)


def test_motion_from_outside_the_crop_is_mirrored_not_streaked():
    """Driving landmarks 12 px below the source pull the top rows in from above the crop: with the edge row
    repeated (the old border padding) every column there is constant — vertical streaks; mirrored, they keep
    the image's texture."""
    torch.manual_seed(0)
    config = EmoTalkGeneratorConfig(
        image_size=64, block_out_channels=(32, 32, 32), landmark_channels=32, num_fat_blocks=1, flow_size=16,
        heatmap_size=32, tps_border_points=0,  # no fixed border: the whole crop shifts
    )  # fmt: skip
    generator = EmoTalkGenerator(config).eval()
    image = torch.rand(1, 3, 64, 64)
    source = torch.rand(1, L.NUM_LANDMARKS, 3) * 1.2 - 0.6
    driving = source.clone()
    driving[..., 1] += 24 / 64  # 12 px down in a 64-px crop (normalized units: 2 per crop)
    with torch.no_grad():
        warped = generator(pixel_values=image, source_landmarks=source, driving_landmarks=driving).warped
    top = warped[0, :, :8]  # (3, 8, 64): rows sampled from above the crop
    assert top.std(dim=1).mean() > 0.05, "rows pulled in from outside the crop repeat the edge row"
    torch.testing.assert_close(warped[0, :, 20:], image[0, :, 8:52], atol=1e-4, rtol=0)  # inside: the shifted photo


def test_border_points_keep_the_crop_edge_in_place_under_head_motion(face_crop):
    """The default's fixed border points: a 10-px head shift (in a 256-px crop) moves the face but keeps the crop's
    outermost rows and columns near where they are, so the warp samples nothing from outside the crop (no mirrored
    hair or suit at the edges); without them the top rows come from above the crop."""
    kwargs = dict(block_out_channels=(32, 32, 32), landmark_channels=32, num_fat_blocks=1, flow_size=16, heatmap_size=32)  # fmt: skip
    source = torch.from_numpy(face_crop[1])[None]
    driving = source.clone()
    driving[..., 1] += 20 / 256  # 10 px down
    grids = {}
    for points in (5, 0):
        generator = EmoTalkGenerator(EmoTalkGeneratorConfig(tps_border_points=points, **kwargs)).eval()
        with torch.no_grad():
            grids[points] = generator(torch.rand(1, 3, 256, 256), source, driving).grid[0, 0]  # (256, 256, 2)
    assert EmoTalkGeneratorConfig().tps_border_points == 5
    identity = identity_grid(256, 256)
    rim = lambda g: torch.cat([g[0], g[-1], g[:, 0], g[:, -1]])  # noqa: E731
    assert (rim(grids[5]) - rim(identity)).abs().max() * 128 < 3  # within 3 px of the identity along the border
    assert grids[5][..., 1].min() >= -1.0 - 3 / 256  # nothing sampled more than 1.5 px above the crop
    assert grids[0][:8, :, 1].max() < -1.0  # without the border points the top rows come from above the crop
    nose = [int((face_crop[1][4, 1] + 1) * 128), int((face_crop[1][4, 0] + 1) * 128)]  # the nose tip moves as before
    torch.testing.assert_close(grids[5][nose[0], nose[1]], grids[0][nose[0], nose[1]], atol=2 / 128, rtol=0)


@pytest.mark.parametrize("points", [1, -1, 2.5])
def test_bad_border_point_counts_are_refused(points):
    with pytest.raises(ValueError, match="tps_border_points must be 0 or an integer >= 2"):
        EmoTalkGeneratorConfig(tps_border_points=points)
