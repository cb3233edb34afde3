"""Configurations of the two EmoTalk stages and of the composite model."""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Any

import torch
from emotalk_common.constants import EMOTION_LABELS
from transformers import GenerationConfig, PreTrainedConfig, Wav2Vec2Config
from transformers.configuration_utils import SubConfigSpec

EMOTIONS = EMOTION_LABELS
"""MEAD's eight emotion classes, in label-id order (:data:`emotalk_common.constants.EMOTION_LABELS`)."""

# A wav2vec2-style encoder small enough for these CPUs: 7 conv layers (320× downsampling, 50 Hz at
# 16 kHz) with 64 then 128 channels instead of 512, and a 4-layer 192-wide transformer. The first layer
# runs at 3.2 kHz: 64 channels there make the whole encoder ~7× faster than 128 (measured).
DEFAULT_AUDIO_ENCODER = {
    "hidden_size": 192,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "conv_dim": (64, 128, 128, 128, 128, 128, 128),
    "num_conv_pos_embeddings": 32,
    "num_conv_pos_embedding_groups": 4,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "layerdrop": 0.0,
    "hidden_dropout": 0.05,
    "attention_dropout": 0.05,
    "activation_dropout": 0.05,
    "feat_proj_dropout": 0.05,
    "mask_time_prob": 0.05,
    "vocab_size": None,
}


FAT_NORM_GROUPS = 32
"""GroupNorm groups inside the generator's FAT blocks (diffusers' SpatialNorm): their channels must divide by it."""
MOUTH_INTERIORS = ("spline", "rigid", "prior")
"""The values of ``EmoTalkGeneratorConfig.mouth_interior``."""
EYELID_WARPS = ("spline", "rigid_lashes")
"""The values of ``EmoTalkGeneratorConfig.eyelids``."""

# Keys that PreTrainedConfig takes (or drops) from config.json besides its dataclass fields.
_PRETRAINED_KEYS = frozenset(
    {
        "model_type", "auto_map", "custom_pipelines", "torch_dtype", "name_or_path", "output_attentions",
        "attn_implementation", "experts_implementation", "per_layer_config", "num_labels", "rope_scaling",
        "rope_theta", "use_cache", "tie_word_embeddings", "pruned_heads", "tokenizer_class", "prefix",
        "task_specific_params", "finetuning_task",
    }
)  # fmt: skip


class _StrictConfig(PreTrainedConfig):
    """Refuses misspelt keywords at construction (PreTrainedConfig would store them as attributes)."""

    def __post_init__(self, **kwargs: Any) -> None:
        known = {f.name for f in fields(self)}
        unknown = [
            key
            for key in kwargs
            if not key.startswith("_")
            and key not in _PRETRAINED_KEYS
            and key not in GenerationConfig._get_default_generation_params()
            and not hasattr(type(self), key)
        ]
        if unknown:
            hints = {key: difflib.get_close_matches(key, known, n=1) for key in unknown}
            said = ", ".join(
                f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for key, hint in hints.items()
            )
            raise TypeError(
                f"{type(self).__name__} got unknown argument(s) {said}; its fields are {', '.join(sorted(known))}"
            )
        super().__post_init__(**kwargs)


