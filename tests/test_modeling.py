"""Stage 1, stage 2 and the composite model on tiny seeded configs (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from modeling_emotalk import (
    EMOTIONS,
    EmoTalkConfig,
    EmoTalkGenerator,
    EmoTalkGeneratorConfig,
    EmoTalkLandmarkConfig,
    EmoTalkLandmarkModel,
    EmoTalkModel,
)
from modeling_emotalk import landmarks as L
from modeling_emotalk.warp import fit_tps, identity_grid, landmark_flow

TINY_AUDIO = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "layer",  # per-time-step norms: padding cannot leak into the features
    "do_stable_layer_norm": True,
}


def tiny_landmark_config(**overrides) -> EmoTalkLandmarkConfig:
    kwargs = dict(
        audio_config=TINY_AUDIO,
        hidden_size=32,
        num_decoder_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        emotion_embedding_dim=16,
        identity_hidden_size=32,
        expression_basis_size=8,
        dropout=0.0,
    )
    kwargs.update(overrides)
    return EmoTalkLandmarkConfig(**kwargs)


def tiny_generator_config(**overrides) -> EmoTalkGeneratorConfig:
    kwargs = dict(image_size=64, block_out_channels=(32, 32, 32), landmark_channels=16, heatmap_size=32, flow_size=16)
    kwargs.update(overrides)
    return EmoTalkGeneratorConfig(**kwargs)


def tiny_config() -> EmoTalkConfig:
    return EmoTalkConfig(
        landmark_config=tiny_landmark_config().to_dict(),
        generator_config=tiny_generator_config().to_dict(),
        crop_size=64,
    )


def save_tiny_composite(
    path, *, residual_std: float = 0.0, emotion_std: float = 0.0, expression_std: float = 0.0, feature_extractor=True
):
    """Save the seeded tiny composite (64² crops) to ``path`` (+ its feature extractor) and return ``path``.

    The ``*_std`` give layers that start at zero or near it random weights, in this order: the generator's RGB
    residual (frames then depend on stage 2), stage 1's emotion and expression coefficients (emotion and audio
    then move the landmarks visibly).
    """
    from transformers import Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model = EmoTalkModel(tiny_config()).eval()
    layers = (
        (model.generator.to_output, residual_std),
        (model.landmark_model.emotion_coefficients, emotion_std),
        (model.landmark_model.expression_coefficients, expression_std),
    )
    with torch.no_grad():
        for layer, std in layers:
            if std:
                layer.weight.normal_(0, std)
    model.save_pretrained(path)
    if feature_extractor:
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=True).save_pretrained(path)
    return path


def randomize_zero_layers(model: torch.nn.Module) -> None:
    """Give zero-initialized output layers small random weights so that gradients flow through them."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if getattr(module, "_zero_init", False):
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.01)


@pytest.fixture
def reference(face_crop):
    """Canonical reference landmarks and their crop-space frame (batch 1)."""
    _, points = face_crop
    canonical, frame = L.canonicalize(torch.from_numpy(points)[None])
    return canonical, frame


