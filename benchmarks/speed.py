"""End-to-end speed and memory of the pipeline: real-time factor and peak RSS by audio duration.

    python benchmarks/speed.py [--durations 5 30 120 600] [--repeats 3] [--ahead auto 2 0] [--model DIR] [--markdown out.md]

Each run is a fresh subprocess (so peak RSS is that run's own): the default model, 25 fps, 256² crop,
paste-back into the 512² astronaut photo, an H.264 + AAC MP4 written to a temporary folder. Reports the
median wall time / audio duration (real-time factor, < 1 is faster than real time), the median peak
RSS, and where the time goes (face analysis, audio reading, stage 1, stage 2, paste-back, encoding + the rest).

Stage 2 renders in a background thread ``RENDER_AHEAD`` batches ahead of paste-back and encoding where the pipeline
has cores left over (``--ahead auto``, the default; a number forces it, ``--ahead 0``: sequentially), so the split is
of busy times, which overlap: stage 2 is timed in its thread, and
encoding + the rest is the main thread's saving time less paste-back and less its waits for stage 2. In the same
child, after the run, stage 2 alone renders the same crop in batches of 8 (median of 15): "of stage 2 alone" is
the whole run's frames/s over that, the share of the generator's speed the rest of the run leaves. The same child
prints the machine's ceiling (a 1024² float32 matmul), the generator's GFLOP per frame (``FlopCounterMode``) and
its achieved GFLOP/s in the run and alone, so every figure of a row comes from one process. "Rest of the run on
top of stage 2, CPU time" is the run's process CPU time over stage 2's, less one: what face analysis, stage 1,
paste-back and encoding cost on top of the generator, hardly moved by other load on the machine (stage 2's CPU time
is the process's while it runs when rendering is sequential, its thread's when it renders ahead, which is exact
only with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, tempfile, os
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import synthetic_speech
import emotalk_pipeline
from transformers import pipeline
from transformers.utils import logging
from skimage import data
logging.set_verbosity_error()
seconds, model, ahead = {seconds}, {model!r}, {ahead!r}
import queue, statistics, torch
if {threads}:
    torch.set_num_threads({threads})
import emotalk_pipeline.pipeline_emotalk as pipeline_module
if ahead == "auto":  # what the pipeline does by default (0 where no cores are left over)
    ahead = pipeline_module.render_ahead()
else:  # forced, even on a machine where the pipeline would not
    ahead = int(ahead)
    pipeline_module.render_ahead = lambda: ahead
pipe = pipeline("emotional-talking-face", model=model) if model else pipeline("emotional-talking-face")
image, audio = data.astronaut(), synthetic_speech(seconds, seed=1)
timers = {{"stage2": 0.0, "paste_back": 0.0, "waiting_for_stage2": 0.0}}
class TimedQueue(queue.Queue):
    def get(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super().get(*args, **kwargs)
        finally:
            timers["waiting_for_stage2"] += time.perf_counter() - start
pipeline_module.queue.Queue = TimedQueue
calls = {{}}
def process_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
def timed(name, fn):
    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        start, cpu_start, thread_start = time.perf_counter(), process_cpu(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            timers[name] += time.perf_counter() - start
            # CPU seconds: the whole process's while it ran sequentially, its own thread's when it runs beside the
            # main thread (exact only with one torch thread)
            cpu = time.thread_time() - thread_start if ahead else process_cpu() - cpu_start
            timers[name + "_cpu"] = timers.get(name + "_cpu", 0.0) + cpu
    return wrapper
generator = pipe.model.generator
forward = generator.forward
generator.forward = timed("stage2", forward)
pipe.face_processor.paste_back = timed("paste_back", pipe.face_processor.paste_back)
timers["face"] = 0.0
from modeling_emotalk.face_processing import FaceProcessor
FaceProcessor.__call__ = timed("face", FaceProcessor.__call__)
start, run_cpu_start = time.perf_counter(), process_cpu()
face_start = time.perf_counter()
inputs = pipe.preprocess({{"image": image, "audio": {{"array": audio, "sampling_rate": 16000}}}})
timers["face_and_audio"] = time.perf_counter() - face_start
timers["audio"] = timers["face_and_audio"] - timers["face"]
stage1_start = time.perf_counter()
with torch.inference_mode():
    outputs = pipe._forward(inputs, emotion="happy", seed=0)
timers["stage1_and_motion"] = time.perf_counter() - stage1_start
video = pipe.postprocess(outputs, progress=False)
save_start = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    video.save(os.path.join(folder, "out.mp4"))
save = time.perf_counter() - save_start
if ahead:
    timers["encoding_and_rest"] = save - timers["paste_back"] - timers["waiting_for_stage2"]
else:
    timers["encoding_and_rest"] = save - timers["stage2"] - timers["paste_back"]
total = time.perf_counter() - start
timers["run_cpu"] = process_cpu() - run_cpu_start
generator.forward = timed("stage2_after_run", forward)  # the timings below are not the run's
timers["stage2_after_run"] = 0.0
face = inputs["face"]
with torch.inference_mode():
    source = generator.encode_source(torch.from_numpy(face.crop).permute(2, 0, 1)[None].float() / 255,
                                     torch.from_numpy(face.landmarks)[None].float())
    driving = torch.as_tensor(outputs["landmarks"][:8]).float()
    def alone():
        begin = time.perf_counter()
        generator(source=source, driving_landmarks=driving)
        return time.perf_counter() - begin
    alone()
    timers["stage2_alone_fps"] = 8 / statistics.median(alone() for _ in range(15))
    sys.path.insert(0, {benchmarks!r})
    from model_speed import gflop_per_frame, matmul_gflops
    timers["matmul_1024_gflops"] = matmul_gflops(5, "cpu")
with torch.no_grad():  # the flop counter needs autograd-free tensors, not inference tensors
    source = generator.encode_source(torch.from_numpy(face.crop).permute(2, 0, 1)[None].float() / 255,
                                     torch.from_numpy(face.landmarks)[None].float())
    timers["gflop_per_frame"] = gflop_per_frame(generator, source, torch.as_tensor(outputs["landmarks"][:8]).float())
print(json.dumps({{"seconds": seconds, "wall": total, "frames": video.num_frames,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ahead_used": ahead,
                  "face_analyses": calls["face"],
                  **timers}}))
"""