class EmoTalkLandmarkConfig(_StrictConfig):
    r"""Stage 1: audio → emotional 3D facial landmarks.

    Args:
        audio_config (`Wav2Vec2Config` or `dict`): the wav2vec2-style audio encoder (50 Hz features).
        hidden_size (`int`): width of the frame decoder.
        num_decoder_layers (`int`): transformer decoder layers (self-attention over frames, cross-attention to audio).
        num_attention_heads (`int`): heads of every decoder attention.
        intermediate_size (`int`): feed-forward width of the decoder.
        dropout (`float`): dropout inside the decoder.
        audio_context_seconds (`float`): frames attend to audio within ± this many seconds (local alignment).
        frame_context_seconds (`float`): frames attend to other frames within ± this many seconds.
        emotion_labels (`tuple[str]`): the emotion classes (MEAD order).
        emotion_embedding_dim (`int`): size of the audio-emotion embedding (the coordinated representation).
        num_landmarks (`int`): 478 MediaPipe points (468 mesh + 10 iris).
        identity_hidden_size (`int`): hidden width of the reference-landmark (identity) encoder.
        expression_basis_size (`int`): expression offsets are a learned linear basis of this rank.
        fps (`float`): default video frame rate; any rate works at inference.
        photo_expression_components (`int`): expression directions the photo-expression estimator can remove
            from a portrait (MEAD's seven emotions and the jaw opening; see `photo_expression.py`).

    Example:

    ```python
    >>> from modeling_emotalk import EmoTalkLandmarkConfig, EmoTalkLandmarkModel
    >>> model = EmoTalkLandmarkModel(EmoTalkLandmarkConfig())
    ```"""

    model_type = "emotalk_landmark"
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(config_class=Wav2Vec2Config, init_kwargs=dict(DEFAULT_AUDIO_ENCODER))
    }

    audio_config: dict | PreTrainedConfig | None = None
    hidden_size: int = 256
    num_decoder_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 768
    dropout: float = 0.1
    audio_context_seconds: float = 0.5
    frame_context_seconds: float = 1.0
    emotion_labels: tuple[str, ...] | list[str] = EMOTION_LABELS
    emotion_embedding_dim: int = 128
    num_landmarks: int = 478
    identity_hidden_size: int = 256
    expression_basis_size: int = 64
    fps: float = 25.0
    photo_expression_components: int = 8

    @property
    def num_emotions(self) -> int:
        return len(self.emotion_labels)


