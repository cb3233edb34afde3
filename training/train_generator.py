#!/usr/bin/env python
"""Fine-tune EmoTalk stage 2 (reference image(s) + driving landmarks → frames) on a dataset from ``emotalk prepare``.

    accelerate launch training/train_generator.py \\
        --dataset_dir data/ --output_dir runs/generator \\
        --num_references 2 --num_frames 3 --train_batch_size 2 --max_train_steps 2000

Self-supervised: the K references and the W consecutive driving frames come from the same clip, and the
driving frames' own tracked landmarks drive the generator, so the real frames are the targets. Losses: L1,
multi-scale SSIM, mouth-weighted L1, and — unless their weights are 0 — a hinge GAN with a PatchGAN frame
discriminator and a spatio-temporal (3D conv) discriminator over the W-frame windows, plus feature matching.
No perceptual loss: there are no VGG weights offline.

The generator's output layers start at zero (an untrained generator is the pure landmark warp), so training
starts from a sane image. The output folder is a ``save_pretrained`` folder
(``EmoTalkGenerator.from_pretrained(output_dir)``); ``--composite_output_dir`` also writes a complete model for
``pipeline("emotional-talking-face", model=...)``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from emotalk_training.data import GeneratorPairDataset, select_clips
from emotalk_training.discriminators import PatchDiscriminator, SpatioTemporalDiscriminator
from emotalk_training.losses import (
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    mouth_mask,
    ms_ssim,
    weighted_l1,
)
from emotalk_training.utils import (
    checkpoint_step,
    default_base_model,
    load_stage,
    model_type_of,
    push_folder_to_hub,
    resolve_checkpoint,
    save_checkpoint,
    save_png,
    tensorboard_writer,
    write_composite,
)
from torch import nn
from tqdm.auto import tqdm

from modeling_emotalk import EmoTalkGenerator, SourceFeatures

logger = get_logger(__name__)

IMAGE_ENCODER = ("stem", "encoder0", "down1", "encoder1", "down2", "encoder2")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (diffusers' names where they exist)."""
    parser = argparse.ArgumentParser(description="Fine-tune EmoTalk stage 2 (the FAT generator) with Accelerate.")
    parser.add_argument("--dataset_dir", required=True, help="a folder written by `emotalk prepare`")
    parser.add_argument("--output_dir", default="emotalk-generator", help="checkpoints, logs and the final model")
    parser.add_argument(
        "--base_model",
        default=None,
        help="a composite EmoTalk folder or an emotalk_generator folder to start from (default: the embedded model)",
    )
    parser.add_argument(
        "--composite_output_dir",
        default=None,
        help="also write a complete pipeline folder here (the trained stage 2 + the other parts of the base model)",
    )
    parser.add_argument(
        "--composite_template",
        default=None,
        help="composite folder providing stage 1 for --composite_output_dir (default: --base_model when it is a "
        "composite, else the embedded model)",
    )
    parser.add_argument("--train_split", default="train", help="clips of this split are trained on (default train)")
    parser.add_argument("--num_references", type=int, default=2, help="K reference frames per sample")
    parser.add_argument("--num_frames", type=int, default=3, help="W consecutive driving frames per sample")
    parser.add_argument(
        "--min_reference_distance", type=int, default=5, help="references at least this many frames from the window"
    )
    parser.add_argument(
        "--cross_clip_references",
        type=float,
        default=0.0,
        help="probability that a sample's references come from another clip of the same speaker (e.g. MEAD's "
        "neutral clip for a happy one): teaches the texture an expression changes (default 0)",
    )
    parser.add_argument(
        "--closed_mouth_references",
        type=float,
        default=0.0,
        help="probability of a mouth-synthesis pair: references among the most closed quarter of mouths, driving "
        "frames among the most open quarter, so teeth and mouth interior must be drawn, not copied (default 0)",
    )
    parser.add_argument(
        "--blink_windows",
        type=float,
        default=0.0,
        help="probability that a sample's driving window starts at a blink (the most closed 5 %% of eyes), "
        "exclusive of the mouth pairs (default 0)",
    )
    parser.add_argument("--samples_per_epoch", type=int, default=None, help="default: clip frames / num_frames")
    parser.add_argument("--freeze_image_encoder", action="store_true", help="train the motion/FAT/decoder parts only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialization, data order and dropout")
    parser.add_argument("--train_batch_size", type=int, default=2, help="samples per device (× num_frames frames)")
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="generator learning rate")
    parser.add_argument("--discriminator_learning_rate", type=float, default=2e-4)
    parser.add_argument("--scale_lr", action="store_true", help="multiply the lrs by accumulation × batch × processes")
    parser.add_argument(
        "--lr_scheduler",
        default="constant_with_warmup",
        choices=["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"],
    )
    parser.add_argument("--lr_warmup_steps", type=int, default=20)
    parser.add_argument("--adam_beta1", type=float, default=0.5)
    parser.add_argument("--adam_beta2", type=float, default=0.999)
    parser.add_argument("--adam_weight_decay", type=float, default=0.0)
    parser.add_argument("--adam_epsilon", type=float, default=1e-8)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default=None,
        help="default: the accelerate config; fp16 falls back to fp32 on a device without fp16 support",
    )
    parser.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all or none")
    parser.add_argument("--logging_dir", default="logs", help="tensorboard folder, relative to --output_dir")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder, or "latest"')
    parser.add_argument("--validation_steps", type=int, default=250, help="0 disables validation")
    parser.add_argument("--validation_split", default=None, help="default: test, then validation, then train clips")
    parser.add_argument("--validation_frames", type=int, default=50, help="frames of the validation video")
    # losses
    parser.add_argument("--lambda_l1", type=float, default=1.0)
    parser.add_argument("--lambda_ssim", type=float, default=1.0, help="weight of 1 - MS-SSIM")
    parser.add_argument("--lambda_mouth", type=float, default=1.0, help="L1 inside the mouth box")
    parser.add_argument("--lambda_gan", type=float, default=0.02, help="frame (PatchGAN) hinge loss; 0 disables it")
    parser.add_argument(
        "--lambda_temporal_gan", type=float, default=0.02, help="spatio-temporal hinge loss; 0 disables it"
    )
    parser.add_argument("--lambda_feature_matching", type=float, default=0.1)
    parser.add_argument("--gan_start_step", type=int, default=0, help="adversarial losses from this step on")
    parser.add_argument("--discriminator_channels", type=int, default=64)
    parser.add_argument("--temporal_discriminator_channels", type=int, default=32)
    parser.add_argument("--discriminator_layers", type=int, default=3)
    # hub
    parser.add_argument("--push_to_hub", action="store_true", help="no-op with a clear message when HF_HUB_OFFLINE=1")
    parser.add_argument("--hub_model_id", default=None)
    parser.add_argument("--hub_token", default=None)
    args = parser.parse_args(input_args)

    env_local_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_local_rank != -1:
        args.local_rank = env_local_rank
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "num_references"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.num_frames < 1:
        parser.error(f"--num_frames must be at least 1, got {args.num_frames}")
    if args.lambda_temporal_gan > 0 and args.num_frames < 2:
        parser.error("the spatio-temporal discriminator needs --num_frames >= 2 (or --lambda_temporal_gan 0)")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        parser.error(f"--checkpoints_total_limit must be at least 1, got {args.checkpoints_total_limit}")
    if not 0.0 <= args.cross_clip_references <= 1.0:
        parser.error(f"--cross_clip_references is a probability in [0, 1], got {args.cross_clip_references}")
    if not 0.0 <= args.closed_mouth_references <= 1.0:
        parser.error(f"--closed_mouth_references is a probability in [0, 1], got {args.closed_mouth_references}")
    if not 0.0 <= args.blink_windows <= 1.0 - args.closed_mouth_references:
        parser.error(f"--blink_windows is a probability in [0, 1 - closed_mouth_references], got {args.blink_windows}")
    return args


