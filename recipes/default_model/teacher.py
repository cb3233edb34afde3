"""Procedural articulation teacher: ARPAbet phones with timings → stage-1 targets (expression, pose, gaze, blink).

The teacher is the supervision of stage 1 where no talking-face dataset exists, and a baseline row of the
evaluation table. It is pure numpy and seeded:

1. **Visemes.** Every ARPAbet phone maps to articulatory targets (:data:`VISEMES`): jaw opening, lip spread,
   rounding, protrusion, bilabial closure, upper-lip raise and the labiodental lower-lip tuck. Diphthongs
   (AW AY EY OW OY) glide between two targets.
2. **Coarticulation.** Targets are blended with Cohen–Massaro dominance functions: each phone dominates its own
   span and its influence decays exponentially outside it, faster after (carry-over) than before (anticipation),
   and slower for the lips' rounding than for the jaw. Bilabial closure is a hard constraint on top: the lips
   close over every /p b m/ (at least :data:`MIN_CLOSURE` seconds). Everything is shifted ``lead`` seconds
   earlier than the acoustic phone timings: the mouth moves before the sound it makes.
3. **Displacement bases.** Mouth parameters become 478×3 canonical offsets through bases calibrated on real
   talking videos (:mod:`recipes.default_model.calibrate_emotions`): the jaw-open and spread/round bases are
   regressions of real face-mesh tracks on the inner-lip aperture and the mouth width; protrusion, upper-lip
   raise and the lower-lip tuck are geometric. The closure is an exact operator (upper and lower inner-lip points
   meet, the rest of the lips and the surrounding skin follow smoothly). Aperture targets are in the units of
   :func:`aperture` (the evaluation suite's inner-lip opening over the outer eye-corner distance) and scaled to
   the real videos' range.
4. **Emotion** adds per-emotion offsets measured on real MEAD clips (intensity 1 = MEAD level 3), per frame
   weights ``(T, 8)`` allowed. **Head motion** (smooth, louder speech → more motion, emotion-dependent amplitude
   and posture), **blinks** (every 2–6 s, 100–200 ms) and **gaze** (fixations with small saccades) reuse the
   pipeline's seeded generators (:mod:`emotalk_pipeline.motion`).

Canonical space (see :mod:`modeling_emotalk.landmarks`): x right, y down, z into the screen, unit = distance
between the eye centres. Offsets are relative to a reference face (the calibrated template by default); the
teacher first brings the reference's mouth to rest (lips just touching), so an open-mouthed photo still closes
at bilabials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from emotalk_common.alignment import BILABIALS
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS
from emotalk_common.lip_measures import eye_corner_distance, lip_opening_3d
from emotalk_training.phones import SILENCE, normalize_phone

from modeling_emotalk.landmarks import (
    IRISES,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LEFT_IRIS,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    MOUTH_CORNERS,
    NUM_LANDMARKS,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    RIGHT_IRIS,
)

BASES_FILE = Path(__file__).resolve().parent / "resources" / "emotion_bases.npz"
MOUTH_PARAMS = ("jaw", "spread", "round", "protrusion", "closure", "upper_raise", "lower_tuck")

GRID_HZ = 500.0  # parameter tracks are computed on this grid, then pooled per video frame
MIN_CLOSURE = 0.05  # seconds the lips stay closed at least, for a bilabial
CLOSURE_RAMP = 0.03  # seconds to close / open around a bilabial
DEFAULT_LEAD = 0.05  # seconds the articulation precedes the acoustic phone timings
DOMINANCE_REACH = 0.6  # seconds beyond which a phone's dominance is ignored


# --------------------------------------------------------------------------------------------------- geometry


def mouth_width(points: np.ndarray) -> np.ndarray:
    """Mouth-corner distance (61–291) over the outer eye-corner distance, ``(...)``."""
    corners = np.linalg.norm(points[..., MOUTH_CORNERS[0], :] - points[..., MOUTH_CORNERS[1], :], axis=-1)
    return corners / eye_corner_distance(points)


def fix_irises(offsets: np.ndarray) -> np.ndarray:
    """Offsets whose iris points move with the mean of their eye's contour (no gaze change hidden in them)."""
    out = np.array(offsets, dtype=np.float64, copy=True)
    for iris, eye in ((RIGHT_IRIS, RIGHT_EYE_UPPER + RIGHT_EYE_LOWER), (LEFT_IRIS, LEFT_EYE_UPPER + LEFT_EYE_LOWER)):
        out[..., list(iris), :] = out[..., list(eye), :].mean(axis=-2, keepdims=True)
    return out


def _lip_sides() -> tuple[list[int], list[int], np.ndarray]:
    """Lip points driven by the closure: (points, pair index per point, side +1 upper / -1 lower)."""
    points, pairs, sides = [], [], []
    for rows, side in (((LIPS_INNER_UPPER, LIPS_OUTER_UPPER), 1.0), ((LIPS_INNER_LOWER, LIPS_OUTER_LOWER), -1.0)):
        for row in rows:
            for pair, index in enumerate(row):
                if index in MOUTH_CORNERS or index in (78, 308) or index in points:
                    continue
                points.append(index)
                pairs.append(pair)
                sides.append(side)
    return points, pairs, np.array(sides)


