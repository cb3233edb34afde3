"""Model-level speed of the default checkpoint: parameters, stage-2 frames/s and GFLOP/s, stage-1 real-time factor.

    python benchmarks/model_speed.py [--repeats 5] [--threads N] [--json out.json]
    python benchmarks/model_speed.py --reference-ref cc68c5c   # side by side with the stage 2 of that commit
    python benchmarks/model_speed.py --reference-ref cc68c5c --psnr-ref 8c82e4b   # + PSNR against another commit
    python benchmarks/model_speed.py --reference-ref cc68c5c --process-pairs 3   # + old/new in fresh processes
    python benchmarks/model_speed.py --reference-checkpoint DIR   # today's code, another checkpoint's config as "old"
    python benchmarks/model_speed.py --reference-checkpoint DIR --blink   # ... with the eyes closing too

Whole forward passes, no gradient, float32 on CPU (or CUDA when available). Stage 2 renders the astronaut
photo (scikit-image) aligned by the face processor, driven by landmarks that open the mouth and raise the
brows (``--blink``: and close the eyes). In the same run it prints the machine's ceiling (a 1024² float32 matmul), the generator's GFLOP per
frame (``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products) and the achieved
GFLOP/s. With ``--reference-ref`` the generator code of that git commit (``modeling_emotalk/*.py`` read with
``git show`` into a temporary package) runs with the same weights: old and new are timed alternately (ABAB)
so that load on the machine hits both alike, and the PSNR between their frames is printed. ``--psnr-ref``
adds the PSNR against further commits (untimed): e.g. the last commit before a deliberate change of output
(cc68c5c repeats the edge pixel outside the crop where 25e728d mirrors it, which alone costs ~30 dB on this
motion). The same ABAB then runs again after :func:`~modeling_emotalk.modeling_generator.reuse_freed_memory` (a
process-wide allocator setting, so it helps both sides there), and ``--process-pairs N`` times old and new each in
fresh processes, alternately: the old one with glibc's default allocator as its pipeline ran, the new one as the
pipeline runs it now.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.flop_counter import FlopCounterMode

from modeling_emotalk import EmoTalkConfig, EmoTalkModel
from modeling_emotalk import landmarks as L
from modeling_emotalk.landmarks import apply_blink, canonicalize
from modeling_emotalk.modeling_generator import low_precision_conv, reuse_freed_memory

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "pipeline" / "checkpoints" / "emotalk-default"


CLOCK = time.perf_counter
"""What a call is timed with: wall time, or with ``--clock cpu`` the process's CPU time (user + system, all its
threads), which load from other processes hardly moves at 1 thread."""


def seconds_per_call(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    return statistics.median(seconds_per_call(fn) for _ in range(repeats))


def matmul_gflops(repeats: int, device: str) -> float:
    """The machine's ceiling: GFLOP/s of a 1024² float32 matrix product."""
    a, b = torch.randn(2, 1024, 1024, device=device).unbind(0)
    return 2 * 1024**3 / median_seconds(lambda: a @ b, max(repeats, 10)) / 1e9


def load_reference_package(ref: str) -> ModuleType:
    """``modeling_emotalk`` as of git commit ``ref``, imported as a temporary package (its ``__init__`` left empty,
    so nothing is registered with the Auto classes)."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", ref, "modeling_emotalk/"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    folder = Path(tempfile.mkdtemp(prefix="emotalk_reference_"))
    for name in names:
        if name.endswith(".py") and not name.endswith("__init__.py"):
            source = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=REPO, check=True, capture_output=True).stdout
            (folder / Path(name).name).write_bytes(source)
    (folder / "__init__.py").write_text("")
    package = f"emotalk_reference_{folder.name.rsplit('_', 1)[-1]}"
    spec = importlib.util.spec_from_file_location(
        package, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return module


def reference_generator(ref: str, generator: torch.nn.Module) -> torch.nn.Module:
    """The stage 2 of commit ``ref`` with ``generator``'s config and weights (loaded strictly)."""
    old = importlib.import_module(f"{load_reference_package(ref).__name__}.modeling_generator")
    model = old.EmoTalkGenerator(generator.config)
    model.load_state_dict(generator.state_dict(), strict=True)
    return model.eval().to(next(generator.parameters()).device)


