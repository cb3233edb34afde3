"""Lip-sync metrics without SyncNet: phone-aligned lip closure, open-vowel aperture and audio–aperture lag.

All functions are pure and work on per-frame numpy signals:

- ``aperture``: inner-lip opening per video frame, normalized by the inter-ocular distance
  (:func:`emotalk_common.lip_measures.lip_opening_2d`); NaN where the face was lost.
- ``segments``: :class:`~emotalk_common.alignment.PhoneSegment` spans in seconds.
- ``envelope``: the audio's speech-band amplitude per video frame (:func:`audio_envelope`).

Lag sign convention: ``lag = d`` means the aperture best matches the envelope when shifted by ``d``
frames, ``aperture[t + d] ~ envelope[t]``. A mouth that moves *before* the sound it makes (the usual
case in real speech: lips close before /p/ bursts, open before vowel energy) gives a *negative* lag; a
video whose mouth trails the audio by ``k`` frames gives ``+k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from emotalk_common.alignment import BILABIALS, OPEN_VOWELS, PhoneSegment

CLOSURE_FRACTION = 0.15  # closed = below robust-min + 15 % of the aperture's robust range
# A mouth whose aperture's robust range (2nd to 95th percentile) is below 2 % of the inter-ocular distance
# does not move: MediaPipe's tracking noise on a still image is about 0.8 %, real speech spans 4–30 %.
MIN_APERTURE_RANGE = 0.02
SEGMENT_TOLERANCE_FRAMES = 1  # a closure may fall one frame either side of the phone's span
MAX_LAG_FRAMES = 5
SPEECH_BAND = (300.0, 3400.0)
ENVELOPE_SMOOTH_FRAMES = 3
NUM_SHIFTS = 50  # random segment shifts for the closure-rate baseline


@dataclass
class LipSyncScores:
    """Lip-sync proxy scores for one video (NaN where undefined).

    Attributes:
        closure_rate: fraction of /p b m/ segments during which the lips close.
        closure_rate_shifted: the same rate for the segments moved to random positions (chance level).
        closure_lift: ``closure_rate - closure_rate_shifted`` (≈ 0 for unrelated audio and video).
        vowel_bilabial_auc: probability that an open-vowel segment's aperture exceeds a bilabial one's.
        lag_frames: the lag (frames) maximizing the audio–aperture correlation; negative = mouth ahead.
        lag_correlation: the Pearson correlation at that lag.
        num_bilabials, num_open_vowels: how many segments the scores rest on.
        closure_threshold: the aperture below which the lips count as closed.
        static_mouth: the aperture barely moves (a still face). Then closure rates are undefined (NaN), the
            lift and correlation are reported as 0, the AUC as 0.5 and the lag as undefined.
    """

    closure_rate: float
    closure_rate_shifted: float
    closure_lift: float
    vowel_bilabial_auc: float
    lag_frames: float
    lag_correlation: float
    num_bilabials: int
    num_open_vowels: int
    closure_threshold: float
    static_mouth: bool = False

    def to_dict(self) -> dict:
        """Plain-``dict`` form for JSON."""
        return asdict(self)


def audio_envelope(
    audio: np.ndarray, sampling_rate: int, fps: float, num_frames: int, smooth: int = ENVELOPE_SMOOTH_FRAMES
) -> np.ndarray:
    """Speech-band amplitude envelope per video frame, ``(num_frames,)``.

    The audio is band-passed to 300–3400 Hz (the telephone speech band: removes hum, rumble and hiss), its RMS
    taken over each frame's span ``[k / fps, (k + 1) / fps)`` (0 past the end of the audio), then smoothed by a
    centred moving average of ``smooth`` frames.
    """
    from scipy.signal import butter, sosfiltfilt

    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {audio.shape}")
    if fps <= 0 or sampling_rate <= 0:
        raise ValueError(f"fps and sampling_rate must be positive, got fps={fps}, sampling_rate={sampling_rate}")
    if audio.size > 27 and sampling_rate > 2 * SPEECH_BAND[1]:
        audio = sosfiltfilt(butter(4, SPEECH_BAND, btype="band", fs=sampling_rate, output="sos"), audio)
    bounds = np.round(np.arange(num_frames + 1) * sampling_rate / fps).astype(np.int64)
    rms = np.zeros(num_frames)
    for k in range(num_frames):
        chunk = audio[bounds[k] : bounds[k + 1]]
        rms[k] = np.sqrt(np.mean(chunk**2)) if chunk.size else 0.0
    if smooth > 1 and num_frames:
        padded = np.pad(rms, (smooth // 2, smooth - 1 - smooth // 2), mode="edge")
        rms = np.convolve(padded, np.ones(smooth) / smooth, mode="valid")
    return rms


def aperture_range(aperture: np.ndarray) -> tuple[float, float]:
    """Robust minimum and maximum of the aperture: its 2nd and 95th percentiles (NaN if no valid frame)."""
    values = np.asarray(aperture, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2, 95])
    return float(low), float(high)


def is_static(aperture: np.ndarray) -> bool:
    """Whether the mouth barely moves (robust range below :data:`MIN_APERTURE_RANGE`, or no valid frame)."""
    low, high = aperture_range(aperture)
    return not np.isfinite(high - low) or high - low < MIN_APERTURE_RANGE


def closure_threshold(aperture: np.ndarray, fraction: float = CLOSURE_FRACTION) -> float:
    """Aperture below which the lips count as closed: robust min + ``fraction`` × robust range.

    NaN when the aperture barely moves (a still face): closure is then undefined rather than "always closed".
    """
    if is_static(aperture):
        return float("nan")
    low, high = aperture_range(aperture)
    return float(low + fraction * (high - low))


def _frame_span(segment: PhoneSegment, fps: float, num_frames: int, tolerance: int) -> tuple[int, int]:
    # Frames whose centre lies inside the segment, widened by `tolerance` frames each side.
    first = int(np.ceil(segment.start * fps - 0.5)) - tolerance
    last = int(np.floor(segment.end * fps - 0.5)) + tolerance
    first, last = max(first, 0), min(last, num_frames - 1)
    if last < first:  # segment shorter than a frame: take the frame containing its centre
        centre = int(np.clip(np.floor((segment.start + segment.end) / 2 * fps), 0, num_frames - 1))
        first, last = centre, centre
    return first, last


def _select(segments: Sequence[PhoneSegment], phones: frozenset[str], fps: float, num_frames: int) -> list:
    return [s for s in segments if s.phone in phones and s.start * fps < num_frames]


def bilabial_closure_rate(
    aperture: np.ndarray,
    segments: Sequence[PhoneSegment],
    fps: float,
    threshold: float | None = None,
    tolerance: int = SEGMENT_TOLERANCE_FRAMES,
) -> float:
    """Fraction of /p b m/ segments with at least one closed-lip frame (NaN if undefined or no segments)."""
    aperture = np.asarray(aperture, dtype=np.float64)
    threshold = closure_threshold(aperture) if threshold is None else threshold
    bilabials = _select(segments, BILABIALS, fps, len(aperture))
    if not np.isfinite(threshold) or not bilabials:
        return float("nan")
    closed = aperture <= threshold
    hits = []
    for segment in bilabials:
        first, last = _frame_span(segment, fps, len(aperture), tolerance)
        window = aperture[first : last + 1]
        if np.isfinite(window).any():
            hits.append(bool(closed[first : last + 1].any()))
    return float(np.mean(hits)) if hits else float("nan")


def shifted_closure_rate(
    aperture: np.ndarray,
    segments: Sequence[PhoneSegment],
    fps: float,
    threshold: float | None = None,
    num_shifts: int = NUM_SHIFTS,
    seed: int = 0,
    tolerance: int = SEGMENT_TOLERANCE_FRAMES,
) -> float:
    """Closure rate of the /p b m/ segments moved to random positions in the video (seeded): the chance level.

    Each draw moves every segment independently to a uniformly random start inside the video, keeping its
    duration; the result is the mean rate over ``num_shifts`` draws.
    """
    aperture = np.asarray(aperture, dtype=np.float64)
    threshold = closure_threshold(aperture) if threshold is None else threshold
    bilabials = _select(segments, BILABIALS, fps, len(aperture))
    if not np.isfinite(threshold) or not bilabials:
        return float("nan")
    duration = len(aperture) / fps
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(num_shifts):
        moved = []
        for segment in bilabials:
            length = segment.end - segment.start
            start = rng.uniform(0.0, max(duration - length, 0.0))
            moved.append(PhoneSegment(segment.phone, start, start + length))
        rate = bilabial_closure_rate(aperture, moved, fps, threshold=threshold, tolerance=tolerance)
        if np.isfinite(rate):
            rates.append(rate)
    return float(np.mean(rates)) if rates else float("nan")


def segment_apertures(
    aperture: np.ndarray, segments: Sequence[PhoneSegment], phones: frozenset[str], fps: float, reducer=np.nanmax
) -> np.ndarray:
    """One aperture value per segment of the given phones (``reducer`` over its frames, default the maximum)."""
    aperture = np.asarray(aperture, dtype=np.float64)
    values = []
    for segment in _select(segments, phones, fps, len(aperture)):
        first, last = _frame_span(segment, fps, len(aperture), 0)
        window = aperture[first : last + 1]
        if np.isfinite(window).any():
            values.append(float(reducer(window)))
    return np.asarray(values)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(positive > negative) + ½ P(tie) (Mann–Whitney); NaN if a side is empty."""
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.asarray(negative, dtype=np.float64).ravel()
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + 0.5 * ties) / (positive.size * negative.size))