def _skin_weights(template: np.ndarray, sources: Sequence[int], sigma: float, reach: float) -> np.ndarray:
    """``(478, len(sources))`` normalized Gaussian weights of every point on the source points, faded with distance.

    Source points themselves get weight 1 on themselves; a point far from all sources gets 0.
    """
    xy = template[:, :2]
    distance = np.linalg.norm(xy[:, None] - xy[None, list(sources)], axis=-1)
    kernel = np.exp(-0.5 * (distance / sigma) ** 2)
    weights = kernel / kernel.sum(axis=1, keepdims=True)
    fade = np.exp(-0.5 * (distance.min(axis=1) / reach) ** 2)
    weights *= fade[:, None]
    for column, index in enumerate(sources):
        weights[index] = 0.0
        weights[index, column] = 1.0
    weights[list(IRISES)] = 0.0
    return weights


def closure_map(template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear map of the lip-closure operator on a face like ``template``.

    Returns ``(matrix (478, P), pair_of_driver (P,))``: the displacement of every point is
    ``matrix @ driver_displacements`` where each driver (a lip point) moves by its side's share of the gap of its
    inner-lip pair (see :func:`close_lips`).
    """
    points, pairs, sides = _lip_sides()
    weights = _skin_weights(template, points, sigma=0.05, reach=0.12)
    # Skin above the mouth follows the upper lip, below it the lower lip: drop cross-side weights.
    mouth_line = template[list(LIPS_INNER_UPPER) + list(LIPS_INNER_LOWER), 1].mean()
    above = template[:, 1] < mouth_line
    upper = sides > 0
    weights[np.ix_(above, ~upper)] = 0.0
    weights[np.ix_(~above, upper)] = 0.0
    for column, index in enumerate(points):  # the lip points themselves keep their own driver
        weights[index] = 0.0
        weights[index, column] = 1.0
    weights[[*list(MOUTH_CORNERS), 78, 308]] = 0.0  # the corners stay: the lips close between them
    return weights, np.array(pairs)


UPPER_SHARE = 0.4  # share of the gap the upper lip covers when the lips close (the lower lip and jaw do the rest)


def close_lips(faces: np.ndarray, amount: np.ndarray, matrix: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Lip-closure displacement ``(T, 478, 3)`` for faces ``(T, 478, 3)`` and closure ``amount`` ``(T,)`` in [0, 1].

    With ``amount = 1`` every upper/lower inner-lip pair meets exactly (upper lip :data:`UPPER_SHARE` of the way);
    outer lip points move with their inner partners and nearby skin follows.
    """
    _, _, sides = _lip_sides()
    gap = faces[:, list(LIPS_INNER_LOWER), :] - faces[:, list(LIPS_INNER_UPPER), :]  # (T, 11, 3)
    share = np.where(sides > 0, UPPER_SHARE, -(1 - UPPER_SHARE))  # upper moves +gap, lower moves -gap
    drivers = gap[:, pairs, :] * share[None, :, None] * np.asarray(amount)[:, None, None]  # (T, P, 3)
    return np.einsum("np,tpc->tnc", matrix, drivers)


def lower_face_mask(template: np.ndarray, top: float = 0.3, bottom: float = 0.6) -> np.ndarray:
    """``(478,)`` weights: 0 above canonical ``y = top`` (eyes, brows, upper nose), 1 below ``bottom``, smooth between.

    Real speech moves the brows a little with the jaw (emphasis); articulation bases keep the upper face still so
    that mouth movements never read as blinks or brow expressions.
    """
    t = np.clip((np.asarray(template)[:, 1] - top) / (bottom - top), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def rest_template(template: np.ndarray, open_basis: np.ndarray) -> np.ndarray:
    """``template`` with the lips just touching: the jaw basis removes its opening, the closure removes the rest."""
    template = np.asarray(template, dtype=np.float64)
    epsilon = 0.01
    opening = lip_opening_3d(template + epsilon * open_basis) - lip_opening_3d(template - epsilon * open_basis)
    slope = opening / (2 * epsilon)
    face = template - (lip_opening_3d(template) / max(float(slope), 1e-6)) * open_basis
    matrix, pairs = closure_map(face)
    return face + close_lips(face[None], np.ones(1), matrix, pairs)[0]


def normalize_open_basis(rest: np.ndarray, open_basis: np.ndarray, level: float = 0.12) -> np.ndarray:
    """Scale the jaw basis so that ``lip_opening_3d(rest + s * basis) = s`` at ``s = level`` (a typical open vowel)."""
    scale = 1.0
    for _ in range(6):  # the aperture is nearly linear in the coefficient: a few fixed-point steps suffice
        scale *= level / max(float(lip_opening_3d(rest + level * scale * open_basis)), 1e-6)
    return open_basis * scale


def build_geometric_bases(rest: np.ndarray) -> dict[str, np.ndarray]:
    """Protrusion, upper-lip raise and labiodental tuck bases on a rest face (lips together), ``(478, 3)`` each.

    Units: protrusion 1 = the lips move 0.08 eye-centre distances toward the camera; upper raise 1 = one unit
    of :func:`aperture` (the upper lip rises until the aperture grows by 1); tuck 1 = the lower lip moves up
    by 0.01 and back by 0.05 (under the upper teeth).
    """
    points, _, sides = _lip_sides()
    weights = _skin_weights(rest, points, sigma=0.05, reach=0.12).sum(axis=1).clip(0, 1)
    mouth_line = rest[list(LIPS_INNER_UPPER) + list(LIPS_INNER_LOWER), 1].mean()
    upper_points = [p for p, s in zip(points, sides, strict=True) if s > 0]
    lower_points = [p for p, s in zip(points, sides, strict=True) if s < 0]
    upper_weights = _skin_weights(rest, upper_points, sigma=0.05, reach=0.10).sum(axis=1).clip(0, 1)
    upper_weights[rest[:, 1] > mouth_line] = 0.0
    upper_weights[list(upper_points)] = 1.0
    lower_weights = _skin_weights(rest, lower_points, sigma=0.05, reach=0.10).sum(axis=1).clip(0, 1)
    lower_weights[rest[:, 1] < mouth_line] = 0.0
    lower_weights[list(lower_points)] = 1.0
    corner_distance = float(eye_corner_distance(rest))
    protrusion = np.zeros((NUM_LANDMARKS, 3))
    protrusion[:, 2] = -0.08 * weights
    upper_raise = np.zeros((NUM_LANDMARKS, 3))
    upper_raise[:, 1] = -corner_distance * upper_weights
    upper_raise = normalize_open_basis(rest, upper_raise, level=0.05)
    tuck = np.zeros((NUM_LANDMARKS, 3))
    tuck[:, 1] = -0.01 * lower_weights
    tuck[:, 2] = 0.05 * lower_weights
    return {"protrusion": protrusion, "upper_raise": upper_raise, "lower_tuck": tuck}


# ----------------------------------------------------------------------------------------------------- visemes


@dataclass(frozen=True)
class Viseme:
    """Articulatory targets of a phone. ``jaw`` and ``upper_raise`` are fractions of the open-vowel aperture;
    ``spread`` / ``round`` fractions of the real mouth-width range; ``protrusion``, ``lower_tuck`` in [0, 1].

    ``strength`` scales the dominance of the jaw (vowels high, consonants that take their neighbours' jaw low);
    ``lip_strength`` the dominance of spread, rounding and protrusion.
    """

    jaw: float
    spread: float = 0.0
    round: float = 0.0
    protrusion: float = 0.0
    upper_raise: float = 0.0
    lower_tuck: float = 0.0
    strength: float = 1.0
    lip_strength: float = 0.5


_V = Viseme
VISEMES: dict[str, tuple[Viseme, ...]] = {
    # open vowels
    "AA": (_V(1.00, 0.10, lip_strength=0.6),),
    "AE": (_V(0.85, 0.45, upper_raise=0.10, lip_strength=0.7),),
    "AH": (_V(0.70, 0.10, lip_strength=0.4),),
    "AO": (_V(0.85, 0.00, 0.45, 0.35, lip_strength=0.8),),
    "AW": (_V(0.95, 0.10), _V(0.35, 0.0, 0.85, 0.70, lip_strength=0.9)),
    "AY": (_V(0.95, 0.10), _V(0.35, 0.65, lip_strength=0.7)),
    # other vowels
    "EH": (_V(0.60, 0.40, upper_raise=0.05, lip_strength=0.7),),
    "IH": (_V(0.40, 0.50, lip_strength=0.7),),
    "IY": (_V(0.25, 0.90, lip_strength=0.9),),
    "UH": (_V(0.35, 0.00, 0.60, 0.50, lip_strength=0.8),),
    "UW": (_V(0.22, 0.00, 1.00, 0.90, lip_strength=1.0),),
    "ER": (_V(0.35, 0.00, 0.45, 0.45, lip_strength=0.8),),
    "EY": (_V(0.60, 0.45), _V(0.30, 0.80, lip_strength=0.8)),
    "OW": (_V(0.70, 0.00, 0.60, 0.45, lip_strength=0.8), _V(0.30, 0.00, 0.95, 0.85, lip_strength=0.9)),
    "OY": (_V(0.75, 0.00, 0.60, 0.45, lip_strength=0.8), _V(0.30, 0.70, lip_strength=0.7)),
    # bilabials (the closure itself is a hard constraint)
    "P": (_V(0.08, 0.0, strength=0.9, lip_strength=0.3),),
    "B": (_V(0.08, 0.0, strength=0.9, lip_strength=0.3),),
    "M": (_V(0.08, 0.0, strength=0.9, lip_strength=0.3),),
    # labiodentals
    "F": (_V(0.15, 0.10, lower_tuck=1.0, strength=0.9, lip_strength=0.6),),
    "V": (_V(0.15, 0.10, lower_tuck=1.0, strength=0.9, lip_strength=0.6),),
    # dentals, alveolars, postalveolars
    "TH": (_V(0.25, 0.15, strength=0.6, lip_strength=0.3),),
    "DH": (_V(0.22, 0.15, strength=0.5, lip_strength=0.3),),
    "T": (_V(0.22, 0.10, strength=0.5, lip_strength=0.2),),
    "D": (_V(0.22, 0.10, strength=0.5, lip_strength=0.2),),
    "N": (_V(0.20, 0.10, strength=0.5, lip_strength=0.2),),
    "L": (_V(0.30, 0.00, strength=0.4, lip_strength=0.2),),
    "S": (_V(0.12, 0.35, strength=0.8, lip_strength=0.4),),
    "Z": (_V(0.12, 0.35, strength=0.8, lip_strength=0.4),),
    "SH": (_V(0.18, 0.00, 0.55, 0.85, upper_raise=0.15, strength=0.8, lip_strength=0.9),),
    "ZH": (_V(0.18, 0.00, 0.55, 0.85, upper_raise=0.15, strength=0.8, lip_strength=0.9),),
    "CH": (_V(0.16, 0.00, 0.50, 0.80, upper_raise=0.12, strength=0.8, lip_strength=0.9),),
    "JH": (_V(0.16, 0.00, 0.50, 0.80, upper_raise=0.12, strength=0.8, lip_strength=0.9),),
    "R": (_V(0.25, 0.00, 0.55, 0.55, strength=0.5, lip_strength=0.8),),
    "Y": (_V(0.18, 0.60, strength=0.5, lip_strength=0.6),),
    "W": (_V(0.12, 0.00, 1.00, 0.90, strength=0.7, lip_strength=1.0),),
    # velars, glottal
    "K": (_V(0.30, 0.05, strength=0.3, lip_strength=0.1),),
    "G": (_V(0.30, 0.05, strength=0.3, lip_strength=0.1),),
    "NG": (_V(0.25, 0.05, strength=0.3, lip_strength=0.1),),
    "HH": (_V(0.45, 0.00, strength=0.15, lip_strength=0.05),),
    # rest: lips lightly together, slightly parted
    SILENCE: (_V(0.05, 0.0, strength=0.6, lip_strength=0.4),),
}


def as_segments(phones: Iterable[Any]) -> list[tuple[str, float, float]]:
    """``(phone, start_s, end_s)`` triples from tuples or objects with ``phone``/``start``/``end`` attributes."""
    out = []
    for item in phones:
        if hasattr(item, "phone"):
            phone, start, end = item.phone, item.start, item.end
        else:
            phone, start, end = item
        if float(end) > float(start):
            out.append((normalize_phone(phone), float(start), float(end)))
    return sorted(out, key=lambda s: s[1])


# ----------------------------------------------------------------------------------------------------- bases


@dataclass
class TeacherBases:
    """Calibrated statistics of the teacher (``recipes/default_model/resources/emotion_bases.npz``).

    Attributes:
        template: ``(478, 3)`` the calibrated average face (MEAD actors' neutral medians), canonical.
        rest: ``(478, 3)`` the template with the lips just touching.
        basis: ``{name: (478, 3)}`` displacement per unit of: ``open`` (aperture), ``spread`` (mouth width),
            ``protrusion``, ``upper_raise`` (aperture), ``lower_tuck``.
        emotion_offsets: ``(8, 478, 3)`` per-emotion offsets at intensity 1 (MEAD level 3), neutral = 0, with the
            lips together (the speech's opening removed).
        emotion_jaw_gain: ``(8,)`` how much wider the mouth opens when speaking with each emotion (neutral 1).
        open_aperture: the aperture of the fully open jaw (``jaw = 1``), scaled so that the teacher driven by real
            speech opens the mouth as wide as the real videos (their median 95th percentile).
        width_range: the mouth-width change of ``spread = 1`` (and of ``round = 1``, narrowing).
        info: the calibration record (sources, statistics, validation).
    """

    template: np.ndarray
    rest: np.ndarray
    basis: dict[str, np.ndarray]
    emotion_offsets: np.ndarray
    emotion_jaw_gain: np.ndarray = field(default_factory=lambda: np.ones(len(EMOTIONS)))
    open_aperture: float = 0.14
    width_range: float = 0.06
    emotion_offsets_by_actor: dict[str, np.ndarray] = field(default_factory=dict)
    emotion_jaw_gain_by_actor: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> TeacherBases:
        """Load the calibration file (default: ``recipes/default_model/resources/emotion_bases.npz``)."""
        import json

        path = Path(path) if path is not None else BASES_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"teacher calibration not found at {path}; run `python -m recipes.default_model.calibrate_emotions`"
            )
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"])) if "info" in data else {}
            basis = {
                key[len("basis_") :]: data[key].astype(np.float64) for key in data.files if key.startswith("basis_")
            }
            emotions = [str(e) for e in data["emotions"]]
            if tuple(emotions) != EMOTIONS:
                raise ValueError(f"unexpected emotion order in {path}: {emotions}")
            actors = [str(a) for a in data["actors"]] if "actors" in data else []
            by_actor = (
                {a: data["emotion_offsets_by_actor"][i].astype(np.float64) for i, a in enumerate(actors)}
                if "emotion_offsets_by_actor" in data
                else {}
            )
            gains_by_actor = (
                {a: data["emotion_jaw_gain_by_actor"][i].astype(np.float64) for i, a in enumerate(actors)}
                if "emotion_jaw_gain_by_actor" in data
                else {}
            )
            stats = info.get("aperture_statistics", {}).get("train", {})
            percentiles = stats.get("percentiles", [])
            open_aperture = cls.open_aperture
            width_range = cls.width_range
            if "open_aperture" in data:
                open_aperture, width_range = float(data["open_aperture"]), float(data["width_range"])
            elif 95 in percentiles:
                open_aperture = float(stats["aperture_median_over_videos"][percentiles.index(95)])
                widths = np.array(list(stats["width"].values()))
                width_range = float(np.median(widths[:, percentiles.index(95)] - widths[:, percentiles.index(5)]))
            return cls(
                template=data["template"].astype(np.float64),
                rest=data["rest_template"].astype(np.float64),
                basis=basis,
                emotion_offsets=data["emotion_offsets"].astype(np.float64),
                emotion_jaw_gain=data["emotion_jaw_gain"].astype(np.float64)
                if "emotion_jaw_gain" in data
                else np.ones(len(EMOTIONS)),
                open_aperture=open_aperture,
                width_range=width_range,
                emotion_offsets_by_actor=by_actor,
                emotion_jaw_gain_by_actor=gains_by_actor,
                info=info,
            )


# ------------------------------------------------------------------------------------------- parameter tracks


def _dominance(times: np.ndarray, start: float, end: float, anticipation: float, carryover: float) -> np.ndarray:
    """Cohen–Massaro dominance: 1 inside ``[start, end]``, ``exp(-distance / time_constant)`` outside."""
    before = np.clip(start - times, 0, None)
    after = np.clip(times - end, 0, None)
    return np.exp(-before / anticipation - after / carryover)


def _targets(segments: Sequence[tuple[str, float, float]]) -> list[tuple[Viseme, float, float]]:
    """One ``(viseme, start, end)`` per articulatory target (diphthongs split 55 / 45)."""
    out = []
    for phone, start, end in segments:
        visemes = VISEMES[phone]
        if len(visemes) == 1:
            out.append((visemes[0], start, end))
        else:
            middle = start + 0.55 * (end - start)
            out.append((visemes[0], start, middle))
            out.append((visemes[1], middle, end))
    return out


@dataclass(frozen=True)
class Coarticulation:
    """Time constants (seconds) of the dominance functions and the lead of the articulation over the sound.

    ``lead`` shifts every target earlier than the acoustic timings. The lips of a /p b m/ meet ``closure_lead``
    before the segment's acoustic start (they travel toward each other during the :data:`CLOSURE_RAMP` before)
    and part ``release_lead`` before its acoustic end: the stop closure's silence or the nasal murmur begins,
    and the burst or the vowel onset happens, when the lips seal and part, so both are small.
    """

    lead: float = DEFAULT_LEAD
    closure_lead: float = 0.02
    release_lead: float = 0.0
    jaw_anticipation: float = 0.030
    jaw_carryover: float = 0.025
    lip_anticipation: float = 0.070
    lip_carryover: float = 0.040
    silence_strength: float = 0.6


def parameter_tracks(
    phones: Iterable[Any],
    num_frames: int,
    fps: float,
    coarticulation: Coarticulation | None = None,
) -> np.ndarray:
    """Mouth parameters per video frame ``(T, len(MOUTH_PARAMS))`` from phone timings (seconds).

    Frame ``k`` covers ``[k / fps, (k + 1) / fps)``: parameters are averaged over that span, except the closure,
    which is taken at the frame's centre. Times outside the phones are silence.
    """
    co = coarticulation or Coarticulation()
    segments = as_segments(phones)
    duration = num_frames / fps
    # Fill the gaps (before, between, after) with silence so that the rest pose dominates there.
    filled: list[tuple[str, float, float]] = []
    cursor = 0.0
    for phone, start, end in segments:
        if start > cursor + 1e-6:
            filled.append((SILENCE, cursor, start))
        filled.append((phone, start, end))
        cursor = max(cursor, end)
    if cursor < duration:
        filled.append((SILENCE, cursor, duration + 1.0))
    grid = (np.arange(math.ceil(duration * GRID_HZ)) + 0.5) / GRID_HZ
    shifted = grid + co.lead  # articulation at time t shows the sound of t + lead
    num = np.zeros((len(grid), len(MOUTH_PARAMS)))
    den = np.zeros((len(grid), 2))  # jaw-like, lip-like
    jaw_like = [MOUTH_PARAMS.index(p) for p in ("jaw", "upper_raise", "lower_tuck")]
    lip_like = [MOUTH_PARAMS.index(p) for p in ("spread", "round", "protrusion")]
    for viseme, start, end in _targets(filled):
        lo = np.searchsorted(shifted, start - DOMINANCE_REACH)
        hi = np.searchsorted(shifted, end + DOMINANCE_REACH)
        if hi <= lo:
            continue
        t = shifted[lo:hi]
        silent = viseme is VISEMES[SILENCE][0]
        jaw_strength = co.silence_strength if silent else viseme.strength
        jaw_d = jaw_strength * _dominance(t, start, end, co.jaw_anticipation, co.jaw_carryover)
        lip_d = viseme.lip_strength * _dominance(t, start, end, co.lip_anticipation, co.lip_carryover)
        values = np.array([viseme.jaw, viseme.spread, viseme.round, viseme.protrusion, 0.0,
                           viseme.upper_raise, viseme.lower_tuck])  # fmt: skip
        num[lo:hi, jaw_like] += jaw_d[:, None] * values[jaw_like]
        num[lo:hi, lip_like] += lip_d[:, None] * values[lip_like]
        den[lo:hi, 0] += jaw_d
        den[lo:hi, 1] += lip_d
    tracks = np.zeros_like(num)
    tracks[:, jaw_like] = num[:, jaw_like] / np.maximum(den[:, :1], 1e-9)
    tracks[:, lip_like] = num[:, lip_like] / np.maximum(den[:, 1:], 1e-9)
    # Bilabial closure: a hard constraint, the lips closed over the (shifted) segment, smooth ramps around it.
    closure = np.zeros(len(grid))
    for phone, start, end in segments:
        if phone not in BILABIALS:
            continue
        close_from = start - co.closure_lead
        close_to = max(end - co.release_lead, close_from + MIN_CLOSURE)
        inside = (grid >= close_from) & (grid <= close_to)
        ramp_in = np.clip((grid - (close_from - CLOSURE_RAMP)) / CLOSURE_RAMP, 0, 1)
        ramp_out = np.clip(((close_to + CLOSURE_RAMP) - grid) / CLOSURE_RAMP, 0, 1)
        shape = np.where(inside, 1.0, np.minimum(ramp_in, ramp_out))
        closure = np.maximum(closure, 0.5 - 0.5 * np.cos(np.pi * shape))
    tracks[:, MOUTH_PARAMS.index("closure")] = closure
    # Pool per video frame: the mean over the frame's span; the closure at its centre (every closure lasts at least
    # MIN_CLOSURE > one frame at 25 fps, so each bilabial has a fully closed frame).
    bounds = np.searchsorted(grid, np.arange(num_frames + 1) / fps)
    out = np.zeros((num_frames, len(MOUTH_PARAMS)))
    for k in range(num_frames):
        lo, hi = bounds[k], max(bounds[k + 1], bounds[k] + 1)
        chunk = tracks[lo:hi] if lo < len(tracks) else tracks[-1:]
        out[k] = chunk.mean(axis=0)
    centres = (np.arange(num_frames) + 0.5) / fps
    out[:, MOUTH_PARAMS.index("closure")] = np.interp(centres, grid, closure)
    return out


# ------------------------------------------------------------------------------------------ emotion, motion


def emotion_weight_track(emotion: Any, num_frames: int) -> np.ndarray:
    """``(T, 8)`` weights from a label, a blend ``{label: weight}``, an ``(8,)`` vector or a ``(T, 8)`` array."""
    if emotion is None:
        weights = np.zeros(len(EMOTIONS))
        weights[0] = 1.0
    elif isinstance(emotion, str):
        if emotion.lower() not in EMOTIONS:
            raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
        weights = np.eye(len(EMOTIONS))[EMOTIONS.index(emotion.lower())]
    elif isinstance(emotion, Mapping):
        weights = np.zeros(len(EMOTIONS))
        for name, value in emotion.items():
            weights[EMOTIONS.index(str(name).lower())] += float(value)
        weights = weights / max(weights.sum(), 1e-9)
    else:
        weights = np.asarray(emotion, dtype=np.float64)
    if weights.ndim == 1:
        weights = np.repeat(weights[None], num_frames, axis=0)
    if weights.shape != (num_frames, len(EMOTIONS)):
        raise ValueError(f"emotion weights must be (8,) or ({num_frames}, 8), got {weights.shape}")
    return weights


# Per emotion: head-motion amplitude factor, mean pitch (radians, + = head down), gaze vertical bias (+ = down),
# gaze saccade amplitude factor.
EMOTION_MOTION = {
    "neutral": (1.00, 0.00, 0.00, 1.0),
    "angry": (1.35, 0.02, 0.00, 0.8),
    "contempt": (0.90, -0.02, 0.00, 1.0),
    "disgusted": (1.05, 0.01, 0.02, 1.1),
    "fear": (1.15, 0.02, 0.00, 1.5),
    "happy": (1.30, -0.02, 0.00, 1.0),
    "sad": (0.60, 0.07, 0.08, 0.7),
    "surprised": (1.30, -0.04, -0.02, 1.2),
}


def phone_energy(phones: Iterable[Any], num_frames: int, fps: float) -> np.ndarray:
    """A loudness proxy per frame from phones (vowels 1, voiced consonants 0.6, others 0.3, silence 0), smoothed."""
    level = np.zeros(num_frames)
    times = (np.arange(num_frames) + 0.5) / fps
    vowels = {p for p in VISEMES if p[0] in "AEIOU"}
    voiced = {"B", "D", "G", "M", "N", "NG", "L", "R", "W", "Y", "V", "DH", "Z", "ZH", "JH"}
    for phone, start, end in as_segments(phones):
        value = 1.0 if phone in vowels else 0.6 if phone in voiced else 0.0 if phone == SILENCE else 0.3
        level[(times >= start) & (times < end)] = value
    width = max(1, round(0.5 * fps))
    kernel = np.hanning(width + 2)[1:-1]
    level = np.convolve(level, kernel / kernel.sum(), mode="same")
    active = level[level > 0.1 * level.max()] if level.max() > 0 else level
    return level / (active.mean() + 1e-8)


# ------------------------------------------------------------------------------------------------- teacher


class ArticulationTeacher:
    """Phones with timings (+ emotion, + audio) → stage-1 targets. See the module docstring.

    Args:
        bases: the calibration (default: :meth:`TeacherBases.load` of the shipped file).
        coarticulation: dominance time constants and the articulation lead.
        emotion_source: ``"mean"`` (the actors' average offsets) or an actor id (e.g. ``"M030"``).
    """

    def __init__(
        self,
        bases: TeacherBases | None = None,
        coarticulation: Coarticulation | None = None,
        emotion_source: str = "mean",
    ) -> None:
        self.bases = bases if bases is not None else TeacherBases.load()
        self.coarticulation = coarticulation or Coarticulation()
        self.emotion_jaw_gain = self.bases.emotion_jaw_gain
        if emotion_source == "mean":
            self.emotion_offsets = self.bases.emotion_offsets
        elif emotion_source in self.bases.emotion_offsets_by_actor:
            self.emotion_offsets = self.bases.emotion_offsets_by_actor[emotion_source]
            self.emotion_jaw_gain = self.bases.emotion_jaw_gain_by_actor.get(emotion_source, self.emotion_jaw_gain)
        else:
            raise ValueError(f"unknown emotion source {emotion_source!r}")
        self._closure = closure_map(self.bases.rest)

    # -- mouth
    def rest_offset(self, reference: np.ndarray) -> np.ndarray:
        """``(478, 3)`` offset that brings ``reference``'s mouth to rest (lips just touching)."""
        reference = np.asarray(reference, dtype=np.float64)
        open_basis = self.bases.basis["open"]
        offset = -float(lip_opening_3d(reference)) * open_basis
        face = reference + offset
        return offset + close_lips(face[None], np.ones(1), *self._closure)[0]

    def mouth_offsets(self, params: np.ndarray, gain: float | np.ndarray = 1.0) -> np.ndarray:
        """``(T, 478, 3)`` offsets of the mouth parameters ``(T, 7)``, without the closure (applied last).

        ``gain`` (scalar or ``(T,)``) scales the jaw and upper-lip excursions and the protrusion.
        """
        b = self.bases.basis
        p = {name: params[:, i] for i, name in enumerate(MOUTH_PARAMS)}
        gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), (len(params),))
        scale = self.bases.open_aperture * gain
        width = self.bases.width_range
        coefficients = {
            "open": p["jaw"] * scale,
            "spread": (p["spread"] - p["round"]) * width,
            "protrusion": p["protrusion"] * gain,
            "upper_raise": p["upper_raise"] * scale,
            "lower_tuck": p["lower_tuck"],
        }
        return sum(coefficients[name][:, None, None] * b[name][None] for name in coefficients)

    # -- full generation
    def generate(
        self,
        phones: Iterable[Any],
        num_frames: int,
        fps: float = 25.0,
        emotion: Any = "neutral",
        intensity: float | np.ndarray = 1.0,
        rng: np.random.Generator | int | None = 0,
        audio: np.ndarray | None = None,
        sampling_rate: int = 16000,
        reference: np.ndarray | None = None,
        articulation_gain: float = 1.0,
    ) -> dict[str, np.ndarray]:
        """Stage-1 targets for one clip.

        Args:
            phones: ``(phone, start_s, end_s)`` triples (ARPAbet, stress digits allowed) or ``PhoneSegment``s.
            num_frames, fps: the video frames to produce.
            emotion: a label, a blend dict, ``(8,)`` or ``(T, 8)`` weights (MEAD order, :data:`EMOTIONS`).
            intensity: scalar or ``(T,)``; 1 = MEAD level 3.
            rng: a generator or a seed (blinks, head sway and gaze are drawn from independent child streams).
            audio: mono speech at ``sampling_rate``; its loudness drives the head motion (else the phones do).
            reference: ``(478, 3)`` canonical reference face the offsets apply to (default: the template).
            articulation_gain: scales jaw and lip excursions (speaking-style variation; 1 = calibrated).

        Returns:
            ``expression (T, 478, 3)`` canonical offsets, ``head_pose (T, 6)``, ``gaze (T, 2)``, ``blink (T, 2)``,
            ``mouth_params (T, 7)`` (:data:`MOUTH_PARAMS`), ``emotion_weights (T, 8)``, ``aperture (T,)``.
        """
        from emotalk_pipeline.motion import audio_energy, blink_track, gaze_saccades, head_sway

        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        blink_rng, head_rng, gaze_rng = rng.spawn(3)
        reference = self.bases.template if reference is None else np.asarray(reference, dtype=np.float64)
        segments = as_segments(phones)

        params = parameter_tracks(segments, num_frames, fps, self.coarticulation)
        weights = emotion_weight_track(emotion, num_frames)
        strength = np.broadcast_to(np.asarray(intensity, dtype=np.float64), (num_frames,))
        weighted = weights * strength[:, None]
        jaw_gain = articulation_gain * (1.0 + weighted @ (self.emotion_jaw_gain - 1.0))
        expression = self.rest_offset(reference)[None] + self.mouth_offsets(params, jaw_gain)
        expression = expression + np.einsum("te,enc->tnc", weighted, self.emotion_offsets)
        faces = reference[None] + expression
        expression = expression + close_lips(faces, params[:, MOUTH_PARAMS.index("closure")], *self._closure)

        if audio is not None and len(audio):
            energy = audio_energy(np.asarray(audio, dtype=np.float32), num_frames, fps, sampling_rate)
        else:
            energy = phone_energy(segments, num_frames, fps)
        motion = np.array([EMOTION_MOTION[e] for e in EMOTIONS])  # (8, 4)
        amplitude = 1.0 + (weights * strength[:, None]) @ (motion[:, 0] - 1.0)
        head = head_sway(num_frames, fps, head_rng, energy) * np.clip(amplitude, 0.3, 2.0)[:, None]
        head[:, 1] += (weights * strength[:, None]) @ motion[:, 1]
        gaze = gaze_saccades(num_frames, fps, gaze_rng, amplitude=0.06 * float(np.mean(weights @ motion[:, 3])))
        gaze[:, 1] += (weights * strength[:, None]) @ motion[:, 2]
        blink = blink_track(num_frames, fps, blink_rng)
        return {
            "expression": expression.astype(np.float32),
            "head_pose": head.astype(np.float32),
            "gaze": gaze.astype(np.float32),
            "blink": blink.astype(np.float32),
            "mouth_params": params.astype(np.float32),
            "emotion_weights": weights.astype(np.float32),
            "aperture": lip_opening_3d(reference[None] + expression).astype(np.float32),
        }


