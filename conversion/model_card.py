"""The model card (README.md) of an exported EmoTalk Hub repo, built with ``huggingface_hub.ModelCard``.

Metadata: license (``apache-2.0`` only for untrained weights; trained weights are ``license: other`` with a
``license_name`` / ``license_link``, because the code's Apache-2.0 license says nothing about the terms of the
data they were trained on), ``library_name: transformers``, ``pipeline_tag``, tags, base model (none unless
given), datasets (when given) and the evaluation suite's figures as ``model-index`` results. Text: usage
(pinned to a revision), model details and how each stage was trained, intended use, training data and its
provenance, evaluation (``--eval-results``, else the figures recorded in the checkpoint's ``provenance.json``,
else "not evaluated"), the measured limitations, and the misuse considerations of synthetic faces.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

CODE_LICENSE = "apache-2.0"  # the code (this project and the remote-code files of the repo)
WEIGHTS_LICENSE_NAME = "emotalk-weights"  # trained weights: the code license plus the training data's terms
LICENSE_LINK = "README.md#license"  # the card's own License section states the terms
PIPELINE_TAG = "image-to-video"  # the closest Hub task: portrait (+ speech) → video
TAGS = (
    "emotional-talking-face",
    "talking-face",
    "talking-head",
    "audio-driven",
    "emotion",
    "lip-sync",
    "face-animation",
    "facial-landmarks",
    "synthetic-media",
    "custom_code",
)
TASK_NAME = "emotional-talking-face"  # the transformers pipeline task (custom_pipelines)
EVAL_TASK_TYPE = PIPELINE_TAG
EVAL_TASK_NAME = "Emotional talking-face generation"
EVAL_DATASET_TYPE = "emotalk-evaluation"
PROVENANCES = ("auto", "untrained", "internal-demo", "custom")

UNTRAINED_TEXT = (
    "**These weights are not trained.** Stage 1 (audio → landmarks) is the seeded random initialization "
    "(`torch.manual_seed(0)`), so the lips move, but not in sync with the speech and the emotion has a random "
    "effect. Stage 2 (the FAT generator) has zero-initialized output layers, so it renders the pure landmark "
    "warp of the photo: a plausible face, never noise. No data was used. Use this repo to test the code path "
    "and the packaging; replace the weights with trained ones (the project's `training/` scripts) for real use."
)
INTERNAL_DEMO_TEXT = (
    "**Internal demo weights.** They were trained on the EmoTalk project's development media: real portraits, "
    "speech and talking-face videos collected from the example folders of public talking-face repositories, "
    "including clips from research datasets (MEAD, HDTF, VoxCeleb2, CREMA-D) whose terms are non-commercial, "
    "and public figures. The source licenses do not clearly cover this use, so the weights are for "
    "demonstration and research only, not for commercial or production use. None of that media is "
    "redistributed in this repo. Evaluation used a separate held-out set of the same kinds."
)


class ModelCardError(ValueError):
    """The model card cannot be written as asked; the message says what to give."""


# ------------------------------------------------------------------------------------------- evaluation
def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flatten(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif _finite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def load_eval_results(path: str | Path) -> dict:
    """Read the evaluation suite's ``results.json``: ``{"title", "rows": {label: {metric: value}}, "source"}``.

    Accepts the suite's document (``{"title", "summary": {label: metrics}, "videos": [...]}``) or a plain
    ``{metric: value}`` mapping (nested groups are flattened to ``group.metric``).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelCardError(f"--eval-results {path} does not exist") from err
    except json.JSONDecodeError as err:
        raise ModelCardError(f"--eval-results {path} is not valid JSON: {err}") from err
    if not isinstance(document, Mapping):
        raise ModelCardError(f"--eval-results {path}: expected a JSON object, got {type(document).__name__}")
    if isinstance(document.get("summary"), Mapping):
        rows = {str(label): _flatten(values) for label, values in document["summary"].items()}
        title = str(document.get("title") or "EmoTalk evaluation")
    else:
        rows = {"all": _flatten(document)}
        title = "EmoTalk evaluation"
    rows = {label: values for label, values in rows.items() if values}
    if not rows:
        raise ModelCardError(f"--eval-results {path} holds no numeric metric")
    return {"title": title, "rows": rows, "source": path.name}


