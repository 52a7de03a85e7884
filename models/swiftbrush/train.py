"""SwiftBrush distillation trainer (Nguyen & Tran 2023, arXiv 2312.05239), built on accelerate.

Image-free: the only data is a text file of prompts. Per batch (of prompts):
1. Student step. z ~ N(0, I); the student (a full copy of the teacher's U-Net, fully trained) predicts
   eps at T = 999 and x0 = (z - sqrt(1 - a_T) eps) / sqrt(a_T). With t ~ U[20, 980] and x_t the noised
   x0, the frozen teacher and the LoRA teacher (same U-Net, LoRA on) both predict with CFG (scale 4.5)
   against the empty prompt; g = nan_to_num((1 - a_t)(eps_teacher - eps_lora)) and the student is
   updated on 0.5 * MSE(x0, stopgrad(x0 - g)) (vsd.py).
2. LoRA step. The LoRA teacher (rank 64, alpha 108, to_q/to_v of every attention layer) learns the
   ordinary denoising loss on the student's DETACHED x0 of the same batch: t ~ U[0, 1000), prompt
   dropped to "" 10 % of the time, loss MSE(sqrt(a_t) eps_hat, sqrt(a_t) eps).
Adam (no weight decay), constant learning rates 1e-6 (student) and 1e-3 (LoRA), gradient clipping 1.0 on
each, EMA of the student, batch 16 per process: the paper's settings. Our choices where the paper gives
none: EMA decay 0.999 (with the usual (1+n)/(10+n) warm-up), 20000 steps by default, prompts drawn
uniformly with replacement, resolution 512 (SD2.1-base's).

Usage (from the repository root; scales with `accelerate launch -m models.swiftbrush.train ...`):

    python -m models.swiftbrush.train --teacher PATH --prompts prompts.txt --out OUTDIR [...]

Output: OUTDIR/final (or --final-dir): a diffusers folder (unet = EMA of the student; vae, text encoder,
tokenizer, scheduler copied from the teacher), rewritten at every checkpoint; OUTDIR/checkpoint-N
(accelerate state: raw student + both optimizers, plus lora_teacher.safetensors, ema.safetensors and
trainer_state.json) for --resume; OUTDIR/log.csv (both losses, gradient norms); OUTDIR/previews/*.png;
OUTDIR/text_embeddings.safetensors (the pre-encoded prompts, reused when prompts and encoder match).

Reproducibility: every random draw of step s comes from a generator seeded by (seed, s, process), so a
resumed run continues exactly as the uninterrupted one would (bit-identical on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..colorize.train import EMA, TextEmbeddingCache, find_latest_checkpoint
from ..common.errors import InputError, PaperNodesError, WeightsFormatError
from ..common.loading import SDComponents, is_diffusers_folder
from ..common.training_log import open_csv_log
from .sampler import SwiftBrushPipeline, student_timestep, student_x0, training_alphas_cumprod
from .teacher import LORA_ALPHA, LORA_RANK, LoraTeacher
from .vsd import GUIDANCE, PROMPT_DROPOUT, VSD_T_MAX, VSD_T_MIN, lora_teacher_step_loss, vsd_student_loss
from .weights import (
    architecture,
    architecture_difference,
    check_text_to_image,
    export_student,
    load_model_fresh,
    load_unet_like,
)

MIXED_PRECISION = ("no", "fp16", "bf16")
CONFIG_FILE = "swiftbrush_train.json"
EMBEDDINGS_FILE = "text_embeddings.safetensors"


class PromptFileError(PaperNodesError, ValueError):
    """The prompt list is missing or empty."""


@dataclass
class TrainConfig:
    """Options of the distillation; see the module docstring for where the defaults come from."""

    teacher: str  # diffusers folder or single file of the teacher
    prompts: str  # text file, one prompt per line
    out: str  # run folder: checkpoints, logs, previews
    final_dir: str | None = None  # where the student's diffusers folder goes; default OUT/final
    student_init: str | None = None  # start the student from these weights instead of the teacher's
    resolution: int = 512  # image size the student learns (latent = resolution / 8); SD2.1-base: 512
    batch_size: int = 16  # paper: 16 per GPU
    max_steps: int = 20000  # ours
    student_lr: float = 1e-6  # paper
    lora_lr: float = 1e-3  # paper
    guidance: float = GUIDANCE  # paper: 4.5, both teachers
    lora_rank: int = LORA_RANK  # paper: 64
    lora_alpha: float = LORA_ALPHA  # paper: 108
    t_min: int = VSD_T_MIN  # paper: t ~ U[20, 980] for VSD
    t_max: int = VSD_T_MAX
    prompt_dropout: float = PROMPT_DROPOUT  # paper: 10 % for the LoRA teacher
    ema_decay: float = 0.999  # EMA of the student (paper); the decay is ours. 0 disables
    max_grad_norm: float = 1.0  # paper; 0 disables clipping
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    save_every: int = 500  # checkpoint + student export every N steps (and at the end); 0 = end only
    keep_checkpoints: int = 2  # newest checkpoint-N folders kept (each holds optimizer states); 0 = all
    preview_every: int = 500  # preview image every N steps (and at the end); 0 = end only
    preview_count: int = 4  # previews show the first N prompts of the file
    resume: str | None = None  # checkpoint-N folder, "latest" (newest in OUT) or "auto" (latest if any)
    cpu: bool = False  # train on the CPU even where CUDA is available
    max_cached_prompts: int = 50_000  # beyond this many prompts, encode per batch (LRU) instead of all at once

    def validate(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError("mixed_precision", f"one of {MIXED_PRECISION}", repr(self.mixed_precision))
        for name in ("resolution", "batch_size", "lora_rank", "preview_count"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        for name in ("max_steps", "save_every", "preview_every", "keep_checkpoints", "t_min"):
            if getattr(self, name) < 0:
                raise InputError(name, "0 or more", str(getattr(self, name)))
        if self.resolution % 8:
            raise InputError("resolution", "a multiple of 8 (VAE downsampling)", str(self.resolution))
        if not self.t_min <= self.t_max:
            raise InputError("t_max", f"at least t_min = {self.t_min}", str(self.t_max))
        if not 0 <= self.prompt_dropout <= 1:
            raise InputError("prompt_dropout", "a probability in [0, 1]", str(self.prompt_dropout))
        if not 0 <= self.ema_decay < 1:
            raise InputError("ema_decay", "a value in [0, 1)", str(self.ema_decay))
        for name in ("student_lr", "lora_lr", "guidance", "max_grad_norm", "lora_alpha"):
            if getattr(self, name) < 0:
                raise InputError(name, "a value >= 0", str(getattr(self, name)))


# ----------------------------------------------------------------------------------------------------
# Prompts


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found (expected a text file with one prompt per line)")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise PromptFileError(f"prompt file {path} contains no prompts (expected one prompt per line)")
    return prompts


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], device, chunk: int = 64) -> torch.Tensor:
    """[N, L, D] float32 CPU embeddings, `chunk` prompts per text-encoder call (long prompts truncated)."""
    out = []
    for i in range(0, len(prompts), chunk):
        ids = tokenizer(prompts[i:i + chunk], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids.to(device))[0].float().cpu())
    return torch.cat(out)


def _encoder_fingerprint(prompts: list[str], text_encoder) -> str:
    h = hashlib.sha256(json.dumps(prompts).encode())
    h.update(json.dumps(text_encoder.config.to_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for p in list(text_encoder.parameters())[:2] + list(text_encoder.parameters())[-2:]:
            h.update(f"{p.double().sum().item():.12e}".encode())
    return h.hexdigest()


class PromptTable:
    """Text embeddings of the training prompts, encoded once (the text encoder is frozen): all of them up
    front, cached in OUT/text_embeddings.safetensors, or - beyond `max_cached` prompts - per batch with an
    LRU cache. `rows(idx)` -> [B, L, D] on the training device; `null` is the empty prompt's embedding."""

    def __init__(self, prompts: list[str], tokenizer, text_encoder, device, cache_file: Path | None,
                 max_cached: int, is_main: bool = True, barrier: Callable[[], None] = lambda: None):
        self.prompts, self.device = prompts, torch.device(device)
        self.null = encode_prompts(tokenizer, text_encoder, [""], device).to(self.device)
        self.lazy = len(prompts) > max_cached
        self.table: torch.Tensor | None = None
        self.cache: TextEmbeddingCache | None = None
        if self.lazy:
            self.cache = TextEmbeddingCache(tokenizer, text_encoder, device)
            return
        from safetensors import safe_open
        from safetensors.torch import save_file

        key = _encoder_fingerprint(prompts, text_encoder)

        def load() -> torch.Tensor | None:
            if cache_file is None or not cache_file.is_file():
                return None
            with safe_open(str(cache_file), "pt") as f:
                return f.get_tensor("embeddings") if (f.metadata() or {}).get("key") == key else None

        # the main process encodes (or reuses the cache file), the others read what it wrote
        if is_main:
            self.table = load()
            if self.table is None:
                self.table = encode_prompts(tokenizer, text_encoder, prompts, device)
                if cache_file is not None:
                    cache_file.parent.mkdir(parents=True, exist_ok=True)
                    save_file({"embeddings": self.table.contiguous()}, str(cache_file), metadata={"key": key})
        barrier()
        if not is_main:
            self.table = load()
            if self.table is None:
                self.table = encode_prompts(tokenizer, text_encoder, prompts, device)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        if self.lazy:
            return self.cache([self.prompts[i] for i in idx.tolist()]).float()
        return self.table[idx.cpu()].to(self.device)


