#!/usr/bin/env python
"""Fine-tune EmoTalk stage 1 (audio → emotional 3D landmarks) on a dataset from ``emotalk prepare``.

    accelerate launch training/train_landmarks.py \\
        --dataset_dir data/ --output_dir runs/landmarks \\
        --train_batch_size 8 --max_train_steps 2000 --checkpointing_steps 500 --validation_steps 250

Targets come from the tracked landmarks themselves (``emotalk_training.geometry``): canonical expression
offsets relative to a reference frame of the same clip, head pose relative to it, blink and gaze. Losses:
mouth-weighted landmark L1 (canonical and crop space), velocity L1, pose / gaze / blink L1, emotion
classification where the label is known, and the coordinated visual-emotion contrastive loss (InfoNCE between
the model's audio-emotion embedding and a training-only landmark-sequence emotion encoder).

The output folder is a ``save_pretrained`` folder (``EmoTalkLandmarkModel.from_pretrained(output_dir)``);
``--composite_output_dir`` also writes a complete model for ``pipeline("emotional-talking-face", model=...)``.
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
from emotalk_training.data import LandmarkWindowDataset, select_clips
from emotalk_training.emotion_encoder import LandmarkEmotionEncoder
from emotalk_training.geometry import landmark_targets
from emotalk_training.losses import (
    aperture_l1,
    bilabial_closure_l1,
    emotion_cross_entropy,
    emotion_positives,
    frame_phone_mask,
    info_nce,
    landmark_weights,
    masked_l1,
    phone_cross_entropy,
    velocity_l1,
    vertical_lip_gap,
    weighted_landmark_l1,
)
from emotalk_training.phones import PHONE_IDS, PHONES
from emotalk_training.utils import (
    checkpoint_step,
    default_base_model,
    landmark_plot,
    load_stage,
    model_type_of,
    push_folder_to_hub,
    resolve_checkpoint,
    save_checkpoint,
    save_png,
    tensorboard_writer,
    write_composite,
)
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from modeling_emotalk import EmoTalkLandmarkModel
from modeling_emotalk.landmarks import LIPS, apply_blink, apply_gaze

logger = get_logger(__name__)
BILABIAL_IDS = torch.tensor([PHONE_IDS[phone] for phone in ("B", "P", "M")])  # --lambda_bilabial's phones


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (diffusers' names where they exist)."""
    parser = argparse.ArgumentParser(description="Fine-tune EmoTalk stage 1 (audio → landmarks) with Accelerate.")
    parser.add_argument("--dataset_dir", required=True, help="a folder written by `emotalk prepare`")
    parser.add_argument("--output_dir", default="emotalk-landmarks", help="checkpoints, logs and the final model")
    parser.add_argument(
        "--base_model",
        default=None,
        help="a composite EmoTalk folder or an emotalk_landmark folder to start from (default: the embedded model)",
    )
    parser.add_argument(
        "--composite_output_dir",
        default=None,
        help="also write a complete pipeline folder here (the trained stage 1 + the other parts of the base model)",
    )
    parser.add_argument(
        "--composite_template",
        default=None,
        help="composite folder providing stage 2 for --composite_output_dir (default: --base_model when it is a "
        "composite, else the embedded model)",
    )
    parser.add_argument("--train_split", default="train", help="clips of this split are trained on (default train)")
    parser.add_argument("--window_seconds", type=float, default=2.0, help="audio/landmark window per sample")
    parser.add_argument("--samples_per_epoch", type=int, default=None, help="default: clip frames / window frames")
    parser.add_argument("--freeze_audio_encoder", action="store_true", help="train the decoder and heads only (style)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialization, data order and dropout")
    parser.add_argument("--train_batch_size", type=int, default=8, help="per device")
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--scale_lr", action="store_true", help="multiply the lr by accumulation × batch × processes")
    parser.add_argument(
        "--lr_scheduler",
        default="constant_with_warmup",
        choices=["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"],
    )
    parser.add_argument("--lr_warmup_steps", type=int, default=50)
    parser.add_argument("--adam_beta1", type=float, default=0.9)
    parser.add_argument("--adam_beta2", type=float, default=0.999)
    parser.add_argument("--adam_weight_decay", type=float, default=1e-2)
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
    parser.add_argument("--num_validation_clips", type=int, default=2)
    parser.add_argument("--validation_seconds", type=float, default=4.0)
    # loss weights
    parser.add_argument("--mouth_weight", type=float, default=5.0, help="landmark-loss weight of the lips")
    parser.add_argument("--lambda_landmark", type=float, default=1.0, help="canonical (pose-free) landmarks")
    parser.add_argument("--lambda_relocated", type=float, default=1.0, help="crop-space landmarks after relocation")
    parser.add_argument("--lambda_velocity", type=float, default=1.0)
    parser.add_argument(
        "--lambda_aperture",
        type=float,
        default=0.0,
        help="L1 on the inner-lip aperture (canonical space) and on its 5-frame running minimum: weighs full "
        "closures and wide openings up",
    )
    parser.add_argument(
        "--lambda_bilabial",
        type=float,
        default=0.0,
        help="L1 on the inner-lip aperture's running minimum (--bilabial_window frames) at /p b m/ frames only (the "
        "phone segments of clip_phones.json): asks for the target's full closure at every bilabial; 0 disables it",
    )
    parser.add_argument(
        "--bilabial_window", type=int, default=3, help="odd running-minimum window of --lambda_bilabial (frames)"
    )
    parser.add_argument("--lambda_pose", type=float, default=0.5)
    parser.add_argument("--lambda_gaze", type=float, default=0.1)
    parser.add_argument("--lambda_blink", type=float, default=0.1)
    parser.add_argument("--lambda_emotion", type=float, default=0.01, help="cross-entropy where the label is known")
    parser.add_argument("--lambda_contrastive", type=float, default=0.01, help="audio ↔ landmark emotion InfoNCE")
    parser.add_argument("--lambda_visual_emotion", type=float, default=0.01, help="landmark emotion encoder CE")
    parser.add_argument("--contrastive_temperature", type=float, default=0.1)
    parser.add_argument("--emotion_encoder_hidden_size", type=int, default=128)
    parser.add_argument(
        "--lambda_phone",
        type=float,
        default=0.1,
        help="frame-level phone classification of the audio features (needs clip_phones.json in the dataset; 0 "
        "disables it)",
    )
    parser.add_argument(
        "--init_training_modules",
        default=None,
        help="a previous run's output folder (or its training_modules folder): start the training-only landmark "
        "emotion encoder and phone classifier from its weights instead of at random",
    )
    parser.add_argument(
        "--audio_mask_time_prob",
        type=float,
        default=None,
        help="override the audio encoder's SpecAugment time masking while training (the config's mask_time_prob)",
    )
    # hub
    parser.add_argument("--push_to_hub", action="store_true", help="no-op with a clear message when HF_HUB_OFFLINE=1")
    parser.add_argument("--hub_model_id", default=None)
    parser.add_argument("--hub_token", default=None)
    args = parser.parse_args(input_args)

    env_local_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_local_rank != -1:
        args.local_rank = env_local_rank
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.bilabial_window < 1 or args.bilabial_window % 2 == 0:
        parser.error(f"--bilabial_window must be a positive odd number, got {args.bilabial_window}")
    if args.window_seconds <= 0:
        parser.error(f"--window_seconds must be positive, got {args.window_seconds}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        parser.error(f"--checkpoints_total_limit must be at least 1, got {args.checkpoints_total_limit}")
    return args


def resolve_mixed_precision(requested: str | None) -> str:
    """fp16 needs an accelerator that supports it; on CPU it falls back to fp32 (bf16 works on CPU)."""
    requested = requested or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if requested == "fp16" and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        logging.getLogger(__name__).warning("fp16 mixed precision needs a GPU: training in fp32 instead")
        return "no"
    return requested


def compute_losses(
    model: torch.nn.Module,
    emotion_encoder: torch.nn.Module,
    phone_classifier: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    args: argparse.Namespace,
    fps: float,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
    """The weighted stage-1 loss, its parts, and the model output."""
    landmarks = batch["landmarks"]
    with torch.no_grad():
        targets = landmark_targets(landmarks, batch["reference"])
    output = model(
        batch["input_values"],
        attention_mask=batch["attention_mask"],
        reference_landmarks=targets.reference_canonical,
        emotion=batch["emotion"],
        intensity=batch["intensity"],
        num_frames=landmarks.shape[1],
        fps=fps,
        reference_frame=targets.reference_frame,
    )
    mask = batch["frame_mask"] & output.frame_mask
    expression = output.expression.float()
    predicted = apply_gaze(
        apply_blink(targets.reference_canonical.unsqueeze(1) + expression, output.blink.float()), output.gaze.float()
    )
    head_pose = output.head_pose.float()
    labels, known = batch["emotion"], batch["emotion_known"]
    predicted_gap, target_gap = vertical_lip_gap(predicted), vertical_lip_gap(targets.canonical)
    bilabial = frame_phone_mask(batch["phone_ids"], BILABIAL_IDS, landmarks.shape[1], fps)
    visual_embedding, visual_logits = emotion_encoder(targets.expression, mask)
    parts = {
        "landmark": weighted_landmark_l1(predicted, targets.canonical, mask, weights),
        "relocated": weighted_landmark_l1(output.landmarks.float(), landmarks, mask, weights),
        "velocity": velocity_l1(predicted, targets.canonical, mask) + velocity_l1(head_pose, targets.head_pose, mask),
        "aperture": aperture_l1(predicted_gap, target_gap, mask),
        "bilabial": bilabial_closure_l1(predicted_gap, target_gap, bilabial, mask, args.bilabial_window),
        "pose": masked_l1(head_pose, targets.head_pose, mask),
        "gaze": masked_l1(output.gaze.float(), targets.gaze, mask),
        "blink": masked_l1(output.blink.float(), targets.blink, mask),
        "emotion": emotion_cross_entropy(output.emotion_logits.float(), labels, known),
        "contrastive": info_nce(
            output.emotion_embedding, visual_embedding, emotion_positives(labels, known), args.contrastive_temperature
        ),
        "visual_emotion": emotion_cross_entropy(visual_logits.float(), labels, known),
        "phone": phone_cross_entropy(phone_classifier(output.audio_features), batch["phone_ids"], output.audio_mask),
    }
    loss = sum(getattr(args, f"lambda_{name}") * value for name, value in parts.items())
    return loss, parts, output


def load_training_modules(folder: str, emotion_encoder: torch.nn.Module, phone_classifier: torch.nn.Module) -> None:
    """Initialize the training-only heads from a previous run's ``training_modules`` folder (or its run folder).

    A continuation then starts with trained heads: a fresh phone classifier's first hundreds of steps (its
    cross-entropy starts near ln 40) send large, uninformative gradients into the trained audio encoder.
    """
    root = Path(folder)
    root = root / "training_modules" if (root / "training_modules").is_dir() else root
    for name, module in (("landmark_emotion_encoder", emotion_encoder), ("phone_classifier", phone_classifier)):
        module.load_state_dict(load_file(str(root / f"{name}.safetensors")))


def validation_clips(dataset_dir: str, split: str | None, count: int) -> tuple[str | None, list[dict]]:
    """The clips validation runs on: ``split``, or the first of test / validation / train that has clips."""
    from emotalk_training.prepare import load_index

    index = load_index(dataset_dir)
    for candidate in [split] if split else ["test", "validation", "train"]:
        clips = select_clips(index, candidate, 2, True)
        if clips:
            return candidate, clips[:count]
    return None, []


@torch.no_grad()
def log_validation(
    model: EmoTalkLandmarkModel,
    args: argparse.Namespace,
    accelerator: Accelerator,
    step: int,
    dataset: LandmarkWindowDataset,
    clips: list[dict],
) -> dict[str, float]:
    """Run stage 1 on the first seconds of each validation clip (the clip's first frame as the photo).

    Logs mouth landmark distance (pixels at 256², centred per frame like M-LMD), landmark L1, the correlation of
    predicted and real lip aperture over time, and a landmark plot per clip.
    """
    was_training = model.training
    model.eval()
    metrics: dict[str, list[float]] = {"mouth_lmd": [], "landmark_l1": [], "aperture_corr": []}
    writer = tensorboard_writer(accelerator)
    for number, clip in enumerate(clips):
        reference = int(dataset.valid_frames(clip)[0])
        sample = dataset.window(clip, 0, reference)
        batch = {k: v[None].to(accelerator.device) for k, v in sample.items()}
        targets = landmark_targets(batch["landmarks"], batch["reference"])
        with accelerator.autocast():
            output = model(
                batch["input_values"],
                attention_mask=batch["attention_mask"],
                reference_landmarks=targets.reference_canonical,
                emotion=batch["emotion"],
                intensity=batch["intensity"],
                num_frames=batch["landmarks"].shape[1],
                fps=dataset.fps,
                reference_frame=targets.reference_frame,
            )
        mask = (batch["frame_mask"] & output.frame_mask)[0].cpu().numpy()
        predicted = output.landmarks[0].float().cpu().numpy()[mask]
        target = batch["landmarks"][0].cpu().numpy()[mask]
        if len(target) < 2:
            continue
        to_pixels = 128.0  # normalized crop units → pixels of a 256² crop
        centred = lambda x: x[..., :2] - x[..., :2].mean(axis=1, keepdims=True)  # noqa: E731
        lips = list(LIPS)
        metrics["mouth_lmd"].append(
            float(np.linalg.norm(centred(predicted)[:, lips] - centred(target)[:, lips], axis=-1).mean() * to_pixels)
        )
        metrics["landmark_l1"].append(float(np.abs(predicted[..., :2] - target[..., :2]).mean() * to_pixels))
        pred_aperture = vertical_lip_gap(torch.from_numpy(predicted)).numpy()
        true_aperture = vertical_lip_gap(torch.from_numpy(target)).numpy()
        if pred_aperture.std() > 1e-8 and true_aperture.std() > 1e-8:
            metrics["aperture_corr"].append(float(np.corrcoef(pred_aperture, true_aperture)[0, 1]))
        times = sorted({0, len(target) // 3, 2 * len(target) // 3, len(target) - 1})
        figure = landmark_plot(predicted, target, times, curves={"lip aperture": (pred_aperture, true_aperture)})
        save_png(figure, Path(args.output_dir) / "validation" / f"step-{step:06d}-clip{number}.png")
        if writer is not None:
            writer.add_image(f"validation/landmarks_{number}", figure, step, dataformats="HWC")
    if was_training:
        model.train()
    summary = {f"val/{k}": float(np.mean(v)) for k, v in metrics.items() if v}
    if summary:
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
    model = load_stage(base_model, "landmark")
    model.train()
    if args.freeze_audio_encoder:
        model.audio_encoder.requires_grad_(False)
        # Wav2Vec2's feature encoder otherwise marks its output as requiring grad in training mode, which drags
        # the whole frozen encoder into the backward pass.
        model.audio_encoder.freeze_feature_encoder()
    if args.audio_mask_time_prob is not None:
        model.audio_encoder.config.mask_time_prob = args.audio_mask_time_prob
    config = model.config
    emotion_encoder = LandmarkEmotionEncoder(
        config.emotion_embedding_dim, config.num_emotions, hidden_size=args.emotion_encoder_hidden_size
    )
    # training-only head: which phone is being spoken at each audio feature (targets from clip_phones.json)
    phone_classifier = torch.nn.Linear(config.audio_config.hidden_size, len(PHONES))
    if args.init_training_modules:
        load_training_modules(args.init_training_modules, emotion_encoder, phone_classifier)
        logger.info(f"training-only heads initialized from {args.init_training_modules}")

    def save_model_hook(models, weights, output_dir):
        for i, wrapped in enumerate(models):
            unwrapped = accelerator.unwrap_model(wrapped)
            if isinstance(unwrapped, EmoTalkLandmarkModel):
                if accelerator.is_main_process:
                    unwrapped.save_pretrained(os.path.join(output_dir, "landmark_model"))
                weights.pop(i)  # the emotion encoder stays in accelerate's own format
                break

    def load_model_hook(models, input_dir):
        for i, wrapped in enumerate(models):
            unwrapped = accelerator.unwrap_model(wrapped)
            if isinstance(unwrapped, EmoTalkLandmarkModel):
                loaded = EmoTalkLandmarkModel.from_pretrained(os.path.join(input_dir, "landmark_model"))
                unwrapped.load_state_dict(loaded.state_dict())
                del loaded
                models.pop(i)
                break

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    if args.scale_lr:
        args.learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    training_modules = (model, emotion_encoder, phone_classifier)
    parameters = [p for module in training_modules for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )

    train_dataset = LandmarkWindowDataset(
        args.dataset_dir,
        window_frames=max(2, round(args.window_seconds * config.fps)),
        split=args.train_split,
        seed=args.seed,
        samples_per_epoch=args.samples_per_epoch,
    )
    if abs(train_dataset.fps - config.fps) > 1e-6:
        logger.warning(f"the dataset is at {train_dataset.fps} fps and the model's default is {config.fps} fps")
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
    model, emotion_encoder, phone_classifier, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, emotion_encoder, phone_classifier, optimizer, train_dataloader, lr_scheduler
    )
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    if accelerator.is_main_process:
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("train_landmarks", config=tracker_config)

    validation_split, val_clips = (None, [])
    val_dataset = None
    if args.validation_steps > 0 and accelerator.is_main_process:
        validation_split, val_clips = validation_clips(
            args.dataset_dir, args.validation_split, args.num_validation_clips
        )
        if val_clips:
            val_dataset = LandmarkWindowDataset(
                args.dataset_dir,
                window_frames=max(2, round(args.validation_seconds * train_dataset.fps)),
                split=validation_split,
                seed=args.seed,
            )

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training (stage 1: audio → landmarks) *****")
    logger.info(f"  Clips = {len(train_dataset.clips)}, samples per epoch = {len(train_dataset)}")
    logger.info(f"  Num epochs = {num_train_epochs}, batch size per device = {args.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    logger.info(f"  Gradient accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {args.max_train_steps}")
    logger.info(f"  Validation clips = {len(val_clips)} ({validation_split})")

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
    weights = landmark_weights(args.mouth_weight, accelerator.device)
    fps = train_dataset.fps
    for epoch in range(first_epoch, num_train_epochs):
        if global_step >= args.max_train_steps:
            break
        model.train()
        emotion_encoder.train()
        phone_classifier.train()
        loader = train_dataloader
        if epoch == first_epoch and resume_batches:
            loader = accelerator.skip_first_batches(train_dataloader, resume_batches)
        # Accelerate's loaders pass their own epoch counter to `dataset.set_epoch` when iterated: set it explicitly,
        # so that a resumed run draws the samples of the epoch it resumes in.
        loader.set_epoch(epoch)
        for batch in loader:
            with accelerator.accumulate(model, emotion_encoder, phone_classifier):
                loss, parts, _ = compute_losses(model, emotion_encoder, phone_classifier, batch, args, fps, weights)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

            if accelerator.sync_gradients:
                progress_bar.update(1)
                global_step += 1
                logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0]}
                logs.update({f"loss/{k}": v.detach().item() for k, v in parts.items()})
                accelerator.log(logs, step=global_step)
                progress_bar.set_postfix(loss=f"{logs['loss']:.4f}")
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit, logger)
                if val_dataset is not None and global_step % args.validation_steps == 0:
                    log_validation(
                        accelerator.unwrap_model(model), args, accelerator, global_step, val_dataset, val_clips
                    )
            if global_step >= args.max_train_steps:
                break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        trained.save_pretrained(args.output_dir)
        modules_dir = Path(args.output_dir) / "training_modules"
        modules_dir.mkdir(exist_ok=True)
        for name, module in (("landmark_emotion_encoder", emotion_encoder), ("phone_classifier", phone_classifier)):
            state = accelerator.unwrap_model(module).state_dict()
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(modules_dir / f"{name}.safetensors")
            )
        if val_dataset is not None and global_step % args.validation_steps != 0:
            log_validation(trained, args, accelerator, global_step, val_dataset, val_clips)
        if args.composite_output_dir:
            template = args.composite_template or (
                base_model if model_type_of(base_model) == "emotalk" else default_base_model()
            )
            path = write_composite(trained, "landmark", template, args.composite_output_dir)
            logger.info(f"wrote the composite pipeline folder {path}")
        if args.push_to_hub:
            push_folder_to_hub(args.composite_output_dir or args.output_dir, args.hub_model_id, args.hub_token, logger)
        logger.info(f"saved the fine-tuned stage 1 to {args.output_dir} (step {global_step})")
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