def _eval_columns() -> list[tuple[str, str, str]] | None:
    """The suite's curated (metric, header, format) columns, when ``emotalk_evaluation`` is installed."""
    try:
        from emotalk_evaluation.report import COLUMNS
    except ImportError:
        return None
    return list(COLUMNS)


def _metric_keys(rows: Mapping[str, Mapping[str, float]]) -> list[tuple[str, str, str]]:
    columns = _eval_columns()
    present = {key for values in rows.values() for key in values}
    if columns:
        chosen = [c for c in columns if c[0] in present]
        if chosen:
            return chosen
    keys = sorted(k for k in present if not k.endswith(".n"))
    return [(k, k, "{:.4g}") for k in keys]


def eval_results(evaluation: Mapping) -> list[EvalResult]:
    """``model-index`` entries: one per (row, curated metric) with a finite value."""
    results = []
    for label, values in evaluation["rows"].items():
        for key, header, _ in _metric_keys(evaluation["rows"]):
            if key in values:
                results.append(
                    EvalResult(
                        task_type=EVAL_TASK_TYPE,
                        task_name=EVAL_TASK_NAME,
                        dataset_type=EVAL_DATASET_TYPE,
                        dataset_name=f"{evaluation['title']} ({label.strip('*')})",
                        metric_type=key,
                        metric_name=header,
                        metric_value=round(values[key], 6),
                    )
                )
    return results


