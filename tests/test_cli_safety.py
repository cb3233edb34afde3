"""The ``emotalk`` CLI's safety: lazy start, early validation, outputs never replacing inputs, batch rows that
fail alone, partial files that never survive, one-line errors, the original audio in the MP4, no package cycles.

Most tests replace the model with a fake pipeline (``fake_pipe``): they check the command line, not the model.
"""

from __future__ import annotations

import ast
import csv
import errno
import importlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import emotalk_cli
import emotalk_pipeline.cli as pipeline_cli
import numpy as np
import pytest
import soundfile as sf
from conftest import synthetic_speech
from emotalk_common import video_io as video_module
from emotalk_common.video_io import partial_pattern, remove_stale_partials, write_mp4
from emotalk_pipeline.batch import read_manifest
from PIL import Image

from modeling_emotalk.errors import EmoTalkInputError

ROOT = Path(__file__).resolve().parents[1]


class FakeVideo:
    """What the pipeline returns, reduced to what the CLI uses: 10 grey 32² frames and 16 kHz audio."""

    def __init__(self, frames: int = 10, slow: bool = False):
        self.num_frames, self.duration, self.emotion, self.seed, self.slow = frames, frames / 25, "neutral", 0, slow

    def batches(self):
        for _ in range(10**6 if self.slow else 1):
            if self.slow:
                time.sleep(0.05)
            yield np.full((self.num_frames, 32, 32, 3), 128, np.uint8)

    def save(self, path):
        audio = np.zeros(16000 * self.num_frames // 25, np.float32) if not self.slow else None
        return write_mp4(path, self.batches(), 25, audio, 16000)


class FakePipe:
    """Records its calls; an image named ``blank*`` has no face (EmoTalkInputError), ``crash*`` a bug."""

    def __init__(self, slow: bool = False):
        self.calls, self.slow = [], slow

    def __call__(self, image, audio, **kwargs):
        self.calls.append((Path(image).name, kwargs))
        if Path(image).name.startswith("blank"):
            raise EmoTalkInputError("no face found in the image")
        if Path(image).name.startswith("crash"):
            raise RuntimeError("a bug in the model")
        return FakeVideo(slow=self.slow)


@pytest.fixture
def fake_pipe(monkeypatch):
    pipe = FakePipe()
    loaded = []
    monkeypatch.setattr(pipeline_cli, "_load_pipeline", lambda args: loaded.append(args) or pipe)
    pipe.loaded = loaded
    return pipe


@pytest.fixture
def media(tmp_path):
    """face.png, blank.png, crash.png and speech.wav in ``tmp_path``."""
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "face.png")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "blank.png")
    Image.fromarray(np.full((64, 64, 3), 10, np.uint8)).save(tmp_path / "crash.png")
    sf.write(tmp_path / "speech.wav", synthetic_speech(0.5), 16000)
    return tmp_path


def _generate(media: Path, output, *extra: str) -> list[str]:
    return ["generate", "--image", str(media / "face.png"), "--audio", str(media / "speech.wav"),
            "--output", str(output), *extra]  # fmt: skip