def run_once(seconds: float, model: str | None, ahead: str = "auto", threads: int = 0) -> dict:
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    benchmarks = str(Path(__file__).resolve().parent)
    code = CHILD.format(tests=tests, benchmarks=benchmarks, seconds=seconds, model=model, ahead=ahead, threads=threads)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark run failed ({seconds} s):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table_row(seconds: float, ahead: str, results: list[dict]) -> str:
    """One markdown row from the runs of one duration: medians, shares of the wall time."""
    med = {key: statistics.median(r[key] for r in results) for key in results[0]}
    parts = ("face", "audio", "stage1_and_motion", "stage2", "paste_back", "encoding_and_rest")
    share = " / ".join(f"{100 * med[p] / med['wall']:.0f}%" for p in parts)
    frames_per_second = med["frames"] / med["wall"]
    in_run_gflops = med["gflop_per_frame"] * med["frames"] / med["stage2"]
    alone_gflops = med["gflop_per_frame"] * med["stage2_alone_fps"]
    return (
        f"| {seconds:g} s | {results[0].get('ahead_used', ahead)} | {med['frames']:.0f} | {med['wall']:.1f} s "
        f"| {med['wall'] / seconds:.2f} | {frames_per_second:.1f} | {med['stage2_alone_fps']:.1f} "
        f"| **{frames_per_second / med['stage2_alone_fps']:.2f}** | {med['matmul_1024_gflops']:.0f} "
        f"| {med['gflop_per_frame']:.2f} | {in_run_gflops:.0f} / {alone_gflops:.0f} "
        f"| {med['run_cpu'] / med['stage2_cpu'] - 1:.0%} | {med['peak_rss_mb']:.0f} MB | {share} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[5, 30, 120, 600])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ahead",
        nargs="+",
        default=["auto"],
        help="batches stage 2 renders ahead in a thread: auto (the pipeline's choice), or a number forced (0: none)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads in each run (0: torch's)")
    parser.add_argument("--max-repeats-from", type=float, default=600, help="durations from this one run once")
    parser.add_argument("--model", default=None, help="a pipeline model folder (default: the embedded model)")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--json", default=None, help="also write all runs to this JSON file")
    args = parser.parse_args()
    rows, runs = [], {}
    for ahead in args.ahead:
        for seconds in args.durations:
            repeats = 1 if seconds >= args.max_repeats_from else args.repeats
            results = []
            for repeat in range(repeats):
                start = time.perf_counter()
                results.append(run_once(seconds, args.model, ahead, args.threads))
                print(
                    f"{seconds:g} s audio, ahead {ahead}, run {repeat + 1}/{repeats}: {time.perf_counter() - start:.1f} s",
                    file=sys.stderr,
                )
            runs[f"{seconds:g}s_ahead{ahead}"] = results
            rows.append(table_row(seconds, ahead, results))
    table = "\n".join(
        [
            f"Median of {args.repeats} run(s) each ({args.max_repeats_from:g} s and longer: 1); 25 fps, 256² crop, paste-back into a 512² photo, "
            "H.264 veryfast + AAC. Busy-time shares of the wall time (they overlap when stage 2 renders ahead).",
            "",
            "| audio | ahead | frames | wall time | real-time factor | frames/s | stage 2 alone, frames/s "
            "| whole run / stage 2 alone | matmul ceiling, GFLOP/s | GFLOP/frame | stage 2 GFLOP/s in run / alone "
            "| rest of the run on top of stage 2, CPU time | peak RSS "
            "| face / audio / stage 1 / stage 2 / paste-back / encoding+rest |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
