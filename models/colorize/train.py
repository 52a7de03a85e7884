"""Fine-tune an InstructPix2Pix U-Net as a colorizer (An et al. 2023), built on accelerate.

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

Notes: accelerate ends an accumulation window at the end of each epoch, so with fewer images than
batch x grad-accum x processes a step averages fewer micro-batches. Several processes on CPUs (DDP over
gloo) work with `torchrun --nproc_per_node N -m models.colorize.train ...`. On a CPU shared with other
jobs, intra-op threads wait on each other at every op; OMP_NUM_THREADS=1 can then be far faster.

Output: OUTDIR/final (a diffusers folder whose U-Net holds the EMA weights; VAE, text encoder,
tokenizer and scheduler config from the input model), OUTDIR/unet_raw (the raw, non-EMA U-Net),
OUTDIR/checkpoint-N (accelerate `save_state` folders for --resume), OUTDIR/log.csv (step, loss, lr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from ..common.loading import SDComponents, load_diffusers_folder, load_single_file
from ..common.saving import save_diffusers_folder
from ..common.schedulers import scheduler_of_class
from ..common.training_log import open_csv_log
from .data import ColorFolderDataset, TripletDataset

MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """Options of the colorization fine-tuning; see the module docstring for where defaults come from."""

    model: str
    data: str
    out: str
    resolution: int = 256  # An et al. 2023
    lr: float = 5e-6  # An et al. 2023
    batch_size: int = 4  # An et al. 2023 (per process)
    grad_accum: int = 4  # An et al. 2023
    max_steps: int = 2000  # optimizer steps; ours
    warmup_steps: int = 0  # constant LR after an optional linear warm-up
    ema_decay: float = 0.9999  # EMA as in An et al. 2023 / Brooks et al. 2023; 0 disables EMA
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    save_every: int = 500  # checkpoint-N every N optimizer steps (and at the end); 0 = never
    resume: str | None = None  # a checkpoint-N folder, or "latest" (newest in `out`)
    triplets: bool = False  # data folder has metadata.jsonl (TripletDataset)
    num_workers: int = 0
    random_flip: bool = False
    cond_dropout: float = 0.05  # Brooks et al. 2023, Sec. 3.4: 5% text, 5% image, 5% both
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping

    def validate(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        if not 0 <= self.cond_dropout <= 1 / 3:
            raise ValueError(
                f"cond_dropout must be in [0, 1/3] (it is applied three times), got {self.cond_dropout}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("resolution", "batch_size", "grad_accum", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 (VAE downsampling), got {self.resolution}")


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
        raise ValueError(f"expected a U-Net with 4 or 8 input channels, got {conv.in_channels}")
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


def make_noise_scheduler(scheduler_config: dict):
    """The model's training noise schedule as a DDPMScheduler (only schedule keys are taken over)."""
    return scheduler_of_class("DDPMScheduler", scheduler_config)


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


class TextEmbeddingCache:
    """CLIP embeddings of instructions, each distinct string encoded once (the text encoder is frozen).

    Kept on the CPU in float32, least-recently-used entries evicted beyond `max_entries`.
    """

    def __init__(self, tokenizer, text_encoder, device, max_entries: int = 2048):
        self.tokenizer, self.text_encoder, self.device = tokenizer, text_encoder, torch.device(device)
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0].float().cpu()

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            for p, emb in zip(missing, self._encode(missing)):
                self._cache[p] = emb
        out = []
        for p in prompts:
            self._cache.move_to_end(p)
            out.append(self._cache[p])
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return torch.stack(out).to(self.device)

    def __len__(self) -> int:
        return len(self._cache)


class EMA:
    """Exponential moving average of parameters (float32 shadow copies on the parameters' device).

    decay_n = min(decay, (1 + n) / (10 + n)) after n updates: the usual warm-up, so the average of a
    short run is not stuck at the initial weights. `state_dict`/`load_state_dict` make it resumable.
    """

    def __init__(self, params, decay: float = 0.9999):
        self.decay, self.num_updates = float(decay), 0
        self.shadow = [p.detach().float().clone() for p in params]

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def step(self, params) -> None:
        weight = 1.0 - self.current_decay()
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach().float(), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, params) -> None:
        for s, p in zip(self.shadow, params):
            p.copy_(s.to(p.dtype))

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": [s.cpu() for s in self.shadow],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("EMA state does not match the model (different number of parameters)")
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        for s, v in zip(self.shadow, state["shadow"]):
            s.copy_(v)


class TrainProgress:
    """Where training is: optimizer step, epoch, micro-batches consumed in that epoch (checkpointed)."""

    def __init__(self):
        self.step = self.epoch = self.batch_in_epoch = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.epoch, self.batch_in_epoch = (
            int(state[k]) for k in ("step", "epoch", "batch_in_epoch")
        )


