"""The ``emotalk`` command line: generate, demo, batch manifests, evaluation and data preparation."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from modeling_emotalk.errors import EmoTalkInputError

DEMO_TEXT = "Hello! I am EmoTalk. Give me one photo and a voice, and I will bring the face to life."


def _pose(value: str) -> str | float:
    if value in ("natural", "still"):
        return value
    try:
        return float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"pose must be 'natural', 'still' or a number, got {value!r}") from err


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="a save_pretrained folder (default: the embedded model)")
    parser.add_argument(
        "--emotion",
        default="neutral",
        help="a label (neutral angry contempt disgusted fear happy sad surprised), 'auto', a blend "
        "'happy:0.7,surprised:0.3' or a schedule '0:neutral,2.5:happy' (default: neutral)",
    )
    parser.add_argument("--intensity", type=float, default=1.0, help="emotion strength in [0, 1] (default 1)")
    parser.add_argument("--pose", type=_pose, default="natural", help="natural | still | a scale (default natural)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate in [1, 60] (default 25)")
    parser.add_argument("--no-paste-back", action="store_true", help="output the aligned face crop only")
    parser.add_argument("--no-blink", action="store_true", help="no procedural blinks")
    parser.add_argument("--seed", type=int, default=None, help="seed of the procedural motion (same seed, same video)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per generator batch (default 8)")
    parser.add_argument("--face-index", type=int, default=None, help="which face when the photo has several")
    parser.add_argument("--max-audio-seconds", type=float, default=None, help="refuse longer audio (default 600)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def _call_kwargs(args: argparse.Namespace) -> dict:
    from .emotion import parse_emotion_string

    kwargs = {
        "emotion": parse_emotion_string(args.emotion),
        "intensity": args.intensity,
        "pose": args.pose,
        "fps": args.fps,
        "paste_back": not args.no_paste_back,
        "blink": not args.no_blink,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "face_index": args.face_index,
        "max_audio_seconds": args.max_audio_seconds,
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def _load_pipeline(args: argparse.Namespace):
    from transformers import pipeline
    from transformers.utils import logging

    from . import DEFAULT_CHECKPOINT, TASK

    logging.set_verbosity_error()
    return pipeline(TASK, model=args.model or str(DEFAULT_CHECKPOINT), device=args.device)


def cmd_generate(args: argparse.Namespace) -> int:
    from .video import check_output_path

    if args.manifest:
        if not args.output_dir:
            raise EmoTalkInputError("--manifest needs --output-dir")
        from .batch import process_state, run_manifest

        kwargs = _call_kwargs(args)
        kwargs.pop("emotion", None)
        kwargs.pop("intensity", None)
        args.device = args.device or str(process_state().device)  # one device per process under accelerate
        report = run_manifest(_load_pipeline(args), args.manifest, args.output_dir, progress=False, **kwargs)
        for failure in report["failed"]:
            print(f"row {failure['row']} failed: {failure['error']}", file=sys.stderr)
        print(json.dumps({k: len(v) for k, v in report.items()}))
        report_path = Path(args.output_dir) / f"report-{os.getpid()}.json"
        report_path.write_text(json.dumps(report, indent=2))
        return 1 if report["failed"] else 0
    if not (args.image and args.audio and args.output):
        raise EmoTalkInputError("generate needs --image, --audio and --output (or --manifest and --output-dir)")
    output = check_output_path(args.output)
    pipe = _load_pipeline(args)
    video = pipe(args.image, args.audio, **_call_kwargs(args))
    video.save(output)
    print(
        f"wrote {output} ({video.num_frames} frames, {video.duration:.2f} s, emotion {video.emotion}, seed {video.seed})"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from skimage import data

    from . import ASSETS
    from .video import check_output_path

    output = check_output_path(args.output)
    pipe = _load_pipeline(args)
    if args.seed is None:
        args.seed = 0
    video = pipe(data.astronaut(), str(ASSETS / "demo_speech.flac"), **_call_kwargs(args))
    video.save(output)
    print(
        f"wrote {output} ({video.num_frames} frames, {video.duration:.2f} s, emotion {video.emotion}, seed {video.seed})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotalk", description="Emotional talking-face generation.")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="portrait + speech -> MP4 (or a manifest of jobs)")
    generate.add_argument("--image", help="portrait photo")
    generate.add_argument("--audio", help="speech (wav, mp3, flac, ogg, m4a)")
    generate.add_argument("--output", help="output .mp4")
    generate.add_argument("--manifest", help="a .csv/.jsonl of jobs: image,audio,emotion,intensity,output")
    generate.add_argument("--output-dir", help="folder for the manifest's videos")
    _add_generation_options(generate)
    generate.set_defaults(func=cmd_generate)

    demo = commands.add_parser("demo", help="render the bundled example (public-domain portrait, generated speech)")
    demo.add_argument("--output", default="emotalk_demo.mp4", help="output .mp4 (default emotalk_demo.mp4)")
    _add_generation_options(demo)
    demo.set_defaults(func=cmd_demo, emotion="happy", intensity=0.8)

    try:  # the evaluation suite is an optional extra
        from emotalk_evaluation import cli as evaluation_cli
    except ImportError:
        evaluation_cli = None
    if evaluation_cli is not None:
        evaluate = commands.add_parser("evaluate", help="the field's metrics on generated videos or a manifest")
        evaluation_cli.add_arguments(evaluate)
        evaluate.set_defaults(func=evaluation_cli.run)

    try:  # data preparation for fine-tuning (the train extra)
        from emotalk_training import prepare as prepare_module
    except ImportError:
        prepare_module = None
    if prepare_module is not None:
        prepare = commands.add_parser("prepare", help="videos -> a training dataset (landmarks, crops, audio)")
        prepare_module.add_arguments(prepare)
        prepare.set_defaults(func=prepare_module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return int(args.func(args) or 0)
    except EmoTalkInputError as err:
        print(f"emotalk: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emotalk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
