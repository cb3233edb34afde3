"""End-to-end speed and memory of the pipeline: real-time factor and peak RSS by audio duration.

    python benchmarks/speed.py [--durations 5 30 120 600] [--repeats 3] [--model DIR] [--markdown out.md]

Each run is a fresh subprocess (so peak RSS is that run's own): the default model, 25 fps, 256² crop,
paste-back into the 512² astronaut photo, an H.264 + AAC MP4 written to a temporary folder. Reports the
median wall time / audio duration (real-time factor, < 1 is faster than real time), the median peak
RSS, and where the time goes (face analysis, stage 1, stage 2, paste-back, encoding + the rest).
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
seconds, model = {seconds}, {model!r}
pipe = pipeline("emotional-talking-face", model=model) if model else pipeline("emotional-talking-face")
image, audio = data.astronaut(), synthetic_speech(seconds, seed=1)
timers = {{"stage2": 0.0, "paste_back": 0.0}}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timers[name] += time.perf_counter() - start
    return wrapper
generator = pipe.model.generator
generator.forward = timed("stage2", generator.forward)
pipe.face_processor.paste_back = timed("paste_back", pipe.face_processor.paste_back)
start = time.perf_counter()
face_start = time.perf_counter()
inputs = pipe.preprocess({{"image": image, "audio": {{"array": audio, "sampling_rate": 16000}}}})
timers["face_and_audio"] = time.perf_counter() - face_start
stage1_start = time.perf_counter()
import torch
with torch.inference_mode():
    outputs = pipe._forward(inputs, emotion="happy", seed=0)
timers["stage1_and_motion"] = time.perf_counter() - stage1_start
video = pipe.postprocess(outputs, progress=False)
save_start = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    video.save(os.path.join(folder, "out.mp4"))
save = time.perf_counter() - save_start
timers["encoding_and_rest"] = save - timers["stage2"] - timers["paste_back"]
total = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "wall": total, "frames": video.num_frames,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **timers}}))
"""


def run_once(seconds: float, model: str | None) -> dict:
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    code = CHILD.format(tests=tests, seconds=seconds, model=model)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark run failed ({seconds} s):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[5, 30, 120, 600])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="a pipeline model folder (default: the embedded model)")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--json", default=None, help="also write all runs to this JSON file")
    args = parser.parse_args()
    rows, runs = [], {}
    for seconds in args.durations:
        results = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            results.append(run_once(seconds, args.model))
            print(
                f"{seconds:g} s audio, run {repeat + 1}/{args.repeats}: {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        runs[seconds] = results
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        parts = ("face_and_audio", "stage1_and_motion", "stage2", "paste_back", "encoding_and_rest")
        share = " / ".join(f"{100 * med[p] / med['wall']:.0f}%" for p in parts)
        rows.append(
            f"| {seconds:g} s | {med['frames']:.0f} | {med['wall']:.1f} s | {med['wall'] / seconds:.2f} | "
            f"{med['frames'] / med['wall']:.1f} | {med['peak_rss_mb']:.0f} MB | {share} |"
        )
    table = "\n".join(
        [
            f"Median of {args.repeats} run(s) each; 25 fps, 256² crop, paste-back into a 512² photo, H.264 veryfast + AAC.",
            "",
            "| audio | frames | wall time | real-time factor | frames/s | peak RSS | face+audio / stage 1 / stage 2 / paste-back / encoding+rest |",
            "| --- | --- | --- | --- | --- | --- | --- |",
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
