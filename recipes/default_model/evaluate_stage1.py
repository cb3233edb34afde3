"""Stage-1 evaluation on held-out real speech: model vs teacher vs untrained default vs real videos.

python -m recipes.default_model.evaluate_stage1 --rows model=outputs/stage1_candidate untrained=default teacher real \
    --output outputs/stage1_eval [--corpus outputs/corpus] [--media ../shared/media] [--max-seconds 10] \
    [--emotion-clip ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS

DEFAULT_CORPUS = "outputs/corpus"  # written by recipes.default_model.corpus
DEFAULT_MEDIA = str(
    Path(__file__).resolve().parents[2] / ".." / "shared" / "media"
)  # talking videos in <media>/videos
# held-out clips (never trained on) whose own talking video exists in the media folder, then audio-only ones
WITH_VIDEO = {
    "real_EDTalk-test-data-mouth-source": "EDTalk__test_data__mouth_source.mp4",
    "real_LatentSync-assets-demo1-audio": "LatentSync__assets__demo1_video.mp4",
    "real_LatentSync-assets-demo2-audio": "LatentSync__assets__demo2_video.mp4",
    "real_LatentSync-assets-demo3-audio": "LatentSync__assets__demo3_video.mp4",
}
AUDIO_ONLY = (
    "real_V-Express-test-samples-short-case-10-aud",
    "real_V-Express-test-samples-short-case-AOC-aud",
    "real_V-Express-test-samples-short-case-tys-aud",
)


def heldout(corpus: Path) -> dict:
    """The corpus's held-out records by clip id."""
    return {r["id"]: r for r in map(json.loads, (corpus / "heldout.jsonl").read_text().splitlines())}


def load_audio(corpus: Path, record: dict, max_seconds: float) -> np.ndarray:
    import soundfile

    audio, _ = soundfile.read(str(corpus / record["audio"]), dtype="float32", always_2d=True)
    return audio.mean(axis=1)[: int(max_seconds * 16000)]