# --------------------------------------------------------------------------------------------- stage 1
@pytest.mark.parametrize("batch", [1, 3])
def test_landmark_model_shapes_with_variable_length_audio(batch, reference):
    torch.manual_seed(0)
    model = EmoTalkLandmarkModel(tiny_landmark_config()).eval()
    lengths = [16000, 12345, 8000][:batch]
    audio = torch.zeros(batch, max(lengths))
    mask = torch.zeros(batch, max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        audio[i, :n] = torch.randn(n) * 0.1
        mask[i, :n] = 1
    canonical, frame = reference
    frame = tuple(x.expand(batch, *x.shape[1:]) for x in frame)
    with torch.no_grad():
        out = model(
            audio,
            attention_mask=mask,
            reference_landmarks=canonical.expand(batch, -1, -1),
            emotion=torch.arange(batch),
            fps=25,
            reference_frame=frame,
        )
    frames = math.ceil(max(lengths) / 16000 * 25)
    assert frames == 25
    assert out.expression.shape == (batch, frames, 478, 3)
    assert out.head_pose.shape == (batch, frames, 6)
    assert out.gaze.shape == (batch, frames, 2)
    assert out.blink.shape == (batch, frames, 2)
    assert ((out.blink >= 0) & (out.blink <= 1)).all()
    assert out.emotion_logits.shape == (batch, len(EMOTIONS))
    assert out.emotion_embedding.shape == (batch, 16)
    assert out.landmarks.shape == (batch, frames, 478, 3)
    assert out.frame_mask.sum(1).tolist() == [math.ceil(n / 16000 * 25) for n in lengths]
    assert torch.isfinite(out.landmarks).all()


def test_padding_does_not_change_the_unpadded_item(reference):
    torch.manual_seed(0)
    model = EmoTalkLandmarkModel(tiny_landmark_config()).eval()
    audio = torch.randn(1, 8000) * 0.1
    padded = torch.cat([audio, torch.zeros(1, 4000)], dim=1)
    mask = torch.cat([torch.ones(1, 8000), torch.zeros(1, 4000)], dim=1).long()
    canonical, _ = reference
    with torch.no_grad():
        a = model(audio, reference_landmarks=canonical, emotion=torch.tensor([5]))
        b = model(padded, attention_mask=mask, reference_landmarks=canonical, emotion=torch.tensor([5]))
    frames = a.expression.shape[1]
    assert b.frame_mask[0].sum() == frames
    torch.testing.assert_close(a.expression, b.expression[:, :frames], atol=1e-4, rtol=1e-4)


def test_emotion_labels_schedules_and_blends(reference):
    torch.manual_seed(0)
    model = EmoTalkLandmarkModel(tiny_landmark_config()).eval()
    audio = torch.randn(1, 16000) * 0.1
    canonical, _ = reference
    with torch.no_grad():
        run = lambda **kw: model(audio, reference_landmarks=canonical, **kw)  # noqa: E731
        happy = run(emotion=torch.tensor([EMOTIONS.index("happy")]))
        sad = run(emotion=torch.tensor([EMOTIONS.index("sad")]))
        weak = run(emotion=torch.tensor([EMOTIONS.index("happy")]), intensity=0.0)
        auto = run(emotion=None)
        # schedule: neutral for the first half, happy for the second
        schedule = torch.zeros(1, 25, len(EMOTIONS))
        schedule[:, :12, EMOTIONS.index("neutral")] = 1
        schedule[:, 12:, EMOTIONS.index("happy")] = 1
        scheduled = run(emotion=schedule)
        blend = torch.zeros(1, len(EMOTIONS))
        blend[0, EMOTIONS.index("happy")] = 0.7
        blend[0, EMOTIONS.index("surprised")] = 0.3
        blended = run(emotion=blend)
        neutral = run(emotion=torch.tensor([EMOTIONS.index("neutral")]))
    assert (happy.expression - sad.expression).abs().max() > 1e-3
    assert (happy.expression - weak.expression).abs().max() > 1e-3
    torch.testing.assert_close(auto.emotion_weights.sum(-1), torch.ones(1, 25))
    assert scheduled.emotion_weights[0, 0, EMOTIONS.index("neutral")] == 1
    assert scheduled.emotion_weights[0, -1, EMOTIONS.index("happy")] == 1
    # the schedule changes the second half toward "happy", and leaves the first half at "neutral"
    torch.testing.assert_close(scheduled.expression[:, :5], neutral.expression[:, :5], atol=2e-3, rtol=0)
    torch.testing.assert_close(scheduled.expression[:, -5:], happy.expression[:, -5:], atol=2e-3, rtol=0)
    torch.testing.assert_close(blended.emotion_weights[0, 0], blend[0])
    assert (blended.expression - happy.expression).abs().max() > 1e-4


def test_composite_emotion_strength_scales_the_emotion_condition_not_the_reported_weights(face_crop):
    torch.manual_seed(0)
    plain = EmoTalkModel(tiny_config()).eval()
    with torch.no_grad():
        plain.landmark_model.emotion_coefficients.weight.normal_(0, 0.5)  # emotion moves the landmarks
    config = tiny_config()
    config.emotion_strength = {"angry": 2.0}
    strong = EmoTalkModel(config).eval()
    strong.load_state_dict(plain.state_dict())
    audio = torch.randn(1, 8000) * 0.1
    source = torch.from_numpy(face_crop[1])[None]
    angry, happy = (torch.tensor([EMOTIONS.index(e)]) for e in ("angry", "happy"))
    with torch.no_grad():
        run = lambda model, emotion, k: model.predict_landmarks(audio, source, emotion=emotion, intensity=k)  # noqa: E731
        doubled, twice = run(strong, angry, 0.5), run(plain, angry, 1.0)
        once = run(plain, angry, 0.5)
        untouched, reference_happy = run(strong, happy, 1.0), run(plain, happy, 1.0)
    # angry at intensity 0.5 with strength 2 is angry at intensity 1 without; other emotions are unchanged
    torch.testing.assert_close(doubled.expression, twice.expression)
    assert (doubled.expression - once.expression).abs().max() > 1e-3
    torch.testing.assert_close(untouched.expression, reference_happy.expression)
    # the output reports what was asked (label × intensity), not the calibration
    torch.testing.assert_close(doubled.emotion_weights, once.emotion_weights)
    assert EmoTalkConfig.from_dict(config.to_dict()).emotion_strength_vector()[EMOTIONS.index("angry")] == 2.0


@pytest.mark.parametrize(
    "strength, match",
    [({"angy": 2.0}, "unknown emotion 'angy'"), ({"sad": -1.0}, r"number in \[0, 10\]"), ({"sad": "x"}, "number")],
)
def test_bad_emotion_strength_is_refused(strength, match):
    with pytest.raises(ValueError, match=match):
        EmoTalkConfig(emotion_strength=strength)


def test_invalid_emotion_inputs_raise_clear_errors(reference):
    model = EmoTalkLandmarkModel(tiny_landmark_config()).eval()
    audio = torch.randn(1, 4000) * 0.1
    with pytest.raises(ValueError, match="emotion labels must be in"):
        model(audio, emotion=torch.tensor([8]))
    with pytest.raises(ValueError, match="emotion weights must be"):
        model(audio, emotion=torch.ones(1, 5))
    with pytest.raises(ValueError, match="input_values must be"):
        model(torch.zeros(4000))


# --------------------------------------------------------------------------------------------- geometry
def test_canonical_frame_round_trip_and_pose_invariance(face_crop):
    points = torch.from_numpy(face_crop[1]).double()
    canonical, frame = L.canonicalize(points)
    torch.testing.assert_close(L.from_canonical(canonical, *frame), points)
    rotation = L.euler_to_matrix(torch.tensor(0.3), torch.tensor(-0.2), torch.tensor(0.1)).double()
    moved = 1.7 * points @ rotation.T + torch.tensor([0.1, -0.2, 0.3]).double()
    torch.testing.assert_close(L.canonicalize(moved)[0], canonical)


def test_relocation_with_zero_motion_returns_the_reference(face_crop):
    points = torch.from_numpy(face_crop[1])[None]
    canonical, frame = L.canonicalize(points)
    zeros = torch.zeros(1, 4, 478, 3)
    out = L.relocate(canonical, zeros, torch.zeros(1, 4, 6), torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), frame)
    torch.testing.assert_close(out, points[:, None].expand(1, 4, 478, 3), atol=1e-5, rtol=0)
    closed = L.relocate(canonical, zeros, torch.zeros(1, 4, 6), torch.zeros(1, 4, 2), torch.ones(1, 4, 2), frame)
    upper, lower = list(L.RIGHT_EYE_UPPER), list(L.RIGHT_EYE_LOWER)
    opening = (points[0, upper, 1] - points[0, lower, 1]).abs().mean()
    assert (closed[0, 0, upper, 1] - closed[0, 0, lower, 1]).abs().mean() < 0.1 * opening


