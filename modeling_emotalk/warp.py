"""Sparse → dense motion: a thin-plate spline through landmark correspondences, and landmark heat maps.

Everything is differentiable torch. Coordinates are normalized crop coordinates in [-1, 1] with the
``grid_sample(align_corners=False)`` convention, so the identity grid samples pixel centres exactly.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def identity_grid(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """``(H, W, 2)`` normalized (x, y) coordinates of the pixel centres."""
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def _tps_kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    # U(r) = r² log r², with U(0) = 0
    return squared_distance * torch.log(squared_distance.clamp_min(1e-12))


def fit_tps(control: torch.Tensor, targets: torch.Tensor, regularization: float = 1e-3) -> torch.Tensor:
    """Fit a thin-plate spline ``f`` with ``f(control_i) ≈ targets_i``.

    Args:
        control: ``(B, N, 2)`` points where the spline is anchored (the driving landmarks).
        targets: ``(B, N, D)`` values there (the matching source landmarks).
        regularization: ridge term; makes duplicate or near-duplicate control points harmless.

    Returns:
        ``(B, N + 3, D)`` coefficients: N kernel weights, then the affine part (1, x, y).
    """
    batch, num_points, _ = control.shape
    kernel = _tps_kernel(torch.cdist(control, control).square())
    kernel = kernel + regularization * torch.eye(num_points, device=control.device, dtype=control.dtype)
    affine = torch.cat([torch.ones_like(control[..., :1]), control], dim=-1)  # (B, N, 3)
    top = torch.cat([kernel, affine], dim=-1)
    bottom = torch.cat([affine.transpose(1, 2), control.new_zeros(batch, 3, 3)], dim=-1)
    system = torch.cat([top, bottom], dim=1)
    rhs = torch.cat([targets, targets.new_zeros(batch, 3, targets.shape[-1])], dim=1)
    return torch.linalg.solve(system.double(), rhs.double()).to(control.dtype)


def evaluate_tps(coefficients: torch.Tensor, control: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Evaluate a spline from :func:`fit_tps` at ``points`` ``(B, M, 2)`` → ``(B, M, D)``."""
    kernel = _tps_kernel(torch.cdist(points, control).square())
    affine = torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)
    num_points = control.shape[1]
    return kernel @ coefficients[:, :num_points] + affine @ coefficients[:, num_points:]


def landmark_flow(
    source_landmarks: torch.Tensor,
    driving_landmarks: torch.Tensor,
    size: int,
    flow_size: int = 64,
    regularization: float = 1e-3,
) -> torch.Tensor:
    """Backward sampling grid ``(B, size, size, 2)``: where each driving-frame pixel comes from in the source.

    The displacement is evaluated on a ``flow_size²`` grid and upsampled bilinearly (a TPS is smooth),
    then added to the exact identity grid, so equal landmarks give exactly the identity warp.

    Args:
        source_landmarks, driving_landmarks: ``(B, N, 2+)`` normalized crop coordinates (x, y first).
    """
    source = source_landmarks[..., :2]
    driving = driving_landmarks[..., :2]
    coefficients = fit_tps(driving, source - driving, regularization)
    coarse = identity_grid(flow_size, flow_size, device=source.device, dtype=source.dtype)
    displacement = evaluate_tps(coefficients, driving, coarse.flatten(0, 1).expand(source.shape[0], -1, -1))
    displacement = displacement.unflatten(1, (flow_size, flow_size)).permute(0, 3, 1, 2)
    if flow_size != size:
        displacement = F.interpolate(displacement, size=(size, size), mode="bilinear", align_corners=False)
    grid = identity_grid(size, size, device=source.device, dtype=source.dtype)
    return grid + displacement.permute(0, 2, 3, 1)


def resize_grid(grid: torch.Tensor, size: int) -> torch.Tensor:
    """Resample a sampling grid ``(B, H, W, 2)`` to ``(B, size, size, 2)`` (for feature maps)."""
    if grid.shape[1] == size:
        return grid
    return F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False).permute(
        0, 2, 3, 1
    )


def warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``(B, C, H, W)`` with a normalized grid ``(B, h, w, 2)`` (border padding)."""
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rasterize_landmarks(landmarks: torch.Tensor, groups: list[torch.Tensor], size: int, sigma: float) -> torch.Tensor:
    """Gaussian heat maps ``(B, G, size, size)``: channel g is the max over the points of group g.

    Args:
        landmarks: ``(B, N, 2+)`` normalized crop coordinates.
        groups: G index tensors into the N points.
        sigma: Gaussian radius in normalized units.
    """
    grid = identity_grid(size, size, device=landmarks.device, dtype=landmarks.dtype).flatten(0, 1)  # (P, 2)
    channels = []
    for index in groups:
        points = landmarks[:, index, :2]  # (B, n, 2)
        squared = torch.cdist(points, grid.expand(points.shape[0], -1, -1)).square()  # (B, n, P)
        channels.append(torch.exp(-squared.min(dim=1).values / (2 * sigma**2)))
    return torch.stack(channels, dim=1).unflatten(-1, (size, size))
