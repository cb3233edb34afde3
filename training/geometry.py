"""Stage-1 training targets from tracked landmarks: the inverse of :func:`modeling_emotalk.landmarks.relocate`.

For a clip's landmarks ``L_t`` (crop space) and a reference frame ``L_0`` of the same clip:

- canonical landmarks ``C_t = to_canonical(L_t, frame(L_t))`` (pose-free), expression = ``C_t - C_0``;
- head pose relative to the reference: ``R_t = R_0 @ euler(yaw, pitch, roll)``, ``s_t = s_0 exp(log_scale)``,
  ``t_t = t_0 + s_0 (tx, ty, ·)`` — so that :func:`relocate` with these values gives back ``L_t``;
- blink: eyelid closure that :func:`apply_blink` would need to turn the reference's eye opening into ``C_t``'s;
- gaze: the iris displacement relative to the eye, beyond the reference's, as angles for :func:`apply_gaze`.

All pure torch functions, differentiable, batched over leading dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modeling_emotalk.landmarks import (
    EYE_BALL_RADIUS,
    LEFT_EYE_CORNERS,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LEFT_IRIS,
    RIGHT_EYE_CORNERS,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    RIGHT_IRIS,
    canonical_frame,
    to_canonical,
)

BLINK_CLOSURE = 0.95  # apply_blink closes the lids by this fraction at blink = 1


def matrix_to_euler(rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`modeling_emotalk.landmarks.euler_to_matrix`: ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Args:
        rotation: ``(..., 3, 3)`` rotation matrices.

    Returns:
        ``(yaw, pitch, roll)`` in radians, each ``(...)``; yaw in [-pi/2, pi/2].
    """
    yaw = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    roll = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return yaw, pitch, roll


def eyelid_opening(canonical: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` mean distance between matching upper and lower eyelid points (right, left eye), corners excluded."""
    openings = []
    for upper, lower in ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER)):
        up = canonical[..., list(upper[1:-1]), :]
        low = canonical[..., list(lower[1:-1]), :]
        openings.append((up - low).norm(dim=-1).mean(-1))
    return torch.stack(openings, dim=-1)


def iris_offset(canonical: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` mean (x, y) offset of the iris centres from their eye-corner midpoints (both eyes averaged).

    Eye corners do not move when the lids close, so blinks do not leak into the gaze.
    """
    offsets = []
    for iris, corners in ((RIGHT_IRIS, RIGHT_EYE_CORNERS), (LEFT_IRIS, LEFT_EYE_CORNERS)):
        eye = canonical[..., list(corners), :2].mean(-2)
        offsets.append(canonical[..., iris[0], :2] - eye)
    return torch.stack(offsets, dim=0).mean(0)


@dataclass
class LandmarkTargets:
    """Stage-1 targets for T frames (B = batch).

    Attributes:
        canonical: ``(B, T, 478, 3)`` the frames in canonical space (after the expression, blink and gaze).
        reference_canonical: ``(B, 478, 3)`` the reference in canonical space (the model's identity input).
        expression: ``(B, T, 478, 3)`` ``canonical - reference_canonical``.
        head_pose: ``(B, T, 6)`` yaw, pitch, roll, tx, ty, log_scale relative to the reference.
        gaze: ``(B, T, 2)`` radians. blink: ``(B, T, 2)`` in [0, 1].
        reference_frame: ``(scale (B,), rotation (B, 3, 3), translation (B, 3))`` of the reference in crop space.
    """

    canonical: torch.Tensor
    reference_canonical: torch.Tensor
    expression: torch.Tensor
    head_pose: torch.Tensor
    gaze: torch.Tensor
    blink: torch.Tensor
    reference_frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def landmark_targets(landmarks: torch.Tensor, reference: torch.Tensor) -> LandmarkTargets:
    """Targets of :class:`EmoTalkLandmarkModel` for crop-space ``landmarks`` ``(B, T, 478, 3)`` and ``reference`` ``(B, 478, 3)``."""
    if landmarks.ndim != 4 or reference.ndim != 3 or landmarks.shape[0] != reference.shape[0]:
        raise ValueError(
            f"expected landmarks (B, T, 478, 3) and reference (B, 478, 3), got {tuple(landmarks.shape)} and "
            f"{tuple(reference.shape)}"
        )
    landmarks = landmarks.float()
    reference = reference.float()
    scale0, rotation0, translation0 = canonical_frame(reference)
    reference_canonical = to_canonical(reference, scale0, rotation0, translation0)
    scale, rotation, translation = canonical_frame(landmarks)
    canonical = to_canonical(landmarks, scale, rotation, translation)

    relative = rotation0.unsqueeze(1).transpose(-1, -2) @ rotation
    yaw, pitch, roll = matrix_to_euler(relative)
    shift = (translation - translation0.unsqueeze(1))[..., :2] / scale0[:, None, None]
    log_scale = torch.log(scale / scale0[:, None])
    head_pose = torch.stack([yaw, pitch, roll, shift[..., 0], shift[..., 1], log_scale], dim=-1)

    opening0 = eyelid_opening(reference_canonical).unsqueeze(1).clamp_min(1e-4)
    blink = ((1 - eyelid_opening(canonical) / opening0) / BLINK_CLOSURE).clamp(0.0, 1.0)
    delta = iris_offset(canonical) - iris_offset(reference_canonical).unsqueeze(1)
    gaze = torch.asin((delta / EYE_BALL_RADIUS).clamp(-0.99, 0.99))
    return LandmarkTargets(
        canonical=canonical,
        reference_canonical=reference_canonical,
        expression=canonical - reference_canonical.unsqueeze(1),
        head_pose=head_pose,
        gaze=gaze,
        blink=blink,
        reference_frame=(scale0, rotation0, translation0),
    )


__all__ = ["LandmarkTargets", "eyelid_opening", "iris_offset", "landmark_targets", "matrix_to_euler"]
