"""The ``emotional-talking-face`` pipeline: one portrait + speech → a talking-face video.

A thin layer over :class:`~modeling_emotalk.EmoTalkModel`, which owns the orchestration of both stages:
``_sanitize_parameters`` validates every option (cheaply, before any heavy work); ``preprocess`` finds and
aligns the face and reads the audio; ``_forward`` calls :meth:`EmoTalkModel.predict_landmarks` and mixes in
the seeded procedural motion; ``postprocess`` returns a :class:`TalkingFaceOutput` whose frames
:meth:`EmoTalkModel.render` produces in batches on demand, so :meth:`TalkingFaceOutput.save` streams them
into the encoder and peak memory does not grow with the duration.
"""

from __future__ import annotations

import math
import numbers
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from emotalk_common.video_io import check_output_path, write_mp4
from tqdm.auto import tqdm
from transformers import Pipeline

from modeling_emotalk.audio_processing import SAMPLING_RATE, read_audio
from modeling_emotalk.errors import EmoTalkInputError, ImageReadError
from modeling_emotalk.face_processing import FaceCrop, FaceProcessor
from modeling_emotalk.modeling_emotalk import OVERLAP_SECONDS, WINDOW_SECONDS, PhotoExpressionMode
from modeling_emotalk.modeling_generator import reuse_freed_memory
from modeling_emotalk.modeling_landmark import num_video_frames
from modeling_emotalk.processing_emotalk import EmoTalkProcessor

from .emotion import emotion_weights, validate_emotion
from .motion import audio_energy, blink_track, gaze_saccades, head_sway

FPS_RANGE = (1.0, 60.0)
INTENSITY_RANGE = (0.0, 1.0)
POSE_SCALE_RANGE = (0.0, 3.0)
MAX_FRAME_BATCH = 256
"""Largest ``batch_size`` (frames per stage-2 call): beyond it memory grows with no speed gain."""
MAX_REFERENCE_IMAGES = 4
"""Most extra photos of the same person (``reference_images``): each adds one encoded source to every frame."""
RENDER_AHEAD = 2
"""Frame batches a background thread renders ahead while the caller pastes back and encodes, on machines with
more cores than torch uses (see :func:`render_ahead`); 0 renders in the caller's thread. Peak memory grows by
at most ``RENDER_AHEAD + 1`` batches of crops, whatever the duration."""
OUTPUT_TYPES = ("uint8", "np", "pil")
"""``frames`` as ``(T, H, W, 3)`` uint8, as ``(T, H, W, 3)`` float32 in [0, 1] (diffusers' "np"), or a list
of PIL images; the last two are what ``diffusers.utils.export_to_video`` takes."""
PHOTO_EXPRESSION_MODES = get_args(PhotoExpressionMode)
"""``"replace"``: the portrait's own expression (a smile) is removed before the requested one is applied;
``"keep"``: the requested emotion is added to the portrait's expression as it is."""
_UNSET = object()
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


