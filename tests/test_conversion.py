"""conversion/: the Hub export (flat remote code, config, model card, push) and the wav2vec2 weight import."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import emotalk_pipeline
import pytest
import soundfile as sf
import torch
from conftest import synthetic_speech
from emotalk_pipeline import hub_folder
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from test_modeling import TINY_AUDIO, tiny_generator_config, tiny_landmark_config
from transformers import BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, pipeline

from modeling_emotalk import EmoTalkConfig, EmoTalkLandmarkModel, EmoTalkModel

ROOT = Path(__file__).resolve().parents[1]
CONVERSION = ROOT / "conversion"


def _conversion_module(name: str):
    """The conversion scripts import their sibling ``model_card`` the way a script run does."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(CONVERSION))
        return importlib.import_module(name)


export_to_hub = _conversion_module("export_to_hub")
model_card = _conversion_module("model_card")
convert_wav2vec2 = _conversion_module("convert_wav2vec2")
build_default_checkpoint = _conversion_module("build_default_checkpoint")

REMOTE_CODE = {
    "configuration_emotalk.py",
    "modeling_emotalk.py",
    "modeling_landmark.py",
    "modeling_generator.py",
    "landmarks.py",
    "warp.py",
    "photo_expression.py",
    "errors.py",
    "face_processing.py",
    "image_io.py",
    "face_detection.py",
    "face_alignment.py",
    "compositing.py",
    "processing_emotalk.py",
    "geometry.py",  # emotalk_common modules the model and pipeline import, flattened too
    "facemesh.py",
    "topology.py",
    "audio_processing.py",
    "pipeline_emotalk.py",
    "emotion.py",
    "motion.py",
    "video_io.py",  # emotalk_common: the MP4 writer, and the constants and error base it imports
    "constants.py",
    "exceptions.py",
    "hub_folder.py",  # the pipeline's save_pretrained imports it: a loaded folder can save itself again
}
EVAL_DOCUMENT = {
    "title": "EmoTalk evaluation",
    "summary": {
        "**mean**": {
            "lipsync.closure_lift": 1.23,
            "identity.csim_mean": 0.912,
            "motion.blinks_per_minute": 14.0,
            "reference.m_lmd": None,
        }
    },
    "videos": [],
}


def _save_tiny_composite(path: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = EmoTalkConfig(
        landmark_config=tiny_landmark_config().to_dict(),
        generator_config=tiny_generator_config().to_dict(),
        crop_size=64,
    )
    model = EmoTalkModel(config).eval()
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=True).save_pretrained(path)
    return path