# --------------------------------------------------------------------------------------------- lazy start (13.15)
def test_help_and_version_import_neither_torch_nor_transformers():
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        import emotalk_cli
        for argv in (["--help"], ["--version"]):
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
                emotalk_cli.main(argv)
            print(out.getvalue().splitlines()[0])
        print(sorted(m for m in ("torch", "transformers", "mediapipe", "emotalk_pipeline") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: emotalk") and "generate" in lines[0]
    from importlib.metadata import version

    assert lines[1] == f"emotalk {version('emotalk')}"
    assert lines[2] == "[]"


def test_bad_arguments_and_missing_files_fail_before_the_model_loads(fake_pipe, media, capsys):
    out = media / "out.mp4"
    assert emotalk_cli.main(_generate(media, out, "--emotion", "furious")) == 2
    assert "unknown emotion 'furious'" in capsys.readouterr().err
    argv = _generate(media, out)
    argv[2] = str(media / "missing.png")
    assert emotalk_cli.main(argv) == 2
    assert "missing.png" in capsys.readouterr().err
    assert fake_pipe.loaded == [] and not out.exists()
    assert emotalk_cli.main(_generate(media, out, "--dtype", "bfloat16")) == 0
    assert fake_pipe.loaded[0].dtype == "bfloat16" and out.is_file()


def test_the_native_log_lines_are_dropped_and_the_rest_is_forwarded(capfd):
    with pipeline_cli.quiet_native_logs():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1796131797.007035    9821 inference_feedback_manager.cc:114] Feedback manager\n")
        os.write(2, b"a real native error\n")
    err = capfd.readouterr().err
    assert "a real native error" in err
    assert "XNNPACK" not in err and "inference_feedback_manager" not in err


# ------------------------------------------------------------------------------------- outputs and inputs (13.7)
def test_an_output_equal_to_an_input_is_refused(fake_pipe, media, capsys):
    video = media / "talk.mp4"
    video.write_bytes(b"precious input")
    argv = ["generate", "--image", str(media / "face.png"), "--audio", str(video), "--output", str(video)]
    assert emotalk_cli.main([*argv, "--overwrite"]) == 2
    assert "is also an input" in capsys.readouterr().err
    link = media / "link.mp4"
    link.symlink_to(video)
    assert emotalk_cli.main([*argv[:-1], str(link), "--overwrite"]) == 2  # the same file under another name
    assert video.read_bytes() == b"precious input" and fake_pipe.loaded == []


def test_single_mode_refuses_an_existing_output_unless_overwrite(fake_pipe, media, capsys):
    out = media / "out.mp4"
    out.write_bytes(b"old")
    assert emotalk_cli.main(_generate(media, out)) == 2
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"old"
    assert emotalk_cli.main(_generate(media, out, "--overwrite")) == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 10


def test_help_states_the_existing_output_policy(capsys):
    with pytest.raises(SystemExit):
        emotalk_cli.main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in text and "skipped" in text and "refused" in text


# ------------------------------------------------------------------------------------------- batch mode (13.8)
def _manifest(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "audio", "emotion", "intensity", "output"])
        writer.writerows(rows)
    return path


