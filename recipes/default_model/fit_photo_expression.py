"""Fit stage 1's photo-expression estimator (``modeling_emotalk.photo_expression``) and write it into a model.

What a portrait's own expression is, is learned from real video: every tracked frame is canonicalized
(pose removed); the mean face of each *person* over all their frames gives the variation between people
(identity, a low-rank covariance), and the expression directions to remove are MEAD's seven emotion offsets
and the jaw opening from this recipe's calibration (``resources/emotion_bases.npz``), with four more speech
directions (spread, protrusion, upper raise, lower tuck) fitted but kept. The estimator is the generalized
least-squares solution ``(Oᵀ W O + λI)⁻¹ Oᵀ W`` with ``W = (Σ_identity + σ²I)⁻¹``: directions along which people
differ a lot count less, so a person's wide mouth is not read as a smile.

    python -m recipes.default_model.fit_photo_expression --media ../shared/media \
        --model pipeline/checkpoints/emotalk-default --output pipeline/checkpoints/emotalk-default

It prints a leave-one-actor-out check on the two MEAD actors (is the largest coefficient of each emotional
clip its own emotion?) and the coefficients it finds on the development portraits.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
from emotalk_common.video_io import iter_frames
from emotalk_evaluation.mesh import track_mesh

from modeling_emotalk import EmoTalkModel
from modeling_emotalk.landmarks import NUM_LANDMARKS, canonicalize
from modeling_emotalk.packaging import strip_remote_code

RESOURCES = Path(__file__).resolve().parent / "resources"
REMOVED = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised", "open")
KEPT = ("spread", "protrusion", "upper_raise", "lower_tuck")
IDENTITY_RANK = 15
NOISE = 1e-4  # per-coordinate variance not explained by the identity components (canonical units²)
RIDGE = 1e-2


def person_of(video: str) -> str:
    """MEAD clips of one actor are one person; every other video is its own."""
    match = re.search(r"(M\d{3}|W\d{3})_front", video)
    return match.group(1) if match else video


def track_videos(folder: Path, seconds: float, stride: int) -> dict[str, np.ndarray]:
    """Canonical landmarks ``(n, 478, 3)`` of every tracked frame (every ``stride``-th at 25 fps) per video."""
    tracks = {}
    for video in sorted(folder.glob("*.mp4")):
        mesh = track_mesh(iter_frames(video, fps=25, max_side=720, max_seconds=seconds))[::stride]
        mesh = mesh[np.isfinite(mesh).all(axis=(1, 2))]
        if len(mesh):
            tracks[video.stem] = canonicalize(torch.from_numpy(mesh).double())[0].numpy()
    return tracks


def directions(bases: np.lib.npyio.NpzFile, offsets: np.ndarray) -> np.ndarray:
    """``(12, 478, 3)``: the removable directions (7 emotions, open) then the kept speech directions."""
    emotions = list(bases["emotions"])
    rows = [offsets[emotions.index(name)] for name in REMOVED[:7]] + [bases["basis_open"]]
    rows += [bases[f"basis_{name}"] for name in KEPT]
    return np.stack(rows).astype(np.float64)


def fit_estimator(person_means: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (478, 3), estimator (len(REMOVED), 478, 3))`` of the generalized least-squares fit."""
    mean = person_means.mean(0)
    u, s, _ = np.linalg.svd((person_means - mean).reshape(len(person_means), -1).T, full_matrices=False)
    rank = min(IDENTITY_RANK, len(s))
    u, variance = u[:, :rank], s[:rank] ** 2 / len(person_means)
    o = basis.reshape(len(basis), -1).T  # (1434, k)
    # W o with W = (U Λ Uᵀ + σ² I)⁻¹ by the Woodbury identity
    inner = np.linalg.inv(np.diag(1 / variance) + u.T @ u / NOISE)
    wo = o / NOISE - u @ (inner @ (u.T @ o)) / NOISE**2
    estimator = np.linalg.solve(o.T @ wo + RIDGE * np.eye(o.shape[1]), wo.T)  # (k, 1434)
    return mean.reshape(NUM_LANDMARKS, 3), estimator[: len(REMOVED)].reshape(len(REMOVED), NUM_LANDMARKS, 3)


def coefficients(mean: np.ndarray, estimator: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return np.maximum(np.einsum("...nd,end->...e", faces - mean, estimator), 0)


def leave_one_actor_out(tracks: dict[str, np.ndarray], bases) -> list[tuple[str, str, str]]:
    """For each MEAD actor: fit on everyone else (the other actor's emotion offsets), classify its clips."""
    rows = []
    for index, actor in enumerate(bases["actors"]):
        means = _person_means({n: v for n, v in tracks.items() if person_of(n) != actor})
        mean, estimator = fit_estimator(means, directions(bases, bases["emotion_offsets_by_actor"][1 - index]))
        for name, frames in tracks.items():
            found = re.search(rf"{actor}_front_(\w+?)_level", name)
            if found and found.group(1) != "neutral":
                c = coefficients(mean, estimator, frames.mean(0))[:7]
                rows.append((actor, found.group(1), REMOVED[int(np.argmax(c))]))
    return rows


def _person_means(tracks: dict[str, np.ndarray]) -> np.ndarray:
    people: dict[str, list[np.ndarray]] = {}
    for name, frames in tracks.items():
        people.setdefault(person_of(name), []).append(frames)
    return np.stack([np.concatenate(v).mean(0) for v in people.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=Path("../shared/media"), help="folder with videos/ and photos/")
    parser.add_argument("--model", type=Path, required=True, help="EmoTalk model folder to read")
    parser.add_argument("--output", type=Path, required=True, help="where to save the model with the estimator")
    parser.add_argument("--seconds", type=float, default=40.0, help="video seconds tracked per clip")
    parser.add_argument("--stride", type=int, default=2, help="keep every n-th tracked frame")
    args = parser.parse_args()

    bases = np.load(RESOURCES / "emotion_bases.npz")
    tracks = track_videos(args.media / "videos", args.seconds, args.stride)
    print(f"tracked {sum(len(v) for v in tracks.values())} frames of {len(tracks)} videos")
    rows = leave_one_actor_out(tracks, bases)
    hits = sum(asked == found for _, asked, found in rows)
    print(f"leave-one-actor-out on MEAD: largest coefficient is the clip's emotion for {hits}/{len(rows)} clips")
    for actor, asked, found in rows:
        print(f"  {actor} {asked:10s} -> {found}")

    basis = directions(bases, bases["emotion_offsets"])
    mean, estimator = fit_estimator(_person_means(tracks), basis)
    model = EmoTalkModel.from_pretrained(args.model)
    prior = model.landmark_model.photo_expression
    if prior.estimator.shape[0] != len(REMOVED):
        raise SystemExit(f"the model's estimator has {prior.estimator.shape[0]} components, expected {len(REMOVED)}")
    with torch.no_grad():
        prior.mean.copy_(torch.from_numpy(mean))
        prior.estimator.copy_(torch.from_numpy(estimator))
        prior.directions.copy_(torch.from_numpy(basis[: len(REMOVED)]))
    model.save_pretrained(args.output)
    # as conversion/build_default_checkpoint.py: the package provides the code, no local paths in the config
    strip_remote_code(args.output, sub_config_keys=("auto_map", "_name_or_path", "architectures"))
    print(f"wrote {args.output} (components: {', '.join(REMOVED)})")


if __name__ == "__main__":
    main()
