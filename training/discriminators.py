"""Training-only discriminators of stage 2: a PatchGAN on frames and a spatio-temporal 3D-conv critic on windows.

Both return ``(logits, features)``: the patch logit map(s) for the hinge loss and the intermediate
activations for feature matching. Spectral normalization keeps the hinge game stable without a gradient
penalty. Both always run in float32, also under mixed precision: they are small next to the generator, and
bfloat16 ``Conv3d`` backward on CPU gave non-finite gradients.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix) frame discriminator: ``(B, C, S, S)`` → logits ``(B, 1, S/2^n, S/2^n)``.

    Args:
        in_channels: image channels (3).
        channels: width of the first layer (doubled per layer, at most 8×).
        num_layers: stride-2 layers (receptive field ~ 16·2^(n-2) px: 70 px for 3).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers = [spectral_norm(nn.Conv2d(in_channels, channels, kernel_size=4, stride=2, padding=1))]
        width = channels
        for i in range(1, num_layers):
            out = channels * min(2**i, 8)
            layers.append(spectral_norm(nn.Conv2d(width, out, kernel_size=4, stride=2, padding=1)))
            width = out
        self.blocks = nn.ModuleList(layers)
        self.head = spectral_norm(nn.Conv2d(width, 1, kernel_size=3, padding=1))

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``images`` in [0, 1] → ([logits], features)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            h = images.float() * 2 - 1
            features = []
            for block in self.blocks:
                h = nn.functional.leaky_relu(block(h), 0.2)
                features.append(h)
            return [self.head(h)], features


class SpatioTemporalDiscriminator(nn.Module):
    """3D-conv critic over short frame windows ``(B, C, W, S, S)``: judges motion (flicker, jitter), not just frames.

    Args:
        in_channels: image channels (3).
        channels: width of the first layer (doubled per layer, at most 8×).
        num_layers: layers with spatial stride 2 (the temporal kernel is 3, stride 1, padded).
    """

    def __init__(self, in_channels: int = 3, channels: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        layers = [spectral_norm(nn.Conv3d(in_channels, channels, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)))]
        width = channels
        for i in range(1, num_layers):
            out = channels * min(2**i, 8)
            layers.append(spectral_norm(nn.Conv3d(width, out, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1))))
            width = out
        self.blocks = nn.ModuleList(layers)
        self.head = spectral_norm(nn.Conv3d(width, 1, kernel_size=3, padding=1))

    def forward(self, clips: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``clips`` ``(B, C, W, S, S)`` in [0, 1] → ([logits ``(B, 1, W, s, s)``], features)."""
        with torch.autocast(device_type=clips.device.type, enabled=False):
            h = clips.float() * 2 - 1
            features = []
            for block in self.blocks:
                h = nn.functional.leaky_relu(block(h), 0.2)
                features.append(h)
            return [self.head(h)], features


__all__ = ["PatchDiscriminator", "SpatioTemporalDiscriminator"]
