"""Training losses of both stages (architecture.md, "Training-only parts").

Stage 1: mouth-weighted landmark L1, velocity L1, frame-level phone classification of the audio features (an
auxiliary target that gives the randomly initialized audio encoder phonetic features early), emotion
classification (cross-entropy where the label is known) and the coordinated visual-emotion contrastive loss (InfoNCE between the audio-emotion embedding and a
landmark-sequence emotion embedding). Stage 2: L1, multi-scale SSIM, mouth-weighted L1, hinge GAN and feature
matching. All functions take masks so that untracked frames or unknown labels contribute nothing.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from modeling_emotalk.landmarks import LIPS, LOWER_LIP, NUM_LANDMARKS, UPPER_LIP
from modeling_emotalk.modeling_landmark import AUDIO_HOP, AUDIO_RECEPTIVE_FIELD, SAMPLING_RATE

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ------------------------------------------------------------------------------------------------ stage 1
def landmark_weights(mouth_weight: float = 5.0, device=None) -> torch.Tensor:
    """``(478,)`` per-landmark weights: ``mouth_weight`` on the lips, 1 elsewhere, normalized to mean 1."""
    weights = torch.ones(NUM_LANDMARKS, device=device)
    weights[list(LIPS)] = mouth_weight
    return weights / weights.mean()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(B, T, ...)`` over the frames where ``mask`` ``(B, T)`` is True."""
    mask = mask.to(values.dtype)
    while mask.ndim < values.ndim:
        mask = mask.unsqueeze(-1)
    count = mask.expand_as(values).sum().clamp_min(1.0)
    return (values * mask).sum() / count


