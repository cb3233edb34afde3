"""The photo's own expression: estimated in canonical landmarks and removed ("replace, not add").

Stage 1 predicts expression offsets from a neutral, closed-mouth rest face. A portrait is rarely neutral:
most smile. Added to the photo's landmarks as they are, a "sad" offset leaves the smile in place. This module
estimates how much of each known expression direction the photo holds and subtracts it, so the requested
emotion replaces the photo's instead of adding to it.

The estimate is a generalized least-squares fit of the photo's canonical landmarks, around a mean face, onto
expression directions (MEAD's seven emotion offsets and the jaw opening), with the variation *between*
people treated as correlated noise (a low-rank identity covariance learned from many faces), so that a
wide mouth or high brows that belong to the person are not mistaken for a smile or surprise. The fit is
linear, so it is stored as one matrix: ``coefficients = relu(estimator · (x − mean))``; the removed
expression is ``Σ coefficients · directions`` on the lower face (:data:`LOWER_FACE`). ``recipes/default_model/fit_photo_expression.py`` fits it from
tracked real video; until it is fitted (all zeros) it removes nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from .landmarks import NUM_LANDMARKS

LOWER_FACE = (0.25, 0.55)
"""Canonical heights (eye line 0, nose tip ≈ 0.56, mouth corners ≈ 1.05) between which the removal fades in:
the estimate is removed from the mouth, cheeks and jaw only. Brows and lids stay the photo's: their height is
largely the person's, and lowering them as "expression" let an angry or sad brow fold over the upper lid."""


class PhotoExpression(nn.Module):
    """Estimate and remove a face's expression in canonical space.

    Buffers (saved with the model): ``mean`` ``(478, 3)``, ``estimator`` ``(E, 478, 3)`` and ``directions``
    ``(E, 478, 3)`` for E removable expression components.
    """

    def __init__(self, num_components: int, num_landmarks: int = NUM_LANDMARKS):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_landmarks, 3), persistent=True)
        self.register_buffer("estimator", torch.zeros(num_components, num_landmarks, 3), persistent=True)
        self.register_buffer("directions", torch.zeros(num_components, num_landmarks, 3), persistent=True)

    def removal_weight(self) -> torch.Tensor:
        """``(478, 1)``: where the estimated expression is removed — the lower face only (see :data:`LOWER_FACE`)."""
        low, high = LOWER_FACE
        return ((self.mean[:, 1:2] - low) / (high - low)).clamp(0, 1)

    @property
    def fitted(self) -> bool:
        """Whether the estimator holds a fit (an unfitted one removes nothing)."""
        return bool(self.estimator.abs().sum() > 0)

    def coefficients(self, canonical: torch.Tensor) -> torch.Tensor:
        """How much of each component ``(..., E)`` (≥ 0) the faces ``(..., 478, 3)`` hold."""
        residual = canonical.to(self.mean.dtype) - self.mean
        return torch.einsum("...nd,end->...e", residual, self.estimator).clamp_min(0)

    def forward(self, canonical: torch.Tensor) -> torch.Tensor:
        """The faces with their estimated expression removed, same shape and dtype as ``canonical``."""
        expression = torch.einsum("...e,end->...nd", self.coefficients(canonical), self.directions)
        return canonical - (expression * self.removal_weight()).to(canonical.dtype)


__all__ = ["PhotoExpression"]