def resolve_mixed_precision(requested: str | None) -> str:
    """fp16 needs an accelerator that supports it; on CPU it falls back to fp32 (bf16 works on CPU)."""
    requested = requested or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if requested == "fp16" and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        logging.getLogger(__name__).warning("fp16 mixed precision needs a GPU: training in fp32 instead")
        return "no"
    return requested


class GeneratorTrainingWrapper(nn.Module):
    """Encodes the K references once per sample and renders its W driving frames, in one ``forward``.

    One forward call keeps DistributedDataParallel's gradient bookkeeping simple (``encode_source`` is not
    ``forward``).
    """

    def __init__(self, generator: EmoTalkGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, references: torch.Tensor, reference_landmarks: torch.Tensor, landmarks: torch.Tensor):
        """``references`` ``(B, K, 3, S, S)``, ``reference_landmarks`` ``(B, K, 478, 3)``, ``landmarks``
        ``(B, W, 478, 3)`` → generator output over ``B × W`` frames."""
        frames = landmarks.shape[1]
        source = self.generator.encode_source(references, reference_landmarks)
        repeat = lambda x: x.repeat_interleave(frames, dim=0)  # noqa: E731
        source = SourceFeatures(
            pixel_values=repeat(source.pixel_values),
            features=tuple(repeat(f) for f in source.features),
            landmarks=repeat(source.landmarks),
        )
        return self.generator(source=source, driving_landmarks=landmarks.flatten(0, 1))


