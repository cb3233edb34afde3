"""Training: targets, losses, datasets, and the two `accelerate launch` scripts on tiny models and tiny data.

The smoke tests run the real scripts through `accelerate launch` (a config from `write_basic_config`) for a few
steps on tiny configs and a generated 64² dataset, check that the outputs load with `from_pretrained` and in the
pipeline, run two CPU processes, and check that a run killed after a checkpoint and resumed with
`--resume_from_checkpoint latest` ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_speech
from emotalk_training.data import GeneratorPairDataset, LandmarkWindowDataset
from emotalk_training.geometry import landmark_targets, matrix_to_euler
from emotalk_training.losses import (
    aperture_l1,
    bilabial_closure_l1,
    emotion_positives,
    frame_phone_mask,
    info_nce,
    mouth_mask,
    ms_ssim,
    phone_cross_entropy,
    velocity_l1,
    weighted_landmark_l1,
)
from emotalk_training.prepare import PrepareSettings, _new_index, write_shard
from emotalk_training.utils import list_checkpoints, resolve_checkpoint
from PIL import Image
from safetensors.torch import load_file
from test_modeling import tiny_config, tiny_generator_config, tiny_landmark_config
from transformers import Wav2Vec2FeatureExtractor

from modeling_emotalk import EmoTalkGenerator, EmoTalkLandmarkModel, EmoTalkModel
from modeling_emotalk import landmarks as L

REPO = Path(__file__).resolve().parents[1]
FPS = 25.0
SIZE = 64


# ------------------------------------------------------------------------------------------------ fixtures
def write_synthetic_dataset(root: Path, face_crop, clips: list[dict], size: int = SIZE) -> Path:
    """A prepared-dataset folder (the `emotalk prepare` format) from one face crop with synthetic motion.

    Each clip: the crop shifted a little per frame, landmarks with an opening/closing mouth, a slow head turn
    and a blink, and synthetic speech.
    """
    crop, points = face_crop
    index = _new_index(PrepareSettings(crop_size=size))
    base = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
    for number, spec in enumerate(clips):
        frames = spec["frames"]
        t = np.arange(frames) / FPS
        landmarks = np.repeat(points[None], frames, axis=0).astype(np.float32)
        opening = 0.04 * (1 + np.sin(2 * np.pi * 3 * t + number))  # mouth at ~3 Hz
        landmarks[:, list(L.LOWER_LIP), 1] += opening[:, None]
        landmarks[:, :, 0] += 0.02 * np.sin(2 * np.pi * 0.5 * t)[:, None]  # head sway
        upper = list(L.RIGHT_EYE_UPPER + L.LEFT_EYE_UPPER)
        lower = list(L.RIGHT_EYE_LOWER + L.LEFT_EYE_LOWER)
        for blink in np.flatnonzero((t > 0.4) & (t < 0.5)):
            landmarks[blink, upper] = landmarks[blink, lower]
        shifts = np.round(np.sin(2 * np.pi * 0.5 * t) * 2).astype(int)
        crops = np.stack([np.roll(base, s, axis=1) for s in shifts]).astype(np.uint8)
        audio = synthetic_speech(frames / FPS, seed=number)
        valid = np.ones(frames, dtype=bool)
        valid[frames // 2] = False  # one interpolated frame
        clip = {
            "id": f"clip{number}",
            "shard": f"shards/clip{number}.safetensors",
            "video": f"video{number}.mp4",
            "split": spec.get("split", "train"),
            "start_frame": 0,
            "num_frames": frames,
            "start_seconds": 0.0,
            "num_samples": len(audio),
            "has_audio": True,
            "audio_mean": float(audio.mean()),
            "audio_std": float(audio.std()),
            "valid_fraction": float(valid.mean()),
            "speaker": spec.get("speaker", "A"),
            "emotion": spec.get("emotion", "neutral"),
            "emotion_known": spec.get("emotion_known", False),
            "intensity": spec.get("intensity", 1.0),
            "label_source": "custom",
        }
        arrays = {
            "landmarks": landmarks,
            "crops": crops,
            "audio": audio,
            "frame_valid": valid,
            "crop_matrices": np.tile(np.eye(2, 3, dtype=np.float32), (frames, 1, 1)),
            "image_landmarks": landmarks.copy(),
        }
        write_shard(root / clip["shard"], arrays, clip, "safetensors")
        index["clips"].append(clip)
    (root / "index.json").write_text(json.dumps(index))
    # phone segments for the first clip only (the auxiliary phone target; the others have none)
    (root / "clip_phones.json").write_text(
        json.dumps({"clip0": [["SIL", 0.0, 0.3], ["AA", 0.3, 0.9], ["M", 0.9, 2.0]]})
    )
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, face_crop) -> Path:
    clips = [
        {"frames": 40, "emotion": "happy", "emotion_known": True, "intensity": 2 / 3, "speaker": "A"},
        {"frames": 30, "speaker": "B"},
        {"frames": 20, "split": "test", "speaker": "A"},
    ]
    return write_synthetic_dataset(tmp_path_factory.mktemp("dataset"), face_crop, clips)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny stage folders and a tiny composite (with its feature extractor)."""
    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    EmoTalkLandmarkModel(tiny_landmark_config()).save_pretrained(root / "landmark")
    EmoTalkGenerator(tiny_generator_config()).save_pretrained(root / "generator")
    EmoTalkModel(tiny_config()).save_pretrained(root / "composite")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=True).save_pretrained(
        root / "composite"
    )
    return {"landmark": root / "landmark", "generator": root / "generator", "composite": root / "composite"}