def eval_table(evaluation: Mapping) -> str:
    """A markdown table of the evaluation (the suite's own formatter and note when installed)."""
    rows = list(evaluation["rows"].items())
    try:
        from emotalk_evaluation.report import TABLE_NOTE, markdown_table
    except ImportError:
        columns = _metric_keys(evaluation["rows"])
        lines = ["| | " + " | ".join(c[1] for c in columns) + " |", "|---" + "|---:" * len(columns) + "|"]
        for label, values in rows:
            cells = [c[2].format(values[c[0]]) if c[0] in values else "–" for c in columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    return markdown_table(rows) + "\n" + TABLE_NOTE + "\n"


# -------------------------------------------------------------------------------------------- weights
def detect_untrained_stages(model, seed: int = 0) -> dict[str, bool]:
    """Which stages still hold their initialization: ``{"landmark": bool, "generator": bool}``.

    Stage 1 is untrained when it equals ``torch.manual_seed(seed); EmoTalkModel(config)`` (how
    ``build_default_checkpoint.py`` makes it); stage 2 when its zero-initialized output layers are still zero
    (it then renders the pure warp, whatever its other weights).
    """
    generator_untrained = all(
        not module.weight.any() for module in model.generator.modules() if getattr(module, "_zero_init", False)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference = type(model.landmark_model)(model.config.landmark_config)
    current = model.landmark_model.state_dict()
    expected = reference.state_dict()
    landmark_untrained = current.keys() == expected.keys() and all(
        current[k].shape == expected[k].shape and torch.equal(current[k].cpu(), expected[k]) for k in expected
    )
    return {"landmark": landmark_untrained, "generator": generator_untrained}


def resolve_provenance(
    provenance: str,
    untrained: Mapping[str, bool],
    training_data: str | None,
    record: Mapping | None = None,
) -> str:
    """The provenance the card describes: ``auto`` becomes the recorded one (``provenance.json``) or untrained."""
    if provenance not in PROVENANCES:
        raise ModelCardError(f"provenance must be one of {PROVENANCES}, got {provenance!r}")
    if provenance == "auto" and record is not None:
        recorded = record.get("provenance")
        if recorded not in PROVENANCES[1:]:
            raise ModelCardError(f"provenance.json records provenance {recorded!r}: expected one of {PROVENANCES[1:]}")
        provenance = recorded
    if provenance == "auto":
        if all(untrained.values()):
            return "untrained"
        trained = [stage for stage, flag in untrained.items() if not flag]
        raise ModelCardError(
            f"the {' and '.join(trained)} weights are trained (or not the seeded initialization): say where they "
            "come from with --provenance internal-demo (weights trained on the project's development media) or "
            "--provenance custom --training-data '...'"
        )
    if provenance == "custom" and not (training_data or (record or {}).get("training_data")):
        raise ModelCardError("--provenance custom needs --training-data describing the data and its license")
    return provenance


def training_data_section(
    provenance: str, untrained: Mapping[str, bool], training_data: str | None, record: Mapping | None = None
) -> str:
    """The card's "Training data" text: the provenance's statement, the recorded data and how each stage trained."""
    text = {"untrained": UNTRAINED_TEXT, "internal-demo": INTERNAL_DEMO_TEXT, "custom": ""}[provenance]
    parts = [text] if text else []
    record = record or {}
    if record.get("training_data"):
        parts.append(str(record["training_data"]).strip())
    if record.get("datasets"):
        parts.append("Datasets among the training media: " + ", ".join(map(str, record["datasets"])) + ".")
    stages = record.get("stages") or {}
    names = {"landmark": "Stage 1 (audio → landmarks)", "generator": "Stage 2 (generator)"}
    for key, name in names.items():
        stage = stages.get(key) or {}
        if stage.get("training"):
            source = f" ({stage['source']} in the EmoTalk repository)" if stage.get("source") else ""
            parts.append(f"**{name}**{source}: {stage['training']}")
    if record.get("weights_terms"):
        parts.append(f"**Terms of use of the weights**: {record['weights_terms']}")
    if training_data:
        parts.append(training_data.strip())
    if provenance != "untrained":
        notes = []
        if untrained.get("landmark"):
            notes.append("stage 1 is still the seeded random initialization (its lip motion is not learned)")
        if untrained.get("generator"):
            notes.append("stage 2's output layers are still zero (it renders the pure landmark warp)")
        if notes:
            parts.append("Note, checked on the weights: " + "; ".join(notes) + ".")
    return "\n\n".join(parts)


def _parameters(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.1f} M"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def recorded_evaluation(record: Mapping | None) -> str | None:
    """Markdown for the measured tables of ``provenance.json`` (each with its source and command), or None."""
    tables = (record or {}).get("evaluation") or []
    blocks = []
    for table in tables:
        columns = [_cell(c) for c in table.get("columns", [])]
        rows = table.get("rows") or []
        if not columns or not rows:
            continue
        lines = [
            f"**{table.get('title', 'Evaluation')}** — from {table.get('source', 'the EmoTalk repository')}; "
            f"command: `{table.get('command', 'n/a')}`",
            "",
            "| " + " | ".join(columns) + " |",
            "|---" + "|---:" * (len(columns) - 1) + "|",
        ]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
        if table.get("note"):
            lines += ["", str(table["note"])]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else None


def _card_license(provenance: str) -> dict:
    """``license`` metadata: Apache-2.0 for untrained weights (no data involved), ``other`` for trained ones."""
    if provenance == "untrained":
        return {"license": CODE_LICENSE}
    return {"license": "other", "license_name": WEIGHTS_LICENSE_NAME, "license_link": LICENSE_LINK}


def _license_text(provenance: str, record: Mapping | None) -> str:
    if provenance == "untrained":
        return (
            "Apache-2.0 for the code and for these untrained weights (no data was used to make them). The license "
            "grants no rights over the portraits and voices you animate."
        )
    terms = (record or {}).get("weights_terms") or (
        "The weights are subject to the terms of the data they were trained on (see Training data)."
    )
    if provenance == "internal-demo" and not record:
        terms = (
            "Internal demo weights, trained on media whose terms are non-commercial: for demonstration and "
            "research only, not for commercial or production use."
        )
    return (
        "- **Code** (the `.py` files of this repo and the EmoTalk project): Apache-2.0.\n"
        f"- **Weights** (`model.safetensors`): not Apache-2.0. {terms}\n"
        "- Neither grants rights over the training media, nor over the portraits and voices you animate."
    )


# ----------------------------------------------------------------------------------------------- card
def build_model_card(
    model,
    *,
    repo_id: str,
    evaluation: Mapping | None = None,
    provenance: str = "auto",
    training_data: str | None = None,
    untrained_stages: Mapping[str, bool] | None = None,
    base_model: str | Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    revision: str | None = None,
    record: Mapping | None = None,
) -> ModelCard:
    """The card of ``model`` (an ``EmoTalkModel``) as it will be published under ``repo_id`` at ``revision``.

    ``record`` is the checkpoint's ``provenance.json`` (training data, per-stage training, measured figures
    and limitations); ``revision`` (a tag or commit sha) is pinned in every snippet.
    """
    untrained = dict(untrained_stages if untrained_stages is not None else detect_untrained_stages(model))
    provenance = resolve_provenance(provenance, untrained, training_data, record)
    config = model.config
    landmark, generator = config.landmark_config, config.generator_config
    audio = landmark.audio_config
    model_name = repo_id.rsplit("/", 1)[-1]
    data = ModelCardData(
        model_name=model_name,
        **_card_license(provenance),
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=list(TAGS),
        base_model=base_model or None,
        datasets=list(datasets) if datasets else None,
        eval_results=eval_results(evaluation) if evaluation else None,
    )
    if evaluation:
        evaluation_text = (
            f"Figures from the project's evaluation suite (`emotalk evaluate`, file `{evaluation['source']}`, "
            f'"{evaluation["title"]}"):\n\n{eval_table(evaluation)}'
        )
    elif recorded_evaluation(record):
        evaluation_text = (
            "Measured on these weights by the EmoTalk project's evaluation suite (figures as recorded with the "
            "checkpoint; the sources are files of the EmoTalk repository):\n\n" + recorded_evaluation(record)
        )
    else:
        evaluation_text = (
            "**Not evaluated.** No results of the evaluation suite were attached to this export. Run "
            "`emotalk evaluate` and re-export with `--eval-results results.json` to publish the figures."
        )
    base_text = (
        f"Base model: {', '.join([base_model] if isinstance(base_model, str) else base_model)} (stage 1's "
        "audio encoder was initialized from it with `conversion/convert_wav2vec2.py`)."
        if base_model
        else "Base model: none. No pretrained weights are part of these weights."
    )
    pin = f', revision="{revision}"' if revision else ""
    revision_note = (
        f"The snippets pin revision `{revision}` of `{repo_id}` (remote code runs on your machine: pinning makes "
        "sure it is the code you read)."
        if revision
        else "Pin a revision (a tag or commit sha) with `revision=` when loading: the repo's code runs on your machine."
    )
    measured = [f"- {item}" for item in (record or {}).get("limitations") or []]
    measured_text = (
        ("Measured on these weights:\n\n" + "\n".join(measured) + "\n\nIn general:\n\n") if measured else ""
    )
    body = f"""
# {model_name}

EmoTalk animates **one portrait photo** with **speech audio**: an MP4 of that person speaking the audio with
synchronized lips, a requested emotion (one of {", ".join(landmark.emotion_labels)}, a blend, a schedule over
time, or "auto" heard in the voice), natural head motion, blinks and gaze.

## Usage

The code ships in this repo (remote code), so only its dependencies are needed:

```bash
pip install "transformers>=5,<6" diffusers torch "mediapipe==0.10.14" librosa soundfile av pillow
```

```python
from transformers import pipeline

pipe = pipeline("{TASK_NAME}", model="{repo_id}"{pin}, trust_remote_code=True)
video = pipe("portrait.jpg", "speech.wav", emotion="happy", intensity=0.8, seed=0)
video.save("talking.mp4")  # H.264 + AAC
```

Options: `emotion` (a label, `"auto"`, a blend `{{"happy": 0.7, "surprised": 0.3}}` or a schedule
`[(0.0, "neutral"), (2.5, "happy")]`), `intensity` in [0, 1], `pose` (`"natural"`, `"still"` or a scale),
`blink`, `gaze`, `fps` (1–60), `paste_back` (the full photo or the aligned {config.crop_size}² crop), `seed`.
The model alone: `AutoModel.from_pretrained("{repo_id}"{pin}, trust_remote_code=True)`. {revision_note}

## Model details

Two stages, each a `transformers.PreTrainedModel`, joined by explicit 3D facial landmarks (MediaPipe Face Mesh
topology, {landmark.num_landmarks} points), in one composite `EmoTalkModel` ({_parameters(model)} parameters):

- **Stage 1, audio → emotional landmarks** ({_parameters(model.landmark_model)}): a wav2vec2-style encoder
  (`Wav2Vec2Model`, {audio.num_hidden_layers} layers, hidden size {audio.hidden_size}, 50 Hz) and a transformer
  decoder ({landmark.num_decoder_layers} layers, hidden size {landmark.hidden_size}) whose per-frame queries
  cross-attend to the audio with a local alignment bias, conditioned on the emotion (label embedding ×
  intensity) and the identity (the reference landmarks); heads predict expression offsets, head pose, gaze and
  blinks (the two-stage design of TNNLS 2023 and "Emotional Conversation", arXiv 2406.07895).
- **Stage 2, reference image + landmarks → frames** ({_parameters(model.generator)}): a landmark-driven warp
  (thin-plate spline) refined by feature-adaptive transformation (FAT) blocks, {generator.image_size}² crops.
- The pipeline adds seeded procedural head sway, blinks and gaze saccades, pastes the face back into the photo
  and streams the frames into an H.264 + AAC MP4.

{base_text}

## Intended use

Research and demonstration of audio-driven, emotion-controllable face animation; prototyping avatars,
dubbing previews and accessibility tools **with the consent of the person shown**; testing and benchmarking
talking-face detectors.

## Out-of-scope use and misuse

Synthetic talking faces can deceive. Do not use this model to:

- impersonate a real person, or make anyone appear to say or feel something they did not, without their
  explicit consent (including public figures);
- produce disinformation, fraud, harassment, non-consensual intimate content, or to bypass identity checks;
- present generated videos as real recordings.

Obtain consent from the person in the portrait and the owner of the voice. **Disclose** that videos are
synthetic (a visible label and the file's metadata) and prefer watermarking them; keep the outputs traceable
to this model. Follow the laws on synthetic media that apply to you (e.g. labeling duties).

## Training data

{training_data_section(provenance, untrained, training_data, record)}

## Evaluation

{evaluation_text}

## Limitations

{measured_text}- One face per video, roughly frontal photos; profile views, occlusions (hands, masks) and extreme
  expressions in the photo degrade the result. Teeth, tongue and the inside of the mouth are not modeled
  explicitly; large head rotations stretch the warp.
- The emotion labels are MEAD's eight classes; "auto" emotion from the voice is only as good as the training
  data; the same emotion may be expressed differently across cultures.
- The lip sync is learned from the training speech; languages, voices and recording conditions not seen in
  training sync worse. Faces, ages and skin tones under-represented in the training data may be animated
  less faithfully.
- Outputs are {config.crop_size}² face crops pasted into the photo: fine detail is limited by that size.

## License

{_license_text(provenance, record)}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