class EmoTalkGeneratorConfig(_StrictConfig):
    r"""Stage 2: reference image(s) + driving landmarks → frames (the FAT generator).

    Args:
        image_size (`int`): side of the square face crop the generator renders.
        block_out_channels (`tuple[int]`): image-encoder channels at 1/2, 1/4 and 1/8 of `image_size`: exactly
            three, each a multiple of `norm_num_groups`; the last two also of 32 (the FAT blocks' GroupNorm).
        landmark_channels (`int`): channels of the landmark-encoder features that modulate FAT blocks.
        heatmap_size (`int`): side of the rasterized landmark heat maps.
        heatmap_sigma (`float`): Gaussian radius of a rasterized landmark, in normalized crop units.
        num_fat_blocks (`int`): feature-adaptive transformation blocks at the lowest resolution.
        flow_size (`int`): the dense motion field is evaluated on this grid and upsampled.
        tps_regularization (`float`): ridge term of the thin-plate-spline fit at every control point but the
            eyelids' and lips'. 1e-2 smooths the spline enough that large brow motion (angry or sad at twice
            intensity 1) does not draw a zig-zag of duplicated brows over the upper lids, which an almost
            interpolating 1e-3 did.
        tps_contact_regularization (`float`): the ridge at the eyelid and lip points, the contours that close:
            1e-3, so that blinks and lip closures are followed exactly (smoothed like the rest, a blink's peak still
            shows the iris and the lips close less). On held-out clips the default weights (trained at 1e-3
            everywhere) reconstruct as well with these two (recipes/default_model/STAGE2.md, "Spline smoothing").
        tps_border_points (`int`): fixed points per side of the crop border (corners included) added to the spline
            with zero motion, so the warp leaves the crop's border where it is and never samples outside the crop
            (mirrored hair or suit at the edges under head motion or a strong brow raise); 0: none. 5 (16 points)
            raised held-out face PSNR by 0.8 dB with weights trained without them (STAGE2.md, "Border anchors").
        mouth_interior (`str`): what the warp puts inside a mouth that opens wider than the source's. ``"spline"``:
            the spline's stretch of whatever lies between the source's lips (tall teeth, stripes). ``"rigid"``: the
            band of the source's opening next to each lip moves with that lip (upper teeth with the upper lip,
            lower teeth with the lower lip) and the gap between them is filled with ``cavity_color`` for the network
            to refine (``warp.mouth_interior_grid``). ``"prior"``: the same, with the gap filled with ``mouth_prior``,
            the mean interior of open mouths (upper teeth under the upper lip, shadow, tongue and lower teeth).
        cavity_color (`list[float]`): RGB in [0, 1] of the mouth cavity with ``mouth_interior="rigid"``; the default
            is the median over the training videos of the mean colour inside open mouths (tongue, teeth and shadow;
            ``python -m recipes.default_model.mouth_interior_prior`` reports it, from its own frames: 0.485, 0.328,
            0.316).
        mouth_prior (`dict`, *optional*): the mean interior of open mouths, for ``mouth_interior="prior"``, in the
            mouth's own coordinates (corner to corner, upper inner lip to lower): ``"openings"``, increasing widest
            inner-lip gaps over the mouth's width; ``"texture"``, one ``[3][V][U]`` RGB texture in [0, 1] per
            opening; ``"lip_color"``, the mean lip RGB of the frames it was measured on. The generator paints the
            texture of the driving mouth's opening, scaled by the source's lip brightness (mean of RGB) over
            ``lip_color``'s (lighting), where the mouth opens wider than the source's (``python -m
            recipes.default_model.mouth_interior_prior`` measures it on a prepared dataset).
        eyelids (`str`): what the warp does above an upper lid that is lower than the source's (a blink, a squint).
            ``"spline"``: the spline stretches the thin band between the source's lid and brow, lashes and eyeliner
            included, over the closed eye (tall streaks). ``"rigid_lashes"``: the lashes' band next to the lid moves
            with it and the skin above them stretches instead (``warp.eyelid_grids``).
        lash_band (`float`): with ``eyelids="rigid_lashes"``, the height of the band that moves with the lid, as a
            fraction of the source's eye opening (its widest lid-to-lid gap), in (0, 1).
        norm_num_groups (`int`): GroupNorm groups of the plain ResNet blocks (FAT blocks use 32).
        num_landmarks (`int`): 478 MediaPipe points.

    Example:

    ```python
    >>> from modeling_emotalk import EmoTalkGeneratorConfig, EmoTalkGenerator
    >>> model = EmoTalkGenerator(EmoTalkGeneratorConfig())
    ```"""

    model_type = "emotalk_generator"

    image_size: int = 256
    block_out_channels: tuple[int, ...] | list[int] = (32, 64, 128)
    landmark_channels: int = 64
    heatmap_size: int = 64
    heatmap_sigma: float = 0.025
    num_fat_blocks: int = 2
    flow_size: int = 64
    tps_regularization: float = 1e-2
    tps_contact_regularization: float = 1e-3
    tps_border_points: int = 5
    mouth_interior: str = "spline"
    cavity_color: tuple[float, ...] | list[float] = (0.49, 0.32, 0.31)
    mouth_prior: dict | None = None
    eyelids: str = "spline"
    lash_band: float = 0.3
    norm_num_groups: int = 8
    num_landmarks: int = 478

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if not isinstance(self.tps_border_points, int) or self.tps_border_points < 0 or self.tps_border_points == 1:
            raise ValueError(
                f"tps_border_points must be 0 or an integer >= 2 (per side), got {self.tps_border_points!r}"
            )
        if self.mouth_interior not in MOUTH_INTERIORS:
            raise ValueError(f"mouth_interior must be one of {MOUTH_INTERIORS}, got {self.mouth_interior!r}")
        color = self.cavity_color
        if (
            not isinstance(color, (tuple, list))
            or len(color) != 3
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in color)
        ):
            raise ValueError(f"cavity_color must be three numbers in [0, 1] (RGB), got {color!r}")
        _check_mouth_prior(self.mouth_prior, required=self.mouth_interior == "prior")
        if self.eyelids not in EYELID_WARPS:
            raise ValueError(f"eyelids must be one of {EYELID_WARPS}, got {self.eyelids!r}")
        band = self.lash_band
        if isinstance(band, bool) or not isinstance(band, (int, float)) or not 0 < band < 1:
            raise ValueError(f"lash_band must be a number in (0, 1) (a fraction of the eye's opening), got {band!r}")
        channels = self.block_out_channels
        if (
            not isinstance(channels, (tuple, list))
            or len(channels) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)
        ):
            raise ValueError(
                f"block_out_channels must be three positive integers (1/2, 1/4, 1/8 resolution), got {channels!r}"
            )
        groups = self.norm_num_groups
        if any(c % groups for c in channels) or any(c % FAT_NORM_GROUPS for c in channels[1:]):
            raise ValueError(
                f"block_out_channels {tuple(channels)} must be multiples of norm_num_groups={groups}, and the last "
                f"two multiples of {FAT_NORM_GROUPS} (the FAT blocks' GroupNorm)"
            )


