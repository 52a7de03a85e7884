"""Fine-tune an InstructPix2Pix U-Net as a colorizer (An et al. 2023), on the shared trainer (common/training.py).

Objective (Brooks et al. 2023, "InstructPix2Pix", Sec. 3.3): the U-Net sees, concatenated on channels,
the noisy latent of the EDITED image (here: the color image; `latent_dist.sample() * scaling_factor`)
and the latent of the ORIGINAL image (here: the grayscale image; `latent_dist.mode()`, unscaled), and
is trained with the epsilon-prediction MSE at t ~ U{0, ..., T-1} under the DDPM noise schedule of the
model. Conditioning dropout (Sec. 3.4): 5% of the examples lose only the text (empty-prompt
embedding), 5% only the image (zero latent), 5% both, so classifier-free guidance over image and text
works at inference. Text encoder and VAE stay frozen; only the U-Net trains.

Defaults of An et al. (2023), "Enhancing Visual Realism: Fine-Tuning InstructPix2Pix for Advanced
Image Colorization" (experimental setup): 256 px, learning rate 5e-6, batch size 4 with gradient
accumulation 4, EMA of the U-Net weights. The step budget (`max_steps`), warm-up, EMA decay 0.9999,
AdamW betas/weight decay and gradient clipping are our defaults (common InstructPix2Pix fine-tuning
values), not numbers from the paper.

Usage (from the repository root; scales with `accelerate launch -m models.colorize.train ...`):

    python -m models.colorize.train --model PATH --data FOLDER --out OUTDIR [--max-steps N] [...]

Notes: an accumulation window may span the end of an epoch (every optimizer step averages grad_accum
micro-batches). Several processes on CPUs (DDP over gloo) work with `torchrun --nproc_per_node N -m
models.colorize.train ...`. On a CPU shared with other jobs, intra-op threads wait on each other at every op;
OMP_NUM_THREADS=1 can then be far faster. The random draws of the loss (latent sample, noise, timesteps,
dropout) come from the global generator, seeded per process and restored on resume (the shipped
proving-ground colorizer was trained so).

Output: OUTDIR/final (a diffusers folder whose U-Net holds the EMA weights; VAE, text encoder, tokenizer and
scheduler config from the input model) and OUTDIR/unet_raw (the raw, non-EMA U-Net), rewritten at every
checkpoint; OUTDIR/checkpoint-N for --resume; OUTDIR/log.csv (step, loss, lr, grad_norm).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if (
    __name__ == "__main__"
):  # `python -m models.colorize.train`: run inside the pack (scripts/papernodes_bootstrap.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError, WeightsFormatError
from ..common.loading import SDComponents, load_model_fresh
from ..common.saving import save_diffusers_folder
from ..common.training import (
    MIXED_PRECISION,
    Callbacks,
    LoopSettings,
    Run,
    TextEmbeddingCache,
    TrainingMethod,
    TrainState,
    atomic_write_dir,
    fit,
    make_noise_scheduler,
    warmup_then_constant,
)
from .data import ColorFolderDataset, TripletDataset

MODEL_PUBLISHED = ("an InstructPix2Pix model (e.g. timbrooks/instruct-pix2pix) or an SD1.x text-to-image model, "
                   "as a diffusers folder or single .safetensors file")  # fmt: skip


@dataclass
class TrainConfig:
    """Options of the colorization fine-tuning (one command-line flag each); see the module docstring for
    where the defaults come from."""

    model: str = option(help="InstructPix2Pix (or SD 1.x) diffusers folder or single file")
    data: str = option(help="folder of color images (or of triplets with --triplets)")
    out: str = option(help="output folder (checkpoints, log.csv, final/)")
    resolution: int = option(256, "training size in px (paper: 256)")
    lr: float = option(5e-6, "AdamW learning rate (paper: 5e-6)")
    batch_size: int = option(4, "per-process micro-batch size (paper: 4)")
    grad_accum: int = option(4, "micro-batches per optimizer step (paper: 4)")
    max_steps: int = option(2000, "optimizer steps")
    warmup_steps: int = option(0, "linear LR warm-up steps, then constant")
    ema_decay: float = option(0.9999, "EMA decay of the U-Net weights (exported); 0 disables")
    mixed_precision: str = option("no", "autocast precision (fp16/bf16 need a GPU)", choices=MIXED_PRECISION)
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, slower")
    seed: int = option(0, "seed of the data order and of every random draw")
    save_every: int = option(500, "checkpoint + export every N optimizer steps; 0 = at the end only")
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all")
    resume: str | None = option(
        None, "checkpoint-N folder, 'latest' (newest in --out) or 'auto' (latest if any)"
    )
    triplets: bool = option(False, "the data folder has metadata.jsonl (gray/color/instruction)")
    num_workers: int = option(0, "data loader worker processes")
    random_flip: bool = option(False, "random horizontal flips")
    cond_dropout: float = option(
        0.05, "probability of each of: text dropped, image dropped, both (paper: 0.05)"
    )
    weight_decay: float = option(1e-2, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables")
    cpu: bool = option(False, "train on the CPU even where CUDA is available")

    def validate(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError("mixed_precision", f"one of {MIXED_PRECISION}", repr(self.mixed_precision))
        if not 0 <= self.cond_dropout <= 1 / 3:
            raise InputError(
                "cond_dropout", "a value in [0, 1/3] (applied three times)", str(self.cond_dropout)
            )
        if not 0 <= self.ema_decay < 1:
            raise InputError("ema_decay", "a value in [0, 1)", str(self.ema_decay))
        for name in ("resolution", "batch_size", "grad_accum", "max_steps"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        for name in ("warmup_steps", "save_every", "keep_checkpoints", "num_workers"):
            if getattr(self, name) < 0:
                raise InputError(name, "0 or more", str(getattr(self, name)))
        if self.resolution % 8:
            raise InputError("resolution", "a multiple of 8 (VAE downsampling)", str(self.resolution))


# ----------------------------------------------------------------------------------------------------
# Model pieces


def expand_conv_in_for_ip2p(unet: torch.nn.Module) -> torch.nn.Module:
    """Give a 4-channel (text-to-image) U-Net the 8 input channels of InstructPix2Pix, in place.

    The 4 extra input channels (the original-image latent) get zero weights (Brooks et al. 2023,
    Sec. 3.3), so the expanded model computes exactly what the original one did until training
    changes those weights. An 8-channel U-Net is returned unchanged.
    """
    conv = unet.conv_in
    if conv.in_channels == 8:
        return unet
    if conv.in_channels != 4:
        raise WeightsFormatError(f"expected a U-Net with 4 or 8 input channels, got {conv.in_channels}")
    new = torch.nn.Conv2d(
        8,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :4].copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.requires_grad_(conv.weight.requires_grad)
    unet.conv_in = new
    unet.register_to_config(in_channels=8)
    return unet


def conditioning_dropout_masks(
    batch_size: int,
    prob: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which examples lose their text / their image (Brooks et al. 2023, Sec. 3.4).

    One uniform draw u per example: u < p drops only the text, p <= u < 2p both, 2p <= u < 3p only the
    image; so each of the three cases has probability p and 1 - 3p keep both conditions.
    """
    u = torch.rand(
        batch_size, generator=generator, device=generator.device if generator is not None else device
    )
    u = u.to(device) if device is not None else u
    drop_text = u < 2 * prob
    drop_image = (u >= prob) & (u < 3 * prob)
    return drop_text, drop_image


