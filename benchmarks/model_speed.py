"""Model-level speed of the default configuration: parameter counts, stage-2 frames/s, stage-1 real-time factor.

    python benchmarks/model_speed.py [--repeats 5] [--threads N] [--json out.json]

Whole forward passes, medians over repeats, no gradient, float32 on CPU (or CUDA when available).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from modeling_emotalk import EmoTalkConfig, EmoTalkModel
from modeling_emotalk.landmarks import canonicalize


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = EmoTalkModel(EmoTalkConfig()).eval().to(device)
    stage1, stage2 = model.landmark_model, model.generator
    size = stage2.config.image_size
    landmarks = (torch.rand(1, 478, 3, device=device) - 0.5) * 0.8
    canonical, frame = canonicalize(landmarks)
    results = {
        "device": device if device == "cuda" else f"cpu ({torch.get_num_threads()} threads, {platform.processor()})",
        "parameters": {
            "stage1_landmark_model": sum(p.numel() for p in stage1.parameters()),
            "stage1_audio_encoder": sum(p.numel() for p in stage1.audio_encoder.parameters()),
            "stage2_generator": sum(p.numel() for p in stage2.parameters()),
        },
        "stage2": {},
        "stage1": {},
    }
    with torch.inference_mode():
        source = stage2.encode_source(torch.rand(1, 3, size, size, device=device), landmarks)
        for batch in (1, 8, 16):
            driving = landmarks + 0.01 * torch.randn(batch, 478, 3, device=device)
            seconds = median_seconds(lambda d=driving: stage2(source=source, driving_landmarks=d), args.repeats)
            results["stage2"][f"batch_{batch}_frames_per_second"] = round(batch / seconds, 1)
        for seconds_of_audio in (5, 10, 30):
            audio = 0.1 * torch.randn(1, 16000 * seconds_of_audio, device=device)
            seconds = median_seconds(
                lambda a=audio: stage1(a, reference_landmarks=canonical, reference_frame=frame), args.repeats
            )
            results["stage1"][f"{seconds_of_audio}s_audio_times_real_time"] = round(seconds_of_audio / seconds, 1)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