def render_pipeline(pipe, image, audio, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    out = pipe(image, {"array": audio, "sampling_rate": 16000}, paste_back=True, progress=False, **kwargs)
    return out.frames, out.landmarks


def render_teacher(pipe, image, audio, phones, pose: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """teacher_landmarks on the photo's face, rendered by the pipeline's own generator."""
    import math

    import torch

    from modeling_emotalk.landmarks import canonicalize, relocate

    from .teacher import ArticulationTeacher

    inputs = pipe.preprocess({"image": image, "audio": {"array": audio, "sampling_rate": 16000}})
    face = inputs["face"]
    fps = 25.0
    num_frames = math.ceil(len(audio) / 16000 * fps)
    reference = torch.from_numpy(face.landmarks)[None]
    canonical, frame = canonicalize(reference)
    out = ArticulationTeacher().generate(
        phones, num_frames, fps, reference=canonical[0].double().numpy(), rng=seed, audio=audio
    )
    if pose == "still":
        out["head_pose"][:] = 0
    parts = [torch.from_numpy(out[k])[None] for k in ("expression", "head_pose", "gaze", "blink")]
    landmarks = relocate(canonical, *parts, frame)[0]
    outputs = {
        "image": inputs["image"],
        "face": face,
        "audio": inputs["audio"],
        "landmarks": landmarks,
        "emotion_weights": np.zeros((num_frames, 8), np.float32),
        "fps": fps,
        "seed": seed,
    }
    result = pipe.postprocess(outputs, paste_back=True, progress=False)
    return result.frames, result.landmarks


def score(frames, audio, source, emotion=None, groups=("lipsync", "emotion", "motion"), name="video") -> dict:
    from emotalk_evaluation import evaluate_frames

    return evaluate_frames(frames, 25.0, audio=audio, source_image=source, emotion=emotion, metrics=groups,
                           name=name).metrics  # fmt: skip


def save_frames(frames: np.ndarray, path: Path, count: int = 6) -> None:
    from PIL import Image

    picks = np.linspace(0, len(frames) - 1, count).astype(int)
    tiles = [Image.fromarray(frames[i][30:210, 140:300]).resize((256, 288)) for i in picks]  # astronaut's face
    sheet = Image.new("RGB", (256 * count, 288))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (256 * i, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def _finite_mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def summarize(results: dict) -> str:
    """Markdown table: per row (and pose), set means of closure lift, AUC, peak correlation, lag; blinks; head."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for key, value in results.items():
        name = key.partition("/")[0]
        if name == "emotion":
            continue
        for pose, metrics in value.items():
            if isinstance(metrics, dict):
                rows.setdefault((name, pose), []).append(metrics)
    lines = [
        "| row | pose | clips | closure lift | vowel/bilabial AUC | peak A–V corr | lag mean / median | blinks/min | "
        "head speed °/s | yaw std ° |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (name, pose), items in rows.items():
        sync = [m.get("lipsync") or {} for m in items]
        motion = [m.get("motion") or {} for m in items]
        lags = [s.get("lag_frames") for s in sync if s.get("lag_frames") is not None]
        lines.append(
            f"| {name} | {pose} | {len(items)} | {_finite_mean([s.get('closure_lift') for s in sync]):.3f} | "
            f"{_finite_mean([s.get('vowel_bilabial_auc') for s in sync]):.3f} | {_finite_mean([s.get('lag_correlation') for s in sync]):.3f} | "
            f"{_finite_mean(lags):.1f} / {float(np.median(lags)) if lags else float('nan'):.1f} | "
            f"{_finite_mean([m.get('blinks_per_minute') for m in motion]):.1f} | "
            f"{_finite_mean([m.get('rotation_speed_deg_s') for m in motion]):.1f} | {_finite_mean([m.get('yaw_std_deg') for m in motion]):.2f} |"
        )
    emotions = {k.split("/", 1)[1]: v["emotion"] for k, v in results.items() if k.startswith("emotion/")}
    if emotions:
        correct = sum(v["predicted"] == label for label, v in emotions.items())
        accuracy = np.mean([v["frame_accuracy"] for v in emotions.values()])
        lines.append("")
        lines.append(
            f"emotion labels: {correct}/{len(emotions)} predicted right, mean frame accuracy {accuracy:.2f}; "
            + ", ".join(f"{label} → {v['predicted']} {v['frame_accuracy']:.2f}" for label, v in emotions.items())
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", nargs="+", required=True, help="name=model_folder|default, teacher, real")
    parser.add_argument("--output", default="outputs/stage1_eval")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help="the speech corpus folder (its heldout.jsonl)")
    parser.add_argument("--media", default=DEFAULT_MEDIA, help="the development media (the real row's videos)")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--emotion-model", default=None, help="folder for the 8-label emotion test")
    parser.add_argument("--emotion-clip", default=AUDIO_ONLY[0])
    parser.add_argument("--natural-clips", type=int, default=2, help="clips also rendered with pose natural")
    parser.add_argument("--clips", nargs="*", default=None)
    parser.add_argument("--summary", action="store_true", help="print the table of --output's results and stop")
    args = parser.parse_args()
    if args.summary:
        print(summarize(json.loads((Path(args.output) / "results.json").read_text())))
        return
    import emotalk_pipeline  # noqa: F401
    from skimage import data
    from transformers import pipeline

    image = data.astronaut()
    corpus, media = Path(args.corpus), Path(args.media) / "videos"
    records = heldout(corpus)
    clips = args.clips or [*WITH_VIDEO, *AUDIO_ONLY]
    output = Path(args.output)
    results_path = output / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}

    def save():
        output.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1, default=float))

    for row in args.rows:
        name, _, folder = row.partition("=")
        pipe = None
        if name != "real":
            model = None if folder in ("", "default") else folder
            pipe = (
                pipeline("emotional-talking-face")
                if model is None
                else pipeline("emotional-talking-face", model=model)
            )
        for number, clip in enumerate(clips):
            key = f"{name}/{clip}"
            if key in results:
                continue
            start = time.time()
            record = records[clip]
            audio = load_audio(corpus, record, args.max_seconds)
            if name == "real":
                if clip not in WITH_VIDEO:
                    continue
                from emotalk_evaluation import evaluate_video

                video = media / WITH_VIDEO[clip]
                from emotalk_common.video_io import probe

                own = None if probe(video).has_audio else audio  # EDTalk's mouth_source.mp4 is silent: its wav
                metrics = evaluate_video(
                    video, audio=own, max_seconds=args.max_seconds, metrics=("lipsync", "motion")
                ).metrics
                metrics["audio_source"] = "video track" if own is None else record["audio"]
                results[key] = {"still": metrics}
            else:
                poses = ["still", "natural"] if number < args.natural_clips else ["still"]
                results[key] = {}
                for pose in poses:
                    if name == "teacher":
                        frames, _ = render_teacher(pipe, image, audio, record["phones"], pose)
                    else:
                        frames, _ = render_pipeline(pipe, image, audio, emotion="neutral", pose=pose, seed=0)
                    if pose == "still" and number < 3:
                        save_frames(frames, output / "frames" / f"{name}_{clip}.png")
                    results[key][pose] = score(frames, audio, image, "neutral", name=key)
            results[key]["seconds"] = time.time() - start
            print(key, json.dumps({p: v.get("lipsync") for p, v in results[key].items() if isinstance(v, dict)},
                                  default=float)[:400], flush=True)  # fmt: skip
            save()
    if args.emotion_model:
        pipe = pipeline("emotional-talking-face", model=args.emotion_model)
        audio = load_audio(corpus, records[args.emotion_clip], args.max_seconds)
        for label in EMOTIONS:
            key = f"emotion/{label}"
            if key in results:
                continue
            frames, _ = render_pipeline(pipe, image, audio, emotion=label, intensity=1.0, pose="still", seed=0)
            results[key] = score(frames, audio, image, label, groups=("emotion",), name=key)
            save_frames(frames, output / "frames" / f"emotion_{label}.png", count=3)
            print(key, results[key]["emotion"]["predicted"], results[key]["emotion"]["frame_accuracy"], flush=True)
            save()
    save()


if __name__ == "__main__":
    main()
