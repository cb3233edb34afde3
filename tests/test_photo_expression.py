"""The portrait's own expression is estimated and removed ("replace, not add"), or kept on request."""

from __future__ import annotations

import json

import emotalk_pipeline
import numpy as np
import pytest
import torch
from conftest import synthetic_speech
from safetensors.torch import load_file, save_file
from test_modeling import save_tiny_composite
from transformers import pipeline

from modeling_emotalk import EmoTalkModel
from modeling_emotalk.errors import EmoTalkInputError
from modeling_emotalk.landmarks import LEFT_EYEBROW, MOUTH_CORNERS, RIGHT_EYEBROW, canonicalize
from modeling_emotalk.photo_expression import PhotoExpression

QUIET = {"progress": False, "pose": "still", "blink": False, "gaze": False, "paste_back": False}


def smile_direction() -> torch.Tensor:
    """A synthetic 'smile': the mouth corners up and out (canonical units)."""
    direction = torch.zeros(478, 3)
    direction[MOUTH_CORNERS[0]] = torch.tensor([-0.05, -0.08, 0.0])
    direction[MOUTH_CORNERS[1]] = torch.tensor([0.05, -0.08, 0.0])
    return direction


def fit_smile(prior: PhotoExpression, mean: torch.Tensor) -> None:
    """Component 0 = the smile, estimated by projection on it (what the GLS fit gives with no identity noise)."""
    direction = smile_direction()
    with torch.no_grad():
        prior.mean.copy_(mean)
        prior.directions[0] = direction
        prior.estimator[0] = direction / direction.square().sum()


def test_unfitted_prior_removes_nothing():
    prior = PhotoExpression(8)
    face = torch.randn(2, 478, 3)
    assert not prior.fitted
    torch.testing.assert_close(prior(face), face, atol=0, rtol=0)


