"""Sparse → dense motion: a thin-plate spline through landmark correspondences, and landmark heat maps.

Everything is differentiable torch. Coordinates are normalized crop coordinates in [-1, 1] with the
``grid_sample(align_corners=False)`` convention, so the identity grid samples pixel centres exactly.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F


def identity_grid(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """``(H, W, 2)`` normalized (x, y) coordinates of the pixel centres."""
    ys = pixel_centres(height, device=device, dtype=dtype)
    xs = pixel_centres(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def _tps_kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    # U(r) = r² log r², with U(0) = 0
    return squared_distance * torch.log(squared_distance.clamp_min(1e-12))


def fit_tps(control: torch.Tensor, targets: torch.Tensor, regularization: float | torch.Tensor = 1e-3) -> torch.Tensor:
    """Fit a thin-plate spline ``f`` with ``f(control_i) ≈ targets_i``.

    Args:
        control: ``(B, N, 2)`` points where the spline is anchored (the driving landmarks).
        targets: ``(B, N, D)`` values there (the matching source landmarks).
        regularization: ridge term, one for all points or ``(N,)`` per point: the larger, the less exactly the
            spline passes through that point and the smoother it is around it; makes near-duplicate points harmless.

    Returns:
        ``(B, N + 3, D)`` coefficients: N kernel weights, then the affine part (1, x, y).
    """
    batch, num_points, _ = control.shape
    kernel = _tps_kernel(torch.cdist(control, control).square())
    ridge = torch.as_tensor(regularization, device=control.device, dtype=control.dtype).expand(num_points)
    kernel = kernel + torch.diag(ridge)
    affine = torch.cat([torch.ones_like(control[..., :1]), control], dim=-1)  # (B, N, 3)
    top = torch.cat([kernel, affine], dim=-1)
    bottom = torch.cat([affine.transpose(1, 2), control.new_zeros(batch, 3, 3)], dim=-1)
    system = torch.cat([top, bottom], dim=1)
    rhs = torch.cat([targets, targets.new_zeros(batch, 3, targets.shape[-1])], dim=1)
    # One LU per system: after torch.set_num_threads(n >= 2), torch 2.13's batched CPU solve (MKL) fails on systems of
    # this size ("Pivots given to lu_solve must all be greater or equal to 1"); one at a time it is exact, ~0.05 ms
    # more per frame.
    solutions = [torch.linalg.solve(a, b) for a, b in zip(system.double(), rhs.double(), strict=True)]
    return torch.stack(solutions).to(control.dtype)


def evaluate_tps(coefficients: torch.Tensor, control: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Evaluate a spline from :func:`fit_tps` at ``points`` ``(B, M, 2)`` → ``(B, M, D)``."""
    kernel = _tps_kernel(torch.cdist(points, control).square())
    affine = torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)
    num_points = control.shape[1]
    return kernel @ coefficients[:, :num_points] + affine @ coefficients[:, num_points:]