# ----------------------------------------------------------------------------------------------------
# Per-step random draws


@dataclass
class StepDraws:
    idx: torch.Tensor  # prompt indices [B]
    z: torch.Tensor  # student input noise [B, C, h, w]
    t_vsd: torch.Tensor  # [B] in [t_min, t_max]
    n_vsd: torch.Tensor
    t_lora: torch.Tensor  # [B] in [0, num_train_timesteps)
    n_lora: torch.Tensor
    drop: torch.Tensor  # [B] bool: LoRA teacher sees the empty prompt


def step_generator(seed: int, step: int, process: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed((int(seed) * 1_000_003 + int(step) * 1_009 + int(process)) % 2**63)


def draw_step(gen: torch.Generator, n_prompts: int, batch: int, latent_shape: tuple[int, int, int],
              cfg: TrainConfig, num_train_timesteps: int) -> StepDraws:
    shape = (batch, *latent_shape)
    return StepDraws(
        idx=torch.randint(0, n_prompts, (batch,), generator=gen),
        z=torch.randn(shape, generator=gen),
        t_vsd=torch.randint(cfg.t_min, min(cfg.t_max, num_train_timesteps - 1) + 1, (batch,), generator=gen),
        n_vsd=torch.randn(shape, generator=gen),
        t_lora=torch.randint(0, num_train_timesteps, (batch,), generator=gen),
        n_lora=torch.randn(shape, generator=gen),
        drop=torch.rand(batch, generator=gen) < cfg.prompt_dropout,
    )


# ----------------------------------------------------------------------------------------------------
# Set-up helpers


def make_accelerator(mixed_precision: str, out: Path, cpu: bool = False):
    """An Accelerator; a single process may train several times (tests, ComfyUI), so accelerate's
    process-wide singletons are reset first (as in models/colorize/train.py)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    world = max(int(os.environ.get(k, "1") or 1) for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
    if world == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    cpu = cpu or (world > 1 and not torch.cuda.is_available())  # several CPU processes: DDP over gloo
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu,
                       project_config=ProjectConfiguration(project_dir=str(out)))


def copy_components(comps: SDComponents) -> SDComponents:
    """Private copies of a (possibly cached, shared) model: training moves, casts and patches them."""
    return SDComponents(copy.deepcopy(comps.unet), copy.deepcopy(comps.vae), copy.deepcopy(comps.text_encoder),
                        comps.tokenizer, dict(comps.scheduler_config), source=comps.source, extras=dict(comps.extras))


def resolve_resume(cfg: TrainConfig, out: Path) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume in ("latest", "auto"):
        ckpt = find_latest_checkpoint(out) if out.is_dir() else None
        if ckpt is None and cfg.resume == "latest":
            raise FileNotFoundError(f"no checkpoint-N folder to resume from in {out}")
        return ckpt
    ckpt = Path(cfg.resume).expanduser()
    if not (ckpt / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{ckpt} is not a checkpoint written by this trainer (no trainer_state.json)")
    return ckpt


def _named_weights(names: list[str], tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach().cpu().contiguous() for n, t in zip(names, tensors)}


def distill_step(accelerator, student, teacher: LoraTeacher, opt_s, opt_l, cond: torch.Tensor, uncond: torch.Tensor,
                 d: StepDraws, alphas_cumprod: torch.Tensor, alpha_T: float, guidance: float, max_grad_norm: float,
                 ema: EMA | None = None, ema_params: list | None = None) -> dict[str, torch.Tensor]:
    """One SwiftBrush step on one batch: a student (VSD) update, then a LoRA-teacher update on the same
    batch's detached x0. `student`, `opt_s`, `opt_l` as returned by `accelerator.prepare`."""
    device = accelerator.device
    z = d.z.to(device)
    T = len(alphas_cumprod) - 1
    t_student = torch.full((z.shape[0],), T, dtype=torch.long, device=device)

    # 1. student: VSD against the frozen teacher and the LoRA teacher (both CFG, same scale)
    with accelerator.autocast():
        eps = student(z, t_student, encoder_hidden_states=cond).sample
        x0 = student_x0(z, eps, alpha_T)
        loss_vsd, _ = vsd_student_loss(x0, teacher, cond, uncond, d.t_vsd.to(device), d.n_vsd.to(device),
                                       alphas_cumprod, guidance)
    accelerator.backward(loss_vsd)
    gn_s = (accelerator.clip_grad_norm_(student.parameters(), max_grad_norm) if max_grad_norm > 0
            else torch.tensor(0.0))
    opt_s.step()
    opt_s.zero_grad(set_to_none=True)
    if ema is not None:
        ema.step(ema_params)
    x0 = x0.detach()

    # 2. LoRA teacher: ordinary denoising loss on the student's detached x0 of this batch
    # backward inside the adapter context: gradient checkpointing recomputes the forward during backward
    with teacher.lora(True):
        with accelerator.autocast():
            loss_lora = lora_teacher_step_loss(x0, teacher, cond, uncond, d.t_lora.to(device), d.n_lora.to(device),
                                               d.drop, alphas_cumprod)
        accelerator.backward(loss_lora)
    if accelerator.num_processes > 1:  # the teacher is not wrapped in DDP: average the LoRA gradients here
        for p in teacher.params:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
    gn_l = (accelerator.clip_grad_norm_(teacher.params, max_grad_norm) if max_grad_norm > 0
            else torch.tensor(0.0))
    opt_l.step()
    opt_l.zero_grad(set_to_none=True)
    return {"loss_vsd": loss_vsd.detach().float(), "loss_lora": loss_lora.detach().float(),
            "grad_norm_student": torch.as_tensor(gn_s).detach().float(),
            "grad_norm_lora": torch.as_tensor(gn_l).detach().float()}


# ----------------------------------------------------------------------------------------------------
# Training


def train(config: TrainConfig, progress: Callable[[int, int, dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          preview: Callable[[int, torch.Tensor], None] | None = None,
          teacher_components: SDComponents | None = None) -> Path:
    """Distill; returns the student's diffusers folder. `progress(step, total, losses)` after every step;
    `should_stop()` is polled after every step and ends the run early (checkpoint and student are still
    written); `preview(step, images)` receives every preview (IMAGE [N, H, W, 3]), the last one made from
    the exported (EMA) student. `teacher_components` replaces loading `config.teacher` (they are copied)."""
    from accelerate.utils import set_seed
    from safetensors.torch import load_file, save_file

    cfg = config
    cfg.validate()
    prompts = read_prompts(cfg.prompts)
    out = Path(cfg.out).expanduser()
    final_dir = Path(cfg.final_dir).expanduser() if cfg.final_dir else out / "final"

    if teacher_components is not None:
        comps = copy_components(teacher_components)
        teacher_path = comps.source if comps.source and is_diffusers_folder(comps.source) else None
    else:
        comps = load_model_fresh(cfg.teacher)
        teacher_path = cfg.teacher
    check_text_to_image(comps, "teacher")
    vae_factor = 2 ** (len(comps.vae.config.block_out_channels) - 1)
    if cfg.resolution % vae_factor:
        raise InputError("resolution", f"a multiple of {vae_factor} for this VAE", str(cfg.resolution))
    alphas = training_alphas_cumprod(comps.scheduler_config)
    T = student_timestep(alphas)
    alpha_T = float(alphas[T])
    latent_shape = (comps.unet.config.in_channels, cfg.resolution // vae_factor, cfg.resolution // vae_factor)

    if cfg.student_init:
        student = load_unet_like(cfg.student_init, comps.unet)
    else:
        student = copy.deepcopy(comps.unet)  # the paper's initialization: the teacher's weights
    ckpt = resolve_resume(cfg, out)
    if ckpt is not None:  # before any heavy set-up: a checkpoint of another architecture fails clearly
        saved = json.loads((ckpt / "trainer_state.json").read_text())
        diff = architecture_difference({"config": saved["student_config"], "shapes": {}},
                                       {"config": architecture(student)["config"], "shapes": {}})
        if diff:
            raise WeightsFormatError(f"{ckpt}: checkpoint was written for another U-Net architecture ({diff})")

    accelerator = make_accelerator(cfg.mixed_precision, out, cfg.cpu)
    is_main, device = accelerator.is_main_process, accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))

    set_seed(cfg.seed)  # the LoRA's lora_A initialization draws from the global generator
    teacher_unet = comps.unet
    comps.unet = student  # what is exported with the teacher's other modules
    teacher_unet.to(device, dtype=weight_dtype)
    teacher = LoraTeacher(teacher_unet, cfg.lora_rank, cfg.lora_alpha)
    teacher.unet.eval()
    student.requires_grad_(True).train()
    if cfg.gradient_checkpointing:
        student.enable_gradient_checkpointing()
        teacher.unet.enable_gradient_checkpointing()

    comps.text_encoder.to(device)
    table = PromptTable(prompts, comps.tokenizer, comps.text_encoder, device,
                        out / EMBEDDINGS_FILE, cfg.max_cached_prompts, is_main,
                        accelerator.wait_for_everyone)
    if not table.lazy:
        comps.text_encoder.to("cpu")  # only needed again for the export
    uncond = table.null
    want_preview = preview is not None or cfg.preview_every > 0
    n_preview = min(cfg.preview_count, len(prompts))
    preview_emb = table.rows(torch.arange(n_preview)) if want_preview else None
    if want_preview:
        comps.vae.to(device, dtype=weight_dtype)

    betas = (cfg.adam_beta1, cfg.adam_beta2)
    opt_s = torch.optim.Adam(student.parameters(), lr=cfg.student_lr, betas=betas, eps=cfg.adam_eps)
    opt_l = torch.optim.Adam(teacher.params, lr=cfg.lora_lr, betas=betas, eps=cfg.adam_eps)
    student, opt_s, opt_l = accelerator.prepare(student, opt_s, opt_l)
    raw = accelerator.unwrap_model(student)
    names = [n for n, _ in raw.named_parameters()]
    params = [p for _, p in raw.named_parameters()]
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None

    step = 0
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "trainer_state.json").read_text())
        step = int(state["step"])
        teacher.load_state_dict(load_file(str(ckpt / "lora_teacher.safetensors")))
        if ema is not None:
            if not (ckpt / "ema.safetensors").is_file():
                raise FileNotFoundError(f"{ckpt}: ema.safetensors missing (was EMA disabled in that run?)")
            shadow = load_file(str(ckpt / "ema.safetensors"))
            ema.load_state_dict({"decay": cfg.ema_decay, "num_updates": int(state["ema_updates"]),
                                 "shadow": [shadow[n] for n in names]})
        if is_main:
            print(f"resumed from {ckpt} at step {step}", flush=True)

    pipe = SwiftBrushPipeline(SDComponents(raw, comps.vae, comps.text_encoder, comps.tokenizer,
                                           comps.scheduler_config, source=str(final_dir)))
    n_timesteps = len(alphas)
    alphas_dev = alphas.to(device)

    def ema_weights() -> dict[str, torch.Tensor] | None:
        return _named_weights(names, ema.shadow) if ema is not None else None

    def export() -> Path:
        info = {"method": "SwiftBrush (arXiv 2312.05239)", "teacher": str(cfg.teacher), "step": step,
                "student_timestep": T, "alpha_T": alpha_T, "weights": "ema" if ema is not None else "raw",
                "resolution": cfg.resolution, "guidance": cfg.guidance}
        return export_student(final_dir, raw, comps, teacher_path, ema_weights(), info)

    def save_checkpoint() -> None:
        path = out / f"checkpoint-{step}"
        accelerator.save_state(str(path))
        if is_main:
            save_file(teacher.state_dict(), str(path / "lora_teacher.safetensors"))
            if ema is not None:
                save_file(ema_weights(), str(path / "ema.safetensors"))
            (path / "trainer_state.json").write_text(json.dumps({
                "step": step, "ema_updates": ema.num_updates if ema is not None else 0,
                "student_config": architecture(raw)["config"], "teacher": str(cfg.teacher)}, indent=2))
            if cfg.keep_checkpoints:
                ckpts = sorted((p for p in out.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()),
                               key=lambda p: int(p.name.split("-", 1)[1]))
                for old in ckpts[:-cfg.keep_checkpoints]:
                    shutil.rmtree(old, ignore_errors=True)
            export()
        accelerator.wait_for_everyone()

    def make_preview() -> torch.Tensor:
        was_training = raw.training
        raw.eval()
        with accelerator.autocast():
            images = pipe(embeds=preview_emb, seed=cfg.seed, batch=1, height=cfg.resolution,
                          width=cfg.resolution, device=device).images
        raw.train(was_training)
        if is_main:
            _save_grid(images, out / "previews" / f"step-{step:06d}.png")
        if preview is not None:
            preview(step, images)
        return images

    log_path = out / "log.csv"
    log_file = writer = None
    if is_main:
        header = ["step", "loss_vsd", "loss_lora", "grad_norm_student", "grad_norm_lora", "elapsed_s"]
        log_file, writer = open_csv_log(log_path, ckpt is not None, header)
        print(f"distilling {cfg.teacher} into a one-step student: {len(prompts)} prompts, "
              f"{accelerator.num_processes} process(es) on {device}, mixed precision {accelerator.mixed_precision}, "
              f"batch {cfg.batch_size} per process, {cfg.resolution}px, steps {step}->{cfg.max_steps}", flush=True)

    total, start, last_saved = cfg.max_steps, time.time(), step if ckpt is not None else -1
    try:
        while step < total:
            d = draw_step(step_generator(cfg.seed, step, accelerator.process_index), len(prompts),
                          cfg.batch_size, latent_shape, cfg, n_timesteps)
            stats = distill_step(accelerator, student, teacher, opt_s, opt_l, table.rows(d.idx), uncond, d,
                                 alphas_dev, alpha_T, cfg.guidance, cfg.max_grad_norm, ema, params)
            step += 1

            losses = torch.stack([stats["loss_vsd"], stats["loss_lora"]])
            if accelerator.num_processes > 1:
                losses = accelerator.reduce(losses, reduction="mean")
            lv, ll = losses.tolist()
            gn_s, gn_l = stats["grad_norm_student"], stats["grad_norm_lora"]
            if is_main:
                elapsed = time.time() - start
                print(f"step {step}/{total} loss_vsd {lv:.6g} loss_lora {ll:.6g} ({elapsed:.1f}s)", flush=True)
                writer.writerow([step, f"{lv:.8g}", f"{ll:.8g}", f"{float(gn_s):.6g}", f"{float(gn_l):.6g}",
                                 f"{elapsed:.2f}"])
                log_file.flush()
            if progress is not None:
                progress(step, total, {"loss_vsd": lv, "loss_lora": ll})
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                save_checkpoint()
                last_saved = step
            if cfg.preview_every and step % cfg.preview_every == 0 and step < total:
                make_preview()
            if should_stop is not None and should_stop():
                if is_main:
                    print(f"stopped at step {step}", flush=True)
                break
        if last_saved != step:
            save_checkpoint()
        elif is_main and not (final_dir / "unet" / "config.json").is_file():
            export()
    finally:
        if log_file is not None:
            log_file.close()

    if ema is not None:  # from here on the live student is the exported one
        ema.copy_to(params)
    if want_preview:
        make_preview()
    accelerator.wait_for_everyone()
    if is_main:
        print(f"saved {final_dir}", flush=True)
    accelerator.free_memory()
    return final_dir


