"""Batch mode: many (image, audio, emotion) jobs from a CSV or JSON-lines manifest.

What happens to existing outputs is deliberate: a row whose output already exists is skipped (so that
re-running finishes an interrupted batch) unless ``overwrite``. A malformed row is reported as failed
and the others go on; two rows writing the same output are refused before anything starts; an
``output`` must be a relative ``.mp4`` path inside the output folder.

Under ``accelerate launch --num_processes N`` the rows are split across processes with accelerate's
``PartialState.split_between_processes``. Every process renders all of its rows and writes its own
report; after ``wait_for_everyone`` the reports are merged into ``<output-dir>/report.json``.
"""

from __future__ import annotations

import csv
import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from modeling_emotalk.errors import EmoTalkInputError

COLUMNS = ("image", "audio", "emotion", "intensity", "output", "reference_images")
REPORT_NAME = "report.json"


def _read_rows(path: Path) -> list[tuple[int, Any]]:
    """``(row number, row)`` pairs; a JSON line that does not parse becomes an error string."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel's byte-order mark
            reader = csv.DictReader(f)
            header = [name.strip() if isinstance(name, str) else name for name in reader.fieldnames or []]
            missing = [c for c in ("image", "audio") if c not in header]
            unknown = [c for c in header if c not in COLUMNS]
            if missing or unknown:
                raise EmoTalkInputError(
                    f"{path.name}: the header must name the columns {', '.join(COLUMNS)} (image and audio required), "
                    f"got {header}"
                )
            reader.fieldnames = header
            return list(enumerate(reader, start=1))
    if path.suffix.lower() in (".jsonl", ".json"):
        rows: list[tuple[int, Any]] = []
        lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        for number, line in enumerate(lines, start=1):
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                rows.append((number, f"not valid JSON: {err}"))
        return rows
    raise EmoTalkInputError(f"the manifest must be a .csv or .jsonl file, got {path.name!r}")


def _text(row: dict, key: str, number: int) -> str | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EmoTalkInputError(f"row {number}: {key!r} must be text, got {value!r}")
    return value.strip()


def _output_name(value: str | None, number: int, image: str) -> str:
    """The row's output, confined to the output folder: a relative ``.mp4`` path without ``..``."""
    if value is None:
        return f"{number:04d}_{PurePath(image).stem}.mp4"
    parts = PurePath(value)
    if parts.is_absolute() or parts.drive or ".." in parts.parts:
        raise EmoTalkInputError(
            f"row {number}: output {value!r} must be a relative path inside --output-dir (no absolute path, no '..')"
        )
    if parts.suffix.lower() != ".mp4":
        raise EmoTalkInputError(f"row {number}: output {value!r} must end in .mp4")
    return value


def parse_row(row: Any, number: int, folder: Path) -> dict[str, Any]:
    """One manifest row → a job ``{row, image, audio, emotion, intensity, output}``; EmoTalkInputError if malformed."""
    if isinstance(row, str):
        raise EmoTalkInputError(f"row {number}: {row}")
    if not isinstance(row, dict):
        raise EmoTalkInputError(f"row {number} must be an object with 'image' and 'audio', got {row!r}")
    unknown = sorted(str(k) for k in row if k not in COLUMNS)
    if unknown:
        raise EmoTalkInputError(f"row {number} has unknown columns (or extra cells) {unknown}; expected {COLUMNS}")
    image, audio = _text(row, "image", number), _text(row, "audio", number)
    if not image or not audio:
        raise EmoTalkInputError(f"row {number} needs 'image' and 'audio', got {row!r}")
    intensity_text = row.get("intensity")
    intensity = 1.0
    if intensity_text not in (None, ""):
        try:
            intensity = float(intensity_text)
        except (TypeError, ValueError) as err:
            raise EmoTalkInputError(
                f"row {number}: intensity must be a number in [0, 1], got {intensity_text!r}"
            ) from err
    references = _reference_images(row.get("reference_images"), number, folder)
    emotion = row.get("emotion") or "neutral"
    if not isinstance(emotion, str | dict | list):
        raise EmoTalkInputError(f"row {number}: emotion must be a label, a blend or a schedule, got {emotion!r}")
    return {
        "row": number,
        "image": str(folder / image),
        "audio": str(folder / audio),
        "emotion": emotion.strip() if isinstance(emotion, str) else emotion,
        "intensity": intensity,
        "output": _output_name(_text(row, "output", number), number, image),
        "reference_images": references,
    }


