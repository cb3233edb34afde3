"""Turn an EmoTalk checkpoint into the folder that goes to the Hugging Face Hub (and optionally push it).

    python conversion/export_to_hub.py --output hub/emotalk-default
        [--checkpoint DIR] [--landmark-model DIR] [--generator DIR]
        [--eval-results results.json] [--provenance auto|untrained|internal-demo|custom] [--training-data TEXT]
        [--repo-id emotalk/emotalk-default] [--push-to-hub] [--overwrite]

The folder holds exactly what is pushed:

- ``config.json``: the composite config with ``auto_map`` (AutoConfig / AutoModel → the flat code files)
  and ``custom_pipelines`` (the ``emotional-talking-face`` task → ``pipeline_emotalk.EmotionalTalkingFacePipeline``),
- ``model.safetensors`` (both stages) and ``preprocessor_config.json``,
- the remote code: every module reachable by imports from the config, model and pipeline modules, copied flat
  to the folder root with the project's absolute imports (``from modeling_emotalk.errors import X``) rewritten
  to relative ones (``from .errors import X``); the export fails if any project import remains,
- ``README.md``: the model card (see ``model_card.py``).

Then, where this project is NOT installed,
``pipeline("emotional-talking-face", model=<folder or repo id>, trust_remote_code=True)`` works.

``--checkpoint`` takes a composite ``save_pretrained`` folder (default: the embedded default checkpoint), a
stage-1 or stage-2 folder (the other stage comes from the embedded default), or a training output folder
that holds such folders (found up to two levels down). ``--landmark-model`` / ``--generator`` replace a stage.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model_card import ModelCardError, build_model_card, detect_untrained_stages, load_eval_results

DEFAULT_REPO_ID = "emotalk/emotalk-default"
TASK = "emotional-talking-face"
# Import names of this project: none of them may remain as an absolute import in the remote code.
PROJECT_PACKAGES = ("modeling_emotalk", "emotalk_pipeline", "emotalk_training", "emotalk_evaluation")
# The packages whose modules may be copied into the remote code (the others are never needed by inference).
FLATTENABLE_PACKAGES = ("modeling_emotalk", "emotalk_pipeline")
MODEL_TYPES = {"emotalk": "composite", "emotalk_landmark": "landmark", "emotalk_generator": "generator"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class ExportError(RuntimeError):
    """The checkpoint or the code cannot be exported; the message says what to change."""


# ------------------------------------------------------------------------------------------- flattening
@dataclass
class FlatModule:
    """One remote-code file: the project module it comes from and its rewritten source."""

    module: str
    source_path: Path
    flat_name: str
    text: str = ""
    imports: list[str] = field(default_factory=list)


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ExportError(f"cannot find the module {module!r}: is the project installed (pip install -e .)?")
    if spec.submodule_search_locations is not None:
        raise ExportError(
            f"{module!r} is a package: remote code is flat, import the submodule that defines the name instead"
        )
    return Path(spec.origin)


def _is_module(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    return spec is not None and spec.submodule_search_locations is None


def _package_exports(package: str) -> dict[str, str]:
    """``{name: submodule}`` for the names a project package's ``__init__`` re-exports with relative imports."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return {}
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    exports = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                exports[alias.asname or alias.name] = f"{package}.{node.module}"
    return exports


def _format_import(module: str, aliases: Sequence[ast.alias]) -> str:
    names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in aliases)
    return f"from .{module.rsplit('.', 1)[-1]} import {names}"


def _resolve_import(node: ast.stmt, module: str, where: str) -> tuple[list[str], str | None]:
    """The project modules an import statement needs and, when it must change, its flat replacement."""
    package = module.rsplit(".", 1)[0]
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in PROJECT_PACKAGES:
                raise ExportError(
                    f"{where}: `import {alias.name}` cannot be made relative; write `from {alias.name} import Name`"
                )
        return [], None
    assert isinstance(node, ast.ImportFrom)
    if node.level > 1:
        raise ExportError(f"{where}: relative import with {node.level} dots; the remote code is one flat folder")
    if node.level == 1:
        if node.module:
            target = f"{package}.{node.module}"
            if not _is_module(target):
                raise ExportError(f"{where}: `from .{node.module} import ...` does not name a module of {package}")
            return [target], None
        targets = [f"{package}.{a.name}" for a in node.names]
        missing = [t for t in targets if not _is_module(t)]
        if missing:
            raise ExportError(
                f"{where}: `from . import ...` takes {missing} from the package __init__, which is not remote "
                "code; import them from the submodule that defines them"
            )
        return targets, None
    top = (node.module or "").split(".")[0]
    if top not in PROJECT_PACKAGES:
        return [], None
    if top not in FLATTENABLE_PACKAGES:
        raise ExportError(f"{where}: imports {node.module!r}, which is not part of the inference code")
    if node.module != top:  # from modeling_emotalk.errors import X
        if not _is_module(node.module):
            raise ExportError(f"{where}: {node.module!r} is not a module")
        return [node.module], _format_import(node.module, node.names)
    # from modeling_emotalk import X, Y: find the submodule behind each name
    exports = _package_exports(top)
    groups: dict[str, list[ast.alias]] = {}
    for alias in node.names:
        target = exports.get(alias.name)
        if target is None and _is_module(f"{top}.{alias.name}"):
            raise ExportError(f"{where}: `from {top} import {alias.name}` imports a module; use a from-import of it")
        if target is None:
            raise ExportError(f"{where}: cannot tell which module of {top} defines {alias.name!r}")
        groups.setdefault(target, []).append(alias)
    return list(groups), "\n".join(_format_import(t, a) for t, a in groups.items())