def _save_grid(images: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    row = torch.cat(list(images), dim=1)  # side by side
    Image.fromarray((row.numpy() * 255).round().clip(0, 255).astype("uint8")).save(path)


# ----------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(teacher="", prompts="", out="")
    p = argparse.ArgumentParser(prog="python -m models.swiftbrush.train",
                                description="SwiftBrush: distill a text-to-image teacher into a one-step student "
                                            "by image-free variational score distillation (arXiv 2312.05239).")
    p.add_argument("--teacher", required=True, help="teacher: diffusers folder or single .safetensors (SD family, "
                                                    "epsilon prediction; paper: SD2.1-base)")
    p.add_argument("--prompts", required=True, help="text file, one prompt per line (the only training data)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log.csv, previews)")
    p.add_argument("--final-dir", default=None, help="student diffusers folder (default OUT/final)")
    p.add_argument("--student-init", default=None, help="start the student from these weights (same architecture)")
    p.add_argument("--resolution", type=int, default=d.resolution, help="image size in px (default 512)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per step per process (paper: 16)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="training steps (one student + one LoRA update each)")
    p.add_argument("--student-lr", type=float, default=d.student_lr, help="student Adam learning rate (paper: 1e-6)")
    p.add_argument("--lora-lr", type=float, default=d.lora_lr, help="LoRA teacher Adam learning rate (paper: 1e-3)")
    p.add_argument("--guidance", type=float, default=d.guidance, help="CFG scale of both teachers (paper: 4.5)")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank, help="paper: 64")
    p.add_argument("--lora-alpha", type=float, default=d.lora_alpha, help="paper: 108")
    p.add_argument("--t-min", type=int, default=d.t_min, help="VSD timesteps t ~ U[t_min, t_max] (paper: 20)")
    p.add_argument("--t-max", type=int, default=d.t_max, help="(paper: 980)")
    p.add_argument("--prompt-dropout", type=float, default=d.prompt_dropout, help="LoRA teacher's empty-prompt rate (0.1)")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA of the student; 0 disables")
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping (1.0); 0 disables")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint + export every N steps; 0 = end only")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="newest N checkpoints kept; 0 = all")
    p.add_argument("--preview-every", type=int, default=d.preview_every, help="preview PNG every N steps; 0 = end only")
    p.add_argument("--preview-count", type=int, default=d.preview_count, help="previews show the first N prompts")
    p.add_argument("--resume", default=None, help="checkpoint-N folder, 'latest' or 'auto' (latest if any)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    p.add_argument("--max-cached-prompts", type=int, default=d.max_cached_prompts,
                   help="pre-encode up to this many prompts; more are encoded per batch")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        final = train(config_from_args(args))
    except (PaperNodesError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
