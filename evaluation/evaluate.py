"""Evaluate one talking-face video: every metric of the suite, from frames (or files) to a nested dict.

:func:`evaluate_frames` works on arrays; :func:`evaluate_video` reads files first. Both return a
:class:`VideoEvaluation`: ``metrics`` (JSON-ready, grouped as ``lipsync``, ``identity``, ``emotion``,
``motion``, ``sharpness``, ``reference``) and ``signals`` (per-frame arrays used by the plots).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from emotalk_common.alignment import phone_segments
from emotalk_common.constants import SAMPLING_RATE
from emotalk_common.lip_measures import lip_opening_2d
from emotalk_common.video_io import load_image, probe, read_audio, read_frames

from . import emotion as emotion_module
from . import identity as identity_module
from .image_metrics import aligned_crop, mean_psnr, psnr, ssim
from .landmarks68 import f_lmd, m_lmd, to_reference_scale, track_landmarks68
from .lipsync import audio_envelope, lag_correlations, lipsync_scores
from .mesh import mesh_image, track_mesh
from .motion import eye_aspect_ratio, motion_scores
from .sharpness import cpbd_available, cpbd_sharpness, mouth_sharpness

METRIC_GROUPS = ("lipsync", "identity", "emotion", "motion", "sharpness", "reference")
IDENTITY_SAMPLES = 16
CPBD_SAMPLES = 8
CPBD_MAX_SIDE = 256
STAND_IN_LABELS = {
    "lipsync": "SyncNet-free proxies (pocketsphinx phones + face-mesh lip aperture), not LSE-C/LSE-D",
    "identity": identity_module.LABEL,
    "emotion": "geometric nearest-prototype classifier calibrated on 2 MEAD actors, not Emotion-FAN",
}


@dataclass
class VideoEvaluation:
    """Metrics of one video (``metrics``, JSON-ready) and the per-frame signals behind them (``signals``)."""

    name: str
    metrics: dict
    signals: dict = field(default_factory=dict)


def _as_image(image: str | Path | np.ndarray | None) -> np.ndarray | None:
    if image is None:
        return None
    if isinstance(image, (str, Path)):
        return load_image(image)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"source image must be an RGB uint8 (H, W, 3) array or a path, got {image.dtype} {image.shape}"
        )
    return image


def _check_groups(metrics: Iterable[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = sorted(set(metrics) - set(METRIC_GROUPS))
    if unknown:
        raise ValueError(f"unknown metric groups {unknown}; choose from {list(METRIC_GROUPS)}")
    return metrics


def lipsync_group(
    mesh: np.ndarray, audio: np.ndarray, fps: float, transcript: str | None = None, seed: int = 0
) -> tuple[dict, dict]:
    """Lip-sync proxy metrics and their signals for one video's mesh track and 16 kHz audio."""
    aperture = lip_opening_2d(mesh)
    segments, method = phone_segments(audio, SAMPLING_RATE, transcript)
    envelope = audio_envelope(audio, SAMPLING_RATE, fps, len(aperture))
    scores = lipsync_scores(aperture, segments, envelope, fps, seed=seed)
    metrics = {**scores.to_dict(), "phone_method": method, "label": STAND_IN_LABELS["lipsync"]}
    curve = lag_correlations(aperture, envelope)
    signals = {
        "aperture": aperture,
        "envelope": envelope,
        "lag_curve": np.array([[d, c] for d, c in curve.items()]),
        "phones": [(s.phone, s.start, s.end) for s in segments],
    }
    return metrics, signals


def identity_group(frames: np.ndarray, source_image: np.ndarray | None, samples: int = IDENTITY_SAMPLES) -> dict:
    """Identity similarity of up to ``samples`` evenly spaced frames to the source image (or the first frame)."""
    reference_name = "source image" if source_image is not None else "first frame"
    reference = source_image if source_image is not None else frames[0]
    source = identity_module.face_embedding(reference)
    indices = identity_module.sample_indices(len(frames), samples)
    embeddings = [identity_module.face_embedding(frames[i]) for i in indices]
    return {**identity_module.identity_scores(source, embeddings), "reference": reference_name,
            "label": STAND_IN_LABELS["identity"]}  # fmt: skip