def _rewrite(text: str, replacements: list[tuple[ast.stmt, str]]) -> str:
    """Replace import statements (located by their AST positions) with new text, same indentation."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = text.encode("utf-8")
    for node, new in sorted(replacements, key=lambda item: (item[0].lineno, item[0].col_offset), reverse=True):
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        indent = " " * node.col_offset
        data = data[:start] + new.replace("\n", "\n" + indent).encode("utf-8") + data[end:]
    return data.decode("utf-8")


def collect_remote_code(entry_modules: Iterable[str]) -> dict[str, FlatModule]:
    """Follow the project imports from ``entry_modules``; return ``{flat file name: FlatModule}`` rewritten.

    Imports anywhere in a module count (also the lazy ones inside functions); docstrings are left alone.
    """
    pending = list(entry_modules)
    seen: dict[str, FlatModule] = {}
    while pending:
        module = pending.pop(0)
        if module in seen:
            continue
        if module.split(".")[0] not in FLATTENABLE_PACKAGES or module.count(".") != 1:
            raise ExportError(f"cannot flatten {module!r}: only modules directly inside {FLATTENABLE_PACKAGES}")
        path = _module_file(module)
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        flat = FlatModule(module=module, source_path=path, flat_name=module.rsplit(".", 1)[-1] + ".py")
        replacements = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets, new = _resolve_import(node, module, f"{path.name}:{node.lineno}")
                flat.imports.extend(targets)
                pending.extend(targets)
                if new is not None:
                    replacements.append((node, new))
        header = f"# Hub remote code, generated by conversion/export_to_hub.py from {module}: edit the source, not this copy.\n"
        flat.text = header + _rewrite(text, replacements)
        seen[module] = flat
    by_name: dict[str, FlatModule] = {}
    for flat in seen.values():
        other = by_name.get(flat.flat_name)
        if other is not None:
            raise ExportError(
                f"{other.module} and {flat.module} would both become {flat.flat_name} at the repo root: rename one"
            )
        by_name[flat.flat_name] = flat
    return by_name


def check_remote_code(folder: Path) -> list[str]:
    """Fail loudly unless every ``.py`` in ``folder`` imports project code only relatively, from files present."""
    names = sorted(p.name for p in folder.glob("*.py"))
    for name in names:
        path = folder / name
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                bad = [a.name for a in node.names if a.name.split(".")[0] in PROJECT_PACKAGES]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                bad = [node.module] if (node.module or "").split(".")[0] in PROJECT_PACKAGES else []
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module] if node.module else [a.name for a in node.names]
                missing = [t for t in targets if f"{t}.py" not in names]
                if node.level != 1 or missing:
                    raise ExportError(f"{where}: relative import of {missing or targets} has no flat file to load")
                bad = []
            else:
                continue
            if bad:
                raise ExportError(f"{where}: absolute import of this project's {bad} in the remote code")
    return names


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


def custom_pipelines_entry(repo_id: str) -> dict:
    """The ``custom_pipelines`` entry, in the format ``Pipeline.save_pretrained`` writes for the registered task."""
    import emotalk_pipeline
    from transformers.pipelines import PIPELINE_REGISTRY

    registered = PIPELINE_REGISTRY.supported_tasks.get(emotalk_pipeline.TASK)
    if registered is None:
        raise ExportError(f"the {emotalk_pipeline.TASK!r} task is not registered by emotalk_pipeline")
    impl = registered["impl"]
    entry = {
        "impl": f"{impl.__module__.rsplit('.', 1)[-1]}.{impl.__name__}",
        "pt": [cls.__name__ for cls in registered["pt"]],
        "type": registered.get("type", "multimodal"),
        # the registered default is the embedded folder's local path: on the Hub it is this repo
        "default": {"model": [repo_id, None]},
    }
    return {emotalk_pipeline.TASK: entry}


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ExportError(f"--output {output} is a file, expected a folder")
    if output.is_dir():
        entries = [p for p in output.iterdir() if not p.name.startswith(".")]
        if entries and not overwrite:
            raise ExportError(f"--output {output} is not empty: pass --overwrite to replace its files")
        folders = [p.name for p in entries if p.is_dir()]
        if folders:
            raise ExportError(f"--output {output} contains folders {folders}: refusing to replace it")
        for path in entries:
            path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def export(
    output: Path,
    checkpoint: Path | None = None,
    *,
    landmark_model: Path | None = None,
    generator: Path | None = None,
    repo_id: str = DEFAULT_REPO_ID,
    eval_results: Path | None = None,
    provenance: str = "auto",
    training_data: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write the Hub folder; return its file names."""
    import emotalk_pipeline

    import modeling_emotalk

    output = Path(output)
    model, preprocessor = load_composite(checkpoint, landmark_model, generator)
    evaluation = load_eval_results(eval_results) if eval_results else None
    untrained = detect_untrained_stages(model)
    remote = collect_remote_code(
        [
            modeling_emotalk.EmoTalkConfig.__module__,
            modeling_emotalk.EmoTalkModel.__module__,
            emotalk_pipeline.EmotionalTalkingFacePipeline.__module__,
        ]
    )
    card = build_model_card(
        model,
        repo_id=repo_id,
        evaluation=evaluation,
        provenance=provenance,
        training_data=training_data,
        untrained_stages=untrained,
        base_model=base_model,
        datasets=datasets,
    )

    _prepare_output(output, overwrite)
    with tempfile.TemporaryDirectory() as tmp:
        model.config.custom_pipelines = custom_pipelines_entry(repo_id)
        model.save_pretrained(tmp)  # writes auto_map (register_for_auto_class) and the weights
        for path in Path(tmp).iterdir():  # config + weights (shards too); the code files are written below
            if path.suffix != ".py":
                shutil.copyfile(path, output / path.name)
    shutil.copyfile(preprocessor / "preprocessor_config.json", output / "preprocessor_config.json")
    for name, flat in remote.items():
        (output / name).write_text(flat.text, encoding="utf-8")
    card.save(output / "README.md")

    _check_config(output / "config.json", remote)
    check_remote_code(output)
    return sorted(p.name for p in output.iterdir())


