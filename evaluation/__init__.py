"""EmoTalk evaluation suite (installed as ``emotalk_evaluation``; needs the ``eval`` extra).

Metrics of the field's protocol that can be computed without unavailable weights, and clearly labelled
stand-ins for the rest: M-LMD/F-LMD (dlib 68), PSNR/SSIM on aligned crops, SyncNet-free lip-sync proxies
(pocketsphinx phones + face-mesh lip aperture), a dlib identity-embedding CSIM stand-in, a geometric emotion
classifier calibrated on real MEAD clips, blinks, head motion, jitter and sharpness.

It does not import ``modeling_emotalk``: it scores any talking-face video. Heavy dependencies (mediapipe,
dlib, pocketsphinx, matplotlib) are imported only when a metric needs them.
"""

from .evaluate import METRIC_GROUPS, VideoEvaluation, evaluate_frames, evaluate_video
from .report import write_report

__all__ = ["METRIC_GROUPS", "VideoEvaluation", "evaluate_frames", "evaluate_video", "write_report"]
