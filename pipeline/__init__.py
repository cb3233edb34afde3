"""The ``emotional-talking-face`` pipeline, its CLI and the embedded default checkpoint.

Importing this package registers the task with transformers, so that
``transformers.pipeline("emotional-talking-face")`` works (with the embedded default model when no
``model=`` is given). The folder is ``pipeline/`` in the repository and is installed under the specific
import name ``emotalk_pipeline``, never as a generic top-level ``pipeline`` module.
"""

from pathlib import Path

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

import modeling_emotalk  # noqa: F401  (registers the model types with the Auto classes)

from .pipeline_emotalk import EmotionalTalkingFacePipeline, TalkingFaceOutput

TASK = "emotional-talking-face"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "emotalk-default"
ASSETS = Path(__file__).resolve().parent / "assets"

PIPELINE_REGISTRY.register_pipeline(
    TASK,
    pipeline_class=EmotionalTalkingFacePipeline,
    pt_model=AutoModel,
    default={"model": (str(DEFAULT_CHECKPOINT), None)},
    type="multimodal",
)

__all__ = ["ASSETS", "DEFAULT_CHECKPOINT", "TASK", "EmotionalTalkingFacePipeline", "TalkingFaceOutput"]