def emotion_group(mesh: np.ndarray, requested: str | None, source_image: np.ndarray | None) -> dict:
    """Emotion classification of the video (relative to the source image's face when one is given)."""
    features = emotion_module.expression_features(mesh)
    reference = None
    if source_image is not None:
        source_mesh = mesh_image(source_image)[None]
        if np.isfinite(source_mesh).all():
            reference = emotion_module.reference_features(source_mesh)
    prototypes = emotion_module.load_prototypes(relative=reference is not None)
    scores = emotion_module.emotion_scores(features, requested, prototypes, reference)
    return {**scores, "requested": requested, "label": STAND_IN_LABELS["emotion"]}


def sharpness_group(frames: np.ndarray, mesh: np.ndarray, samples: int = CPBD_SAMPLES) -> dict:
    """Mouth-region Laplacian variance (all frames) and CPBD of a few whole frames (longer side <= 256 px).

    The field computes CPBD on its 256² output frames; larger frames are downscaled to that size first so
    that values compare across resolutions.
    """
    from PIL import Image

    cpbd_values = []
    if cpbd_available():
        for i in identity_module.sample_indices(len(frames), samples):
            image = Image.fromarray(frames[i])
            scale = CPBD_MAX_SIDE / max(image.size)
            if scale < 1:
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
            cpbd_values.append(cpbd_sharpness(np.asarray(image)))
    return {
        "mouth_laplacian_var": mouth_sharpness(frames, mesh),
        "cpbd": float(np.mean(cpbd_values)) if cpbd_values else float("nan"),
        "cpbd_available": cpbd_available(),
    }


