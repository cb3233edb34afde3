"""Helpers shared by the two training scripts: base models, composite folders, checkpoints, hub, plots.

The training loops themselves stay in ``train_landmarks.py`` and ``train_generator.py`` (one self-contained
script per stage, as in diffusers' examples); what is here is plumbing around them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from modeling_emotalk.errors import EmoTalkInputError

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINT_MANIFEST = "checkpoint_complete.json"  # written last into a checkpoint: its files and their sizes
STAGE_ATTRIBUTES = {"landmark": "landmark_model", "generator": "generator"}
STAGE_MODEL_TYPES = {"landmark": "emotalk_landmark", "generator": "emotalk_generator"}
logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ models
def default_base_model() -> str:
    """The embedded default composite checkpoint of the pipeline."""
    from emotalk_pipeline import DEFAULT_CHECKPOINT

    return str(DEFAULT_CHECKPOINT)


def model_type_of(path: str | Path) -> str:
    """``model_type`` of a ``save_pretrained`` folder (``emotalk``, ``emotalk_landmark`` or ``emotalk_generator``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: --base_model must be a save_pretrained folder")
    return json.loads(config.read_text()).get("model_type", "")


def load_stage(base_model: str | Path, stage: str) -> Any:
    """Stage ``"landmark"`` or ``"generator"`` from a composite folder or a folder of that stage alone."""
    from modeling_emotalk import EmoTalkGenerator, EmoTalkLandmarkModel, EmoTalkModel

    classes = {"landmark": EmoTalkLandmarkModel, "generator": EmoTalkGenerator}
    kind = model_type_of(base_model)
    if kind == "emotalk":
        return getattr(EmoTalkModel.from_pretrained(str(base_model)), STAGE_ATTRIBUTES[stage])
    if kind == STAGE_MODEL_TYPES[stage]:
        return classes[stage].from_pretrained(str(base_model))
    raise ValueError(
        f"{base_model} holds a {kind!r} model; expected a composite 'emotalk' folder or an "
        f"{STAGE_MODEL_TYPES[stage]!r} folder for this stage"
    )


def write_composite(stage_model: Any, stage: str, template: str | Path, output: str | Path) -> Path:
    """A complete folder that ``pipeline("emotional-talking-face", model=output)`` loads.

    ``template`` is a composite folder providing the other stage and ``preprocessor_config.json``; the trained
    ``stage_model`` replaces its ``stage``. Like ``conversion/build_default_checkpoint.py``, the folder holds
    config.json, model.safetensors and preprocessor_config.json (the installed package provides the code).
    """
    from transformers import Wav2Vec2FeatureExtractor

    from modeling_emotalk import EmoTalkModel
    from modeling_emotalk.packaging import strip_remote_code

    if model_type_of(template) != "emotalk":
        raise ValueError(f"the composite template {template} is not a composite 'emotalk' folder")
    composite = EmoTalkModel.from_pretrained(str(template))  # loaded before output (may be template) is written
    preprocessor = Path(template) / "preprocessor_config.json"
    extractor = (
        Wav2Vec2FeatureExtractor.from_pretrained(str(template))
        if preprocessor.is_file()
        else Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
        )
    )
    setattr(composite, STAGE_ATTRIBUTES[stage], stage_model)
    setattr(composite.config, f"{stage}_config", stage_model.config)
    if stage == "generator":
        composite.config.crop_size = int(stage_model.config.image_size)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for stale in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (output / stale).unlink(missing_ok=True)
    composite.save_pretrained(output)
    extractor.save_pretrained(output)
    strip_remote_code(output)
    return output


# ------------------------------------------------------------------------------------------------ checkpoints
def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete ``checkpoint-<step>`` folders of ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


class IncompleteCheckpointError(EmoTalkInputError):
    """A checkpoint folder that cannot be resumed from (a file missing, truncated or corrupt)."""


def _file_sizes(folder: Path) -> dict[str, int]:
    return {
        str(file.relative_to(folder)): file.stat().st_size
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.name != CHECKPOINT_MANIFEST
    }


