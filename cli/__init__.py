"""The ``emotalk`` command: ``generate``, ``demo``, ``evaluate`` and ``prepare`` (installed as ``emotalk_cli``).

This small package sits above the pipeline, evaluation and training packages, so that none of them
imports another's command line. Only the chosen command's options are imported to parse, and its module once the arguments parsed:
``emotalk --help``, ``--version`` and ``emotalk generate --help`` import neither torch nor transformers.
``python -m emotalk_cli`` is the same command (e.g. under ``accelerate launch``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import threading
from dataclasses import dataclass

__all__ = ["COMMANDS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One sub-command: where its options (``adder``) and its runner (``run``) live."""

    module: str  # defines ``run(args)``
    adder: str
    help: str
    extra: str | None = None  # the pip extra that provides the module, if optional
    options: str | None = None  # the module that defines ``adder``, when it is not ``module``


COMMANDS = {
    "generate": Command("emotalk_pipeline.cli", "add_generate_arguments", "portrait + speech -> MP4 (or a manifest of jobs)", options="emotalk_cli.generate"),
    "demo": Command("emotalk_pipeline.cli", "add_demo_arguments", "render the bundled example (public-domain portrait, generated speech)", options="emotalk_cli.generate"),
    "evaluate": Command("emotalk_evaluation.cli", "add_arguments", "the field's metrics on generated videos or a manifest", "eval"),
    "prepare": Command("emotalk_training.prepare", "add_arguments", "videos -> a training dataset (landmarks, crops, audio)", "train"),
}  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotalk")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _chosen_command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def _load(name: str, command: Command, module: str | None = None):
    try:
        return importlib.import_module(module or command.module)
    except ModuleNotFoundError as err:
        if command.extra is None:
            raise
        print(
            f"emotalk: error: '{name}' needs the {command.extra!r} extra ({err.name} is missing): "
            f"pip install 'emotalk[{command.extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from err


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``emotalk`` parser; only ``command``'s options are loaded (the others are listed by name and help)."""
    parser = argparse.ArgumentParser(prog="emotalk", description="Emotional talking-face generation.")
    parser.add_argument("--version", action="version", version=f"emotalk {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, spec in COMMANDS.items():
        sub = commands.add_parser(name, help=spec.help, description=spec.help)
        if name == command:
            getattr(_load(name, spec, spec.options), spec.adder)(sub)
            sub.set_defaults(run=functools.partial(_run, name, spec))
    return parser


def _run(name: str, spec: Command, args: argparse.Namespace) -> int:
    """Import the command's module (torch, the model...) only now that its arguments parsed, and run it."""
    return _load(name, spec).run(args)


def _terminate(signum: int, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds the stack: finally blocks remove partial files


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emotalk`` script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GLOG_minloglevel", "2")  # before mediapipe loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    args = build_parser(_chosen_command(argv)).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("emotalk: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # evaluate / prepare: one line instead of a traceback
        print(f"emotalk: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        # Bad input (EmoTalkInputError is a ValueError): one line, exit 2. The class is looked up only now,
        # so that `emotalk --help` never imports the model package.
        errors = sys.modules.get("modeling_emotalk.errors")
        if errors is None or not isinstance(err, errors.EmoTalkInputError):
            raise
        print(f"emotalk: error: {err}", file=sys.stderr)
        return 2