def reference_group(frames: np.ndarray, ground_truth: np.ndarray, stride: int = 1) -> dict:
    """M-LMD / F-LMD (dlib 68, pixels at 256 px) and PSNR / SSIM on aligned 256² crops against ground truth.

    Both sequences must already share the frame rate; the shorter length is used, every ``stride``-th frame.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    count = min(len(frames), len(ground_truth))
    if count == 0:
        raise ValueError("no frames to compare with the ground truth")
    indices = np.arange(0, count, stride)
    predicted = track_landmarks68(frames[i] for i in indices)
    reference = track_landmarks68(ground_truth[i] for i in indices)
    predicted_scaled = to_reference_scale(predicted, frames.shape[1:3])
    reference_scaled = to_reference_scale(reference, ground_truth.shape[1:3])
    psnrs, ssims = [], []
    for k, i in enumerate(indices):
        a = aligned_crop(frames[i], predicted[k])
        b = aligned_crop(ground_truth[i], reference[k])
        if a is None or b is None:
            continue
        psnrs.append(psnr(a, b))
        ssims.append(ssim(a, b))
    return {
        "m_lmd": m_lmd(predicted_scaled, reference_scaled),
        "f_lmd": f_lmd(predicted_scaled, reference_scaled),
        "psnr": mean_psnr(psnrs),
        "ssim": float(np.mean(ssims)) if ssims else float("nan"),
        "num_frames": len(indices),
        "aligned_frames": len(psnrs),
        "lmd_units": "pixels at 256 px (longer side)",
    }


def evaluate_frames(
    frames: np.ndarray,
    fps: float,
    *,
    audio: np.ndarray | None = None,
    source_image: str | Path | np.ndarray | None = None,
    ground_truth: np.ndarray | None = None,
    emotion: str | None = None,
    transcript: str | None = None,
    metrics: Iterable[str] = METRIC_GROUPS,
    seed: int = 0,
    name: str = "video",
    reference_stride: int = 1,
) -> VideoEvaluation:
    """Evaluate a video given as arrays.

    Args:
        frames: ``uint8 (T, H, W, 3)`` RGB frames.
        fps: their frame rate.
        audio: the driving speech, mono float32 at 16 kHz (lip-sync metrics are skipped without it).
        source_image: the portrait the video was generated from (identity and relative emotion reference).
        ground_truth: ``uint8 (T', H', W', 3)`` real frames at the same ``fps`` (M-LMD, F-LMD, PSNR, SSIM).
        emotion: the requested emotion (for emotion accuracy); None or ``"auto"`` skips the accuracy.
        transcript: the spoken text, for forced alignment instead of phone-loop recognition.
        metrics: which groups to compute (default all of :data:`METRIC_GROUPS` that the inputs allow).
        seed: seed of the random segment shifts of the closure-lift baseline.
        name: a label for reports.
        reference_stride: compare every n-th frame with the ground truth (dlib is the slow part).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) array, got {frames.dtype} {frames.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    groups = _check_groups(metrics)
    source = _as_image(source_image)
    timing: dict[str, float] = {}
    start = time.perf_counter()
    mesh = track_mesh(frames).astype(np.float64)
    timing["mesh"] = time.perf_counter() - start
    found = np.isfinite(mesh).all(axis=(1, 2))
    out: dict = {
        "name": name,
        "num_frames": len(frames),
        "fps": float(fps),
        "duration_s": len(frames) / fps,
        "size": [int(frames.shape[2]), int(frames.shape[1])],
        "face_found_rate": float(found.mean()),
    }
    signals: dict = {"fps": float(fps), "ear": eye_aspect_ratio(mesh)}
    skipped: dict[str, str] = {}

    def run(group: str, function, *args, **kwargs):
        begin = time.perf_counter()
        result = function(*args, **kwargs)
        timing[group] = time.perf_counter() - begin
        return result

    if "lipsync" in groups:
        if audio is None or len(audio) == 0:
            skipped["lipsync"] = "no audio"
        else:
            out["lipsync"], lip_signals = run("lipsync", lipsync_group, mesh, np.asarray(audio, np.float32), fps,
                                              transcript, seed)  # fmt: skip
            signals.update(lip_signals)
    if "identity" in groups:
        out["identity"] = run("identity", identity_group, frames, source)
    if "emotion" in groups:
        out["emotion"] = run("emotion", emotion_group, mesh, emotion, source)
    if "motion" in groups:
        out["motion"] = run("motion", motion_scores, mesh, fps)
    if "sharpness" in groups:
        out["sharpness"] = run("sharpness", sharpness_group, frames, mesh)
    if "reference" in groups:
        if ground_truth is None:
            skipped["reference"] = "no ground-truth video"
        else:
            out["reference"] = run("reference", reference_group, frames, np.asarray(ground_truth), reference_stride)
    if skipped:
        out["skipped"] = skipped
    out["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    return VideoEvaluation(name=name, metrics=out, signals=signals)


def evaluate_video(
    video: str | Path,
    *,
    audio: str | Path | np.ndarray | None = None,
    source_image: str | Path | np.ndarray | None = None,
    ground_truth: str | Path | None = None,
    emotion: str | None = None,
    transcript: str | None = None,
    metrics: Iterable[str] = METRIC_GROUPS,
    seed: int = 0,
    name: str | None = None,
    max_seconds: float | None = None,
    max_side: int | None = 960,
    reference_stride: int = 1,
) -> VideoEvaluation:
    """Evaluate a video file (see :func:`evaluate_frames`).

    ``audio`` defaults to the video's own audio track; ``ground_truth`` is read at the video's frame rate.
    ``max_seconds`` evaluates only the beginning; ``max_side`` downscales large frames for analysis.
    """
    info = probe(video)
    frames, fps = read_frames(video, max_side=max_side, max_seconds=max_seconds)
    if audio is None:
        audio_array = read_audio(video, max_seconds=max_seconds) if info.has_audio else None
    elif isinstance(audio, (str, Path)):
        audio_array = read_audio(audio, max_seconds=max_seconds)
    else:
        audio_array = np.asarray(audio, dtype=np.float32)
    truth = None
    if ground_truth is not None:
        truth, _ = read_frames(ground_truth, fps=fps, max_side=max_side, max_seconds=max_seconds)
    result = evaluate_frames(
        frames,
        fps,
        audio=audio_array,
        source_image=source_image,
        ground_truth=truth,
        emotion=emotion,
        transcript=transcript,
        metrics=metrics,
        seed=seed,
        name=name or Path(video).stem,
        reference_stride=reference_stride,
    )
    result.metrics["video"] = str(video)
    return result
