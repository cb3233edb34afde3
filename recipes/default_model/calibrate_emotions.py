"""Calibrate the articulation teacher on real media: displacement bases, emotion offsets, aperture statistics.

    python -m recipes.default_model.calibrate_emotions --media ../shared/media [--output recipes/default_model/resources/emotion_bases.npz]
        [--cache outputs/mesh_cache]

Everything written is derived statistics (a few 478×3 offset fields and percentiles), never media:

- **Emotion offsets** from the 16 MEAD clips (actors M030, W009; 8 emotions, level 3; neutral level 1): for each
  actor, the per-emotion median canonical landmarks minus that actor's neutral-clip median (level 3 ↔ intensity
  1), after removing each frame's speech opening along the jaw basis (see :func:`emotion_offsets`); how much
  wider each emotion speaks is kept as a per-emotion jaw gain. Stored per actor and averaged over actors. Iris
  points follow their eye (gaze is not an emotion here).
- **Mouth bases** from real talking videos of the *training* split (see :data:`TALKING_TRAIN`): the canonical
  landmarks of every frame are regressed, within each video, on the inner-lip aperture and the mouth width
  (both in :func:`emotalk_common.lip_measures.lip_opening_3d` units: divided by the outer eye-corner distance), pooled over
  videos. The slopes, restricted to the lower face, are the *jaw-open* basis (per unit aperture) and the
  *spread* basis (per unit width; rounding is its negative). Lip protrusion, upper-lip raise and the labiodental
  lower-lip tuck are geometric bases on the calibrated template (MediaPipe's depth is too noisy to regress them).
- **Aperture statistics** of real speech (per-video percentiles) for the training videos and, separately, the
  held-out videos (:data:`TALKING_HELDOUT`, the sources whose speech clips the corpus keeps for evaluation).
- **Aperture scale**: the teacher, driven by each training video's own speech (pocketsphinx phone loop), is
  scaled so that its 95th-percentile aperture matches the real mouths' (median over videos), then compared
  with the held-out videos' real mouths (percentiles, correlation and best lag; ``info["teacher_vs_real"]``).
- **Validation** (JSON in ``info``): the emotion offsets are fitted on one actor and tested on the other (cosine
  similarity, nearest-offset matching, sign agreement of the evaluation suite's geometric expression features,
  and its emotion classifier fitted on the test actor's own real frames applied to the test actor's neutral
  face plus the *other* actor's offsets); the mouth bases are checked on held-out videos (variance of the
  held-out mouth motion explained by the two bases).

Face-mesh tracks are cached (``--cache``), so re-running after a change to the statistics is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "resources" / "emotion_bases.npz"

# Real talking videos (file-name stems under media/videos). The held-out sources are those whose speech clips
# the corpus keeps for evaluation only (EDTalk, LatentSync, V-Express): their videos do not shape the bases.
TALKING_TRAIN = (
    "Talking-Face_PC-AVS__misc__Input__00002",
    "Talking-Face_PC-AVS__misc__Input__00010",
    "Talking-Face_PC-AVS__misc__Input__00098",
    "Talking-Face_PC-AVS__misc__Pose_Source__00473",
    "Talking-Face_PC-AVS__misc__Pose_Source__517600055",
    "Talking-Face_PC-AVS__misc__Pose_Source__620900105",
    "Talking-Face_PC-AVS__misc__Pose_Source__731200067",
    "Talking-Face_PC-AVS__misc__Pose_Source__741400163",
    "Talking-Face_PC-AVS__misc__Pose_Source__796100172",
    "DPE__data__d",
    "DPE__data__s",
    "IP_LAP__test__template_video__129",
    "video-retalking__examples__face__1",
    "video-retalking__examples__face__3",
    "video-retalking__examples__face__4",
    "LivePortrait__assets__examples__driving__d6",
    "LivePortrait__assets__examples__driving__d11",
)
TALKING_HELDOUT = (
    "EDTalk__test_data__mouth_source",
    "EDTalk__test_data__pose_source1",
    "EDTalk__test_data__pose_source2",
    "LatentSync__assets__demo1_video",
    "LatentSync__assets__demo2_video",
    "LatentSync__assets__demo3_video",
    "V-Express__scripts__prepare_dataset__RD_Radio10_0_clip_0",
)
MAX_SIDE = {"LatentSync": 1280}  # portrait videos with small faces keep more pixels


# ----------------------------------------------------------------------------------------------------- tracking


def track_video(path: Path, cache: Path | None = None) -> tuple[np.ndarray, float]:
    """Face-mesh track ``(T, 478, 3)`` in pixels (NaN where lost) and the video's frame rate; cached as ``.npz``."""
    from emotalk_common.video_io import iter_frames, probe
    from emotalk_evaluation.mesh import track_mesh

    cached = cache / f"{path.stem}.npz" if cache is not None else None
    if cached is not None and cached.is_file():
        data = np.load(cached)
        return data["mesh"], float(data["fps"])
    max_side = next((size for key, size in MAX_SIDE.items() if path.name.startswith(key)), 720)
    fps = probe(path).fps
    mesh = track_mesh(iter_frames(path, max_side=max_side)).astype(np.float32)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cached, mesh=mesh, fps=fps)
    return mesh, fps


