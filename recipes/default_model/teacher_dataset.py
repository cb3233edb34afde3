"""Stage-1 dataset from the speech corpus and the articulation teacher (no talking-face video needed).

    python -m recipes.default_model.teacher_dataset --corpus outputs/corpus --output outputs/teacher_dataset \
        [--faces ../shared/media/photos ...] [--no-astronaut] [--limit N] [--seed 0] [--overwrite]

Writes the dataset format of ``emotalk prepare`` (``index.json`` + ``shards/<id>.safetensors``, see
``training/README.md``), so ``training/train_landmarks.py`` trains on it unchanged. Per corpus clip:

- ``landmarks`` ``(T, 478, 3)``: the teacher's motion (:func:`recipes.default_model.teacher.teacher_landmarks`:
  visemes, coarticulation, bilabial closure, emotion offsets, head sway, blinks, gaze) relocated onto a reference
  face drawn from a pool of identities (crop-space landmarks of real portraits, detected once with
  :class:`modeling_emotalk.face_processing.FaceProcessor` and cached in ``<output>/references.npz``), with a small
  random similarity jitter of the reference (scale, shift, in-plane rotation) and a random articulation gain;
- ``audio`` ``(N,)``: the clip's 16 kHz audio, ``N = round(T / fps * 16000)`` (zero-padded / trimmed);
- ``frame_valid`` ``(T,)``: all True; ``crop_matrices`` ``(T, 2, 3)``: the identity scaled to ``crop_size``
  (there is no source video);
- emotion: the corpus clip's prosody preset as the label (``emotion_known``), applied at a random intensity
  (``--min-intensity``..1, the clip's ``intensity``); real clips (no preset) are neutral with the label unknown.

Stage-1 only: the shards hold no ``crops`` / ``image_landmarks`` (stage 1 reads neither; stage 2 cannot train on
this dataset), and ``index.json`` says so in ``settings.stage1_only``. ``manifest.jsonl`` clips are the ``train``
split; ``heldout.jsonl`` clips (real speech never trained on) become the ``test`` split, which the training script
never reads and uses for validation only (``--no-heldout`` leaves them out).

Seeded (each clip's draws come from ``(seed, crc32(clip id))``, independent of order) and resumable: the index is
rewritten every ``--flush-every`` clips and a re-run skips clips whose shard exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS
from emotalk_common.constants import SAMPLING_RATE
from emotalk_training.data import CLIP_PHONES, CLIP_REFERENCES
from emotalk_training.prepare import DATASET_FORMAT_VERSION, INDEX_NAME, _write_json, write_shard

from modeling_emotalk.errors import EmoTalkInputError

DEFAULT_FACES = (str(Path(__file__).resolve().parents[2] / ".." / "shared" / "media" / "photos"),)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ------------------------------------------------------------------------------------------------ references
def detect_references(faces: list[str], astronaut: bool = True, crop_size: int = 256) -> tuple[np.ndarray, list]:
    """Crop-space landmarks ``(F, 478, 3)`` of the portraits in ``faces`` (folders or files) and their names."""
    from modeling_emotalk.face_processing import FaceProcessor

    processor = FaceProcessor(crop_size=crop_size)
    images: list[tuple[str, object]] = []
    if astronaut:
        from skimage import data

        images.append(("skimage:astronaut", data.astronaut()))
    for entry in faces:
        path = Path(entry)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        images.extend((str(p), str(p)) for p in files)
    landmarks, names = [], []
    for name, image in images:
        try:
            face = processor(image)
        except EmoTalkInputError as error:  # no face, an unreadable image: that portrait is left out
            print(f"no face in {name}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        landmarks.append(np.asarray(face.landmarks, dtype=np.float32))
        names.append(name)
    processor.close()
    if not landmarks:
        raise ValueError("no reference face found")
    return np.stack(landmarks), names


def load_references(output: Path, faces: list[str], astronaut: bool, crop_size: int) -> tuple[np.ndarray, list]:
    """The cached reference landmarks of ``output`` (detected once)."""
    cache = output / "references.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return data["landmarks"], [str(n) for n in data["names"]]
    landmarks, names = detect_references(faces, astronaut, crop_size)
    output.mkdir(parents=True, exist_ok=True)
    np.savez(cache, landmarks=landmarks, names=np.array(names))
    return landmarks, names


def jitter_reference(reference: np.ndarray, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
    """A random similarity (scale ±5 %, shift ±0.04, rotation ±4°) of crop-space landmarks about their centre."""
    if amount <= 0:
        return reference.astype(np.float32)
    centre = reference[:, :2].mean(axis=0)
    scale = 1.0 + amount * rng.uniform(-0.05, 0.05)
    angle = np.deg2rad(amount * rng.uniform(-4.0, 4.0))
    shift = amount * rng.uniform(-0.04, 0.04, size=2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    out = reference.astype(np.float64).copy()
    out[:, :2] = (out[:, :2] - centre) @ rotation.T * scale + centre + shift
    out[:, 2] *= scale
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------ clips
def read_wav(path: Path) -> np.ndarray:
    """Mono float32 audio of a 16 kHz wav."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLING_RATE:
        raise ValueError(f"{path} is {rate} Hz, expected {SAMPLING_RATE}")
    return audio.mean(axis=1).astype(np.float32)


