"""The ``emotional-talking-face`` pipeline: one portrait + speech → a talking-face video.

``preprocess`` finds and aligns the face and loads the audio; ``_forward`` runs stage 1 over the whole
audio (in overlapping windows with cross-faded seams) and mixes in the seeded procedural motion;
``postprocess`` returns a :class:`TalkingFaceOutput` whose frames stage 2 renders in batches on demand,
so :meth:`TalkingFaceOutput.save` streams them into the encoder and peak memory does not grow with
the duration.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import Pipeline

from modeling_emotalk.audio_processing import SAMPLING_RATE, AudioProcessor
from modeling_emotalk.errors import EmoTalkInputError
from modeling_emotalk.face_processing import FaceCrop, FaceProcessor
from modeling_emotalk.landmarks import canonicalize, relocate

from .emotion import emotion_weights, validate_emotion
from .motion import audio_energy, blink_track, gaze_saccades, head_sway
from .video import check_output_path, write_mp4

FPS_RANGE = (1.0, 60.0)
INTENSITY_RANGE = (0.0, 1.0)
POSE_SCALE_RANGE = (0.0, 3.0)
_UNSET = object()


@dataclass
class TalkingFaceOutput:
    """A generated talking-face video.

    Attributes:
        fps: frames per second. audio: ``(N,)`` float32 mono speech. sampling_rate: 16000.
        landmarks: ``(T, 478, 3)`` driving landmarks in normalized crop coordinates.
        emotion_weights: ``(T, 8)`` the emotion that conditioned each frame. emotion_labels: their names.
        seed: the seed of the procedural motion (pass it again to get the same video).
        frames: ``(T, H, W, 3)`` uint8, rendered on first access (use :meth:`save` or
            :meth:`iter_frames` for long videos: they stream).
    """

    fps: float
    audio: np.ndarray
    sampling_rate: int
    landmarks: np.ndarray
    emotion_weights: np.ndarray
    emotion_labels: tuple[str, ...]
    seed: int
    render: Callable[[], Iterator[np.ndarray]] = field(repr=False)
    _frames: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sampling_rate

    @property
    def emotion(self) -> str:
        """The dominant emotion over the clip (for "auto", what the voice was heard as)."""
        return self.emotion_labels[int(self.emotion_weights.mean(0).argmax())]

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = np.concatenate(list(self.render()), axis=0)
        return self._frames

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Frame batches ``(b, H, W, 3)`` uint8, rendered as they are consumed."""
        if self._frames is not None:
            yield self._frames
        else:
            yield from self.render()

    def save(self, path: str | os.PathLike, *, preset: str = "veryfast", crf: int = 20) -> Path:
        """Write an H.264 + AAC MP4, atomically (the file appears only when complete)."""
        return write_mp4(path, self.iter_frames(), self.fps, self.audio, self.sampling_rate, preset=preset, crf=crf)


