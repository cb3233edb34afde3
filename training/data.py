"""Datasets over a prepared dataset folder (``emotalk prepare``): stage-1 windows and stage-2 frame pairs.

Sampling is addressed, not streamed: item ``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng((seed,
e, i))`` (which clip, which window, which references). The data order therefore depends only on the seed
and the step, never on worker or process count, and a resumed run sees exactly the batches the interrupted
one would have seen. Clips are picked with probability proportional to their length.

Shards are read lazily: safetensors slices (``safe_open(...).get_slice``) read only the frames a sample
needs; npz shards are loaded whole (and cached per worker, a few at a time).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from emotalk_common.constants import EMOTION_LABELS as EMOTIONS
from emotalk_common.constants import SAMPLING_RATE
from emotalk_common.topology import (
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LOWER_LIP_CENTER_INNER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    UPPER_LIP_CENTER_INNER,
)
from torch.nn import functional as F
from torch.utils.data import Dataset

from .phones import PHONE_IDS, normalize_phone
from .prepare import load_index

PHONE_RATE = 100  # phone tracks: one label per 10 ms
IGNORE_INDEX = -100  # unknown phone (cross-entropy ignore_index)
CLIP_REFERENCES = "clip_references.npz"  # optional {clip id: (478, 3)} reference face per clip
MOUTH_QUARTER = 0.25  # mouth-synthesis pairs: references among the most closed, windows the most open quarter
BLINK_FRACTION = 0.05  # blink windows start among the most closed 5 % of eyes
CLIP_PHONES = "clip_phones.json"  # optional {clip id: [[phone, start_s, end_s], ...]} (ARPAbet, no stress)


def load_clip_references(dataset_dir: str | Path) -> dict[str, np.ndarray]:
    """``{clip id: (478, 3)}`` per-clip reference faces of a dataset (empty when it has none)."""
    path = Path(dataset_dir) / CLIP_REFERENCES
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return {key: data[key].astype(np.float32) for key in data.files}


def load_clip_phones(dataset_dir: str | Path) -> dict[str, list]:
    """``{clip id: [[phone, start_s, end_s], ...]}`` phone segments of a dataset (empty when it has none)."""
    path = Path(dataset_dir) / CLIP_PHONES
    return json.loads(path.read_text()) if path.is_file() else {}


def phone_track(segments: list, start_seconds: float, length: int) -> np.ndarray:
    """``(length,)`` phone ids at :data:`PHONE_RATE` from ``start_seconds``; :data:`IGNORE_INDEX` where unknown.

    Ids index :data:`emotalk_training.phones.PHONES`; labels are normalized (stress digits, aliases).
    """
    times = start_seconds + (np.arange(length) + 0.5) / PHONE_RATE
    track = np.full(length, IGNORE_INDEX, dtype=np.int64)
    for phone, begin, end in segments:
        track[(times >= float(begin)) & (times < float(end))] = PHONE_IDS[normalize_phone(phone)]
    return track


class ShardReader:
    """Reads frame ranges of clip shards; opened lazily, so it survives being pickled to DataLoader workers."""

    def __init__(self, root: str | Path, max_open: int = 8) -> None:
        self.root = Path(root)
        self.max_open = max_open
        self._open: OrderedDict[str, Any] = OrderedDict()

    def __getstate__(self) -> dict:
        return {"root": self.root, "max_open": self.max_open}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def _handle(self, shard: str) -> Any:
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        path = self.root / shard
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} is missing: prepare the dataset again (emotalk prepare resumes)")
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            handle = safe_open(str(path), framework="np")
        else:
            with np.load(path) as data:
                handle = {k: data[k] for k in data.files}
        self._open[shard] = handle
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return handle

    def read(self, shard: str, key: str, index: slice | np.ndarray | None = None) -> np.ndarray:
        """``key`` of ``shard``, optionally only the rows ``index`` (a slice or an integer array)."""
        handle = self._handle(shard)
        if isinstance(handle, dict):
            array = handle[key]
            return array if index is None else array[index]
        if index is None:
            return handle.get_tensor(key)
        if isinstance(index, slice):
            return handle.get_slice(key)[index]
        index = np.asarray(index)
        return np.stack([handle.get_slice(key)[int(i) : int(i) + 1][0] for i in index])

    def metadata(self, shard: str) -> dict:
        """The JSON metadata written with the shard."""
        handle = self._handle(shard)
        if isinstance(handle, dict):
            return json.loads(str(handle["metadata"]))
        return json.loads(handle.metadata()["json"])


def select_clips(index: dict, split: str | None = "train", min_frames: int = 1, require_audio: bool = False) -> list:
    """Clips of ``split`` (None: all) with at least ``min_frames`` frames (and audio when required)."""
    clips = [
        clip
        for clip in index["clips"]
        if (split is None or clip.get("split", "train") == split)
        and clip["num_frames"] >= min_frames
        and (clip.get("has_audio", False) or not require_audio)
    ]
    return clips


def openings(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner-lip gap (points 13–14) and mean upper-to-lower eyelid distance of both eyes of ``(..., 478, 3)``
    landmarks → two ``(...)`` arrays, crop units (negative y is up, so both grow as mouth and eyes open)."""
    points = np.asarray(landmarks)
    lips = points[..., LOWER_LIP_CENTER_INNER, 1] - points[..., UPPER_LIP_CENTER_INNER, 1]
    upper = points[..., list(RIGHT_EYE_UPPER + LEFT_EYE_UPPER), 1].mean(-1)
    lower = points[..., list(RIGHT_EYE_LOWER + LEFT_EYE_LOWER), 1].mean(-1)
    return lips, lower - upper