@pytest.fixture(scope="module")
def accelerate_config(tmp_path_factory) -> Path:
    from accelerate.utils import write_basic_config

    path = tmp_path_factory.mktemp("accelerate") / "default_config.yaml"
    write_basic_config(mixed_precision="no", save_location=str(path))
    return path


def launch_command(config: Path, script: str, *arguments: str, processes: int | None = None) -> list[str]:
    command = ["accelerate", "launch", "--config_file", str(config)]
    if processes is not None and processes > 1:
        command += ["--multi_gpu", "--num_processes", str(processes)]
    return [*command, str(REPO / "training" / script), *arguments]


def launch_env(processes: int | None = None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "1")
    if processes is not None and processes > 1:
        env["ACCELERATE_USE_CPU"] = "1"  # several CPU processes (gloo): `--multi_gpu` + ACCELERATE_USE_CPU
    return env


def run_launch(command: list[str], processes: int | None = None, timeout: int = 300) -> str:
    result = subprocess.run(command, env=launch_env(processes), capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


LANDMARK_ARGS = ("--train_batch_size", "2", "--window_seconds", "0.6", "--seed", "0")
GENERATOR_ARGS = ("--train_batch_size", "1", "--num_references", "2", "--num_frames", "2", "--seed", "0")


# ------------------------------------------------------------------------------------------------ geometry
def test_matrix_to_euler_inverts_euler_to_matrix():
    torch.manual_seed(0)
    yaw, pitch, roll = (torch.rand(20) - 0.5) * 2.0, (torch.rand(20) - 0.5) * 2.0, (torch.rand(20) - 0.5) * 2.0
    recovered = matrix_to_euler(L.euler_to_matrix(yaw, pitch, roll))
    for a, b in zip(recovered, (yaw, pitch, roll), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_targets_of_the_reference_are_zero_and_invert_relocation(face_crop):
    points = torch.from_numpy(face_crop[1])[None]
    canonical, frame = L.canonicalize(points)
    expression = torch.zeros(1, 1, 478, 3)
    expression[:, :, list(L.LOWER_LIP), 1] = 0.1  # the mouth opens
    pose = torch.tensor([[[0.2, -0.1, 0.15, 0.05, -0.03, math.log(1.1)]]])
    zeros = torch.zeros(1, 1, 2)
    moved = L.relocate(canonical, expression, pose, zeros, zeros, frame)
    landmarks = torch.cat([points[:, None], moved], dim=1)  # (1, 2, 478, 3): the reference, then the moved face
    targets = landmark_targets(landmarks, points)
    assert targets.head_pose[0, 0].abs().max() < 1e-5
    assert targets.expression[0, 0].abs().max() < 1e-5
    assert targets.blink[0, 0].abs().max() < 1e-5 and targets.gaze[0, 0].abs().max() < 1e-4
    torch.testing.assert_close(targets.head_pose[0, 1], pose[0, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(targets.expression[0, 1], expression[0, 0], atol=1e-4, rtol=0)
    relocated = L.relocate(
        targets.reference_canonical,
        targets.expression,
        targets.head_pose,
        torch.zeros_like(targets.gaze),
        torch.zeros_like(targets.blink),
        targets.reference_frame,
    )
    torch.testing.assert_close(relocated[..., :2], landmarks[..., :2], atol=1e-4, rtol=0)


def test_blink_and_gaze_targets_follow_the_eyes(face_crop):
    points = torch.from_numpy(face_crop[1])
    canonical, frame = L.canonicalize(points[None])
    closed = L.apply_blink(canonical, torch.tensor([[1.0, 1.0]]))
    looking = L.apply_gaze(canonical, torch.tensor([[0.2, -0.1]]))
    frames = L.from_canonical(torch.cat([closed, looking]), *(x.expand(2, *x.shape[1:]) for x in frame))
    targets = landmark_targets(frames[None], points[None])
    torch.testing.assert_close(targets.blink[0, 0], torch.ones(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(targets.gaze[0, 1], torch.tensor([0.2, -0.1]), atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------------------------ losses
def test_ms_ssim_and_mouth_mask(face_crop):
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(ms_ssim(image, image), torch.ones(2), atol=1e-4, rtol=0)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    assert (ms_ssim(image, noisy) < 0.95).all()
    points = torch.from_numpy(face_crop[1])[None]
    mask = mouth_mask(points, 64)
    mouth = ((points[0, list(L.LIPS), :2].mean(0) + 1) * 32).long()
    assert mask.shape == (1, 1, 64, 64)
    assert mask[0, 0, mouth[1], mouth[0]] > 0.9
    assert mask[0, 0, 5, 5] < 0.01 and 0.01 < mask.mean() < 0.2


def test_landmark_losses_respect_masks_and_info_nce_prefers_aligned_pairs():
    torch.manual_seed(0)
    target = torch.randn(2, 5, 478, 3)
    prediction = target.clone()
    prediction[:, 2] += 1.0  # only frame 2 is wrong
    mask = torch.ones(2, 5, dtype=torch.bool)
    weights = torch.ones(478)
    assert weighted_landmark_l1(prediction, target, mask, weights) > 0
    mask[:, 2] = False
    assert weighted_landmark_l1(prediction, target, mask, weights) == 0
    assert velocity_l1(prediction, target, mask) == 0  # both pairs touching frame 2 are masked
    a = torch.randn(6, 16)
    aligned = info_nce(a, a + 0.01 * torch.randn(6, 16))
    shuffled = info_nce(a, torch.randn(6, 16))
    assert aligned < shuffled
    labels = torch.tensor([1, 1, 2, 3, 0, 0])
    positives = emotion_positives(labels, torch.tensor([True, True, True, False, True, True]))
    assert positives[0, 1] and positives[4, 5] and not positives[3, 3] and not positives[0, 2]


def test_discriminators_give_finite_gradients_under_bf16_autocast():
    from emotalk_training.discriminators import PatchDiscriminator, SpatioTemporalDiscriminator
    from emotalk_training.losses import hinge_discriminator_loss

    torch.manual_seed(0)
    for critic, inputs in (
        (PatchDiscriminator(3, 16, 3), torch.rand(4, 3, 32, 32)),
        (SpatioTemporalDiscriminator(3, 8, 3), torch.rand(2, 3, 2, 32, 32)),
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, features = critic(inputs)
        assert logits[0].dtype == torch.float32 and len(features) == 3
        half = inputs.shape[0] // 2
        hinge_discriminator_loss([x[:half] for x in logits], [x[half:] for x in logits]).backward()
        assert all(torch.isfinite(p.grad).all() for p in critic.parameters())


# ------------------------------------------------------------------------------------------------ datasets
def test_landmark_windows_are_deterministic_and_shaped(dataset):
    data = LandmarkWindowDataset(dataset, window_frames=15, seed=3)
    assert {c["id"] for c in data.clips} == {"clip0", "clip1"}  # the test split is not trained on
    item = data[4]
    assert item["input_values"].shape == (round(15 / FPS * 16000),)
    assert item["landmarks"].shape == (15, 478, 3) and item["reference"].shape == (478, 3)
    assert item["frame_mask"].dtype == torch.bool
    assert abs(float(item["input_values"].std()) - 1.0) < 0.5  # normalized with the clip's statistics
    again = LandmarkWindowDataset(dataset, window_frames=15, seed=3)[4]
    for key in item:
        torch.testing.assert_close(item[key], again[key])
    data.set_epoch(1)
    assert not torch.equal(data[4]["landmarks"], item["landmarks"]) or not torch.equal(
        data[4]["reference"], item["reference"]
    )


def test_generator_pairs_have_k_references_and_w_frames(dataset):
    data = GeneratorPairDataset(dataset, image_size=32, num_references=3, num_frames=2, seed=0)
    item = data[0]
    assert item["references"].shape == (3, 3, 32, 32) and item["reference_landmarks"].shape == (3, 478, 3)
    assert item["frames"].shape == (2, 3, 32, 32) and item["landmarks"].shape == (2, 478, 3)
    assert float(item["frames"].min()) >= 0.0 and float(item["frames"].max()) <= 1.0
    with pytest.raises(ValueError, match="no clip"):
        GeneratorPairDataset(dataset, image_size=32, split="validation")


def test_checkpoint_resolution_ignores_partial_folders(tmp_path):
    for name in ("checkpoint-2", "checkpoint-10", ".checkpoint-12.partial", "checkpoint-x"):
        (tmp_path / name).mkdir()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 10]
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-10"
    assert resolve_checkpoint(tmp_path / "missing", "latest") is None
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(tmp_path, "checkpoint-3")


def test_the_training_package_holds_the_fine_tuning_product_only():
    """The default-weights recipe lives in recipes/default_model: nothing in training/ imports it, nothing there
    or in the recipe edits sys.path, and the installed package has no teacher."""
    import ast
    import importlib.util

    assert importlib.util.find_spec("emotalk_training.teacher") is None
    assert not (REPO / "training" / "resources").exists()
    for folder in ("training", "recipes/default_model"):
        for path in sorted((REPO / folder).glob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
            names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
            if folder == "training":
                assert not [n for n in names if "teacher" in n or "corpus" in n or n.startswith("recipes")], path
            attributes = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "path"]
            assert not [n for n in attributes if isinstance(n.value, ast.Name) and n.value.id == "sys"], path
    code = "import sys, emotalk_training.data, emotalk_training.train_landmarks; print(sorted(m for m in sys.modules if 'teacher' in m or m.startswith('recipes')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


def _fake_checkpoint(root: Path, step: int) -> Path:
    """A checkpoint folder as ``save_checkpoint`` leaves it: safetensors, a torch archive, a pickle, the manifest."""
    from emotalk_training.utils import write_checkpoint_manifest
    from safetensors.torch import save_file

    folder = root / f"checkpoint-{step}"
    (folder / "generator").mkdir(parents=True)
    save_file({"weight": torch.arange(64.0).reshape(8, 8)}, str(folder / "model.safetensors"))
    save_file({"weight": torch.ones(4)}, str(folder / "generator" / "model.safetensors"))
    torch.save({"step": step}, folder / "optimizer.bin")
    (folder / "random_states_0.pkl").write_bytes(b"\x80\x04K\x01.")
    write_checkpoint_manifest(folder)
    return folder


def _truncate(path: Path, keep: float = 0.5) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * keep))


@pytest.mark.parametrize(
    "broken", ["model.safetensors", "generator/model.safetensors", "optimizer.bin", "random_states_0.pkl"]
)
def test_latest_skips_a_half_written_checkpoint_with_a_warning(tmp_path, caplog, broken):
    from emotalk_training.utils import IncompleteCheckpointError, checkpoint_problem

    older, newest = _fake_checkpoint(tmp_path, 2), _fake_checkpoint(tmp_path, 4)
    assert checkpoint_problem(older) is None and checkpoint_problem(newest) is None
    assert resolve_checkpoint(tmp_path, "latest") == newest
    _truncate(newest / broken)
    assert broken in checkpoint_problem(newest)
    with caplog.at_level("WARNING", logger="emotalk_training.utils"):
        assert resolve_checkpoint(tmp_path, "latest") == older
    assert "checkpoint-4 is incomplete" in caplog.text and broken in caplog.text
    with pytest.raises(IncompleteCheckpointError, match="checkpoint-4 is incomplete"):
        resolve_checkpoint(tmp_path, "checkpoint-4")  # named explicitly: no silent fallback
    _truncate(older / broken)
    with pytest.raises(IncompleteCheckpointError, match="no complete checkpoint") as error:
        resolve_checkpoint(tmp_path, "latest")
    assert "checkpoint-2" in str(error.value) and "checkpoint-4" in str(error.value)


def test_a_checkpoint_without_manifest_is_checked_by_structure(tmp_path):
    from emotalk_training.utils import CHECKPOINT_MANIFEST, checkpoint_problem

    folder = _fake_checkpoint(tmp_path, 2)
    (folder / CHECKPOINT_MANIFEST).unlink()  # written by an older version
    assert checkpoint_problem(folder) is None
    _truncate(folder / "model.safetensors", 0.9)
    assert "model.safetensors" in checkpoint_problem(folder)


# ------------------------------------------------------------------------------------------------ accelerate launch
def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_aperture_loss_prefers_a_full_closure_a_frame_late_to_a_smeared_half_closure():
    target = torch.ones(1, 20)
    target[0, 10] = 0.0  # a one-frame bilabial closure
    late, half = torch.ones(1, 20), torch.ones(1, 20)
    late[0, 11] = 0.0
    half[0, 9:12] = 0.5
    mask = torch.ones(1, 20, dtype=torch.bool)
    assert velocity_l1(half[..., None], target[..., None], mask) < velocity_l1(
        late[..., None], target[..., None], mask
    )
    assert aperture_l1(late, target, mask) < aperture_l1(half, target, mask)  # plain L1 alone prefers `half`
    assert aperture_l1(target, target, mask) == 0
    mask[0, 12:] = False  # masked frames neither count nor enter a window
    changed = target.clone()
    changed[0, 15:] = -5.0
    assert aperture_l1(changed, target, mask) == 0


def test_bilabial_loss_asks_for_the_full_closure_at_p_b_m_frames():
    from emotalk_training.data import phone_track
    from emotalk_training.phones import PHONE_IDS

    module = load_script("train_landmarks.py")
    assert module.parse_args(["--dataset_dir", "data"]).lambda_bilabial == 0.0  # off by default: today's loss
    fps, frames = 25.0, 50
    segments = [["SIL", 0.0, 0.4], ["M", 0.4, 0.48], ["AA", 0.48, 2.0]]  # /m/: the centres of frames 10 and 11
    phone_ids = torch.from_numpy(phone_track(segments, 0.0, 200))[None]
    bilabial = frame_phone_mask(phone_ids, module.BILABIAL_IDS, frames, fps)
    assert bilabial[0].nonzero().flatten().tolist() == [10, 11]
    assert module.BILABIAL_IDS.tolist() == [PHONE_IDS["B"], PHONE_IDS["P"], PHONE_IDS["M"]]

    target = torch.ones(1, frames)
    target[0, 10:12] = 0.0  # the teacher closes the lips during /m/
    closed, late, half = target.clone(), torch.ones(1, frames), torch.ones(1, frames)
    late[0, 11:13] = 0.0  # the full closure one frame late: within the evaluation's ± 1 frame tolerance
    half[0, 10:12] = 0.5
    mask = torch.ones(1, frames, dtype=torch.bool)
    assert bilabial_closure_l1(closed, target, bilabial, mask) == 0
    assert bilabial_closure_l1(late, target, bilabial, mask) == 0
    assert bilabial_closure_l1(half, target, bilabial, mask) == pytest.approx(0.5)
    # the plain aperture loss dilutes the half closure over the window; the bilabial term does not
    assert aperture_l1(half, target, mask) < 0.1 < bilabial_closure_l1(half, target, bilabial, mask)
    assert bilabial_closure_l1(half, target, torch.zeros_like(bilabial), mask) == 0  # no bilabial, no loss
    mask[0, 10:12] = False  # masked frames neither count nor enter a window
    assert bilabial_closure_l1(half, target, bilabial, mask) == 0


def test_training_heads_can_start_from_a_previous_run(tmp_path):
    from emotalk_training.emotion_encoder import LandmarkEmotionEncoder
    from safetensors.torch import save_file

    module = load_script("train_landmarks.py")
    assert module.parse_args(["--dataset_dir", "data"]).init_training_modules is None  # default: fresh heads
    trained = (LandmarkEmotionEncoder(16, 8, hidden_size=32), torch.nn.Linear(24, 40))
    folder = tmp_path / "run" / "training_modules"
    folder.mkdir(parents=True)
    for name, head in zip(("landmark_emotion_encoder", "phone_classifier"), trained, strict=True):
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / f"{name}.safetensors"))
    fresh = (LandmarkEmotionEncoder(16, 8, hidden_size=32), torch.nn.Linear(24, 40))
    module.load_training_modules(str(tmp_path / "run"), *fresh)
    for old, new in zip(trained, fresh, strict=True):
        for (name, a), b in zip(old.state_dict().items(), new.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_phone_targets_follow_the_segments_and_the_loss_prefers_the_right_phones(dataset):
    from emotalk_training.data import IGNORE_INDEX
    from emotalk_training.phones import PHONES

    windows = LandmarkWindowDataset(dataset, window_frames=25, seed=0, samples_per_epoch=2)
    clips = {c["id"]: c for c in windows.clips}
    ids = windows.window(clips["clip0"], 5, 0)["phone_ids"]  # starts at 0.2 s
    assert ids.shape == (100,)
    assert [PHONES[i] for i in ids[[0, 9, 10, 69, 70, 99]]] == ["SIL", "SIL", "AA", "AA", "M", "M"]
    assert (windows.window(clips["clip1"], 0, 0)["phone_ids"] == IGNORE_INDEX).all()  # no segments: unknown

    batch = ids[None]
    times = (torch.arange(49) * 320 + 200) / 16000  # the audio-feature times of a 1 s window
    right = torch.nn.functional.one_hot(batch[0, (times * 100).long()], len(PHONES)).float()[None] * 10
    mask = torch.ones(1, 49, dtype=torch.bool)
    good = phone_cross_entropy(right, batch, mask)
    assert good < 0.01 and phone_cross_entropy(right.roll(10, dims=1), batch, mask) > 1.0
    assert phone_cross_entropy(right, torch.full_like(batch, IGNORE_INDEX), mask) == 0


def test_train_landmarks_smoke(tmp_path, dataset, tiny_models, accelerate_config):
    output = tmp_path / "landmarks"
    composite = tmp_path / "composite"
    log = run_launch(
        launch_command(
            accelerate_config,
            "train_landmarks.py",
            "--dataset_dir", str(dataset),
            "--output_dir", str(output),
            "--base_model", str(tiny_models["composite"]),
            "--max_train_steps", "3",
            "--checkpointing_steps", "2",
            "--validation_steps", "2",
            "--validation_seconds", "0.6",
            "--composite_output_dir", str(composite),
            "--push_to_hub",
            *LANDMARK_ARGS,
        )
    )  # fmt: skip
    assert "HF_HUB_OFFLINE=1: --push_to_hub does nothing (offline)" in log
    trained = EmoTalkLandmarkModel.from_pretrained(output)
    base = EmoTalkModel.from_pretrained(tiny_models["composite"]).landmark_model
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed, "training did not change the weights"
    assert (output / "checkpoint-2" / "landmark_model" / "model.safetensors").is_file()
    assert (output / "training_modules" / "landmark_emotion_encoder.safetensors").is_file()
    assert (output / "training_modules" / "phone_classifier.safetensors").is_file()
    assert list((output / "logs").rglob("events.out.tfevents*"))
    assert sorted(p.name for p in (output / "validation").glob("*.png"))  # landmark plots
    loaded = EmoTalkModel.from_pretrained(composite)
    torch.testing.assert_close(loaded.landmark_model.state_dict(), trained.state_dict())
    assert (composite / "preprocessor_config.json").is_file()


def test_train_generator_smoke_and_the_pipeline_loads_the_result(
    tmp_path, dataset, tiny_models, accelerate_config, astronaut
):
    output = tmp_path / "generator"
    composite = tmp_path / "composite"
    run_launch(
        launch_command(
            accelerate_config,
            "train_generator.py",
            "--dataset_dir", str(dataset),
            "--output_dir", str(output),
            "--base_model", str(tiny_models["generator"]),
            "--composite_template", str(tiny_models["composite"]),
            "--composite_output_dir", str(composite),
            "--max_train_steps", "2",
            "--checkpointing_steps", "2",
            "--validation_steps", "2",
            "--validation_frames", "4",
            *GENERATOR_ARGS,
        )
    )  # fmt: skip
    trained = EmoTalkGenerator.from_pretrained(output)
    zero = trained.to_output.weight
    assert zero.abs().sum() > 0, "the zero-initialized output layer did not train"
    checkpoint = output / "checkpoint-2"
    assert (checkpoint / "generator" / "model.safetensors").is_file()
    assert len(list(checkpoint.glob("model*.safetensors"))) == 2  # the two discriminators
    assert (output / "validation" / "step-000002.mp4").is_file()

    import emotalk_pipeline  # noqa: F401
    from transformers import pipeline

    pipe = pipeline("emotional-talking-face", model=str(composite))
    torch.testing.assert_close(pipe.model.generator.state_dict(), trained.state_dict())
    video = pipe(astronaut, {"array": synthetic_speech(0.6), "sampling_rate": 16000}, seed=0, progress=False)
    assert video.frames.shape[0] == 15


def test_two_cpu_processes(tmp_path, dataset, tiny_models, accelerate_config):
    output = tmp_path / "ddp"
    log = run_launch(
        launch_command(
            accelerate_config,
            "train_generator.py",
            "--dataset_dir", str(dataset),
            "--output_dir", str(output),
            "--base_model", str(tiny_models["generator"]),
            "--max_train_steps", "2",
            "--checkpointing_steps", "2",
            "--validation_steps", "0",
            *GENERATOR_ARGS,
            processes=2,
        ),
        processes=2,
    )  # fmt: skip
    assert "MULTI_CPU" in log and "Num processes: 2" in log
    assert (output / "checkpoint-2" / "random_states_1.pkl").is_file()
    EmoTalkGenerator.from_pretrained(output)


def _run_until_checkpoint(command: list[str], output: Path, timeout: float = 240) -> int:
    """Start a run and SIGKILL its whole process group as soon as the first checkpoint is complete."""
    process = subprocess.Popen(
        command, env=launch_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        for line in process.stdout:
            if "Saved state to" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    checkpoints = list_checkpoints(output)
    assert checkpoints, "the run was killed before its first checkpoint"
    return checkpoints[-1][0]


@pytest.mark.parametrize("script", ["train_generator.py", "train_landmarks.py"])
def test_resume_after_a_kill_ends_with_the_weights_of_an_uninterrupted_run(
    tmp_path, dataset, tiny_models, accelerate_config, script
):
    stage = "generator" if script == "train_generator.py" else "landmark"
    extra = GENERATOR_ARGS if stage == "generator" else LANDMARK_ARGS

    def command(output: Path, *more: str) -> list[str]:
        return launch_command(
            accelerate_config,
            script,
            "--dataset_dir", str(dataset),
            "--output_dir", str(output),
            "--base_model", str(tiny_models[stage]),
            "--max_train_steps", "4",
            "--checkpointing_steps", "2",
            "--validation_steps", "0",
            "--report_to", "none",
            *extra,
            *more,
        )  # fmt: skip

    reference, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    run_launch(command(reference))
    step = _run_until_checkpoint(command(interrupted), interrupted)
    assert not (interrupted / "model.safetensors").exists() or step < 4
    log = run_launch(command(interrupted, "--resume_from_checkpoint", "latest"))
    assert f"Resuming from checkpoint checkpoint-{step}" in log
    expected, actual = _tensors(reference / "model.safetensors"), _tensors(interrupted / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)
    # the training-only modules (discriminators / emotion encoder) and optimizers resumed too
    for extra_state in sorted((reference / "checkpoint-4").glob("model*.safetensors")):
        a, b = _tensors(extra_state), _tensors(interrupted / "checkpoint-4" / extra_state.name)
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=f"{extra_state.name}:{name}")


def test_resume_falls_back_to_the_previous_checkpoint_when_the_newest_is_truncated(
    tmp_path, dataset, tiny_models, accelerate_config
):
    output = tmp_path / "run"
    command = launch_command(
        accelerate_config,
        "train_landmarks.py",
        "--dataset_dir", str(dataset),
        "--output_dir", str(output),
        "--base_model", str(tiny_models["landmark"]),
        "--max_train_steps", "4",
        "--checkpointing_steps", "2",
        "--validation_steps", "0",
        "--report_to", "none",
        *LANDMARK_ARGS,
    )  # fmt: skip
    run_launch(command)
    assert [step for step, _ in list_checkpoints(output)] == [2, 4]
    expected = _tensors(output / "model.safetensors")
    _truncate(output / "checkpoint-4" / "landmark_model" / "model.safetensors")  # the stage's weights, half written
    log = run_launch([*command, "--resume_from_checkpoint", "latest"])
    assert "checkpoint checkpoint-4 is incomplete (landmark_model/model.safetensors" in log
    assert "Resuming from checkpoint checkpoint-2" in log
    actual = _tensors(output / "model.safetensors")
    for name in expected:  # steps 3-4 trained again from checkpoint-2: the weights of the first run
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)
    assert resolve_checkpoint(output, "latest") == output / "checkpoint-4"  # rewritten complete


def load_script(name: str):
    """Import a training script as a module (its ``parse_args`` / ``main``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / "training" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", ["train_landmarks.py", "train_generator.py"])
def test_scripts_refuse_bad_options(script, capsys):
    module = load_script(script)
    args = module.parse_args(["--dataset_dir", "data"])
    assert args.output_dir and args.resume_from_checkpoint is None
    with pytest.raises(SystemExit) as error:
        module.parse_args(["--dataset_dir", "data", "--train_batch_size", "0"])
    assert error.value.code == 2
    assert "--train_batch_size must be at least 1" in capsys.readouterr().err
