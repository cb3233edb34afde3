"""Stage 2 renders in a background thread while the caller pastes back and encodes (issue 17.3).

The frames are the sequential path's, bit for bit; an error raised while rendering reaches the caller; when the
consumer stops early the thread is joined (nothing is left running). No timing assertions: see
``benchmarks/speed.py``.
"""

from __future__ import annotations

import threading

import emotalk_pipeline  # noqa: F401  (registers the task)
import emotalk_pipeline.pipeline_emotalk as pipeline_module
import numpy as np
import pytest
from conftest import synthetic_speech
from test_modeling import save_tiny_composite
from transformers import pipeline

QUIET = {"progress": False, "batch_size": 4}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    # a non-zero residual, so that the frames depend on stage 2
    path = save_tiny_composite(tmp_path_factory.mktemp("tiny-overlap"), residual_std=0.05, emotion_std=0.5)
    return pipeline("emotional-talking-face", model=str(path))


@pytest.fixture(scope="module")
def audio():
    return {"array": synthetic_speech(1.2), "sampling_rate": 16000}


@pytest.fixture(autouse=True)
def render_ahead_on_any_machine(monkeypatch):
    """The pipeline renders ahead only where cores are left over (not on a 2-core CI machine): force it on,
    following RENDER_AHEAD, so these tests exercise the thread everywhere."""
    monkeypatch.setattr(pipeline_module, "render_ahead", lambda: pipeline_module.RENDER_AHEAD)


def test_render_ahead_only_with_cores_to_spare(monkeypatch):
    monkeypatch.undo()  # the real rule, not the fixture's
    monkeypatch.setattr(pipeline_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(pipeline_module.torch, "get_num_threads", lambda: 2)
    assert pipeline_module.render_ahead() == 0
    monkeypatch.setattr(pipeline_module.os, "cpu_count", lambda: 16)
    assert pipeline_module.render_ahead() == pipeline_module.RENDER_AHEAD


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def test_frames_are_identical_to_the_sequential_path(pipe, astronaut, audio, monkeypatch):
    overlapped = pipe(astronaut, audio, seed=0, **QUIET)
    batches = list(overlapped.iter_frames())
    monkeypatch.setattr(pipeline_module, "RENDER_AHEAD", 0)
    sequential = list(pipe(astronaut, audio, seed=0, **QUIET).iter_frames())
    assert len(batches) == len(sequential) == -(-overlapped.num_frames // 4) > 2  # more batches than the queue holds
    for got, expected in zip(batches, sequential, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_the_thread_renders_ahead_and_is_joined_at_the_end(pipe, astronaut, audio, monkeypatch):
    rendering_threads = []
    render = pipe.model.generator.forward

    def forward(*args, **kwargs):
        rendering_threads.append(threading.current_thread())
        return render(*args, **kwargs)

    monkeypatch.setattr(pipe.model.generator, "forward", forward)
    before = _threads()
    frames = pipe(astronaut, audio, seed=0, **QUIET).frames
    assert len(frames) > 0
    assert rendering_threads and all(t is not threading.main_thread() for t in rendering_threads)
    assert _threads() == before


def test_an_error_in_rendering_reaches_the_caller(pipe, astronaut, audio, monkeypatch):
    original, calls = pipe.model.generator.forward, []

    def failing(*args, **kwargs):
        calls.append(threading.current_thread())
        if len(calls) == 2:
            raise RuntimeError("stage 2 failed on batch 2")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe.model.generator, "forward", failing)
    before = _threads()
    iterator = pipe(astronaut, audio, seed=0, **QUIET).iter_frames()
    assert next(iterator).shape[0] == 4
    with pytest.raises(RuntimeError, match="failed on batch 2"):
        next(iterator)
    assert calls[1] is not threading.main_thread()  # raised in the render thread, re-raised here
    assert _threads() == before


def test_closing_the_iterator_early_stops_the_thread(pipe, astronaut, audio):
    before = len(threading.enumerate())
    video = pipe(astronaut, audio, seed=0, **QUIET)
    iterator = video.iter_frames()
    next(iterator)
    assert threading.active_count() == before + 1  # the render thread, blocked on the full queue
    iterator.close()
    assert threading.active_count() == before


def test_an_interrupt_in_the_consumer_stops_the_thread(pipe, astronaut, audio, tmp_path, monkeypatch):
    before = len(threading.enumerate())
    video = pipe(astronaut, audio, seed=0, **QUIET)
    pasted = []
    paste_back = pipe.face_processor.paste_back

    def interrupted(*args, **kwargs):  # what Ctrl-C (or SIGTERM, as the CLI's SystemExit) does mid-video
        pasted.append(1)
        if len(pasted) == 2:
            raise KeyboardInterrupt
        return paste_back(*args, **kwargs)

    monkeypatch.setattr(pipe.face_processor, "paste_back", interrupted)
    with pytest.raises(KeyboardInterrupt):
        video.save(tmp_path / "out.mp4")
    assert threading.active_count() == before
    assert not list(tmp_path.iterdir())  # no partial file either


def test_the_queue_is_bounded():
    produced = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    iterator = pipeline_module._rendered_ahead(items(), 2)
    assert next(iterator) == 0
    threading.Event().wait(0.2)  # let the producer run until the queue is full
    assert len(produced) <= 1 + 2 + 1  # the consumed item, the queue, the one waiting to be put
    iterator.close()
    assert all(t.name != "emotalk-render" for t in threading.enumerate())