def test_malformed_rows_fail_alone_and_the_rest_is_rendered(fake_pipe, media, capsys):
    manifest = _manifest(media / "jobs.csv", [
        ["face.png", "speech.wav", "happy", "high", "a.mp4"],     # intensity is not a number
        ["face.png", "speech.wav", "sad", "0.5", "b.mp4"],
        ["face.png", "speech.wav", "sad", "0.5", "../escape.mp4"],  # outside --output-dir
        ["face.png", "speech.wav", "sad", "0.5", str(media / "abs.mp4")],
        ["blank.png", "speech.wav", "sad", "0.5", "c.mp4"],       # no face: EmoTalkInputError
        ["crash.png", "speech.wav", "sad", "0.5", "d.mp4"],       # an unexpected error
        ["face.png", "speech.wav", "", "", "e.mp4"],
    ], bom=True)  # fmt: skip
    out = media / "videos" / "nested"  # does not exist yet: created
    assert emotalk_cli.main(["generate", "--manifest", str(manifest), "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "row 1 failed: row 1: intensity must be a number in [0, 1], got 'high'" in err
    assert "row 3 failed" in err and "relative path inside --output-dir" in err and "row 4 failed" in err
    assert "row 5 failed: no face found" in err and "row 6 failed: RuntimeError: a bug in the model" in err
    assert sorted(p.name for p in out.glob("*.mp4")) == ["b.mp4", "e.mp4"]
    assert not (media / "videos" / "escape.mp4").exists() and not (media / "abs.mp4").exists()
    report = json.loads((out / "report.json").read_text())
    assert [f["row"] for f in report["failed"]] == [1, 3, 4, 5, 6] and len(report["done"]) == 2
    assert "traceback" in report["failed"][-1]


def test_json_lines_rows_with_wrong_types_fail_alone(media):
    (media / "jobs.jsonl").write_text(
        '{"image": 5, "audio": "speech.wav"}\n{"image": "face.png", "audio": "speech.wav"}\nnot json\n'
        '{"image": "face.png", "audio": "speech.wav", "intensity": [1]}\n'
    )
    jobs = read_manifest(media / "jobs.jsonl")
    assert "'image' must be text, got 5" in jobs[0]["error"]
    assert "error" not in jobs[1] and jobs[1]["output"] == "0002_face.mp4"
    assert "not valid JSON" in jobs[2]["error"] and "intensity must be a number" in jobs[3]["error"]


def test_two_rows_writing_the_same_output_are_refused_before_starting(fake_pipe, media, capsys):
    manifest = _manifest(media / "jobs.csv", [["face.png", "speech.wav", "happy", "1", "same.mp4"]] * 2)
    assert emotalk_cli.main(["generate", "--manifest", str(manifest), "--output-dir", str(media / "o")]) == 2
    assert "rows 1 and 2 both write 'same.mp4'" in capsys.readouterr().err
    assert fake_pipe.loaded == [] and fake_pipe.calls == []


def test_batch_skips_existing_outputs_unless_overwrite(fake_pipe, media, capsys):
    manifest = _manifest(media / "jobs.csv", [["face.png", "speech.wav", "happy", "1", "a.mp4"]])
    out = media / "o"
    argv = ["generate", "--manifest", str(manifest), "--output-dir", str(out)]
    assert emotalk_cli.main(argv) == 0
    assert emotalk_cli.main(argv) == 0
    assert '"skipped": 1' in capsys.readouterr().out and len(fake_pipe.calls) == 1
    assert emotalk_cli.main([*argv, "--overwrite"]) == 0
    assert len(fake_pipe.calls) == 2


FAKE_MODULE_HEADER = """
import time
from pathlib import Path

import numpy as np
from emotalk_common.video_io import write_mp4

from modeling_emotalk.errors import EmoTalkInputError
"""


def _script(folder: Path, body: str) -> Path:
    """A script in ``folder`` next to a module holding the fake pipeline (a script's folder is on its path)."""
    (folder / "fake_pipeline.py").write_text(
        FAKE_MODULE_HEADER + "\n\n" + inspect.getsource(FakeVideo) + "\n\n" + inspect.getsource(FakePipe)
    )
    script = folder / "launch_fake.py"
    script.write_text(textwrap.dedent(body))
    return script


FAKE_LAUNCH = """
import sys

import emotalk_cli
import emotalk_pipeline.cli as cli
from fake_pipeline import FakePipe

cli._load_pipeline = lambda args: FakePipe()
sys.exit(emotalk_cli.main(sys.argv[1:]))
"""


def test_two_processes_each_finish_their_rows_and_the_reports_are_merged(media, tmp_path):
    """Under accelerate with 2 CPU processes, a failing row on one process neither stops the other nor its own rows."""
    rows = [["blank.png", "speech.wav", "sad", "1", "v0.mp4"]]  # process 0 gets rows 1-2, process 1 rows 3-4
    rows += [["face.png", "speech.wav", "sad", "1", f"v{i}.mp4"] for i in (1, 2, 3)]
    manifest = _manifest(media / "jobs.csv", rows)
    script = _script(tmp_path, FAKE_LAUNCH)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = media / "out"
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(port)]
    command += [str(script), "generate", "--manifest", str(manifest), "--output-dir", str(out)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )
    assert result.returncode != 0  # a row failed
    assert sorted(p.name for p in out.glob("*.mp4")) == ["v1.mp4", "v2.mp4", "v3.mp4"], result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["done"]) == 3 and [f["row"] for f in report["failed"]] == [1]
    assert not list(out.glob(".report.process-*.json"))


# -------------------------------------------------------------------------------------- partial files (13.9)
SLOW_WRITE = """
import sys

import emotalk_cli
import emotalk_pipeline.cli as cli
from fake_pipeline import FakePipe

cli._load_pipeline = lambda args: FakePipe(slow=True)
sys.exit(emotalk_cli.main(sys.argv[1:]))
"""