def apply_conditioning_dropout(
    text_emb: torch.Tensor,
    image_latents: torch.Tensor,
    null_emb: torch.Tensor,
    drop_text: torch.Tensor,
    drop_image: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dropped text -> the empty-prompt embedding; dropped image -> a zero latent."""
    null = null_emb.to(text_emb.dtype).expand_as(text_emb)
    text_emb = torch.where(drop_text[:, None, None], null, text_emb)
    image_latents = image_latents * (~drop_image).to(image_latents.dtype)[:, None, None, None]
    return text_emb, image_latents


def ip2p_loss(
    unet,
    vae,
    noise_scheduler,
    color: torch.Tensor,
    gray: torch.Tensor,
    text_emb: torch.Tensor,
    null_emb: torch.Tensor,
    cond_dropout: float = 0.05,
    generator: torch.Generator | None = None,
    vae_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The InstructPix2Pix training loss for one batch (Brooks et al. 2023, Sec. 3.3/3.4).

    `color`/`gray`: (B, 3, H, W) in [-1, 1]; `text_emb`: (B, L, D); `null_emb`: (L, D) or (1, L, D).
    With a `generator`, every random draw (latent sample, noise, timesteps, dropout) comes from it.
    """
    from diffusers.utils.torch_utils import randn_tensor

    device = text_emb.device
    with torch.no_grad():
        dist_edit = vae.encode(color.to(device, vae_dtype)).latent_dist
        latents = (dist_edit.sample(generator=generator) * vae.config.scaling_factor).float()
        image_latents = vae.encode(gray.to(device, vae_dtype)).latent_dist.mode().float()
    b = latents.shape[0]
    noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    gen_device = generator.device if generator is not None else device
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (b,), generator=generator, device=gen_device
    ).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    text_emb = text_emb.float()
    if cond_dropout > 0:
        drop_text, drop_image = conditioning_dropout_masks(b, cond_dropout, generator, device)
        text_emb, image_latents = apply_conditioning_dropout(
            text_emb, image_latents, null_emb, drop_text, drop_image
        )
    pred = unet(torch.cat([noisy, image_latents], dim=1), timesteps, encoder_hidden_states=text_emb).sample
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