def _tiny_wav2vec2_config(**overrides) -> Wav2Vec2Config:
    kwargs = dict(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    kwargs.update(overrides)
    return Wav2Vec2Config(**kwargs)


@pytest.fixture(scope="module")
def tiny_composite(tmp_path_factory) -> Path:
    return _save_tiny_composite(tmp_path_factory.mktemp("tiny-composite"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The embedded default checkpoint (stage 2 trained on the development media) exported with evaluation results."""
    base = tmp_path_factory.mktemp("export")
    results = base / "results.json"
    results.write_text(json.dumps(EVAL_DOCUMENT))
    output = base / "emotalk-default"
    export_to_hub.export(output, eval_results=results, provenance="internal-demo")
    return output


# --------------------------------------------------------------------------------------- the exported folder
def test_exported_folder_holds_exactly_the_hub_files(exported):
    files = {p.name for p in exported.iterdir()}
    hub_files = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "provenance.json"}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= files
    assert files >= REMOTE_CODE
    assert not files - REMOTE_CODE - hub_files - {export_to_hub.MANIFEST}
    assert not {"__init__.py", "cli.py", "batch.py"} & files  # only what inference imports
    assert not [p for p in exported.iterdir() if p.is_dir()]


def test_config_has_auto_map_and_the_custom_pipeline_in_transformers_format(exported, tiny_composite, tmp_path):
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "emotalk"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_emotalk.EmoTalkConfig",
        "AutoModel": "modeling_emotalk.EmoTalkModel",
    }
    ours = config["custom_pipelines"][emotalk_pipeline.TASK]
    assert ours["default"] == {"model": [export_to_hub.DEFAULT_REPO_ID, export_to_hub.default_revision()]}
    # what Pipeline.save_pretrained writes for the registered task (apart from the local default path)
    pipe = pipeline(emotalk_pipeline.TASK, model=str(tiny_composite))
    pipe.save_pretrained(tmp_path / "saved")
    reference = json.loads((tmp_path / "saved" / "config.json").read_text())["custom_pipelines"][emotalk_pipeline.TASK]
    assert {k: v for k, v in ours.items() if k != "default"} == {k: v for k, v in reference.items() if k != "default"}
    assert set(ours) == set(reference)
    # the weights are the source checkpoint's, tensor for tensor
    source = load_file(emotalk_pipeline.DEFAULT_CHECKPOINT / "model.safetensors")
    target = load_file(exported / "model.safetensors")
    assert source.keys() == target.keys()
    assert all(torch.equal(source[k], target[k]) for k in source)


def test_remote_code_imports_the_project_only_relatively(exported):
    for path in exported.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.split(".")[0] in hub_folder.PROJECT_PACKAGES]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] not in hub_folder.PROJECT_PACKAGES, (
                    path.name,
                    node.lineno,
                )
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 and (exported / f"{node.module}.py").is_file(), (path.name, node.lineno)
    pipeline_code = (exported / "pipeline_emotalk.py").read_text()
    assert "from .errors import EmoTalkInputError" in pipeline_code
    assert "        from .hub_folder import write_pipeline_folder" in pipeline_code  # the lazy import too
    assert hub_folder.check_remote_code(exported) == sorted(REMOTE_CODE)


def test_import_rewriting_and_loud_failures(tmp_path):
    text = "def f():\n    from modeling_emotalk import EmoTalkConfig, EmoTalkModel as M\n    return M\n"
    node = next(n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom))
    targets, new = hub_folder._resolve_import(node, "emotalk_pipeline.example", "example.py:2")
    assert targets == ["modeling_emotalk.configuration_emotalk", "modeling_emotalk.modeling_emotalk"]
    assert hub_folder._rewrite(text, [(node, new)]) == (
        "def f():\n    from .configuration_emotalk import EmoTalkConfig\n"
        "    from .modeling_emotalk import EmoTalkModel as M\n    return M\n"
    )
    plain = ast.parse("import modeling_emotalk.errors").body[0]
    with pytest.raises(export_to_hub.ExportError, match="cannot be made relative"):
        hub_folder._resolve_import(plain, "emotalk_pipeline.example", "example.py:1")
    training = ast.parse("from emotalk_training.prepare import x").body[0]
    with pytest.raises(export_to_hub.ExportError, match="not part of the inference code"):
        hub_folder._resolve_import(training, "emotalk_pipeline.example", "example.py:1")
    (tmp_path / "errors.py").write_text("class E(Exception):\n    pass\n")
    (tmp_path / "video.py").write_text("def g():\n    from modeling_emotalk.errors import E\n")
    with pytest.raises(export_to_hub.ExportError, match=r"video.py:2: absolute import of this project"):
        hub_folder.check_remote_code(tmp_path)
    (tmp_path / "video.py").write_text("from .missing import E\n")
    with pytest.raises(export_to_hub.ExportError, match="no flat file"):
        hub_folder.check_remote_code(tmp_path)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys
    # this project must not be importable: drop the editable install's finders and the checkout from sys.path
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in repr(h)]
    sys.path[:] = [p for p in sys.path if "__editable__" not in p and not p.startswith(sys.argv[4])]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    for name in ("modeling_emotalk", "emotalk_pipeline", "emotalk_common"):
        assert importlib.util.find_spec(name) is None, f"{name} is importable"

    import soundfile as sf
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoModel, pipeline

    folder, source, out = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    expected = load_file(source)
    state = model.state_dict()
    identical = state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)

    pipe = pipeline("emotional-talking-face", model=folder, trust_remote_code=True)
    image = Image.open(f"{out}/portrait.png")
    audio, rate = sf.read(f"{out}/speech.wav", dtype="float32")
    video = pipe(image, {"array": audio, "sampling_rate": rate}, fps=10, seed=0, progress=False)
    video.save(f"{out}/remote.mp4")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling_emotalk", "emotalk_pipeline", "emotalk_common"))
    print("RESULT " + json.dumps({
        "model_module": type(model).__module__,
        "pipeline_module": type(pipe).__module__,
        "identical": identical,
        "num_frames": video.num_frames,
        "leaked": leaked,
    }))
    """
)


def run_remote_script(folder, astronaut, tmp_path) -> dict:
    """Load ``folder`` and render with :data:`REMOTE_SCRIPT` in a subprocess that cannot import EmoTalk."""
    Image.fromarray(astronaut).save(tmp_path / "portrait.png")
    sf.write(tmp_path / "speech.wav", synthetic_speech(0.6), 16000)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TOKENIZERS_PARALLELISM="false")
    source = emotalk_pipeline.DEFAULT_CHECKPOINT / "model.safetensors"
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(folder), str(source), str(tmp_path), str(ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_exported_folder_works_where_the_project_is_not_installed(exported, astronaut, tmp_path):
    facts = run_remote_script(exported, astronaut, tmp_path)
    assert facts["model_module"].startswith("transformers_modules.")
    assert facts["pipeline_module"].startswith("transformers_modules.")
    assert facts["identical"] and facts["leaked"] == []
    assert facts["num_frames"] == 6
    with av.open(str(tmp_path / "remote.mp4")) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264" and video.frames == 6
        assert container.streams.audio[0].codec_context.name == "aac"


# ----------------------------------------------------------------------------------------------- model card
def test_model_card_metadata_and_sections(exported):
    card = ModelCard.load(exported / "README.md")
    data = card.data
    assert data.license == "other"  # trained weights: the code's Apache-2.0 does not cover the data's terms
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-to-video"
    assert {"talking-face", "audio-driven", "emotion", "emotional-talking-face"} <= set(data.tags)
    assert data.base_model is None
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    assert results == {"lipsync.closure_lift": 1.23, "identity.csim_mean": 0.912, "motion.blinks_per_minute": 14.0}
    text = card.text
    for section in ("## Usage", "## Intended use", "## Out-of-scope use", "## Training data", "## Evaluation"):
        assert section in text
    assert "## Limitations" in text and "## License" in text
    assert "Internal demo weights" in text  # the embedded default: stage 2 trained on the development media
    assert "Base model: none" in text
    assert "consent" in text and "watermark" in text and "Disclose" in text
    assert (
        'pipeline("emotional-talking-face", model="emotalk/emotalk-default", revision="v0.1.0", trust_remote_code=True)'
        in text
    )


def test_model_card_provenance_and_not_evaluated(tiny_composite, tmp_path):
    model = EmoTalkModel.from_pretrained(tiny_composite)
    untrained = model_card.detect_untrained_stages(model)
    assert untrained == {"landmark": True, "generator": True}  # seeded like build_default_checkpoint
    with torch.no_grad():
        model.landmark_model.pose_head.weight.add_(0.1)
    assert model_card.detect_untrained_stages(model) == {"landmark": False, "generator": True}
    with pytest.raises(model_card.ModelCardError, match="--provenance internal-demo"):
        model_card.build_model_card(model, repo_id="org/tiny")
    with pytest.raises(model_card.ModelCardError, match="needs --training-data"):
        model_card.build_model_card(model, repo_id="org/tiny", provenance="custom")
    card = model_card.build_model_card(model, repo_id="org/tiny", provenance="internal-demo")
    assert "Internal demo weights" in card.text and "non-commercial" in card.text
    assert "stage 2's output layers are still zero" in card.text
    assert "**Not evaluated.**" in card.text and card.data.eval_results is None
    card = model_card.build_model_card(
        model, repo_id="org/tiny", provenance="custom", training_data="Trained on my own recordings (CC-BY).",
        base_model="someone/wav2vec2-small",
    )  # fmt: skip
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == "someone/wav2vec2-small" and "my own recordings" in loaded.text


def test_eval_results_formats(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"lipsync": {"closure_lift": 2.0, "method": "phones"}, "psnr": 30.5}))
    assert model_card.load_eval_results(flat)["rows"] == {"all": {"lipsync.closure_lift": 2.0, "psnr": 30.5}}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(model_card.ModelCardError, match="expected a JSON object"):
        model_card.load_eval_results(bad)
    with pytest.raises(model_card.ModelCardError, match="does not exist"):
        model_card.load_eval_results(tmp_path / "missing.json")


