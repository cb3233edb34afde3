"""EmoTalk's Gradio Space: one portrait + speech (+ an emotion) → a talking-face MP4 with sound.

Run it locally with ``python space/app.py`` (then open http://127.0.0.1:7860). The page is built by
:func:`build_demo` from a loaded pipeline and nothing launches at import, so the tests build it around a
pipeline of their own and launch it themselves.

All GPU work happens in one function, ``render_on_gpu`` inside :func:`build_demo`, decorated with
``spaces.GPU``: on a ZeroGPU Space each call borrows a GPU; anywhere else the decorator does nothing.
Cheap checks (missing inputs, the emotion schedule's syntax, unreadable, silent or too long audio) run
before it, so a bad input never waits for a GPU.

The limits of the public demo are a :class:`SpaceConfig`, read from ``EMOTALK_*`` environment variables
(a Space's "Variables" settings).
"""

from __future__ import annotations

import spaces  # before torch: on ZeroGPU it has to patch CUDA's initialisation first

# isort: split

import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import emotalk_pipeline
import gradio as gr
import numpy as np
from emotalk_pipeline.emotion import is_auto, parse_emotion_string, validate_emotion
from emotalk_pipeline.pipeline_emotalk import MAX_REFERENCE_IMAGES
from PIL import Image, ImageDraw

from modeling_emotalk import landmarks as lm
from modeling_emotalk.audio_processing import SAMPLING_RATE, load_audio
from modeling_emotalk.errors import (
    AudioLengthError,
    AudioReadError,
    EmoTalkInputError,
    FaceTooSmallError,
    ImageReadError,
    ImageSizeError,
    InvalidAudioError,
    NoFaceError,
    SilentAudioError,
)
from modeling_emotalk.face_processing import read_image_file

logger = logging.getLogger("emotalk.space")

MODEL_ID = "emotalk/emotalk-default"  # the Hub export of the embedded default checkpoint
HEAD_MOTIONS: dict[str, str | float] = {"natural": "natural", "subtle": 0.5, "lively": 1.6, "still": "still"}
OUTPUT_MAX_AGE_SECONDS = 3600  # generated videos are deleted after an hour

HEADER = """
<div style="text-align:center">
<h1 style="margin-bottom:0.2em">EmoTalk · emotional talking faces</h1>
<p>One photo and a voice → a talking-face video with lip sync, emotion, head motion and blinks.<br>
Add a <b>portrait</b> (upload or webcam) and <b>speech</b> (file or microphone), pick an emotion, press
<b>Generate</b>.</p>
</div>
"""

CSS = """
#generate-button { min-height: 3.2rem; font-size: 1.1rem; }
#details p { margin: 0.2em 0; }
footer { margin-top: 0.5rem; }
"""


def _env_number(name: str, default: float, cast: type = float) -> Any:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = cast(text)
    except ValueError as err:
        raise ValueError(f"{name} must be a {cast.__name__}, got {text!r}") from err
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class SpaceConfig:
    """Limits and settings of the public demo. :meth:`from_env` reads each from its environment variable."""

    max_audio_seconds: float = 30.0  # EMOTALK_MAX_AUDIO_SECONDS: longer speech is refused
    # EMOTALK_MAX_IMAGE_SIZE: photos with a longer side are decoded reduced and downscaled to it. The face
    # processor detects small faces on a view of at most ~1920 px (its tiled detector), so 2048 keeps every face
    # it would find at full size; much smaller values lose the small faces of large photos.
    max_image_size: int = 2048
    max_upload_size: str = "20mb"  # EMOTALK_MAX_UPLOAD_SIZE: larger uploads are refused by Gradio itself
    concurrency_limit: int = 1  # EMOTALK_CONCURRENCY: videos generated at the same time
    max_queue_size: int = 20  # EMOTALK_MAX_QUEUE: visitors beyond this many waiting are asked to retry later
    gpu_seconds: int = 120  # EMOTALK_GPU_SECONDS: the ZeroGPU time requested per video
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "emotalk-space")
    # EMOTALK_SPACE_CACHE: the examples' files, their cached results and the generated videos

    @classmethod
    def from_env(cls) -> SpaceConfig:
        default = cls()
        return cls(
            max_audio_seconds=_env_number("EMOTALK_MAX_AUDIO_SECONDS", default.max_audio_seconds),
            max_image_size=_env_number("EMOTALK_MAX_IMAGE_SIZE", default.max_image_size, int),
            max_upload_size=os.environ.get("EMOTALK_MAX_UPLOAD_SIZE") or default.max_upload_size,
            concurrency_limit=_env_number("EMOTALK_CONCURRENCY", default.concurrency_limit, int),
            max_queue_size=_env_number("EMOTALK_MAX_QUEUE", default.max_queue_size, int),
            gpu_seconds=_env_number("EMOTALK_GPU_SECONDS", default.gpu_seconds, int),
            cache_dir=Path(os.environ.get("EMOTALK_SPACE_CACHE") or default.cache_dir),
        )


