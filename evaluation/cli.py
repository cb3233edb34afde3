"""``emotalk evaluate``: score generated videos, or generate from a manifest and score, and write a report.

Examples::

    emotalk evaluate out.mp4 --source-image face.jpg --emotion happy --ground-truth real.mp4
    emotalk evaluate a.mp4 b.mp4 --output-dir eval/
    emotalk evaluate --manifest dev.json --output-dir eval/      # runs the pipeline for entries without "video"

A manifest is a JSON list (or JSON Lines) of objects with ``image`` and ``audio`` (paths relative to the
manifest), optional ``emotion`` (default ``neutral``), ``intensity``, ``pose``, ``ground_truth`` (a real
video of the same speech), ``transcript``, ``name``, and ``video`` (an already generated video: no
generation). Writes ``results.json``, ``results.md`` and ``plots/`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from .evaluate import METRIC_GROUPS, VideoEvaluation, evaluate_video
from .report import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser`` (the main CLI's sub-command parser)."""
    parser.add_argument("videos", nargs="*", help="generated videos to evaluate (their own audio track is the driver)")
    parser.add_argument("--manifest", help="JSON / JSON Lines list of {image, audio, emotion, ground_truth, ...}")
    parser.add_argument("--output-dir", default="evaluation_results", help="where results.json/.md and plots go")
    single = parser.add_argument_group("single video", "apply to the one video given on the command line")
    single.add_argument("--audio", help="driving audio, if not the video's own track")
    single.add_argument("--source-image", help="the portrait the video was generated from (identity, emotion)")
    single.add_argument("--ground-truth", help="real video of the same speech (M-LMD, F-LMD, PSNR, SSIM)")
    single.add_argument("--emotion", help="the requested emotion (for emotion accuracy)")
    single.add_argument("--transcript", help="the spoken English text: forced alignment instead of the phone loop")
    generation = parser.add_argument_group("generation", "manifest entries without a 'video' are generated")
    generation.add_argument("--model", help="model folder or Hub id (default: the pipeline's embedded default)")
    generation.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow running the Python code shipped inside --model (an exported Hub folder); off by default",
    )
    generation.add_argument("--intensity", type=float, default=1.0, help="emotion intensity (default 1.0)")
    generation.add_argument("--pose", default="natural", choices=["natural", "still"], help="head motion")
    options = parser.add_argument_group("evaluation")
    options.add_argument(
        "--metrics",
        default=",".join(METRIC_GROUPS),
        help=f"comma-separated metric groups (default all: {','.join(METRIC_GROUPS)})",
    )
    options.add_argument("--max-seconds", type=float, help="evaluate only the first N seconds of each video")
    options.add_argument("--max-side", type=int, default=960, help="downscale larger frames for analysis (px)")
    options.add_argument("--reference-stride", type=int, default=1, help="compare every n-th frame with ground truth")
    options.add_argument("--seed", type=int, default=0, help="seed for generation and the closure-lift baseline")
    options.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")


def _metrics(text: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = sorted(set(groups) - set(METRIC_GROUPS))
    if unknown:
        raise ValueError(f"--metrics: unknown groups {unknown}; choose from {list(METRIC_GROUPS)}")
    return groups


def read_manifest(path: str | Path) -> list[dict]:
    """Entries of a JSON-list or JSON-Lines manifest, with paths resolved relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    text = path.read_text().strip()
    if text.startswith("["):
        entries = json.loads(text)
    else:
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {index} is not an object: {entry!r}")
        if "video" not in entry and not ("image" in entry and "audio" in entry):
            raise ValueError(f"{path}: entry {index} needs 'video', or 'image' and 'audio': {entry!r}")
        resolved = dict(entry)
        for key in ("image", "audio", "video", "ground_truth"):
            if key in resolved and resolved[key] is not None:
                value = Path(resolved[key]).expanduser()
                resolved[key] = str(value if value.is_absolute() else (path.parent / value))
        resolved.setdefault("name", Path(resolved.get("video") or resolved["image"]).stem + f"_{index:03d}")
        out.append(resolved)
    return out


def run(args: argparse.Namespace) -> int:
    """Run the ``evaluate`` command; returns the process exit code (0 when every video was evaluated)."""
    try:
        groups = _metrics(args.metrics)
        if not args.videos and not args.manifest:
            raise ValueError("give one or more videos, or --manifest")
        single_options = [
            o for o in ("audio", "source_image", "ground_truth", "emotion", "transcript") if getattr(args, o)
        ]
        if single_options and (len(args.videos) != 1 or args.manifest):
            raise ValueError(
                f"--{', --'.join(o.replace('_', '-') for o in single_options)} apply to exactly one video; "
                "use --manifest for several"
            )
        entries = read_manifest(args.manifest) if args.manifest else []
    except (ValueError, FileNotFoundError) as error:
        print(f"emotalk evaluate: error: {error}", file=sys.stderr)
        return 2
    for video in args.videos:
        entries.append({
            "video": video, "audio": args.audio, "image": args.source_image, "ground_truth": args.ground_truth,
            "emotion": args.emotion, "transcript": args.transcript, "name": Path(video).stem,
        })  # fmt: skip

    output_dir = Path(args.output_dir)
    pipe = None
    evaluations: list[VideoEvaluation] = []
    failures = []
    for entry in entries:
        name = entry["name"]
        try:
            video = entry.get("video")
            if not video:
                if pipe is None:
                    from .generation import load_pipeline

                    pipe = load_pipeline(args.model, trust_remote_code=args.trust_remote_code)
                from .generation import generate_video

                video = generate_video(
                    pipe,
                    entry["image"],
                    entry["audio"],
                    output_dir / "videos" / f"{name}.mp4",
                    emotion=entry.get("emotion") or "neutral",
                    intensity=float(entry.get("intensity", args.intensity)),
                    pose=entry.get("pose", args.pose),
                    seed=args.seed,
                )
                entry.setdefault("emotion", "neutral")
            evaluation = evaluate_video(
                video,
                audio=entry.get("audio"),
                source_image=entry.get("image"),
                ground_truth=entry.get("ground_truth"),
                emotion=entry.get("emotion"),
                transcript=entry.get("transcript"),
                metrics=groups,
                seed=args.seed,
                name=name,
                max_seconds=args.max_seconds,
                max_side=args.max_side,
                reference_stride=args.reference_stride,
            )
            evaluations.append(evaluation)
            print(f"evaluated {name}", file=sys.stderr)
        except Exception as error:  # one bad entry must not lose the others' results
            failures.append({"name": name, "error": f"{type(error).__name__}: {error}"})
            print(f"emotalk evaluate: {name} failed: {error}", file=sys.stderr)
            traceback.print_exc(limit=3, file=sys.stderr)
    if evaluations:
        paths = write_report(evaluations, output_dir, plots=not args.no_plots, extra={"failures": failures})
        print(paths["markdown"].read_text())
        print(f"wrote {paths['json']} and {paths['markdown']}", file=sys.stderr)
    return 0 if not failures else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m emotalk_evaluation.cli`` (same options as ``emotalk evaluate``)."""
    parser = argparse.ArgumentParser(prog="emotalk evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
