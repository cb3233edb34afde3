"""``EmoTalkProcessor``: the face front-end and the audio feature extractor, saved together and loaded together.

Like ``Wav2Vec2Processor``, it is a ``transformers.ProcessorMixin`` that combines the model's input processors:
the ``Wav2Vec2FeatureExtractor`` (a real ProcessorMixin attribute) and the :class:`~.face_processing.FaceProcessor`,
whose settings (crop size, margin, minimum face size, detection options, maximum image size) it saves in
``preprocessor_config.json`` and restores in :meth:`EmoTalkProcessor.from_pretrained`.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from transformers import FeatureExtractionMixin
from transformers.processing_utils import ProcessorMixin
from transformers.utils import FEATURE_EXTRACTOR_NAME, cached_file

from .audio_processing import AudioProcessor, default_feature_extractor
from .face_processing import FaceProcessor

__all__ = ["FACE_SETTINGS", "EmoTalkProcessor"]

FACE_SETTINGS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(FaceProcessor.__init__).parameters.items()
    if name != "self"
}
"""The face processor's settings saved in ``preprocessor_config.json``, with their defaults (``FaceProcessor``'s)."""
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


class EmoTalkProcessor(ProcessorMixin):
    """Portrait + speech -> the model's inputs: an aligned :class:`~.face_alignment.FaceCrop` and wav2vec2 features.

    Args:
        feature_extractor: the audio feature extractor (default: 16 kHz, normalized, with attention mask).
        crop_size, margin, min_face_size, max_image_size, max_num_faces: the :class:`FaceProcessor` settings.

    Why the face settings are processor kwargs and not a sub-processor: ``ProcessorMixin`` (transformers 5)
    recognizes sub-processors by their ``__init__`` argument names (``tokenizer``, ``feature_extractor``,
    ``image_processor``, ``video_processor``), checks each against a transformers base class and loads it through
    its Auto class; a MediaPipe face processor is none of these, so it cannot be an attribute. Plain ``__init__``
    arguments are what ``ProcessorMixin`` saves as processor settings, so the face settings are those.
    ``ProcessorMixin.save_pretrained`` would write them to ``processor_config.json`` and nest the feature
    extractor there; this class writes one flat ``preprocessor_config.json`` instead (the feature extractor's
    keys plus the face settings and ``processor_class``), because that is the file the pipeline's feature
    extractor is loaded from, the file a Hub export carries, and the file checkpoints saved before this class
    have (a file without face settings loads with the defaults). ``Wav2Vec2FeatureExtractor`` ignores keys it
    does not know, so ``AutoFeatureExtractor`` still loads the file.

    Example:

    ```python
    >>> processor = EmoTalkProcessor(margin=1.2)
    >>> processor.save_pretrained("folder")  # folder/preprocessor_config.json
    >>> EmoTalkProcessor.from_pretrained("folder").margin
    1.2
    >>> inputs = processor(image="portrait.jpg", audio="speech.wav")  # {"face": FaceCrop, "input_values": ...}
    ```
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractionMixin | None = None,
        crop_size: int = 256,
        margin: float = 1.0,
        min_face_size: int = 64,
        max_image_size: int = 8192,
        max_num_faces: int = 4,
    ) -> None:
        super().__init__(feature_extractor if feature_extractor is not None else default_feature_extractor())
        self.face_processor = FaceProcessor(
            crop_size=crop_size,
            margin=margin,
            min_face_size=min_face_size,
            max_image_size=max_image_size,
            max_num_faces=max_num_faces,
        )
        for name, value in self.face_processor.to_dict().items():
            setattr(self, name, value)

    # -- settings
    def face_settings(self) -> dict[str, Any]:
        """The face processor's settings (the :data:`FACE_SETTINGS` keys)."""
        return self.face_processor.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The flat ``preprocessor_config.json`` content: feature-extractor keys, face settings, processor class."""
        output = {k: v for k, v in self.feature_extractor.to_dict().items() if k not in FACE_SETTINGS}
        output.pop("processor_class", None)
        output.update(self.face_settings())
        output["processor_class"] = type(self).__name__
        return output

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any
    ) -> list[str]:
        """Write ``preprocessor_config.json`` (feature extractor + face settings) into ``save_directory``."""
        if push_to_hub or kwargs:
            raise ValueError(
                f"EmoTalkProcessor.save_pretrained takes only a folder, got push_to_hub={push_to_hub!r} and "
                f"{sorted(kwargs)}: save the folder, then upload it (conversion/export_to_hub.py --push-to-hub)"
            )
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, FEATURE_EXTRACTOR_NAME)
        self.to_json_file(path)
        return [path]

    # -- loading
    @classmethod
    def load_config(cls, pretrained_model_name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Any] | None:
        """The ``preprocessor_config.json`` of a folder or Hub repo as a dict (None when it has none)."""
        source = str(pretrained_model_name_or_path)
        local = Path(source)
        if local.is_file():
            path: str | None = source
        elif local.is_dir() or local.is_absolute() or source.startswith("."):  # a folder, not a Hub repo id
            path = str(local / FEATURE_EXTRACTOR_NAME) if (local / FEATURE_EXTRACTOR_NAME).is_file() else None
        else:
            path = cached_file(
                source,
                FEATURE_EXTRACTOR_NAME,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                **hub_kwargs,
            )
        if path is None:
            return None
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(config, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> EmoTalkProcessor:
        """Build from a ``preprocessor_config.json`` dict; ``overrides`` replace face settings (or pass
        ``feature_extractor=``)."""
        config = dict(config)
        config.pop("processor_class", None)
        settings = {k: config.pop(k) for k in FACE_SETTINGS if k in config}
        feature_extractor = overrides.pop("feature_extractor", None)
        unknown = sorted(set(overrides) - set(FACE_SETTINGS))
        if unknown:
            raise TypeError(
                f"unexpected EmoTalkProcessor settings {unknown}: expected some of {sorted(FACE_SETTINGS)}"
            )
        settings.update(overrides)
        if feature_extractor is None:
            name = config.get("feature_extractor_type")
            if name is None:
                raise ValueError(
                    f"the preprocessor config has no feature_extractor_type (keys: {sorted(config)}): expected the "
                    "file a Wav2Vec2FeatureExtractor or EmoTalkProcessor writes"
                )
            feature_extractor = cls.get_possibly_dynamic_module(name).from_dict(config)
        return cls(feature_extractor, **settings)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> EmoTalkProcessor:
        """Load from a folder (or Hub repo, or the JSON file itself) holding ``preprocessor_config.json``.

        Keyword arguments: Hub options (``revision``, ``cache_dir``, ...), ``feature_extractor=`` and face
        settings that replace the saved ones.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        config = cls.load_config(pretrained_model_name_or_path, **hub_kwargs)
        if config is None:
            raise OSError(
                f"no {FEATURE_EXTRACTOR_NAME} in {str(pretrained_model_name_or_path)!r}: expected a folder written "
                "by EmoTalkProcessor.save_pretrained or a pipeline's save_pretrained"
            )
        return cls.from_config(config, **kwargs)

    @classmethod
    def for_model(cls, model: Any, feature_extractor: FeatureExtractionMixin | None = None) -> EmoTalkProcessor:
        """The processor of ``model`` (an ``EmoTalkModel``): the settings saved beside its weights, if any.

        A folder without face settings gets the defaults with the model's ``config.crop_size``; a saved crop size
        that differs from the model's is refused.
        """
        crop_size = int(model.config.crop_size)
        source = str(getattr(model, "name_or_path", "") or "")
        config = (cls.load_config(source) if source else None) or {}
        saved = config.get("crop_size", crop_size)
        if saved != crop_size:
            raise ValueError(
                f"the preprocessor config of {source!r} has crop_size={saved!r}, but the model was built for "
                f"crop_size={crop_size}: fix crop_size in {FEATURE_EXTRACTOR_NAME}"
            )
        overrides: dict[str, Any] = {"crop_size": crop_size}
        if feature_extractor is not None or not config:
            overrides["feature_extractor"] = feature_extractor or default_feature_extractor()
        return cls.from_config(config, **overrides)

    # -- processing
    def __call__(
        self,
        image: Any = None,
        audio: Any = None,
        *,
        sampling_rate: int | None = None,
        face_index: int | None = None,
        max_audio_seconds: float | None = 600.0,
    ) -> dict[str, Any]:
        """Process a portrait and/or speech.

        Returns ``{"face": FaceCrop}`` for ``image`` and the :class:`~.audio_processing.AudioProcessor` outputs
        (``input_values``, ``attention_mask``, ``audio``, ``duration``) for ``audio``.
        """
        if image is None and audio is None:
            raise ValueError("EmoTalkProcessor needs an image, an audio or both, got neither")
        out: dict[str, Any] = {}
        if image is not None:
            out["face"] = self.face_processor(image, face_index=face_index)
        if audio is not None:
            out.update(AudioProcessor(self.feature_extractor, max_seconds=max_audio_seconds)(audio, sampling_rate))
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"feature_extractor": self.feature_extractor, **self.face_settings()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