# -------------------------------------------------------------------------------------- inputs, CLI, push
def test_stage_folders_of_a_training_output_are_combined(tmp_path):
    run = tmp_path / "run"
    torch.manual_seed(0)
    EmoTalkLandmarkModel(tiny_landmark_config()).save_pretrained(run / "landmark_model")
    found = export_to_hub.find_checkpoint_folders(run)
    assert found == {"landmark": run / "landmark_model"}
    with pytest.raises(export_to_hub.ExportError, match="does not exist"):
        export_to_hub.find_checkpoint_folders(tmp_path / "nope")
    Wav2Vec2ForCTC(_tiny_wav2vec2_config(vocab_size=8)).save_pretrained(tmp_path / "w2v")
    with pytest.raises(export_to_hub.ExportError, match=r"convert_wav2vec2\.py"):
        export_to_hub.find_checkpoint_folders(tmp_path / "w2v")
    (tmp_path / "empty").mkdir()
    with pytest.raises(export_to_hub.ExportError, match="no EmoTalk checkpoint"):
        export_to_hub.find_checkpoint_folders(tmp_path / "empty")


def test_cli_push_fails_with_a_clear_message_offline_and_unreachable(tiny_composite, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)  # HF_HUB_OFFLINE=1 (set by conftest)
    output = tmp_path / "out"
    argv = ["--checkpoint", str(tiny_composite), "--output", str(output), "--push-to-hub", "--repo-id", "me/tiny"]
    assert export_to_hub.main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot push to me/tiny: HF_HUB_OFFLINE=1 is set" in err and "Traceback" not in err
    assert (output / "README.md").is_file() and (output / "pipeline_emotalk.py").is_file()  # the folder is complete

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub, "create_repo", unreachable)
    with pytest.raises(export_to_hub.ExportError, match="the Hub is unreachable"):
        export_to_hub.push(output, "me/tiny")
    # a non-empty output is not replaced without --overwrite
    assert export_to_hub.main(argv[:4]) == 2
    assert "--overwrite" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- wav2vec2 import
