"""Several photos of the same person (``reference_images``): pipeline, CLI, batch manifest and Space.

The pipeline tests use the tiny seeded composite of ``test_pipeline.py`` (64² crops) and generated photos: the
astronaut and a flipped, shifted copy of it (another view of the same face, placed elsewhere in the photo).
"""

from __future__ import annotations

import emotalk_cli
import numpy as np
import pytest
import soundfile as sf
import test_cli_safety
from conftest import synthetic_speech
from emotalk_pipeline.batch import read_manifest
from PIL import Image
from test_pipeline import tiny_model_dir  # noqa: F401  (the fixture)
from transformers import pipeline

from modeling_emotalk.errors import EmoTalkInputError, NoFaceError

STILL = {"pose": "still", "blink": False, "gaze": False, "seed": 0, "progress": False}


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model_dir):  # noqa: F811
    return pipeline("emotional-talking-face", model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def other_view(astronaut) -> np.ndarray:
    """The astronaut mirrored and moved 40 px left: the same person, another face crop."""
    return np.ascontiguousarray(np.roll(astronaut[:, ::-1], -40, axis=1))


@pytest.fixture(scope="module")
def no_face() -> np.ndarray:
    return np.random.default_rng(0).integers(90, 160, size=(256, 256, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def audio():
    return {"array": synthetic_speech(0.6), "sampling_rate": 16000}


# -------------------------------------------------------------------------------------------------- pipeline
def test_references_change_the_frames_and_are_deterministic(tiny_pipe, astronaut, other_view, audio):
    single = tiny_pipe(astronaut, audio, paste_back=False, **STILL).frames
    fused = tiny_pipe(astronaut, audio, paste_back=False, reference_images=[other_view], **STILL)
    again = tiny_pipe(astronaut, audio, paste_back=False, reference_images=(other_view,), **STILL)
    assert fused.frames.shape == single.shape
    assert np.abs(fused.frames.astype(int) - single.astype(int)).mean() > 1.0  # the second photo is used
    np.testing.assert_array_equal(fused.frames, again.frames)
    # the portrait alone drives the motion: the landmarks do not depend on the extra photos
    np.testing.assert_array_equal(fused.landmarks, tiny_pipe(astronaut, audio, paste_back=False, **STILL).landmarks)
    empty = tiny_pipe(astronaut, audio, paste_back=False, reference_images=[], **STILL).frames
    np.testing.assert_array_equal(empty, single)


def test_the_first_photo_is_pasted_back_and_unchanged_outside_its_face(tiny_pipe, astronaut, other_view, audio):
    frames = tiny_pipe(astronaut, audio, reference_images=[other_view, astronaut], **STILL).frames
    assert frames.shape[1:] == astronaut.shape
    face = tiny_pipe.face_processor(astronaut)
    x0, y0, x1, y1 = tiny_pipe.face_processor._paste_plan(face, 64)[:4]
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (frames[:, outside] == astronaut[outside]).all()  # not the other view's face or background
    assert (frames[:, ~outside] != astronaut[~outside]).any()


def test_a_reference_without_a_face_is_named(tiny_pipe, astronaut, other_view, no_face, audio):
    with pytest.raises(NoFaceError, match=r"reference image 2 \(reference_images\[1\]\): no face found"):
        tiny_pipe(astronaut, audio, reference_images=[other_view, no_face], **STILL)


@pytest.mark.parametrize(
    ("references", "message"),
    [
        (["a.png"] * 5, "at most 4 extra photos, got 5"),
        ("a.png", "must be a list of up to 4 images"),
        ([None], r"reference image 1 \(reference_images\[0\]\) is None"),
    ],
    ids=["too-many", "not-a-list", "none"],
)
def test_bad_reference_lists_are_refused_before_any_work(tiny_pipe, astronaut, audio, references, message):
    with pytest.raises(EmoTalkInputError, match=message):
        tiny_pipe(astronaut, audio, reference_images=references, **STILL)


def test_render_fuses_k_references(tiny_model_dir):  # noqa: F811
    """``EmoTalkModel.render`` with ``(1, K, 3, S, S)`` sources: the first reference's landmarks drive the warp."""
    import torch

    from modeling_emotalk import EmoTalkModel

    model = EmoTalkModel.from_pretrained(tiny_model_dir).eval()
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (1, 2, 3, 64, 64), dtype=torch.uint8)
    marks = (torch.rand(1, 2, 478, 3) - 0.5) * 1.2
    driving = marks[0, :1].repeat(3, 1, 1)
    with torch.no_grad():
        fused = torch.cat(list(model.render(pixels, marks, driving, 2)))
        first = torch.cat(list(model.render(pixels[0, 0], marks[0, 0], driving, 2)))
    assert fused.shape == first.shape == (3, 64, 64, 3)
    assert not torch.equal(fused, first)


# ------------------------------------------------------------------------------------------------ CLI and batch
fake_pipe = test_cli_safety.fake_pipe  # the CLI tests' pipeline stand-in (a fixture)


@pytest.fixture
def media(tmp_path):
    for name in ("face.png", "side.png", "smile.png"):
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / name)
    sf.write(tmp_path / "speech.wav", synthetic_speech(0.5), 16000)
    return tmp_path


def _argv(media, *extra):
    return ["generate", "--image", str(media / "face.png"), "--audio", str(media / "speech.wav"),
            "--output", str(media / "out.mp4"), *extra]  # fmt: skip


def test_cli_reference_image_flag_is_repeatable_and_passed_through(fake_pipe, media):
    argv = _argv(media, "--reference-image", str(media / "side.png"), "--reference-image", str(media / "smile.png"))
    assert emotalk_cli.main(argv) == 0
    ((_, kwargs),) = fake_pipe.calls
    assert kwargs["reference_images"] == [str(media / "side.png"), str(media / "smile.png")]
    fake_pipe.calls.clear()
    (media / "out.mp4").unlink()
    assert emotalk_cli.main(_argv(media)) == 0
    assert "reference_images" not in fake_pipe.calls[0][1]


def test_cli_reference_image_is_checked_before_the_model_loads(fake_pipe, media, capsys):
    assert emotalk_cli.main(_argv(media, "--reference-image", str(media / "missing.png"))) == 2
    err = capsys.readouterr().err
    assert "reference image 1 " in err and "missing.png" in err
    five = [arg for _ in range(5) for arg in ("--reference-image", str(media / "side.png"))]
    assert emotalk_cli.main(_argv(media, *five)) == 2
    assert "at most 4 photos, got 5" in capsys.readouterr().err
    out = str(media / "side.png")  # an output that is one of the photos is refused too
    argv = _argv(media, "--reference-image", out, "--overwrite")
    argv[argv.index("--output") + 1] = out
    assert emotalk_cli.main(argv) == 2
    assert fake_pipe.loaded == [] and not (media / "out.mp4").exists()


def test_manifest_reference_images_column(fake_pipe, media):
    (media / "jobs.csv").write_text(
        "image,audio,output,reference_images\n"
        "face.png,speech.wav,a.mp4,side.png; smile.png\n"
        "face.png,speech.wav,b.mp4,\n"
        f"face.png,speech.wav,c.mp4,{';'.join(['side.png'] * 5)}\n"
    )
    jobs = read_manifest(media / "jobs.csv")
    assert jobs[0]["reference_images"] == [str(media / "side.png"), str(media / "smile.png")]
    assert jobs[1]["reference_images"] == []
    assert "at most 4 photos, got 5" in jobs[2]["error"]
    argv = ["generate", "--manifest", str(media / "jobs.csv"), "--output-dir", str(media / "videos")]
    assert emotalk_cli.main(argv) == 1  # the third row fails alone
    assert [kwargs.get("reference_images") for _, kwargs in fake_pipe.calls] == [jobs[0]["reference_images"], None]
    (media / "jobs.jsonl").write_text(
        '{"image": "face.png", "audio": "speech.wav", "reference_images": ["side.png"]}\n'
    )
    assert read_manifest(media / "jobs.jsonl")[0]["reference_images"] == [str(media / "side.png")]


# ------------------------------------------------------------------------------------------------------ Space
@pytest.fixture(scope="module")
def space_client(tmp_path_factory, tiny_pipe):
    """The Space around the tiny pipeline, launched locally, and a ``gradio_client`` on it."""
    for module in ("gradio", "gradio_client", "spaces"):
        pytest.importorskip(module)
    from gradio_client import Client
    from test_space import launched_space

    with launched_space(tiny_pipe, tmp_path_factory.mktemp("space"), max_audio_seconds=3.0) as (url, _):
        yield Client(url, verbose=False)


def test_space_takes_more_photos_last_and_names_a_bad_one(space_client, astronaut, other_view, no_face, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    for name, image in (("face.png", astronaut), ("side.png", other_view), ("blank.png", no_face)):
        Image.fromarray(image).save(tmp_path / name)
    sf.write(tmp_path / "speech.wav", synthetic_speech(0.6), 16000, subtype="PCM_16")
    positional = [handle_file(str(tmp_path / "face.png")), handle_file(str(tmp_path / "speech.wav"))]
    positional += ["happy", 0.8, "", "natural", True, True, False, 0]  # the API's first ten positions, unchanged
    video, _, details = space_client.predict(*positional, api_name="/generate")
    assert video.endswith(".mp4") and "more photo" not in details
    side = handle_file(str(tmp_path / "side.png"))
    video, _, details = space_client.predict(*positional, [side], api_name="/generate")
    assert video.endswith(".mp4") and "1 more photo(s)" in details
    with pytest.raises(AppError) as info:
        space_client.predict(*positional, [side, handle_file(str(tmp_path / "blank.png"))], api_name="/generate")
    message = str(info.value).lower()
    assert "reference image 2" in message and "no face found" in message and "/tmp/" not in message
    with pytest.raises(AppError, match="at most 4 more photos"):
        space_client.predict(*positional, [side] * 5, api_name="/generate")