def teacher_landmarks(
    reference_landmarks: np.ndarray,
    phones: Iterable[Any],
    num_frames: int,
    fps: float = 25.0,
    teacher: ArticulationTeacher | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Crop-space landmarks ``(T, 478, 3)`` of the teacher on a reference face (for the evaluation's baseline row).

    ``reference_landmarks`` are ``(478, 3)`` crop-space landmarks (e.g. ``FaceCrop.landmarks``); the teacher's
    expression, head pose, gaze and blinks are reassembled on it with :func:`modeling_emotalk.landmarks.relocate`.
    Other keyword arguments go to :meth:`ArticulationTeacher.generate`.
    """
    import torch

    from modeling_emotalk.landmarks import canonicalize, relocate

    teacher = teacher or ArticulationTeacher()
    reference = torch.as_tensor(np.asarray(reference_landmarks, dtype=np.float32))[None]
    canonical, frame = canonicalize(reference)
    out = teacher.generate(phones, num_frames, fps, reference=canonical[0].double().numpy(), **kwargs)
    parts = {key: torch.from_numpy(out[key])[None] for key in ("expression", "head_pose", "gaze", "blink")}
    landmarks = relocate(canonical, parts["expression"], parts["head_pose"], parts["gaze"], parts["blink"], frame)
    return landmarks[0].numpy()
