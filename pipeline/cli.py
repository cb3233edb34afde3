"""The ``generate`` and ``demo`` commands of ``emotalk``: what runs once ``emotalk_cli`` parsed their options.

The options live in :mod:`emotalk_cli.generate` (torch-free); ``python -m emotalk_cli generate ...`` is the module
entry point (e.g. under ``accelerate launch``). Arguments, files and the device are validated before the model
is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from modeling_emotalk.errors import EmoTalkInputError

# native log lines that mediapipe / TFLite print on every run, to stderr, whatever the log level
NATIVE_NOISE = re.compile(
    r"INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|W0000 .*inference_feedback_manager\.cc"
)


# ------------------------------------------------------------------------------------------------ validation
def _call_kwargs(args: argparse.Namespace) -> dict:
    from .emotion import parse_emotion_string

    kwargs = {
        "emotion": parse_emotion_string(args.emotion),
        "intensity": args.intensity,
        "pose": args.pose,
        "photo_expression": args.photo_expression,
        "fps": args.fps,
        "paste_back": not args.no_paste_back,
        "blink": not args.no_blink,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "face_index": args.face_index,
        "max_audio_seconds": args.max_audio_seconds,
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def check_reference_images(paths: list[str] | None) -> list[str]:
    """``--reference-image`` paths: at most ``MAX_REFERENCE_IMAGES``, each an existing file (before the model loads)."""
    from .pipeline_emotalk import MAX_REFERENCE_IMAGES

    paths = list(paths or [])
    if len(paths) > MAX_REFERENCE_IMAGES:
        raise EmoTalkInputError(f"--reference-image takes at most {MAX_REFERENCE_IMAGES} photos, got {len(paths)}")
    for number, path in enumerate(paths, start=1):
        _check_input_file(path, f"reference image {number}")
    return paths


def _emotion_labels(model: str | None) -> tuple[str, ...] | None:
    """The model's emotion classes, read from a local config.json (None for a Hub id: checked after loading)."""
    from emotalk_common.constants import EMOTION_LABELS as EMOTIONS

    from . import DEFAULT_CHECKPOINT

    config = Path(model or DEFAULT_CHECKPOINT) / "config.json"
    if not config.is_file():
        return None
    try:
        landmark = json.loads(config.read_text()).get("landmark_config") or {}
    except (json.JSONDecodeError, AttributeError):
        return None  # check_model reports a broken config
    return tuple(landmark.get("emotion_labels") or EMOTIONS)


def check_emotion(args: argparse.Namespace) -> None:
    """Refuse an unknown emotion or a malformed blend/schedule before loading the model."""
    from .emotion import parse_emotion_string, validate_emotion

    labels = _emotion_labels(args.model)
    if labels is not None:
        validate_emotion(parse_emotion_string(args.emotion), labels)


def _check_input_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise EmoTalkInputError(f"the {what} {path!r} does not exist or is not a file")


def needs_remote_code(model: str) -> bool:
    """Whether a local model folder declares its own pipeline code (an exported Hub folder)."""
    from . import TASK

    config = Path(model) / "config.json"
    if not config.is_file():
        return False
    try:
        custom = json.loads(config.read_text()).get("custom_pipelines") or {}
    except (json.JSONDecodeError, AttributeError) as err:
        raise EmoTalkInputError(f"--model {model!r}: config.json is not a valid JSON object ({err})") from err
    return TASK in custom


def check_model(model: str | None, trust_remote_code: bool) -> None:
    """Refuse a missing local model folder, or one that ships code when remote code was not allowed."""
    if model is None:
        return
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1  # a Hub id is org/name
    if looks_local and not path.is_dir():
        raise EmoTalkInputError(f"--model {model!r} does not exist (expected a save_pretrained folder or a Hub id)")
    if path.is_dir() and not (path / "config.json").is_file():
        raise EmoTalkInputError(f"--model {model!r} is not a save_pretrained folder: it has no config.json")
    if path.is_dir() and not trust_remote_code and needs_remote_code(str(path)):
        raise EmoTalkInputError(
            f"--model {model!r} ships its own pipeline code (an exported Hub folder): read that code, then pass "
            "--trust-remote-code to run it"
        )


