"""EmoTalkProcessor (face settings + feature extractor, saved and loaded together), the shared face-mesh wrapper,
the geometry helpers and the narrowed MediaPipe error handling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from emotalk_common import geometry, topology
from emotalk_common.facemesh import FaceMesh, FaceMeshError
from test_modeling import save_tiny_composite
from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, pipeline

from modeling_emotalk import landmarks
from modeling_emotalk.errors import NoFaceError
from modeling_emotalk.face_processing import FaceProcessor
from modeling_emotalk.processing_emotalk import FACE_SETTINGS, EmoTalkProcessor

SETTINGS = {"crop_size": 128, "margin": 1.2, "min_face_size": 40, "max_image_size": 4096, "max_num_faces": 2}


# ------------------------------------------------------------------------------------------------- the processor
def test_saved_processor_round_trips_all_its_settings(tmp_path):
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=False)
    EmoTalkProcessor(extractor, **SETTINGS).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert {k: saved[k] for k in SETTINGS} == SETTINGS and saved["processor_class"] == "EmoTalkProcessor"
    loaded = EmoTalkProcessor.from_pretrained(tmp_path)
    assert loaded.face_settings() == SETTINGS
    assert loaded.face_processor.to_dict() == SETTINGS and loaded.face_processor.detector.max_num_faces == 2
    assert isinstance(loaded.feature_extractor, Wav2Vec2FeatureExtractor)
    assert loaded.feature_extractor.do_normalize is False
    assert loaded.to_dict() == EmoTalkProcessor(extractor, **SETTINGS).to_dict()
    # the file is still a plain feature-extractor config for transformers
    assert AutoFeatureExtractor.from_pretrained(tmp_path).sampling_rate == 16000
    assert EmoTalkProcessor.from_pretrained(tmp_path, margin=0.9).margin == 0.9  # explicit settings win


def test_checkpoints_without_face_settings_and_the_embedded_one_load():
    import emotalk_pipeline

    embedded = EmoTalkProcessor.from_pretrained(emotalk_pipeline.DEFAULT_CHECKPOINT)
    assert embedded.face_settings() == FACE_SETTINGS


def test_feature_extractor_only_folder_gets_the_defaults(tmp_path):
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(tmp_path)
    assert EmoTalkProcessor.from_pretrained(tmp_path).face_settings() == FACE_SETTINGS
    with pytest.raises(OSError, match=r"no preprocessor_config\.json"):
        EmoTalkProcessor.from_pretrained(tmp_path / "missing")
    with pytest.raises(TypeError, match="unexpected EmoTalkProcessor settings"):
        EmoTalkProcessor.from_pretrained(tmp_path, marign=1.2)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    path = save_tiny_composite(tmp_path_factory.mktemp("tiny-processor"), feature_extractor=False)
    EmoTalkProcessor(crop_size=64, margin=1.2, min_face_size=40).save_pretrained(path)
    return path


def test_pipeline_uses_the_saved_face_settings(tiny_folder, astronaut, tmp_path):
    pipe = pipeline("emotional-talking-face", model=str(tiny_folder))
    assert isinstance(pipe.processor, EmoTalkProcessor)
    assert pipe.face_processor.margin == 1.2 and pipe.face_processor.min_face_size == 40
    # margin 1.2 zooms out: the crop scale is 1/1.2 of the default margin's
    face = pipe.face_processor(astronaut)
    default = FaceProcessor(crop_size=64)(astronaut)
    assert face.scale == pytest.approx(default.scale / 1.2, rel=1e-6)
    # and the settings travel with a saved pipeline
    saved = pipe.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "preprocessor_config.json").read_text())["margin"] == 1.2


def test_pipeline_refuses_a_crop_size_the_model_was_not_built_for(tiny_folder, tmp_path):
    import shutil

    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_folder, folder)
    EmoTalkProcessor(crop_size=128).save_pretrained(folder)
    with pytest.raises(ValueError, match="crop_size=128, but the model was built for crop_size=64"):
        pipeline("emotional-talking-face", model=str(folder))


def test_processor_call_gives_the_face_and_the_audio_features(astronaut, speech):
    out = EmoTalkProcessor(crop_size=64)(astronaut, {"array": speech, "sampling_rate": 16000})
    assert out["face"].crop.shape == (64, 64, 3)
    assert out["input_values"].shape == (1, speech.size) and out["duration"] == pytest.approx(speech.size / 16000)
    with pytest.raises(ValueError, match="neither"):
        EmoTalkProcessor()()


# ----------------------------------------------------------------------------------- MediaPipe errors, narrowed
def test_programming_errors_propagate_instead_of_no_face(monkeypatch, astronaut):
    processor = FaceProcessor(crop_size=64)
    monkeypatch.setattr(FaceMesh, "faces", lambda self, rgb: [None])  # a bug: not (478, 3) arrays
    with pytest.raises(TypeError):
        processor.detect(astronaut)
    processor.close()


def test_mediapipe_failures_become_no_face_error(astronaut):
    class BrokenGraph:
        def process(self, rgb):
            raise RuntimeError("CalculatorGraph::Run() failed")

        def close(self):
            pass

    processor = FaceProcessor(crop_size=64)
    processor.detector._models()["mesh"]._graph = BrokenGraph()
    with pytest.raises(NoFaceError, match=r"face detection failed.*CalculatorGraph"):
        processor(astronaut)
    processor.close()


def test_tracker_fallback_only_swallows_input_errors(astronaut):
    from emotalk_training.tracking import FaceTracker

    class Detector:
        def __init__(self, error):
            self.error = error

        def detect(self, frame):
            raise self.error

    with FaceTracker(Detector(NoFaceError("MediaPipe failed"))) as tracker:
        assert tracker._detect(astronaut) is None
    with FaceTracker(Detector(AttributeError("a bug"))) as tracker, pytest.raises(AttributeError, match="a bug"):
        tracker._detect(astronaut)


# ------------------------------------------------------------------------------------------- the face-mesh wrapper
def test_face_mesh_wrapper_static_and_video(astronaut):
    with FaceMesh(static=True) as mesh:
        points = mesh.first(astronaut)
        assert points.shape == (478, 3) and points.dtype == np.float64
        nose = points[4, :2]
        assert 180 < nose[0] < 300 and 80 < nose[1] < 220  # pixels of the 512² photo
        blank = np.full((128, 128, 3), 127, np.uint8)
        assert mesh.first(blank) is None and mesh.faces(blank) == []
        assert np.isnan(mesh.landmarks(blank)).all()
        with pytest.raises(ValueError, match="RGB uint8"):
            mesh.faces(astronaut.astype(np.float32))
    with FaceMesh(static=False) as video:
        tracked = [video.first(astronaut) for _ in range(3)]
    np.testing.assert_allclose(tracked[0], points, atol=1.0)
    assert all(t is not None for t in tracked)


def test_the_three_users_share_one_wrapper(astronaut):
    from emotalk_evaluation.mesh import mesh_image

    with FaceMesh(static=True) as mesh:
        expected = mesh.landmarks(astronaut)
    np.testing.assert_array_equal(mesh_image(astronaut), expected)
    processor = FaceProcessor()
    np.testing.assert_array_equal(processor.detector.run_mesh(astronaut)[0].astype(np.float32), expected)
    processor.close()


def test_mediapipe_value_errors_are_face_mesh_errors():
    from emotalk_common.facemesh import run_solution

    class Graph:
        def process(self, rgb):
            raise ValueError("Input image must contain three channel rgb data.")

    with pytest.raises(FaceMeshError, match="three channel") as info:
        run_solution(Graph(), np.zeros((8, 8, 3), np.uint8))
    assert isinstance(info.value.__cause__, ValueError)


# ----------------------------------------------------------------------------------- geometry and topology
def test_geometry_helpers():
    rng = np.random.default_rng(0)
    angle, scale = 0.3, 1.7
    matrix = np.array(
        [[scale * np.cos(angle), -scale * np.sin(angle), 5.0], [scale * np.sin(angle), scale * np.cos(angle), -2.0]]
    )
    src = rng.uniform(0, 100, (10, 2))
    fitted = geometry.fit_similarity(src, geometry.apply_affine(matrix, src))
    np.testing.assert_allclose(fitted, matrix, atol=1e-9)
    assert geometry.affine_scale(matrix) == pytest.approx(scale)
    identity = geometry.compose_affine(matrix, geometry.invert_affine(matrix))
    np.testing.assert_allclose(identity, np.eye(3)[:2], atol=1e-12)
    image = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(geometry.warp_affine(image, np.eye(3)[:2], (30, 20)), image)
    np.testing.assert_array_equal(geometry.bounding_box(src), [*src.min(0), *src.max(0)])


def test_topology_is_shared():
    assert landmarks.MOUTH_CORNERS is topology.MOUTH_CORNERS and landmarks.NUM_LANDMARKS == 478
    from emotalk_evaluation import mesh

    assert mesh.LIPS_OUTER == (
        61,
        185,
        40,
        39,
        37,
        0,
        267,
        269,
        270,
        409,
        291,
        146,
        91,
        181,
        84,
        17,
        314,
        405,
        321,
        375,
    )
    assert mesh.EYE_OUTER_CORNERS == (33, 263) and mesh.NUM_POINTS == 478 and mesh.RIGID is landmarks.RIGID


def test_common_imports_neither_torch_nor_other_emotalk_packages():
    code = (
        "import sys, emotalk_common.facemesh, emotalk_common.geometry, emotalk_common.topology;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'modeling_emotalk', 'emotalk_pipeline', 'emotalk_evaluation', 'emotalk_training')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