def test_sigterm_removes_the_partial_file(media, tmp_path):
    script = _script(tmp_path, SLOW_WRITE)
    out = media / "talk.mp4"
    process = subprocess.Popen(
        [sys.executable, str(script), *_generate(media, out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(media.glob(".talk.*.partial.mp4")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            time.sleep(0.1)
        time.sleep(0.5)  # frames are being written
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.communicate()
    assert not list(media.glob(".talk.*")) and not out.exists()


def test_stale_partials_of_the_same_output_are_removed(tmp_path):
    out = tmp_path / "talk.mp4"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_dead = tmp_path / f".talk.p{dead.pid}.0123abcd.partial.mp4"  # its writer was SIGKILLed
    stale_old = tmp_path / ".talk.89abcdef.partial.mp4"  # the former naming, hours old
    live = tmp_path / f".talk.p{os.getppid()}.00000000.partial.mp4"  # a running writer
    other = tmp_path / ".talk2.p999999.0123abcd.partial.mp4"  # another output's
    unrelated = tmp_path / ".talk.notes.mp4"
    for path in (stale_dead, stale_old, live, other, unrelated):
        path.write_bytes(b"x")
    os.utime(stale_old, (time.time() - 7200, time.time() - 7200))
    assert partial_pattern(out).fullmatch(live.name) and not partial_pattern(out).fullmatch(other.name)
    write_mp4(out, [np.zeros((2, 16, 16, 3), np.uint8)], 25)
    assert not stale_dead.exists() and not stale_old.exists()
    assert live.exists() and other.exists() and unrelated.exists() and out.is_file()
    assert remove_stale_partials(out) == []


# ---------------------------------------------------------------------------------------- one-line errors (13.13)
def test_disk_full_is_one_line_and_leaves_nothing(fake_pipe, media, monkeypatch, capsys):
    def no_space(frames):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_module, "_even", no_space)
    out = media / "out.mp4"
    assert emotalk_cli.main(_generate(media, out)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left on the device" in err and "Traceback" not in err
    assert not out.exists() and not list(media.glob(".out.*"))


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if Path("/proc").is_dir():  # root may write anywhere but in a pseudo file system
        return Path("/proc")
    pytest.skip("no unwritable folder for this user")


def test_unwritable_output_folder_is_refused_before_rendering(fake_pipe, media, tmp_path, capsys):
    folder = _unwritable_folder(tmp_path)
    assert emotalk_cli.main(_generate(media, folder / "out.mp4")) == 2
    assert "is not writable" in capsys.readouterr().err
    assert fake_pipe.loaded == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "bogus"], "--device 'bogus' is not a torch device"),
        (["--device", "cuda:0"], "CUDA is not available"),
        (["--model", "/nonexistent/model"], "--model '/nonexistent/model' does not exist"),
    ],
)
def test_device_and_model_errors_are_one_line(media, capsys, extra, message):
    import torch

    if "cuda:0" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert emotalk_cli.main(_generate(media, media / "out.mp4", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_broken_model_folder_is_one_line(media, capsys):
    broken = media / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    assert emotalk_cli.main(_generate(media, media / "out.mp4", "--model", str(broken))) == 2
    err = capsys.readouterr().err
    assert "could not load --model" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- remote code (13.3)
def _hub_folder(path: Path) -> Path:
    path.mkdir()
    custom = {"emotional-talking-face": {"impl": "pipeline_emotalk.EmotionalTalkingFacePipeline", "pt": ["AutoModel"]}}
    (path / "config.json").write_text(json.dumps({"model_type": "emotalk", "custom_pipelines": custom}))
    return path


def test_generate_runs_remote_code_only_with_the_flag(media, monkeypatch, capsys):
    import transformers

    folder = _hub_folder(media / "hub")
    seen = []
    monkeypatch.setattr(transformers, "pipeline", lambda *a, **k: seen.append(k) or FakePipe())
    assert emotalk_cli.main(_generate(media, media / "out.mp4", "--model", str(folder))) == 2
    assert "pass --trust-remote-code" in capsys.readouterr().err and seen == []
    assert emotalk_cli.main(_generate(media, media / "out.mp4", "--model", str(folder), "--trust-remote-code")) == 0
    assert seen[0]["trust_remote_code"] is True and seen[0]["model"] == str(folder)


def test_evaluation_and_benchmark_never_trust_remote_code_by_default(monkeypatch):
    """No ``trust_remote_code=True`` unless asked: the evaluation CLI's loader, its flag and the benchmark's flag."""
    import argparse

    import transformers
    from emotalk_evaluation import cli as evaluation_cli
    from emotalk_evaluation.generation import load_pipeline

    seen = []
    monkeypatch.setattr(transformers, "pipeline", lambda *a, **k: seen.append(k))
    load_pipeline("some/model")
    load_pipeline("some/model", trust_remote_code=True)
    assert [k["trust_remote_code"] for k in seen] == [False, True]
    parser = argparse.ArgumentParser()
    evaluation_cli.add_arguments(parser)
    assert parser.parse_args(["a.mp4"]).trust_remote_code is False
    assert parser.parse_args(["a.mp4", "--trust-remote-code"]).trust_remote_code is True
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # a script folder, as test_conversion does
    quality = importlib.import_module("quality")
    assert quality.parse_args([]).trust_remote_code is False


# ---------------------------------------------------------------------------------------- original audio (13.14)
def _decode_audio(path: Path) -> tuple[np.ndarray, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return samples, rate, channels


def test_original_stereo_audio_is_muxed_at_its_own_rate_and_channels(tmp_path):
    rate = 44100
    noise = np.random.default_rng(0).standard_normal((rate, 2)).astype(np.float32)
    kernel = np.ones(8) / 8  # low-passed noise: well inside AAC's band, and a different signal per channel
    audio = np.stack([np.convolve(noise[:, c], kernel, mode="same") for c in (0, 1)], axis=1)
    audio = (audio / np.abs(audio).max() * 0.5).astype(np.float32)
    path = write_mp4(tmp_path / "stereo.mp4", [np.zeros((25, 32, 32, 3), np.uint8)], 25, audio, rate)
    decoded, decoded_rate, channels = _decode_audio(path)
    assert (decoded_rate, channels) == (44100, 2)
    n = 40000
    for channel in (0, 1):
        assert np.corrcoef(audio[:n, channel], decoded[channel, :n])[0, 1] > 0.9
    assert abs(np.corrcoef(audio[:n, 0], decoded[1, :n])[0, 1]) < 0.5  # the channels are not mixed


def test_other_rates_and_shapes(tmp_path):
    frames = [np.zeros((5, 32, 32, 3), np.uint8)]
    mono = write_mp4(tmp_path / "mono.mp4", frames, 25, synthetic_speech(0.2, 48000), 48000)
    assert _decode_audio(mono)[1:] == (48000, 1)
    odd = write_mp4(tmp_path / "odd.mp4", frames, 25, np.zeros((7560, 2), np.float32), 37800)  # not an AAC rate
    samples, rate, channels = _decode_audio(odd)
    assert (rate, channels) == (44100, 2) and abs(samples.shape[1] - 8820) < 2048
    with pytest.raises(EmoTalkInputError, match="1 to 6 channels"):
        write_mp4(tmp_path / "many.mp4", frames, 25, np.zeros((100, 8), np.float32), 48000)


# ------------------------------------------------------------------------------------------ layering (14.4)
def _imported_packages(folder: Path) -> set[str]:
    names = set()
    for file in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_no_package_cycles():
    """The umbrella CLI sits above everything; the pipeline imports neither training nor evaluation."""
    pipeline_imports = _imported_packages(ROOT / "pipeline")
    assert not pipeline_imports & {"emotalk_training", "emotalk_evaluation", "emotalk_cli"}
    assert "modeling_emotalk" not in _imported_packages(ROOT / "evaluation")
    for folder in ("modeling_emotalk", "pipeline", "evaluation", "training"):
        assert "emotalk_cli" not in _imported_packages(ROOT / folder), folder


def test_the_common_layer_imports_no_emotalk_package_and_no_torch():
    """``emotalk_common`` is the bottom layer: every other package may import it, it imports none of them."""
    imported = _imported_packages(ROOT / "common")
    emotalk = {"modeling_emotalk", "emotalk_pipeline", "emotalk_training", "emotalk_evaluation", "emotalk_cli"}
    assert not imported & (emotalk | {"torch", "transformers", "diffusers", "accelerate", "recipes", "benchmarks"})


def test_generate_help_imports_neither_torch_nor_transformers():
    """``emotalk generate --help`` (and an argument error) answer before the model stack is imported."""
    code = (
        "import sys, emotalk_cli\n"
        "for argv in (['generate', '--help'], ['demo', '--help'], ['generate', '--fps', 'x']):\n"
        "    try:\n"
        "        emotalk_cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'modeling_emotalk', 'emotalk_pipeline') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-2000:] + result.stderr[-2000:]
    assert "--reference-image" in result.stdout and "--overwrite" in result.stdout