class EpochShuffleSampler(Sampler[int]):
    """A permutation of the dataset seeded by (seed, epoch): reproducible and resumable."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


# ----------------------------------------------------------------------------------------------------
# Training


def load_model_fresh(path: str | Path) -> SDComponents:
    """The input model as modules of our own: training changes the U-Net in place, so the shared loader's
    cache (`load_components`) must not hand out the same objects to anyone else."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Model {path} not found (expected a diffusers folder or a .safetensors file)"
        )
    return load_diffusers_folder(path) if path.is_dir() else load_single_file(path)


def find_latest_checkpoint(out: Path) -> Path | None:
    ckpts = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-", 1)[1])) if ckpts else None


def _make_accelerator(cfg: TrainConfig, out: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    world = max(int(os.environ.get(k, "1") or 1) for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
    if world == 1:
        # A single process may train several times (tests, ComfyUI): accelerate keeps its settings in
        # process-wide singletons and refuses a different mixed precision, so start them afresh.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    # Several processes on a machine without CUDA (torchrun / accelerate launch on CPUs): DDP over gloo.
    cpu = world > 1 and not torch.cuda.is_available()
    return Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=cpu,
        project_config=ProjectConfiguration(project_dir=str(out)),
    )


def _save_final(accelerator, unet, ema: EMA | None, comps: SDComponents, cfg: TrainConfig, out: Path) -> Path:
    raw = accelerator.unwrap_model(unet)
    raw.save_pretrained(out / "unet_raw", safe_serialization=True)
    if ema is not None:
        ema.copy_to(raw.parameters())
    vae, text_encoder = comps.vae, comps.text_encoder
    if any(p.dtype != torch.float32 for p in list(vae.parameters()) + list(text_encoder.parameters())):
        fresh = load_model_fresh(cfg.model)  # frozen parts were cast for mixed precision: save the originals
        vae, text_encoder = fresh.vae, fresh.text_encoder
    final_comps = SDComponents(
        raw, vae, text_encoder, comps.tokenizer, comps.scheduler_config, source=str(out)
    )
    tmp, final = out / "final.partial", out / "final"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_diffusers_folder(final_comps, tmp)
    src_tok = Path(cfg.model) / "tokenizer"
    if src_tok.is_dir() and (src_tok / "vocab.json").is_file():
        for f in src_tok.iterdir():
            if f.is_file():
                shutil.copy(f, tmp / "tokenizer" / f.name)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def train(
    config: TrainConfig,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Fine-tune; returns OUTDIR/final. `progress(step, total, loss)` after every optimizer step;
    `should_stop()` is polled after every micro-batch and ends the run early (a checkpoint and
    OUTDIR/final are still written, so a stopped run can be used or resumed)."""
    from accelerate.utils import set_seed

    cfg = config
    cfg.validate()
    out = Path(cfg.out).expanduser()
    accelerator = _make_accelerator(cfg, out)
    is_main = accelerator.is_main_process
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    set_seed(cfg.seed, device_specific=True)

    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    device = accelerator.device

    comps = load_model_fresh(cfg.model)
    unet = expand_conv_in_for_ip2p(comps.unet)
    unet.requires_grad_(True).train()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    vae, text_encoder = comps.vae, comps.text_encoder
    for m in (vae, text_encoder):
        m.requires_grad_(False).eval().to(device)
        if weight_dtype != torch.float32:
            m.to(dtype=weight_dtype)

    dataset_cls = TripletDataset if cfg.triplets else ColorFolderDataset
    dataset = dataset_cls(cfg.data, size=cfg.resolution, random_flip=cfg.random_flip, seed=cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=EpochShuffleSampler(len(dataset), cfg.seed),
        num_workers=cfg.num_workers,
        drop_last=False,
        pin_memory=device.type == "cuda",
    )

    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
        eps=cfg.adam_eps,
    )
    # accelerate steps a prepared scheduler once per process per optimizer step, hence the factor.
    warmup = cfg.warmup_steps * accelerator.num_processes
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0
    )

    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    params = list(accelerator.unwrap_model(unet).parameters())
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = TrainProgress()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    last_saved = -1
    if cfg.resume:
        ckpt = find_latest_checkpoint(out) if cfg.resume == "latest" else Path(cfg.resume).expanduser()
        if ckpt is None or not ckpt.is_dir():
            raise FileNotFoundError(f"No checkpoint to resume from: {cfg.resume} (looked in {out})")
        accelerator.load_state(str(ckpt))
        last_saved = state.step
        if is_main:
            print(f"resumed from {ckpt} at step {state.step}", flush=True)

    noise_scheduler = make_noise_scheduler(comps.scheduler_config)
    texts = TextEmbeddingCache(comps.tokenizer, text_encoder, device)
    null_emb = texts([""])[0]

    if is_main:
        print(
            f"training {cfg.model} on {len(dataset)} images: {accelerator.num_processes} process(es) on "
            f"{device}, mixed precision {accelerator.mixed_precision}, effective batch "
            f"{cfg.batch_size * cfg.grad_accum * accelerator.num_processes}, {cfg.max_steps} steps",
            flush=True,
        )

    log_path = out / "log.csv"
    log_file = writer = None
    if is_main:
        log_file, writer = open_csv_log(log_path, bool(cfg.resume), ["step", "loss", "lr", "elapsed_s"])

    def save_checkpoint() -> None:
        path = out / f"checkpoint-{state.step}"
        accelerator.save_state(str(path))
        if is_main:
            (path / "trainer_state.json").write_text(json.dumps(state.state_dict()))

    total, start, stopped = cfg.max_steps, time.time(), False
    micro_losses: list[torch.Tensor] = []
    try:
        while state.step < total and not stopped:
            loader.set_epoch(state.epoch)
            dataset.set_epoch(state.epoch)
            batches = (
                accelerator.skip_first_batches(loader, state.batch_in_epoch)
                if state.batch_in_epoch
                else loader
            )
            for batch in batches:
                state.batch_in_epoch += 1
                with accelerator.accumulate(unet):
                    loss = ip2p_loss(
                        unet,
                        vae,
                        noise_scheduler,
                        batch["color"],
                        batch["gray"],
                        texts(list(batch["instruction"])),
                        null_emb,
                        cfg.cond_dropout,
                        vae_dtype=weight_dtype,
                    )
                    accelerator.backward(loss)
                    lr = optimizer.param_groups[0][
                        "lr"
                    ]  # the rate this step uses (before the scheduler moves)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(unet.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                micro_losses.append(loss.detach())
                if accelerator.sync_gradients:
                    if ema is not None:
                        ema.step(params)
                    state.step += 1
                    step_loss = accelerator.gather(torch.stack(micro_losses).mean()[None]).mean().item()
                    micro_losses.clear()
                    if is_main:
                        elapsed = time.time() - start
                        print(
                            f"step {state.step}/{total} loss {step_loss:.6f} lr {lr:.3e} ({elapsed:.1f}s)",
                            flush=True,
                        )
                        writer.writerow([state.step, f"{step_loss:.6f}", f"{lr:.6e}", f"{elapsed:.2f}"])
                        log_file.flush()
                    if progress is not None:
                        progress(state.step, total, step_loss)
                    if cfg.save_every and state.step % cfg.save_every == 0:
                        save_checkpoint()
                        last_saved = state.step
                    if state.step >= total:
                        break
                if should_stop is not None and should_stop():
                    # un-synced micro-batches lose their gradients: redo them after a resume
                    state.batch_in_epoch -= len(micro_losses)
                    micro_losses.clear()
                    optimizer.zero_grad(set_to_none=True)
                    stopped = True
                    if is_main:
                        print(f"stopped at step {state.step}", flush=True)
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
        if cfg.save_every and last_saved != state.step:
            save_checkpoint()
    finally:
        if log_file is not None:
            log_file.close()

    accelerator.wait_for_everyone()
    final = out / "final"
    if is_main:
        final = _save_final(accelerator, unet, ema, comps, cfg, out)
        print(f"saved {final}", flush=True)
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return final


# ----------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(model="", data="", out="")
    p = argparse.ArgumentParser(
        prog="python -m models.colorize.train",
        description="Fine-tune InstructPix2Pix for colorization (An et al. 2023).",
    )
    p.add_argument(
        "--model", required=True, help="InstructPix2Pix (or SD 1.x) diffusers folder or single file"
    )
    p.add_argument("--data", required=True, help="folder of color images (or of triplets with --triplets)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resolution", type=int, default=d.resolution, help="training size in px (paper: 256)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (paper: 5e-6)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per-process batch size (paper: 4)")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation (paper: 4)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps")
    p.add_argument(
        "--warmup-steps", type=int, default=d.warmup_steps, help="linear LR warm-up, then constant"
    )
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA decay of the U-Net; 0 disables")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint every N steps; 0 = never")
    p.add_argument("--resume", default=None, help="checkpoint-N folder saved by this command, or 'latest'")
    p.add_argument(
        "--triplets", action="store_true", help="data folder has metadata.jsonl (gray/color/instruction)"
    )
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--random-flip", action="store_true", help="random horizontal flips")
    p.add_argument(
        "--cond-dropout",
        type=float,
        default=d.cond_dropout,
        help="probability of each of: text dropped, image dropped, both (InstructPix2Pix: 0.05)",
    )
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="0 disables clipping")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        resolution=args.resolution,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        save_every=args.save_every,
        resume=args.resume,
        triplets=args.triplets,
        num_workers=args.num_workers,
        random_flip=args.random_flip,
        cond_dropout=args.cond_dropout,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    final = train(config_from_args(args))
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