def clip_seed(seed: int, clip_id: str) -> np.random.Generator:
    return np.random.default_rng((int(seed), zlib.crc32(clip_id.encode())))


def draw_clip(record: dict, rng: np.random.Generator, references: np.ndarray, min_intensity: float) -> tuple:
    """The clip's random draws (in this order): emotion intensity, reference face, its jitter, articulation gain."""
    preset = record.get("emotion")
    known = preset in EMOTIONS
    emotion = preset if known else "neutral"
    intensity = 1.0 if emotion == "neutral" else float(rng.uniform(min_intensity, 1.0))
    face = int(rng.integers(len(references)))
    reference = jitter_reference(references[face], rng)
    gain = float(rng.uniform(0.85, 1.15))
    return emotion, known, intensity, face, reference, gain


def clip_reference(record: dict, references: np.ndarray, seed: int, min_intensity: float) -> np.ndarray:
    """The clip's neutral reference face ``(478, 3)`` (the "photo" the teacher's motion is relative to)."""
    return draw_clip(record, clip_seed(seed, record["id"]), references, min_intensity)[4]


def convert_clip(
    record: dict,
    corpus: Path,
    references: np.ndarray,
    teacher: object,
    fps: float,
    seed: int,
    min_intensity: float,
    split: str,
) -> tuple[dict[str, np.ndarray], dict]:
    """The shard arrays and index entry of one corpus record."""
    from .teacher import teacher_landmarks

    rng = clip_seed(seed, record["id"])
    audio = read_wav(corpus / record["audio"])
    num_frames = max(2, round(len(audio) / SAMPLING_RATE * fps))
    num_samples = round(num_frames / fps * SAMPLING_RATE)
    padded = np.zeros(num_samples, dtype=np.float32)
    padded[: min(num_samples, len(audio))] = audio[:num_samples]
    emotion, known, intensity, face, reference, gain = draw_clip(record, rng, references, min_intensity)
    landmarks = teacher_landmarks(
        reference,
        record["phones"],
        num_frames,
        fps,
        teacher=teacher,
        emotion=emotion,
        intensity=intensity,
        rng=rng,
        audio=padded,
        articulation_gain=gain,
    ).astype(np.float32)
    arrays = {
        "landmarks": landmarks,
        "audio": padded,
        "frame_valid": np.ones(num_frames, dtype=bool),
        "crop_matrices": np.tile(np.eye(2, 3, dtype=np.float32), (num_frames, 1, 1)),
    }
    entry = {
        "id": record["id"],
        "shard": f"shards/{record['id']}.safetensors",
        "video": record["audio"],
        "source": str((corpus / record["audio"]).resolve()),
        "split": split,
        "start_frame": 0,
        "num_frames": num_frames,
        "start_seconds": 0.0,
        "num_samples": num_samples,
        "has_audio": True,
        "audio_mean": float(padded.mean()),
        "audio_std": float(padded.std()),
        "valid_fraction": 1.0,
        "speaker": str(record.get("voice") or record.get("source") or "real"),
        "emotion": emotion,
        "emotion_known": bool(known),
        "intensity": intensity,
        "label_source": "teacher" if known else "custom",
        "reference_face": face,
        "articulation_gain": gain,
        "corpus_source": record.get("source"),
    }
    return arrays, entry


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ run
def _content(settings: dict) -> dict:
    """The settings that shape the shards (not ``generator``, the module name, which moved out of the package)."""
    return {key: value for key, value in settings.items() if key != "generator"}


