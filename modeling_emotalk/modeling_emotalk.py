"""The composite EmoTalk model: stage 1 (audio → landmarks) and stage 2 (landmarks + image → frames).

One config.json with nested sub-configs and one safetensors file, so that ``pipeline()`` has a single
root; each stage stays a full ``PreTrainedModel`` that can be saved, loaded, frozen or fine-tuned alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_emotalk import EmoTalkConfig
from .landmarks import canonicalize
from .modeling_generator import EmoTalkGenerator
from .modeling_landmark import EmoTalkLandmarkModel, EmoTalkLandmarkOutput


@dataclass
class EmoTalkOutput(ModelOutput):
    """End-to-end output. B = batch, T = frames, S = crop size.

    Args:
        frames: ``(B, T, 3, S, S)`` in [0, 1].
        landmarks: ``(B, T, 478, 3)`` driving landmarks in crop space.
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
        """Render every frame in one pass (for short clips and training; the pipeline streams instead).

        Args:
            input_values: ``(B, N)`` normalized 16 kHz audio. attention_mask: ``(B, N)``.
            pixel_values: ``(B, [K,] 3, S, S)`` aligned reference crops in [0, 1] (K references).
            source_landmarks: ``(B, [K,] 478, 3)`` their landmarks in normalized crop coordinates; the
                first reference is the one whose pose and identity the video keeps.
            emotion, intensity, fps, num_frames: as in :class:`EmoTalkLandmarkModel`.
        """
        canonical, frame = canonicalize(source_landmarks[:, 0] if source_landmarks.ndim == 4 else source_landmarks)
        motion = self.landmark_model(
            input_values,
            attention_mask=attention_mask,
            reference_landmarks=canonical,
            emotion=emotion,
            intensity=intensity,
            fps=fps,
            num_frames=num_frames,
            reference_frame=frame,
        )
        batch = motion.landmarks.shape[0]
        source = self.generator.encode_source(pixel_values, source_landmarks)
        frames = []
        for b in range(batch):
            single = type(source)(
                pixel_values=source.pixel_values[b : b + 1],
                features=tuple(f[b : b + 1] for f in source.features),
                landmarks=source.landmarks[b : b + 1],
            )
            frames.append(self.generator(source=single, driving_landmarks=motion.landmarks[b]).frames)
        output = EmoTalkOutput(frames=torch.stack(frames), landmarks=motion.landmarks, motion=motion)
        return output if return_dict else output.to_tuple()


__all__ = ["EmoTalkModel", "EmoTalkOutput"]
