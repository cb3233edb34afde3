"""The composite EmoTalk model: stage 1 (audio → landmarks) and stage 2 (landmarks + image → frames).

One config.json with nested sub-configs and one safetensors file, so that ``pipeline()`` has a single
root; each stage stays a full ``PreTrainedModel`` that can be saved, loaded, frozen or fine-tuned alone.

The model owns the orchestration of both stages, in two operations that the pipeline, the CLI and the
evaluation scripts share:

- :meth:`EmoTalkModel.predict_landmarks`: stage 1 over a clip of any length, in overlapping windows whose
  seams are cross-faded, returning the motion and the crop-space driving landmarks (torch, float32).
- :meth:`EmoTalkModel.render`: stage 2 in frame batches: the source is encoded once, each batch of
  driving landmarks is moved to the model's device and dtype, and frame batches are yielded as they are
  rendered (so peak memory does not grow with the duration).

:meth:`EmoTalkModel.forward` is both, in one differentiable pass (single window, every frame at once),
for training and short clips.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_emotalk import EmoTalkConfig
from .landmarks import NUM_LANDMARKS, canonicalize, relocate
from .modeling_generator import EmoTalkGenerator
from .modeling_landmark import SAMPLING_RATE, EmoTalkLandmarkModel, EmoTalkLandmarkOutput, num_video_frames

WINDOW_SECONDS = 10.0
"""Stage 1 runs over windows of this length (its attention is local: longer windows only cost memory)."""
OVERLAP_SECONDS = 1.0
"""Consecutive windows overlap by this much; the overlap is cross-faded linearly."""
PhotoExpressionMode = Literal["replace", "keep"]
"""What happens to the portrait's own expression: removed (``"replace"``) or kept under the motion (``"keep"``)."""
_MOTION_KEYS = ("expression", "head_pose", "gaze", "blink", "emotion_weights")


@dataclass
class EmoTalkOutput(ModelOutput):
    """End-to-end output. B = batch, T = frames, S = crop size.

    Args:
        frames: ``(B, T, 3, S, S)`` float32 in [0, 1].
        landmarks: ``(B, T, 478, 3)`` float32 driving landmarks in crop space.
        motion: the stage-1 output (expression, pose, gaze, blink, emotion logits and embedding).
    """

    frames: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None
    motion: EmoTalkLandmarkOutput | None = None


