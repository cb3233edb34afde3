"""The Gradio Space (``space/app.py``): launched in-process, called through ``gradio_client``, seen by a browser.

The app is built around the default pipeline with small limits and launched on a free local port; the
browser test needs Debian's ``chromium`` (installed by ``.ci/run``) and is skipped without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_speech

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
pytest.importorskip("spaces")

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
MAX_AUDIO_SECONDS = 3.0
SPEECH_SECONDS = 1.2


def _load_app():
    """``space/app.py`` as a module (the Space is a script folder, not an installed package)."""
    spec = importlib.util.spec_from_file_location("emotalk_space_app", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launched_space(pipe, cache: Path, max_audio_seconds: float = MAX_AUDIO_SECONDS):
    """The Space around ``pipe``, launched in-process on a free local port: ``(url, app module)``."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        env.setenv("GRADIO_EXAMPLES_CACHE", str(cache / "cached_examples"))
        env.setenv("GRADIO_TEMP_DIR", str(cache / "gradio"))
        app = _load_app()
        config = app.SpaceConfig(max_audio_seconds=max_audio_seconds, cache_dir=cache)
        demo = app.build_demo(pipe, config)
        _, url, _ = demo.launch(
            prevent_thread_lock=True,
            server_name="127.0.0.1",
            server_port=_free_port(),
            quiet=True,
            **app.launch_options(config),
        )
        try:
            yield url, app
        finally:
            demo.close()


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The launched app: ``(url, module)``; closed after the module's tests."""
    import emotalk_pipeline
    from transformers import pipeline

    with launched_space(pipeline(emotalk_pipeline.TASK), tmp_path_factory.mktemp("space")) as launched:
        yield launched


@pytest.fixture(scope="module")
def client(space):
    from gradio_client import Client

    return Client(space[0], verbose=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut):
    """Files to upload: a face photo, a photo without a face, speech (short and too long) and silence."""
    import soundfile as sf
    from PIL import Image

    folder = tmp_path_factory.mktemp("upload")
    Image.fromarray(astronaut).save(folder / "face.png")
    rng = np.random.default_rng(0)
    texture = rng.integers(90, 160, size=(256, 256, 3), dtype=np.uint8)  # noise: no face anywhere
    Image.fromarray(texture).save(folder / "no_face.png")
    sf.write(folder / "speech.wav", synthetic_speech(SPEECH_SECONDS), 16000, subtype="PCM_16")
    sf.write(folder / "long.wav", synthetic_speech(MAX_AUDIO_SECONDS + 1.0), 16000, subtype="PCM_16")
    sf.write(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    return folder


def _generate(client, image, audio, **options):
    from gradio_client import handle_file

    arguments = {
        "emotion": "happy",
        "intensity": 0.8,
        "emotion_schedule": "",
        "head_motion": "natural",
        "blink": True,
        "paste_back": True,
        "landmark_preview": False,
        "seed": 0,
    }
    arguments.update(options)
    return client.predict(
        handle_file(str(image)) if image is not None else None,
        handle_file(str(audio)) if audio is not None else None,
        api_name="/generate",
        **arguments,
    )


def test_generate_endpoint_returns_an_mp4_with_sound(client, media):
    import av
    from PIL import Image

    video_path, preview_path, details = _generate(
        client, media / "face.png", media / "speech.wav", emotion="happy", landmark_preview=True
    )
    assert Path(video_path).suffix == ".mp4"
    with av.open(video_path) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video))
        assert frames == round(SPEECH_SECONDS * 25)
        assert (video.width, video.height) == (512, 512)  # pasted back into the 512² photo
        assert float(video.duration * video.time_base) == pytest.approx(SPEECH_SECONDS, abs=0.05)
        assert float(audio.duration * audio.time_base) == pytest.approx(SPEECH_SECONDS, abs=0.1)
    assert "happy" in details and "seed **0**" in details
    preview = np.asarray(Image.open(preview_path))
    assert preview.ndim == 3 and preview.std() > 5  # drawn landmarks, not an empty canvas


@pytest.mark.parametrize(
    ("image", "audio", "options", "expected"),
    [
        ("no_face.png", "speech.wav", {}, "no face found"),
        ("face.png", "silent.wav", {}, "is silent"),
        ("face.png", "long.wav", {}, f"accepts up to {MAX_AUDIO_SECONDS:g} s"),
        ("face.png", "speech.wav", {"emotion_schedule": "0:neutral, 1:furious"}, "unknown emotion 'furious'"),
        (None, "speech.wav", {}, "add a portrait"),
        ("face.png", None, {}, "add speech"),
    ],
    ids=["no-face", "silent", "too-long", "bad-schedule", "no-portrait", "no-speech"],
)
def test_bad_input_gets_a_readable_error(client, media, image, audio, options, expected):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        _generate(client, media / image if image else None, media / audio if audio else None, **options)
    message = str(info.value)
    assert expected in message.lower()
    assert "Traceback" not in message and "/tmp/" not in message  # a sentence, not a stack trace or a temp path


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_browser_renders_the_page(space, tmp_path):
    from PIL import Image

    url = space[0]
    command = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1000",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    dom = re.sub(r"<!--.*?-->", "", dom, flags=re.DOTALL)  # Svelte's empty comment markers
    for element in ("portrait", "speech", "emotion", "generate-button", "result"):
        assert f'id="{element}"' in dom, f"#{element} is missing from the rendered page"
    assert re.search(r'<input[^>]*type="file"[^>]*accept="image/\*"', dom), "no image upload input"
    assert re.search(r'<input[^>]*type="file"[^>]*accept="audio/', dom), "no audio upload input"
    assert re.search(r'<button[^>]*id="generate-button"[^>]*>\s*Generate', dom), "no Generate button"

    screenshot = tmp_path / "space.png"
    subprocess.run([*command, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (1000, 1280)
    assert pixels.std() > 10, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 50, "the screenshot has almost no content"


def test_space_files_are_deployable():
    """The front matter a Space needs, the install line and the system libraries OpenCV's full build needs."""
    from huggingface_hub import SpaceCard

    folder = APP.parent
    card = SpaceCard.load(folder / "README.md").data
    assert card.sdk == "gradio" and card.python_version == "3.12"
    assert card.sdk_version.split(".")[0] == "6" and (folder / card.app_file).is_file()
    assert card.models == ["emotalk/emotalk-default"] and card.license and card.tags
    assert len(card.short_description) <= 60  # the Hub's limit
    assert 'api_name="/generate"' in (folder / "README.md").read_text()
    requirements = [
        line.strip() for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert any(line.startswith("emotalk[space]") for line in requirements)
    assert "libgl1" in (folder / "packages.txt").read_text().split()