# ----------------------------------------------------------------------------------------------------
# Training


class ColorizeTraining(TrainingMethod):
    """The colorizer's set-up, loss and export for the shared loop."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"
        self.batch_size = cfg.batch_size
        self._originals: tuple[torch.nn.Module, torch.nn.Module] | None = None

    def setup(self, run: Run) -> None:
        cfg, device, dtype = self.cfg, run.device, run.weight_dtype
        self.run = run
        comps = self.comps = load_model_fresh(cfg.model, MODEL_PUBLISHED)
        unet = expand_conv_in_for_ip2p(comps.unet)
        unet.requires_grad_(True).train()
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        for m in (comps.vae, comps.text_encoder):
            m.requires_grad_(False).eval().to(device)
            if dtype != torch.float32:
                m.to(dtype=dtype)
        dataset_cls = TripletDataset if cfg.triplets else ColorFolderDataset
        self.dataset = dataset_cls(cfg.data, size=cfg.resolution, random_flip=cfg.random_flip, seed=cfg.seed)
        optimizer = torch.optim.AdamW(
            unet.parameters(),
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
            eps=cfg.adam_eps,
        )
        self.lr_scheduler = warmup_then_constant(optimizer, cfg.warmup_steps)
        self.module, self.optimizer = run.accelerator.prepare(unet, optimizer)
        self.unet = run.accelerator.unwrap_model(self.module)
        self.param_names, self.params = map(list, zip(*self.unet.named_parameters(), strict=True))
        self.noise_scheduler = make_noise_scheduler(comps.scheduler_config)
        self.texts = TextEmbeddingCache(comps.tokenizer, comps.text_encoder, device)
        self.null_emb = self.texts([""])[0]

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        # draws from the global generator, not `generator`: see the module docstring
        return ip2p_loss(
            self.module,
            self.comps.vae,
            self.noise_scheduler,
            batch["color"],
            batch["gray"],
            self.texts(list(batch["instruction"])),
            self.null_emb,
            self.cfg.cond_dropout,
            vae_dtype=self.run.weight_dtype,
        )

    def describe(self, state: TrainState) -> str:
        cfg, acc = self.cfg, self.run.accelerator
        return (
            f"training {cfg.model} on {len(self.dataset)} images: {acc.num_processes} process(es) on "
            f"{acc.device}, mixed precision {acc.mixed_precision}, effective batch "
            f"{cfg.batch_size * cfg.grad_accum * acc.num_processes}, steps {state.step}->{cfg.max_steps}"
        )

    def _frozen_originals(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """VAE and text encoder as the input model has them (float32): mixed precision cast the live ones."""
        vae, text_encoder = self.comps.vae, self.comps.text_encoder
        if all(p.dtype == torch.float32 for m in (vae, text_encoder) for p in m.parameters()):
            return vae, text_encoder
        if self._originals is None:
            fresh = load_model_fresh(self.cfg.model, MODEL_PUBLISHED)
            self._originals = (fresh.vae, fresh.text_encoder)
        return self._originals

    def _write_final(self, folder: Path) -> None:
        vae, text_encoder = self._frozen_originals()
        comps = self.comps
        save_diffusers_folder(
            SDComponents(
                self.unet, vae, text_encoder, comps.tokenizer, comps.scheduler_config, source=str(self.out)
            ),
            folder,
        )
        src_tok = Path(self.cfg.model).expanduser() / "tokenizer"
        if src_tok.is_dir() and (src_tok / "vocab.json").is_file():
            for f in src_tok.iterdir():
                if f.is_file():
                    shutil.copy(f, folder / "tokenizer" / f.name)

    def export(self) -> None:
        """OUTDIR/unet_raw (the trained weights) and OUTDIR/final (EMA weights in the U-Net)."""
        atomic_write_dir(
            self.out / "unet_raw", lambda tmp: self.unet.save_pretrained(tmp, safe_serialization=True)
        )
        ema = self.run.ema
        with ema.applied(self.params) if ema is not None else nullcontext():
            atomic_write_dir(self.final, self._write_final)


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Fine-tune; returns OUTDIR/final. `progress(step, total, metrics)` after every optimizer step (metrics:
    loss, lr, grad_norm); `should_stop()` is polled after every micro-batch and ends the run early (a checkpoint
    and OUTDIR/final are still written, so a stopped run can be used or resumed)."""
    config.validate()
    settings = LoopSettings.from_config(config, seed_per_process=True)
    return fit(ColorizeTraining(config), settings, Callbacks(progress, should_stop))


# ----------------------------------------------------------------------------------------------------
# Command line: one flag per TrainConfig field (common/cli.py)

CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.colorize.train",
    description="Fine-tune InstructPix2Pix for colorization (An et al. 2023).",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