def weighted_landmark_l1(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """L1 over ``(B, T, 478, 3)`` landmarks, per-landmark ``weights`` ``(478,)``, frames where ``mask`` ``(B, T)``."""
    error = (prediction - target).abs().mean(-1) * weights
    return _masked_mean(error, mask)


def velocity_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between frame-to-frame differences of ``(B, T, ...)`` sequences (pairs where both frames are valid)."""
    if prediction.shape[1] < 2:
        return prediction.new_zeros(())
    pair = mask[:, 1:] & mask[:, :-1]
    error = ((prediction[:, 1:] - prediction[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs()
    return _masked_mean(error, pair)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 over ``(B, T, ...)`` on the frames where ``mask`` ``(B, T)`` is True."""
    return _masked_mean((prediction - target).abs(), mask)


def vertical_lip_gap(landmarks: torch.Tensor) -> torch.Tensor:
    """``(...)`` signed vertical gap: mean y of the lower lip points minus that of the upper lip points.

    Differentiable and in the landmarks' own units (canonical coordinates in training), unlike the scale-free
    :func:`emotalk_common.lip_measures.lip_opening_2d` / ``lip_opening_3d`` (inner-lip distance over the
    eye-corner distance) that evaluation and the teacher use.
    """
    upper = landmarks[..., list(UPPER_LIP), 1].mean(-1)
    lower = landmarks[..., list(LOWER_LIP), 1].mean(-1)
    return lower - upper


def phones_at(phone_ids: torch.Tensor, seconds: torch.Tensor, phone_rate: float = 100.0) -> torch.Tensor:
    """``(B, N)``: the phone of ``phone_ids`` ``(B, L)`` (sampled at ``phone_rate``) at each time in ``seconds``."""
    index = (seconds * phone_rate).long().clamp(max=phone_ids.shape[1] - 1)
    return phone_ids[:, index]


def masked_running_min(x: torch.Tensor, mask: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, T)``: the minimum of ``x`` within ± ``window // 2`` frames; frames outside ``mask`` never count."""
    big = torch.finfo(x.dtype).max / 4
    x = x.masked_fill(~mask, big).unsqueeze(1)
    return -F.max_pool1d(-x, window, stride=1, padding=window // 2).squeeze(1)


def phone_cross_entropy(
    logits: torch.Tensor, phone_ids: torch.Tensor, mask: torch.Tensor, phone_rate: float = 100.0
) -> torch.Tensor:
    """Frame-level phone classification of the 50 Hz audio features (an auxiliary target for the audio encoder).

    ``logits`` ``(B, S, P)`` at the audio-feature times ``(320 j + 200) / 16000`` s, ``phone_ids`` ``(B, L)`` at
    ``phone_rate`` (-100 where unknown), ``mask`` ``(B, S)`` valid features. 0 (with a graph) when no label is
    known.
    """
    times = (
        torch.arange(logits.shape[1], device=logits.device) * AUDIO_HOP + AUDIO_RECEPTIVE_FIELD / 2
    ) / SAMPLING_RATE
    targets = phones_at(phone_ids, times, phone_rate).masked_fill(~mask, -100)
    if not bool((targets >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def aperture_l1(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, closure_window: int = 5
) -> torch.Tensor:
    """L1 on lip-aperture curves ``(B, T)``, plus L1 on their running minimum over ``closure_window`` frames.

    The second term asks each closure to reach its full depth within ± ``closure_window // 2`` frames: a plain
    L1 under a frame of timing uncertainty predicts a half-closed mouth at a /p b m/. Frames outside ``mask``
    count neither as values nor inside a window.
    """
    loss = masked_l1(prediction, target, mask)
    if closure_window > 1 and prediction.shape[1] >= closure_window:
        low, target_low = (masked_running_min(x, mask, closure_window) for x in (prediction, target))
        loss = loss + masked_l1(low, target_low, mask)
    return loss


def frame_phone_mask(
    phone_ids: torch.Tensor, phone_ids_set: torch.Tensor, num_frames: int, fps: float, phone_rate: float = 100.0
) -> torch.Tensor:
    """``(B, num_frames)``: frames whose centre ``(t + ½) / fps`` falls on one of ``phone_ids_set`` in ``phone_ids``.

    ``phone_ids`` ``(B, L)`` at ``phone_rate`` (as :class:`~emotalk_training.data.LandmarkWindowDataset` gives).
    """
    centres = (torch.arange(num_frames, device=phone_ids.device) + 0.5) / fps
    return torch.isin(phones_at(phone_ids, centres, phone_rate), phone_ids_set.to(phone_ids.device))


def bilabial_closure_l1(
    prediction: torch.Tensor, target: torch.Tensor, bilabial: torch.Tensor, mask: torch.Tensor, window: int = 3
) -> torch.Tensor:
    """L1 between predicted and target lip apertures ``(B, T)`` at /p b m/ frames, on their running minima.

    Each bilabial frame compares the smallest aperture within ± ``window // 2`` frames (the evaluation's closure
    tolerance), so the lips must reach the target's closed aperture near every /p b m/, not merely on average
    over all frames where the plain aperture L1 dilutes them. ``bilabial`` ``(B, T)`` marks /p b m/ frames;
    frames outside ``mask`` count neither as values nor inside a window. 0 (with a graph) without bilabials.
    """
    selected = bilabial & mask
    if not bool(selected.any()):
        return prediction.sum() * 0.0
    if window > 1:
        prediction, target = masked_running_min(prediction, mask, window), masked_running_min(target, mask, window)
    return masked_l1(prediction, target, selected)


def emotion_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the items whose emotion is ``known``; 0 (with a graph) when none is."""
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], labels[known])


def info_nce(
    audio_embedding: torch.Tensor,
    visual_embedding: torch.Tensor,
    positives: torch.Tensor | None = None,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Symmetric InfoNCE aligning two ``(B, D)`` embeddings (the coordinated emotion representation).

    ``positives`` ``(B, B)`` marks pairs that count as matches (item i with itself always does); other items of
    the batch are negatives. With a batch of one there is nothing to contrast: returns 0 (with a graph).
    """
    batch = audio_embedding.shape[0]
    if batch < 2:
        return (audio_embedding.sum() + visual_embedding.sum()) * 0.0
    a = F.normalize(audio_embedding.float(), dim=-1)
    v = F.normalize(visual_embedding.float(), dim=-1)
    logits = a @ v.T / temperature
    eye = torch.eye(batch, dtype=torch.bool, device=logits.device)
    positives = eye if positives is None else positives.to(torch.bool) | eye

    def one_side(scores: torch.Tensor) -> torch.Tensor:
        log_prob = scores.log_softmax(dim=-1)
        return -(log_prob * positives).sum(-1).div(positives.sum(-1)).mean()

    return 0.5 * (one_side(logits) + one_side(logits.T))


def emotion_positives(labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` pairs with the same known emotion (supervised contrastive positives)."""
    same = labels[:, None] == labels[None, :]
    return same & known[:, None] & known[None, :]


# ------------------------------------------------------------------------------------------------ stage 2
def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c1, c2 = 0.01**2, 0.03**2
    channels = x.shape[1]
    mu_x = F.conv2d(x, window, groups=channels)
    mu_y = F.conv2d(y, window, groups=channels)
    sigma_x = F.conv2d(x * x, window, groups=channels) - mu_x**2
    sigma_y = F.conv2d(y * y, window, groups=channels) - mu_y**2
    sigma_xy = F.conv2d(x * y, window, groups=channels) - mu_x * mu_y
    contrast = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * contrast).flatten(1).mean(-1), contrast.flatten(1).mean(-1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM ``(B,)`` of images in [0, 1] ``(B, C, H, W)`` (Wang et al. 2003).

    Uses as many of the five standard scales as the image allows (each scale must be at least the window),
    with the weights renormalized; the window shrinks for images smaller than it.
    """
    x, y = x.float(), y.float()
    size = min(x.shape[-2:])
    window_size = min(window_size, size if size % 2 else size - 1)
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and size // 2**scales >= window_size:
        scales += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    window = _gaussian_window(window_size, sigma, x.shape[1], x.device, x.dtype)
    values = []
    for scale in range(scales):
        ssim, contrast = _ssim_terms(x, y, window)
        values.append((ssim if scale == scales - 1 else contrast).clamp_min(1e-6))
        if scale < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=-1)  # (B, scales)
    return torch.prod(stacked**weights, dim=-1)


def mouth_mask(landmarks: torch.Tensor, size: int, margin: float = 0.35) -> torch.Tensor:
    """``(B, 1, size, size)`` soft mask over the mouth: the lips' bounding box grown by ``margin`` of its size.

    ``landmarks`` ``(B, 478, 2|3)`` in normalized crop coordinates.
    """
    lips = landmarks[:, list(LIPS), :2].float()
    low, high = lips.amin(1), lips.amax(1)
    centre, half = (low + high) / 2, (high - low) / 2 * (1 + margin) + 2.0 / size
    coords = (torch.arange(size, device=landmarks.device, dtype=lips.dtype) * 2 + 1) / size - 1
    inside_x = torch.sigmoid((half[:, 0:1] - (coords[None] - centre[:, 0:1]).abs()) * size / 2)  # (B, S)
    inside_y = torch.sigmoid((half[:, 1:2] - (coords[None] - centre[:, 1:2]).abs()) * size / 2)
    return (inside_y[:, :, None] * inside_x[:, None, :]).unsqueeze(1)


def weighted_l1(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-item L1 ``(B,)`` of images weighted by a ``(B, 1, H, W)`` map (normalized by the map's mass)."""
    error = (prediction - target).abs().mean(1, keepdim=True) * weights
    return error.flatten(1).sum(-1) / weights.flatten(1).sum(-1).clamp_min(1.0)


def hinge_discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of a discriminator over lists of logit maps: ``relu(1 - D(real)) + relu(1 + D(fake))``."""
    loss = sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True))
    return loss / len(real)


def hinge_generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """The generator's hinge adversarial loss ``-D(fake)``, averaged over logit maps."""
    return sum(-f.mean() for f in fake) / len(fake)


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of real (detached) and generated images."""
    losses = [F.l1_loss(f, r.detach()) for r, f in zip(real_features, fake_features, strict=True)]
    return sum(losses) / max(len(losses), 1)


__all__ = [
    "aperture_l1",
    "bilabial_closure_l1",
    "emotion_cross_entropy",
    "emotion_positives",
    "feature_matching_loss",
    "frame_phone_mask",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "info_nce",
    "landmark_weights",
    "masked_l1",
    "masked_running_min",
    "mouth_mask",
    "ms_ssim",
    "phone_cross_entropy",
    "phones_at",
    "velocity_l1",
    "vertical_lip_gap",
    "weighted_l1",
    "weighted_landmark_l1",
]
