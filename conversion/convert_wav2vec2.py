"""Import a local pretrained Wav2Vec2 checkpoint into stage 1's audio encoder.

    python conversion/convert_wav2vec2.py --wav2vec2 path/to/wav2vec2-base --output checkpoints/emotalk-w2v
        [--model DIR] [--seed 0] [--overwrite]

``--wav2vec2`` is a folder downloaded elsewhere (no network is used): a ``Wav2Vec2Model``, ``Wav2Vec2ForCTC``,
``Wav2Vec2ForPreTraining`` or other ``wav2vec2`` checkpoint (``config.json`` + safetensors or
``pytorch_model.bin``; the ``wav2vec2.`` prefix of task models is handled, their heads are reported as unused).
``--model`` is the EmoTalk checkpoint to start from: a composite or a stage-1 ``save_pretrained`` folder
(default: the embedded default checkpoint). The output is the same kind of folder with:

- stage 1's ``audio_config`` replaced by the source's ``Wav2Vec2Config`` and every encoder tensor copied;
- the layers that read the encoder's features (``audio_projection`` = Linear(audio hidden, hidden), the input
  layer of the audio-emotion head) re-created with the new input size when the hidden sizes differ (they are
  the projection to the decoder's width), otherwise kept;
- every other stage-1 tensor, and stage 2, kept as they were.

It prints which tensors were loaded, which the source lacked (left initialized), which it had but stage 1
does not use, and which were re-initialized. Then fine-tune stage 1 and export with ``export_to_hub.py``
(``--base-model <hub id of the source>`` credits it on the model card).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emotalk_common.constants import SAMPLING_RATE

AUDIO_HOP = 320  # stage 1 expects 50 Hz features at 16 kHz
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TARGET_TYPES = {"emotalk": "composite", "emotalk_landmark": "landmark"}


class ConversionError(ValueError):
    """The folders cannot be converted; the message says why and what is expected."""


@dataclass
class ImportReport:
    """What happened to each tensor. Names are stage-1 parameter names (``audio_encoder.*`` for the encoder)."""

    source: str
    source_hidden_size: int
    previous_hidden_size: int
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"source {self.source}: hidden size {self.source_hidden_size} (stage 1 had {self.previous_hidden_size})",
            f"loaded {len(self.loaded)} encoder tensors from the source",
            f"missing from the source (left initialized): {len(self.missing)} {sorted(self.missing)}",
            f"in the source but unused by stage 1: {len(self.unexpected)} {sorted(self.unexpected)}",
            f"re-initialized (new input size): {len(self.reinitialized)} {sorted(self.reinitialized)}",
            f"kept from the previous stage 1: {len(self.kept)} tensors",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConversionError(f"{path} must hold a JSON object")
    return data


def check_wav2vec2_folder(folder: str | Path):
    """The source's ``Wav2Vec2Config`` after checking it is a 16 kHz, 50 Hz wav2vec2 checkpoint with weights."""
    from transformers import Wav2Vec2Config

    folder = Path(folder)
    if not folder.is_dir():
        raise ConversionError(f"--wav2vec2 {folder} is not a folder (expected a downloaded wav2vec2 checkpoint)")
    if not (folder / "config.json").is_file():
        raise ConversionError(f"--wav2vec2 {folder} has no config.json: not a transformers checkpoint folder")
    model_type = _read_json(folder / "config.json").get("model_type")
    if model_type != "wav2vec2":
        raise ConversionError(
            f"--wav2vec2 {folder} holds a {model_type!r} checkpoint, not 'wav2vec2' (Wav2Vec2Model, "
            "Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, ...); other audio encoders are not supported"
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ConversionError(f"--wav2vec2 {folder} has no weights ({' or '.join(WEIGHT_FILES[::2])})")
    config = Wav2Vec2Config.from_pretrained(folder)
    hop = math.prod(config.conv_stride)
    if hop != AUDIO_HOP:
        raise ConversionError(
            f"--wav2vec2 {folder}: its feature encoder downsamples by {hop} samples ({SAMPLING_RATE / hop:g} Hz); "
            f"stage 1 needs {AUDIO_HOP} (50 Hz features at 16 kHz)"
        )
    if (folder / "preprocessor_config.json").is_file():
        rate = _read_json(folder / "preprocessor_config.json").get("sampling_rate", SAMPLING_RATE)
        if rate != SAMPLING_RATE:
            raise ConversionError(f"--wav2vec2 {folder} was trained on {rate} Hz audio; stage 1 uses 16000 Hz")
    if getattr(config, "add_adapter", False):
        raise ConversionError(f"--wav2vec2 {folder} has an adapter (add_adapter=True): it changes the frame rate")
    return config


def load_wav2vec2(folder: str | Path):
    """``(Wav2Vec2Model, loading_info)``; refuses folders whose tensors do not fit a wav2vec2 encoder."""
    from transformers import Wav2Vec2Model

    config = check_wav2vec2_folder(folder)
    try:
        encoder, info = Wav2Vec2Model.from_pretrained(folder, config=config, output_loading_info=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise ConversionError(f"--wav2vec2 {folder}: cannot load its weights into a Wav2Vec2Model: {err}") from err
    expected = set(encoder.state_dict())
    missing = set(info.get("missing_keys", ())) | set(info.get("mismatched_keys", ()))
    if not expected - missing:
        raise ConversionError(f"--wav2vec2 {folder}: none of its tensors is a wav2vec2 encoder tensor")
    return encoder.eval(), info


def default_checkpoint() -> Path:
    spec = importlib.util.find_spec("emotalk_pipeline")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("the emotalk package is not installed: pip install -e . from the repository root")
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoints" / "emotalk-default"


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ConversionError(f"--output {output} is a file, expected a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise ConversionError(f"--output {output} is not empty: pass --overwrite to replace its files")
        folders = [p.name for p in output.iterdir() if p.is_dir()]
        if folders:
            raise ConversionError(f"--output {output} contains folders {folders}: refusing to replace it")
        for path in output.iterdir():
            path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def import_wav2vec2(stage1, encoder, info: dict, source: str = "", seed: int = 0):
    """A new stage-1 model with ``encoder``'s config and tensors; the rest copied from ``stage1``."""
    import torch

    from modeling_emotalk import EmoTalkLandmarkModel

    previous_hidden = stage1.config.audio_config.hidden_size
    config = stage1.config.__class__.from_dict(stage1.config.to_dict())
    audio_config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    audio_config.architectures = None
    config.audio_config = audio_config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = EmoTalkLandmarkModel(config).eval()

    report = ImportReport(
        source=source, source_hidden_size=audio_config.hidden_size, previous_hidden_size=previous_hidden
    )
    new_state = new.state_dict()
    old_state = stage1.state_dict()
    with torch.no_grad():
        encoder_state = encoder.state_dict()
        new.audio_encoder.load_state_dict(encoder_state, strict=True)
        not_from_file = set(info.get("missing_keys", ())) | set(info.get("mismatched_keys", ()))
        for key in encoder_state:
            (report.missing if key in not_from_file else report.loaded).append(f"audio_encoder.{key}")
        report.unexpected = sorted(info.get("unexpected_keys", ()))
        # a layer whose input size changed is re-created as a whole (weight and bias)
        changed = {
            key.rsplit(".", 1)[0]
            for key, value in new_state.items()
            if key not in old_state or old_state[key].shape != value.shape
        }
        for key, value in new_state.items():
            if key.startswith("audio_encoder."):
                continue
            if key.rsplit(".", 1)[0] in changed:
                report.reinitialized.append(key)
            else:
                value.copy_(old_state[key])
                report.kept.append(key)
    if audio_config.feat_extract_norm == "group":
        report.notes.append(
            "the source's feature encoder uses group norm: padding in a batch leaks into the features; train "
            "stage 1 on unpadded or length-grouped batches"
        )
    return new, report


def convert(
    wav2vec2: str | Path,
    output: str | Path,
    model: str | Path | None = None,
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> ImportReport:
    """Write ``output`` (same kind of folder as ``model``) with the imported encoder; return the report."""
    from modeling_emotalk import EmoTalkLandmarkModel, EmoTalkModel
    from modeling_emotalk.packaging import strip_remote_code

    model = Path(model) if model else default_checkpoint()
    output = Path(output)
    if not (model / "config.json").is_file():
        raise ConversionError(f"--model {model} has no config.json (expected an EmoTalk save_pretrained folder)")
    kind = TARGET_TYPES.get(_read_json(model / "config.json").get("model_type"))
    if kind is None:
        raise ConversionError(
            f"--model {model} is not an EmoTalk composite or stage-1 checkpoint (model_type in {sorted(TARGET_TYPES)})"
        )
    if output.resolve() in (model.resolve(), Path(wav2vec2).resolve()):
        raise ConversionError("--output must be a new folder, not one of the inputs")
    encoder, info = load_wav2vec2(wav2vec2)
    target = (
        EmoTalkModel.from_pretrained(model) if kind == "composite" else EmoTalkLandmarkModel.from_pretrained(model)
    )
    stage1 = target.landmark_model if kind == "composite" else target
    new_stage1, report = import_wav2vec2(stage1, encoder, info, source=str(wav2vec2), seed=seed)
    if kind == "composite":
        target.landmark_model = new_stage1
        target.config.landmark_config = new_stage1.config
    else:
        target = new_stage1

    _prepare_output(output, overwrite)
    target.save_pretrained(output)
    strip_remote_code(output)  # like the embedded default: the installed package provides the code
    if (model / "preprocessor_config.json").is_file():
        preprocessor = _read_json(model / "preprocessor_config.json")
        source_pre = Path(wav2vec2) / "preprocessor_config.json"
        if source_pre.is_file():
            do_normalize = _read_json(source_pre).get("do_normalize")
            if do_normalize is not None and do_normalize != preprocessor.get("do_normalize"):
                preprocessor["do_normalize"] = do_normalize
                report.notes.append(f"preprocessor do_normalize set to {do_normalize}, as the source was trained")
        (output / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2, sort_keys=True) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav2vec2", type=Path, required=True, help="a local wav2vec2 checkpoint folder")
    parser.add_argument("--output", type=Path, required=True, help="the new EmoTalk checkpoint folder")
    parser.add_argument(
        "--model", type=Path, default=None, help="EmoTalk composite or stage-1 folder (default: the embedded one)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-initialized layers")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --output")
    args = parser.parse_args(argv)
    try:
        report = convert(args.wav2vec2, args.output, args.model, seed=args.seed, overwrite=args.overwrite)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.output}: {', '.join(sorted(p.name for p in args.output.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
