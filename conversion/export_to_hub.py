"""Turn an EmoTalk checkpoint into the folder that goes to the Hugging Face Hub (and optionally push it).

    python conversion/export_to_hub.py --output hub/emotalk-default
        [--checkpoint DIR] [--landmark-model DIR] [--generator DIR] [--revision TAG_OR_SHA]
        [--eval-results results.json] [--provenance auto|untrained|internal-demo|custom] [--training-data TEXT]
        [--repo-id emotalk/emotalk-default] [--push-to-hub] [--overwrite]

The folder is what ``pipe.save_pretrained(dir)`` writes (``emotalk_pipeline.hub_folder.write_pipeline_folder``:
config with ``auto_map`` and ``custom_pipelines``, weights, preprocessor config, the flat remote code,
``provenance.json`` and the manifest ``.emotalk_export.json``), plus ``README.md``, the model card
(``model_card.py``). Then, where this project is NOT installed,
``pipeline("emotional-talking-face", model=<folder or repo id>, revision=..., trust_remote_code=True)`` works.

``--checkpoint`` takes a composite ``save_pretrained`` folder (default: the embedded default checkpoint), a
stage-1 or stage-2 folder (the other stage comes from the embedded default), or a training output folder
that holds such folders (found up to two levels down). ``--landmark-model`` / ``--generator`` replace a stage.
``--provenance auto`` uses the ``provenance.json`` recorded beside the checkpoint (the embedded default has
one) when both stages come from that folder; otherwise it recognizes untrained weights only.
``--revision`` is the tag or commit sha the card's snippets and the pipeline default pin (default
``v{package version}``, the release tag: create that tag on the Hub repo when pushing, or pass the sha).
``--overwrite`` replaces only the files a previous export wrote (its manifest); other files stay.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from emotalk_pipeline.hub_folder import (
    DEFAULT_REPO_ID,
    MANIFEST,
    ExportError,
    check_revision,
    default_revision,
    find_provenance,
    read_manifest,
    write_pipeline_folder,
)
from model_card import (
    ModelCardError,
    build_model_card,
    detect_untrained_stages,
    load_eval_results,
    resolve_provenance,
)

MODEL_TYPES = {"emotalk": "composite", "emotalk_landmark": "landmark", "emotalk_generator": "generator"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


# ------------------------------------------------------------------------------------------- checkpoint
def _model_type(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return None


def find_checkpoint_folders(path: Path) -> dict[str, Path]:
    """``{"composite"|"landmark"|"generator": folder}`` found at ``path`` or up to two levels below it."""
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"checkpoint folder {str(path)!r} does not exist")
    kind = MODEL_TYPES.get(_model_type(path) or "")
    if kind:
        return {kind: path}
    if (path / "config.json").is_file():
        raise ExportError(
            f"{path} holds a {_model_type(path)!r} checkpoint, expected one of {sorted(MODEL_TYPES)} (an EmoTalk "
            "save_pretrained folder); for a wav2vec2 encoder use conversion/convert_wav2vec2.py"
        )
    found: dict[str, list[Path]] = {}
    for config in sorted([*path.glob("*/config.json"), *path.glob("*/*/config.json")]):
        kind = MODEL_TYPES.get(_model_type(config.parent) or "")
        if kind and any((config.parent / w).is_file() for w in WEIGHT_FILES):
            found.setdefault(kind, []).append(config.parent)
    if not found:
        raise ExportError(f"no EmoTalk checkpoint (config.json with model_type in {sorted(MODEL_TYPES)}) in {path}")
    ambiguous = {k: v for k, v in found.items() if len(v) > 1}
    if ambiguous:
        listing = "; ".join(f"{k}: {', '.join(str(p) for p in v)}" for k, v in ambiguous.items())
        raise ExportError(f"several checkpoints in {path} ({listing}): pass the folder to export")
    if "composite" in found and len(found) > 1:
        raise ExportError(f"{path} holds both a composite and stage checkpoints: pass the folder to export")
    return {k: v[0] for k, v in found.items()}


def _stage_folder(path: Path, kind: str) -> Path:
    folders = find_checkpoint_folders(path)
    if kind not in folders:
        raise ExportError(f"{path} holds no {kind} checkpoint (found: {', '.join(sorted(folders)) or 'nothing'})")
    return folders[kind]


def default_checkpoint() -> Path:
    spec = importlib.util.find_spec("emotalk_pipeline")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError("the emotalk package is not installed: pip install -e . from the repository root")
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoints" / "emotalk-default"


def load_composite(checkpoint: Path | None = None, landmark_model: Path | None = None, generator: Path | None = None):
    """The composite ``EmoTalkModel`` (eval mode) and the folder its preprocessor config comes from."""
    from modeling_emotalk import EmoTalkGenerator, EmoTalkLandmarkModel, EmoTalkModel

    folders = find_checkpoint_folders(checkpoint or default_checkpoint())
    landmark_model = landmark_model or folders.get("landmark")
    generator = generator or folders.get("generator")
    base = folders.get("composite") or default_checkpoint()
    model = EmoTalkModel.from_pretrained(base)
    if landmark_model:
        stage = EmoTalkLandmarkModel.from_pretrained(_stage_folder(landmark_model, "landmark"))
        model.landmark_model = stage
        model.config.landmark_config = stage.config
    if generator:
        stage = EmoTalkGenerator.from_pretrained(_stage_folder(generator, "generator"))
        model.generator = stage
        model.config.generator_config = stage.config
    preprocessor = next(
        (
            folder
            for folder in (folders.get("composite"), landmark_model, base)
            if folder and (Path(folder) / "preprocessor_config.json").is_file()
        ),
        None,
    )
    if preprocessor is None:
        raise ExportError(f"no preprocessor_config.json in {base} (nor in the stage-1 folder)")
    return model.eval(), Path(preprocessor)


def recorded_provenance(
    checkpoint: Path | None, landmark_model: Path | None = None, generator: Path | None = None
) -> dict | None:
    """The ``provenance.json`` that describes both stages: the composite folder's, unless a stage is replaced."""
    if landmark_model or generator:
        return None
    folders = find_checkpoint_folders(checkpoint or default_checkpoint())
    if set(folders) != {"composite"}:
        return None
    return find_provenance(folders["composite"])