def test_a_smile_is_removed_and_its_opposite_is_left_alone():
    prior = PhotoExpression(8)
    mean = torch.randn(478, 3) * 0.1
    mean[list(MOUTH_CORNERS), 1] = 1.05  # the mouth sits a face-height below the eyes (canonical y)
    fit_smile(prior, mean)
    smiling = mean + 0.8 * smile_direction()
    frowning = mean - 0.8 * smile_direction()  # a negative smile is not an expression this component removes
    assert prior.coefficients(smiling)[0].item() == pytest.approx(0.8, abs=1e-5)
    torch.testing.assert_close(prior(smiling), mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(prior(frowning), frowning, atol=0, rtol=0)


def test_only_the_lower_face_is_changed():
    """A component that also raises the brows is removed from the mouth only: the brows stay the photo's."""
    prior = PhotoExpression(8)
    mean = torch.zeros(478, 3)
    mean[list(MOUTH_CORNERS), 1] = 1.05
    brows = list(RIGHT_EYEBROW + LEFT_EYEBROW)
    mean[brows, 1] = -0.26
    direction = smile_direction()
    direction[brows, 1] = -0.05
    with torch.no_grad():
        prior.mean.copy_(mean)
        prior.directions[0] = direction
        prior.estimator[0] = direction / direction.square().sum()
    face = mean + 0.8 * direction
    out = prior(face)
    torch.testing.assert_close(out[brows], face[brows], atol=0, rtol=0)
    torch.testing.assert_close(out[list(MOUTH_CORNERS)], mean[list(MOUTH_CORNERS)], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def smile_model_dir(tmp_path_factory):
    """The tiny composite (its estimator is set per test)."""
    return save_tiny_composite(tmp_path_factory.mktemp("tiny-smile"))


def test_loading_a_checkpoint_without_the_estimator_gives_an_unfitted_one(smile_model_dir, tmp_path):
    """Checkpoints from before the estimator existed load with it at zero (they keep photos as they are)."""
    weights = load_file(smile_model_dir / "model.safetensors")
    kept = {key: value for key, value in weights.items() if "photo_expression" not in key}
    assert len(kept) == len(weights) - 3
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text((smile_model_dir / name).read_text())
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    prior = EmoTalkModel.from_pretrained(tmp_path).landmark_model.photo_expression
    assert not prior.fitted and torch.isfinite(prior.mean).all() and prior.mean.abs().sum() == 0


def test_pipeline_replaces_the_photo_expression_by_default_and_keeps_it_on_request(
    smile_model_dir, astronaut, tmp_path
):
    pipe = pipeline("emotional-talking-face", model=str(smile_model_dir))
    face = pipe.face_processor(astronaut)
    canonical, _ = canonicalize(torch.from_numpy(face.landmarks).float()[None])
    fit_smile(pipe.model.landmark_model.photo_expression, canonical[0] - 0.5 * smile_direction())  # smiles 0.5
    audio = {"array": synthetic_speech(0.5), "sampling_rate": 16000}
    replaced = pipe(astronaut, audio, seed=0, **QUIET).landmarks
    kept = pipe(astronaut, audio, seed=0, photo_expression="keep", **QUIET).landmarks
    corners = list(MOUTH_CORNERS)
    # replace moves the mouth corners down by the removed smile (canonical y is down), and nothing else moves
    scale = float(np.linalg.norm(face.landmarks[263, :2] - face.landmarks[33, :2]))  # ~ the canonical unit
    drop = (replaced[:, corners, 1] - kept[:, corners, 1]).mean()
    assert drop == pytest.approx(0.5 * 0.08 * scale, rel=0.35)
    others = np.setdiff1d(np.arange(478), corners)
    np.testing.assert_allclose(replaced[:, others], kept[:, others], atol=2e-3)
    with pytest.raises(EmoTalkInputError, match="photo_expression must be one of replace, keep, got 'remove'"):
        pipe(astronaut, audio, photo_expression="remove", **QUIET)


def test_embedded_default_reads_smiles_on_real_portraits(shared_media):
    """The shipped estimator (fitted on the development videos) finds the smile of smiling portraits only."""
    model = EmoTalkModel.from_pretrained(emotalk_pipeline.DEFAULT_CHECKPOINT)
    prior = model.landmark_model.photo_expression
    if not prior.fitted:
        pytest.skip("the embedded checkpoint has no photo-expression estimator")
    pipe = pipeline("emotional-talking-face")
    happy = 4  # angry, contempt, disgusted, fear, happy, sad, surprised, open
    found = {}
    for name in ("SadTalker__examples__source_image__happy1.png", "SadTalker__examples__source_image__sad.png"):
        face = pipe.face_processor(pipe.face_processor.load_image(shared_media / "photos" / name))
        canonical, _ = canonicalize(torch.from_numpy(face.landmarks).float()[None])
        found[name] = prior.coefficients(canonical)[0, happy].item()
    assert found["SadTalker__examples__source_image__happy1.png"] > 0.5, json.dumps(found)
    assert found["SadTalker__examples__source_image__sad.png"] < 0.2, json.dumps(found)


def test_a_tight_portrait_is_mirrored_not_streaked_where_the_crop_leaves_the_photo(astronaut):
    """A portrait cut right above the forehead: the aligned crop reaches past the photo's top edge. The crop
    rows there mirror the photo instead of repeating its first row (which shows as vertical streaks)."""
    from modeling_emotalk.face_processing import FaceProcessor

    processor = FaceProcessor(crop_size=256)
    to_photo = np.linalg.inv(np.vstack([processor(astronaut).matrix, [0, 0, 1]]))
    cut = int((to_photo @ np.array([128.0, 40.0, 1.0]))[1])  # the photo row that lands on crop row 40
    face = processor(np.ascontiguousarray(astronaut[cut:]))
    centre_x = (to_photo @ np.array([128.0, 128.0, 1.0]))[0]
    edge = int((face.matrix @ np.array([centre_x, 0.0, 1.0]))[1])  # the photo's top row, in crop rows
    assert 20 < edge < 80, edge
    outside = face.crop[: edge - 4].astype(np.float32)  # crop rows above the photo's top edge
    # repeated edge rows: neighbouring rows nearly equal (0.3 grey levels on the astronaut); mirrored: ~5
    assert np.abs(np.diff(outside, axis=0)).mean() > 1.5, "crop rows outside the photo repeat its edge row"


class _Recording:
    """A pipeline stand-in that records the options it is called with and renders with the real one."""

    def __init__(self, pipe):
        self._pipe, self.calls = pipe, []

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self._pipe(*args, **kwargs)


def test_space_removes_the_photo_expression_unless_told_to_keep_it(smile_model_dir, astronaut, tmp_path):
    for module in ("gradio", "gradio_client", "spaces"):
        pytest.importorskip(module)
    import soundfile as sf
    from gradio_client import Client, handle_file
    from PIL import Image
    from test_space import launched_space

    recording = _Recording(pipeline("emotional-talking-face", model=str(smile_model_dir)))
    Image.fromarray(astronaut).save(tmp_path / "face.png")
    sf.write(tmp_path / "speech.wav", synthetic_speech(0.5), 16000, subtype="PCM_16")
    with launched_space(recording, tmp_path, max_audio_seconds=3.0) as (url, _):
        client = Client(url, verbose=False)
        positional = [handle_file(str(tmp_path / "face.png")), handle_file(str(tmp_path / "speech.wav"))]
        positional += ["sad", 1.0, "", "natural", True, True, False, 0]  # the API's first ten positions
        client.predict(*positional, api_name="/generate")
        client.predict(*positional, None, True, api_name="/generate")
    assert [call["photo_expression"] for call in recording.calls] == ["replace", "keep"]
