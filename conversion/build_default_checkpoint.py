"""Write the embedded default checkpoint: the composite model in its default configuration.

    python conversion/build_default_checkpoint.py [--output pipeline/checkpoints/emotalk-default] [--seed 0]
        [--landmark-model DIR] [--generator DIR] [--float32-storage]
        [--emotion-strength strength.json] [--tps-regularization 0.01] [--mouth-prior prior.json] [--eyelids rigid_lashes]
        [--composite DIR]

Without trained stage folders this is the seeded untrained composite: stage 1 random (the lips move at
random), stage 2 zero-initialized (the pure landmark warp of the photo, a sane face). With
``--landmark-model`` / ``--generator`` (``save_pretrained`` folders from the training scripts) the trained
stages replace the untrained ones. The folder holds config.json, model.safetensors and
preprocessor_config.json only; the package provides the code (``conversion/export_to_hub.py`` makes the
Hub folder with remote code). ``--emotion-strength`` takes the JSON that ``benchmarks/emotion_oracle.py
--strength-output`` writes (``EmoTalkConfig.emotion_strength``), ``--tps-regularization`` overrides the generator's
spline smoothing, ``--mouth-prior`` takes the JSON that ``recipes/default_model/mouth_interior_prior.py --output``
writes and sets the generator's ``mouth_interior="prior"`` with that ``mouth_prior``, ``--eyelids`` sets the generator's
``eyelids`` (what the warp does above a closing lid), and ``--composite DIR`` takes
the stages of an existing EmoTalk folder (the current default, to recalibrate it in place). A rebuild that only changes the config writes the same model.safetensors bytes (one git
blob, no growth of the history). Rebuilding deletes the folder's ``provenance.json`` (it describes the weights
that were there): write one for the new weights, or the exporter will ask where they come from. The new files
are written beside the folder and moved in at the end, so an interrupted rebuild leaves the old one whole.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from modeling_emotalk import (
    EmoTalkConfig,
    EmoTalkGenerator,
    EmoTalkGeneratorConfig,
    EmoTalkLandmarkModel,
    EmoTalkModel,
)
from modeling_emotalk.configuration_emotalk import EYELID_WARPS
from modeling_emotalk.packaging import strip_remote_code
from modeling_emotalk.processing_emotalk import EmoTalkProcessor

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "pipeline" / "checkpoints" / "emotalk-default"


def store_parameters_in_half_precision(model: EmoTalkModel, weights: Path) -> None:
    """Rewrite ``weights`` with the learned parameters in float16 and every buffer as it was (float32).

    Halves the file (each rebuild of the embedded checkpoint is a new blob in git history). The config still
    says float32, so ``from_pretrained`` loads float32 parameters; rounding them to float16 moves the default's
    frames by < 1 grey level (68.7 dB PSNR on 4 s of speech) and its landmarks by < 1e-4.
    """
    parameters = {name for name, _ in model.named_parameters()}
    tensors = load_file(weights)
    for name, tensor in tensors.items():
        if name in parameters and tensor.dtype == torch.float32:
            tensors[name] = tensor.half()
    save_file(tensors, weights, metadata={"format": "pt"})


def build(
    output: Path,
    seed: int = 0,
    landmark_model: str | None = None,
    generator: str | None = None,
    half_precision: bool = True,
    emotion_strength: dict[str, float] | None = None,
    tps_regularization: float | None = None,
    composite: str | None = None,
    mouth_prior: dict | None = None,
    eyelids: str | None = None,
) -> Path:
    """Create (or overwrite) the default checkpoint folder (parameters stored in float16 unless told otherwise).

    The stages come from ``landmark_model`` / ``generator`` (``save_pretrained`` folders), else from ``composite``
    (an EmoTalk folder, e.g. the current default, whose ``emotion_strength`` is kept unless one is given), else
    they are the seeded untrained ones. ``mouth_prior`` (``EmoTalkGeneratorConfig.mouth_prior``) switches the
    generator to ``mouth_interior="prior"``; ``eyelids`` sets ``EmoTalkGeneratorConfig.eyelids``.
    """
    torch.manual_seed(seed)
    base = EmoTalkModel.from_pretrained(composite) if composite else None
    landmark = (
        EmoTalkLandmarkModel.from_pretrained(landmark_model)
        if landmark_model
        else getattr(base, "landmark_model", None)
    )
    renderer = EmoTalkGenerator.from_pretrained(generator) if generator else getattr(base, "generator", None)
    if emotion_strength is None and base is not None:
        emotion_strength = base.config.emotion_strength
    config = EmoTalkConfig(emotion_strength=emotion_strength)
    if landmark is not None:
        config.landmark_config = landmark.config
    if renderer is not None:
        config.generator_config = renderer.config  # the same object: the override below reaches the module too
    if tps_regularization is not None:
        config.generator_config.tps_regularization = float(tps_regularization)
    settings = {}
    if mouth_prior is not None:
        settings.update(mouth_interior="prior", mouth_prior=mouth_prior)
    if eyelids is not None:
        settings["eyelids"] = eyelids
    if settings:
        EmoTalkGeneratorConfig(**{**config.generator_config.to_dict(), **settings})  # refuses a malformed setting
        for key, value in settings.items():
            setattr(config.generator_config, key, value)
    model = EmoTalkModel(config).eval()
    if landmark is not None:
        model.landmark_model = landmark
    if renderer is not None:
        model.generator = renderer
    output.mkdir(parents=True, exist_ok=True)
    # Written beside the folder first and moved in file by file (os.replace), so that a process that has the
    # old model.safetensors memory-mapped keeps reading the old file, never a half-written one.
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}-") as staging:
        staged = Path(staging)
        model.save_pretrained(staged)
        if half_precision:
            store_parameters_in_half_precision(model, staged / "model.safetensors")
        EmoTalkProcessor().save_pretrained(staged)  # the audio features + the face settings
        # The embedded copy is loaded through the installed package: no remote code, no auto_map, and no
        # local paths in the shipped config.
        strip_remote_code(staged, sub_config_keys=("auto_map", "_name_or_path", "architectures"))
        new_files = {path.name for path in staged.iterdir()}
        for stale in output.iterdir():
            if stale.name not in new_files:
                stale.unlink()
        for path in staged.iterdir():
            path.chmod(0o644)  # the staging folder's files are private; the checkpoint is read by everyone
            os.replace(path, output / path.name)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--landmark-model", default=None, help="a trained stage-1 save_pretrained folder")
    parser.add_argument("--generator", default=None, help="a trained stage-2 save_pretrained folder")
    parser.add_argument("--composite", default=None, help="take the stages (not given above) from this EmoTalk folder")
    parser.add_argument(
        "--float32-storage",
        action="store_true",
        help="store parameters in float32 (default: float16, loaded as float32)",
    )
    parser.add_argument("--emotion-strength", type=Path, help='a JSON file {"emotion_strength": {label: value}}')
    parser.add_argument("--tps-regularization", type=float, help="the generator's spline ridge term")
    parser.add_argument(
        "--mouth-prior",
        type=Path,
        help='a JSON file {"mouth_prior": {...}} (recipes/default_model/mouth_interior_prior.py)',
    )
    parser.add_argument("--eyelids", choices=EYELID_WARPS, help="the generator's eyelid warp (EmoTalkGeneratorConfig)")
    args = parser.parse_args()
    strength = json.loads(args.emotion_strength.read_text())["emotion_strength"] if args.emotion_strength else None
    path = build(
        args.output,
        args.seed,
        args.landmark_model,
        args.generator,
        half_precision=not args.float32_storage,
        emotion_strength=strength,
        tps_regularization=args.tps_regularization,
        composite=args.composite,
        mouth_prior=json.loads(args.mouth_prior.read_text())["mouth_prior"] if args.mouth_prior else None,
        eyelids=args.eyelids,
    )
    print(f"wrote {path}: {sorted(p.name for p in path.iterdir())}")


if __name__ == "__main__":
    main()
