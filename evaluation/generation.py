"""Running the EmoTalk pipeline for the manifest mode and the benchmark (imported lazily, optional).

The evaluation package does not depend on the model code: ``transformers`` and ``emotalk_pipeline`` are
imported only when a video has to be generated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from emotalk_common.constants import SAMPLING_RATE


def load_pipeline(model: str | None = None, *, trust_remote_code: bool = False):
    """The ``emotional-talking-face`` pipeline (the embedded default model, or ``model``: a folder or Hub id).

    Code shipped inside ``model`` (an exported Hub folder) runs only with ``trust_remote_code=True``, the
    user's explicit opt-in (``--trust-remote-code``), as in transformers.
    """
    try:
        import emotalk_pipeline  # noqa: F401  (registers the task)
        from transformers import pipeline
    except ImportError as error:
        raise ImportError(
            "generating videos needs the EmoTalk pipeline (pip install emotalk); evaluating existing videos does not"
        ) from error
    if model is None:
        return pipeline("emotional-talking-face")
    return pipeline("emotional-talking-face", model=model, trust_remote_code=trust_remote_code)


def generate_video(
    pipe,
    image: str | Path | np.ndarray,
    audio: str | Path | np.ndarray,
    output: str | Path,
    emotion: str = "neutral",
    intensity: float = 1.0,
    pose: str = "natural",
    seed: int = 0,
) -> Path:
    """Generate one video with ``pipe`` and save it as MP4 at ``output``; returns the path.

    ``audio`` is a file path or a 16 kHz mono float32 array.
    """
    if isinstance(image, Path):
        image = str(image)
    if isinstance(audio, Path):
        audio = str(audio)
    elif isinstance(audio, np.ndarray):
        audio = {"array": audio.astype(np.float32), "sampling_rate": SAMPLING_RATE}  # arrays are 16 kHz here
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = pipe(image, audio, emotion=emotion, intensity=intensity, pose=pose, seed=seed, paste_back=True)
    result.save(str(output))
    return output
