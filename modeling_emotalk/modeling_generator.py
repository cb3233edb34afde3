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

from dataclasses import dataclass

import torch
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, ResnetBlockCondNorm2D
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_emotalk import EmoTalkGeneratorConfig
from .landmarks import LANDMARK_GROUPS, NUM_LANDMARKS
from .warp import landmark_flow, rasterize_landmarks, resize_grid, warp


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
        condition = F.interpolate(condition, size=warped.shape[-2:], mode="nearest")
        condition = condition.unsqueeze(1).expand(-1, refs, -1, -1, -1)
        scores = self.score(torch.cat([warped, condition], dim=2).flatten(0, 1)).unflatten(0, (batch, refs))
        weights = scores.softmax(dim=1)
        return (weights * warped).sum(dim=1), weights[:, :, 0]


class EmoTalkGenerator(EmoTalkGeneratorPreTrainedModel):
    """The FAT generator: references + driving landmarks → frames."""

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
            raise ValueError(f"pixel_values must be (B, K, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        if landmarks.shape[:2] != pixel_values.shape[:2] or landmarks.shape[-2] != NUM_LANDMARKS:
            raise ValueError(
                f"source landmarks must be (B, K, {NUM_LANDMARKS}, 2|3) matching pixel_values, got {tuple(landmarks.shape)}"
            )
        batch, refs = pixel_values.shape[:2]
        h = self.stem(pixel_values.flatten(0, 1) * 2 - 1)
        f0 = self.encoder0(h, None)
        f1 = self.encoder1(self.down1(f0), None)
        f2 = self.encoder2(self.down2(f1), None)
        features = tuple(f.unflatten(0, (batch, refs)) for f in (f1, f2))
        return SourceFeatures(pixel_values=pixel_values, features=features, landmarks=landmarks)

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
                raise ValueError("pass pixel_values and source_landmarks, or source=encode_source(...)")
            source = self.encode_source(pixel_values, source_landmarks)
        if driving_landmarks is None or driving_landmarks.ndim != 3 or driving_landmarks.shape[1] != NUM_LANDMARKS:
            shape = None if driving_landmarks is None else tuple(driving_landmarks.shape)
            raise ValueError(f"driving_landmarks must be (B, {NUM_LANDMARKS}, 2|3), got {shape}")
        batch = driving_landmarks.shape[0]
        source_batch, refs = source.pixel_values.shape[:2]
        if source_batch not in (1, batch):
            raise ValueError(f"references have batch {source_batch}; expected 1 or {batch} (the driving batch)")

        def per_frame(x: torch.Tensor) -> torch.Tensor:  # (B_s, K, ...) → (B * K, ...)
            return x.expand(batch, *x.shape[1:]).flatten(0, 1)

        size = self.config.image_size
        driving = driving_landmarks.to(source.landmarks.dtype)
        control = self.control_index
        grid = landmark_flow(
            per_frame(source.landmarks[..., control, :]),
            driving[:, control].repeat_interleave(refs, dim=0),
            size,
            self.config.flow_size,
            self.config.tps_regularization,
        )  # (B*K, S, S, 2)

        heatmaps = rasterize_landmarks(
            driving, self.landmark_groups, self.config.heatmap_size, self.config.heatmap_sigma
        )
        condition64 = self.landmark_in(heatmaps)
        condition32 = self.landmark_down(condition64)

        warped_features, weights = [], None
        for level, feature in enumerate(source.features):
            warped = warp(per_frame(feature), resize_grid(grid, feature.shape[-1])).unflatten(0, (batch, refs))
            fused, level_weights = self.fuse[level](warped, condition64)
            warped_features.append(fused)
            weights = level_weights if weights is None else weights
        warped_image = warp(per_frame(source.pixel_values), grid).unflatten(0, (batch, refs))
        if refs > 1:  # the finest level's per-pixel reference weights also fuse the images
            weights = F.interpolate(weights, size=(size, size), mode="bilinear", align_corners=False)
            warped_image = (weights.unsqueeze(2) * warped_image).sum(1)
        else:
            warped_image = warped_image[:, 0]

        h = warped_features[1]
        for block in self.bottleneck:
            h = block(h, condition32)
        h = F.interpolate(self.up1(h), scale_factor=2.0, mode="nearest") + warped_features[0]
        h = self.decoder1(h, condition64)
        out = F.pixel_shuffle(self.to_output(F.silu(self.out_norm(h))), 4)
        residual, mask = out[:, :3], torch.sigmoid(out[:, 3:])
        frames = (warped_image + mask * residual).clamp(0, 1)
        output = EmoTalkGeneratorOutput(
            frames=frames, warped=warped_image, mask=mask, grid=grid.unflatten(0, (batch, refs))
        )
        return output if return_dict else output.to_tuple()


__all__ = ["EmoTalkGenerator", "EmoTalkGeneratorOutput", "EmoTalkGeneratorPreTrainedModel", "SourceFeatures"]