class EmoTalkModel(PreTrainedModel):
    """Audio + reference face crop → talking-face frames, both stages in one model."""

    config_class = EmoTalkConfig
    base_model_prefix = "emotalk"
    main_input_name = "input_values"

    def __init__(self, config: EmoTalkConfig):
        super().__init__(config)
        self.landmark_model = EmoTalkLandmarkModel(config.landmark_config)
        self.generator = EmoTalkGenerator(config.generator_config)
        self.post_init()

    # ------------------------------------------------------------------------------------------ stage 1
    def compose_landmarks(
        self,
        source_landmarks: torch.Tensor,
        expression: torch.Tensor,
        head_pose: torch.Tensor,
        gaze: torch.Tensor,
        blink: torch.Tensor,
        *,
        photo_expression: PhotoExpressionMode = "keep",
    ) -> torch.Tensor:
        """Motion → crop-space driving landmarks ``(B, T, 478, 3)`` float32, on the model's device.

        Args:
            source_landmarks: ``(B, 478, 3)`` the reference face in normalized crop coordinates.
            expression, head_pose, gaze, blink: ``(B, T, ...)`` as in :class:`EmoTalkLandmarkOutput`.
            photo_expression: ``"replace"`` removes the reference face's own expression (a smile, an open
                mouth) before the motion is applied; ``"keep"`` adds the motion to the face as it is.
        """
        as_float = lambda x: torch.as_tensor(x).to(device=self.device, dtype=torch.float32)  # noqa: E731
        canonical, frame = canonicalize(as_float(source_landmarks))
        canonical = self._rest_face(canonical, photo_expression)
        return relocate(canonical, as_float(expression), as_float(head_pose), as_float(gaze), as_float(blink), frame)

    def predict_landmarks(
        self,
        input_values: torch.Tensor,
        source_landmarks: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        emotion: torch.Tensor | None = None,
        intensity: float | torch.Tensor = 1.0,
        fps: float | None = None,
        num_frames: int | None = None,
        window_seconds: float | None = WINDOW_SECONDS,
        overlap_seconds: float = OVERLAP_SECONDS,
        photo_expression: PhotoExpressionMode = "keep",
    ) -> EmoTalkLandmarkOutput:
        """Stage 1 over a whole clip: windows of ``window_seconds`` with seams cross-faded over ``overlap_seconds``.

        Inputs may be on any device and in any float dtype: they are moved to the model's; the geometry
        (canonical frame, cross-fade, relocation) runs in float32.

        Args:
            input_values: ``(B, N)`` normalized 16 kHz audio. attention_mask: ``(B, N)``.
            source_landmarks: ``(B, 478, 3)`` (or ``(B, K, 478, 3)``: the first reference is used) the
                reference face in normalized crop coordinates; the video keeps its identity and pose.
            emotion: ``None`` (heard in the voice), labels ``(B,)``, weights ``(B, E)`` or per-frame
                weights ``(B, T', E)`` (resampled to the frames). intensity: scalar, ``(B,)`` or ``(B, T)``.
            fps: video frame rate (default ``config.landmark_config.fps``). num_frames: default
                ``ceil(N / 16000 * fps)``.
            window_seconds: ``None`` runs one window over the whole clip.
            photo_expression: ``"replace"``: the reference face's own expression is estimated and removed, so
                the predicted one replaces it (a smiling photo can become sad); ``"keep"``: added to it.

        Returns:
            float32 :class:`EmoTalkLandmarkOutput` on the model's device with ``landmarks`` ``(B, T, 478, 3)``
            in crop space. A single window returns every field of stage 1; several windows return the
            per-frame fields (expression, head_pose, gaze, blink, emotion_weights, landmarks) only.
        """
        fps = float(fps or self.config.landmark_config.fps)
        reference = source_landmarks[:, 0] if source_landmarks.ndim == 4 else source_landmarks
        reference = reference.to(device=self.device, dtype=torch.float32)
        canonical, frame = canonicalize(reference)
        canonical = self._rest_face(canonical, photo_expression)
        input_values = input_values.to(device=self.device, dtype=self.dtype)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        if num_frames is None:
            valid = input_values.shape[1] if attention_mask is None else int(attention_mask.sum(-1).max())
            num_frames = int(num_video_frames(valid, fps))
        emotion = _per_frame(_to_device(emotion, self.device), num_frames)
        intensity = _per_frame(_to_device(intensity, self.device), num_frames, ndim=2)
        strength = None
        if self.config.emotion_strength:
            strength = torch.tensor(self.config.emotion_strength_vector(), device=self.device, dtype=self.dtype)

        def stage1(start: int, end: int, first: int, last: int) -> EmoTalkLandmarkOutput:
            mask = None if attention_mask is None else attention_mask[:, first:last]
            return self.landmark_model(
                input_values[:, first:last],
                attention_mask=mask,
                reference_landmarks=canonical.to(self.dtype),
                emotion=_frames(emotion, start, end, 3),
                intensity=_frames(intensity, start, end, 2),
                num_frames=end - start,
                fps=fps,
                emotion_strength=strength,
            )

        window = num_frames if window_seconds is None else max(1, round(window_seconds * fps))
        if window >= num_frames:
            out = stage1(0, num_frames, 0, input_values.shape[1])
            motion = {key: value.float() if value.is_floating_point() else value for key, value in out.items()}
        else:
            motion = _cross_faded(stage1, num_frames, fps, window, overlap_seconds, input_values.shape[1])
        motion["landmarks"] = relocate(  # compose_landmarks, with the rest face and frame computed above
            canonical, motion["expression"], motion["head_pose"], motion["gaze"], motion["blink"], frame
        )
        return EmoTalkLandmarkOutput(**motion)

    def _rest_face(self, canonical: torch.Tensor, photo_expression: PhotoExpressionMode) -> torch.Tensor:
        if photo_expression == "keep":
            return canonical
        if photo_expression == "replace":
            return self.landmark_model.photo_expression(canonical)
        raise ValueError(f"photo_expression must be 'replace' or 'keep', got {photo_expression!r}")

    # ------------------------------------------------------------------------------------------ stage 2
    def render(
        self,
        pixel_values: torch.Tensor,
        source_landmarks: torch.Tensor,
        driving_landmarks: torch.Tensor,
        batch_size: int = 8,
        *,
        output_type: Literal["uint8", "pt"] = "uint8",
    ) -> Iterator[torch.Tensor]:
        """Render one frame per driving landmark set, ``batch_size`` frames at a time.

        The source is encoded once (on the first ``next()``); each batch of driving landmarks is moved to
        the model's device and dtype when it is rendered. Gradients flow unless the caller disables them
        (the pipeline pulls each batch under ``torch.inference_mode()``).

        Args:
            pixel_values: the aligned source crop: ``(3, S, S)`` or ``(1, [K,] 3, S, S)``, float in [0, 1]
                or uint8 in [0, 255].
            source_landmarks: ``(478, 3)`` or ``(1, [K,] 478, 3)`` its landmarks (normalized crop coordinates).
            driving_landmarks: ``(T, 478, 3)`` the target landmarks, on any device.
            batch_size: frames per stage-2 call.
            output_type: ``"uint8"``: ``(b, S, S, 3)`` uint8 on the CPU (video-ready); ``"pt"``:
                ``(b, 3, S, S)`` float32 in [0, 1] on the model's device.

        Yields:
            frame batches, ``ceil(T / batch_size)`` of them.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output_type not in ("uint8", "pt"):
            raise ValueError(f"output_type must be 'uint8' or 'pt', got {output_type!r}")
        if driving_landmarks.ndim != 3 or driving_landmarks.shape[1] != NUM_LANDMARKS:
            raise ValueError(
                f"driving_landmarks must be (T, {NUM_LANDMARKS}, 3), got {tuple(driving_landmarks.shape)}"
            )
        pixels, landmarks = _source_batch(pixel_values, source_landmarks)
        source = None
        for start in range(0, driving_landmarks.shape[0], batch_size):
            if source is None:
                source = self.generator.encode_source(
                    pixels.to(device=self.device, dtype=self.dtype),
                    landmarks.to(device=self.device, dtype=self.dtype),
                )
            driving = driving_landmarks[start : start + batch_size].to(device=self.device, dtype=self.dtype)
            frames = self.generator(source=source, driving_landmarks=driving).frames.float()
            if output_type == "pt":
                yield frames
            else:
                yield (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu()

    # ------------------------------------------------------------------------------------- end to end
    def forward(
        self,
        input_values: torch.Tensor,
        pixel_values: torch.Tensor,
        source_landmarks: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        emotion: torch.Tensor | None = None,
        intensity: float | torch.Tensor = 1.0,
        fps: float | None = None,
        num_frames: int | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> EmoTalkOutput | tuple:
        """Both stages in one differentiable pass: :meth:`predict_landmarks` (one window) then :meth:`render`
        (every frame in one batch) per item. For training and short clips; the pipeline streams instead.

        Args:
            input_values: ``(B, N)`` normalized 16 kHz audio. attention_mask: ``(B, N)``.
            pixel_values: ``(B, [K,] 3, S, S)`` aligned reference crops in [0, 1] (K references).
            source_landmarks: ``(B, [K,] 478, 3)`` their landmarks in normalized crop coordinates; the
                first reference is the one whose pose and identity the video keeps.
            emotion, intensity, fps, num_frames: as in :meth:`predict_landmarks`.
        """
        motion = self.predict_landmarks(
            input_values,
            source_landmarks,
            attention_mask=attention_mask,
            emotion=emotion,
            intensity=intensity,
            fps=fps,
            num_frames=num_frames,
            window_seconds=None,
        )
        frames = []
        for b, driving in enumerate(motion.landmarks):
            batches = self.render(
                pixel_values[b : b + 1], source_landmarks[b : b + 1], driving, max(1, len(driving)), output_type="pt"
            )
            frames.append(torch.cat(list(batches)))
        output = EmoTalkOutput(frames=torch.stack(frames), landmarks=motion.landmarks, motion=motion)
        return output if return_dict else output.to_tuple()


def _to_device(value, device: torch.device):
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _per_frame(value, num_frames: int, ndim: int = 3):
    """A per-frame schedule ``(B, T', ...)`` at another rate → ``(B, T, ...)`` (as stage 1 resamples it)."""
    if not isinstance(value, torch.Tensor) or value.ndim != ndim or value.shape[1] == num_frames:
        return value
    resampled = torch.nn.functional.interpolate(
        (value.transpose(1, 2) if ndim == 3 else value[:, None]).float(), size=num_frames, mode="linear"
    )
    return resampled.transpose(1, 2) if ndim == 3 else resampled[:, 0]


def _frames(value, start: int, end: int, ndim: int):
    """The frames ``[start, end)`` of a per-frame tensor; anything else (per clip) as is."""
    if isinstance(value, torch.Tensor) and value.ndim == ndim:
        return value[:, start:end]
    return value


def _cross_faded(stage1, num_frames: int, fps: float, window: int, overlap_seconds: float, num_samples: int) -> dict:
    """Run ``stage1(start, end, first_sample, last_sample)`` over overlapping windows; linear cross-fades."""
    overlap = min(max(1, round(overlap_seconds * fps)), window // 2)
    hop = window - overlap
    ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
    totals: dict[str, torch.Tensor] = {}
    coverage = None
    start = 0
    while True:
        end = min(start + window, num_frames)
        first = round(start / fps * SAMPLING_RATE)
        last = min(round(end / fps * SAMPLING_RATE), num_samples)
        out = stage1(start, end, first, last)
        fade = torch.ones(end - start, dtype=torch.float32)
        if start > 0:
            fade[:overlap] = ramp
        if end < num_frames:
            fade[-overlap:] = torch.minimum(fade[-overlap:], ramp.flip(0))
        for key in _MOTION_KEYS:
            value = getattr(out, key).float()
            fade = fade.to(value.device)
            if key not in totals:
                totals[key] = value.new_zeros((value.shape[0], num_frames, *value.shape[2:]))
                coverage = value.new_zeros(num_frames)
            totals[key][:, start:end] += value * fade.reshape(-1, *([1] * (value.ndim - 2)))
        coverage[start:end] += fade
        if end >= num_frames:
            break
        start += hop
    return {key: value / coverage.reshape(-1, *([1] * (value.ndim - 2))) for key, value in totals.items()}


def _source_batch(pixel_values: torch.Tensor, source_landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One source (optionally K references) as ``(1, K, 3, S, S)`` float in [0, 1] and ``(1, K, 478, 3)``."""
    pixels = pixel_values
    if pixels.dtype == torch.uint8:
        pixels = pixels.float() / 255
    elif not pixels.is_floating_point():
        raise ValueError(f"pixel_values must be float in [0, 1] or uint8, got dtype {pixels.dtype}")
    pixels = pixels.reshape(1, -1, *pixels.shape[-3:]) if pixels.ndim in (3, 4, 5) else pixels
    landmarks = source_landmarks.reshape(1, -1, *source_landmarks.shape[-2:]) if source_landmarks.ndim >= 2 else None
    if pixels.ndim != 5 or pixels.shape[0] != 1 or pixels.shape[2] != 3:
        raise ValueError(f"pixel_values must be (3, S, S) or (1, [K,] 3, S, S), got {tuple(pixel_values.shape)}")
    if landmarks is None or landmarks.shape[1] != pixels.shape[1] or landmarks.shape[2] != NUM_LANDMARKS:
        raise ValueError(
            f"source_landmarks must be ({NUM_LANDMARKS}, 3) or (1, [K,] {NUM_LANDMARKS}, 3) matching pixel_values "
            f"{tuple(pixel_values.shape)}, got {tuple(source_landmarks.shape)}"
        )
    return pixels, landmarks


__all__ = ["OVERLAP_SECONDS", "WINDOW_SECONDS", "EmoTalkModel", "EmoTalkOutput"]
