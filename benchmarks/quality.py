"""Quality benchmark: EmoTalk's default model on the development media, next to three reference rows.

    python benchmarks/quality.py --media ../shared/media --output-dir outputs/quality --limit 3

Two sets, both from ``../shared/media`` (real media, internal use only; nothing is copied):

- *talking videos*: real talking-face videos with real speech. The first frame is the source photo and the
  audio the driver, so the rest of the video is ground truth (M-LMD, F-LMD, PSNR, SSIM).
- *portraits × speech*: real portraits paired with real English speech; requested emotions cycle through
  the 8 MEAD classes (seeded), giving the emotion accuracy. No ground truth.

Rows, each measured by the same suite (``emotalk_evaluation``):

- ``real video (ceiling)``: the real video itself with its own audio;
- ``still image (floor)``: the source frame repeated for the length of the audio;
- ``wrong audio (negative control)``: the real video's frames with another clip's speech;
- ``EmoTalk (default model)``: the pipeline's output (``--skip-model`` leaves it out).

Writes ``quality.md`` (the table for the README), ``results.json`` / ``results.md`` and plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from emotalk_common.constants import SAMPLING_RATE
from emotalk_common.video_io import load_image, read_audio, read_frames
from emotalk_evaluation.emotion import EMOTIONS, PROTOTYPES_FILE
from emotalk_evaluation.evaluate import VideoEvaluation, evaluate_frames
from emotalk_evaluation.report import COLUMNS, TABLE_NOTE, aggregate, markdown_table, write_report

DEFAULT_MEDIA = Path(__file__).resolve().parents[1] / ".." / "shared" / "media"
STILL_FPS = 25.0


def talking_videos(media: Path) -> list[Path]:
    """Real talking-face videos with real speech, from the media manifest's notes."""
    manifest = json.loads((media / "manifest.json").read_text())
    out = []
    for entry in manifest:
        notes = entry.get("notes", "").lower()
        if entry.get("kind") != "video" or "audio yes" not in notes:
            continue
        if "music" in notes or "multiple people" in notes or "single frontal talking face: no" in notes:
            continue
        out.append(media / entry["file"])
    return sorted(out)


def portraits_and_speech(media: Path) -> tuple[list[Path], list[Path]]:
    """Single-face real portraits (≥ 256 px, face ≥ 10 % of the image) and English speech clips."""
    manifest = json.loads((media / "manifest.json").read_text())
    photos, speech = [], []
    for entry in manifest:
        notes = entry.get("notes", "")
        if entry.get("kind") == "photo" and "haar faces=1," in notes and "real" in notes:
            area = float(notes.split("face area=")[1].split()[0].rstrip(",")) if "face area=" in notes else 0.0
            width, height = (int(v) for v in entry["dims"].split("x"))
            if area >= 0.1 and min(width, height) >= 256:
                photos.append(media / entry["file"])
        elif entry.get("kind") == "speech" and notes.startswith("lang=en") and "noisy" not in entry["file"]:
            speech.append(media / entry["file"])
    return sorted(photos), sorted(speech)


def spread(items: list, limit: int | None) -> list:
    """Up to ``limit`` items spread evenly over the (sorted) list, so a subset still mixes sources."""
    if limit is None or limit >= len(items):
        return list(items)
    indices = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in indices]


