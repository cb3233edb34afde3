"""Stage 2 — the feature-adaptive visual translation network (FAT generator).

Reference image(s) + driving landmarks → frames. Landmark correspondences (source → driving) give a
dense backward flow (thin-plate spline, :mod:`.warp`) that warps multi-scale image features; a landmark
encoder turns rasterized driving landmarks into feature maps that modulate the warped features through
feature-adaptive transformation (FAT) blocks — spatially-adaptive normalization, i.e. diffusers'
``ResnetBlockCondNorm2D(time_embedding_norm="spatial")``. Several references are fused with per-pixel
adaptive weights (ET-GAN's multi-image identity encoder). The decoder predicts an RGB residual and a
blend mask over the warped source; both output layers start at zero, so an untrained generator
returns the warped source: a sane face, never noise.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, ResnetBlockCondNorm2D
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_emotalk import EmoTalkGeneratorConfig
from .errors import EmoTalkInputError
from .landmarks import (
    EYELID_CONTOURS,
    LANDMARK_GROUPS,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    NUM_LANDMARKS,
)
from .warp import (
    eyelid_grids,
    landmark_flows,
    lip_color,
    mouth_coordinates,
    mouth_interior_grid,
    mouth_prior_texture,
    rasterize_landmarks,
    warp,
)

CHANNELS_LAST = torch.channels_last
CONV_PRECISIONS = ("auto", "float32", "bfloat16")
MALLOC_MMAP_THRESHOLD = 64 << 20
"""Allocations below this size come from the heap, not from fresh ``mmap`` pages (see :func:`reuse_freed_memory`)."""
MALLOC_TRIM_THRESHOLD = 256 << 20
"""Free heap memory kept by the process rather than returned to the system (see :func:`reuse_freed_memory`)."""


@functools.cache
def reuse_freed_memory() -> bool:
    """Let glibc reuse freed memory for the next frame batch instead of returning it to the system; returns whether
    the setting was applied (once per process).

    A batch of 8 frames allocates ~90 MB of temporaries (feature maps, the spline's kernel); by default glibc hands
    the large ones back to the system when they are freed, so every batch page-faults them in again: ~23,000
    faults and ~17 % of a batch's CPU time. This raises glibc's ``mmap`` and trim thresholds (``mallopt``,
    process-wide): the memory stays in the heap and the process's resident size stays at its high-water mark.
    No-op off Linux/glibc or with ``EMOTALK_REUSE_FREED_MEMORY=0``.
    """
    if not sys.platform.startswith("linux") or os.environ.get("EMOTALK_REUSE_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD)
    )


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (AVX512-BF16 or AMX)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def low_precision_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` in bfloat16 (input and weights rounded, float32 accumulation inside oneDNN); returns bfloat16.

    Consumers promote: the residual stream, the warps and the composite stay float32."""
    bias = None if conv.bias is None else conv.bias.to(torch.bfloat16)
    return F.conv2d(x.to(torch.bfloat16), conv.weight.to(torch.bfloat16), bias, conv.stride, conv.padding)


@dataclass
class EmoTalkGeneratorOutput(ModelOutput):
    """Stage-2 output. B = frames, S = image size.

    Args:
        frames: ``(B, 3, S, S)`` rendered frames in [0, 1].
        warped: ``(B, 3, S, S)`` the (reference-fused) warped source image.
        mask: ``(B, 1, S, S)`` blend mask of the residual.
        grid: ``(B, K, S, S, 2)`` backward sampling grid per reference.
    """

    frames: torch.Tensor | None = None
    warped: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    grid: torch.Tensor | None = None


@dataclass
class SourceFeatures(ModelOutput):
    """Encoded references, computed once per video and reused for every frame batch.

    Args:
        pixel_values: ``(B, K, 3, S, S)``; features: ``(B, K, C, h, w)`` at 1/4 and 1/8 of the image size;
        landmarks: ``(B, K, 478, 3)`` normalized crop coordinates.
    """

    pixel_values: torch.Tensor | None = None
    features: tuple[torch.Tensor, ...] | None = None
    landmarks: torch.Tensor | None = None


def _silu(x: torch.Tensor) -> torch.Tensor:
    # in place at inference (the input is a temporary); out of place under autograd
    return F.silu(x, inplace=not torch.is_grad_enabled())


def spatial_modulation(
    condition: torch.Tensor, norms: list[nn.Module], size: tuple[int, int] | torch.Size | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(scale, shift)`` for each diffusers ``SpatialNorm`` in ``norms``, all fed by ``condition`` ``(B, C, h, w)``
    (resized to ``size`` with nearest neighbours first, as ``SpatialNorm`` does, where it differs).

    ``SpatialNorm`` computes ``(GroupNorm(f)·γ + β)·conv_y(z) + conv_b(z)``. With γ and β folded into the two 1×1
    convolutions this is ``normalized(f)·scale + shift``; the folded weights of every norm are stacked into one matrix,
    so all the modulations of a resolution come from a single matrix product over the channels-last condition.
    """
    if size is not None and condition.shape[-2:] != tuple(size):
        condition = F.interpolate(condition, size=tuple(size), mode="nearest")
    weights, biases, sizes = [], [], []
    for norm in norms:
        gamma, beta = norm.norm_layer.weight, norm.norm_layer.bias
        weight_y, bias_y = norm.conv_y.weight.flatten(1), norm.conv_y.bias
        weights += [gamma[:, None] * weight_y, beta[:, None] * weight_y + norm.conv_b.weight.flatten(1)]
        biases += [gamma * bias_y, beta * bias_y + norm.conv_b.bias]
        sizes += [gamma.numel()] * 2
    weight, bias = torch.cat(weights).to(condition.dtype), torch.cat(biases).to(condition.dtype)
    out = F.linear(condition.permute(0, 2, 3, 1), weight, bias).permute(0, 3, 1, 2)
    parts = out.split(sizes, dim=1)
    return list(zip(parts[0::2], parts[1::2], strict=True))


Conv = Callable[[nn.Conv2d, torch.Tensor], torch.Tensor]


def _full_precision_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return conv(x)


def pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 ``conv(x)`` as one matrix product over the channels-last pixels (channels-last result)."""
    return F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias).permute(0, 3, 1, 2)


def _modulate(
    x: torch.Tensor, norm: nn.GroupNorm, scale: torch.Tensor, shift: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """``silu(GroupNorm(x) · scale + shift)`` written in ``dtype`` (the next convolution's).

    In bfloat16 the normalized features are rounded once and modulated in place, all operands in bfloat16 (the
    modulations already are): a mixed-dtype ``addcmul`` with a bfloat16 result casts every operand through a
    float32 temporary and runs ~3× slower."""
    normalized = F.group_norm(x, norm.num_groups, eps=norm.eps)
    if dtype == normalized.dtype or torch.is_grad_enabled():
        return _silu(torch.addcmul(shift, normalized, scale))
    low = normalized.to(dtype)
    return F.silu(torch.addcmul(shift.to(dtype), low, scale.to(dtype), out=low), inplace=True)


def fat_block(
    block: ResnetBlockCondNorm2D,
    hidden: torch.Tensor,
    modulation: list[tuple[torch.Tensor, torch.Tensor]],
    conv: Conv = _full_precision_conv,
) -> torch.Tensor:
    """``block(hidden, condition)`` (a spatial-norm ``ResnetBlockCondNorm2D``) with the condition's modulations
    precomputed by :func:`spatial_modulation`: the same math without re-running the 1×1 convolutions per norm.
    ``conv(module, x)`` runs the two 3×3 convolutions (e.g. :func:`low_precision_conv`)."""
    (scale1, shift1), (scale2, shift2) = modulation
    dtype = torch.bfloat16 if conv is low_precision_conv else hidden.dtype
    x = conv(block.conv1, _modulate(hidden, block.norm1.norm_layer, scale1, shift1, dtype))
    x = conv(block.conv2, block.dropout(_modulate(x, block.norm2.norm_layer, scale2, shift2, dtype)))
    if block.conv_shortcut is not None:
        hidden = block.conv_shortcut(hidden)
    out = hidden + x
    return out if block.output_scale_factor == 1 else out / block.output_scale_factor


def warp_references(
    images: torch.Tensor, grid: torch.Tensor, batch: int, padding_mode: str = "border"
) -> torch.Tensor:
    """Warp references ``(B_s, K, C, H, W)`` with per-frame grids ``(B * K, h, w, 2)`` → ``(B, K, C, h, w)``.

    Shared references (``B_s = 1``) are sampled once with the B frames' grids stacked along the grid's height:
    the same values as repeating the references per frame, without copying them B times.
    """
    source_batch, refs = images.shape[:2]
    if source_batch == batch:
        return warp(images.flatten(0, 1), grid, padding_mode).unflatten(0, (batch, refs))
    height = grid.shape[1]
    folded = grid.unflatten(0, (batch, refs)).transpose(0, 1).flatten(1, 2)  # (K, B * h, w, 2)
    return warp(images[0], folded, padding_mode).unflatten(2, (batch, height)).permute(2, 0, 1, 3, 4)


class EmoTalkGeneratorPreTrainedModel(PreTrainedModel):
    config_class = EmoTalkGeneratorConfig
    base_model_prefix = "generator"
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):
            if getattr(module, "_zero_init", False):
                init.zeros_(module.weight)
            else:  # conv generators want fan-in scaled init, not N(0, 0.02)
                init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                init.zeros_(module.bias)


class ReferenceFusion(nn.Module):
    """Per-pixel softmax weights over K warped references, conditioned on the landmark features."""

    def __init__(self, channels: int, condition_channels: int):
        super().__init__()
        self.score = nn.Conv2d(channels + condition_channels, 1, kernel_size=3, padding=1)

    def forward(self, warped: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``warped`` ``(B, K, C, h, w)`` → fused ``(B, C, h, w)`` and weights ``(B, K, h, w)``."""
        batch, refs = warped.shape[:2]
        if refs == 1:
            return warped[:, 0], warped.new_ones(batch, 1, *warped.shape[-2:])
        if condition.shape[-2:] != warped.shape[-2:]:
            condition = F.interpolate(condition, size=warped.shape[-2:], mode="nearest")
        condition = condition.to(warped.dtype).unsqueeze(1).expand(-1, refs, -1, -1, -1)
        scores = self.score(torch.cat([warped, condition], dim=2).flatten(0, 1)).unflatten(0, (batch, refs))
        weights = scores.softmax(dim=1)
        return (weights * warped).sum(dim=1), weights[:, :, 0]


CONTACT_POINTS = sorted({*LANDMARK_GROUPS["eyes"], *LANDMARK_GROUPS["lips_outer"], *LANDMARK_GROUPS["lips_inner"]})
"""The eyelid and lip contour points: where contours meet (blinks, closures), the spline must follow them exactly."""


class EmoTalkGenerator(EmoTalkGeneratorPreTrainedModel):
    """The FAT generator: references + driving landmarks → frames."""

    # see set_conv_precision; a runtime setting, not part of the config or the checkpoint
    conv_precision: str = "auto"

    def __init__(self, config: EmoTalkGeneratorConfig):
        super().__init__(config)
        c0, c1, c2 = config.block_out_channels
        lc = config.landmark_channels
        groups = config.norm_num_groups
        self.group_names = list(LANDMARK_GROUPS)
        for i, name in enumerate(self.group_names):
            index = torch.tensor(LANDMARK_GROUPS[name], dtype=torch.long)
            self.register_buffer(f"group_index_{i}", index, persistent=True)
        # The spline is anchored on the contour points (oval, brows, eyes, irises, nose, lips): 144 of the 478
        # points carry the motion, and a 144-point solve is ~30x cheaper than a 478-point one.
        control = sorted({i for index in LANDMARK_GROUPS.values() for i in index})
        self.register_buffer("control_index", torch.tensor(control, dtype=torch.long), persistent=True)
        self._mouth_prior_tensors: tuple | None = None  # config.mouth_prior as tensors (see mouth_prior_fill)

        # Image encoder (run once per reference): 1/2, 1/4, 1/8 resolution features.
        self.stem = nn.Conv2d(3, c0, kernel_size=3, stride=2, padding=1)
        self.encoder0 = ResnetBlock2D(in_channels=c0, temb_channels=None, groups=groups)
        self.down1 = Downsample2D(c0, use_conv=True, out_channels=c1, padding=1, name="Conv2d_0")
        self.encoder1 = ResnetBlock2D(in_channels=c1, temb_channels=None, groups=groups)
        self.down2 = Downsample2D(c1, use_conv=True, out_channels=c2, padding=1, name="Conv2d_0")
        self.encoder2 = ResnetBlock2D(in_channels=c2, temb_channels=None, groups=groups)

        # Landmark encoder on rasterized driving landmarks.
        num_groups = len(self.group_names)
        self.landmark_in = nn.Sequential(
            nn.Conv2d(num_groups, lc, kernel_size=3, padding=1), nn.SiLU(), nn.Conv2d(lc, lc, kernel_size=3, padding=1)
        )
        self.landmark_down = nn.Sequential(nn.SiLU(), nn.Conv2d(lc, lc, kernel_size=3, stride=2, padding=1))

        self.fuse = nn.ModuleList([ReferenceFusion(c, lc) for c in (c1, c2)])

        # FAT blocks: spatially-adaptive modulation of warped image features by landmark features.
        def fat(channels: int) -> ResnetBlockCondNorm2D:
            return ResnetBlockCondNorm2D(
                in_channels=channels, out_channels=channels, temb_channels=lc, time_embedding_norm="spatial"
            )

        # Decoder at 1/8 and 1/4 resolution; the output is pixel-shuffled ×4 to full size, which keeps a
        # 256² frame within the CPU budget (no convolution runs above 64² per frame).
        self.bottleneck = nn.ModuleList([fat(c2) for _ in range(config.num_fat_blocks)])
        self.up1 = nn.Conv2d(c2, c1, kernel_size=1)
        self.decoder1 = fat(c1)
        self.out_norm = nn.GroupNorm(groups, c1)
        # RGB residual (3) + blend-mask logit (1) per full-resolution pixel; zero-initialized.
        self.to_output = nn.Conv2d(c1, 4 * 16, kernel_size=3, padding=1)
        self.to_output._zero_init = True
        self.post_init()

    def border_points(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(M, 2)`` the spline's fixed points on the crop border: ``tps_border_points`` per side, corners shared."""
        count = self.config.tps_border_points
        if count == 0:
            return torch.zeros(0, 2, dtype=dtype)
        edge = torch.linspace(-1, 1, count, dtype=dtype)
        inner, low, high = edge[1:-1], torch.full((count,), -1.0, dtype=dtype), torch.full((count,), 1.0, dtype=dtype)
        return torch.cat(
            [
                torch.stack([edge, low], 1),  # top row
                torch.stack([edge, high], 1),  # bottom row
                torch.stack([low[1:-1], inner], 1),  # left column without the corners
                torch.stack([high[1:-1], inner], 1),  # right column
            ]
        )

    def spline_ridge(self) -> torch.Tensor:
        """``(N,)`` the spline's ridge per landmark control point: ``tps_contact_regularization`` at the eyelids and lips
        (the contours that close), ``tps_regularization`` elsewhere."""
        config = self.config
        contact = torch.isin(self.control_index.cpu(), torch.tensor(CONTACT_POINTS))
        ridge = torch.full(contact.shape, config.tps_regularization, dtype=torch.float64)
        return ridge.masked_fill(contact, config.tps_contact_regularization)

    def spline_controls(
        self, source: torch.Tensor, driving: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The spline's control points: ``(P, N, 2)`` source and driving landmark points (the control landmarks) with
        the fixed border points appended to both, ``(P, N + M, 2)`` each, and the ``(N + M,)`` ridge (the border's is
        ``tps_regularization``)."""
        border = self.border_points(source.dtype).to(source.device).expand(len(source), -1, -1)
        ridge = torch.cat(
            [self.spline_ridge(), torch.full((border.shape[1],), self.config.tps_regularization).double()]
        )
        return torch.cat([source, border], 1), torch.cat([driving, border], 1), ridge

    def set_conv_precision(self, precision: str = "auto") -> EmoTalkGenerator:
        """Set the precision of the per-frame 3×3 convolutions (the bulk of a frame's cost); returns ``self``.

        ``"auto"`` (default): bfloat16 at inference (no gradient recorded) on CPUs where oneDNN runs it natively
        (AVX512-BF16, AMX) — about 2× faster convolutions, frames within ~80 dB PSNR of float32 — and float32
        otherwise, always when training. ``"float32"``: always float32. ``"bfloat16"``: always bfloat16.
        """
        if precision not in CONV_PRECISIONS:
            raise EmoTalkInputError(f"conv precision must be one of {CONV_PRECISIONS}, got {precision!r}")
        self.conv_precision = precision
        return self

    def _frame_conv(self, x: torch.Tensor) -> Conv:
        """How to run the per-frame 3×3 convolutions on ``x`` under :attr:`conv_precision`."""
        if self.conv_precision == "bfloat16":
            return low_precision_conv
        auto = (
            self.conv_precision == "auto"
            and not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and cpu_has_native_bfloat16()
        )
        return low_precision_conv if auto else _full_precision_conv

    @property
    def landmark_groups(self) -> list[torch.Tensor]:
        return [getattr(self, f"group_index_{i}") for i in range(len(self.group_names))]

    def encode_source(self, pixel_values: torch.Tensor, landmarks: torch.Tensor) -> SourceFeatures:
        """Encode references once: ``pixel_values`` ``(B, [K,] 3, S, S)`` in [0, 1], ``landmarks`` ``(B, [K,] 478, 3)``."""
        if pixel_values.ndim == 4:
            pixel_values = pixel_values.unsqueeze(1)
        if landmarks.ndim == 3:
            landmarks = landmarks.unsqueeze(1)
        size = self.config.image_size
        if pixel_values.shape[2:] != (3, size, size):
            raise EmoTalkInputError(f"pixel_values must be (B, K, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        if landmarks.shape[:2] != pixel_values.shape[:2] or landmarks.shape[-2] != NUM_LANDMARKS:
            raise EmoTalkInputError(
                f"source landmarks must be (B, K, {NUM_LANDMARKS}, 2|3) matching pixel_values, got {tuple(landmarks.shape)}"
            )
        batch, refs = pixel_values.shape[:2]
        # channels-last throughout: oneDNN's convolutions on these small channel counts run ~2× faster in NHWC
        h = self.stem((pixel_values.flatten(0, 1) * 2 - 1).contiguous(memory_format=CHANNELS_LAST))
        f0 = self.encoder0(h, None)
        f1 = self.encoder1(self.down1(f0), None)
        f2 = self.encoder2(self.down2(f1), None)
        # stored channels-last: every frame's warps (grid_sample) read them ~25 % faster than NCHW, with the same
        # values, and the fused features feed the channels-last FAT blocks (~4.5 % of a frame at batch 8)
        features = tuple(f.contiguous(memory_format=CHANNELS_LAST).unflatten(0, (batch, refs)) for f in (f1, f2))
        return SourceFeatures(pixel_values=pixel_values, features=features, landmarks=landmarks)

    def rigid_mouth(
        self, sources: torch.Tensor, drivings: torch.Tensor, grids: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, tuple[slice, slice]]]]:
        """``mouth_interior="rigid"`` or ``"prior"``: :func:`.warp.mouth_interior_grid` on each grid.

        ``sources`` and ``drivings`` ``(B * K, N, 3)`` (one row per reference of each frame), grids
        ``(B * K, s, s, 2)`` (the image's first); returns the grids and, per grid, the cavity weights
        ``(B * K, 1, h, w)`` of the window of rows and columns that holds the mouths, with that window. In the cavity
        every row would sample the same source row (the edge of a lip's band), which repeats its features down the
        opening as vertical stripes; the caller blanks the warped features there and paints the image with
        ``cavity_color`` (or the :meth:`mouth_prior_fill`).
        """
        upper, lower = (torch.tensor(lip, device=drivings.device) for lip in (LIPS_INNER_UPPER, LIPS_INNER_LOWER))
        new, cavities = [], []
        for g in grids:
            grid, cavity, window = mouth_interior_grid(g, sources, drivings, upper, lower)
            new.append(grid)
            cavities.append((cavity, window))
        return new, cavities

    def rigid_lashes(
        self, sources: torch.Tensor, drivings: torch.Tensor, grids: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """``eyelids="rigid_lashes"``: :func:`.warp.eyelid_grids` for both eyes on each grid ``(B * K, s, s, 2)``
        (``sources`` and ``drivings`` ``(B * K, N, 3)``, one row per reference of each frame)."""
        for contours in EYELID_CONTOURS:
            upper, lower, brow = (torch.tensor(index, device=drivings.device) for index in contours)
            grids = eyelid_grids(grids, sources, drivings, upper, lower, brow, self.config.lash_band)
        return grids

    def mouth_prior_fill(
        self, source_images: torch.Tensor, sources: torch.Tensor, drivings: torch.Tensor, window: tuple[slice, slice]
    ) -> torch.Tensor:
        """``mouth_interior="prior"``: the learned mean mouth interior laid into each driving mouth
        (``config.mouth_prior``'s texture at the driving mouth's opening), as bright as each reference's lips.

        ``source_images`` ``(B * K, 3, S, S)``, ``sources`` and ``drivings`` ``(B * K, N, 2+)``; returns the fill
        ``(B * K, 3, h, w)`` of the rows and columns ``window`` (those that hold the driving mouths).
        """
        prior, size = self.config.mouth_prior, source_images.shape[-1]
        dtype, device = drivings.dtype, drivings.device  # the geometry's (float32 under half-precision weights)
        upper, lower = (torch.tensor(lip, device=device) for lip in (LIPS_INNER_UPPER, LIPS_INNER_LOWER))
        coordinates, opening = mouth_coordinates(drivings.to(dtype), upper, lower, size, window)
        cached = self._mouth_prior_tensors
        if cached is None or cached[0] is not prior or cached[1].dtype != dtype or cached[1].device != device:
            # built once: a list of ~1700 numbers costs ~2 ms to convert, several % of a frame
            texture, openings = (
                torch.tensor(prior[key], dtype=dtype, device=device) for key in ("texture", "openings")
            )
            self._mouth_prior_tensors = cached = (prior, texture, openings)
        texture = mouth_prior_texture(cached[1], cached[2], opening)
        outer = torch.tensor(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER, device=device)
        inner = torch.tensor(LIPS_INNER_UPPER + LIPS_INNER_LOWER, device=device)
        # brightness only: scaled per channel, a lipstick would tint the teeth
        brightness = lip_color(source_images.to(dtype), sources.to(dtype), outer, inner).mean(1)
        scale = brightness / texture.new_tensor(prior["lip_color"]).mean()
        fill = F.grid_sample(texture, coordinates, mode="bilinear", padding_mode="border", align_corners=False)
        return (fill * scale[:, None, None, None]).clamp(0, 1).to(source_images.dtype)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        source_landmarks: torch.Tensor | None = None,
        driving_landmarks: torch.Tensor | None = None,
        source: SourceFeatures | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> EmoTalkGeneratorOutput | tuple:
        """Render one frame per driving landmark set.

        Args:
            pixel_values: ``(B_s, [K,] 3, S, S)`` reference image(s) in [0, 1] (or pass ``source``).
            source_landmarks: ``(B_s, [K,] 478, 2|3)`` their landmarks, normalized crop coordinates.
            driving_landmarks: ``(B, 478, 2|3)`` the target landmarks. ``B_s`` must be 1 or B.
            source: the output of :meth:`encode_source`, to skip re-encoding the references.
        """
        if source is None:
            if pixel_values is None or source_landmarks is None:
                raise EmoTalkInputError("pass pixel_values and source_landmarks, or source=encode_source(...)")
            source = self.encode_source(pixel_values, source_landmarks)
        if driving_landmarks is None or driving_landmarks.ndim != 3 or driving_landmarks.shape[1] != NUM_LANDMARKS:
            shape = None if driving_landmarks is None else tuple(driving_landmarks.shape)
            raise EmoTalkInputError(f"driving_landmarks must be (B, {NUM_LANDMARKS}, 2|3), got {shape}")
        batch = driving_landmarks.shape[0]
        source_batch, refs = source.pixel_values.shape[:2]
        if source_batch not in (1, batch):
            raise EmoTalkInputError(f"references have batch {source_batch}; expected 1 or {batch} (the driving batch)")

        size = self.config.image_size
        # the geometry (spline, grids, mouth) in float32 whatever the weights' dtype: in bfloat16 the spline's
        # lattice and the grids lose whole pixels (noise instead of a face); the heat maps follow the weights
        geometry = torch.float64 if source.landmarks.dtype == torch.float64 else torch.float32
        driving, source_points = driving_landmarks.to(geometry), source.landmarks.to(geometry)
        control = self.control_index
        source_control, driving_control, ridge = self.spline_controls(
            source_points[..., control, :2].expand(batch, -1, -1, -1).flatten(0, 1),
            driving[:, control, :2].repeat_interleave(refs, dim=0),
        )
        # the backward grids at the image size and at each feature level, (B*K, s, s, 2), from one spline fit
        grid, *feature_grids = landmark_flows(
            source_control,
            driving_control,
            size,
            (size, *(feature.shape[-1] for feature in source.features)),
            self.config.flow_size,
            ridge,
        )

        # one row per reference of each frame, as the grids are
        sources, drivings = source_points.expand(batch, -1, -1, -1).flatten(0, 1), driving.repeat_interleave(refs, 0)
        if self.config.eyelids == "rigid_lashes":
            grid, *feature_grids = self.rigid_lashes(sources, drivings, [grid, *feature_grids])
        cavities = None
        if self.config.mouth_interior in ("rigid", "prior"):
            (grid, *feature_grids), cavities = self.rigid_mouth(sources, drivings, [grid, *feature_grids])

        heatmaps = rasterize_landmarks(
            driving.to(source.landmarks.dtype),
            self.landmark_groups,
            self.config.heatmap_size,
            self.config.heatmap_sigma,
        )  # channels-last
        conv = self._frame_conv(heatmaps)
        condition64 = conv(self.landmark_in[2], self.landmark_in[1](conv(self.landmark_in[0], heatmaps)))
        condition32 = conv(self.landmark_down[1], self.landmark_down[0](condition64))

        warped_features, weights = [], None
        for level, (feature, feature_grid) in enumerate(zip(source.features, feature_grids, strict=True)):
            warped = warp_references(feature, feature_grid, batch)
            if cavities is not None:  # blanked in the cavity (in place: grid_sample's backward needs no output)
                cavity, (rows, cols) = cavities[level + 1]
                warped[..., rows, cols] *= 1 - cavity.unflatten(0, (batch, refs)).to(warped.dtype)
            fused, level_weights = self.fuse[level](warped, condition64)
            warped_features.append(fused.contiguous(memory_format=CHANNELS_LAST))
            weights = level_weights if weights is None else weights
        warped_image = warp_references(source.pixel_values, grid, batch, padding_mode="reflection")
        if cavities is not None and cavities[0][0].numel():
            cavity, (rows, cols) = cavities[0]
            if self.config.mouth_interior == "prior":
                images = source.pixel_values.expand(batch, -1, -1, -1, -1).flatten(0, 1)
                fill = self.mouth_prior_fill(images, sources, drivings, (rows, cols)).unflatten(0, (batch, refs))
            else:
                fill = warped_image.new_tensor(self.config.cavity_color)[:, None, None]
            warped_image[..., rows, cols] = torch.lerp(
                warped_image[..., rows, cols], fill, cavity.unflatten(0, (batch, refs)).to(warped_image.dtype)
            )
        if refs > 1:  # the finest level's per-pixel reference weights also fuse the images
            weights = F.interpolate(weights, size=(size, size), mode="bilinear", align_corners=False)
            warped_image = (weights.unsqueeze(2) * warped_image).sum(1)
        else:
            warped_image = warped_image[:, 0]
        warped_image = warped_image.contiguous()

        h = warped_features[1]
        norms = [n for b in self.bottleneck for n in (b.norm1, b.norm2)]
        bottleneck = spatial_modulation(condition32, norms, h.shape[-2:])
        for i, block in enumerate(self.bottleneck):
            h = fat_block(block, h, bottleneck[2 * i : 2 * i + 2], conv)
        h = F.interpolate(pointwise_conv(self.up1, h), scale_factor=2.0, mode="nearest") + warped_features[0]
        decoder = spatial_modulation(condition64, [self.decoder1.norm1, self.decoder1.norm2], h.shape[-2:])
        h = fat_block(self.decoder1, h, decoder, conv)
        out = conv(self.to_output, _silu(self.out_norm(h))).to(warped_image.dtype)
        # RGB (channels 0-47) and mask (48-63) shuffled apart: dense full-size tensors, no strided channel slice
        residual, mask = F.pixel_shuffle(out[:, :48], 4), torch.sigmoid(F.pixel_shuffle(out[:, 48:], 4))
        mask = mask.contiguous()
        frames = torch.addcmul(warped_image, mask, residual).clamp(0, 1)
        output = EmoTalkGeneratorOutput(
            frames=frames, warped=warped_image, mask=mask, grid=grid.unflatten(0, (batch, refs))
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "EmoTalkGenerator",
    "EmoTalkGeneratorOutput",
    "EmoTalkGeneratorPreTrainedModel",
    "SourceFeatures",
    "reuse_freed_memory",
]
