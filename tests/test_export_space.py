"""Issue 13: self-contained ``pipe.save_pretrained`` folders, pinned revisions, recorded provenance, the manifest
that bounds ``--overwrite``, the truthful model card, and the Space's handling of broken or huge photos."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import emotalk_pipeline
import numpy as np
import pytest
from emotalk_pipeline import hub_folder
from huggingface_hub import ModelCard
from PIL import Image
from test_conversion import REMOTE_CODE, _save_tiny_composite, export_to_hub, run_remote_script
from transformers import pipeline

from modeling_emotalk.errors import ImageReadError, ImageSizeError
from modeling_emotalk.face_processing import MAX_IMAGE_PIXELS, FaceProcessor, read_image_file


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return _save_tiny_composite(tmp_path_factory.mktemp("tiny"))


# ------------------------------------------------------------------------------------ pipe.save_pretrained
def test_save_pretrained_folder_runs_where_the_project_is_not_installed(astronaut, tmp_path):
    pipe = pipeline(emotalk_pipeline.TASK)  # the embedded default (its provenance.json travels with the weights)
    saved = pipe.save_pretrained(tmp_path / "saved")
    files = {p.name for p in saved.iterdir()}
    assert files >= REMOTE_CODE | {"config.json", "model.safetensors", "preprocessor_config.json", hub_folder.MANIFEST}
    config = json.loads((saved / "config.json").read_text())
    entry = config["custom_pipelines"][emotalk_pipeline.TASK]
    assert entry["impl"] == "pipeline_emotalk.EmotionalTalkingFacePipeline" and entry["default"] == {
        "model": [hub_folder.DEFAULT_REPO_ID, "v0.1.0"]
    }
    assert str(emotalk_pipeline.DEFAULT_CHECKPOINT) not in (saved / "config.json").read_text()  # no local path
    assert json.loads((saved / "provenance.json").read_text())["provenance"] == "internal-demo"
    assert sorted(json.loads((saved / hub_folder.MANIFEST).read_text())["files"]) == sorted(
        files - {hub_folder.MANIFEST}
    )

    facts = run_remote_script(saved, astronaut, tmp_path)
    assert facts["pipeline_module"].startswith("transformers_modules.") and facts["leaked"] == []
    assert facts["identical"] and facts["num_frames"] == 6


def test_save_pretrained_refuses_unknown_arguments_and_foreign_folders(tiny_folder, tmp_path):
    pipe = pipeline(emotalk_pipeline.TASK, model=str(tiny_folder))
    with pytest.raises(hub_folder.ExportError, match="unexpected arguments"):
        pipe.save_pretrained(tmp_path / "a", max_shard_size="1GB")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(hub_folder.ExportError, match="not written by the EmoTalk exporter"):
        pipe.save_pretrained(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------------------- revision pin
def test_revision_is_pinned_and_branches_are_refused():
    assert hub_folder.default_revision() == "v0.1.0"  # the package version's tag
    entry = hub_folder.custom_pipelines_entry("me/repo", "0123456789abcdef0123456789abcdef01234567")
    assert entry[emotalk_pipeline.TASK]["default"] == {
        "model": ["me/repo", "0123456789abcdef0123456789abcdef01234567"]
    }
    for moving in ("main", "refs/heads/dev", " "):
        with pytest.raises(hub_folder.ExportError, match="is not a pin"):
            hub_folder.check_revision(moving)
    assert hub_folder.check_revision("v1.2.0") == "v1.2.0"


# ---------------------------------------------------------------- default export: provenance, card, overwrite
@pytest.fixture(scope="module")
def default_export(tmp_path_factory) -> Path:
    """The embedded default exported exactly as `export_to_hub.py --output DIR --revision <sha>` does."""
    output = tmp_path_factory.mktemp("default") / "hub"
    sha = "a" * 40
    assert export_to_hub.main(["--output", str(output), "--revision", sha]) == 0
    return output


def test_default_export_needs_no_provenance_flag_and_records_it(default_export):
    recorded = json.loads((emotalk_pipeline.DEFAULT_CHECKPOINT / "provenance.json").read_text())
    assert recorded["provenance"] == "internal-demo" and "non-commercial" in recorded["weights_terms"]
    assert json.loads((default_export / "provenance.json").read_text()) == recorded
    config = json.loads((default_export / "config.json").read_text())
    assert config["custom_pipelines"][emotalk_pipeline.TASK]["default"] == {
        "model": [hub_folder.DEFAULT_REPO_ID, "a" * 40]
    }


def test_model_card_states_licenses_data_figures_and_measured_limitations(default_export):
    card = ModelCard.load(default_export / "README.md")
    assert card.data.license == "other" and card.data.license_name and card.data.license_link
    text = card.text
    license_section = text.split("## License", 1)[1]
    assert "Apache-2.0" in license_section and "not Apache-2.0" in license_section and "non-commercial" in text
    assert f'revision="{"a" * 40}"' in text and "trust_remote_code=True" in text
    for dataset in ("MEAD", "HDTF", "VoxCeleb2", "CREMA-D"):
        assert dataset in text.split("## Training data", 1)[1]
    assert "Not evaluated" not in text
    evaluation = text.split("## Evaluation", 1)[1].split("## Limitations", 1)[0]
    for figure in ("0.344", "0.803", "16.60", "23.92", "1.935", "benchmarks/quality.py --limit 10"):
        assert figure in evaluation, figure
    limitations = text.split("## Limitations", 1)[1].split("## License", 1)[0]
    assert "0.344" in limitations and "0.25" in limitations and "surprised on four of the six" in limitations
    assert "a mean one" in " ".join(limitations.split()) and "mirrored" in limitations
    assert "lash line" in limitations and "rigid lashes" in limitations
    assert "Stage 1 (audio → landmarks)" in text and "Stage 2 (generator)" in text


def test_overwrite_replaces_only_what_the_export_wrote(default_export, capsys):
    (default_export / "my_notes.md").write_text("unrelated")
    (default_export / "pipeline_emotalk.py").write_text("# stale copy")
    argv = ["--output", str(default_export), "--revision", "a" * 40]
    assert export_to_hub.main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert export_to_hub.main([*argv, "--overwrite"]) == 0
    assert (default_export / "my_notes.md").read_text() == "unrelated"  # not ours: kept
    assert "# stale copy" not in (default_export / "pipeline_emotalk.py").read_text()
    assert "my_notes.md" not in hub_folder.read_manifest(default_export)


# --------------------------------------------------------------------------------------- image file checks
def _huge_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width x height`` (one tiny, wrong IDAT): cheap to write, huge to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory, astronaut) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    Image.fromarray(astronaut).save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "text.jpg").write_text("this is not a photo\n")
    return {
        "truncated": folder / "truncated.jpg",
        "text": folder / "text.jpg",
        "huge": _huge_png(folder / "huge.png", 20000, 20000),
        "over_limit": _huge_png(folder / "over.png", 8000, 7000),  # 56 MP, each side within 8192
    }


def test_image_loader_checks_the_header_before_decoding(bad_images):
    start = time.perf_counter()
    for key in ("huge", "over_limit"):
        with pytest.raises(ImageSizeError, match="megapixels"):
            FaceProcessor().load_image(bad_images[key])
    assert time.perf_counter() - start < 2.0  # refused from the header: 400 MP were never decoded
    assert MAX_IMAGE_PIXELS < 8000 * 7000
    with pytest.raises(ImageReadError, match=r"truncated\.jpg"):
        read_image_file(bad_images["truncated"])
    with pytest.raises(ImageReadError, match=r"text\.jpg"):
        read_image_file(bad_images["text"])


def test_large_jpeg_is_decoded_reduced(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    image = read_image_file(tmp_path / "big.jpg", max_side=2048)
    assert image.shape == (1536, 2048, 3) and image.dtype == np.uint8


# ------------------------------------------------------------------------------------------------ the Space
@pytest.fixture(scope="module")
def app():
    pytest.importorskip("gradio")
    pytest.importorskip("spaces")
    from test_space import _load_app

    return _load_app()


def test_space_prunes_old_videos_and_stale_partials(app, tmp_path):
    old = time.time() - 2 * 3600
    names = ["emotalk-abc.mp4", ".emotalk-abc.p12.0123abcd.partial.mp4", "emotalk-new.mp4", "other.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    for name in names[:2] + names[3:]:
        os.utime(tmp_path / name, (old, old))
    app._prune(tmp_path, 3600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emotalk-new.mp4", "other.txt"]


def test_space_reads_the_portrait_itself(app, bad_images, astronaut):
    for key, error in (("huge", ImageSizeError), ("truncated", ImageReadError), ("text", ImageReadError)):
        with pytest.raises(error):
            app.read_portrait(str(bad_images[key]), 2048)
    image, downscaled = app.read_portrait(str(bad_images["truncated"].with_name("full.jpg")), 256)
    assert image.shape == (256, 256, 3) and downscaled
    assert app.SpaceConfig().max_image_size >= 1920  # the face processor's tiled detection works at ~1920 px


@pytest.fixture(scope="module")
def broken_photo_client(app, tmp_path_factory):
    """The page around a stand-in pipeline that must never run, launched on a free port."""
    from gradio_client import Client
    from test_space import _free_port

    demo = app.build_demo(_NoModel(), app.SpaceConfig(cache_dir=tmp_path_factory.mktemp("space")))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        demo.close()


@pytest.mark.parametrize(
    ("key", "expected"),
    [("truncated", "cannot read an image"), ("text", "cannot read an image"), ("huge", "too large")],
)
def test_space_answers_broken_photos_with_the_projects_message(
    broken_photo_client, bad_images, speech_wav, key, expected
):
    """Through Gradio's own upload path: the error is the project's sentence, not "upstream app raised"."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        broken_photo_client.predict(
            handle_file(str(bad_images[key])), handle_file(str(speech_wav)), api_name="/generate"
        )
    message = str(info.value)
    assert expected in message.lower() and "/tmp/" not in message and "upstream" not in message.lower()


