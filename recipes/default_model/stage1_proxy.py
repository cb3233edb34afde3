"""Landmark-level stage-1 check (no rendering): lip-sync proxies and the 8-label emotion test on predicted landmarks.

    python -m recipes.default_model.stage1_proxy --models run5=<stage-1 folder> cand=<stage-1 folder> \
        --output outputs/stage1_proxy [--corpus outputs/corpus] [--max-seconds 60] [--no-emotion]

Each model is a stage-1 ``save_pretrained`` folder (``EmoTalkLandmarkModel``) or a composite folder; it replaces
the landmark model of the default pipeline, which then predicts the landmarks of ``skimage.data.astronaut()``
driven by each held-out real clip of the corpus (``heldout.jsonl``, up to ``--max-seconds``), ``emotion="neutral"``,
``pose="still"``, seed 0. The frames are never rendered: the lip aperture is the evaluation's own measure
(``lip_opening_2d``) on the predicted landmarks, and the phone segments are the suite's phone loop on the audio
(cached per clip under ``--output``), scored by ``emotalk_evaluation.lipsync.lipsync_scores``. The emotion test feeds
the landmarks predicted at intensity 1 for each label (V-Express short case 10, first 10 s; ``photo_expression``
"keep" and "replace") to the suite's relative emotion classifier, with the photo's own landmarks as the reference.
Results accumulate in ``--output``/results.json (a model name already there is not recomputed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .evaluate_stage1 import AUDIO_ONLY, DEFAULT_CORPUS, heldout, load_audio

FPS = 25.0
# the emotion test in both photo-expression modes: "keep" is how STAGE1.md's run-5 check was made (before the
# photo-expression estimator existed); "replace" (the pipeline default) also removes the astronaut's own smile
PHOTO_EXPRESSION_MODES = ("keep", "replace")


def load_stage1(folder: str):
    """The ``EmoTalkLandmarkModel`` of a stage-1 folder or of a composite folder."""
    from emotalk_training.utils import load_stage

    return load_stage(folder, "landmark").eval()


def predict(pipe, image: np.ndarray, audio: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Crop-space landmarks ``(T, 478, 3)`` of the pipeline (not rendered) and the photo's own ``(478, 3)``."""
    out = pipe(image, {"array": audio, "sampling_rate": 16000}, progress=False, **kwargs)
    face = pipe.face_processor(pipe.face_processor.load_image(image))
    return out.landmarks, face.landmarks


def phone_segments_cached(audio: np.ndarray, cache: Path):
    """The suite's phone-loop segments of ``audio``, cached as JSON in ``cache``."""
    from emotalk_common.alignment import PhoneSegment, phone_segments

    if cache.is_file():
        return [PhoneSegment(*s) for s in json.loads(cache.read_text())]
    segments, _ = phone_segments(audio, 16000, None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps([[s.phone, s.start, s.end] for s in segments]))
    return segments


def lipsync_of(landmarks: np.ndarray, audio: np.ndarray, segments) -> dict:
    """The suite's lip-sync proxies of predicted landmarks."""
    from emotalk_common.lip_measures import lip_opening_2d
    from emotalk_evaluation.lipsync import audio_envelope, lipsync_scores

    aperture = lip_opening_2d(landmarks)
    envelope = audio_envelope(audio, 16000, FPS, len(aperture))
    return lipsync_scores(aperture, segments, envelope, FPS, seed=0).to_dict()


def emotion_of(landmarks: np.ndarray, photo: np.ndarray, label: str) -> dict:
    """The suite's relative emotion classifier on predicted landmarks (the photo's landmarks as reference)."""
    from emotalk_evaluation import emotion as emotion_module

    reference = emotion_module.reference_features(photo[None])
    prototypes = emotion_module.load_prototypes(relative=True)
    return emotion_module.emotion_scores(emotion_module.expression_features(landmarks), label, prototypes, reference)


def summary_line(name: str, items: list[dict]) -> str:
    """Means over clips of lift, AUC, peak correlation and lag."""

    def mean(key: str) -> float:
        values = [m[key] for m in items if m.get(key) is not None and np.isfinite(m[key])]
        return float(np.mean(values)) if values else float("nan")

    return (
        f"| {name} | {len(items)} | {mean('closure_lift'):.3f} | {mean('vowel_bilabial_auc'):.3f} | "
        f"{mean('lag_correlation'):.3f} | {mean('lag_frames'):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="name=folder (stage-1 or composite)")
    parser.add_argument("--output", default="outputs/stage1_proxy")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--no-emotion", action="store_true", help="skip the 8-label emotion test")
    args = parser.parse_args()

    import emotalk_pipeline  # noqa: F401
    from emotalk_common.constants import EMOTION_LABELS
    from skimage import data
    from transformers import pipeline

    image = data.astronaut()
    corpus, output = Path(args.corpus), Path(args.output)
    records = heldout(corpus)
    pipe = pipeline("emotional-talking-face")
    audios = {clip: load_audio(corpus, record, args.max_seconds) for clip, record in records.items()}
    segments = {clip: phone_segments_cached(audios[clip], output / "phones" / f"{clip}.json") for clip in records}
    results_path = output / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    lines = [
        "| model | clips | closure lift | vowel/bilabial AUC | peak A–V corr | lag |",
        *["| --- |" + " ---: |" * 5],
    ]
    for spec in args.models:
        name, _, folder = spec.partition("=")
        start = time.time()
        pipe.model.landmark_model = load_stage1(folder)
        row = results.setdefault(name, {"folder": folder, "lipsync": {}, "emotion": {}})
        for clip in records:
            if clip not in row["lipsync"]:
                landmarks, _ = predict(pipe, image, audios[clip], emotion="neutral", pose="still", seed=0)
                row["lipsync"][clip] = lipsync_of(landmarks, audios[clip], segments[clip])
        if not args.no_emotion:
            audio = audios[AUDIO_ONLY[0]][: 10 * 16000]
            for mode in PHOTO_EXPRESSION_MODES:
                for label in EMOTION_LABELS:
                    key = f"{mode}/{label}"
                    if key not in row["emotion"]:
                        landmarks, photo = predict(
                            pipe, image, audio, emotion=label, intensity=1.0, pose="still", seed=0,
                            photo_expression=mode,
                        )  # fmt: skip
                        scores = emotion_of(landmarks, photo, label)
                        row["emotion"][key] = {k: scores.get(k) for k in ("predicted", "frame_accuracy")}
        output.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1, default=float))
        lines.append(summary_line(name, list(row["lipsync"].values())))
        for mode in PHOTO_EXPRESSION_MODES:
            items = {k.partition("/")[2]: v for k, v in row["emotion"].items() if k.startswith(f"{mode}/")}
            if items:
                right = sum(v["predicted"] == k for k, v in items.items())
                at_90 = sum(v["predicted"] == k and v["frame_accuracy"] >= 0.9 for k, v in items.items())
                accuracy = np.mean([v["frame_accuracy"] for v in items.values()])
                lines.append(
                    f"|   emotion, photo_expression={mode}: {right}/{len(items)} predicted, {at_90} at ≥ 90 %, "
                    f"mean frame accuracy {accuracy:.2f} | | | | | |"
                )
        print(lines[-1], f"({time.time() - start:.0f} s)", flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