def export(
    output: Path,
    checkpoint: Path | None = None,
    *,
    landmark_model: Path | None = None,
    generator: Path | None = None,
    repo_id: str = DEFAULT_REPO_ID,
    revision: str | None = None,
    eval_results: Path | None = None,
    provenance: str = "auto",
    training_data: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write the Hub folder; return the names of the files written."""
    output = Path(output)
    revision = check_revision(revision if revision is not None else default_revision())
    model, preprocessor = load_composite(checkpoint, landmark_model, generator)
    evaluation = load_eval_results(eval_results) if eval_results else None
    untrained = detect_untrained_stages(model)
    record = recorded_provenance(checkpoint, landmark_model, generator)
    if record is not None and provenance not in ("auto", record["provenance"]):
        record = None  # told otherwise: the recorded description no longer applies
    kind = resolve_provenance(provenance, untrained, training_data, record)
    card = build_model_card(
        model,
        repo_id=repo_id,
        revision=revision,
        evaluation=evaluation,
        provenance=kind,
        training_data=training_data,
        untrained_stages=untrained,
        base_model=base_model,
        datasets=datasets,
        record=record,
    )
    if record is None:
        record = {"provenance": kind, "training_data": training_data, "base_model": base_model}
        record["datasets"] = list(datasets or [])
    write_pipeline_folder(
        model,
        output,
        repo_id=repo_id,
        revision=revision,
        overwrite=overwrite,
        provenance=record,
        preprocessor=preprocessor,
        model_card=str(card),
    )
    return read_manifest(output) or []


# ------------------------------------------------------------------------------------------------ push
def push(folder: Path, repo_id: str, *, private: bool = False, commit_message: str | None = None) -> str:
    """``create_repo(exist_ok=True)`` + ``upload_folder`` of the files the export wrote (its manifest).

    Raises :class:`ExportError` with a clear message.
    """
    from huggingface_hub import create_repo, is_offline_mode, upload_folder
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    files = read_manifest(folder)
    if not files:
        raise ExportError(f"{folder} holds no {MANIFEST}: push a folder written by this exporter")
    if is_offline_mode():
        raise ExportError(
            f"cannot push to {repo_id}: HF_HUB_OFFLINE=1 is set. The folder {folder} is complete; push it later "
            f"with `hf upload {repo_id} {folder} . --exclude {MANIFEST}` or by re-running with --push-to-hub online"
        )
    try:
        create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        info = upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            allow_patterns=files,  # what the export wrote, not the manifest nor anything else in the folder
            commit_message=commit_message or "Upload EmoTalk (conversion/export_to_hub.py)",
        )
    except LocalTokenNotFoundError as err:
        raise ExportError(f"cannot push to {repo_id}: not logged in (run `hf auth login` or set HF_TOKEN)") from err
    except HfHubHTTPError as err:
        raise ExportError(f"cannot push to {repo_id}: the Hub refused the request: {err}") from err
    except Exception as err:  # DNS, proxy, timeouts, no network: the HTTP client's own error types vary by version
        raise ExportError(
            f"cannot push to {repo_id}: the Hub is unreachable ({type(err).__name__}: {err}). The folder "
            f"{folder} is complete; push it later with `hf upload {repo_id} {folder} . --exclude {MANIFEST}`"
        ) from err
    return str(getattr(info, "commit_url", info))


# ------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the folder to write (what would be pushed)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="composite / stage save_pretrained folder or training output (default: the embedded default)",
    )
    parser.add_argument("--landmark-model", type=Path, default=None, help="a stage-1 folder replacing stage 1")
    parser.add_argument("--generator", type=Path, default=None, help="a stage-2 folder replacing stage 2")
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID, help=f"the Hub repo id (default {DEFAULT_REPO_ID})")
    parser.add_argument(
        "--revision",
        default=None,
        help="the tag or commit sha that the card's snippets and the pipeline default pin "
        f"(default {default_revision()}, the package's release tag; a branch such as main is refused)",
    )
    parser.add_argument("--eval-results", type=Path, default=None, help="results.json of `emotalk evaluate`")
    parser.add_argument(
        "--provenance",
        choices=("auto", "untrained", "internal-demo", "custom"),
        default="auto",
        help="where the weights come from (model card); auto: the checkpoint's provenance.json, else untrained only",
    )
    parser.add_argument("--training-data", default=None, help="markdown describing the training data (model card)")
    parser.add_argument("--base-model", default=None, help="Hub id the audio encoder was imported from, if any")
    parser.add_argument("--dataset", action="append", default=None, help="Hub dataset id used for training (repeat)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files a previous export wrote in --output (others are kept)",
    )
    parser.add_argument("--push-to-hub", action="store_true", help="upload the folder to --repo-id")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        files = export(
            args.output,
            args.checkpoint,
            landmark_model=args.landmark_model,
            generator=args.generator,
            repo_id=args.repo_id,
            revision=args.revision,
            eval_results=args.eval_results,
            provenance=args.provenance,
            training_data=args.training_data,
            base_model=args.base_model,
            datasets=args.dataset,
            overwrite=args.overwrite,
        )
        print(f"wrote {args.output}: {', '.join(files)}")
        if args.push_to_hub:
            url = push(args.output, args.repo_id, private=args.private)
            print(f"pushed to https://huggingface.co/{args.repo_id} ({url})")
    except (ExportError, ModelCardError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