def astronaut_inputs(
    size: int, frames: int, device: str, blink: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The astronaut aligned by the face processor: ``(1, 3, S, S)`` pixels, ``(1, 478, 3)`` landmarks, and
    ``(frames, 478, 3)`` driving landmarks that open the mouth and raise the brows (and, with ``blink``, close the
    eyes as far as the mouth opens: every frame but the first blinks)."""
    from skimage import data

    from modeling_emotalk.face_processing import FaceProcessor

    processor = FaceProcessor(crop_size=size)
    try:
        face = processor(data.astronaut())
    finally:
        processor.close()
    pixels = torch.from_numpy(face.crop).permute(2, 0, 1)[None].float().div(255).to(device)
    landmarks = torch.from_numpy(face.landmarks)[None].to(device)
    phase = torch.sin(torch.linspace(0, 2 * math.pi, frames, device=device))[:, None]
    driving = landmarks.repeat(frames, 1, 1)
    driving[:, list(L.LOWER_LIP), 1] += 0.08 * phase.clamp_min(0)  # the jaw drops by up to ~10 px
    driving[:, list(L.RIGHT_EYEBROW + L.LEFT_EYEBROW), 1] -= 0.03 * phase.abs()
    if blink:
        driving = apply_blink(driving, phase.abs().expand(-1, 2))
    return pixels, landmarks, driving


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [0, 1] images (inf when equal)."""
    mse = (a.double() - b.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def gflop_per_frame(generator: torch.nn.Module, source, driving: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        generator(source=source, driving_landmarks=driving)
    return counter.get_total_flops() / driving.shape[0] / 1e9


def render(side: str, new, old, source, old_source, driving: torch.Tensor):
    """One stage-2 call of ``side``: "old", "new" (its default precision) or "new_float32"."""
    if side == "old":
        return old(source=old_source, driving_landmarks=driving)
    if side == "new":
        return new(source=source, driving_landmarks=driving)
    precision = new.conv_precision
    try:
        return new.set_conv_precision("float32")(source=source, driving_landmarks=driving)
    finally:
        new.set_conv_precision(precision)


def stage2_side_by_side(
    new: torch.nn.Module, old: torch.nn.Module | None, inputs, batches: list[int], repeats: int
) -> dict[str, dict]:
    """Frames/s of ``new`` (and ``old``; and ``new`` in float32 where its default runs bfloat16 convolutions) per
    batch size, timed alternately; PSNR of the new frames against the old."""
    pixels, landmarks, driving = inputs
    source = new.encode_source(pixels, landmarks)
    old_source = None if old is None else old.encode_source(pixels, landmarks)
    sides = ["old"] * (old is not None) + ["new"]
    if new._frame_conv(source.pixel_values) is low_precision_conv:  # also time the new code in float32
        sides.append("new_float32")
    results = {}
    for batch in batches:
        calls = {
            name: functools.partial(render, name, new, old, source, old_source, driving[:batch]) for name in sides
        }
        for call in calls.values():
            call()  # warm-up
        times = {name: [] for name in calls}
        for repeat in range(repeats):  # ABAB, alternating which side goes first
            order = list(calls) if repeat % 2 == 0 else list(reversed(calls))
            for name in order:
                times[name].append(seconds_per_call(calls[name]))
        row = {f"{name}_frames_per_second": round(batch / statistics.median(t), 2) for name, t in times.items()}
        if old is not None:
            reference = calls["old"]().frames
            for name in sides[1:]:
                paired = [o / n for o, n in zip(times["old"], times[name], strict=True)]
                row[f"{name}_speedup_median_of_pairs"] = round(statistics.median(paired), 2)
                row[f"{name}_speedup_of_medians"] = round(
                    row[f"{name}_frames_per_second"] / row["old_frames_per_second"], 2
                )
                row[f"{name}_psnr_db_vs_old"] = round(psnr(reference, calls[name]().frames), 1)
        results[f"batch_{batch}"] = row
    return results


def psnr_against(ref: str, new: torch.nn.Module, inputs) -> float:
    """PSNR of ``new``'s frames (its default precision) against the stage 2 of commit ``ref``, same inputs."""
    pixels, landmarks, driving = inputs
    other = reference_generator(ref, new)
    expected = other(source=other.encode_source(pixels, landmarks), driving_landmarks=driving).frames
    return round(psnr(expected, new(source=new.encode_source(pixels, landmarks), driving_landmarks=driving).frames), 1)


def side_alone(args: argparse.Namespace) -> dict[str, float]:
    """Child of :func:`process_pairs`: frames/s per batch of one side ("old": the reference commit's stage 2 with
    glibc's default allocator, as that commit's pipeline ran it; "new": this stage 2 as the pipeline runs it,
    after :func:`reuse_freed_memory`)."""
    stage2 = load_model(args.checkpoint, "cpu").generator
    if args.side == "new":
        reuse_freed_memory()
    model = stage2 if args.side == "new" else reference_generator(args.reference_ref, stage2)
    with torch.inference_mode():
        pixels, landmarks, driving = astronaut_inputs(stage2.config.image_size, max(args.batches), "cpu", args.blink)
        source = model.encode_source(pixels, landmarks)
        return {
            str(batch): batch
            / median_seconds(lambda b=batch: model(source=source, driving_landmarks=driving[:b]), args.repeats)
            for batch in args.batches
        }


def process_pairs(args: argparse.Namespace, pairs: int) -> dict[str, dict]:
    """Old and new stage 2 in fresh processes, alternately (old, new, new, old, ...): the ratio as each ships, the
    allocator setting included (it is process-wide, so the in-process ABAB cannot separate it)."""
    runs = {"old": [], "new": []}
    for pair in range(pairs):
        for side in ("old", "new") if pair % 2 == 0 else ("new", "old"):
            command = [sys.executable, __file__, "--side", side, "--reference-ref", args.reference_ref]
            command += ["--checkpoint", args.checkpoint, "--repeats", str(args.repeats), "--clock", args.clock]
            command += ["--batches"] + [str(b) for b in args.batches] + (["--blink"] if args.blink else [])
            command += ["--threads", str(args.threads)] if args.threads else []
            output = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout
            runs[side].append(json.loads(output.strip().splitlines()[-1]))
    results = {}
    for batch in map(str, args.batches):
        old, new = ([run[batch] for run in runs[side]] for side in ("old", "new"))
        results[f"batch_{batch}"] = {
            "old_frames_per_second": round(statistics.median(old), 2),
            "new_frames_per_second": round(statistics.median(new), 2),
            "speedup_of_medians": round(statistics.median(new) / statistics.median(old), 2),
            "speedup_median_of_pairs": round(statistics.median(n / o for n, o in zip(new, old, strict=True)), 2),
        }
    return results


def load_model(checkpoint: str | None, device: str) -> EmoTalkModel:
    if checkpoint and Path(checkpoint).is_dir():
        return EmoTalkModel.from_pretrained(checkpoint).eval().to(device)
    torch.manual_seed(0)
    return EmoTalkModel(EmoTalkConfig()).eval().to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model folder (random weights if absent)"
    )
    parser.add_argument("--reference-ref", default=None, help="git commit whose stage 2 to time side by side")
    parser.add_argument(
        "--reference-checkpoint", default=None, help="model folder whose stage 2 (today's code) to time side by side"
    )
    parser.add_argument("--psnr-ref", nargs="*", default=[], help="git commits to compare the frames with (untimed)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--skip-stage1", action="store_true")
    parser.add_argument(
        "--blink", action="store_true", help="the driving frames also close the eyes (rigid lashes' cost)"
    )
    parser.add_argument(
        "--process-pairs", type=int, default=0, help="also time old and new in N pairs of fresh processes"
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="time calls by wall or CPU time")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process ABAB (with --process-pairs)")
    parser.add_argument("--side", choices=("old", "new"), default=None, help=argparse.SUPPRESS)  # a child
    args = parser.parse_args()
    if args.reference_checkpoint and (args.reference_ref or args.process_pairs):
        parser.error(
            "--reference-checkpoint times today's code in this process: not with --reference-ref or --process-pairs"
        )
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.side:
        print(json.dumps(side_alone(args)))
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.checkpoint, device)
    stage1, stage2 = model.landmark_model, model.generator
    results = {
        "device": device if device == "cuda" else f"cpu ({torch.get_num_threads()} threads, {platform.processor()})",
        "clock": args.clock,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "parameters": {
            "stage1_landmark_model": sum(p.numel() for p in stage1.parameters()),
            "stage1_audio_encoder": sum(p.numel() for p in stage1.audio_encoder.parameters()),
            "stage2_generator": sum(p.numel() for p in stage2.parameters()),
        },
    }
    old = reference_generator(args.reference_ref, stage2) if args.reference_ref else None
    if args.reference_checkpoint:
        old = load_model(args.reference_checkpoint, device).generator
    with torch.inference_mode():
        inputs = astronaut_inputs(stage2.config.image_size, max(args.batches), device, args.blink)
        results["matmul_1024_gflops"] = round(matmul_gflops(args.repeats, device), 1)
    with torch.no_grad():  # the flop counter dispatches on autograd-free tensors, not inference tensors
        flops = {"new": gflop_per_frame(stage2, stage2.encode_source(*inputs[:2]), inputs[2][:8])}
        if old is not None:
            flops["old"] = gflop_per_frame(old, old.encode_source(*inputs[:2]), inputs[2][:8])
    with torch.inference_mode():
        in_process = [] if args.no_in_process else args.batches
        stage2_results = stage2_side_by_side(stage2, old, inputs, in_process, args.repeats)
        for row in stage2_results.values():
            for name in [k for k in row if k.endswith("_frames_per_second")]:
                side = name.removesuffix("_frames_per_second")
                row[f"{side}_gflops"] = round(flops[side.removesuffix("_float32")] * row[name], 1)
        results["stage2"] = {"gflop_per_frame": {k: round(v, 3) for k, v in flops.items()}, **stage2_results}
        if old is not None and in_process and reuse_freed_memory():  # the same ABAB, the allocator set for both
            tuned = stage2_side_by_side(stage2, old, inputs, in_process, args.repeats)
            results["stage2_both_reusing_freed_memory"] = tuned
        for ref in args.psnr_ref:
            results["stage2"][f"new_psnr_db_vs_{ref}"] = psnr_against(ref, stage2, inputs)
        if not args.skip_stage1:
            canonical, frame = canonicalize(inputs[1])
            results["stage1"] = {}
            for seconds_of_audio in (5, 10, 30):
                audio = 0.1 * torch.randn(1, 16000 * seconds_of_audio, device=device)
                seconds = median_seconds(
                    lambda a=audio: stage1(a, reference_landmarks=canonical, reference_frame=frame), args.repeats
                )
                results["stage1"][f"{seconds_of_audio}s_audio_times_real_time"] = round(seconds_of_audio / seconds, 1)
    if old is not None and args.process_pairs:
        results["stage2_processes"] = process_pairs(args, args.process_pairs)
        for row in results["stage2_processes"].values():
            for side in ("old", "new"):
                row[f"{side}_gflops"] = round(flops[side] * row[f"{side}_frames_per_second"], 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
