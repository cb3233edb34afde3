"""Stage 1 — audio → emotional 3D facial landmarks.

A wav2vec2-style encoder (``transformers.Wav2Vec2Model``, 50 Hz) feeds a seq2seq transformer decoder
whose frame queries cross-attend to the audio with a local alignment bias (the TNNLS 2023 two-stage
design), conditioned on an emotion (8 MEAD labels × intensity, per clip or per frame, or the
audio-emotion head when no label is given) and on the identity (the reference landmarks). Heads
predict expression offsets in canonical space, head pose, gaze and per-eye blink; :func:`relocate`
turns them into crop-space landmarks ("Emotional Conversation", arXiv 2406.07895).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from emotalk_common.constants import SAMPLING_RATE
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel, Wav2Vec2Model
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_emotalk import EmoTalkLandmarkConfig
from .landmarks import relocate
from .photo_expression import PhotoExpression

AUDIO_HOP = 320  # wav2vec2 feature stride in samples (50 Hz)
AUDIO_RECEPTIVE_FIELD = 400
MASK_VALUE = -1e4  # finite, so fully masked rows never produce NaN (and fp16-safe)

# Heads: head pose is yaw, pitch, roll (radians), tx, ty (eye distances), log-scale; gaze is horizontal and
# vertical angles; blink is right / left eyelid closure.
POSE_DIM = 6
GAZE_DIM = 2
BLINK_DIM = 2
MAX_GAZE_RADIANS = 0.5  # gaze = MAX_GAZE_RADIANS * tanh(head output)
BLINK_LOGIT_OFFSET = -4.0  # blink = sigmoid(head output + offset): eyes open (closure 0.018) at initialization
HEAD_INIT_STD = 1e-3  # motion heads start near zero: an untrained stage 1 keeps the reference face still
POSITIONAL_SCALE = 0.1  # sinusoidal frame-time encoding, added to the queries at this scale
POSITIONAL_DECADES = 4  # its angular frequencies span 1 to 10^-4 rad/s


def num_video_frames(num_samples: int | torch.Tensor, fps: float) -> int | torch.Tensor:
    """``ceil(samples / 16000 * fps)``: the number of video frames that cover the audio."""
    if isinstance(num_samples, torch.Tensor):
        return torch.ceil(num_samples.double() * fps / SAMPLING_RATE).long()
    return math.ceil(num_samples * fps / SAMPLING_RATE)


@dataclass
class EmoTalkLandmarkOutput(ModelOutput):
    """Stage-1 output. B = batch, T = video frames, E = emotions (8).

    Args:
        expression: ``(B, T, 478, 3)`` expression offsets in canonical space.
        head_pose: ``(B, T, 6)`` yaw, pitch, roll (radians), tx, ty (eye-distance units), log-scale,
            relative to the reference pose.
        gaze: ``(B, T, 2)`` horizontal and vertical gaze angles (radians).
        blink: ``(B, T, 2)`` right / left eyelid closure in [0, 1].
        emotion_logits: ``(B, E)`` the audio-emotion head's logits.
        emotion_embedding: ``(B, D)`` the audio-emotion embedding (the coordinated representation).
        emotion_weights: ``(B, T, E)`` the emotion weights that conditioned the decoder.
        frame_mask: ``(B, T)`` True for frames covered by the (unpadded) audio.
        landmarks: ``(B, T, 478, 3)`` crop-space landmarks, when a reference frame was given.
        audio_features: ``(B, S, H_audio)`` the 50 Hz audio-encoder features (feature ``j`` centred at
            ``(320 j + 200) / 16000`` s), for auxiliary training targets.
        audio_mask: ``(B, S)`` True for audio features of unpadded audio.
    """

    expression: torch.Tensor | None = None
    head_pose: torch.Tensor | None = None
    gaze: torch.Tensor | None = None
    blink: torch.Tensor | None = None
    emotion_logits: torch.Tensor | None = None
    emotion_embedding: torch.Tensor | None = None
    emotion_weights: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None
    audio_features: torch.Tensor | None = None
    audio_mask: torch.Tensor | None = None


def local_attention_bias(
    query_times: torch.Tensor, key_times: torch.Tensor, window: float, num_heads: int
) -> torch.Tensor:
    """ALiBi-style bias ``-slope_h * |t_q - t_k| / window`` and a hard window of ± ``window`` seconds.

    Returns ``(num_heads, Q, K)``.
    """
    distance = (query_times[:, None] - key_times[None, :]).abs() / window
    slopes = 2.0 ** (-torch.arange(num_heads, device=distance.device, dtype=distance.dtype))
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(distance > 1.0, MASK_VALUE)


def resample_to_frames(features: torch.Tensor, frame_times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Linearly interpolate 50 Hz features ``(B, S, H)`` at the video frame times (seconds) → ``(B, T, H)``.

    Time-based (not length-based) and clamped to each item's valid ``lengths`` ``(B,)``, so padding the
    audio changes nothing.
    """
    position = (frame_times * SAMPLING_RATE - AUDIO_RECEPTIVE_FIELD / 2) / AUDIO_HOP
    last = (lengths - 1).clamp_min(0).to(position.dtype)[:, None]
    position = torch.minimum(position.clamp_min(0)[None], last)  # (B, T)
    lower = position.floor().long()
    upper = torch.minimum(lower + 1, last.long())
    weight = (position - lower.to(position.dtype)).unsqueeze(-1).to(features.dtype)
    gather = lambda index: features.gather(1, index.unsqueeze(-1).expand(-1, -1, features.shape[-1]))  # noqa: E731
    return gather(lower) * (1 - weight) + gather(upper) * weight