@dataclass(eq=False)
class TalkingFaceOutput(Mapping):
    """A generated talking-face video; also readable as a mapping (``out["frames"]``, ``"audio" in out``).

    Attributes:
        fps: frames per second.
        audio: ``(N,)`` float32 mono speech at ``sampling_rate`` (16000): what the model heard.
        sampling_rate: 16000.
        landmarks: ``(T, 478, 3)`` float32 driving landmarks in normalized crop coordinates.
        emotion_weights: ``(T, 8)`` the emotion that conditioned each frame. emotion_labels: their names.
        seed: the seed of the procedural motion (pass it again to get the same video).
        original_audio: ``(M,)`` or ``(M, C)`` float32, the recording as given (its rate and channels): the
            sound track :meth:`save` writes. original_sampling_rate: its rate in Hz.
        output_type: how :attr:`frames` is returned (see :data:`OUTPUT_TYPES`).
        frames: rendered on first access (use :meth:`save` or :meth:`iter_frames` for long videos: they stream).
    """

    fps: float
    audio: np.ndarray
    sampling_rate: int
    landmarks: np.ndarray
    emotion_weights: np.ndarray
    emotion_labels: tuple[str, ...]
    seed: int
    render: Callable[[], Iterator[np.ndarray]] = field(repr=False)
    original_audio: np.ndarray | None = field(default=None, repr=False)
    original_sampling_rate: int | None = None
    output_type: str = "uint8"
    _frames: np.ndarray | None = field(default=None, repr=False)

    _KEYS = ("frames", "audio", "sampling_rate", "original_audio", "original_sampling_rate", "fps", "landmarks")
    _KEYS += ("emotion_weights", "emotion_labels", "emotion", "seed")

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
    def frames(self) -> np.ndarray | list:
        """All frames, as :attr:`output_type` says (default ``(T, H, W, 3)`` uint8)."""
        if self._frames is None:
            self._frames = np.concatenate(list(self.render()), axis=0)
        if self.output_type == "np":
            return self._frames.astype(np.float32) / 255
        if self.output_type == "pil":
            from PIL import Image

            return [Image.fromarray(frame) for frame in self._frames]
        return self._frames

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Frame batches ``(b, H, W, 3)`` uint8, rendered as they are consumed."""
        if self._frames is not None:
            yield self._frames
        else:
            yield from self.render()

    def save(self, path: str | os.PathLike, *, preset: str = "veryfast", crf: int = 20) -> Path:
        """Write an H.264 + AAC MP4 with the original sound track, atomically (the file appears only when complete)."""
        audio, rate = self.audio, self.sampling_rate
        if self.original_audio is not None and self.original_sampling_rate is not None:
            audio, rate = self.original_audio, self.original_sampling_rate
        return write_mp4(path, self.iter_frames(), self.fps, audio, rate, preset=preset, crf=crf)

    # Mapping interface (like the dicts other transformers pipelines return)
    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def __contains__(self, key: object) -> bool:
        return key in self._KEYS

    def __eq__(self, other: object) -> bool:  # identity: comparing would render both videos
        return self is other

    __hash__ = object.__hash__


class EmotionalTalkingFacePipeline(Pipeline):
    """Portrait + speech (+ emotion) → :class:`TalkingFaceOutput` (a list of them for a list of inputs).

    Example:

    ```python
    >>> import emotalk_pipeline  # registers the task
    >>> from transformers import pipeline
    >>> pipe = pipeline("emotional-talking-face")
    >>> video = pipe("portrait.jpg", "speech.wav", emotion="happy", intensity=0.8, seed=0)
    >>> video.save("talking.mp4")
    >>> videos = pipe(["a.jpg", "b.jpg"], ["a.wav", "b.wav"], seed=0)  # a list in, a list out
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    window_seconds = WINDOW_SECONDS
    overlap_seconds = OVERLAP_SECONDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.processor, EmoTalkProcessor):  # the face settings saved beside the weights
            self.processor = EmoTalkProcessor.for_model(self.model, feature_extractor=self.feature_extractor)
        self.face_processor: FaceProcessor = self.processor.face_processor

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        return tuple(self.model.config.landmark_config.emotion_labels)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Write a self-contained Hub folder (model, preprocessor, pipeline code) to ``save_directory``."""
        from .hub_folder import write_pipeline_folder

        kwargs.setdefault("preprocessor", self.processor)  # the feature extractor and the face settings
        return write_pipeline_folder(self.model, save_directory, **kwargs)

    # -------------------------------------------------------------------------------------- parameters
    def __call__(self, image: Any, audio: Any = None, **kwargs) -> TalkingFaceOutput | list[TalkingFaceOutput]:
        """Generate a talking-face video (or one per input when given lists).

        Args:
            image: portrait: path, URL, base64 string, PIL image, numpy array or tensor; a
                ``{"image": ..., "audio": ...}`` dict; or a list of either (then ``audio`` is a list too, or
                each item is such a dict).
            audio: speech: path (wav/mp3/flac/ogg/m4a), array (with ``sampling_rate``) or
                ``{"array": ..., "sampling_rate": ...}``.
            emotion: a label (neutral, angry, contempt, disgusted, fear, happy, sad, surprised), "auto"
                (heard in the voice), a blend ``{"happy": 0.7, "surprised": 0.3}`` or a schedule
                ``[(0.0, "neutral"), (2.5, "happy")]``. Default "neutral".
            intensity: emotion strength in [0, 1]. Default 1.0: the model's calibrated strength (its config's
                ``emotion_strength``: how far MEAD actors move at their strongest level, where that was measurable).
            pose: "natural" (model + seeded sway), "still" (no head motion) or a scale of "natural" in [0, 3].
            photo_expression: "replace" (default: the photo's own expression, e.g. a smile, is removed so that
                the requested emotion replaces it) or "keep" (the emotion is added to the photo's expression).
            blink: add seeded blinks (2–6 s apart). gaze: add seeded gaze saccades. (``True`` / ``False``.)
            fps: video frame rate in [1, 60]. Default 25.
            paste_back: paste the generated face into the full photo (True) or return the aligned crops.
            seed: seed of the procedural motion; None picks one (kept in ``output.seed``).
            batch_size: frames per stage-2 batch, 1 to 256. face_index: which face when the photo has several.
            sampling_rate: rate of an array ``audio``. max_audio_seconds: longest accepted audio.
            output_type: "uint8" (default), "np" or "pil": the form of ``output.frames``.
            progress: show a progress bar over frames.
            reference_images: up to 4 more photos of the same person (a list of anything ``image`` accepts).
                Each is face-detected and aligned like ``image``, and stage 2 fuses all the references per
                pixel (details the first photo lacks, e.g. teeth or an ear, can come from another one); the
                first photo stays the one animated and pasted back: its pose and landmarks drive the video.

        Numbers must be real numbers (Python or numpy), integers integers, flags bools: strings are refused.
        """
        if "batch_size" in kwargs:  # the frame batch of stage 2, not the base class's input batching
            kwargs["frame_batch_size"] = kwargs.pop("batch_size")
        return super().__call__(_pair_inputs(image, audio), **kwargs)

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
        output_type: str | None = None,
        progress: bool | None = None,
        photo_expression: str | None = None,
        reference_images: Any = None,
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
            forward["pose_scale"] = _pose_scale(pose)
        if photo_expression is not None:
            if photo_expression not in PHOTO_EXPRESSION_MODES:
                raise EmoTalkInputError(
                    f"photo_expression must be one of {', '.join(PHOTO_EXPRESSION_MODES)}, got {photo_expression!r}"
                )
            forward["photo_expression"] = photo_expression
        for name, value, stage in (("blink", blink, forward), ("gaze", gaze, forward)):
            if value is not None:
                stage[name] = _flag(name, value)
        if paste_back is not None:
            postprocess["paste_back"] = _flag("paste_back", paste_back)
        if progress is not None:
            postprocess["progress"] = _flag("progress", progress)
        if seed is not None:
            forward["seed"] = _integer("seed", seed, 0, 2**63 - 1, "a non-negative integer or None")
        if frame_batch_size is not None:
            postprocess["batch_size"] = _integer(
                "batch_size", frame_batch_size, 1, MAX_FRAME_BATCH, f"a positive integer up to {MAX_FRAME_BATCH}"
            )
        if reference_images is not None:
            preprocess["reference_images"] = _reference_list(reference_images)
        if face_index is not None:
            preprocess["face_index"] = _integer("face_index", face_index, 0, 2**31, "a non-negative integer")
        if sampling_rate is not None:
            preprocess["sampling_rate"] = _integer("sampling_rate", sampling_rate, 1000, 768000, "a rate in Hz")
        if max_audio_seconds is not None:
            preprocess["max_audio_seconds"] = _number("max_audio_seconds", max_audio_seconds, 0.1, math.inf)
        if output_type is not None:
            if output_type not in OUTPUT_TYPES:
                raise EmoTalkInputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
            postprocess["output_type"] = output_type
        return preprocess, forward, postprocess

    # ------------------------------------------------------------------------------------------ stages
    def preprocess(
        self, inputs: dict, face_index=None, sampling_rate=None, max_audio_seconds=None, reference_images=()
    ) -> dict:
        if max_audio_seconds is None:
            max_audio_seconds = float(self.model.config.max_audio_seconds)
        image = self.face_processor.load_image(_resolve_image(inputs["image"]))
        face = self.face_processor(image, face_index=face_index)
        references = [self._reference_face(number, item) for number, item in enumerate(reference_images, start=1)]
        audio = read_audio(inputs["audio"], sampling_rate, max_seconds=max_audio_seconds)
        features = self.feature_extractor(audio.samples, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        return {
            "image": image,
            "face": face,
            "references": references,
            "audio": audio.samples,
            "original_audio": audio.original,
            "original_sampling_rate": audio.original_sampling_rate,
            "input_values": features["input_values"],
        }

    def _reference_face(self, number: int, image: Any) -> FaceCrop:
        """Reference photo ``number`` (1-based in ``reference_images``), aligned like the portrait; its errors say
        which reference failed (same error class)."""
        try:
            return self.face_processor(self.face_processor.load_image(_resolve_image(image)), face_index=0)
        except EmoTalkInputError as err:
            raise type(err)(f"reference image {number} (reference_images[{number - 1}]): {err}") from err

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
        photo_expression="replace",
    ) -> dict:
        face: FaceCrop = inputs["face"]
        audio: np.ndarray = inputs["audio"]
        num_frames = num_video_frames(audio.size, fps)
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        weights = emotion_weights(emotion, self.emotion_labels, num_frames, fps)
        source_landmarks = torch.from_numpy(face.landmarks)[None]
        motion = self.model.predict_landmarks(
            inputs["input_values"],
            source_landmarks,
            emotion=None if weights is None else torch.from_numpy(weights)[None],
            intensity=intensity,
            fps=fps,
            num_frames=num_frames,
            window_seconds=self.window_seconds,
            overlap_seconds=self.overlap_seconds,
            photo_expression=photo_expression,
        )
        head_pose, gazes, blinks = _procedural_motion(
            motion, audio, fps, np.random.default_rng(seed), pose_scale, blink, gaze
        )
        landmarks = self.model.compose_landmarks(
            source_landmarks, motion.expression, head_pose, gazes, blinks, photo_expression=photo_expression
        )
        return {
            **{key: inputs[key] for key in ("image", "face", "audio", "original_audio", "original_sampling_rate")},
            "references": inputs.get("references", []),
            "landmarks": landmarks[0],
            "emotion_weights": motion.emotion_weights[0],
            "fps": fps,
            "seed": seed,
        }

    def postprocess(
        self, outputs: dict, paste_back=True, batch_size=8, progress=True, output_type="uint8"
    ) -> TalkingFaceOutput:
        face: FaceCrop = outputs["face"]
        image: np.ndarray = outputs["image"]
        landmarks = torch.as_tensor(outputs["landmarks"])
        model, face_processor = self.model, self.face_processor

        pixel_values, source_landmarks = _source_tensors([face, *outputs.get("references", [])])

        def render() -> Iterator[np.ndarray]:
            reuse_freed_memory()  # no fresh pages per batch (~17 % of stage 2's CPU time on Linux)
            batches = model.render(pixel_values, source_landmarks, landmarks, batch_size)
            rendered = _rendered_ahead(_inference_batches(batches), render_ahead())  # stage 2 in a thread
            with (
                closing(rendered),
                tqdm(total=len(landmarks), unit="frame", desc="rendering", disable=not progress) as bar,
            ):
                for crops in rendered:
                    crops = crops.numpy()
                    yield face_processor.paste_back(image, crops, face) if paste_back else crops
                    bar.update(len(crops))

        return TalkingFaceOutput(
            fps=outputs["fps"],
            audio=outputs["audio"],
            sampling_rate=SAMPLING_RATE,
            landmarks=landmarks.float().cpu().numpy(),
            emotion_weights=np.asarray(torch.as_tensor(outputs["emotion_weights"]).float().cpu()),
            emotion_labels=self.emotion_labels,
            seed=outputs["seed"],
            render=render,
            original_audio=outputs.get("original_audio"),
            original_sampling_rate=outputs.get("original_sampling_rate"),
            output_type=output_type,
        )


# ------------------------------------------------------------------------------------------------ helpers
def _pair_inputs(image: Any, audio: Any) -> dict | list[dict]:
    """``(image, audio)``, ``{"image", "audio"}`` or lists of them → one input dict or a list of them."""
    if isinstance(image, list):
        if audio is None:
            return [_pair_inputs(item, None) for item in image]
        if not isinstance(audio, list) or len(audio) != len(image):
            got = f"a list of {len(audio)}" if isinstance(audio, list) else type(audio).__name__
            raise EmoTalkInputError(f"{len(image)} images need a list of {len(image)} audio inputs, got {got}")
        return [_pair_inputs(i, a) for i, a in zip(image, audio, strict=True)]
    if audio is None and isinstance(image, Mapping):
        if "image" not in image or "audio" not in image:
            raise EmoTalkInputError(f"an input dict needs 'image' and 'audio' keys, got {sorted(map(str, image))}")
        image, audio = image["image"], image["audio"]
    if audio is None:
        raise EmoTalkInputError("missing audio: call pipe(image, audio, ...)")
    return {"image": image, "audio": audio}


def _reference_list(reference_images: Any) -> tuple:
    """``reference_images`` as a tuple of at most :data:`MAX_REFERENCE_IMAGES` image inputs (not read yet)."""
    if not isinstance(reference_images, (list, tuple)):
        raise EmoTalkInputError(
            f"reference_images must be a list of up to {MAX_REFERENCE_IMAGES} images (paths, PIL images or "
            f"arrays), got {type(reference_images).__name__}"
        )
    if len(reference_images) > MAX_REFERENCE_IMAGES:
        raise EmoTalkInputError(
            f"reference_images takes at most {MAX_REFERENCE_IMAGES} extra photos, got {len(reference_images)}"
        )
    for number, item in enumerate(reference_images, start=1):
        if item is None:
            raise EmoTalkInputError(f"reference image {number} (reference_images[{number - 1}]) is None")
    return tuple(reference_images)


def _source_tensors(faces: list[FaceCrop]) -> tuple[torch.Tensor, torch.Tensor]:
    """The portrait (first) and the reference crops: ``(3, S, S)`` uint8 and ``(478, 3)`` for one face, else
    ``(1, K, 3, S, S)`` uint8 and ``(1, K, 478, 3)`` float32."""
    pixels = torch.from_numpy(np.stack([f.crop for f in faces])).permute(0, 3, 1, 2)
    landmarks = torch.from_numpy(np.stack([f.landmarks for f in faces]))
    if len(faces) == 1:
        return pixels[0], landmarks[0]
    return pixels[None], landmarks[None]


def _resolve_image(image: Any) -> Any:
    """URLs and base64 strings (raw or ``data:image/...``) → PIL through ``transformers.image_utils.load_image``."""
    if not isinstance(image, str) or os.path.exists(image):
        return image
    if image.startswith(("http://", "https://", "data:image/")) or _BASE64.fullmatch(image):
        from transformers.image_utils import load_image

        try:
            return load_image(image)
        except (ValueError, OSError) as err:
            shown = image if len(image) <= 80 else f"{image[:60]}... ({len(image)} characters)"
            raise ImageReadError(f"cannot read an image from {shown!r}: {type(err).__name__}") from err
    return image


def render_ahead() -> int:
    """How many batches to render ahead in a thread: :data:`RENDER_AHEAD` when cores are left over for the
    caller's paste-back and encoding, else 0 — on a 2-core machine where stage 2 already uses both cores the
    thread only competes with it (measured 5 % slower whole runs, ``benchmarks/RESULTS.md``)."""
    return RENDER_AHEAD if (os.cpu_count() or 1) > torch.get_num_threads() else 0


def _rendered_ahead(items: Iterator[Any], ahead: int) -> Iterator[Any]:
    """The items of ``items``, produced in a background thread up to ``ahead`` items before they are consumed.

    Stage 2 (torch releases the GIL) then overlaps the caller's paste-back and encoding. An exception raised by
    ``items`` is re-raised here; when the consumer stops (the generator closed, an error, KeyboardInterrupt or
    SystemExit), the thread finishes the item in progress, closes ``items`` and is joined before this returns.
    ``ahead=0`` iterates in the caller's thread (the sequential reference).
    """
    if ahead <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, ready, stop), name="emotalk-render", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "error":
                raise value
            if kind == "done":
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a pending put, then wait for the item in progress
            _drain(ready)
            thread.join(timeout=0.05)


def _produce(items: Iterator[Any], ready: queue.Queue, stop: threading.Event) -> None:
    """The background side of :func:`_rendered_ahead`: ``("item", x)``… then ``("done", None)`` or ``("error", e)``."""
    try:
        for item in items:
            if not _offer(ready, stop, ("item", item)):
                return
        _offer(ready, stop, ("done", None))
    except BaseException as error:  # handed to the consumer, which re-raises it
        _offer(ready, stop, ("error", error))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _offer(ready: queue.Queue, stop: threading.Event, message: tuple[str, Any]) -> bool:
    """Put ``message`` unless the consumer has stopped; returns whether it was put."""
    while not stop.is_set():
        try:
            ready.put(message, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _drain(ready: queue.Queue) -> None:
    while True:
        try:
            ready.get_nowait()
        except queue.Empty:
            return


def _inference_batches(batches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Pull each item under ``torch.inference_mode()`` without leaving the mode on between items."""
    iterator = iter(batches)
    while True:
        with torch.inference_mode():
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def _procedural_motion(motion, audio: np.ndarray, fps: float, rng: np.random.Generator, pose_scale, blink, gaze):
    """Seeded head sway, blinks and saccades mixed into stage 1's (1, T, ...) motion → head_pose, gaze, blink."""
    num_frames = motion.head_pose.shape[1]
    device = motion.head_pose.device
    as_tensor = lambda x: torch.from_numpy(x).to(device)[None]  # noqa: E731
    head_pose = motion.head_pose * pose_scale
    if pose_scale > 0:
        sway = head_sway(num_frames, fps, rng, audio_energy(audio, num_frames, fps))
        head_pose = head_pose + as_tensor(pose_scale * sway)
    blinks = torch.maximum(motion.blink, as_tensor(blink_track(num_frames, fps, rng))) if blink else None
    gazes = motion.gaze + as_tensor(gaze_saccades(num_frames, fps, rng)) if gaze else None
    return (
        head_pose,
        torch.zeros_like(motion.gaze) if gazes is None else gazes,
        torch.zeros_like(motion.blink) if blinks is None else blinks,
    )


def _pose_scale(pose: Any) -> float:
    if isinstance(pose, str):
        if pose not in ("natural", "still"):
            raise EmoTalkInputError(f"pose must be 'natural', 'still' or a number in [0, 3], got {pose!r}")
        return 0.0 if pose == "still" else 1.0
    return _number("pose", pose, *POSE_SCALE_RANGE, expected="'natural', 'still' or a number")


def _number(name: str, value: Any, low: float, high: float, expected: str = "a number") -> float:
    """A real number (Python or numpy; not a bool or a string) in ``[low, high]``."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)) or math.isnan(value):
        raise EmoTalkInputError(f"{name} must be {expected} in [{low:g}, {high:g}], got {value!r}")
    if not low <= float(value) <= high:
        raise EmoTalkInputError(f"{name} must be {expected} in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int, expected: str) -> int:
    """An integer (Python or numpy; not a bool) in ``[low, high]``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        raise EmoTalkInputError(f"{name} must be {expected} (from {low} to {high}), got {value!r}")
    return int(value)


def _flag(name: str, value: Any) -> bool:
    """``True`` or ``False`` (numpy bools too): ``"False"``, ``"no"`` or ``0`` are refused, not guessed."""
    if not isinstance(value, (bool, np.bool_)):
        raise EmoTalkInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


__all__ = [
    "MAX_FRAME_BATCH",
    "MAX_REFERENCE_IMAGES",
    "OUTPUT_TYPES",
    "EmotionalTalkingFacePipeline",
    "TalkingFaceOutput",
    "check_output_path",
]
