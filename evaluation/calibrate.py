"""Calibrate the emotion prototypes on real MEAD clips and validate them across actors.

    python -m emotalk_evaluation.calibrate --media ../shared/media [--output evaluation/data/emotion_prototypes.json]

Reads every MEAD clip found under ``--media`` (file names like ``M030_front_happy_level3_001.mp4`` or the
``<actor>/video/front/<emotion>/level_<n>/`` layout), extracts expression features with the face mesh and
writes only derived statistics: per-emotion feature means and pooled variances, fitted on all actors and
on each actor alone, plus the cross-actor validation accuracies (fit on one actor, test on the other).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from emotalk_common.video_io import iter_frames

from .emotion import EMOTIONS, PROTOTYPES_FILE, EmotionPrototypes, expression_features, parse_mead_name
from .mesh import track_mesh


def clip_features(path: str | Path, stride: int = 1, max_side: int = 720) -> np.ndarray:
    """Expression features ``(T, F)`` of every ``stride``-th frame of a video (NaN rows dropped)."""
    frames = (frame for i, frame in enumerate(iter_frames(path, max_side=max_side)) if i % stride == 0)
    features = expression_features(track_mesh(frames))
    return features[np.isfinite(features).all(axis=1)]


def find_mead_clips(media: str | Path) -> dict[tuple[str, str], Path]:
    """``{(actor, emotion): path}`` for the MEAD clips under ``media`` (the highest level per emotion)."""
    found: dict[tuple[str, str], tuple[int, Path]] = {}
    for path in sorted(Path(media).rglob("*.mp4")):
        parsed = parse_mead_name(path)
        if parsed is None:
            continue
        actor, emotion, level = parsed
        if (actor, emotion) not in found or level > found[(actor, emotion)][0]:
            found[(actor, emotion)] = (level, path)
    return {key: path for key, (_, path) in found.items()}


def _relative(features: Mapping[str, np.ndarray], reference: np.ndarray) -> dict[str, np.ndarray]:
    return {emotion: values - reference[None] for emotion, values in features.items()}


def _accuracy(prototypes: EmotionPrototypes, features: Mapping[str, np.ndarray]) -> dict[str, float]:
    frame_hits, clip_hits = [], []
    for emotion, values in features.items():
        frame_hits.extend(prototypes.predict(values) == emotion)
        clip_hits.append(prototypes.predict(values.mean(axis=0, keepdims=True))[0] == emotion)
    return {"frame_accuracy": float(np.mean(frame_hits)), "clip_accuracy": float(np.mean(clip_hits)),
            "num_frames": len(frame_hits), "num_clips": len(clip_hits)}  # fmt: skip


def calibrate(features: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """Prototypes and cross-actor validation from ``{actor: {emotion: (N, F) features}}``.

    Relative features subtract the actor's neutral-clip median. Validation fits on one actor and tests on
    another, with the test actor's reference taken either as the neutral clip's median ("clip reference")
    or as its middle frame alone ("single-frame reference", like a source photo).
    """
    actors = sorted(features)
    for actor in actors:
        if "neutral" not in features[actor]:
            raise ValueError(f"actor {actor} has no neutral clip: relative features need one")
    references = {a: np.median(features[a]["neutral"], axis=0) for a in actors}
    relative = {a: _relative(features[a], references[a]) for a in actors}

    def pooled(source: Mapping[str, Mapping[str, np.ndarray]], which: list[str]) -> dict[str, np.ndarray]:
        out = defaultdict(list)
        for actor in which:
            for emotion, values in source[actor].items():
                out[emotion].append(values)
        return {emotion: np.concatenate(values) for emotion, values in out.items()}

    prototypes: dict[str, dict] = {"relative": {}, "absolute": {}}
    for name, which in [("all", actors)] + [(a, [a]) for a in actors]:
        prototypes["relative"][name] = EmotionPrototypes.fit(pooled(relative, which), True, which).to_dict()
        prototypes["absolute"][name] = EmotionPrototypes.fit(pooled(features, which), False, which).to_dict()

    validation = []
    for train in actors:
        for test in actors:
            if train == test:
                continue
            rel = EmotionPrototypes.fit(relative[train], True, [train])
            absolute = EmotionPrototypes.fit(features[train], False, [train])
            neutral = features[test]["neutral"]
            single = neutral[len(neutral) // 2]
            validation.append({
                "train": train,
                "test": test,
                "relative_clip_reference": _accuracy(rel, relative[test]),
                "relative_single_frame_reference": _accuracy(rel, _relative(features[test], single)),
                "absolute": _accuracy(absolute, features[test]),
            })  # fmt: skip
    summary = {
        key: float(np.mean([v[key]["frame_accuracy"] for v in validation]))
        for key in ("relative_clip_reference", "relative_single_frame_reference", "absolute")
    } if validation else {}  # fmt: skip
    return {
        "description": "Nearest-prototype emotion classifier on geometric face-mesh features (emotalk_evaluation.emotion).",
        "chance_level": 1 / len(EMOTIONS),
        "actors": actors,
        "prototypes": prototypes,
        "validation": validation,
        "validation_mean_frame_accuracy": summary,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: calibrate from a media folder and write the prototype JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", required=True, help="folder searched recursively for MEAD clips")
    parser.add_argument("--output", default=str(PROTOTYPES_FILE), help="where to write the prototype JSON")
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    args = parser.parse_args(argv)
    clips = find_mead_clips(args.media)
    if not clips:
        print(f"no MEAD clips found under {args.media}", file=sys.stderr)
        return 1
    features: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for (actor, emotion), path in sorted(clips.items()):
        features[actor][emotion] = clip_features(path, stride=args.stride)
        print(f"{actor} {emotion:10s} {len(features[actor][emotion]):4d} frames  {path.name}", file=sys.stderr)
    result = calibrate(features)
    result["clips"] = [f"{a}/{e}: {p.name}" for (a, e), p in sorted(clips.items())]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["validation_mean_frame_accuracy"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