def write_checkpoint_manifest(folder: str | Path) -> Path:
    """Flush every file of a written checkpoint to disk, then record their sizes in ``checkpoint_complete.json``.

    The manifest is written last: a folder without it, or whose files no longer have the recorded sizes, is
    incomplete (:func:`checkpoint_problem`).
    """
    folder = Path(folder)
    sizes = _file_sizes(folder)
    for name in sizes:
        with open(folder / name, "rb") as handle:
            os.fsync(handle.fileno())
    manifest = folder / CHECKPOINT_MANIFEST
    temporary = manifest.with_suffix(".tmp")
    temporary.write_text(json.dumps({"files": sizes}, indent=1) + "\n")
    os.replace(temporary, manifest)
    return manifest


def _file_problem(path: Path) -> str | None:
    """Why a safetensors or torch-zip file of a checkpoint is unreadable (None when its structure is sound)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            return str(error)
    elif path.suffix in (".bin", ".pt") and not zipfile.is_zipfile(path):  # torch.save writes zip archives
        return "not a complete torch.save archive"
    return None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``accelerator.load_state(path)`` would fail on this checkpoint folder; None when it looks complete.

    Checked: the sizes recorded in ``checkpoint_complete.json`` (checkpoints of older versions have none), and
    the structure of every safetensors file (header and length) and torch archive.
    """
    path = Path(path)
    manifest = path / CHECKPOINT_MANIFEST
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())["files"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            return f"{CHECKPOINT_MANIFEST} is unreadable ({error})"
        actual = _file_sizes(path)
        for name, size in recorded.items():
            if name not in actual:
                return f"{name} is missing"
            if actual[name] != size:
                return f"{name} has {actual[name]} bytes, {size} were written"
    for file in sorted(path.rglob("*")):
        problem = _file_problem(file) if file.is_file() else None
        if problem is not None:
            return f"{file.relative_to(path)}: {problem}"
    return None


def resolve_checkpoint(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """``latest`` → the newest complete checkpoint of ``output_dir`` (None when there is none); else the path.

    With ``latest``, an incomplete newest checkpoint (see :func:`checkpoint_problem`) is skipped with a warning
    in favour of the newest complete one; :class:`IncompleteCheckpointError` when every checkpoint is incomplete,
    or when the checkpoint named explicitly is.
    """
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        return _latest_complete(output_dir)
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        path = Path(output_dir) / resume_from_checkpoint
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {resume_from_checkpoint!r} not found (nor in {output_dir})")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise IncompleteCheckpointError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: {path} is incomplete ({problem}); expected a "
            "complete checkpoint folder: pass an older one, or 'latest' to pick the newest complete one"
        )
    return path


def _latest_complete(output_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    problems = []
    for _, path in reversed(checkpoints):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        problems.append(f"{path.name}: {problem}")
        logger.warning(f"checkpoint {path.name} is incomplete ({problem}): skipping it, trying an older one")
    if problems:
        raise IncompleteCheckpointError(
            f"--resume_from_checkpoint latest: no complete checkpoint in {output_dir} ({'; '.join(problems)}); "
            "expected at least one: delete the broken checkpoint folders to start a new run"
        )
    return None


def checkpoint_step(path: Path) -> int:
    """The step encoded in a ``checkpoint-<step>`` folder name."""
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint-<step> folder")
    return int(match.group(1))


def save_checkpoint(accelerator: Any, output_dir: str | Path, step: int, total_limit: int | None, logger: Any) -> Path:
    """``accelerator.save_state`` into ``checkpoint-<step>``, atomically (a killed run never leaves half a checkpoint).

    The state goes to a ``.partial`` folder that is renamed when every process has written its part and the
    main process has flushed it to disk and written its manifest (:func:`write_checkpoint_manifest`); the oldest
    checkpoints beyond ``total_limit`` are removed first (diffusers' ``--checkpoints_total_limit``).
    """
    root = Path(output_dir)
    final = root / f"checkpoint-{step}"
    partial = root / f".checkpoint-{step}.partial"
    if accelerator.is_main_process:
        if total_limit is not None:
            checkpoints = [p for s, p in list_checkpoints(root) if s != step]
            excess = len(checkpoints) - max(total_limit - 1, 0)
            if excess > 0:
                logger.info(f"removing {excess} old checkpoint(s): {', '.join(p.name for p in checkpoints[:excess])}")
                for old in checkpoints[:excess]:
                    shutil.rmtree(old)
        if partial.exists():
            shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_checkpoint_manifest(partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        logger.info(f"Saved state to {final}")
    accelerator.wait_for_everyone()
    return final


# ------------------------------------------------------------------------------------------------ hub
def push_folder_to_hub(folder: str | Path, repo_id: str | None, token: str | None, logger: Any) -> bool:
    """Upload ``folder`` (checkpoints, logs and validation media excluded); a clear no-op when offline."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        logger.warning(f"HF_HUB_OFFLINE=1: --push_to_hub does nothing (offline); {folder} is ready to upload later")
        return False
    from huggingface_hub import create_repo, upload_folder

    repo_id = repo_id or Path(folder).resolve().name
    repo_id = create_repo(repo_id, exist_ok=True, token=token).repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message="EmoTalk fine-tuning",
        ignore_patterns=["checkpoint-*", ".checkpoint-*", "logs/*", "validation/*"],
        token=token,
    )
    logger.info(f"pushed {folder} to https://huggingface.co/{repo_id}")
    return True


# ------------------------------------------------------------------------------------------------ plots
def _to_pixels(landmarks: np.ndarray, size: int) -> np.ndarray:
    return np.round((np.asarray(landmarks)[:, :2] + 1.0) * (size / 2.0) * 16).astype(np.int32)


def draw_landmarks(canvas: np.ndarray, landmarks: np.ndarray, color: tuple[int, int, int], radius: int = 1) -> None:
    """Draw normalized-crop-coordinate landmarks ``(478, 2|3)`` onto an RGB uint8 canvas, in place."""
    import cv2

    for x, y in _to_pixels(landmarks, canvas.shape[0]):
        cv2.circle(canvas, (int(x), int(y)), radius * 16, color, -1, lineType=cv2.LINE_AA, shift=4)


def landmark_plot(
    predicted: np.ndarray, target: np.ndarray, times: list[int], size: int = 192, curves: dict | None = None
) -> np.ndarray:
    """A validation figure for stage 1: predicted (red) over ground-truth (green) landmarks at ``times``,
    and below it optional curves (name → (predicted ``(T,)``, target ``(T,)``)) such as the lip aperture."""
    import cv2

    panels = []
    for t in times:
        canvas = np.full((size, size, 3), 255, dtype=np.uint8)
        draw_landmarks(canvas, target[t], (40, 160, 40))
        draw_landmarks(canvas, predicted[t], (220, 40, 40))
        cv2.putText(canvas, f"t={t}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(canvas)
    figure = np.concatenate(panels, axis=1)
    for name, (pred, true) in (curves or {}).items():
        height, width = 96, figure.shape[1]
        plot = np.full((height, width, 3), 255, dtype=np.uint8)
        values = np.concatenate([pred, true])
        low, high = float(values.min()), float(values.max())
        span = max(high - low, 1e-6)
        for series, color in ((true, (40, 160, 40)), (pred, (220, 40, 40))):
            xs = np.linspace(4, width - 4, len(series))
            ys = height - 8 - (np.asarray(series) - low) / span * (height - 24)
            points = np.stack([xs, ys], -1).round().astype(np.int32)
            cv2.polylines(plot, [points], False, color, 1, cv2.LINE_AA)
        cv2.putText(plot, name, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        figure = np.concatenate([figure, plot], axis=0)
    return figure


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write an RGB uint8 image."""
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def tensorboard_writer(accelerator: Any) -> Any | None:
    """The ``SummaryWriter`` of the tensorboard tracker, when one is active."""
    for tracker in getattr(accelerator, "trackers", []):
        if tracker.name == "tensorboard":
            return tracker.writer
    return None


__all__ = [
    "IncompleteCheckpointError",
    "checkpoint_problem",
    "checkpoint_step",
    "default_base_model",
    "draw_landmarks",
    "landmark_plot",
    "list_checkpoints",
    "load_stage",
    "model_type_of",
    "push_folder_to_hub",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_png",
    "tensorboard_writer",
    "write_checkpoint_manifest",
    "write_composite",
]