def test_tps_interpolates_control_points():
    torch.manual_seed(0)
    control = torch.rand(2, 30, 2) * 2 - 1
    values = torch.randn(2, 30, 2)
    coefficients = fit_tps(control, values, regularization=1e-6)
    from modeling_emotalk.warp import evaluate_tps

    torch.testing.assert_close(evaluate_tps(coefficients, control, control), values, atol=1e-3, rtol=0)


def folded_fraction(grid: torch.Tensor, rows: slice) -> float:
    """The share of a backward grid ``(S, S, 2)``'s pixels in ``rows`` where it folds (Jacobian determinant ≤ 0)."""
    g = grid.double()
    along_x, along_y = g[:-1, 1:] - g[:-1, :-1], g[1:, :-1] - g[:-1, :-1]
    det = along_x[..., 0] * along_y[..., 1] - along_x[..., 1] * along_y[..., 0]
    return float((det[rows] <= 0).double().mean())


def test_default_spline_ridge_does_not_fold_brows_pulled_onto_the_eyes(face_crop):
    """Strong brow motion (angry, sad at twice intensity 1) crowds the brows' lower contour onto the upper lids. An
    almost interpolating spline (ridge 1e-3 everywhere, the old default) then folds the warp above the eyes (zig-zag
    brows on the frames); the default ridges keep every pixel above the nose tip unfolded. (Folds at the lips are
    expected: a closing mouth squeezes the photo's open mouth to nothing.)"""
    from emotalk_common.topology import LEFT_EYE_UPPER, LEFT_EYEBROW, NOSE_TIP, RIGHT_EYE_UPPER, RIGHT_EYEBROW

    generator = EmoTalkGenerator(tiny_generator_config())
    assert (generator.config.tps_regularization, generator.config.tps_contact_regularization) == (1e-2, 1e-3)
    source = torch.from_numpy(face_crop[1])[None]
    control = generator.control_index
    driving = source.clone()
    for brow, lid in ((RIGHT_EYEBROW, RIGHT_EYE_UPPER), (LEFT_EYEBROW, LEFT_EYE_UPPER)):
        lower = list(brow[5:])  # MediaPipe lists each brow's upper contour, then its lower one
        gap = source[0, list(lid), 1].mean() - source[0, lower, 1].mean()
        driving[0, lower, 1] += 0.9 * gap
    rows = slice(0, int((face_crop[1][list(NOSE_TIP), 1].mean() + 1) / 2 * 256))
    folded = {
        name: folded_fraction(landmark_flow(source[:, control], driving[:, control], 256, 64, ridge)[0], rows)
        for name, ridge in (("1e-3", 1e-3), ("default", generator.spline_ridge()))
    }
    assert folded["1e-3"] > 0, folded  # the failure the ridge is there for
    assert folded["default"] == 0, folded


