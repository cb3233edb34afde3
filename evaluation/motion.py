"""Blinks, head motion and landmark jitter from face-mesh tracks (pure functions on ``(T, 478, 3)`` arrays)."""

from __future__ import annotations

import numpy as np

from .mesh import RIGID, inter_ocular

# Eye landmarks for the eye aspect ratio: corners, then three upper/lower lid pairs.
_EYES = {
    "right": ((33, 133), ((160, 144), (159, 145), (158, 153))),
    "left": ((263, 362), ((387, 373), (386, 374), (385, 380))),
}
BLINK_DROP = 0.35  # a blink: EAR falls 35 % below its running baseline
MAX_BLINK_SECONDS = 0.5  # longer closures are not blinks (eyes closed, looking down)
SMOOTH_SECONDS = 0.2  # head tracks are smoothed over this before speeds are measured


def eye_aspect_ratio(mesh: np.ndarray) -> np.ndarray:
    """Mean eye aspect ratio of both eyes per frame (lid distance / eye width; ≈ 0.3 open, < 0.15 closed)."""
    mesh = np.asarray(mesh, dtype=np.float64)
    ratios = []
    for corners, lids in _EYES.values():
        width = np.linalg.norm(mesh[:, corners[0], :2] - mesh[:, corners[1], :2], axis=-1)
        heights = [np.linalg.norm(mesh[:, a, :2] - mesh[:, b, :2], axis=-1) for a, b in lids]
        ratios.append(np.mean(heights, axis=0) / width)
    return np.mean(ratios, axis=0)


def blink_events(ear: np.ndarray, fps: float, drop: float = BLINK_DROP, max_seconds: float = MAX_BLINK_SECONDS):
    """``(start, end)`` frame spans where the eye aspect ratio dips below ``(1 - drop)`` × its baseline.

    The baseline is the running median over 2 s (open eyes dominate it); dips longer than ``max_seconds``
    are not counted. A constant signal has no blinks.
    """
    from scipy.ndimage import median_filter

    ear = np.asarray(ear, dtype=np.float64)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if ear.size == 0 or not np.isfinite(ear).any():
        return []
    filled = np.where(np.isfinite(ear), ear, np.nanmedian(ear))
    baseline = median_filter(filled, size=max(3, int(2 * fps) | 1), mode="nearest")
    closed = filled < (1 - drop) * baseline
    events = []
    start = None
    for t, is_closed in enumerate(np.append(closed, False)):
        if is_closed and start is None:
            start = t
        elif not is_closed and start is not None:
            if (t - start) / fps <= max_seconds:
                events.append((start, t - 1))
            start = None
    return events


def blink_rate(mesh: np.ndarray, fps: float) -> dict:
    """Blinks per minute and their count (real people: roughly 10–20 per minute while talking)."""
    ear = eye_aspect_ratio(mesh)
    events = blink_events(ear, fps)
    minutes = len(ear) / fps / 60 if len(ear) else float("nan")
    return {"blinks_per_minute": len(events) / minutes if minutes > 0 else float("nan"), "num_blinks": len(events)}


def head_rotation(mesh: np.ndarray) -> np.ndarray:
    """Head rotation per frame as ``(yaw, pitch, roll)`` in degrees, from the rigid face frame.

    The frame's x axis runs between the eye centres and its y axis from forehead to nose tip (as in
    :func:`emotalk_evaluation.emotion.canonical_points`); angles are relative to the camera axes. MediaPipe's
    depth is less accurate than x/y, so yaw and pitch are approximate; their variation is what matters here.
    """
    mesh = np.asarray(mesh, dtype=np.float64)
    right = mesh[:, (33, 133)].mean(axis=1)
    left = mesh[:, (263, 362)].mean(axis=1)
    x = left - right
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    down = mesh[:, (4, 5, 195)].mean(axis=1) - mesh[:, (10, 151, 9)].mean(axis=1)
    y = down - (down * x).sum(axis=-1, keepdims=True) * x
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    z = np.cross(x, y)
    yaw = np.degrees(np.arctan2(-z[:, 0], z[:, 2]))
    pitch = np.degrees(np.arcsin(np.clip(z[:, 1], -1, 1)))
    roll = np.degrees(np.arctan2(x[:, 1], x[:, 0]))
    return np.stack([yaw, pitch, roll], axis=1)


def smooth(values: np.ndarray, frames: int) -> np.ndarray:
    """Centred moving average over ``frames`` along the first axis (edges padded with the end values)."""
    values = np.asarray(values, dtype=np.float64)
    if frames <= 1 or len(values) == 0:
        return values
    pad = [(frames // 2, frames - 1 - frames // 2)] + [(0, 0)] * (values.ndim - 1)
    padded = np.pad(values, pad, mode="edge")
    kernel = np.ones(frames) / frames
    return np.apply_along_axis(lambda column: np.convolve(column, kernel, mode="valid"), 0, padded)


def head_motion_stats(mesh: np.ndarray, fps: float) -> dict:
    """Head-motion statistics: rotation std and mean angular speed, translation std and speed (inter-ocular units).

    Speeds are measured on tracks smoothed over 0.2 s, so that landmark noise (see :func:`rigid_jitter`) does
    not read as motion: a still face gives speeds near 0.
    """
    mesh = np.asarray(mesh, dtype=np.float64)
    good = np.isfinite(mesh).all(axis=(1, 2))
    nan = float("nan")
    if good.sum() < 2:
        return {"yaw_std_deg": nan, "pitch_std_deg": nan, "roll_std_deg": nan, "rotation_speed_deg_s": nan,
                "translation_std_iod": nan, "translation_speed_iod_s": nan}  # fmt: skip
    mesh = mesh[good]
    window = max(1, round(SMOOTH_SECONDS * fps))
    angles = smooth(head_rotation(mesh), window)
    iod = float(np.median(inter_ocular(mesh)))
    centre = smooth(mesh[:, RIGID, :2].mean(axis=1) / iod, window)
    return {
        "yaw_std_deg": float(angles[:, 0].std()),
        "pitch_std_deg": float(angles[:, 1].std()),
        "roll_std_deg": float(angles[:, 2].std()),
        "rotation_speed_deg_s": float(np.linalg.norm(np.diff(angles, axis=0), axis=1).mean() * fps),
        "translation_std_iod": float(np.linalg.norm(centre - centre.mean(axis=0), axis=1).std()),
        "translation_speed_iod_s": float(np.linalg.norm(np.diff(centre, axis=0), axis=1).mean() * fps),
    }


def rigid_jitter(mesh: np.ndarray) -> float:
    """High-frequency jitter of the rigid landmarks: mean |second difference| of their 2D positions.

    In percent of the inter-ocular distance per frame. Smooth head motion contributes little (its
    acceleration is small at video rates); frame-to-frame shaking of the face dominates. 0 for a still video.
    """
    mesh = np.asarray(mesh, dtype=np.float64)
    good = np.isfinite(mesh).all(axis=(1, 2))
    if good.sum() < 3:
        return float("nan")
    points = mesh[good][:, RIGID, :2]
    iod = float(np.median(inter_ocular(mesh[good])))
    accel = points[2:] - 2 * points[1:-1] + points[:-2]
    return float(np.linalg.norm(accel, axis=-1).mean() / iod * 100)


def motion_scores(mesh: np.ndarray, fps: float) -> dict:
    """Blink rate, head-motion statistics and rigid-landmark jitter of one video."""
    return {**blink_rate(mesh, fps), **head_motion_stats(mesh, fps), "jitter_pct_iod": rigid_jitter(mesh)}