def _check_config(path: Path, remote: dict[str, FlatModule]) -> None:
    config = json.loads(path.read_text())
    references = [
        *config.get("auto_map", {}).values(),
        *(p["impl"] for p in config.get("custom_pipelines", {}).values()),
    ]
    if not {"AutoConfig", "AutoModel"} <= set(config.get("auto_map", {})) or TASK not in config.get(
        "custom_pipelines", {}
    ):
        raise ExportError(f"{path} lacks auto_map (AutoConfig, AutoModel) or custom_pipelines[{TASK!r}]")
    for reference in references:
        module = reference.rsplit(".", 1)[0]
        if f"{module}.py" not in remote:
            raise ExportError(f"{path} refers to {reference!r} but {module}.py is not part of the remote code")


# ------------------------------------------------------------------------------------------------ push
def push(folder: Path, repo_id: str, *, private: bool = False, commit_message: str | None = None) -> str:
    """``create_repo(exist_ok=True)`` + ``upload_folder``; raise :class:`ExportError` with a clear message."""
    from huggingface_hub import create_repo, is_offline_mode, upload_folder
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    if is_offline_mode():
        raise ExportError(
            f"cannot push to {repo_id}: HF_HUB_OFFLINE=1 is set. The folder {folder} is complete; push it later "
            f"with `hf upload {repo_id} {folder} .` or by re-running with --push-to-hub online"
        )
    try:
        create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        info = upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            commit_message=commit_message or "Upload EmoTalk (conversion/export_to_hub.py)",
        )
    except LocalTokenNotFoundError as err:
        raise ExportError(f"cannot push to {repo_id}: not logged in (run `hf auth login` or set HF_TOKEN)") from err
    except HfHubHTTPError as err:
        raise ExportError(f"cannot push to {repo_id}: the Hub refused the request: {err}") from err
    except Exception as err:  # DNS, proxy, timeouts, no network: the HTTP client's own error types vary by version
        raise ExportError(
            f"cannot push to {repo_id}: the Hub is unreachable ({type(err).__name__}: {err}). The folder "
            f"{folder} is complete; push it later with `hf upload {repo_id} {folder} .`"
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
    parser.add_argument("--eval-results", type=Path, default=None, help="results.json of `emotalk evaluate`")
    parser.add_argument(
        "--provenance",
        choices=("auto", "untrained", "internal-demo", "custom"),
        default="auto",
        help="where the weights come from (model card); auto recognizes the seeded untrained stages only",
    )
    parser.add_argument("--training-data", default=None, help="markdown describing the training data (model card)")
    parser.add_argument("--base-model", default=None, help="Hub id the audio encoder was imported from, if any")
    parser.add_argument("--dataset", action="append", default=None, help="Hub dataset id used for training (repeat)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --output")
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