@pytest.mark.parametrize("contour", ["eyes", "lips"])
def test_closing_contours_keep_an_almost_interpolating_ridge(face_crop, contour):
    """Smoothed like the rest (1e-2), a blink's peak stays open (the iris shows) and a bilabial closure stops short:
    with a 90 % closed eye or mouth the spline misses the upper contour's targets by more than with the default's
    exact ridge at the eyelids and lips."""
    from emotalk_common.topology import (
        LEFT_EYE_LOWER,
        LEFT_EYE_UPPER,
        LIPS_INNER_LOWER,
        LIPS_INNER_UPPER,
        RIGHT_EYE_LOWER,
        RIGHT_EYE_UPPER,
    )

    from modeling_emotalk.warp import evaluate_tps

    pairs = {
        "eyes": ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER)),
        "lips": ((LIPS_INNER_UPPER[1:-1], LIPS_INNER_LOWER[1:-1]),),  # the corners are shared
    }[contour]
    generator = EmoTalkGenerator(tiny_generator_config())
    control = generator.control_index
    source = torch.from_numpy(face_crop[1])[None]
    driving = source.clone()
    for upper, lower in pairs:
        driving[0, list(upper), 1] = 0.9 * source[0, list(lower), 1] + 0.1 * source[0, list(upper), 1]
    uppers = {i for upper, _ in pairs for i in upper}
    moved = [i for i, c in enumerate(control.tolist()) if c in uppers]
    at, wanted = driving[:, control, :2], source[:, control, :2] - driving[:, control, :2]

    def miss(ridge) -> float:  # mean distance, in pixels of a 256² crop, from the upper contour's targets
        return float((evaluate_tps(fit_tps(at, wanted, ridge), at, at) - wanted)[0, moved].norm(dim=-1).mean() * 128)

    exact, smooth = miss(generator.spline_ridge()), miss(1e-2)
    assert exact < 0.8 * smooth, (exact, smooth)


