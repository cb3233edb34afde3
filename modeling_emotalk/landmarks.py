"""MediaPipe face-mesh topology (478 points with iris), the canonical frame and relocation.

Pure functions on tensors, no MediaPipe import: this file also ships as Hub remote code.

Coordinate conventions
- *crop space*: x right, y down, normalized to [-1, 1] over the crop (``2 * pixel / size - 1``, the
  ``align_corners=False`` convention of ``torch.nn.functional.grid_sample``); z is MediaPipe's depth
  in the same units (larger = farther from the camera).
- *canonical space*: the face's own rigid frame, independent of head pose. Origin: midpoint between
  the eye centres; x: from the subject's right eye to the left eye (image right on a frontal face);
  y: from forehead to nose tip, orthogonalized (down); z = x × y (into the screen); unit: the
  distance between the eye centres. It is derived from rigid upper-face points only, so expressions
  (mouth, brows) do not move the frame.
"""

from __future__ import annotations

import torch

# The mesh topology lives in emotalk_common (shared with the face front-end and evaluation); re-exported here.
from emotalk_common.topology import (  # noqa: F401
    CHIN,
    EYELID_CONTOURS,
    EYES,
    FACE_OVAL,
    FOREHEAD,
    IRISES,
    LANDMARK_GROUPS,
    LEFT_EYE_CORNERS,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LEFT_EYEBROW,
    LEFT_IRIS,
    LIPS,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    LOWER_LIP,
    LOWER_LIP_CENTER_INNER,
    MEDIAPIPE_TO_IBUG68,
    MOUTH_CORNERS,
    NOSE,
    NOSE_TIP,
    NUM_LANDMARKS,
    RIGHT_EYE_CORNERS,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    RIGHT_EYEBROW,
    RIGHT_IRIS,
    RIGID,
    UPPER_LIP,
    UPPER_LIP_CENTER_INNER,
)

EYE_BALL_RADIUS = 0.19  # canonical units (eyeball radius / distance between eye centres ≈ 12 / 63 mm)


def _mean(points: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    return points[..., list(index), :].mean(dim=-2)


def canonical_frame(landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rigid frame of a face: ``landmarks = scale * canonical @ rotation.T + translation``.

    Args:
        landmarks: ``(..., 478, 3)`` in any consistent units (crop space, pixels).

    Returns:
        scale ``(...)``, rotation ``(..., 3, 3)`` (columns are the canonical axes), translation ``(..., 3)``.
    """
    if landmarks.shape[-2:] != (NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks must have shape (..., {NUM_LANDMARKS}, 3), got {tuple(landmarks.shape)}")
    right_eye = _mean(landmarks, RIGHT_EYE_CORNERS)
    left_eye = _mean(landmarks, LEFT_EYE_CORNERS)
    x_axis = left_eye - right_eye
    scale = x_axis.norm(dim=-1).clamp_min(1e-8)
    x_axis = x_axis / scale.unsqueeze(-1)
    down = _mean(landmarks, NOSE_TIP) - _mean(landmarks, FOREHEAD)
    y_axis = down - (down * x_axis).sum(-1, keepdim=True) * x_axis
    y_axis = y_axis / y_axis.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    z_axis = torch.linalg.cross(x_axis, y_axis, dim=-1)
    rotation = torch.stack([x_axis, y_axis, z_axis], dim=-1)
    translation = (right_eye + left_eye) / 2
    return scale, rotation, translation


def to_canonical(
    landmarks: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor
) -> torch.Tensor:
    """Inverse of :func:`from_canonical` for a frame from :func:`canonical_frame`."""
    return ((landmarks - translation.unsqueeze(-2)) @ rotation) / scale[..., None, None]


def from_canonical(
    canonical: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor
) -> torch.Tensor:
    """``scale * canonical @ rotation.T + translation`` with broadcasting over leading dims."""
    return scale[..., None, None] * canonical @ rotation.transpose(-1, -2) + translation.unsqueeze(-2)


def canonicalize(landmarks: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Pose-free landmarks and the frame that maps them back: ``(canonical, (scale, rotation, translation))``."""
    frame = canonical_frame(landmarks)
    return to_canonical(landmarks, *frame), frame


def euler_to_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Rotation ``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` in the canonical axes (x right, y down, z in), radians."""
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def apply_blink(canonical: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
    """Close the eyelids: upper-lid points move toward the lower lid by ``blink`` (0 open, 1 closed).

    The iris points go down with the lid (toward the lower lid's centre): left in place they would anchor
    the warp and hold the eye open.

    Args:
        canonical: ``(..., 478, 3)``. blink: ``(..., 2)`` for (right, left) eye in [0, 1].
    """
    out = canonical.clone()
    eyes = ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_IRIS), (LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_IRIS))
    for eye, (upper, lower, iris) in enumerate(eyes):
        amount = blink[..., eye, None, None].clamp(0, 1) * 0.95
        up, low = canonical[..., list(upper), :], canonical[..., list(lower), :]
        out[..., list(upper), :] = up + amount * (low - up)
        pupil = canonical[..., list(iris), :]
        lid_line = low.mean(dim=-2, keepdim=True)
        vertical = torch.zeros_like(pupil)
        vertical[..., 1:] = lid_line[..., 1:] - pupil[..., 1:]
        out[..., list(iris), :] = pupil + amount * vertical
    return out


def apply_gaze(canonical: torch.Tensor, gaze: torch.Tensor) -> torch.Tensor:
    """Rotate the irises: ``gaze`` ``(..., 2)`` = (horizontal, vertical) angles in radians, right/down positive."""
    shift = EYE_BALL_RADIUS * torch.sin(gaze)
    shift = torch.cat([shift, torch.zeros_like(shift[..., :1])], dim=-1).unsqueeze(-2)
    out = canonical.clone()
    out[..., list(IRISES), :] = canonical[..., list(IRISES), :] + shift
    return out


def relocate(
    reference_canonical: torch.Tensor,
    expression: torch.Tensor,
    head_pose: torch.Tensor,
    gaze: torch.Tensor,
    blink: torch.Tensor,
    reference_frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Reassemble per-frame crop-space landmarks from the predicted parts (pure, differentiable).

    Args:
        reference_canonical: ``(B, 478, 3)`` the reference face in canonical space.
        expression: ``(B, T, 478, 3)`` canonical offsets.
        head_pose: ``(B, T, 6)`` = (yaw, pitch, roll, tx, ty, log_scale) relative to the reference pose;
            tx, ty are in units of the reference eye distance.
        gaze: ``(B, T, 2)`` radians. blink: ``(B, T, 2)`` in [0, 1].
        reference_frame: ``(scale (B,), rotation (B, 3, 3), translation (B, 3))`` of the reference in crop space.

    Returns:
        ``(B, T, 478, 3)`` landmarks in crop space.
    """
    scale0, rotation0, translation0 = reference_frame
    canonical = reference_canonical.unsqueeze(1) + expression
    canonical = apply_gaze(apply_blink(canonical, blink), gaze)
    yaw, pitch, roll, tx, ty, log_scale = head_pose.unbind(-1)
    rotation = rotation0.unsqueeze(1) @ euler_to_matrix(yaw, pitch, roll)
    scale = scale0.unsqueeze(1) * torch.exp(log_scale)
    shift = torch.stack([tx, ty, torch.zeros_like(tx)], dim=-1) * scale0[:, None, None]
    translation = translation0.unsqueeze(1) + shift
    return from_canonical(canonical, scale, rotation, translation)