class EmoTalkLandmarkPreTrainedModel(PreTrainedModel):
    config_class = EmoTalkLandmarkConfig
    base_model_prefix = "landmark_model"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if getattr(module, "_small_init", False):
            init.normal_(module.weight, mean=0.0, std=HEAD_INIT_STD)
            init.zeros_(module.bias)
        if isinstance(module, PhotoExpression):  # unfitted: removes nothing (a checkpoint without one keeps photos)
            for buffer in (module.mean, module.estimator, module.directions):
                init.zeros_(buffer)
        if isinstance(module, EmoTalkLandmarkModel):
            init.normal_(module.expression_basis, mean=0.0, std=0.02)
            init.normal_(module.emotion_embeddings, mean=0.0, std=0.5)


class EmoTalkLandmarkModel(EmoTalkLandmarkPreTrainedModel):
    """Audio (+ emotion, + reference landmarks) → per-frame expression, pose, gaze and blink."""

    def __init__(self, config: EmoTalkLandmarkConfig):
        super().__init__(config)
        hidden = config.hidden_size
        audio_hidden = config.audio_config.hidden_size
        self.audio_encoder = Wav2Vec2Model(config.audio_config)
        self.audio_projection = nn.Linear(audio_hidden, hidden)

        # Emotion: label embeddings mixed by per-frame weights; the audio-emotion head for "auto".
        self.emotion_embeddings = nn.Parameter(torch.zeros(config.num_emotions, hidden))
        self.audio_emotion = nn.Sequential(
            nn.Linear(audio_hidden, hidden), nn.GELU(), nn.Linear(hidden, config.emotion_embedding_dim)
        )
        self.emotion_classifier = nn.Linear(config.emotion_embedding_dim, config.num_emotions)
        # The portrait's own expression (a smile, an open mouth), removed before the requested one is applied.
        self.photo_expression = PhotoExpression(config.photo_expression_components, config.num_landmarks)

        # Identity: the reference face's canonical landmarks.
        self.identity_encoder = nn.Sequential(
            nn.Linear(config.num_landmarks * 3, config.identity_hidden_size),
            nn.GELU(),
            nn.Linear(config.identity_hidden_size, hidden),
        )

        layer = nn.TransformerDecoderLayer(
            d_model=hidden,
            nhead=config.num_attention_heads,
            dim_feedforward=config.intermediate_size,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers=config.num_decoder_layers)
        self.final_norm = nn.LayerNorm(hidden)

        # Heads. Expression offsets live in a learned linear basis; emotion also drives it directly.
        self.expression_coefficients = nn.Linear(hidden, config.expression_basis_size)
        self.emotion_coefficients = nn.Linear(hidden, config.expression_basis_size)
        self.expression_basis = nn.Parameter(torch.zeros(config.expression_basis_size, config.num_landmarks * 3))
        self.pose_head = nn.Linear(hidden, POSE_DIM)
        self.gaze_head = nn.Linear(hidden, GAZE_DIM)
        self.blink_head = nn.Linear(hidden, BLINK_DIM)
        for head in (self.expression_coefficients, self.emotion_coefficients, self.pose_head, self.gaze_head):
            head._small_init = True
        self.post_init()

    # ----------------------------------------------------------------------------------------------
    def encode_audio(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """50 Hz audio features ``(B, S, H_audio)`` and their validity mask ``(B, S)``."""
        features = self.audio_encoder(input_values, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        else:
            lengths = self.audio_encoder._get_feat_extract_output_lengths(attention_mask.sum(-1))
            mask = torch.arange(features.shape[1], device=features.device)[None] < lengths[:, None]
        return features, mask

    def predict_emotion(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio-emotion embedding ``(B, D)`` and logits ``(B, E)`` from masked-mean-pooled features."""
        weights = mask.unsqueeze(-1).to(features.dtype)
        pooled = (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        embedding = self.audio_emotion(pooled)
        return embedding, self.emotion_classifier(embedding)

    def emotion_weights(
        self,
        emotion: torch.Tensor | None,
        intensity: float | torch.Tensor,
        logits: torch.Tensor,
        num_frames: int,
    ) -> torch.Tensor:
        """Per-frame emotion weights ``(B, T, E)`` from labels, weight vectors, schedules or the audio head."""
        batch, num_emotions = logits.shape
        if emotion is None:  # "auto": the audio-emotion head decides
            weights = logits.softmax(-1)
        elif emotion.dtype in (torch.int32, torch.int64):
            if emotion.ndim != 1 or emotion.shape[0] != batch:
                raise ValueError(f"emotion labels must have shape ({batch},), got {tuple(emotion.shape)}")
            if emotion.min() < 0 or emotion.max() >= num_emotions:
                raise ValueError(f"emotion labels must be in [0, {num_emotions}), got {emotion.tolist()}")
            weights = F.one_hot(emotion, num_emotions).to(logits.dtype)
        else:
            weights = emotion.to(logits.dtype)
            if weights.shape[-1] != num_emotions or weights.ndim not in (2, 3):
                raise ValueError(
                    f"emotion weights must be (B, {num_emotions}) or (B, T, {num_emotions}), got {tuple(weights.shape)}"
                )
        if weights.ndim == 2:
            weights = weights.unsqueeze(1).expand(batch, num_frames, num_emotions)
        elif weights.shape[1] != num_frames:  # a schedule at another rate: resample to the frames
            weights = F.interpolate(weights.transpose(1, 2), size=num_frames, mode="linear").transpose(1, 2)
        intensity = torch.as_tensor(intensity, dtype=weights.dtype, device=weights.device)
        if intensity.ndim > 2 or (intensity.ndim >= 1 and intensity.shape[0] != batch):
            raise ValueError(f"intensity must be a scalar, (B,) or (B, T), got shape {tuple(intensity.shape)}")
        if intensity.ndim == 2 and intensity.shape[1] != num_frames:
            intensity = F.interpolate(intensity[:, None], size=num_frames, mode="linear")[:, 0]
        return weights * intensity.reshape(*intensity.shape, *([1] * (3 - intensity.ndim)))

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        reference_landmarks: torch.Tensor | None = None,
        emotion: torch.Tensor | None = None,
        intensity: float | torch.Tensor = 1.0,
        num_frames: int | None = None,
        fps: float | None = None,
        reference_frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        emotion_strength: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> EmoTalkLandmarkOutput | tuple:
        """Predict per-frame facial motion from audio.

        Args:
            input_values: ``(B, N)`` normalized 16 kHz audio (``Wav2Vec2FeatureExtractor``).
            attention_mask: ``(B, N)`` 1 for real samples, 0 for padding.
            reference_landmarks: ``(B, 478, 3)`` the reference face in canonical space (identity).
            emotion: ``None`` (infer from the voice), labels ``(B,)`` long, weights ``(B, E)``, or a
                per-frame schedule / blend ``(B, T', E)`` (resampled to T frames when T' != T).
            intensity: scalar, ``(B,)`` or ``(B, T)`` multiplier of the emotion weights, in [0, 1] typically.
            num_frames: frames to produce; default ``ceil(N / 16000 * fps)``.
            fps: video frame rate (default ``config.fps``).
            reference_frame: ``(scale, rotation, translation)`` of the reference in crop space; when given,
                ``landmarks`` (crop space) is returned as well.
            emotion_strength: ``(E,)`` per-emotion multipliers of the weights that condition the decoder (the
                composite's calibration, ``EmoTalkConfig.emotion_strength``); ``None``: 1, as in training, which fits
                intensity 1 to MEAD level 3. ``emotion_weights`` in the output stay the unscaled weights.
        """
        fps = float(fps or self.config.fps)
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be (batch, samples), got {tuple(input_values.shape)}")
        batch, num_samples = input_values.shape
        valid_samples = attention_mask.sum(-1) if attention_mask is not None else torch.full((batch,), num_samples)
        if num_frames is None:
            num_frames = int(num_video_frames(int(valid_samples.max()), fps))
        frame_lengths = num_video_frames(valid_samples.to(input_values.device), fps).clamp(max=num_frames)
        frame_mask = torch.arange(num_frames, device=input_values.device)[None] < frame_lengths[:, None]

        features, audio_mask = self.encode_audio(input_values, attention_mask)
        emotion_embedding, emotion_logits = self.predict_emotion(features, audio_mask)
        weights = self.emotion_weights(emotion, intensity, emotion_logits, num_frames)
        strong = weights if emotion_strength is None else weights * emotion_strength.to(weights)
        emotion_condition = strong @ self.emotion_embeddings  # (B, T, H)

        memory = self.audio_projection(features)  # (B, S, H)
        # Times, positions and attention biases in at least float32: bf16 cannot tell 10.00 s from 10.05 s.
        time_dtype = torch.promote_types(memory.dtype, torch.float32)
        frame_times = (torch.arange(num_frames, device=memory.device, dtype=time_dtype) + 0.5) / fps
        audio_times = (
            torch.arange(memory.shape[1], device=memory.device, dtype=time_dtype) * AUDIO_HOP
            + AUDIO_RECEPTIVE_FIELD / 2
        ) / SAMPLING_RATE
        queries = resample_to_frames(memory, frame_times, audio_mask.sum(1))
        hidden = self.config.hidden_size
        frequencies = 10.0 ** (
            -POSITIONAL_DECADES * torch.arange(hidden // 2, device=memory.device, dtype=time_dtype) / (hidden // 2)
        )
        position = frame_times[:, None] * frequencies
        positional = torch.cat([position.sin(), position.cos()], dim=-1) * POSITIONAL_SCALE
        queries = queries + positional.to(memory.dtype) + emotion_condition
        if reference_landmarks is not None:
            queries = queries + self.identity_encoder(reference_landmarks.flatten(1)).unsqueeze(1)

        heads = self.config.num_attention_heads
        self_bias = local_attention_bias(frame_times, frame_times, self.config.frame_context_seconds, heads)
        cross_bias = local_attention_bias(frame_times, audio_times, self.config.audio_context_seconds, heads)
        cross_bias = cross_bias.unsqueeze(0).masked_fill(~audio_mask[:, None, None, :], MASK_VALUE)
        self_bias = self_bias.unsqueeze(0).masked_fill(~frame_mask[:, None, None, :], MASK_VALUE)
        decoded = self.decoder(
            queries,
            memory,
            tgt_mask=self_bias.flatten(0, 1).to(memory.dtype),
            memory_mask=cross_bias.flatten(0, 1).to(memory.dtype),
        )
        decoded = self.final_norm(decoded)

        coefficients = self.expression_coefficients(decoded) + self.emotion_coefficients(emotion_condition)
        expression = (coefficients @ self.expression_basis).unflatten(-1, (self.config.num_landmarks, 3))
        head_pose = self.pose_head(decoded)
        gaze = MAX_GAZE_RADIANS * torch.tanh(self.gaze_head(decoded))
        blink = torch.sigmoid(self.blink_head(decoded) + BLINK_LOGIT_OFFSET)

        landmarks = None
        if reference_frame is not None:
            if reference_landmarks is None:
                raise ValueError("reference_frame needs reference_landmarks (canonical) to relocate the landmarks")
            landmarks = relocate(reference_landmarks, expression, head_pose, gaze, blink, reference_frame)
        output = EmoTalkLandmarkOutput(
            expression=expression,
            head_pose=head_pose,
            gaze=gaze,
            blink=blink,
            emotion_logits=emotion_logits,
            emotion_embedding=emotion_embedding,
            emotion_weights=weights,
            frame_mask=frame_mask,
            landmarks=landmarks,
            audio_features=features,
            audio_mask=audio_mask,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["EmoTalkLandmarkModel", "EmoTalkLandmarkOutput", "EmoTalkLandmarkPreTrainedModel", "num_video_frames"]