def vowel_bilabial_auc(aperture: np.ndarray, segments: Sequence[PhoneSegment], fps: float) -> float:
    """AUC of the per-segment (maximum) aperture separating open vowels from /p b m/ (0.5 = no separation)."""
    vowels = segment_apertures(aperture, segments, OPEN_VOWELS, fps)
    bilabials = segment_apertures(aperture, segments, BILABIALS, fps)
    return auc(vowels, bilabials)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    good = np.isfinite(x) & np.isfinite(y)
    if good.sum() < 3:
        return float("nan")
    x, y = x[good] - x[good].mean(), y[good] - y[good].mean()
    denominator = np.sqrt((x**2).sum() * (y**2).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def lag_correlations(aperture: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG_FRAMES) -> dict[int, float]:
    """Pearson correlation of ``aperture[t + d]`` with ``envelope[t]`` for each lag ``d`` in ``[-max_lag, max_lag]``."""
    aperture = np.asarray(aperture, dtype=np.float64)
    envelope = np.asarray(envelope, dtype=np.float64)
    n = min(len(aperture), len(envelope))
    aperture, envelope = aperture[:n], envelope[:n]
    out = {}
    for d in range(-max_lag, max_lag + 1):
        if d >= 0:
            out[d] = _pearson(aperture[d:], envelope[: n - d])
        else:
            out[d] = _pearson(aperture[: n + d], envelope[-d:])
    return out


def best_lag(aperture: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG_FRAMES) -> tuple[float, float]:
    """The lag (frames; negative = mouth ahead of the sound) with the highest correlation, and that correlation.

    ``(nan, nan)`` when the correlation is undefined at every lag (e.g. a still face).
    """
    correlations = lag_correlations(aperture, envelope, max_lag)
    finite = {d: c for d, c in correlations.items() if np.isfinite(c)}
    if not finite:
        return float("nan"), float("nan")
    # Ties go to the smallest |lag|.
    lag = max(finite, key=lambda d: (finite[d], -abs(d)))
    return float(lag), float(finite[lag])


def lipsync_scores(
    aperture: np.ndarray,
    segments: Sequence[PhoneSegment],
    envelope: np.ndarray,
    fps: float,
    seed: int = 0,
    max_lag: int = MAX_LAG_FRAMES,
) -> LipSyncScores:
    """All lip-sync proxies for one video from its aperture signal, phone segments and audio envelope.

    A static mouth (see :func:`is_static`) carries no lip-sync signal: it gets lift 0, AUC 0.5, correlation 0
    and undefined closure rates and lag, instead of scores computed on tracking noise.
    """
    aperture = np.asarray(aperture, dtype=np.float64)
    num_bilabials = len(_select(segments, BILABIALS, fps, len(aperture)))
    num_vowels = len(_select(segments, OPEN_VOWELS, fps, len(aperture)))
    nan = float("nan")
    if is_static(aperture):
        return LipSyncScores(nan, nan, 0.0, 0.5, nan, 0.0, num_bilabials, num_vowels, nan, static_mouth=True)
    threshold = closure_threshold(aperture)
    rate = bilabial_closure_rate(aperture, segments, fps, threshold=threshold)
    shifted = shifted_closure_rate(aperture, segments, fps, threshold=threshold, seed=seed)
    lag, correlation = best_lag(aperture, envelope, max_lag)
    return LipSyncScores(
        closure_rate=rate,
        closure_rate_shifted=shifted,
        closure_lift=rate - shifted,
        vowel_bilabial_auc=vowel_bilabial_auc(aperture, segments, fps),
        lag_frames=lag,
        lag_correlation=correlation,
        num_bilabials=num_bilabials,
        num_open_vowels=num_vowels,
        closure_threshold=threshold,
    )