def canonical(mesh: np.ndarray) -> np.ndarray:
    """Canonical landmarks (``modeling_emotalk.landmarks.canonicalize``) of the valid frames, float64."""
    import torch

    from modeling_emotalk.landmarks import canonicalize

    mesh = np.asarray(mesh, dtype=np.float64)
    mesh = mesh[np.isfinite(mesh).all(axis=(1, 2))]
    return canonicalize(torch.from_numpy(mesh))[0].numpy()


# ----------------------------------------------------------------------------------------------- statistics


def emotion_offsets(clips: dict[str, np.ndarray], open_basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-emotion offsets ``(8, 478, 3)`` and jaw gains ``(8,)`` of one actor, relative to the neutral clip.

    The speech in the clips opens the mouth frame by frame: each frame's opening is removed along the jaw basis
    (``frame - aperture * open_basis``, the same face with the lips together) before the per-point medians are
    compared, so the offsets hold the emotion's posture (corners, brows, eyes, lip shape) and not how wide the
    actor happened to speak. How much wider (or narrower) the emotion speaks is kept as a jaw gain: the ratio of
    the clip's 90th-percentile aperture to the neutral clip's. Iris points follow their eye.
    """
    from .teacher import fix_irises, lip_opening_3d

    def closed_median(frames: np.ndarray) -> np.ndarray:
        return np.median(frames - lip_opening_3d(frames)[:, None, None] * open_basis[None], axis=0)

    neutral = closed_median(clips["neutral"])
    neutral_open = np.percentile(lip_opening_3d(clips["neutral"]), 90)
    offsets = np.zeros((len(EMOTIONS), 478, 3))
    gains = np.ones(len(EMOTIONS))
    for index, emotion in enumerate(EMOTIONS):
        if emotion in clips and emotion != "neutral":
            offsets[index] = fix_irises(closed_median(clips[emotion]) - neutral)
            gains[index] = np.percentile(lip_opening_3d(clips[emotion]), 90) / neutral_open
    return offsets, gains


def mouth_regression(videos: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled within-video regression of canonical landmarks on (aperture, width): two ``(478, 3)`` slopes."""
    from .teacher import lip_opening_3d, mouth_width

    xs, ys = [], []
    for frames in videos:
        x = np.stack([lip_opening_3d(frames), mouth_width(frames)], axis=1)
        xs.append(x - x.mean(axis=0))
        ys.append((frames - frames.mean(axis=0)).reshape(len(frames), -1))
    slopes, *_ = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)
    return slopes[0].reshape(478, 3), slopes[1].reshape(478, 3)


def explained_variance(videos: Sequence[np.ndarray], bases: Sequence[np.ndarray], points: Sequence[int]) -> float:
    """Fraction of the within-video variance of ``points`` explained by least-squares fits on ``bases``."""
    design = np.stack([b[list(points)].ravel() for b in bases], axis=1)
    total = residual = 0.0
    for frames in videos:
        centred = (frames - frames.mean(axis=0))[:, list(points)].reshape(len(frames), -1)
        coefficients, *_ = np.linalg.lstsq(design, centred.T, rcond=None)
        total += float((centred**2).sum())
        residual += float(((centred.T - design @ coefficients) ** 2).sum())
    return 1.0 - residual / total if total > 0 else float("nan")