def launch_options(config: SpaceConfig) -> dict[str, Any]:
    """The ``demo.launch(...)`` arguments that belong to the page (theme, CSS, upload limit)."""
    return {
        "theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="pink"),
        "css": CSS,
        "max_file_size": config.max_upload_size,
        "footer_links": ["api", "gradio"],
    }


# ------------------------------------------------------------------------------------------ small helpers


def _readable(err: Exception, *paths: str | None) -> str:
    """An input error's message for the page: upload paths shortened to their file names, first letter capital."""
    message = str(err)
    for path in paths:
        if path:
            message = message.replace(str(path), Path(path).name)
    return message[:1].upper() + message[1:]


def _title(err: EmoTalkInputError) -> str:
    """The error pop-up's title: which input to fix."""
    if str(err).startswith("reference image"):  # the pipeline's prefix for the extra photos
        return "More photos"
    if isinstance(err, (NoFaceError, FaceTooSmallError, ImageReadError, ImageSizeError)):
        return "Portrait"
    if isinstance(err, (AudioReadError, AudioLengthError, InvalidAudioError, SilentAudioError)):
        return "Speech"
    return "Input"


def portrait_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose upload reaches the app as the uploaded file's path, undecoded.

    Gradio's own image preprocessing opens (and for ``type="numpy"`` decodes at full size) every upload before
    the app sees it, so a text file, a truncated JPEG or a 20000² PNG fail there with the generic "upstream app
    raised an exception". Here the app reads the file itself, with the project's checks (:func:`read_portrait`).
    (An instance override, not a subclass: Gradio writes a ``.pyi`` file next to every component subclass.)
    """
    component = gr.Image(type="filepath", **kwargs)
    decode = component.preprocess

    def path_only(payload):
        if payload is None or payload.path is None:  # nothing, or a base64 data URL: Gradio decodes those
            return decode(payload)
        return str(payload.path)

    component.preprocess = path_only
    return component


def read_portrait(portrait: str | np.ndarray, max_size: int) -> tuple[np.ndarray, bool]:
    """The portrait as RGB uint8 with its longer side at most ``max_size``, and whether it was downscaled.

    A path is read with the project's loader: its size is checked from the file header before decoding
    (:data:`~modeling_emotalk.face_processing.MAX_IMAGE_PIXELS`), and a large JPEG is decoded reduced.
    Raises the project's :class:`EmoTalkInputError` subclasses for unreadable or oversized files.
    """
    if isinstance(portrait, np.ndarray):
        height, width = portrait.shape[:2]
        if max(height, width) <= max_size:
            return portrait, False
        scale = max_size / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(Image.fromarray(portrait).resize(size, Image.Resampling.LANCZOS)), True
    image = read_image_file(portrait, max_side=max_size, max_image_size=None)
    with Image.open(portrait) as header:  # readable: read_image_file just decoded it
        downscaled = max(header.size) > max_size
    return image, downscaled


def read_reference_photos(photos: list[str] | None, max_size: int) -> list[np.ndarray]:
    """The optional extra photos of the same person, each read like the portrait (:func:`read_portrait`).

    Raises ``gr.Error`` (titled "More photos") naming the photo for too many photos or an unreadable one.
    """
    photos = [photo for photo in photos or [] if photo]
    if len(photos) > MAX_REFERENCE_IMAGES:
        raise gr.Error(
            f"Add at most {MAX_REFERENCE_IMAGES} more photos of the same person, got {len(photos)}.",
            title="More photos",
        )
    images = []
    for number, photo in enumerate(photos, start=1):
        try:
            images.append(read_portrait(photo, max_size)[0])
        except EmoTalkInputError as err:
            path = photo if isinstance(photo, str) else None
            message = _readable(err, path)
            raise gr.Error(f"Reference image {number}: {message}", title="More photos", print_exception=False) from err
    return images


def _prune(folder: Path, max_age: float) -> None:
    """Delete the generated files older than ``max_age`` seconds (a public demo must not fill its disk).

    The videos (``emotalk-*.mp4``) and the temporary ``.emotalk-*.partial.mp4`` files an interrupted encoding
    may leave behind.
    """
    cutoff = time.time() - max_age
    for path in [*folder.glob("emotalk-*"), *folder.glob(".emotalk-*.partial.mp4")]:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:  # another worker pruned it first
            pass


_PREVIEW_LINES = (
    (lm.FACE_OVAL + lm.FACE_OVAL[:1], (150, 150, 165)),
    (lm.RIGHT_EYEBROW, (90, 90, 110)),
    (lm.LEFT_EYEBROW, (90, 90, 110)),
    (lm.NOSE, (150, 150, 165)),
    ((33, *lm.RIGHT_EYE_UPPER, 133, *lm.RIGHT_EYE_LOWER[::-1], 33), (40, 90, 200)),
    ((263, *lm.LEFT_EYE_UPPER, 362, *lm.LEFT_EYE_LOWER[::-1], 263), (40, 90, 200)),
    (lm.LIPS_OUTER_UPPER + lm.LIPS_OUTER_LOWER[::-1], (200, 40, 80)),
    (lm.LIPS_INNER_UPPER + lm.LIPS_INNER_LOWER[::-1], (200, 40, 80)),
)


def landmark_strip(landmarks: np.ndarray, fps: float, rows: int = 2, columns: int = 3, size: int = 160) -> np.ndarray:
    """A cheap preview of the driving landmarks: ``rows * columns`` evenly spaced frames in a grid, RGB uint8.

    ``landmarks`` is ``(T, 478, 3)`` in normalized crop coordinates ([-1, 1], y down). A title band on top
    leaves room for the image component's overlaid label and buttons.
    """
    band = 30
    count = min(rows * columns, len(landmarks))
    indices = np.linspace(0, len(landmarks) - 1, count).round().astype(int)
    grid = Image.new("RGB", (columns * size, band + rows * size), (250, 250, 252))
    draw = ImageDraw.Draw(grid)
    draw.rectangle((0, 0, columns * size, band - 1), fill=(238, 238, 245))
    for cell, index in enumerate(indices):
        left, top = (cell % columns) * size, band + (cell // columns) * size
        points = (landmarks[index, :, :2] + 1.0) * (size / 2.0) + np.array([left, top])
        for x, y in points[::3]:
            draw.point((float(x), float(y)), fill=(185, 185, 200))
        for indices_, colour in _PREVIEW_LINES:
            draw.line([tuple(map(float, points[i])) for i in indices_], fill=colour, width=2)
        for iris in (lm.RIGHT_IRIS[0], lm.LEFT_IRIS[0]):
            x, y = points[iris]
            draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=(20, 20, 30))
        draw.text((left + 6, top + size - 16), f"{index / fps:.2f} s", fill=(60, 60, 70))
        draw.rectangle((left, top, left + size - 1, top + size - 1), outline=(225, 225, 232))
    return np.asarray(grid)


def _example_files(cache_dir: Path) -> tuple[str, str]:
    """The examples' portrait (scikit-image's public-domain astronaut, written once as a PNG) and speech."""
    from skimage import data

    folder = cache_dir / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    portrait = folder / "astronaut.png"
    if not portrait.is_file():
        partial = folder / f".astronaut.{uuid.uuid4().hex[:8]}.png"
        Image.fromarray(data.astronaut()).save(partial)
        partial.replace(portrait)
    return str(portrait), str(emotalk_pipeline.ASSETS / "demo_speech.flac")


# ----------------------------------------------------------------------------------------------- the page


def build_demo(pipe, config: SpaceConfig | None = None) -> gr.Blocks:
    """The EmoTalk page around a loaded ``emotional-talking-face`` pipeline (``launch()`` it with :func:`launch_options`).

    Its API endpoint ``/generate`` takes (portrait, speech, emotion, intensity, emotion_schedule, head_motion,
    blink, paste_back, landmark_preview, seed, reference_photos, keep_photo_expression) and returns (video path, landmark preview or None, details).
    """
    config = config or SpaceConfig()
    labels = tuple(pipe.emotion_labels)
    output_dir = config.cache_dir / "outputs"
    output_dir.mkdir(parents=True, exist_ok=True)

    @spaces.GPU(duration=config.gpu_seconds)
    def render_on_gpu(image: np.ndarray, audio: np.ndarray, options: dict, output: str, preview: bool):
        """The only function that needs an accelerator: stage 1, stage 2 (while encoding) and the preview."""
        try:
            video = pipe(image, audio, sampling_rate=SAMPLING_RATE, progress=True, **options)
            video.save(output)
        except EmoTalkInputError as err:
            raise gr.Error(_readable(err), title=_title(err), print_exception=False) from err
        strip = landmark_strip(video.landmarks, video.fps) if preview else None
        return output, strip, video.emotion, video.seed, video.num_frames, video.fps

    def generate(
        portrait: str | np.ndarray | None,
        speech: str | None,
        emotion: str = "neutral",
        intensity: float = 0.8,
        emotion_schedule: str = "",
        head_motion: str = "natural",
        blink: bool = True,
        paste_back: bool = True,
        landmark_preview: bool = False,
        seed: float | None = 0,
        reference_photos: list[str] | None = None,
        keep_photo_expression: bool | None = False,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008  (Gradio reads the default)
    ):
        """Animate ``portrait`` with ``speech``: returns the MP4, an optional landmark strip and a summary."""
        if portrait is None:
            raise gr.Error("Add a portrait first: upload a photo (or take one with the webcam).", title="No portrait")
        if speech is None:
            raise gr.Error("Add speech first: upload an audio file (or record one).", title="No speech")
        try:
            spec = parse_emotion_string(emotion_schedule) if emotion_schedule and emotion_schedule.strip() else emotion
            validate_emotion(spec, labels)
        except EmoTalkInputError as err:
            raise gr.Error(_readable(err), title="Emotion", print_exception=False) from err
        if head_motion not in HEAD_MOTIONS:
            raise gr.Error(
                f"Head motion must be one of {', '.join(HEAD_MOTIONS)}, got {head_motion!r}.", title="Options"
            )
        if intensity is None or not 0.0 <= float(intensity) <= 1.0:
            raise gr.Error(f"The intensity must be between 0 and 1, got {intensity!r}.", title="Options")
        if seed is None or not float(seed).is_integer() or seed < 0:
            raise gr.Error(f"The seed must be a whole number ≥ 0, got {seed!r}.", title="Seed")

        progress(0.0, desc="Reading the speech")
        try:
            audio = load_audio(speech, max_seconds=None)
        except EmoTalkInputError as err:
            raise gr.Error(_readable(err, speech), title=_title(err), print_exception=False) from err
        seconds = audio.size / SAMPLING_RATE
        if seconds > config.max_audio_seconds:
            raise gr.Error(
                f"The speech is {seconds:.1f} s long; this demo accepts up to {config.max_audio_seconds:g} s. "
                "Trim the recording, or run EmoTalk on your own machine for longer clips.",
                title="Speech too long",
            )
        try:
            image, downscaled = read_portrait(portrait, config.max_image_size)
        except EmoTalkInputError as err:
            path = portrait if isinstance(portrait, str) else None
            raise gr.Error(_readable(err, path), title=_title(err), print_exception=False) from err
        references = read_reference_photos(reference_photos, config.max_image_size)

        _prune(output_dir, OUTPUT_MAX_AGE_SECONDS)
        output = output_dir / f"emotalk-{uuid.uuid4().hex[:10]}.mp4"
        options = {
            "emotion": spec,
            "intensity": float(intensity),
            "pose": HEAD_MOTIONS[head_motion],
            "blink": bool(blink),
            "paste_back": bool(paste_back),
            "seed": int(seed),
            "max_audio_seconds": config.max_audio_seconds,
            "photo_expression": "keep" if keep_photo_expression else "replace",
        }
        if references:
            options["reference_images"] = references
        progress(0.05, desc="Animating the face")
        try:
            path, strip, heard, used_seed, frames, fps = render_on_gpu(
                image, audio, options, str(output), bool(landmark_preview)
            )
        except gr.Error:
            raise
        except Exception as err:  # the page gets a sentence, the log gets the traceback
            logger.exception("generation failed")
            raise gr.Error(
                f"Generation failed unexpectedly ({type(err).__name__}). Please try again, or try another photo "
                "or recording.",
                print_exception=False,
            ) from err
        emotion_note = f"**{heard}**" + (
            " (heard in the voice: experimental, not measured on real emotional speech)" if is_auto(spec) else ""
        )
        if not isinstance(spec, str):
            emotion_note = f"**{heard}** dominant (blend or schedule)"
        details = (
            f"Emotion: {emotion_note} · seed **{used_seed}** · {seconds:.1f} s, {frames} frames at {fps:g} fps"
            + (f" · photo downscaled to {config.max_image_size} px" if downscaled else "")
            + (f" · {len(references)} more photo(s) of the person" if references else "")
        )
        return path, strip, details

    def generate_example(
        portrait,
        speech,
        emotion,
        intensity,
        emotion_schedule,
        head_motion,
        blink,
        paste_back,
        landmark_preview,
        seed,
        reference_photos=None,
        keep_photo_expression=False,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008
    ):
        """:func:`generate` for the cached examples: video and details only (Gradio cannot reload an empty image
        from its example cache, so the examples never cache a landmark preview)."""
        path, _, details = generate(
            portrait,
            speech,
            emotion,
            intensity,
            emotion_schedule,
            head_motion,
            blink,
            paste_back,
            False,
            seed,
            reference_photos,
            keep_photo_expression,
            progress,
        )
        return path, details

    example_portrait, example_speech = _example_files(config.cache_dir)

    def example(emotion: str, intensity: float, schedule: str, head_motion: str, seed: int) -> list:
        """One example row, in the order of the inputs (blinks and paste-back on, no landmark preview)."""
        return [example_portrait, example_speech, emotion, intensity, schedule, head_motion, True, True, False, seed]

    emotion_choices = [("Auto (from the voice; experimental, unmeasured on real voices)", "auto")] + [
        (label.capitalize(), label) for label in labels
    ]

    with gr.Blocks(title="EmoTalk · emotional talking faces", delete_cache=(3600, 3600)) as demo:
        gr.HTML(HEADER)
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=300):
                portrait = portrait_input(
                    label="Portrait",
                    sources=["upload", "webcam", "clipboard"],
                    height=330,
                    elem_id="portrait",
                )
                speech = gr.Audio(
                    label="Speech",
                    sources=["upload", "microphone"],
                    type="filepath",
                    elem_id="speech",
                )
                reference_photos = gr.File(
                    label=f"More photos of the same person (optional, up to {MAX_REFERENCE_IMAGES})",
                    file_count="multiple",
                    file_types=["image"],
                    type="filepath",
                    height=120,
                    elem_id="reference-photos",
                )
            with gr.Column(scale=6, min_width=300):
                emotion = gr.Radio(emotion_choices, value="happy", label="Emotion", elem_id="emotion")
                intensity = gr.Slider(0.0, 1.0, value=0.8, step=0.05, label="Intensity")
                head_motion = gr.Radio(list(HEAD_MOTIONS), value="natural", label="Head motion")
                with gr.Row():
                    blink = gr.Checkbox(value=True, label="Blinks", min_width=80)
                    paste_back = gr.Checkbox(value=True, label="Paste back", info="else the crop", min_width=80)
                    landmark_preview = gr.Checkbox(value=False, label="Landmarks", info="preview strip", min_width=80)
                keep_photo_expression = gr.Checkbox(
                    value=False,
                    label="Keep the photo's own expression",
                    info="off: a smile in the photo is removed first, so the emotion replaces it",
                )
                with gr.Accordion("Emotion schedule and seed", open=False):
                    emotion_schedule = gr.Textbox(
                        value="",
                        label="Emotion schedule (optional)",
                        placeholder="e.g. 0:neutral, 2.5:happy, 5:surprised",
                        info="seconds:emotion pairs, or a blend like happy:0.7, surprised:0.3; replaces the emotion above",
                        max_lines=1,
                    )
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", info="same seed, same motion")
                button = gr.Button("Generate", variant="primary", elem_id="generate-button")
            with gr.Column(scale=5, min_width=300):
                video = gr.Video(label="Talking face", autoplay=True, height=330, elem_id="result")
                details = gr.Markdown(label="Details", elem_id="details")
                preview = gr.Image(
                    label="Driving landmarks", type="numpy", format="png", visible=False, interactive=False
                )

        inputs = [
            portrait,
            speech,
            emotion,
            intensity,
            emotion_schedule,
            head_motion,
            blink,
            paste_back,
            landmark_preview,
            seed,
            reference_photos,  # these two last, with defaults: the earlier API positions are unchanged
            keep_photo_expression,
        ]
        outputs = [video, preview, details]
        button.click(generate, inputs, outputs, api_name="generate", concurrency_limit=config.concurrency_limit)
        landmark_preview.change(
            lambda show: gr.Image(visible=show), landmark_preview, preview, api_visibility="private", queue=False
        )

        gr.Examples(
            examples=[
                example("happy", 0.8, "", "natural", seed=0),
                example("auto", 1.0, "", "subtle", seed=1),
                example("neutral", 1.0, "0:neutral, 3:surprised, 6:sad", "natural", seed=2),
            ],
            inputs=inputs[:-2],  # the examples use one photo and the defaults of the last two inputs
            outputs=[video, details],
            fn=generate_example,
            cache_examples=True,
            cache_mode="lazy",
            label="Examples (rendered once, then served from the cache)",
            example_labels=[
                "Astronaut · happy",
                "Astronaut · emotion from the voice",
                "Astronaut · neutral → surprised → sad",
            ],
        )
        gr.Markdown(
            f"Limits of this demo: speech up to **{config.max_audio_seconds:g} s**, uploads up to "
            f"**{config.max_upload_size}**; photos larger than {config.max_image_size} px are downscaled. "
            f"Model: [{MODEL_ID}](https://huggingface.co/{MODEL_ID}). License: the code is Apache-2.0; the default "
            "weights are internal demo weights, trained on media whose terms are non-commercial (demonstration and "
            "research only, not for commercial use). Call it from Python with "
            '`gradio_client`: `Client(...).predict(..., api_name="/generate")` (see *Use via API* below). '
            "Example portrait: NASA's public-domain astronaut photo from scikit-image; example speech: synthetic."
        )

    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    return demo


def trust_remote_code_from_env() -> bool:
    """``EMOTALK_TRUST_REMOTE_CODE``: ``1`` runs the code shipped in ``EMOTALK_MODEL``'s folder or repo."""
    text = (os.environ.get("EMOTALK_TRUST_REMOTE_CODE") or "0").strip().lower()
    if text not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError(f"EMOTALK_TRUST_REMOTE_CODE must be 1 or 0, got {text!r}")
    return text in ("1", "true", "yes")