def normalize_audio(audio: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Zero mean, unit variance with the clip's statistics (what ``Wav2Vec2FeatureExtractor`` does per input)."""
    return ((audio - mean) / math.sqrt(std**2 + 1e-7)).astype(np.float32)


class _AddressedDataset(Dataset):
    """Common parts: the index, clip weights, epoch-addressed random draws."""

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str | None,
        min_frames: int,
        require_audio: bool,
        seed: int,
        samples_per_epoch: int | None,
        frames_per_sample: int,
    ) -> None:
        self.root = Path(dataset_dir)
        self.index = load_index(self.root)
        self.fps = float(self.index["fps"])
        self.clips = select_clips(self.index, split, min_frames, require_audio)
        if not self.clips:
            what = f"split {split!r}" if split else "the dataset"
            need = (
                f" with audio and at least {min_frames} frames"
                if require_audio
                else f" of at least {min_frames} frames"
            )
            raise ValueError(f"no clip in {what} of {self.root}{need}")
        lengths = np.array([c["num_frames"] for c in self.clips], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.seed = int(seed)
        self.epoch = 0
        total = int(lengths.sum())
        self.samples_per_epoch = int(samples_per_epoch or max(1, total // max(1, frames_per_sample)))
        self.reader = ShardReader(self.root)
        labels = self.index.get("emotions", list(EMOTIONS))
        self.emotion_ids = {name: i for i, name in enumerate(labels)}
        self.speakers = sorted({c["speaker"] for c in self.index["clips"]})

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw a different sample set in each epoch (deterministically)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def pick_clip(self, rng: np.random.Generator) -> dict:
        return self.clips[int(rng.choice(len(self.clips), p=self.weights))]

    def valid_frames(self, clip: dict) -> np.ndarray:
        valid = self.reader.read(clip["shard"], "frame_valid").astype(bool)
        return np.flatnonzero(valid) if valid.any() else np.arange(len(valid))

    def labels(self, clip: dict) -> dict[str, torch.Tensor]:
        return {
            "emotion": torch.tensor(self.emotion_ids.get(clip.get("emotion", "neutral"), 0), dtype=torch.long),
            "emotion_known": torch.tensor(bool(clip.get("emotion_known", False))),
            "intensity": torch.tensor(float(clip.get("intensity", 1.0)), dtype=torch.float32),
            "speaker": torch.tensor(self.speakers.index(clip["speaker"]), dtype=torch.long),
        }


class LandmarkWindowDataset(_AddressedDataset):
    """Stage-1 samples: ``window_frames`` frames of landmarks with their audio and a reference frame.

    Each item: ``input_values`` ``(N,)`` normalized audio (N = window_frames / fps × 16000), ``attention_mask``
    ``(N,)``, ``landmarks`` ``(T, 478, 3)`` crop space, ``frame_mask`` ``(T,)`` (tracked, inside the clip),
    ``reference`` ``(478, 3)`` a random tracked frame of the same clip (the "photo"), ``phone_ids`` ``(N / 160,)``
    the phone at each 10 ms (:data:`IGNORE_INDEX` where unknown), and the clip's labels.

    Two optional files of the dataset folder refine this: ``clip_references.npz`` gives a clip its own reference
    face (a generated clip whose every frame carries an emotion needs its neutral face as the photo, or the
    emotion offset cancels), and ``clip_phones.json`` gives phone segments (the auxiliary phone target).
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        window_frames: int = 50,
        split: str | None = "train",
        seed: int = 0,
        samples_per_epoch: int | None = None,
    ) -> None:
        if window_frames < 2:
            raise ValueError(f"window_frames must be at least 2, got {window_frames}")
        super().__init__(dataset_dir, split, 2, True, seed, samples_per_epoch, window_frames)
        self.window_frames = int(window_frames)
        self.window_samples = round(self.window_frames / self.fps * SAMPLING_RATE)
        self.clip_references = load_clip_references(self.root)
        self.clip_phones = load_clip_phones(self.root)

    def window(self, clip: dict, start: int, reference_frame: int) -> dict[str, torch.Tensor]:
        """The sample of ``clip`` starting at frame ``start`` with frame ``reference_frame`` as the reference."""
        length = self.window_frames
        stop = min(start + length, clip["num_frames"])
        count = stop - start
        landmarks = np.zeros((length, 478, 3), dtype=np.float32)
        landmarks[:count] = self.reader.read(clip["shard"], "landmarks", slice(start, stop))
        landmarks[count:] = landmarks[count - 1]
        frame_mask = np.zeros(length, dtype=bool)
        frame_mask[:count] = self.reader.read(clip["shard"], "frame_valid", slice(start, stop))
        first = round(start / self.fps * SAMPLING_RATE)
        audio = self.reader.read(clip["shard"], "audio", slice(first, first + self.window_samples))
        input_values = np.zeros(self.window_samples, dtype=np.float32)
        input_values[: len(audio)] = normalize_audio(audio, clip["audio_mean"], clip["audio_std"])
        attention_mask = np.zeros(self.window_samples, dtype=np.int64)
        attention_mask[: min(len(audio), round(count / self.fps * SAMPLING_RATE))] = 1
        reference = self.clip_references.get(clip["id"])
        if reference is None:
            reference = self.reader.read(clip["shard"], "landmarks", slice(reference_frame, reference_frame + 1))[0]
        phone_length = self.window_samples * PHONE_RATE // SAMPLING_RATE
        phone_ids = np.full(phone_length, IGNORE_INDEX, dtype=np.int64)
        if clip["id"] in self.clip_phones:
            phone_ids = phone_track(self.clip_phones[clip["id"]], start / self.fps, phone_length)
            phone_ids[round(count / self.fps * PHONE_RATE) :] = IGNORE_INDEX
        return {
            "input_values": torch.from_numpy(input_values),
            "attention_mask": torch.from_numpy(attention_mask),
            "landmarks": torch.from_numpy(landmarks),
            "frame_mask": torch.from_numpy(frame_mask),
            "reference": torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)),
            "phone_ids": torch.from_numpy(phone_ids),
            **self.labels(clip),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        clip = self.pick_clip(rng)
        start = int(rng.integers(0, max(1, clip["num_frames"] - self.window_frames + 1)))
        reference = int(rng.choice(self.valid_frames(clip)))
        return self.window(clip, start, reference)


def _resize_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``(N, S, S, 3)`` → float ``(N, 3, size, size)`` in [0, 1] (antialiased when shrinking)."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if pixels.shape[-1] != size:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        pixels = pixels.clamp(0, 1)
    return pixels


class GeneratorPairDataset(_AddressedDataset):
    """Stage-2 self-supervised samples: K reference frames and ``num_frames`` consecutive driving frames of one clip.

    Each item: ``references`` ``(K, 3, S, S)`` in [0, 1], ``reference_landmarks`` ``(K, 478, 3)``, ``frames``
    ``(W, 3, S, S)``, ``landmarks`` ``(W, 478, 3)``, ``frame_mask`` ``(W,)`` (tracked frames), and the labels.
    References are drawn among the clip's tracked frames at least ``min_reference_distance`` frames away from
    the driving window when the clip allows it (so the generator has to move the face, not copy it). With
    ``cross_clip_references`` = p, a sample takes its references from *another clip of the same speaker* with
    probability p (when the speaker has one): a neutral clip's frames driven by a happy clip's landmarks, so the
    generator has to synthesize what an expression changes in the texture (teeth, folds), not find it in the
    references; within one clip of an acted emotion every reference already shows it. With
    ``closed_mouth_references`` = q, a sample is a *mouth-synthesis pair* with probability q: its references are
    drawn among the most closed quarter of their pool (inner-lip gap, points 13–14) and its driving window
    starts at one of the clip's most open quarter, as when a closed-mouth portrait is made to speak. Random
    references are often open already, so the generator can copy teeth instead of learning to draw them. With
    ``blink_windows`` = b (drawn exclusively of the mouth pairs), the driving window starts at one of the clip's most
    closed 5 % of eyes (its blinks, when it has any): blinks are ~4 % of talking video, too rare in random windows
    for the lids to learn to close without smearing.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        image_size: int,
        num_references: int = 1,
        num_frames: int = 2,
        split: str | None = "train",
        seed: int = 0,
        samples_per_epoch: int | None = None,
        min_reference_distance: int = 5,
        cross_clip_references: float = 0.0,
        closed_mouth_references: float = 0.0,
        blink_windows: float = 0.0,
    ) -> None:
        if num_references < 1 or num_frames < 1:
            raise ValueError(f"num_references and num_frames must be >= 1, got {num_references} and {num_frames}")
        if not 0.0 <= cross_clip_references <= 1.0:
            raise ValueError(f"cross_clip_references is a probability in [0, 1], got {cross_clip_references!r}")
        if not 0.0 <= closed_mouth_references <= 1.0:
            raise ValueError(f"closed_mouth_references is a probability in [0, 1], got {closed_mouth_references!r}")
        if not (0.0 <= blink_windows <= 1.0 and closed_mouth_references + blink_windows <= 1.0):
            raise ValueError(
                f"blink_windows is a probability in [0, 1] with closed_mouth_references + blink_windows <= 1, got "
                f"{blink_windows!r} (closed_mouth_references {closed_mouth_references!r})"
            )
        super().__init__(dataset_dir, split, num_frames, False, seed, samples_per_epoch, num_frames)
        self.image_size = int(image_size)
        self.num_references = int(num_references)
        self.num_frames = int(num_frames)
        self.min_reference_distance = int(min_reference_distance)
        self.cross_clip_references = float(cross_clip_references)
        self.closed_mouth_references = float(closed_mouth_references)
        self.blink_windows = float(blink_windows)
        self._openings_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.same_speaker = {
            clip["id"]: [other for other in self.clips if other["speaker"] == clip["speaker"] and other is not clip]
            for clip in self.clips
        }

    def sample(
        self, clip: dict, start: int, references: np.ndarray, reference_clip: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """Driving frames ``[start, start + W)`` of ``clip`` with the frames ``references`` of ``reference_clip``
        (default: ``clip`` itself) as references."""
        stop = start + self.num_frames
        shard = clip["shard"]
        reference_shard = (reference_clip or clip)["shard"]
        order = np.argsort(references)  # read in order, then restore the drawn order
        ref_frames = self.reader.read(reference_shard, "crops", references[order])[np.argsort(order)]
        ref_landmarks = self.reader.read(reference_shard, "landmarks", references[order])[np.argsort(order)]
        return {
            "references": _resize_frames(ref_frames, self.image_size),
            "reference_landmarks": torch.from_numpy(np.ascontiguousarray(ref_landmarks, dtype=np.float32)),
            "frames": _resize_frames(self.reader.read(shard, "crops", slice(start, stop)), self.image_size),
            "landmarks": torch.from_numpy(
                np.ascontiguousarray(self.reader.read(shard, "landmarks", slice(start, stop)), dtype=np.float32)
            ),
            "frame_mask": torch.from_numpy(self.reader.read(shard, "frame_valid", slice(start, stop)).astype(bool)),
            **self.labels(clip),
        }

    def _openings(self, clip: dict) -> tuple[np.ndarray, np.ndarray]:
        """:func:`openings` of every frame of ``clip`` (read once)."""
        if clip["id"] not in self._openings_cache:
            self._openings_cache[clip["id"]] = openings(self.reader.read(clip["shard"], "landmarks"))
        return self._openings_cache[clip["id"]]

    def lip_gap(self, clip: dict) -> np.ndarray:
        """``(N,)`` inner-lip gap (points 13–14) of every frame of ``clip``, crop units."""
        return self._openings(clip)[0]

    def eye_gap(self, clip: dict) -> np.ndarray:
        """``(N,)`` mean upper-to-lower eyelid distance of both eyes of every frame of ``clip``, crop units."""
        return self._openings(clip)[1]

    def _closed_quarter(self, clip: dict, pool: np.ndarray) -> np.ndarray:
        """The frames of ``pool`` whose mouth is among its most closed quarter (at least one)."""
        gaps = self.lip_gap(clip)[pool]
        return pool[gaps <= np.quantile(gaps, MOUTH_QUARTER)]

    def _open_start(self, clip: dict, rng: np.random.Generator) -> int:
        """A window start whose first frame is among the clip's most open quarter."""
        last = clip["num_frames"] - self.num_frames
        gaps = self.lip_gap(clip)[: last + 1]
        starts = np.flatnonzero(gaps >= np.quantile(gaps, 1.0 - MOUTH_QUARTER))
        return int(rng.choice(starts))

    def _blink_start(self, clip: dict, rng: np.random.Generator) -> int:
        """A window start whose first frame is among the clip's most closed 5 % of eyes."""
        last = clip["num_frames"] - self.num_frames
        gaps = self.eye_gap(clip)[: last + 1]
        return int(rng.choice(np.flatnonzero(gaps <= np.quantile(gaps, BLINK_FRACTION))))

    def _draw(self, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        references = rng.choice(pool, size=self.num_references, replace=len(pool) < self.num_references)
        return np.asarray(references, dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        clip = self.pick_clip(rng)
        start = int(rng.integers(0, clip["num_frames"] - self.num_frames + 1))
        # drawn only when enabled, so the default's random stream (and its samples) stay as before
        kind = rng.random() if self.closed_mouth_references > 0 or self.blink_windows > 0 else 1.0
        closed = kind < self.closed_mouth_references
        if closed:
            start = self._open_start(clip, rng)
        elif kind < self.closed_mouth_references + self.blink_windows:
            start = self._blink_start(clip, rng)
        others = self.same_speaker[clip["id"]]
        if self.cross_clip_references > 0 and others and rng.random() < self.cross_clip_references:
            reference_clip = others[int(rng.integers(len(others)))]
            pool = self.valid_frames(reference_clip)
            if closed:
                pool = self._closed_quarter(reference_clip, pool)
            return self.sample(clip, start, self._draw(pool, rng), reference_clip)
        candidates = self.valid_frames(clip)
        far = candidates[
            (candidates < start - self.min_reference_distance)
            | (candidates >= start + self.num_frames + self.min_reference_distance)
        ]
        pool = far if len(far) >= self.num_references else candidates
        if closed:
            pool = self._closed_quarter(clip, pool)
        return self.sample(clip, start, self._draw(pool, rng))


__all__ = [
    "GeneratorPairDataset",
    "LandmarkWindowDataset",
    "ShardReader",
    "normalize_audio",
    "openings",
    "select_clips",
]