def frozen_call(accelerator: Accelerator, module: nn.Module, inputs: torch.Tensor):
    """Run a discriminator with detached parameters (and no spectral-norm update): gradients reach the inputs only.

    The generator's adversarial loss must not leave gradients in the discriminators.
    """
    unwrapped = accelerator.unwrap_model(module)
    parameters = {name: p.detach() for name, p in unwrapped.named_parameters()}
    was_training = unwrapped.training
    unwrapped.eval()
    try:
        with accelerator.autocast():
            return torch.func.functional_call(unwrapped, parameters, (inputs,))
    finally:
        unwrapped.train(was_training)


def to_clips(frames: torch.Tensor, window: int) -> torch.Tensor:
    """``(B * W, C, S, S)`` frames → ``(B, C, W, S, S)`` windows for the spatio-temporal discriminator."""
    return frames.unflatten(0, (-1, window)).transpose(1, 2)


def frame_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of per-frame values ``(N,)`` over valid frames."""
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def validation_clip(dataset_dir: str, split: str | None) -> tuple[str | None, dict | None]:
    """The clip validation renders: the first of ``split`` (or test / validation / train)."""
    from emotalk_training.prepare import load_index

    index = load_index(dataset_dir)
    for candidate in [split] if split else ["test", "validation", "train"]:
        clips = select_clips(index, candidate, 2, False)
        if clips:
            return candidate, clips[0]
    return None, None


@torch.no_grad()
def log_validation(
    generator: EmoTalkGenerator,
    args: argparse.Namespace,
    accelerator: Accelerator,
    step: int,
    dataset: GeneratorPairDataset,
    clip: dict,
) -> dict[str, float]:
    """Render the first ``validation_frames`` frames of ``clip`` from its tracked landmarks; log metrics, a frame
    grid (real | generated | warped) and a short MP4 of the same layout with the clip's audio."""
    from emotalk_common.video_io import write_mp4
    from emotalk_training.data import _resize_frames

    was_training = generator.training
    generator.eval()
    valid = dataset.valid_frames(clip)
    references = valid[
        np.linspace(0, min(len(valid) - 1, round(dataset.fps)), args.num_references).round().astype(int)
    ]
    count = min(args.validation_frames, clip["num_frames"])
    shard = clip["shard"]
    device = accelerator.device
    ref_pixels = _resize_frames(dataset.reader.read(shard, "crops", np.sort(references)), dataset.image_size)
    ref_landmarks = torch.from_numpy(dataset.reader.read(shard, "landmarks", np.sort(references)).astype(np.float32))
    with accelerator.autocast():
        source = generator.encode_source(ref_pixels[None].to(device), ref_landmarks[None].to(device))
    rows, psnrs, l1s, ssims = [], [], [], []
    for start in range(0, count, 8):
        stop = min(start + 8, count)
        real = _resize_frames(dataset.reader.read(shard, "crops", slice(start, stop)), dataset.image_size).to(device)
        landmarks = torch.from_numpy(dataset.reader.read(shard, "landmarks", slice(start, stop)).astype(np.float32))
        with accelerator.autocast():
            output = generator(source=source, driving_landmarks=landmarks.to(device))
        fake, warped = output.frames.float().clamp(0, 1), output.warped.float().clamp(0, 1)
        mse = (fake - real).square().flatten(1).mean(-1).clamp_min(1e-10)
        psnrs.extend((10 * torch.log10(1 / mse)).tolist())
        l1s.extend((fake - real).abs().flatten(1).mean(-1).tolist())
        ssims.extend(ms_ssim(fake, real).tolist())
        rows.append(torch.cat([real, fake, warped], dim=-1))
    video = (torch.cat(rows).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
    folder = Path(args.output_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    audio = dataset.reader.read(shard, "audio", slice(0, round(count / dataset.fps * 16000)))
    write_mp4(folder / f"step-{step:06d}.mp4", [video], dataset.fps, audio if clip.get("has_audio") else None)
    grid = np.concatenate(list(video[np.linspace(0, len(video) - 1, min(4, len(video))).astype(int)]), axis=0)
    save_png(grid, folder / f"step-{step:06d}.png")
    writer = tensorboard_writer(accelerator)
    if writer is not None:
        writer.add_image("validation/real_generated_warped", grid, step, dataformats="HWC")
    if was_training:
        generator.train()
    summary = {"val/psnr": float(np.mean(psnrs)), "val/l1": float(np.mean(l1s)), "val/ms_ssim": float(np.mean(ssims))}
    accelerator.log(summary, step=step)
    logger.info(f"validation at step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    return summary


def main(args: argparse.Namespace) -> None:
    logging_dir = Path(args.output_dir, args.logging_dir)
    project_config = ProjectConfiguration(project_dir=args.output_dir, logging_dir=str(logging_dir))
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project_config,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        transformers.utils.logging.set_verbosity_warning()
    else:
        transformers.utils.logging.set_verbosity_error()
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)

    base_model = args.base_model or default_base_model()
    generator = load_stage(base_model, "generator")
    generator.train()
    if args.freeze_image_encoder:
        for name in IMAGE_ENCODER:
            getattr(generator, name).requires_grad_(False)
    wrapper = GeneratorTrainingWrapper(generator)
    use_frame_gan = args.lambda_gan > 0
    use_temporal_gan = args.lambda_temporal_gan > 0
    discriminators = nn.ModuleDict()
    if use_frame_gan:
        discriminators["frame"] = PatchDiscriminator(3, args.discriminator_channels, args.discriminator_layers)
    if use_temporal_gan:
        discriminators["temporal"] = SpatioTemporalDiscriminator(
            3, args.temporal_discriminator_channels, args.discriminator_layers
        )

    def save_model_hook(models, weights, output_dir):
        for i, wrapped in enumerate(models):
            unwrapped = accelerator.unwrap_model(wrapped)
            if isinstance(unwrapped, GeneratorTrainingWrapper):
                if accelerator.is_main_process:
                    unwrapped.generator.save_pretrained(os.path.join(output_dir, "generator"))
                weights.pop(i)  # the discriminators stay in accelerate's own format
                break

    def load_model_hook(models, input_dir):
        for i, wrapped in enumerate(models):
            unwrapped = accelerator.unwrap_model(wrapped)
            if isinstance(unwrapped, GeneratorTrainingWrapper):
                loaded = EmoTalkGenerator.from_pretrained(os.path.join(input_dir, "generator"))
                unwrapped.generator.load_state_dict(loaded.state_dict())
                del loaded
                models.pop(i)
                break

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    scale = (
        args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes if args.scale_lr else 1
    )
    betas = (args.adam_beta1, args.adam_beta2)
    generator_parameters = [p for p in wrapper.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        generator_parameters,
        lr=args.learning_rate * scale,
        betas=betas,
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )

    train_dataset = GeneratorPairDataset(
        args.dataset_dir,
        image_size=generator.config.image_size,
        num_references=args.num_references,
        num_frames=args.num_frames,
        split=args.train_split,
        seed=args.seed,
        samples_per_epoch=args.samples_per_epoch,
        min_reference_distance=args.min_reference_distance,
        cross_clip_references=args.cross_clip_references,
        closed_mouth_references=args.closed_mouth_references,
        blink_windows=args.blink_windows,
    )
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        shuffle=False,  # the dataset draws its own (seeded, epoch-addressed) samples
        num_workers=args.dataloader_num_workers,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the global RNG untouched (exact resumes)
    )
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    wrapper, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        wrapper, optimizer, train_dataloader, lr_scheduler
    )
    prepared_discriminators: dict[str, nn.Module] = {}
    discriminator_optimizer = None
    if len(discriminators):
        discriminator_optimizer = torch.optim.AdamW(
            discriminators.parameters(),
            lr=args.discriminator_learning_rate * scale,
            betas=betas,
            weight_decay=args.adam_weight_decay,
            eps=args.adam_epsilon,
        )
        prepared = accelerator.prepare(*discriminators.values(), discriminator_optimizer)
        prepared_discriminators = dict(zip(discriminators.keys(), prepared[:-1], strict=True))
        discriminator_optimizer = prepared[-1]
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    if accelerator.is_main_process:
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("train_generator", config=tracker_config)

    val_dataset, val_clip, validation_split = None, None, None
    if args.validation_steps > 0 and accelerator.is_main_process:
        validation_split, val_clip = validation_clip(args.dataset_dir, args.validation_split)
        if val_clip is not None:
            val_dataset = GeneratorPairDataset(
                args.dataset_dir, image_size=generator.config.image_size, num_frames=1, split=validation_split
            )

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training (stage 2: references + landmarks → frames) *****")
    logger.info(f"  Clips = {len(train_dataset.clips)}, samples per epoch = {len(train_dataset)}")
    logger.info(f"  References K = {args.num_references}, driving frames per sample W = {args.num_frames}")
    logger.info(f"  Num epochs = {num_train_epochs}, batch size per device = {args.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    logger.info(f"  Total optimization steps = {args.max_train_steps}")
    logger.info(f"  Discriminators = {list(discriminators.keys()) or 'none'}")

    global_step = 0
    checkpoint = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and checkpoint is None:
        accelerator.print(f"Checkpoint '{args.resume_from_checkpoint}' does not exist. Starting a new training run.")
    elif checkpoint is not None:
        accelerator.print(f"Resuming from checkpoint {checkpoint.name}")
        accelerator.load_state(str(checkpoint))
        global_step = checkpoint_step(checkpoint)
    initial_global_step = global_step
    first_epoch = global_step // num_update_steps_per_epoch
    resume_batches = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps

    progress_bar = tqdm(
        range(args.max_train_steps),
        initial=initial_global_step,
        desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    size = generator.config.image_size
    models = [wrapper, *prepared_discriminators.values()]
    for epoch in range(first_epoch, num_train_epochs):
        if global_step >= args.max_train_steps:
            break
        for model in models:
            model.train()
        loader = train_dataloader
        if epoch == first_epoch and resume_batches:
            loader = accelerator.skip_first_batches(train_dataloader, resume_batches)
        # Accelerate's loaders pass their own epoch counter to `dataset.set_epoch` when iterated: set it explicitly,
        # so that a resumed run draws the samples of the epoch it resumes in.
        loader.set_epoch(epoch)
        for batch in loader:
            adversarial = len(prepared_discriminators) > 0 and global_step >= args.gan_start_step
            with accelerator.accumulate(*models):
                batch_size, window = batch["frames"].shape[:2]
                real = batch["frames"].flatten(0, 1)
                valid = batch["frame_mask"].flatten()
                landmarks = batch["landmarks"].flatten(0, 1)
                output = wrapper(batch["references"], batch["reference_landmarks"], batch["landmarks"])
                fake = output.frames.float()

                # Generator: reconstruction + adversarial.
                parts = {
                    "l1": frame_mean((fake - real).abs().flatten(1).mean(-1), valid),
                    "ssim": frame_mean(1 - ms_ssim(fake, real), valid),
                    "mouth": frame_mean(weighted_l1(fake, real, mouth_mask(landmarks, size)), valid),
                }
                loss = (
                    args.lambda_l1 * parts["l1"]
                    + args.lambda_ssim * parts["ssim"]
                    + args.lambda_mouth * parts["mouth"]
                )
                if adversarial:
                    matching = []
                    for name, critic in prepared_discriminators.items():
                        images = (
                            torch.cat([real, fake])
                            if name == "frame"
                            else torch.cat([to_clips(real, window), to_clips(fake, window)])
                        )
                        logits, features = frozen_call(accelerator, critic, images)
                        count = real.shape[0] if name == "frame" else batch_size
                        parts[f"g_{name}"] = hinge_generator_loss([x[count:] for x in logits])
                        matching.append(
                            feature_matching_loss([f[:count] for f in features], [f[count:] for f in features])
                        )
                        weight = args.lambda_gan if name == "frame" else args.lambda_temporal_gan
                        loss = loss + weight * parts[f"g_{name}"]
                    parts["feature_matching"] = sum(matching) / len(matching)
                    loss = loss + args.lambda_feature_matching * parts["feature_matching"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(generator_parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                # Discriminators: hinge on real vs. detached generated frames / windows.
                if adversarial:
                    fake_detached = fake.detach()
                    d_loss = 0.0
                    for name, critic in prepared_discriminators.items():
                        if name == "frame":
                            logits, _ = critic(torch.cat([real, fake_detached]))
                            count = real.shape[0]
                        else:
                            logits, _ = critic(torch.cat([to_clips(real, window), to_clips(fake_detached, window)]))
                            count = batch_size
                        parts[f"d_{name}"] = hinge_discriminator_loss(
                            [x[:count] for x in logits], [x[count:] for x in logits]
                        )
                        d_loss = d_loss + parts[f"d_{name}"]
                    accelerator.backward(d_loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(
                            [p for d in prepared_discriminators.values() for p in d.parameters()], args.max_grad_norm
                        )
                    discriminator_optimizer.step()
                    discriminator_optimizer.zero_grad(set_to_none=True)

            if accelerator.sync_gradients:
                progress_bar.update(1)
                global_step += 1
                logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0]}
                logs.update({f"loss/{k}": float(v.detach().item()) for k, v in parts.items()})
                accelerator.log(logs, step=global_step)
                progress_bar.set_postfix(loss=f"{logs['loss']:.4f}", l1=f"{logs['loss/l1']:.4f}")
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit, logger)
                if val_dataset is not None and global_step % args.validation_steps == 0:
                    generator_module = accelerator.unwrap_model(wrapper).generator
                    log_validation(generator_module, args, accelerator, global_step, val_dataset, val_clip)
            if global_step >= args.max_train_steps:
                break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(wrapper).generator
        trained.save_pretrained(args.output_dir)
        if val_dataset is not None and global_step % args.validation_steps != 0:
            log_validation(trained, args, accelerator, global_step, val_dataset, val_clip)
        if args.composite_output_dir:
            template = args.composite_template or (
                base_model if model_type_of(base_model) == "emotalk" else default_base_model()
            )
            path = write_composite(trained, "generator", template, args.composite_output_dir)
            logger.info(f"wrote the composite pipeline folder {path}")
        if args.push_to_hub:
            push_folder_to_hub(args.composite_output_dir or args.output_dir, args.hub_model_id, args.hub_token, logger)
        logger.info(f"saved the fine-tuned stage 2 to {args.output_dir} (step {global_step})")
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