# --------------------------------------------------------------------------------------------- stage 2
def test_generator_shapes_and_multi_reference(face_crop):
    torch.manual_seed(0)
    model = EmoTalkGenerator(tiny_generator_config()).eval()
    points = torch.from_numpy(face_crop[1])
    refs = torch.rand(2, 3, 3, 64, 64)
    ref_landmarks = points.expand(2, 3, 478, 3)
    with torch.no_grad():
        out = model(refs, ref_landmarks, points.expand(2, 478, 3) + 0.01)
    assert out.frames.shape == (2, 3, 64, 64)
    assert out.grid.shape == (2, 3, 64, 64, 2)
    assert out.mask.shape == (2, 1, 64, 64)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    # one reference image broadcast over a batch of 5 driving frames
    with torch.no_grad():
        single = model(refs[:1, 0], points[None], points.expand(5, 478, 3))
    assert single.frames.shape == (5, 3, 64, 64)
    with pytest.raises(ValueError, match="expected 1 or 5"):
        model(refs[:, 0], points.expand(2, 478, 3), points.expand(5, 478, 3))


def test_untrained_generator_is_the_identity_warp(face_crop):
    crop, points = face_crop
    model = EmoTalkGenerator(tiny_generator_config(image_size=256)).eval()
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    landmarks = torch.from_numpy(points)[None]
    with torch.no_grad():
        out = model(image, landmarks, landmarks)
    assert (out.frames - image).abs().max() < 1e-3


@pytest.mark.parametrize("shift", [4, 8])
def test_moving_the_lower_lip_moves_a_marked_patch(face_crop, shift):
    crop, points = face_crop
    size = 256
    image = crop.astype(np.float32) / 255
    # a 3×3 green marker on the centre of the lower lip
    cx, cy = ((points[17, :2] + points[14, :2]) / 2 + 1) / 2 * size
    x0, y0 = round(cx) - 1, round(cy) - 1
    image[y0 : y0 + 3, x0 : x0 + 3] = [0.0, 1.0, 0.0]
    driving = points.copy()
    driving[list(L.LOWER_LIP), 1] += 2 * shift / size
    model = EmoTalkGenerator(tiny_generator_config(image_size=size)).eval()
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = model(pixels, torch.from_numpy(points)[None], torch.from_numpy(driving)[None]).frames[0]
    greenness = (out[1] - (out[0] + out[2]) / 2).clamp_min(0)
    greenness = torch.where(greenness > 0.3, greenness, 0)  # the marker, not the lip's own colour
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mass = greenness.sum()
    assert mass > 3
    centre_y, centre_x = (greenness * ys).sum() / mass, (greenness * xs).sum() / mass
    assert abs(centre_y.item() - (y0 + 1) - shift) <= 1
    assert abs(centre_x.item() - (x0 + 1)) <= 1