def load_pipeline(model: str | None = None, trust_remote_code: bool = False):
    """The ``emotional-talking-face`` pipeline on the GPU when there is one (on ZeroGPU: moved there per call).

    ``model`` is a folder or Hub repo id (default: the embedded checkpoint). Folders written by
    ``pipe.save_pretrained`` or the Hub export ship their own code: with ``trust_remote_code`` that code runs;
    without it, their weights run on the installed EmoTalk code (their code is never executed).
    """
    import torch
    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model or str(emotalk_pipeline.DEFAULT_CHECKPOINT)
    if trust_remote_code:
        return pipeline(emotalk_pipeline.TASK, model=model, device=device, trust_remote_code=True)
    return pipeline(
        emotalk_pipeline.TASK,
        model=model,
        device=device,
        trust_remote_code=False,
        pipeline_class=emotalk_pipeline.EmotionalTalkingFacePipeline,
    )


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = SpaceConfig.from_env()
    # Gradio caches examples under ./.gradio by default: keep them with the rest of the Space's files.
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(config.cache_dir / "cached_examples"))
    pipe = load_pipeline(os.environ.get("EMOTALK_MODEL"), trust_remote_code=trust_remote_code_from_env())
    demo = build_demo(pipe, config)
    demo.launch(**launch_options(config))


if __name__ == "__main__":
    main()