def aperture_statistics(videos: dict[str, np.ndarray]) -> dict:
    """Per-video percentiles (2, 5, 25, 50, 75, 95, 98) of the aperture and the mouth width, and their medians."""
    from .teacher import lip_opening_3d, mouth_width

    percentiles = (2, 5, 25, 50, 75, 95, 98)
    rows = {name: np.percentile(lip_opening_3d(frames), percentiles) for name, frames in videos.items()}
    widths = {name: np.percentile(mouth_width(frames), percentiles) for name, frames in videos.items()}
    stack = np.stack(list(rows.values()))
    return {
        "percentiles": list(percentiles),
        "aperture": {name: [round(float(v), 4) for v in row] for name, row in rows.items()},
        "width": {name: [round(float(v), 4) for v in row] for name, row in widths.items()},
        "aperture_median_over_videos": [round(float(v), 4) for v in np.median(stack, axis=0)],
        "aperture_range_median": round(float(np.median(stack[:, 5] - stack[:, 0])), 4),
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def validate_emotions(
    mead: dict[str, dict[str, np.ndarray]],
    offsets: dict[str, np.ndarray],
    gains: dict[str, np.ndarray],
    open_basis: np.ndarray,
) -> dict:
    """Train-on-one-actor / test-on-the-other checks of the emotion offsets (see the module docstring)."""
    from emotalk_evaluation.emotion import FEATURE_NAMES, EmotionPrototypes, expression_features

    from .teacher import lip_opening_3d

    actors = sorted(offsets)
    out: dict = {"pairs": []}
    for train in actors:
        for test in actors:
            if train == test:
                continue
            names = [e for e in EMOTIONS if e != "neutral" and e in mead[train] and e in mead[test]]
            cos = {e: _cosine(offsets[train][EMOTIONS.index(e)], offsets[test][EMOTIONS.index(e)]) for e in names}
            matrix = np.array(
                [[_cosine(offsets[train][EMOTIONS.index(a)], offsets[test][EMOTIONS.index(b)]) for b in names]
                 for a in names]
            )  # fmt: skip
            matched = float(np.mean([names[int(np.argmax(row))] == a for a, row in zip(names, matrix, strict=True)]))
            # The evaluation suite's classifier, fitted on the test actor's real frames (relative to its neutral
            # median), applied to the test actor's neutral face + the train actor's offsets.
            neutral = np.median(mead[test]["neutral"], axis=0)
            neutral_open = float(np.median(lip_opening_3d(mead[test]["neutral"])))
            reference = expression_features(neutral[None])[0]
            real = {e: expression_features(v) - reference for e, v in mead[test].items()}
            prototypes = EmotionPrototypes.fit(real, True, [test])
            hits = {}
            for emotion in names:
                index = EMOTIONS.index(emotion)
                jaw = (gains[train][index] - 1.0) * neutral_open * open_basis
                synthetic = neutral + offsets[train][index] + jaw
                features = expression_features(synthetic[None]) - reference
                hits[emotion] = str(prototypes.predict(features)[0])
            accuracy = float(np.mean([hits[e] == e for e in names]))
            # Direction agreement of the geometric features (corner lift, brow heights, eye opening, ...): the
            # share of (emotion, feature) pairs whose change from neutral has the same sign for both actors, among
            # those where both changes exceed the test actor's frame-to-frame noise (the feature's within-clip std).
            noise = np.std(np.concatenate([v - v.mean(axis=0) for v in real.values()]), axis=0)
            agree = total = 0
            for emotion in names:
                index = EMOTIONS.index(emotion)
                mine = expression_features((neutral + offsets[train][index])[None])[0] - reference
                theirs = np.median(real[emotion], axis=0) - np.median(real["neutral"], axis=0)
                strong = (np.abs(mine) > 0.5 * noise) & (np.abs(theirs) > 0.5 * noise)
                strong[[FEATURE_NAMES.index("mouth_opening"), FEATURE_NAMES.index("jaw_drop")]] = False
                agree += int((np.sign(mine) == np.sign(theirs))[strong].sum())
                total += int(strong.sum())
            out["pairs"].append({
                "train": train,
                "test": test,
                "same_emotion_cosine": {e: round(v, 3) for e, v in cos.items()},
                "mean_same_emotion_cosine": round(float(np.mean(list(cos.values()))), 3),
                "mean_other_emotion_cosine": round(float(matrix[~np.eye(len(names), dtype=bool)].mean()), 3),
                "nearest_offset_match_accuracy": round(matched, 3),
                "classifier_predictions": hits,
                "classifier_accuracy": round(accuracy, 3),
                "feature_sign_agreement": round(agree / max(total, 1), 3),
                "feature_sign_pairs": total,
            })  # fmt: skip
    out["mean_classifier_accuracy"] = round(float(np.mean([p["classifier_accuracy"] for p in out["pairs"]])), 3)
    out["mean_nearest_offset_match_accuracy"] = round(
        float(np.mean([p["nearest_offset_match_accuracy"] for p in out["pairs"]])), 3
    )
    out["mean_feature_sign_agreement"] = round(float(np.mean([p["feature_sign_agreement"] for p in out["pairs"]])), 3)
    out["chance_level"] = round(1 / 7, 3)
    return out


def teacher_against_real(
    bases,
    videos: dict[str, np.ndarray],
    paths: dict[str, Path],
    cache: Path | None,
    log=print,
) -> dict[str, dict]:
    """Drive the teacher with each real video's own speech (phone-loop phones) and compare with the real mouth.

    Returns per video: the real and teacher aperture percentiles (5, 50, 95) and the correlation of the teacher's
    aperture with the real one at lags -4..4 frames (``teacher[t + d]`` vs ``real[t]``; the best lag < 0 means the
    teacher moves earlier than the real mouth).
    """
    from emotalk_common.alignment import recognize_phones
    from emotalk_common.lip_measures import lip_opening_2d
    from emotalk_common.video_io import probe, read_audio
    from emotalk_evaluation.lipsync import lag_correlations

    from .teacher import ArticulationTeacher

    teacher = ArticulationTeacher(bases)
    out = {}
    for stem, path in paths.items():
        if stem not in videos or not probe(path).has_audio:
            continue
        mesh, fps = track_video(path, cache)
        audio = read_audio(path)
        if len(audio) < 16000:
            continue
        phones_file = cache / f"{stem}.phones.json" if cache is not None else None
        if phones_file is not None and phones_file.is_file():
            phones = json.loads(phones_file.read_text())
        else:
            phones = recognize_phones(audio)
            if phones_file is not None:
                phones_file.write_text(json.dumps(phones))
        real = lip_opening_2d(mesh)
        generated = teacher.generate(phones, len(real), fps, rng=0, audio=audio)["aperture"]
        correlations = lag_correlations(generated, real, 4)
        finite = {d: c for d, c in correlations.items() if np.isfinite(c)}
        best = max(finite, key=lambda d: finite[d]) if finite else 0
        out[stem] = {
            "real_percentiles_5_50_95": [round(float(v), 4) for v in np.nanpercentile(real, [5, 50, 95])],
            "teacher_percentiles_5_50_95": [round(float(v), 4) for v in np.percentile(generated, [5, 50, 95])],
            "correlation_lag0": round(float(correlations[0]), 3),
            "best_lag": int(best),
            "best_correlation": round(float(finite.get(best, np.nan)), 3),
        }
        log(f"teacher vs real {stem[:50]:50s} {out[stem]}")
    return out


# ------------------------------------------------------------------------------------------------------- main


def find_mead(media: Path) -> dict[tuple[str, str], Path]:
    """``{(actor, emotion): path}`` for the MEAD clips under ``media`` (highest level per emotion)."""
    from emotalk_evaluation.calibrate import find_mead_clips

    return find_mead_clips(media)


def calibrate(media: Path, cache: Path | None, log=print) -> tuple[dict[str, np.ndarray], dict]:
    """Track the media, compute every statistic; returns the npz arrays and the JSON-able info."""
    from .teacher import build_geometric_bases, fix_irises, lower_face_mask, normalize_open_basis, rest_template

    videos_dir = media / "videos"
    mead_paths = find_mead(media)
    if not mead_paths:
        raise FileNotFoundError(f"no MEAD clips under {media}")
    mead: dict[str, dict[str, np.ndarray]] = {}
    for (actor, emotion), path in sorted(mead_paths.items()):
        start = time.perf_counter()
        mesh, _ = track_video(path, cache)
        mead.setdefault(actor, {})[emotion] = canonical(mesh)
        log(f"MEAD {actor} {emotion:10s} {len(mesh):4d} frames {time.perf_counter() - start:5.1f} s")
    actors = sorted(mead)

    talking: dict[str, dict[str, np.ndarray]] = {"train": {}, "heldout": {}}
    for split, names in (("train", TALKING_TRAIN), ("heldout", TALKING_HELDOUT)):
        for stem in names:
            path = videos_dir / f"{stem}.mp4"
            if not path.is_file():
                log(f"missing {path.name}: skipped")
                continue
            start = time.perf_counter()
            mesh, _ = track_video(path, cache)
            frames = canonical(mesh)
            log(
                f"{split:7s} {stem[:60]:60s} {len(frames):5d}/{len(mesh):5d} frames {time.perf_counter() - start:5.1f} s"
            )
            if len(frames) >= 10:
                talking[split][stem] = frames

    # Template: the mean of the actors' neutral medians (a calibrated average face in canonical space).
    template = np.mean([np.median(mead[a]["neutral"], axis=0) for a in actors], axis=0)
    open_basis, spread_basis = mouth_regression(list(talking["train"].values()))
    mask = lower_face_mask(template)[:, None]
    open_basis, spread_basis = fix_irises(open_basis) * mask, fix_irises(spread_basis) * mask
    rest = rest_template(template, open_basis)
    open_basis = normalize_open_basis(rest, open_basis)
    geometric = build_geometric_bases(rest)
    per_actor = {actor: emotion_offsets(mead[actor], open_basis) for actor in actors}
    offsets = {actor: value[0] for actor, value in per_actor.items()}
    gains = {actor: value[1] for actor, value in per_actor.items()}

    from modeling_emotalk.landmarks import LIPS

    mouth_points = sorted(set(LIPS) | {152, 148, 377, 176, 400, 17, 0})
    bases_check = {
        split: round(explained_variance(list(videos.values()), [open_basis, spread_basis], mouth_points), 3)
        for split, videos in talking.items()
        if videos
    }
    info = {
        "description": "Articulation-teacher calibration (recipes.default_model.calibrate_emotions); derived statistics only.",
        "emotions": list(EMOTIONS),
        "actors": actors,
        "mead_clips": {f"{a}/{e}": p.name for (a, e), p in sorted(mead_paths.items())},
        "talking_videos": {split: sorted(v) for split, v in talking.items()},
        "aperture_statistics": {split: aperture_statistics(v) for split, v in talking.items() if v},
        "mouth_bases_explained_variance": bases_check,
        "emotion_jaw_gain": {
            e: round(float(np.mean([gains[a][i] for a in actors])), 3) for i, e in enumerate(EMOTIONS)
        },
        "emotion_validation": validate_emotions(mead, offsets, gains, open_basis),
    }
    # Scale the jaw so that the teacher, driven by the training videos' own speech, opens the mouth as wide as the
    # real mouths do (matching the medians over videos of the 95th percentile); then check on the held-out videos.
    from .teacher import TeacherBases

    stats = info["aperture_statistics"]["train"]
    widths = np.array(list(stats["width"].values()))
    bases = TeacherBases(
        template=template, rest=rest, basis={"open": open_basis, "spread": spread_basis, **geometric},
        emotion_offsets=np.mean([offsets[a] for a in actors], axis=0),
        open_aperture=float(stats["aperture_median_over_videos"][5]),
        width_range=float(np.median(widths[:, 5] - widths[:, 1])),
    )  # fmt: skip
    paths = {stem: videos_dir / f"{stem}.mp4" for stem in TALKING_TRAIN + TALKING_HELDOUT}
    train_check = teacher_against_real(bases, talking["train"], paths, cache, log)
    real_p95 = np.median([v["real_percentiles_5_50_95"][2] for v in train_check.values()])
    teacher_p95 = np.median([v["teacher_percentiles_5_50_95"][2] for v in train_check.values()])
    bases.open_aperture *= float(real_p95 / teacher_p95)
    info["open_aperture"] = round(bases.open_aperture, 4)
    info["width_range"] = round(bases.width_range, 4)
    info["teacher_vs_real"] = {
        "description": "teacher driven by each real video's own speech (pocketsphinx phone loop) vs the real mouth; "
        "open_aperture scaled so that the median 95th percentiles match on the training videos",
        "train_before_scaling": train_check,
        "heldout": teacher_against_real(bases, talking["heldout"], paths, cache, log),
    }
    held = info["teacher_vs_real"]["heldout"].values()
    info["teacher_vs_real"]["heldout_summary"] = {
        "mean_correlation_lag0": round(float(np.mean([v["correlation_lag0"] for v in held])), 3),
        "mean_best_lag": round(float(np.mean([v["best_lag"] for v in held])), 2),
        "median_real_p95": round(float(np.median([v["real_percentiles_5_50_95"][2] for v in held])), 4),
        "median_teacher_p95": round(float(np.median([v["teacher_percentiles_5_50_95"][2] for v in held])), 4),
    }
    arrays = {
        "emotions": np.array(EMOTIONS),
        "open_aperture": np.array(bases.open_aperture),
        "width_range": np.array(bases.width_range),
        "actors": np.array(actors),
        "template": template.astype(np.float32),
        "rest_template": rest.astype(np.float32),
        "emotion_offsets": np.mean([offsets[a] for a in actors], axis=0).astype(np.float32),
        "emotion_offsets_by_actor": np.stack([offsets[a] for a in actors]).astype(np.float32),
        "emotion_jaw_gain": np.mean([gains[a] for a in actors], axis=0).astype(np.float32),
        "emotion_jaw_gain_by_actor": np.stack([gains[a] for a in actors]).astype(np.float32),
        "basis_open": open_basis.astype(np.float32),
        "basis_spread": spread_basis.astype(np.float32),
        **{f"basis_{name}": value.astype(np.float32) for name, value in geometric.items()},
        "aperture_percentiles_train": np.array(info["aperture_statistics"]["train"]["aperture_median_over_videos"]),
        "info": np.array(json.dumps(info)),
    }
    return arrays, info


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / ".." / "shared" / "media"))
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--cache", default=None, help="folder for cached face-mesh tracks (.npz)")
    parser.add_argument("--track-only", action="store_true", help="only fill the cache")
    args = parser.parse_args(argv)
    media = Path(args.media)
    cache = Path(args.cache) if args.cache else None
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.track_only:
        paths = list(find_mead(media).values())
        paths += [media / "videos" / f"{stem}.mp4" for stem in TALKING_TRAIN + TALKING_HELDOUT]
        for path in paths:
            if path.is_file():
                start = time.perf_counter()
                mesh, _ = track_video(path, cache)
                log(f"{path.stem[:70]:70s} {len(mesh):5d} frames {time.perf_counter() - start:5.1f} s")
        return 0
    arrays, info = calibrate(media, cache, log)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    summary = {
        "aperture_train": info["aperture_statistics"].get("train", {}).get("aperture_median_over_videos"),
        "aperture_heldout": info["aperture_statistics"].get("heldout", {}).get("aperture_median_over_videos"),
        "mouth_bases_explained_variance": info["mouth_bases_explained_variance"],
        "emotion_classifier_accuracy": info["emotion_validation"]["mean_classifier_accuracy"],
        "emotion_nearest_offset_match": info["emotion_validation"]["mean_nearest_offset_match_accuracy"],
        "emotion_feature_sign_agreement": info["emotion_validation"]["mean_feature_sign_agreement"],
        "emotion_jaw_gain": info["emotion_jaw_gain"],
        "open_aperture": info["open_aperture"],
        "teacher_vs_real_heldout": info["teacher_vs_real"]["heldout_summary"],
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