def pixel_centres(size: int, device=None, dtype=None) -> torch.Tensor:
    """``(size,)`` normalized coordinates of the pixel centres along one axis (see :func:`identity_grid`)."""
    return (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1


@functools.lru_cache(maxsize=64)
def _resampling(size_out: int, size_image: int, flow_size: int, device: torch.device, dtype: torch.dtype):
    # 1-D linear resampling matrices with F.interpolate's convention (align_corners=False); bilinear resizing of an
    # image X is R @ X @ R.T. Built in float64 and composed once, outside inference mode (autograd may use them).
    def linear(size_in: int, size: int) -> torch.Tensor:
        eye = torch.eye(size_in, dtype=torch.float64)[:, None]
        return F.interpolate(eye, size=size, mode="linear", align_corners=False)[:, 0].T  # (size, size_in)

    with torch.inference_mode(False):
        down = linear(size_image, size_out)  # image size → size_out (the identity when equal)
        flow = down @ linear(flow_size, size_image)  # flow grid → image size → size_out
        centres = down @ pixel_centres(size_image, dtype=torch.float64)  # = pixel_centres(size_out) in exact math
        return flow.to(device, dtype), centres.to(device, dtype)


def _tps_on_lattice(coefficients: torch.Tensor, control: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`evaluate_tps` at the ``size²`` pixel centres → ``(B, D, size, size)``.

    On a lattice the squared distance to a control point is separable, ``(x - x_i)² + (y - y_i)²``, so the kernel
    matrix is one broadcast sum and ``U(r²) = r² log r²`` (0 at 0) elementwise, with no pairwise-distance
    matrix, square root or squaring.
    """
    num_points = control.shape[1]
    axis = pixel_centres(size, device=control.device, dtype=control.dtype)
    dx2 = (axis - control[..., 0, None]).square()  # (B, N, size)
    dy2 = (axis - control[..., 1, None]).square()
    if torch.is_grad_enabled():
        squared = (dy2[..., :, None] + dx2[..., None, :]).flatten(2)  # (B, N, size²)
        kernel = torch.xlogy(squared, squared)
    else:  # (r² + ε) log(r² + ε) with ε = 1e-12 folded into the small row term: log > -inf without a clamp
        # pass, within 3e-11 of U(r²); the log is one allocation, the product in place (~25 % faster)
        squared = ((dy2 + 1e-12)[..., :, None] + dx2[..., None, :]).flatten(2)
        kernel = squared.mul_(squared.log())
    values = coefficients[:, :num_points].transpose(1, 2) @ kernel  # (B, D, size²)
    constant, slope_x, slope_y = coefficients[:, num_points:, :, None, None].unbind(1)  # (B, D, 1, 1) each
    return values.unflatten(2, (size, size)) + constant + slope_x * axis + slope_y * axis[:, None]


def landmark_flows(
    source_landmarks: torch.Tensor,
    driving_landmarks: torch.Tensor,
    size: int,
    sizes: tuple[int, ...] | list[int],
    flow_size: int = 64,
    regularization: float | torch.Tensor = 1e-3,
) -> list[torch.Tensor]:
    """:func:`landmark_flow` at ``size`` resized to each of ``sizes`` — ``[resize_grid(landmark_flow(...), s)]`` —
    from one spline fit: every resize is linear, so each grid is two small matrix products on the coarse flow.

    Args:
        source_landmarks, driving_landmarks: ``(B, N, 2+)`` normalized crop coordinates (x, y first).
        size: the image size the flow is defined at; ``sizes``: the sides of the returned ``(B, s, s, 2)`` grids.
    """
    source = source_landmarks[..., :2]
    driving = driving_landmarks[..., :2]
    coefficients = fit_tps(driving, source - driving, regularization)
    displacement = _tps_on_lattice(coefficients, driving, flow_size)  # (B, 2, n, n)
    grids = []
    for side in sizes:
        resample, centres = _resampling(side, size, flow_size, source.device, source.dtype)
        flow = resample @ displacement @ resample.T  # (B, 2, side, side)
        grids.append(torch.stack([flow[:, 0] + centres, flow[:, 1] + centres[:, None]], dim=-1))
    return grids


def landmark_flow(
    source_landmarks: torch.Tensor,
    driving_landmarks: torch.Tensor,
    size: int,
    flow_size: int = 64,
    regularization: float | torch.Tensor = 1e-3,
) -> torch.Tensor:
    """Backward sampling grid ``(B, size, size, 2)``: where each driving-frame pixel comes from in the source.

    The displacement is evaluated on a ``flow_size²`` grid and upsampled bilinearly (a TPS is smooth),
    then added to the exact identity grid, so equal landmarks give exactly the identity warp.

    Args:
        source_landmarks, driving_landmarks: ``(B, N, 2+)`` normalized crop coordinates (x, y first).
    """
    return landmark_flows(source_landmarks, driving_landmarks, size, (size,), flow_size, regularization)[0]


def resize_grid(grid: torch.Tensor, size: int) -> torch.Tensor:
    """Resample a sampling grid ``(B, H, W, 2)`` to ``(B, size, size, 2)`` (for feature maps)."""
    if grid.shape[1] == size:
        return grid
    return F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False).permute(
        0, 2, 3, 1
    )


def warp(image: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward-warp ``(B, C, H, W)`` with a normalized grid ``(B, h, w, 2)``.

    ``padding_mode`` says what is sampled outside the crop: ``"border"`` repeats the edge pixel (fine for
    feature maps), ``"reflection"`` mirrors the crop at its edge, which keeps hair and background textured
    where the motion pulls content in from outside (a repeated edge row shows as streaks).

    Half-precision inputs are sampled in float32 and the result cast back: torch 2.13's CPU ``grid_sample`` returns
    NaN for a channels-last bfloat16 image (the pipeline's ``dtype=torch.bfloat16`` rendered black frames).
    """
    if image.dtype in (torch.float16, torch.bfloat16):
        out = F.grid_sample(
            image.float(), grid.float(), mode="bilinear", padding_mode=padding_mode, align_corners=False
        )
        return out.to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def rasterize_landmarks(landmarks: torch.Tensor, groups: list[torch.Tensor], size: int, sigma: float) -> torch.Tensor:
    """Gaussian heat maps ``(B, G, size, size)``: channel g is the max over the points of group g.

    ``max_i exp(-d_i² / 2σ²) = exp(-min_i d_i² / 2σ²)``, and the squared distance of a point to every pixel of
    the grid is separable, ``d² = (x - x_i)² + (y - y_i)²``: a broadcast sum of a row and a column, with one
    exponential per pixel and no dense point-to-pixel distance matrix. Returned in channels-last memory format.

    Args:
        landmarks: ``(B, N, 2+)`` normalized crop coordinates.
        groups: G index tensors into the N points.
        sigma: Gaussian radius in normalized units.
    """
    axis = pixel_centres(size, device=landmarks.device, dtype=landmarks.dtype)
    channels = []
    for index in groups:
        points = landmarks[:, index, :2]  # (B, n, 2)
        dx2 = (points[..., 0, None] - axis).square()  # (B, n, size)
        dy2 = (points[..., 1, None] - axis).square()
        channels.append((dy2[..., :, None] + dx2[..., None, :]).amin(dim=1))  # (B, size, size)
    squared = torch.stack(channels, dim=-1)  # (B, size, size, G)
    return torch.exp(squared / (-2 * sigma**2)).permute(0, 3, 1, 2)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Batched ``numpy.interp``: ``x`` ``(B, M)`` on the curves ``(xp, fp)`` ``(B, P)`` (``xp`` increasing)."""
    index = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1 = xp.gather(1, index - 1), xp.gather(1, index)
    y0, y1 = fp.gather(1, index - 1), fp.gather(1, index)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1)
    return y0 + t * (y1 - y0)


def _contour(points: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The contour ``index`` of ``points`` ``(B, N, 2)`` as an x-sorted curve (x, y), each ``(B, P)``."""
    x, order = points[:, index, 0].sort(dim=1)
    return x, points[:, index, 1].gather(1, order)


def _lip_curves(points: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor):
    """The inner lip contours of ``points`` ``(B, N, 2)`` as x-sorted curves: (x_u, y_u), (x_l, y_l) ``(B, P)``."""
    return _contour(points, upper), _contour(points, lower)


def _inner_lips(points: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor):
    """:func:`_lip_curves` of ``points`` and the mouth's left and right ends ``(B, 1)`` (where both lips reach)."""
    (xu, yu), (xl, yl) = _lip_curves(points, upper, lower)
    left, right = torch.maximum(xu[:, :1], xl[:, :1]), torch.minimum(xu[:, -1:], xl[:, -1:])
    return (xu, yu), (xl, yl), left, right


def mouth_interior_grid(
    grid: torch.Tensor,
    source_landmarks: torch.Tensor,
    driving_landmarks: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    feather: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor, tuple[slice, slice]]:
    """Replace the spline inside a mouth that opens wider than the source's: teeth follow their lip, the rest is cavity.

    A thin-plate spline stretches whatever lies between the source's lips (its teeth, or a closed lip line) over
    the whole driving opening: tall columns of teeth, horizontal stripes. Inside the driving inner-lip contour, where
    its gap at a column exceeds the source's, the band of the source's opening next to each lip moves rigidly with
    that lip (upper teeth with the upper lip, lower teeth with the lower lip) and the middle is returned as a cavity
    weight, which the caller fills (a mouth-interior colour for the network to refine). Columns where the mouth is
    no wider than the source's keep the spline.

    Args:
        grid: ``(B, S, S, 2)`` backward grid (driving pixel → source location), normalized coordinates.
        source_landmarks, driving_landmarks: ``(B, N, 2+)`` the two faces (x, y first), normalized crop coordinates.
        upper, lower: indices of the inner lip contours, each from one mouth corner to the other.
        feather: width of the cavity's soft edge in pixels.

    Returns:
        The grid, the cavity weight ``(B, 1, h, w)`` in [0, 1] of the rows and columns that hold the driving mouths
        (:func:`mouth_window`; zero outside them) and those ``(rows, columns)`` slices, empty when no mouth opens
        wider than its source.
    """
    batch, size = grid.shape[0], grid.shape[1]
    source, driving = source_landmarks[..., :2].to(grid.dtype), driving_landmarks[..., :2].to(grid.dtype)
    rows, cols = mouth_window(driving, upper, lower, size)  # only the pixels there can change
    (dxu, dyu), (dxl, dyl), left, right = _inner_lips(driving, upper, lower)
    (sxu, syu), (sxl, syl), source_left, source_right = _inner_lips(source, upper, lower)
    axis = pixel_centres(size, device=grid.device, dtype=grid.dtype)
    columns = axis[cols].expand(batch, -1)
    scale = (source_right - source_left) / (right - left).clamp_min(1e-4)  # source size per driving size
    top, bottom = _interp(columns, dxu, dyu), _interp(columns, dxl, dyl)  # (B, w) driving inner lips
    source_x = source_left + (columns - left) / (right - left).clamp_min(1e-4) * (source_right - source_left)
    source_top, source_bottom = _interp(source_x, sxu, syu), _interp(source_x, sxl, syl)
    band = ((source_bottom - source_top) / scale).clamp_min(0) / 2  # half the source opening, driving units
    # wider than the source's opening by more than a pixel (less would not show; it costs the fill's work)
    inside_columns = (columns > left) & (columns < right) & (bottom - top > 2 * band + 2 / size)
    if not bool(inside_columns.any()):
        return grid, grid.new_zeros(batch, 1, 0, 0), (slice(0, 0), slice(0, 0))
    y = axis[rows][None, :, None]
    below_top, above_bottom = y - top[:, None, :], bottom[:, None, :] - y  # (B, h rows, w columns)
    inside = inside_columns[:, None, :] & (below_top > 0) & (above_bottom > 0)
    near_top = below_top <= above_bottom
    y_source = torch.where(
        near_top,
        source_top[:, None, :] + below_top.clamp(max=band[:, None, :]) * scale[:, :, None],
        source_bottom[:, None, :] - above_bottom.clamp(max=band[:, None, :]) * scale[:, :, None],
    )
    rigid = torch.stack([source_x[:, None, :].expand_as(y_source), y_source], dim=-1)
    grid = grid.clone()
    grid[:, rows, cols] = torch.where(inside[..., None], rigid, grid[:, rows, cols])
    depth = torch.minimum(below_top, above_bottom) - band[:, None, :]  # distance into the cavity
    cavity = (depth * size / 2 / feather).clamp(0, 1) * inside
    return grid, cavity[:, None].to(grid.dtype), (rows, cols)


def mouth_window(landmarks: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor, size: int) -> tuple[slice, slice]:
    """The rows and columns of an ``size``² image that hold the inner-lip contours of any of ``landmarks``
    ``(B, N, 2+)`` (with a pixel to spare): where :func:`mouth_interior_grid` and the mouth prior can change pixels.
    """
    return landmark_window(landmarks, torch.cat([upper, lower]), size)


def landmark_window(landmarks: torch.Tensor, index: torch.Tensor, size: int) -> tuple[slice, slice]:
    """The ``(rows, columns)`` of an ``size``² image that hold the points ``index`` of any of ``landmarks``
    ``(B, N, 2+)``, with a pixel to spare."""
    points = landmarks[:, index, :2]
    (x0, y0), (x1, y1) = points.amin((0, 1)).tolist(), points.amax((0, 1)).tolist()
    return _window(x0, y0, x1, y1, size)


def _window(x0: float, y0: float, x1: float, y1: float, size: int) -> tuple[slice, slice]:
    """The ``(rows, columns)`` of an ``size``² image that hold the normalized box ``x0, y0, x1, y1``, with a pixel to
    spare."""
    (c0, r0), (c1, r1) = ((max(int((v + 1) * size / 2) - 1, 0) for v in (x0, y0)),
                          (min(int((v + 1) * size / 2) + 2, size) for v in (x1, y1)))  # fmt: skip
    return slice(r0, max(r1, r0)), slice(c0, max(c1, c0))


def _eye_opening(upper: tuple, lower: tuple, samples: int = 16) -> torch.Tensor:
    """``(B,)`` the widest gap between the lid curves ``upper`` and ``lower`` (x-sorted, corner to corner)."""
    (xu, yu), (xl, yl) = upper, lower
    t = torch.linspace(0, 1, samples + 2, device=xu.device, dtype=xu.dtype)[1:-1]
    x = xu[:, :1] + t * (xu[:, -1:] - xu[:, :1])
    return (_interp(x, xl, yl) - _interp(x, xu, yu)).amax(1)


def eyelid_grids(
    grids: list[torch.Tensor],
    source_landmarks: torch.Tensor,
    driving_landmarks: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    brow: torch.Tensor,
    lash_band: float = 0.3,
    taper: float = 0.25,
    ramp: float = 0.2,
) -> list[torch.Tensor]:
    """Replace the spline above an eyelid that is lower than the source's: the lashes move with the lid, the skin
    above them stretches.

    When a lid closes, the spline stretches the thin band between the source's lid and brow, lashes included, over
    the whole closed eye: tall streaks of lashes and eyeliner. Here, in each driving column between the brow and the
    upper lid, the ``lash_band`` × (source eye opening) next to the lid moves rigidly with it, and the rest maps
    linearly onto the source's skin between the brow and the top of that band. The change is weighted by how far
    the lid has closed (full at ``ramp`` of the source's opening) and tapers to the spline at the eye's corners
    (over ``taper`` of its width): an eye no more closed than the source's keeps the spline's grid exactly.

    Args:
        grids: ``(B, S, S, 2)`` backward grids (driving pixel → source location, normalized coordinates) of one
            warp at any sizes ``S`` (the image's and the feature levels').
        source_landmarks, driving_landmarks: ``(B, N, 2+)`` the two faces (x, y first), normalized crop coordinates.
        upper, lower: one eye's upper and lower lid contours, each from one corner to the other.
        brow: the lower contour of the brow above it.

    Returns:
        The grids, each a new tensor where it changed (the list itself when no eye closes).
    """
    batch, dtype = grids[0].shape[0], grids[0].dtype
    source, driving = source_landmarks[..., :2].to(dtype), driving_landmarks[..., :2].to(dtype)
    d_upper, d_lower, d_brow = (_contour(driving, index) for index in (upper, lower, brow))
    s_upper, s_lower, s_brow = (_contour(source, index) for index in (upper, lower, brow))
    scale = (s_upper[0][:, -1] - s_upper[0][:, 0]) / (d_upper[0][:, -1] - d_upper[0][:, 0]).clamp_min(1e-4)
    s_open = _eye_opening(s_upper, s_lower)
    closure = (1 - _eye_opening(d_upper, d_lower) * scale / s_open.clamp_min(1e-4)).clamp(0, 1)  # (B,)
    strength = (closure / ramp).clamp(0, 1)
    region = driving[:, torch.cat([upper, brow])]
    # one host read for the decision and the window (a device sync on a GPU)
    x0, y0, x1, y1, strongest = torch.cat([region.amin((0, 1)), region.amax((0, 1)), strength.amax()[None]]).tolist()
    if strongest <= 0:
        return grids
    left, right = d_upper[0][:, :1], d_upper[0][:, -1:]
    band = (lash_band * s_open / scale)[:, None, None]  # the lashes' band, driving units
    s_band = lash_band * s_open[:, None, None]
    out = []
    for grid in grids:
        size = grid.shape[1]
        rows, cols = _window(x0, y0, x1, y1, size)
        axis = pixel_centres(size, device=grid.device, dtype=dtype)
        x = axis[cols].expand(batch, -1)
        u = ((x - left) / (right - left).clamp_min(1e-4)).clamp(0, 1)
        edge = (torch.minimum(u, 1 - u) / taper).clamp(0, 1)
        weight = strength[:, None] * edge * edge * (3 - 2 * edge)  # (B, w), smoothstep to the corners
        lid, top = _interp(x, *d_upper)[:, None, :], _interp(x, *d_brow)[:, None, :]  # (B, 1, w) driving curves
        y = axis[rows][None, :, None]
        above = lid - y  # how far above the driving lid
        inside = (above >= 0) & (y >= top) & (lid - band - top > 2 / size)
        old = grid[:, rows, cols]
        source_x = old[..., 0]  # the source column each pixel samples: the source's curves are read there
        s_lid, s_top = (_interp(source_x.flatten(1), *curve).view_as(source_x) for curve in (s_upper, s_brow))
        lash_y = s_lid - above * scale[:, None, None]  # rigid with the lid
        t = ((y - top) / (lid - band - top).clamp_min(1e-4)).clamp(0, 1)
        skin_y = s_top + t * (s_lid - s_band - s_top)  # the skin between the brow and the band, stretched
        new_y = torch.where(above <= band, lash_y, skin_y)
        mix = weight[:, None, :] * (inside & (s_lid - s_band > s_top))
        grid = grid.clone()
        grid[:, rows, cols, 1] = torch.lerp(old[..., 1], new_y, mix)
        out.append(grid)
    return out


def mouth_coordinates(
    landmarks: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    size: int,
    window: tuple[slice, slice] = (slice(None), slice(None)),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel's place in the mouth of ``landmarks`` ``(B, N, 2+)``: across it from corner to corner and down it
    from the upper inner lip to the lower, both mapped to [-1, 1] (a ``grid_sample`` grid into a texture of the
    mouth's interior); and the mouth's opening, its widest inner-lip gap over its width ``(B,)``.

    Returns:
        ``(B, S, S, 2)`` texture coordinates (outside the opening they run past [-1, 1]), only those of the rows and
        columns ``window`` (e.g. :func:`mouth_window`'s) when given, and ``(B,)`` openings.
    """
    points = landmarks[..., :2]
    (xu, yu), (xl, yl), left, right = _inner_lips(points, upper, lower)
    width = (right - left).clamp_min(1e-4)
    axis = pixel_centres(size, device=points.device, dtype=points.dtype)
    columns = axis.expand(points.shape[0], size)
    top, bottom = _interp(columns, xu, yu), _interp(columns, xl, yl)  # (B, S)
    inside = (columns > left) & (columns < right)
    opening = torch.where(inside, bottom - top, torch.zeros_like(top)).amax(1) / width[:, 0]
    rows, cols = window
    columns, top, bottom = columns[:, cols], top[:, cols], bottom[:, cols]
    across = (columns - left) / width * 2 - 1
    down = (axis[rows][None, :, None] - top[:, None, :]) / (bottom - top).clamp_min(1e-4)[:, None, :] * 2 - 1
    coordinates = torch.stack([across[:, None, :].expand_as(down), down], dim=-1)
    return coordinates, opening


def mouth_texture_grid(
    landmarks: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor, rows: int, columns: int
) -> torch.Tensor:
    """The inverse of :func:`mouth_coordinates`: where each texel centre of a ``rows`` × ``columns`` mouth texture
    lies in the image of ``landmarks`` ``(B, N, 2+)`` → a ``(B, rows, columns, 2)`` ``grid_sample`` grid (reading a
    frame's mouth interior into the texture)."""
    points = landmarks[..., :2]
    (xu, yu), (xl, yl), left, right = _inner_lips(points, upper, lower)
    across = (torch.arange(columns, device=points.device, dtype=points.dtype) + 0.5) / columns
    down = (torch.arange(rows, device=points.device, dtype=points.dtype) + 0.5) / rows
    x = left + across * (right - left)  # (B, U)
    top, bottom = _interp(x, xu, yu), _interp(x, xl, yl)
    y = top[:, None, :] + down[None, :, None] * (bottom - top)[:, None, :]
    return torch.stack([x[:, None, :].expand_as(y), y], dim=-1)


def lip_color(images: torch.Tensor, landmarks: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Mean RGB ``(B, 3)`` of ``images`` ``(B, 3, S, S)`` halfway between each outer lip point and its inner one.

    ``outer`` and ``inner`` are paired contours of the same length (corner to corner); the corners are skipped.
    """
    middle = (landmarks[:, outer[1:-1], :2] + landmarks[:, inner[1:-1], :2]) / 2
    samples = F.grid_sample(images, middle[:, None].to(images.dtype), align_corners=False)  # (B, 3, 1, P)
    return samples.mean((2, 3))


def opening_weights(opening: torch.Tensor, openings: torch.Tensor) -> torch.Tensor:
    """``(B, O)``: each ``opening`` ``(B,)`` shared linearly between its two nearest of the increasing ``openings``
    ``(O,)`` (all on the first or last beyond the ends)."""
    if len(openings) == 1:
        return torch.ones(len(opening), 1, dtype=openings.dtype, device=openings.device)
    x = opening.to(openings.dtype).clamp(openings[0], openings[-1])
    index = torch.searchsorted(openings, x.contiguous()).clamp(1, len(openings) - 1)
    t = (x - openings[index - 1]) / (openings[index] - openings[index - 1])
    weights = torch.zeros(len(x), len(openings), dtype=openings.dtype, device=openings.device)
    weights.scatter_(1, (index - 1)[:, None], (1 - t)[:, None])
    return weights.scatter_add(1, index[:, None], t[:, None])


def mouth_prior_texture(texture: torch.Tensor, openings: torch.Tensor, opening: torch.Tensor) -> torch.Tensor:
    """The mean mouth interior at each ``opening`` ``(B,)``: ``texture`` ``(O, 3, V, U)``, one per value of
    ``openings`` ``(O,)``, mixed with :func:`opening_weights` → ``(B, 3, V, U)``."""
    return torch.einsum("bo,ochw->bchw", opening_weights(opening, openings).to(texture.dtype), texture)