class EmotionalTalkingFacePipeline(Pipeline):
    """Portrait + speech (+ emotion) → :class:`TalkingFaceOutput`.

    Example:

    ```python
    >>> import emotalk_pipeline  # registers the task
    >>> from transformers import pipeline
    >>> pipe = pipeline("emotional-talking-face")
    >>> video = pipe("portrait.jpg", "speech.wav", emotion="happy", intensity=0.8, seed=0)
    >>> video.save("talking.mp4")
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    window_seconds = 10.0
    overlap_seconds = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.face_processor = FaceProcessor(crop_size=int(self.model.config.crop_size))
        self.audio_processor = AudioProcessor(self.feature_extractor, max_seconds=None)

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        return tuple(self.model.config.landmark_config.emotion_labels)

    # -------------------------------------------------------------------------------------- parameters
    def __call__(self, image: Any, audio: Any = None, **kwargs) -> TalkingFaceOutput:
        """Generate a talking-face video.

        Args:
            image: portrait: path, PIL image, numpy array or tensor.
            audio: speech: path (wav/mp3/flac/ogg/m4a), array (with ``sampling_rate``) or
                ``{"array": ..., "sampling_rate": ...}``.
            emotion: a label (neutral, angry, contempt, disgusted, fear, happy, sad, surprised), "auto"
                (heard in the voice), a blend ``{"happy": 0.7, "surprised": 0.3}`` or a schedule
                ``[(0.0, "neutral"), (2.5, "happy")]``. Default "neutral".
            intensity: emotion strength in [0, 1]. Default 1.0.
            pose: "natural" (model + seeded sway), "still" (no head motion) or a float scale of "natural".
            blink: add seeded blinks (2–6 s apart). gaze: add seeded gaze saccades.
            fps: video frame rate in [1, 60]. Default 25.
            paste_back: paste the generated face into the full photo (True) or return the aligned crops.
            seed: seed of the procedural motion; None picks one (kept in ``output.seed``).
            batch_size: frames per stage-2 batch. face_index: which face when the photo has several.
            sampling_rate: rate of an array ``audio``. max_audio_seconds: longest accepted audio.
            progress: show a progress bar over frames.
        """
        if audio is None and isinstance(image, dict):
            image, audio = image.get("image"), image.get("audio")
        if audio is None:
            raise EmoTalkInputError("missing audio: call pipe(image, audio, ...)")
        if "batch_size" in kwargs:  # the frame batch of stage 2, not the base class's input batching
            kwargs["frame_batch_size"] = kwargs.pop("batch_size")
        return super().__call__({"image": image, "audio": audio}, **kwargs)

    def _sanitize_parameters(
        self,
        emotion: Any = _UNSET,
        intensity: float | None = None,
        pose: str | float | None = None,
        blink: bool | None = None,
        gaze: bool | None = None,
        fps: float | None = None,
        paste_back: bool | None = None,
        seed: int | None = None,
        frame_batch_size: int | None = None,
        face_index: int | None = None,
        sampling_rate: int | None = None,
        max_audio_seconds: float | None = None,
        progress: bool | None = None,
        **unknown,
    ):
        """Validate what was given (cheap, before any heavy work); defaults live in the stage signatures."""
        if unknown:
            raise TypeError(f"unknown argument(s) {sorted(unknown)} for the emotional-talking-face pipeline")
        preprocess, forward, postprocess = {}, {}, {}
        if emotion is not _UNSET:
            validate_emotion(emotion, self.emotion_labels)
            forward["emotion"] = emotion
        if intensity is not None:
            forward["intensity"] = _number("intensity", intensity, *INTENSITY_RANGE)
        if fps is not None:
            forward["fps"] = _number("fps", fps, *FPS_RANGE)
        if pose is not None:
            if isinstance(pose, str):
                if pose not in ("natural", "still"):
                    raise EmoTalkInputError(f"pose must be 'natural', 'still' or a number, got {pose!r}")
                forward["pose_scale"] = 0.0 if pose == "still" else 1.0
            else:
                forward["pose_scale"] = _number("pose", pose, *POSE_SCALE_RANGE)
        if blink is not None:
            forward["blink"] = bool(blink)
        if gaze is not None:
            forward["gaze"] = bool(gaze)
        if seed is not None:
            if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
                raise EmoTalkInputError(f"seed must be a non-negative integer or None, got {seed!r}")
            forward["seed"] = int(seed)
        if face_index is not None:
            preprocess["face_index"] = face_index
        if sampling_rate is not None:
            preprocess["sampling_rate"] = sampling_rate
        if max_audio_seconds is not None:
            preprocess["max_audio_seconds"] = _number("max_audio_seconds", max_audio_seconds, 0.1, math.inf)
        if paste_back is not None:
            postprocess["paste_back"] = bool(paste_back)
        if frame_batch_size is not None:
            if not isinstance(frame_batch_size, int) or isinstance(frame_batch_size, bool) or frame_batch_size < 1:
                raise EmoTalkInputError(f"batch_size must be a positive integer, got {frame_batch_size!r}")
            postprocess["batch_size"] = frame_batch_size
        if progress is not None:
            postprocess["progress"] = bool(progress)
        return preprocess, forward, postprocess

    # ------------------------------------------------------------------------------------------ stages
    def preprocess(self, inputs: dict, face_index=None, sampling_rate=None, max_audio_seconds=None) -> dict:
        if max_audio_seconds is None:
            max_audio_seconds = float(self.model.config.max_audio_seconds)
        image = self.face_processor.load_image(inputs["image"])
        face = self.face_processor(image, face_index=face_index)
        samples = self.audio_processor.load(inputs["audio"], sampling_rate)
        if samples.size / SAMPLING_RATE > max_audio_seconds:
            from modeling_emotalk.errors import AudioLengthError

            raise AudioLengthError(
                f"the audio is {samples.size / SAMPLING_RATE:.1f} s long, longer than the limit of "
                f"{max_audio_seconds:g} s: trim it or raise max_audio_seconds"
            )
        features = self.feature_extractor(samples, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        return {"image": image, "face": face, "audio": samples, "input_values": features["input_values"].float()}

    def _forward(
        self,
        inputs: dict,
        emotion="neutral",
        intensity=1.0,
        pose_scale=1.0,
        blink=True,
        gaze=True,
        fps=25.0,
        seed=None,
    ) -> dict:
        face: FaceCrop = inputs["face"]
        audio: np.ndarray = inputs["audio"]
        num_frames = math.ceil(audio.size / SAMPLING_RATE * fps)
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        rng = np.random.default_rng(seed)
        weights = emotion_weights(emotion, self.emotion_labels, num_frames, fps)
        source_landmarks = torch.from_numpy(face.landmarks).to(self.device)[None]
        canonical, frame = canonicalize(source_landmarks)
        motion = self._predict_motion(
            inputs["input_values"].to(self.device), canonical, num_frames, fps, weights, intensity
        )

        head_pose = motion["head_pose"] * pose_scale
        if pose_scale > 0:
            head_pose = head_pose + pose_scale * head_sway(num_frames, fps, rng, audio_energy(audio, num_frames, fps))
        blinks = (
            np.maximum(motion["blink"], blink_track(num_frames, fps, rng)) if blink else np.zeros_like(motion["blink"])
        )
        gazes = motion["gaze"] + gaze_saccades(num_frames, fps, rng) if gaze else np.zeros_like(motion["gaze"])
        as_tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)[None]  # noqa: E731
        landmarks = relocate(
            canonical,
            as_tensor(motion["expression"]),
            as_tensor(head_pose),
            as_tensor(gazes),
            as_tensor(blinks),
            frame,
        )[0]
        return {
            "image": inputs["image"],
            "face": face,
            "audio": audio,
            "landmarks": landmarks,
            "emotion_weights": motion["emotion_weights"],
            "fps": fps,
            "seed": seed,
        }

    def _predict_motion(
        self,
        input_values: torch.Tensor,
        canonical: torch.Tensor,
        num_frames: int,
        fps: float,
        weights: np.ndarray | None,
        intensity: float,
    ) -> dict[str, np.ndarray]:
        """Stage 1 over the whole clip in windows of ``window_seconds``, seams cross-faded over ``overlap_seconds``."""
        stage1 = self.model.landmark_model
        window = max(1, round(self.window_seconds * fps))
        overlap = min(max(1, round(self.overlap_seconds * fps)), window // 2)
        hop = window - overlap
        keys = ("expression", "head_pose", "gaze", "blink", "emotion_weights")
        totals: dict[str, np.ndarray] = {}
        coverage = np.zeros(num_frames, dtype=np.float32)
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        start = 0
        while True:
            end = min(start + window, num_frames)
            first = round(start / fps * SAMPLING_RATE)
            last = min(round(end / fps * SAMPLING_RATE), input_values.shape[1])
            emotion = None
            if weights is not None:
                emotion = torch.from_numpy(weights[start:end]).to(self.device)[None]
            out = stage1(
                input_values[:, first:last],
                reference_landmarks=canonical,
                emotion=emotion,
                intensity=intensity,
                num_frames=end - start,
                fps=fps,
            )
            fade = np.ones(end - start, dtype=np.float32)
            if start > 0:
                fade[:overlap] = ramp
            if end < num_frames:
                fade[-overlap:] = np.minimum(fade[-overlap:], ramp[::-1])
            for key in keys:
                value = getattr(out, key)[0].float().cpu().numpy()
                if key not in totals:
                    totals[key] = np.zeros((num_frames, *value.shape[1:]), dtype=np.float32)
                totals[key][start:end] += value * fade.reshape(-1, *([1] * (value.ndim - 1)))
            coverage[start:end] += fade
            if end >= num_frames:
                break
            start += hop
        return {key: value / coverage.reshape(-1, *([1] * (value.ndim - 1))) for key, value in totals.items()}

    def postprocess(self, outputs: dict, paste_back=True, batch_size=8, progress=True) -> TalkingFaceOutput:
        face: FaceCrop = outputs["face"]
        image: np.ndarray = outputs["image"]
        landmarks: torch.Tensor = outputs["landmarks"]
        generator = self.model.generator
        device = self.device
        face_processor = self.face_processor

        def render() -> Iterator[np.ndarray]:
            with torch.inference_mode():
                pixels = torch.from_numpy(face.crop).to(device).permute(2, 0, 1)[None].float() / 255
                source = generator.encode_source(pixels, torch.from_numpy(face.landmarks).to(device)[None])
                bar = tqdm(total=len(landmarks), unit="frame", desc="rendering", disable=not progress)
                try:
                    for start in range(0, len(landmarks), batch_size):
                        driving = landmarks[start : start + batch_size]
                        crops = generator(source=source, driving_landmarks=driving).frames
                        crops = (crops.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
                        yield face_processor.paste_back(image, crops, face) if paste_back else crops
                        bar.update(len(driving))
                finally:
                    bar.close()

        return TalkingFaceOutput(
            fps=outputs["fps"],
            audio=outputs["audio"],
            sampling_rate=SAMPLING_RATE,
            landmarks=landmarks.float().cpu().numpy(),
            emotion_weights=outputs["emotion_weights"],
            emotion_labels=self.emotion_labels,
            seed=outputs["seed"],
            render=render,
        )


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise EmoTalkInputError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}") from err
    if isinstance(value, bool) or math.isnan(number) or not low <= number <= high:
        raise EmoTalkInputError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return number


__all__ = ["EmotionalTalkingFacePipeline", "TalkingFaceOutput", "check_output_path"]
