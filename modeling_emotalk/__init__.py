"""EmoTalk models: stage 1 (audio → emotional landmarks), stage 2 (FAT generator), and the composite.

Importing this package registers the three model types with ``AutoConfig`` / ``AutoModel``.
"""

from transformers import AutoConfig, AutoModel

from .configuration_emotalk import EMOTIONS, EmoTalkConfig, EmoTalkGeneratorConfig, EmoTalkLandmarkConfig
from .modeling_emotalk import EmoTalkModel, EmoTalkOutput
from .modeling_generator import EmoTalkGenerator, EmoTalkGeneratorOutput, SourceFeatures
from .modeling_landmark import EmoTalkLandmarkModel, EmoTalkLandmarkOutput, num_video_frames

for _config, _model in (
    (EmoTalkLandmarkConfig, EmoTalkLandmarkModel),
    (EmoTalkGeneratorConfig, EmoTalkGenerator),
    (EmoTalkConfig, EmoTalkModel),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    # save_pretrained writes `auto_map` and copies the modeling code (Hub remote code).
    _config.register_for_auto_class()
    _model.register_for_auto_class("AutoModel")

__all__ = [
    "EMOTIONS",
    "EmoTalkConfig",
    "EmoTalkGenerator",
    "EmoTalkGeneratorConfig",
    "EmoTalkGeneratorOutput",
    "EmoTalkLandmarkConfig",
    "EmoTalkLandmarkModel",
    "EmoTalkLandmarkOutput",
    "EmoTalkModel",
    "EmoTalkOutput",
    "SourceFeatures",
    "num_video_frames",
]