def _reference_images(value: Any, number: int, folder: Path) -> list[str]:
    """The optional ``reference_images`` cell: ``;``-separated paths (or, in JSON lines, a list of paths)."""
    from .pipeline_emotalk import MAX_REFERENCE_IMAGES

    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(";")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise EmoTalkInputError(
            f"row {number}: reference_images must be ';'-separated paths or a list of paths, got {value!r}"
        )
    paths = [item.strip() for item in value if item.strip()]
    if len(paths) > MAX_REFERENCE_IMAGES:
        raise EmoTalkInputError(
            f"row {number}: reference_images takes at most {MAX_REFERENCE_IMAGES} photos, got {len(paths)}"
        )
    return [str(folder / path) for path in paths]


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Jobs of a ``.csv`` (header: image,audio[,emotion,intensity,output,reference_images]) or ``.jsonl`` manifest.

    Relative media paths are resolved against the manifest's folder; ``output`` defaults to
    ``<row number>_<image stem>.mp4``. A malformed row becomes ``{"row": n, "error": message}``: it fails
    alone. A wrong header (CSV) or a missing manifest is an EmoTalkInputError for the whole batch.
    """
    path = Path(path)
    if not path.is_file():
        raise EmoTalkInputError(f"manifest {str(path)!r} does not exist")
    jobs = []
    for number, row in _read_rows(path):
        try:
            jobs.append(parse_row(row, number, path.parent))
        except EmoTalkInputError as err:
            jobs.append({"row": number, "error": str(err)})
    return jobs


def check_unique_outputs(jobs: list[dict[str, Any]], output_dir: Path) -> None:
    """Refuse a manifest where two rows write the same file (one would silently replace the other)."""
    seen: dict[str, int] = {}
    for job in jobs:
        if "error" in job:
            continue
        key = os.path.normcase(os.path.normpath(output_dir / job["output"]))
        if key in seen:
            raise EmoTalkInputError(
                f"rows {seen[key]} and {job['row']} both write {job['output']!r}: give each row its own 'output'"
            )
        seen[key] = job["row"]


def process_state():
    """Accelerate's view of this process. Without CUDA, ``accelerate launch --multi_gpu --num_processes N`` gives
    N CPU processes (gloo), which ``PartialState`` only recognizes when asked for the CPU explicitly."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _render(pipe, job: dict[str, Any], target: Path, overwrite: bool, call_kwargs: dict) -> str:
    """Render one job; returns "done" or "skipped"."""
    from emotalk_common.video_io import check_output_path

    from .emotion import parse_emotion_string

    references = job.get("reference_images") or []
    inputs = (job["image"], job["audio"], *references)
    if target.exists() and not overwrite:
        check_output_path(target, inputs=inputs)  # an input named as output is an error
        return "skipped"
    target.parent.mkdir(parents=True, exist_ok=True)
    check_output_path(target, inputs=inputs)
    emotion = job["emotion"]
    emotion = parse_emotion_string(emotion) if isinstance(emotion, str) else emotion
    if references:
        call_kwargs = {**call_kwargs, "reference_images": references}
    video = pipe(job["image"], job["audio"], emotion=emotion, intensity=job["intensity"], **call_kwargs)
    video.save(target)
    return "done"


def run_jobs(
    pipe, jobs: list[dict[str, Any]], output_dir: Path, *, overwrite: bool = False, **call_kwargs
) -> dict[str, list]:
    """Render ``jobs`` one by one; a failing row is recorded and the next goes on."""
    report: dict[str, list] = {"done": [], "skipped": [], "failed": []}
    for job in jobs:
        if "error" in job:
            report["failed"].append({"row": job["row"], "output": None, "error": job["error"]})
            continue
        target = output_dir / job["output"]
        try:
            report[_render(pipe, job, target, overwrite, call_kwargs)].append(str(target))
        except EmoTalkInputError as err:
            report["failed"].append({"row": job["row"], "output": str(target), "error": str(err)})
        except Exception as err:  # one broken row must not stop the others: recorded with its traceback
            report["failed"].append(
                {"row": job["row"], "output": str(target), "error": f"{type(err).__name__}: {err}",
                 "traceback": traceback.format_exc(limit=5)}
            )  # fmt: skip
    return report


def merge_reports(reports: list[dict[str, list]]) -> dict[str, list]:
    """One report from the per-process reports (failures sorted by row)."""
    merged: dict[str, list] = {"done": [], "skipped": [], "failed": []}
    for report in reports:
        for key in merged:
            merged[key].extend(report.get(key, []))
    merged["failed"].sort(key=lambda failure: failure["row"])
    return merged


def run_manifest(
    pipe,
    manifest: str | Path,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    state=None,
    on_report: Callable[[dict[str, list]], None] | None = None,
    **call_kwargs,
) -> dict[str, list]:
    """Render this process's share of the manifest; returns the report merged over all processes.

    ``{"done": [...], "skipped": [...], "failed": [...]}``. ``on_report`` receives this process's own
    report before the merge. The merged report is written to ``<output_dir>/report.json`` by the main process.
    """
    output_dir = Path(output_dir)
    jobs = read_manifest(manifest)
    check_unique_outputs(jobs, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = state if state is not None else process_state()
    with state.split_between_processes(jobs) as mine:
        report = run_jobs(pipe, mine, output_dir, overwrite=overwrite, **call_kwargs)
    if on_report is not None:
        on_report(report)
    part = output_dir / f".report.process-{state.process_index}.json"
    part.write_text(json.dumps(report, indent=2))
    state.wait_for_everyone()  # every process finished its rows and wrote its report
    parts = [output_dir / f".report.process-{index}.json" for index in range(state.num_processes)]
    merged = merge_reports([json.loads(p.read_text()) for p in parts])
    state.wait_for_everyone()  # everyone has read the parts
    if state.is_main_process:
        (output_dir / REPORT_NAME).write_text(json.dumps(merged, indent=2))
        for p in parts:
            p.unlink(missing_ok=True)
    return merged