def test_wav2vec2_import_fills_the_encoder_and_recreates_the_projection(tiny_composite, tmp_path):
    torch.manual_seed(1)
    source = Wav2Vec2ForCTC(_tiny_wav2vec2_config(vocab_size=8)).eval()  # hidden 48 != stage 1's 32
    source.save_pretrained(tmp_path / "w2v")
    report = convert_wav2vec2.convert(tmp_path / "w2v", tmp_path / "out", tiny_composite)
    before = EmoTalkModel.from_pretrained(tiny_composite)
    after = EmoTalkModel.from_pretrained(tmp_path / "out")

    expected = source.wav2vec2.state_dict()
    encoder = after.landmark_model.audio_encoder.state_dict()
    assert expected.keys() == encoder.keys()
    for key, value in expected.items():  # one by one
        assert torch.equal(encoder[key], value), key
    assert sorted(report.loaded) == sorted(f"audio_encoder.{k}" for k in expected)
    assert report.missing == [] and report.unexpected == ["lm_head.bias", "lm_head.weight"]
    assert after.config.landmark_config.audio_config.hidden_size == 48
    assert after.landmark_model.audio_projection.in_features == 48
    assert set(report.reinitialized) == {
        "audio_projection.weight",
        "audio_projection.bias",
        "audio_emotion.0.weight",
        "audio_emotion.0.bias",
    }
    old, new = before.state_dict(), after.state_dict()
    for key in report.kept:
        assert torch.equal(new[f"landmark_model.{key}"], old[f"landmark_model.{key}"]), key
    assert all(torch.equal(new[k], old[k]) for k in old if k.startswith("generator."))
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    # the new stage 1 runs
    audio = torch.from_numpy(synthetic_speech(0.5))[None]
    out = after.landmark_model(audio, fps=25)
    assert out.expression.shape == (1, 13, 478, 3) and torch.isfinite(out.expression).all()