def test_identity_grid_samples_pixel_centres():
    image = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    grid = identity_grid(5, 7)[None]
    out = torch.nn.functional.grid_sample(image, grid, align_corners=False)
    torch.testing.assert_close(out, image)
    same = torch.rand(1, 478, 3)
    torch.testing.assert_close(landmark_flow(same, same, 16, 8)[0], identity_grid(16, 16), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------- composite
def test_composite_forward_save_load_round_trip(tmp_path, face_crop):
    torch.manual_seed(0)
    model = EmoTalkModel(tiny_config()).eval()
    randomize_zero_layers(model)
    # float32 convolutions: the bfloat16 inference path rounds to 3 significant digits, so a 1e-7 difference
    # in the loaded audio encoder's arithmetic could show at 1e-3 in frames; this test is about serialization
    model.generator.set_conv_precision("float32")
    audio = torch.randn(1, 8000) * 0.1
    pixels = torch.rand(1, 3, 64, 64)
    points = torch.from_numpy(face_crop[1])[None]
    with torch.no_grad():
        before = model(audio, pixels, points, emotion=torch.tensor([3]))
    assert before.frames.shape == (1, 13, 3, 64, 64)
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = AutoConfig.from_pretrained(tmp_path)
    assert "auto_map" in config.to_dict()
    loaded = EmoTalkModel.from_pretrained(tmp_path).eval()
    loaded.generator.set_conv_precision("float32")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, dict(loaded.named_buffers())[name], msg=name)
    with torch.no_grad():
        after = loaded(audio, pixels, points, emotion=torch.tensor([3]))
    # weights and buffers are equal bit for bit (above); the loaded copy's float32 arithmetic may still differ
    # by ~1e-9 (memory alignment picks other SIMD paths), which the spline solve can amplify to ~3e-5 in a pixel
    torch.testing.assert_close(before.frames, after.frames, atol=1e-4, rtol=0)
    torch.testing.assert_close(before.landmarks, after.landmarks)


def test_gradients_reach_every_trainable_parameter(face_crop):
    torch.manual_seed(0)
    model = EmoTalkModel(tiny_config()).train()
    randomize_zero_layers(model)
    points = torch.from_numpy(face_crop[1]).expand(1, 2, 478, 3)  # two references: the fusion weights train too
    out = model(torch.randn(1, 4000) * 0.1, torch.rand(1, 2, 3, 64, 64), points, emotion=None)
    loss = out.frames.mean() + out.landmarks.square().mean() + out.motion.emotion_logits.square().mean()
    loss = loss + out.motion.emotion_embedding.square().mean()
    loss.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad
        and (p.grad is None or p.grad.abs().sum() == 0)
        # wav2vec2's masked_spec_embed is used only when SpecAugment masks a time step
        and "masked_spec_embed" not in name
    ]
    assert missing == []


@pytest.mark.parametrize(
    "config",
    [tiny_landmark_config, tiny_generator_config, tiny_config],
    ids=["emotalk_landmark", "emotalk_generator", "emotalk"],
)
def test_auto_model_resolves_each_model_type(tmp_path, config):
    cfg = config()
    AutoModel.from_config(cfg).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.model_type == cfg.model_type
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(cfg)


def test_the_spline_solves_after_torch_set_num_threads():
    """torch 2.13's batched CPU solve fails on 163-point systems once torch.set_num_threads(2) was called (as a user
    or a benchmark may); the spline fit must not (a fresh process: the failure needs that call before any solve)."""
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(2); from modeling_emotalk.warp import fit_tps; "
        "c = torch.rand(8, 160, 2); t = torch.rand(8, 160, 2); "
        "k = fit_tps(c, t, 1e-2); print(float((k[:, :160].sum(1)).abs().max()))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-3  # the kernel weights of a TPS sum to zero
