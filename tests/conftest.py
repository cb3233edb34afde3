"""Shared fixtures: generated media only (a public-domain photo from scikit-image, synthetic speech)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_MEDIA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "media").resolve()


def synthetic_speech(seconds: float = 2.0, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: voiced syllables (harmonics of a gliding f0, formant-shaped) with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllable_rate = 4.0
    envelope = np.clip(np.sin(2 * np.pi * syllable_rate * t / 2) ** 2 - 0.1, 0, None)
    signal = voiced * envelope + 0.02 * rng.standard_normal(t.shape) * envelope
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def espeak_speech(text: str, path: Path, sampling_rate: int = 16000) -> np.ndarray | None:
    """Speech from Debian's espeak-ng when it is installed (None otherwise)."""
    if shutil.which("espeak-ng") is None:
        return None
    import librosa

    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    audio, _ = librosa.load(path, sr=sampling_rate, mono=True)
    return audio.astype(np.float32)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """512×512 RGB uint8 public-domain portrait (scikit-image)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """About 2 s of speech-like 16 kHz mono float32 audio."""
    return synthetic_speech(2.0)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory, speech) -> Path:
    """``speech`` written as a 16-bit WAV file."""
    import soundfile as sf

    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    sf.write(path, speech, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """``../shared/media`` when present; the test is skipped otherwise."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip("../shared/media is not present")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def face_crop(astronaut) -> tuple[np.ndarray, np.ndarray]:
    """A 256² crop of the astronaut's face and its MediaPipe landmarks in normalized crop coordinates."""
    import mediapipe as mp
    from PIL import Image

    # the face fills the crop about as much as in the pipeline's aligned crops
    crop = np.array(Image.fromarray(astronaut[30:222, 130:322]).resize((256, 256), Image.Resampling.LANCZOS))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        result = mesh.process(crop)
    points = np.array([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
    return crop, points * 2 - np.array([1, 1, 0], dtype=np.float32)
