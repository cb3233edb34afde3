"""Write a self-contained pipeline folder: weights, config, preprocessor and the flat remote code.

:func:`write_pipeline_folder` is what ``pipe.save_pretrained(dir)`` and ``conversion/export_to_hub.py`` write:

- ``config.json`` with ``auto_map`` (AutoConfig / AutoModel → the flat code files) and ``custom_pipelines``
  (the ``emotional-talking-face`` task → ``pipeline_emotalk.EmotionalTalkingFacePipeline``; its ``default``
  names the Hub repo pinned to a revision when a repo id is given, never a local path),
- ``model.safetensors`` and ``preprocessor_config.json``,
- the remote code: every module reachable by imports from the config, model and pipeline modules, copied flat
  to the folder root with the project's absolute imports (``from modeling_emotalk.errors import X``) rewritten
  to relative ones (``from .errors import X``); writing fails if any project import remains,
- ``provenance.json`` (where the weights come from) when known, ``README.md`` when a model card is given,
- ``.emotalk_export.json``: the manifest of the files written, so that ``overwrite=True`` replaces exactly
  those and nothing else.

``pipeline("emotional-talking-face", model=<folder>, trust_remote_code=True)`` then works where this project
is not installed. This module is itself part of the remote code (the pipeline's ``save_pretrained`` imports
it), so a pipeline loaded from such a folder can save itself again: its flat files are copied as they are.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

TASK = "emotional-talking-face"
DEFAULT_REPO_ID = "emotalk/emotalk-default"
PIPELINE_MODULE = "emotalk_pipeline.pipeline_emotalk"
PIPELINE_CLASS = "EmotionalTalkingFacePipeline"
MANIFEST = ".emotalk_export.json"
PROVENANCE_FILE = "provenance.json"
# Import names of this project: none of them may remain as an absolute import in the remote code.
PROJECT_PACKAGES = ("modeling_emotalk", "emotalk_pipeline", "emotalk_training", "emotalk_evaluation", "emotalk_common")
# The packages whose modules may be copied into the remote code (the others are never needed by inference).
FLATTENABLE_PACKAGES = ("modeling_emotalk", "emotalk_pipeline", "emotalk_common")
# Branch names move: a pinned revision is a tag or a commit sha.
MOVING_REVISIONS = ("main", "master", "head", "dev", "develop")


class ExportError(RuntimeError):
    """The model or the code cannot be written as a pipeline folder; the message says what to change."""


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
        header = f"# Hub remote code, generated by emotalk_pipeline.hub_folder from {module}: edit the source, not this copy.\n"
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


# --------------------------------------------------------------------------------------------- revision
def default_revision() -> str | None:
    """The release tag of the installed package, ``v{version}`` (None where the package is not installed)."""
    try:
        return f"v{version('emotalk')}"
    except PackageNotFoundError:
        return None


def check_revision(revision: str | None) -> str | None:
    """``revision`` if it pins one state of a repo (a tag or a commit sha); a branch name is refused."""
    if revision is None:
        return None
    text = str(revision).strip()
    if not text or text.lower() in MOVING_REVISIONS or text.startswith("refs/heads/"):
        raise ExportError(
            f"revision {revision!r} is not a pin: a branch moves with every push. Expected a tag (e.g. "
            f"{default_revision() or 'v0.1.0'!r}) or a 40-character commit sha"
        )
    return text


# ------------------------------------------------------------------------------------------------ config
def custom_pipelines_entry(repo_id: str | None = None, revision: str | None = None) -> dict:
    """The ``custom_pipelines`` entry, in the format ``Pipeline.save_pretrained`` writes for the registered task.

    Its ``default`` (the task's default model) is ``[repo_id, revision]``; without a repo id, the published
    default model pinned to this package's release tag, never a local path.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if registered is not None and registered["impl"].__module__.split(".")[0] in FLATTENABLE_PACKAGES:
        impl = registered["impl"]
        entry = {
            "impl": f"{impl.__module__.rsplit('.', 1)[-1]}.{impl.__name__}",
            "pt": [cls.__name__ for cls in registered["pt"]],
            "type": registered.get("type", "multimodal"),
        }
    else:  # loaded as remote code: the task is not registered, the entry is this project's
        entry = {"impl": f"{PIPELINE_MODULE.rsplit('.', 1)[-1]}.{PIPELINE_CLASS}", "pt": ["AutoModel"]}
        entry["type"] = "multimodal"
    if repo_id:
        entry["default"] = {"model": [repo_id, revision]}
    else:
        entry["default"] = {"model": [DEFAULT_REPO_ID, default_revision()]}
    return {TASK: entry}


def check_config(path: Path, code_files: Iterable[str]) -> None:
    """Fail unless ``config.json`` has ``auto_map`` and ``custom_pipelines`` whose references are code files."""
    config = json.loads(Path(path).read_text())
    code = set(code_files)
    auto_map = config.get("auto_map", {})
    if not {"AutoConfig", "AutoModel"} <= set(auto_map) or TASK not in config.get("custom_pipelines", {}):
        raise ExportError(f"{path} lacks auto_map (AutoConfig, AutoModel) or custom_pipelines[{TASK!r}]")
    references = [*auto_map.values(), *(p["impl"] for p in config["custom_pipelines"].values())]
    for reference in references:
        module = reference.rsplit(".", 1)[0]
        if f"{module}.py" not in code:
            raise ExportError(f"{path} refers to {reference!r} but {module}.py is not part of the remote code")


# ------------------------------------------------------------------------------------------------ output
def read_manifest(folder: str | Path) -> list[str] | None:
    """The files a previous export wrote into ``folder`` (None when it holds no manifest)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text()).get("files")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ExportError(f"{path} is not a manifest written by EmoTalk: {err}") from err
    if not isinstance(files, list) or not all(isinstance(f, str) and "/" not in f and f for f in files):
        raise ExportError(f"{path} is not a manifest written by EmoTalk (expected a list of file names)")
    return files


def prepare_output(output: Path, overwrite: bool) -> None:
    """Make ``output`` ready: new or empty, or (with ``overwrite``) a folder this module wrote before.

    Only the files listed in its manifest are deleted; anything else in the folder is left alone. A non-empty
    folder without a manifest is refused even with ``overwrite``: its files are not ours to delete.
    """
    if output.exists() and not output.is_dir():
        raise ExportError(f"output {str(output)!r} is a file, expected a folder")
    entries = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if entries:
        previous = read_manifest(output)
        if previous is None:
            raise ExportError(
                f"output {str(output)!r} is not empty ({', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}) "
                "and was not written by the EmoTalk exporter (no .emotalk_export.json): choose a new or empty folder"
            )
        if not overwrite:
            raise ExportError(
                f"output {str(output)!r} holds a previous export: pass overwrite (--overwrite) to replace it"
            )
        for name in [*previous, MANIFEST]:
            path = output / name
            if path.is_file() or path.is_symlink():
                path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def _remote_code(model) -> dict[str, str]:
    """``{file name: text}`` of the flat remote code of ``model``'s classes and the pipeline."""
    model_module = type(model).__module__
    if model_module.split(".")[0] in FLATTENABLE_PACKAGES:
        remote = collect_remote_code([type(model.config).__module__, model_module, PIPELINE_MODULE])
        return {name: flat.text for name, flat in remote.items()}
    # loaded as remote code (transformers_modules.<folder>.modeling_emotalk): the files are flat already
    origin = getattr(sys.modules.get(model_module), "__file__", None)
    if origin is None or not (Path(origin).parent / "pipeline_emotalk.py").is_file():
        raise ExportError(
            f"cannot find the code of {type(model).__name__} ({model_module}): install EmoTalk (pip install emotalk)"
        )
    return {
        p.name: p.read_text(encoding="utf-8") for p in sorted(Path(origin).parent.glob("*.py")) if p.stem != "__init__"
    }


def _write_preprocessor(output: Path, model, preprocessor: Any) -> None:
    """``preprocessor_config.json``: from ``preprocessor`` (a folder or a feature extractor), else the model's folder."""
    if preprocessor is None:
        folder = Path(str(getattr(model, "name_or_path", "") or ""))
        if (folder / "preprocessor_config.json").is_file():
            preprocessor = folder
    if isinstance(preprocessor, (str, Path)):
        source = Path(preprocessor) / "preprocessor_config.json"
        if not source.is_file():
            raise ExportError(f"no preprocessor_config.json in {str(preprocessor)!r}")
        shutil.copyfile(source, output / "preprocessor_config.json")
        return
    if preprocessor is None:  # the project's feature extractor (the embedded default's settings)
        from modeling_emotalk.audio_processing import default_feature_extractor

        preprocessor = default_feature_extractor()
    preprocessor.to_json_file(output / "preprocessor_config.json")


def find_provenance(folder: str | Path | None) -> dict | None:
    """The ``provenance.json`` record of a checkpoint folder (None when there is none)."""
    if not folder:
        return None
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ExportError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(record, dict) or "provenance" not in record:
        raise ExportError(f"{path} must be a JSON object with a 'provenance' field, got {type(record).__name__}")
    return record


def write_pipeline_folder(
    model,
    output_dir: str | Path,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    provenance: Mapping[str, Any] | None = None,
    preprocessor: Any = None,
    model_card: str | None = None,
    **kwargs: Any,
) -> Path:
    """Write ``model`` (an ``EmoTalkModel``) as a self-contained ``emotional-talking-face`` pipeline folder.

    Args:
        model: the composite model (the pipeline's ``pipe.model``).
        output_dir: the folder; new, empty, or a previous export (replaced only with ``overwrite=True``).
        repo_id: the Hub repo the folder is for; the pipeline's ``default`` points there.
        revision: the tag or commit sha ``default`` pins (default ``v{package version}`` when ``repo_id`` is
            given); a branch name such as ``"main"`` is refused.
        provenance: where the weights come from, written as ``provenance.json`` (default: the record beside
            the model's own folder, if any).
        preprocessor: a folder with ``preprocessor_config.json`` or a feature extractor (default: the model's
            folder's, else the project's standard one).
        model_card: the text of ``README.md`` (none is written without it).
        kwargs: ``Pipeline.save_pretrained`` arguments; ``safe_serialization`` is accepted and ignored (always
            safetensors), anything else is refused.

    Returns the folder.
    """
    kwargs.pop("safe_serialization", None)
    if kwargs.pop("push_to_hub", False):
        raise ExportError("push_to_hub is not supported here: use conversion/export_to_hub.py --push-to-hub")
    if kwargs:
        raise ExportError(
            f"unexpected arguments {sorted(kwargs)}: expected repo_id, revision, overwrite, provenance, preprocessor, model_card"
        )
    if repo_id and revision is None:
        revision = default_revision()
    revision = check_revision(revision)
    output = Path(output_dir)
    code = _remote_code(model)
    if provenance is None:
        provenance = find_provenance(getattr(model, "name_or_path", None))
    prepare_output(output, overwrite)
    written: list[str] = []
    previous_pipelines = getattr(model.config, "custom_pipelines", None)
    with tempfile.TemporaryDirectory() as tmp:
        model.config.custom_pipelines = custom_pipelines_entry(repo_id, revision)
        try:
            model.save_pretrained(tmp)  # writes auto_map (register_for_auto_class) and the weights
        finally:
            model.config.custom_pipelines = previous_pipelines
            if previous_pipelines is None:
                del model.config.custom_pipelines
        for path in Path(tmp).iterdir():  # config + weights (shards too); the code files are written below
            if path.suffix != ".py" and path.is_file():
                shutil.copyfile(path, output / path.name)
                written.append(path.name)
    _write_preprocessor(output, model, preprocessor)
    written.append("preprocessor_config.json")
    for name, text in code.items():
        (output / name).write_text(text, encoding="utf-8")
        written.append(name)
    if provenance is not None:
        (output / PROVENANCE_FILE).write_text(json.dumps(dict(provenance), indent=2) + "\n", encoding="utf-8")
        written.append(PROVENANCE_FILE)
    if model_card is not None:
        (output / "README.md").write_text(model_card, encoding="utf-8")
        written.append("README.md")
    manifest = {"written_by": "emotalk_pipeline.hub_folder", "version": default_revision(), "files": sorted(written)}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    check_config(output / "config.json", code)
    check_remote_code(output)
    return output