def fit_audio(audio: np.ndarray, seconds: float) -> np.ndarray:
    """Loop or trim audio to ``seconds``."""
    count = round(seconds * SAMPLING_RATE)
    if len(audio) == 0:
        raise ValueError("empty audio")
    return np.tile(audio, count // len(audio) + 1)[:count].astype(np.float32)


class Benchmark:
    """Runs the rows and keeps the evaluations per condition."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.groups: dict[str, list[VideoEvaluation]] = {}
        self.failures: list[dict] = []
        self.pipe = None
        self.video_dir = Path(args.output_dir) / "videos"

    def add(self, label: str, evaluation: VideoEvaluation) -> None:
        """Record one evaluation under a table row."""
        evaluation.metrics["condition"] = label
        self.groups.setdefault(label, []).append(evaluation)

    def evaluate(self, frames, fps, **kwargs) -> VideoEvaluation:
        """The suite on arrays, with this run's settings."""
        return evaluate_frames(frames, fps, seed=self.args.seed, reference_stride=self.args.reference_stride, **kwargs)

    def generate(self, image: np.ndarray, audio: np.ndarray, emotion: str, name: str):
        """Run the default model; returns ``(frames, fps)`` of the saved MP4 (what users get)."""
        from emotalk_evaluation.generation import generate_video, load_pipeline

        if self.pipe is None:
            self.pipe = load_pipeline(self.args.model, trust_remote_code=self.args.trust_remote_code)
        path = generate_video(self.pipe, image, audio, self.video_dir / f"{name}.mp4", emotion=emotion,
                              seed=self.args.seed)  # fmt: skip
        return read_frames(path, max_side=self.args.max_side)

    def run_talking_videos(self, videos: list[Path]) -> None:
        """Ceiling, floor, wrong-audio and model rows on real talking videos (first frame = source)."""
        clips = []
        for path in videos:
            frames, fps = read_frames(path, max_side=self.args.max_side, max_seconds=self.args.max_seconds)
            audio = read_audio(path, max_seconds=len(frames) / fps)
            clips.append((path, frames, fps, audio))
        for index, (path, frames, fps, audio) in enumerate(clips):
            name = path.stem
            source = frames[0]
            other = clips[(index + 1) % len(clips)]
            wrong = fit_audio(other[3], len(frames) / fps) if len(clips) > 1 else audio[::-1].copy()
            still = np.repeat(source[None], len(frames), axis=0)
            common = {"source_image": source, "ground_truth": frames, "name": name}
            rows = [
                ("talking videos · real video (ceiling)", self.evaluate, (frames, fps), {"audio": audio, **common}),
                ("talking videos · still image (floor)", self.evaluate, (still, fps), {"audio": audio, **common}),
                ("talking videos · wrong audio (negative control)", self.evaluate, (frames, fps),
                 {"audio": wrong, **common}),
            ]  # fmt: skip
            if not self.args.skip_model:
                rows.append(("talking videos · EmoTalk (default model)", self._model_row,
                             (source, audio, "neutral", name), {"ground_truth": (frames, fps)}))  # fmt: skip
            self._run_rows(name, rows)

    def _model_row(self, source, audio, emotion, name, ground_truth=None) -> VideoEvaluation:
        generated, fps = self.generate(source, audio, emotion, name)
        truth = None
        if ground_truth is not None:
            real, real_fps = ground_truth
            # Resample the ground truth to the generated frame rate (nearest earlier frame).
            from emotalk_common.video_io import resample_indices

            truth = real[resample_indices(len(real), real_fps, fps)]
        return self.evaluate(generated, fps, audio=audio, source_image=source, ground_truth=truth,
                             emotion=emotion, name=name)  # fmt: skip

    def run_portraits(self, photos: list[Path], speech: list[Path]) -> None:
        """Floor and model rows on real portraits × real speech, with requested emotions cycling over MEAD's 8."""
        rng = np.random.default_rng(self.args.seed)
        emotions = list(rng.permutation(EMOTIONS))
        count = min(len(photos), len(speech), self.args.limit or len(photos))
        photos, speech = spread(photos, count), spread(speech, count)
        for index, (photo, clip) in enumerate(zip(photos, speech, strict=True)):
            image = load_image(photo)
            audio = read_audio(clip, max_seconds=self.args.max_seconds)
            emotion = emotions[index % len(emotions)]
            name = f"{photo.stem[:40]}×{clip.stem[:30]}"
            still = np.repeat(image[None], round(len(audio) / SAMPLING_RATE * STILL_FPS), axis=0)
            rows = [("portraits × speech · still image (floor)", self.evaluate, (still, STILL_FPS),
                     {"audio": audio, "source_image": image, "emotion": emotion, "name": name})]  # fmt: skip
            if not self.args.skip_model:
                rows.append(("portraits × speech · EmoTalk (default model)", self._model_row,
                             (image, audio, emotion, name), {}))  # fmt: skip
            self._run_rows(name, rows)

    def _run_rows(self, name: str, rows) -> None:
        for label, function, args, kwargs in rows:
            start = time.perf_counter()
            try:
                self.add(label, function(*args, **kwargs))
                print(f"[{time.perf_counter() - start:5.1f} s] {label}: {name}", file=sys.stderr)
            except Exception as error:  # keep the other rows when one fails (e.g. the model is not ready)
                self.failures.append({"condition": label, "name": name, "error": f"{type(error).__name__}: {error}"})
                print(f"FAILED {label}: {name}: {error}", file=sys.stderr)


def emotion_validation_table() -> str:
    """The cross-actor validation of the emotion classifier, from the calibration file."""
    data = json.loads(PROTOTYPES_FILE.read_text())
    lines = ["| fit on → test on | relative, clip reference | relative, single-frame reference | absolute |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for entry in data["validation"]:
        cells = [
            f"{entry[k]['frame_accuracy']:.2f} (clips {entry[k]['clip_accuracy']:.2f})"
            for k in ("relative_clip_reference", "relative_single_frame_reference", "absolute")
        ]
        lines.append(f"| {entry['train']} → {entry['test']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nFrame accuracy (clip accuracy in brackets); chance {data['chance_level']:.3f}.\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--media", default=str(DEFAULT_MEDIA), help="the development media folder (with manifest.json)"
    )
    parser.add_argument("--output-dir", default="outputs/quality", help="where the table, JSON and plots go")
    parser.add_argument("--limit", type=int, help="at most N items per set (spread over the sources)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="evaluate only the first N seconds")
    parser.add_argument("--max-side", type=int, default=720, help="downscale larger frames for analysis (px)")
    parser.add_argument("--reference-stride", type=int, default=2, help="compare every n-th frame with ground truth")
    parser.add_argument("--sets", default="talking,portraits", help="comma-separated: talking, portraits")
    parser.add_argument("--skip-model", action="store_true", help="only the reference rows (no generation)")
    parser.add_argument("--model", help="model folder or Hub id (default: the pipeline's embedded default)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow running the code shipped inside --model (off by default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the table; returns 0, or 1 when some rows failed."""
    args = parse_args(argv)
    media = Path(args.media)
    if not (media / "manifest.json").is_file():
        print(f"no development media at {media} (expected manifest.json there)", file=sys.stderr)
        return 2
    sets = {s.strip() for s in args.sets.split(",") if s.strip()}
    unknown = sets - {"talking", "portraits"}
    if unknown:
        print(f"--sets: unknown {sorted(unknown)}; choose from talking, portraits", file=sys.stderr)
        return 2
    start = time.perf_counter()
    bench = Benchmark(args)
    if "talking" in sets:
        bench.run_talking_videos(spread(talking_videos(media), args.limit))
    if "portraits" in sets:
        bench.run_portraits(*portraits_and_speech(media))
    evaluations = [e for items in bench.groups.values() for e in items]
    if not evaluations:
        print("nothing was evaluated", file=sys.stderr)
        return 1
    output_dir = Path(args.output_dir)
    settings = {k: v for k, v in vars(args).items() if k != "media"}
    write_report(evaluations, output_dir, plots=not args.no_plots, title="EmoTalk quality benchmark",
                 groups=bench.groups, extra={"settings": settings, "failures": bench.failures})  # fmt: skip
    rows = [(f"{label} (n={len(items)})", aggregate(items)) for label, items in bench.groups.items()]
    table = markdown_table(rows, COLUMNS, first_header="condition")
    text = "\n".join([
        "## Quality benchmark (development set)\n",
        f"`python benchmarks/quality.py {' '.join(argv if argv is not None else sys.argv[1:])}` — "
        f"{time.perf_counter() - start:.0f} s.\n",
        table, TABLE_NOTE, "", "### Emotion classifier, cross-actor validation on MEAD\n", emotion_validation_table(),
    ])  # fmt: skip
    (output_dir / "quality.md").write_text(text)
    print(text)
    if bench.failures:
        print(f"{len(bench.failures)} rows failed; see {output_dir / 'results.json'}", file=sys.stderr)
    return 0 if not bench.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