def check_device(name: str | None) -> str | None:
    """Refuse an unknown device or one this machine does not have, before loading anything."""
    if name is None:
        return None
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise EmoTalkInputError(
            f"--device {name!r} is not a torch device (expected cpu, cuda, cuda:N or mps)"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EmoTalkInputError(f"--device {name!r}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EmoTalkInputError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EmoTalkInputError(f"--device {name!r}: MPS is not available on this machine (use --device cpu)")
    return name


def _load_pipeline(args: argparse.Namespace):
    """The pipeline for ``--model`` (validated), on ``--device`` with ``--dtype``."""
    import torch
    from transformers import pipeline
    from transformers.utils import logging

    from . import DEFAULT_CHECKPOINT, TASK

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    kwargs = {"dtype": getattr(torch, args.dtype)} if args.dtype else {}
    model = args.model or str(DEFAULT_CHECKPOINT)
    try:
        return pipeline(TASK, model=model, device=args.device, trust_remote_code=args.trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:  # missing/corrupt weights or config, unknown Hub id offline
        raise EmoTalkInputError(f"could not load --model {model!r}: {str(err).splitlines()[0]}") from err


# ------------------------------------------------------------------------------------------------ commands
def cmd_generate(args: argparse.Namespace) -> int:
    """``emotalk generate``: one video, or every row of ``--manifest``."""
    if args.manifest:
        return _generate_manifest(args)
    if not (args.image and args.audio and args.output):
        raise EmoTalkInputError("generate needs --image, --audio and --output (or --manifest and --output-dir)")
    from emotalk_common.video_io import check_output_path

    kwargs = _call_kwargs(args)
    check_emotion(args)
    _check_input_file(args.image, "image")
    _check_input_file(args.audio, "audio file")
    references = check_reference_images(args.reference_images)
    if references:
        kwargs["reference_images"] = references
    inputs = (args.image, args.audio, *references)
    output = check_output_path(args.output, inputs=inputs, overwrite=args.overwrite)
    check_model(args.model, args.trust_remote_code)
    check_device(args.device)
    with quiet_native_logs():
        pipe = _load_pipeline(args)
        video = pipe(args.image, args.audio, **kwargs)
        video.save(output)
    print(
        f"wrote {output} ({video.num_frames} frames, {video.duration:.2f} s, emotion {video.emotion}, seed {video.seed})"
    )
    return 0


def _generate_manifest(args: argparse.Namespace) -> int:
    from .batch import check_unique_outputs, process_state, read_manifest, run_manifest

    if not args.output_dir:
        raise EmoTalkInputError("--manifest needs --output-dir")
    if args.reference_images:
        raise EmoTalkInputError(
            "--reference-image applies to --image only; give a manifest row its photos in its 'reference_images' "
            "column (';'-separated paths)"
        )
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise EmoTalkInputError(f"--output-dir {args.output_dir!r} is a file, expected a folder")
    check_unique_outputs(read_manifest(args.manifest), output_dir)  # refuse before loading the model
    kwargs = _call_kwargs(args)
    kwargs.pop("emotion", None)
    kwargs.pop("intensity", None)
    check_model(args.model, args.trust_remote_code)
    check_device(args.device)
    state = process_state()
    args.device = args.device or str(state.device)  # one device per process under accelerate
    output_dir.mkdir(parents=True, exist_ok=True)
    from emotalk_common.video_io import check_writable

    check_writable(output_dir)

    def show(report: dict) -> None:  # this process's share
        for failure in report["failed"]:
            print(f"row {failure['row']} failed: {failure['error']}", file=sys.stderr)
        print(json.dumps({k: len(v) for k, v in report.items()}), flush=True)

    with quiet_native_logs():
        pipe = _load_pipeline(args)
        merged = run_manifest(
            pipe, args.manifest, output_dir, overwrite=args.overwrite, state=state, on_report=show, progress=False,
            **kwargs,
        )  # fmt: skip
    if state.is_main_process and state.num_processes > 1:
        counts = ", ".join(f"{len(v)} {k}" for k, v in merged.items())
        print(f"all processes: {counts}; report in {output_dir / 'report.json'}", file=sys.stderr)
    return 1 if merged["failed"] else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``emotalk demo``: the bundled portrait and speech."""
    from emotalk_common.video_io import check_output_path

    from . import ASSETS

    kwargs = _call_kwargs(args)
    check_emotion(args)
    output = check_output_path(args.output, overwrite=args.overwrite)
    check_model(args.model, args.trust_remote_code)
    check_device(args.device)
    from skimage import data

    with quiet_native_logs():
        pipe = _load_pipeline(args)
        if args.seed is None:
            kwargs["seed"] = 0
        video = pipe(data.astronaut(), str(ASSETS / "demo_speech.flac"), **kwargs)
        video.save(output)
    print(
        f"wrote {output} ({video.num_frames} frames, {video.duration:.2f} s, emotion {video.emotion}, seed {video.seed})"
    )
    return 0


# ------------------------------------------------------------------------------------------------ running
@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Drop the fixed native log lines mediapipe/TFLite write to file descriptor 2; forward everything else.

    Python's own ``sys.stderr`` (progress bars, warnings, tracebacks) keeps writing to the real stderr.
    """
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable file descriptor 2 (embedded, captured)
        yield
        return
    read_end, write_end = os.pipe()
    python_stderr = sys.stderr
    if _is_fd2(python_stderr):  # keep Python's writes off the filter (progress bars update without newlines)
        sys.stderr = open(  # noqa: SIM115  (closed in the finally below)
            os.dup(real), "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace"
        )

    def forward() -> None:
        with open(read_end, "rb") as pipe, open(real, "wb", closefd=False) as out:
            for line in pipe:
                if not NATIVE_NOISE.search(line.decode("utf-8", "replace")):
                    out.write(line)
                    out.flush()

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the forwarder drains and stops
        thread.join(timeout=5)
        if sys.stderr is not python_stderr:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.close(real)


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (OSError, ValueError, AttributeError):  # pytest's capture, StringIO
        return False


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``generate``/``demo`` command; one line on stderr and a non-zero exit on failure."""
    command = {"generate": cmd_generate, "demo": cmd_demo}[args.command]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated")
            return int(command(args) or 0)
    except EmoTalkInputError as err:
        print(f"emotalk: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission lost mid-run: the partial file is already removed
        print(f"emotalk: error: {_describe_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("emotalk: interrupted", file=sys.stderr)
        return 130


def _describe_os_error(err: OSError) -> str:
    import errno

    where = f" ({err.filename})" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing{where}; nothing was written"
    return f"{err.strerror or err}{where}"