class _NoModel:
    """Stands in for the pipeline: these requests must be refused before any model runs."""

    emotion_labels = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")

    def __call__(self, *args, **kwargs):
        raise AssertionError("the model must not run for a broken photo")


def _isolate_remote_modules(request, cache: Path) -> None:
    """Import remote code afresh from ``cache`` in this test; give later tests back the `transformers_modules` they had."""

    def remote(name: str) -> bool:
        return name.split(".")[0] == "transformers_modules"

    before = {name: module for name, module in sys.modules.items() if remote(name)}

    def restore() -> None:
        for name in [name for name in sys.modules if remote(name)]:
            del sys.modules[name]
        sys.modules.update(before)
        while str(cache) in sys.path:  # transformers appends its modules cache to sys.path
            sys.path.remove(str(cache))

    restore()
    for name in before:
        del sys.modules[name]
    sys.path.insert(0, str(cache))  # ahead of a modules cache an earlier test put on sys.path
    request.addfinalizer(restore)


def test_space_loads_saved_folders_with_their_code_only_when_told(app, tiny_folder, tmp_path, monkeypatch, request):
    saved = pipeline(emotalk_pipeline.TASK, model=str(tiny_folder)).save_pretrained(tmp_path / "saved")
    installed = app.load_pipeline(str(saved))
    assert type(installed).__module__ == "emotalk_pipeline.pipeline_emotalk"
    assert type(installed.model).__module__.startswith("modeling_emotalk.")
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    # transformers imports the remote code as the `transformers_modules` package found in that cache; forget
    # it afterwards, or later tests in this process would look for their remote code in this test's tmp folder
    _isolate_remote_modules(request, tmp_path / "modules")
    monkeypatch.setenv("EMOTALK_TRUST_REMOTE_CODE", "1")
    trusted = app.load_pipeline(str(saved), trust_remote_code=app.trust_remote_code_from_env())
    assert type(trusted).__module__.startswith("transformers_modules.")
    monkeypatch.setenv("EMOTALK_TRUST_REMOTE_CODE", "maybe")
    with pytest.raises(ValueError, match="EMOTALK_TRUST_REMOTE_CODE must be 1 or 0"):
        app.trust_remote_code_from_env()