def run(args: argparse.Namespace) -> int:
    import soundfile

    from .teacher import ArticulationTeacher

    corpus, output = Path(args.corpus), Path(args.output)
    records = [(r, "train") for r in read_manifest(corpus / "manifest.jsonl")]
    if args.limit is not None:
        records = records[: args.limit]
    if not args.no_heldout:
        records += [(r, "test") for r in read_manifest(corpus / "heldout.jsonl")]
    if not records:
        print(f"no clips in {corpus}", file=sys.stderr)
        return 1
    settings = {
        "fps": args.fps,
        "crop_size": args.crop_size,
        "seed": args.seed,
        "min_intensity": args.min_intensity,
        "faces": [str(Path(f).resolve()) for f in args.faces],
        "astronaut": not args.no_astronaut,
        "corpus": str(corpus.resolve()),
        "stage1_only": True,
        "generator": "recipes.default_model.teacher_dataset",
    }
    index_path = output / INDEX_NAME
    if args.overwrite and output.exists():
        import shutil

        shutil.rmtree(output)
    index = json.loads(index_path.read_text()) if index_path.is_file() else None
    if index is not None and _content(index.get("settings") or {}) != _content(settings):
        print(f"{output} was written with other settings: pass --overwrite", file=sys.stderr)
        return 2
    if index is None:
        index = {
            "format_version": DATASET_FORMAT_VERSION,
            "fps": args.fps,
            "crop_size": args.crop_size,
            "sampling_rate": SAMPLING_RATE,
            "shard_format": "safetensors",
            "emotions": list(EMOTIONS),
            "settings": settings,
            "clips": [],
            "videos": {},
        }
    references, names = load_references(output, args.faces, not args.no_astronaut, args.crop_size)
    index["reference_faces"] = names
    done = {c["id"] for c in index["clips"] if (output / c["shard"]).is_file()}
    index["clips"] = [c for c in index["clips"] if c["id"] in done]
    teacher = ArticulationTeacher()
    start, count = time.time(), 0
    todo = [(r, s) for r, s in records if r["id"] not in done]
    for number, (record, split) in enumerate(todo, 1):
        try:
            arrays, entry = convert_clip(
                record, corpus, references, teacher, args.fps, args.seed, args.min_intensity, split
            )
        except (OSError, ValueError, soundfile.LibsndfileError) as error:  # an unreadable or unusable clip
            print(f"skipped {record['id']}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        metadata = {**entry, "fps": args.fps, "crop_size": args.crop_size}
        write_shard(output / entry["shard"], arrays, metadata, "safetensors")
        index["clips"].append(entry)
        count += 1
        if number % args.flush_every == 0 or number == len(todo):
            _write_json(index_path, index)
            if not args.quiet:
                rate = count / max(time.time() - start, 1e-9)
                print(f"{len(index['clips'])}/{len(records)} clips ({rate:.1f} clips/s)", flush=True)
    order = {r["id"]: i for i, (r, _) in enumerate(records)}
    index["clips"].sort(key=lambda c: order.get(c["id"], len(order)))
    by_id = {r["id"]: r for r, _ in records}
    neutral = {
        c["id"]: clip_reference(by_id[c["id"]], references, args.seed, args.min_intensity)
        for c in index["clips"]
        if c["id"] in by_id
    }
    np.savez(output / CLIP_REFERENCES, **neutral)
    phones = {c["id"]: by_id[c["id"]]["phones"] for c in index["clips"] if by_id.get(c["id"], {}).get("phones")}
    _write_json(output / CLIP_PHONES, phones)
    _write_json(index_path, index)
    print(f"{output}: {len(index['clips'])} clips, {count} new, {time.time() - start:.1f} s", flush=True)
    return 0 if index["clips"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="folder written by recipes.default_model.corpus")
    parser.add_argument("--output", required=True, help="dataset folder (keep it outside the repository)")
    parser.add_argument("--faces", nargs="*", default=list(DEFAULT_FACES), help="portrait folders or files")
    parser.add_argument("--no-astronaut", action="store_true", help="do not add skimage.data.astronaut()")
    parser.add_argument("--no-heldout", action="store_true", help="leave heldout.jsonl out (no test split)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--min-intensity", type=float, default=0.3, help="emotion intensity drawn in [this, 1]")
    parser.add_argument("--limit", type=int, default=None, help="only the first N training clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush-every", type=int, default=50, help="rewrite index.json every N clips")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