def _check_mouth_prior(prior: dict | None, required: bool) -> None:
    """Raise ``ValueError`` naming what is wrong with ``EmoTalkGeneratorConfig.mouth_prior``."""
    if prior is None:
        if required:
            raise ValueError('mouth_interior="prior" needs mouth_prior (openings, texture, lip_color); got None')
        return
    expected = (
        "a dict of openings (increasing numbers), texture ([opening][3][V][U] in [0, 1]), lip_color (3 in (0, 1])"
    )
    if not isinstance(prior, dict) or set(prior) != {"openings", "texture", "lip_color"}:
        raise ValueError(
            f"mouth_prior must be {expected}; got keys {sorted(prior) if isinstance(prior, dict) else prior!r}"
        )
    try:
        openings = torch.tensor(prior["openings"], dtype=torch.float64)
        texture = torch.tensor(prior["texture"], dtype=torch.float64)
        lip = torch.tensor(prior["lip_color"], dtype=torch.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"mouth_prior must be {expected}; {error}") from None
    if (
        openings.ndim != 1
        or len(openings) < 1
        or not bool((openings.diff() > 0).all())
        or texture.ndim != 4
        or texture.shape[:2] != (len(openings), 3)
        or not bool(((texture >= 0) & (texture <= 1)).all())
        or lip.shape != (3,)
        or not bool(((lip > 0) & (lip <= 1)).all())
    ):
        raise ValueError(
            f"mouth_prior must be {expected}; got openings {tuple(openings.shape)}, texture {tuple(texture.shape)}, "
            f"lip_color {tuple(lip.shape)}"
        )


class EmoTalkConfig(_StrictConfig):
    r"""The composite model: stage 1 and stage 2 in one config.json and one safetensors file.

    Args:
        landmark_config (`EmoTalkLandmarkConfig` or `dict`): stage 1.
        generator_config (`EmoTalkGeneratorConfig` or `dict`): stage 2.
        crop_size (`int`): the aligned face crop the pipeline feeds to stage 2.
        max_audio_seconds (`float`): the pipeline refuses longer audio (configurable per call).
        emotion_strength (`dict[str, float]`, *optional*): per-emotion multiplier of the weights that condition
            stage 1 at inference (labels not named: 1). Calibrated on real faces through both stages, so that
            intensity 1 moves the *rendered* face as far as MEAD level 3 does (see
            `benchmarks/emotion_oracle.py --strength-output`); stage-1 training leaves it out.

    Example:

    ```python
    >>> from modeling_emotalk import EmoTalkConfig, EmoTalkModel
    >>> model = EmoTalkModel(EmoTalkConfig())
    ```"""

    model_type = "emotalk"
    sub_configs_defaults = {"landmark_config": EmoTalkLandmarkConfig, "generator_config": EmoTalkGeneratorConfig}

    landmark_config: dict | PreTrainedConfig | None = None
    generator_config: dict | PreTrainedConfig | None = None
    crop_size: int = 256
    max_audio_seconds: float = 600.0
    emotion_strength: dict[str, float] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        labels = tuple(self.landmark_config.emotion_labels)
        for label, value in (self.emotion_strength or {}).items():
            if label not in labels:
                raise ValueError(f"emotion_strength: unknown emotion {label!r}; the labels are {', '.join(labels)}")
            if not isinstance(value, int | float) or not 0 <= value <= 10:
                raise ValueError(f"emotion_strength[{label!r}] must be a number in [0, 10], got {value!r}")

    def emotion_strength_vector(self) -> list[float]:
        """:attr:`emotion_strength` in label order (1 for labels it does not name)."""
        strength = self.emotion_strength or {}
        return [float(strength.get(label, 1.0)) for label in self.landmark_config.emotion_labels]


__all__ = ["EMOTIONS", "FAT_NORM_GROUPS", "EmoTalkConfig", "EmoTalkGeneratorConfig", "EmoTalkLandmarkConfig"]