def test_wav2vec2_import_into_a_stage1_folder_keeps_a_same_size_projection(tmp_path, capsys):
    torch.manual_seed(0)
    stage1 = EmoTalkLandmarkModel(tiny_landmark_config()).eval()
    stage1.save_pretrained(tmp_path / "stage1")
    torch.manual_seed(2)
    source = Wav2Vec2ForCTC(_tiny_wav2vec2_config(vocab_size=8, **TINY_AUDIO)).eval()  # hidden 32, as stage 1
    source.save_pretrained(tmp_path / "w2v")
    argv = ["--wav2vec2", str(tmp_path / "w2v"), "--model", str(tmp_path / "stage1"), "--output", str(tmp_path / "o")]
    assert convert_wav2vec2.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        f"loaded {len(source.wav2vec2.state_dict())} encoder tensors" in printed
        and "re-initialized (new input size): 0" in printed
    )
    converted = EmoTalkLandmarkModel.from_pretrained(tmp_path / "o")
    assert torch.equal(converted.audio_projection.weight, stage1.audio_projection.weight)
    state = converted.audio_encoder.state_dict()
    for key, value in source.wav2vec2.state_dict().items():
        assert torch.equal(state[key], value), key


def test_wav2vec2_import_refuses_incompatible_folders(tiny_composite, tmp_path, capsys):
    convert = convert_wav2vec2.convert
    error = convert_wav2vec2.ConversionError
    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(error, match=r"holds a 'bert' checkpoint, not 'wav2vec2'"):
        convert(tmp_path / "bert", tmp_path / "o1", tiny_composite)
    with pytest.raises(error, match="is not a folder"):
        convert(tmp_path / "missing", tmp_path / "o2", tiny_composite)
    Wav2Vec2ForCTC(_tiny_wav2vec2_config(conv_stride=(5, 2, 2, 2, 2, 2, 1))).save_pretrained(tmp_path / "w2v-100hz")
    with pytest.raises(error, match=r"downsamples by 160 samples \(100 Hz\)"):
        convert(tmp_path / "w2v-100hz", tmp_path / "o3", tiny_composite)
    _tiny_wav2vec2_config().save_pretrained(tmp_path / "config-only")
    with pytest.raises(error, match="has no weights"):
        convert(tmp_path / "config-only", tmp_path / "o4", tiny_composite)
    Wav2Vec2ForCTC(_tiny_wav2vec2_config()).save_pretrained(tmp_path / "w2v")
    with pytest.raises(error, match="not an EmoTalk composite or stage-1 checkpoint"):
        convert(tmp_path / "w2v", tmp_path / "o5", tmp_path / "w2v")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    assert convert_wav2vec2.main(["--wav2vec2", str(tmp_path / "bert"), "--output", str(tmp_path / "o6")]) == 2
    assert "not 'wav2vec2'" in capsys.readouterr().err


def test_output_of_the_import_exports(tiny_composite, tmp_path):
    """convert_wav2vec2 → export_to_hub: a changed audio config still round-trips through the Hub folder."""
    torch.manual_seed(3)
    from transformers import Wav2Vec2Model

    Wav2Vec2Model(_tiny_wav2vec2_config()).save_pretrained(tmp_path / "w2v")
    convert_wav2vec2.convert(tmp_path / "w2v", tmp_path / "converted", tiny_composite)
    files = export_to_hub.export(
        tmp_path / "hub", tmp_path / "converted", provenance="custom", training_data="test", base_model="me/w2v"
    )
    assert "pipeline_emotalk.py" in files
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["landmark_config"]["audio_config"]["hidden_size"] == 48
    model = EmoTalkModel.from_pretrained(tmp_path / "hub")
    assert model.landmark_model.audio_projection.in_features == 48
    assert ModelCard.load(tmp_path / "hub" / "README.md").data.base_model == "me/w2v"


