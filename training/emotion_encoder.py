"""The landmark-sequence emotion encoder of the coordinated visual emotion representation (training only).

Stage 1's audio-emotion head (``EmoTalkLandmarkModel.audio_emotion``) is trained to agree, through an InfoNCE
loss, with what this encoder reads from the *motion* of the face: canonical expression offsets of the
expressive regions (brows, eyes, lips, jaw) over a window, encoded by temporal convolutions and
masked mean pooling. Its own classifier learns the emotion where the label is known, so the visual side
carries emotion and pulls the audio embedding toward it.
"""

from __future__ import annotations

import torch
from torch import nn

from modeling_emotalk.landmarks import EYES, FACE_OVAL, LEFT_EYEBROW, LIPS, NOSE, RIGHT_EYEBROW

EXPRESSIVE_POINTS = tuple(sorted(set(LIPS + EYES + RIGHT_EYEBROW + LEFT_EYEBROW + FACE_OVAL + NOSE)))


class LandmarkEmotionEncoder(nn.Module):
    """Expression offsets ``(B, T, 478, 3)`` (+ frame mask) → emotion embedding ``(B, D)`` and logits ``(B, E)``.

    Args:
        embedding_dim: size of the embedding (the stage-1 config's ``emotion_embedding_dim``).
        num_emotions: classes of the classifier head.
        hidden_size: width of the temporal convolutions.
        offset_scale: offsets are multiplied by this before encoding (canonical units are ~0.01–0.1).
    """

    def __init__(self, embedding_dim: int, num_emotions: int, hidden_size: int = 128, offset_scale: float = 10.0):
        super().__init__()
        self.register_buffer("points", torch.tensor(EXPRESSIVE_POINTS, dtype=torch.long), persistent=False)
        self.offset_scale = float(offset_scale)
        self.input = nn.Linear(len(EXPRESSIVE_POINTS) * 3, hidden_size)
        self.temporal = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(hidden_size, hidden_size, kernel_size=5, padding=2),
            nn.GELU(),
            nn.Conv1d(hidden_size, hidden_size, kernel_size=5, padding=4, dilation=2),
            nn.GELU(),
        )
        self.projection = nn.Linear(2 * hidden_size, embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_emotions)

    def forward(self, expression: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(embedding (B, D), logits (B, E))``."""
        x = expression[:, :, self.points].flatten(2) * self.offset_scale  # (B, T, P*3)
        h = self.temporal(self.input(x).transpose(1, 2)).transpose(1, 2)  # (B, T, H)
        if mask is None:
            mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        weights = mask.to(h.dtype).unsqueeze(-1)
        mean = (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        variation = ((h - mean.unsqueeze(1)).abs() * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        embedding = self.projection(torch.cat([mean, variation], dim=-1))
        return embedding, self.classifier(embedding)


__all__ = ["EXPRESSIVE_POINTS", "LandmarkEmotionEncoder"]
