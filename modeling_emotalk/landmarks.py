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

NUM_LANDMARKS = 478

# Subject's right eye is on the image left of a frontal face.
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)  # outer, inner
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)
RIGHT_EYEBROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_EYEBROW = (336, 296, 334, 293, 300, 276, 283, 282, 295, 285)
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
UPPER_LIP_CENTER_INNER = 13
LOWER_LIP_CENTER_INNER = 14
NOSE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
CHIN = 152
FOREHEAD = (10, 151, 9)
NOSE_TIP = (4, 5, 195)

LIPS = tuple(sorted(set(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER + LIPS_INNER_UPPER + LIPS_INNER_LOWER)))
LOWER_LIP = tuple(sorted(set(LIPS_OUTER_LOWER + LIPS_INNER_LOWER) - set(MOUTH_CORNERS) - {78, 308}))
UPPER_LIP = tuple(sorted(set(LIPS_OUTER_UPPER + LIPS_INNER_UPPER) - set(MOUTH_CORNERS) - {78, 308}))
EYES = tuple(sorted(set(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER)))
IRISES = RIGHT_IRIS + LEFT_IRIS
# Rigid points (do not move with expressions): eye corners, nose bridge and tip, forehead.
RIGID = (33, 133, 263, 362, 168, 6, 197, 195, 5, 4, 10, 151, 9)

# MediaPipe 478 -> iBUG 68 (dlib order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
MEDIAPIPE_TO_IBUG68 = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip

# Landmark groups rasterized as separate heat-map channels by the generator's landmark encoder.
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "face_oval": FACE_OVAL,
    "brows": RIGHT_EYEBROW + LEFT_EYEBROW,
    "eyes": EYES,
    "irises": IRISES,
    "nose": NOSE,
    "lips_outer": tuple(sorted(set(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER))),
    "lips_inner": tuple(sorted(set(LIPS_INNER_UPPER + LIPS_INNER_LOWER))),
}

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