def test_an_interrupted_rebuild_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    """The new folder is staged beside the old one and moved in at the end: a failure midway changes nothing."""
    tiny = EmoTalkConfig(landmark_config=tiny_landmark_config(), generator_config=tiny_generator_config())
    monkeypatch.setattr(build_default_checkpoint, "EmoTalkConfig", lambda **kwargs: tiny)
    folder = build_default_checkpoint.build(tmp_path / "default", seed=0)
    (folder / "provenance.json").write_text("{}")  # describes the old weights
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(build_default_checkpoint.EmoTalkProcessor, "save_pretrained", disk_full)
        with pytest.raises(OSError, match="No space"):
            build_default_checkpoint.build(folder, seed=1)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    build_default_checkpoint.build(folder, seed=1)
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]  # provenance went with the old weights
    assert (folder / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["default"]  # no staging folder left behind
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o644
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    assert settings["processor_class"] == "EmoTalkProcessor" and settings["crop_size"] == 256  # the face settings too


def test_default_checkpoint_stores_parameters_in_half_precision_and_loads_float32(tmp_path, monkeypatch):
    tiny = EmoTalkConfig(landmark_config=tiny_landmark_config(), generator_config=tiny_generator_config())
    monkeypatch.setattr(build_default_checkpoint, "EmoTalkConfig", lambda **kwargs: tiny)
    half = build_default_checkpoint.build(tmp_path / "half", seed=0)
    full = build_default_checkpoint.build(tmp_path / "full", seed=0, half_precision=False)
    stored, reference = load_file(half / "model.safetensors"), load_file(full / "model.safetensors")
    loaded = EmoTalkModel.from_pretrained(half)
    parameters = {name for name, _ in loaded.named_parameters()}
    for name, tensor in reference.items():
        if name in parameters:
            assert stored[name].dtype == torch.float16, name
            torch.testing.assert_close(stored[name].float(), tensor, rtol=1e-3, atol=1e-4)
        else:  # buffers (e.g. the photo-expression estimator) keep their precision
            assert torch.equal(stored[name], tensor), name
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size


def test_calibration_options_change_the_config_and_not_the_weights(tmp_path, monkeypatch):
    tiny = EmoTalkConfig(landmark_config=tiny_landmark_config(), generator_config=tiny_generator_config())
    monkeypatch.setattr(
        build_default_checkpoint, "EmoTalkConfig", lambda **kwargs: EmoTalkConfig(**{**tiny.to_dict(), **kwargs})
    )
    plain = build_default_checkpoint.build(tmp_path / "plain", seed=0)
    prior = {"openings": [0.1, 0.4], "texture": [[[[0.2, 0.3]] * 2] * 3] * 2, "lip_color": [0.5, 0.3, 0.3]}
    tuned = build_default_checkpoint.build(
        tmp_path / "tuned",
        seed=0,
        emotion_strength={"angry": 1.5},
        tps_regularization=0.02,
        mouth_prior=prior,
        eyelids="rigid_lashes",
    )
    config = EmoTalkConfig.from_pretrained(tuned)
    assert config.emotion_strength == {"angry": 1.5} and config.generator_config.tps_regularization == 0.02
    generator = EmoTalkModel.from_pretrained(tuned).generator.config
    assert generator.tps_regularization == 0.02
    assert generator.mouth_interior == "prior" and generator.mouth_prior == prior
    assert generator.eyelids == "rigid_lashes"
    # the same weights give the same bytes: a config-only rebuild adds no new weights blob to git history
    assert (plain / "model.safetensors").read_bytes() == (tuned / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        build_default_checkpoint.build(tmp_path / "bad", emotion_strength={"joy": 2.0})
    with pytest.raises(ValueError, match="mouth_prior"):
        build_default_checkpoint.build(tmp_path / "bad", mouth_prior={**prior, "openings": [0.4, 0.1]})
    with pytest.raises(ValueError, match="eyelids"):
        build_default_checkpoint.build(tmp_path / "bad", eyelids="closed")
    assert not (tmp_path / "bad").exists()
