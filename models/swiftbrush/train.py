"""SwiftBrush distillation trainer (Nguyen & Tran 2023, arXiv 2312.05239), on the shared trainer (common/training.py).

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

import copy
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

if (
    __name__ == "__main__"
):  # `python -m models.swiftbrush.train`: run inside the pack (scripts/papernodes_bootstrap.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError, PaperNodesError, WeightsFormatError
from ..common.loading import SDComponents, is_diffusers_folder, load_model_fresh
from ..common.text import TextModel, encode_prompts
from ..common.training import (
    MIXED_PRECISION,
    Callbacks,
    LoopSettings,
    Run,
    TextEmbeddingCache,
    TrainingMethod,
    TrainState,
    fit,
)
from .sampler import SwiftBrushPipeline, student_timestep, student_x0, training_alphas_cumprod
from .teacher import LORA_ALPHA, LORA_RANK, LoraTeacher
from .vsd import GUIDANCE, PROMPT_DROPOUT, VSD_T_MAX, VSD_T_MIN, lora_teacher_step_loss, vsd_student_loss
from .weights import (
    TEACHER_PUBLISHED,
    architecture,
    architecture_difference,
    check_text_to_image,
    export_student,
    load_unet_like,
)

CONFIG_FILE = "swiftbrush_train.json"
EMBEDDINGS_FILE = "text_embeddings.safetensors"


class PromptFileError(PaperNodesError, ValueError):
    """The prompt list is empty."""


class PromptFileNotFoundError(PaperNodesError, FileNotFoundError):
    """The prompt file does not exist."""


@dataclass
class TrainConfig:
    """Options of the distillation (one command-line flag each); see the module docstring for where the
    defaults come from."""

    teacher: str = option(help="teacher: diffusers folder or single .safetensors (SD family, epsilon prediction; "
                               "paper: SD2.1-base)")  # fmt: skip
    prompts: str = option(help="text file, one prompt per line (the only training data)")
    out: str = option(help="run folder (checkpoints, log.csv, previews)")
    final_dir: str | None = option(None, "student diffusers folder (default OUT/final)")
    student_init: str | None = option(None, "start the student from these weights (same architecture)")
    resolution: int = option(
        512, "image size the student learns in px (latent = resolution / 8; SD2.1-base: 512)"
    )
    batch_size: int = option(16, "prompts per step per process (paper: 16)")
    max_steps: int = option(20000, "training steps (one student + one LoRA update each)")
    student_lr: float = option(1e-6, "student Adam learning rate (paper: 1e-6)")
    lora_lr: float = option(1e-3, "LoRA teacher Adam learning rate (paper: 1e-3)")
    guidance: float = option(GUIDANCE, "CFG scale of both teachers (paper: 4.5)")
    lora_rank: int = option(LORA_RANK, "LoRA rank (paper: 64)")
    lora_alpha: float = option(LORA_ALPHA, "LoRA alpha (paper: 108)")
    t_min: int = option(VSD_T_MIN, "VSD timesteps t ~ U[t_min, t_max] (paper: 20)")
    t_max: int = option(VSD_T_MAX, "(paper: 980)")
    prompt_dropout: float = option(PROMPT_DROPOUT, "LoRA teacher's empty-prompt rate (paper: 0.1)")
    ema_decay: float = option(0.999, "EMA of the student (the paper's; the decay is ours); 0 disables")
    max_grad_norm: float = option(1.0, "gradient clipping of both updates (paper: 1.0); 0 disables")
    adam_beta1: float = option(0.9, "Adam beta1")
    adam_beta2: float = option(0.999, "Adam beta2")
    adam_eps: float = option(1e-8, "Adam epsilon")
    mixed_precision: str = option("no", "autocast precision (fp16/bf16 need a GPU)", choices=MIXED_PRECISION)
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, slower")
    seed: int = option(0, "seed of every random draw")
    save_every: int = option(500, "checkpoint + student export every N steps; 0 = at the end only")
    keep_checkpoints: int = option(
        2, "newest N checkpoint-N folders kept (each holds optimizer states); 0 = all"
    )
    preview_every: int = option(500, "preview PNG every N steps; 0 = at the end only")
    preview_count: int = option(4, "previews show the first N prompts of the file")
    resume: str | None = option(
        None, "checkpoint-N folder, 'latest' (newest in OUT) or 'auto' (latest if any)"
    )
    cpu: bool = option(False, "train on the CPU even where CUDA is available")
    max_cached_prompts: int = option(
        50_000, "pre-encode up to this many prompts; more are encoded per batch (LRU)"
    )

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
        raise PromptFileNotFoundError(
            f"prompt file {path} not found (expected a text file with one prompt per line)"
        )
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise PromptFileError(f"prompt file {path} contains no prompts (expected one prompt per line)")
    return prompts


def _encode_all(text: TextModel, prompts: list[str], device, chunk: int = 64) -> torch.Tensor:
    """[N, L, D] float32 CPU embeddings, `chunk` prompts per text-encoder call (long prompts truncated)."""
    return torch.cat([encode_prompts(text, prompts[i : i + chunk], device).float().cpu()
                      for i in range(0, len(prompts), chunk)])  # fmt: skip


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

    def __init__(
        self,
        prompts: list[str],
        tokenizer,
        text_encoder,
        device,
        cache_file: Path | None,
        max_cached: int,
        is_main: bool = True,
        barrier: Callable[[], None] = lambda: None,
    ):
        self.prompts, self.device = prompts, torch.device(device)
        text = TextModel(tokenizer, text_encoder)
        self.null = _encode_all(text, [""], device).to(self.device)
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
                self.table = _encode_all(text, prompts, device)
                if cache_file is not None:
                    cache_file.parent.mkdir(parents=True, exist_ok=True)
                    save_file({"embeddings": self.table.contiguous()}, str(cache_file), metadata={"key": key})
        barrier()
        if not is_main:
            self.table = load()
            if self.table is None:
                self.table = _encode_all(text, prompts, device)

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
    return torch.Generator("cpu").manual_seed(
        (int(seed) * 1_000_003 + int(step) * 1_009 + int(process)) % 2**63
    )


def draw_step(
    gen: torch.Generator,
    n_prompts: int,
    batch: int,
    latent_shape: tuple[int, int, int],
    cfg: TrainConfig,
    num_train_timesteps: int,
) -> StepDraws:
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
# One step


def copy_components(comps: SDComponents) -> SDComponents:
    """Private copies of a (possibly cached, shared) model: training moves, casts and patches them."""
    return SDComponents(
        copy.deepcopy(comps.unet),
        copy.deepcopy(comps.vae),
        copy.deepcopy(comps.text_encoder),
        comps.tokenizer,
        dict(comps.scheduler_config),
        source=comps.source,
        extras=dict(comps.extras),
    )


def distill_step(
    accelerator,
    student,
    teacher: LoraTeacher,
    opt_s,
    opt_l,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    d: StepDraws,
    alphas_cumprod: torch.Tensor,
    alpha_T: float,
    guidance: float,
    max_grad_norm: float,
) -> dict[str, torch.Tensor]:
    """One SwiftBrush step on one batch: a student (VSD) update, then a LoRA-teacher update on the same
    batch's detached x0. `student`, `opt_s`, `opt_l` as returned by `accelerator.prepare`. (The student's EMA
    is the shared loop's, after the step: the LoRA update does not touch the student.)"""
    device = accelerator.device
    z = d.z.to(device)
    T = len(alphas_cumprod) - 1
    t_student = torch.full((z.shape[0],), T, dtype=torch.long, device=device)

    # 1. student: VSD against the frozen teacher and the LoRA teacher (both CFG, same scale)
    with accelerator.autocast():
        eps = student(z, t_student, encoder_hidden_states=cond).sample
        x0 = student_x0(z, eps, alpha_T)
        loss_vsd, _ = vsd_student_loss(
            x0, teacher, cond, uncond, d.t_vsd.to(device), d.n_vsd.to(device), alphas_cumprod, guidance
        )
    accelerator.backward(loss_vsd)
    gn_s = (
        accelerator.clip_grad_norm_(student.parameters(), max_grad_norm)
        if max_grad_norm > 0
        else torch.tensor(0.0)
    )
    opt_s.step()
    opt_s.zero_grad(set_to_none=True)
    x0 = x0.detach()

    # 2. LoRA teacher: ordinary denoising loss on the student's detached x0 of this batch
    # backward inside the adapter context: gradient checkpointing recomputes the forward during backward
    with teacher.lora(True):
        with accelerator.autocast():
            loss_lora = lora_teacher_step_loss(
                x0, teacher, cond, uncond, d.t_lora.to(device), d.n_lora.to(device), d.drop, alphas_cumprod
            )
        accelerator.backward(loss_lora)
    if accelerator.num_processes > 1:  # the teacher is not wrapped in DDP: average the LoRA gradients here
        for p in teacher.params:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
    gn_l = (
        accelerator.clip_grad_norm_(teacher.params, max_grad_norm) if max_grad_norm > 0 else torch.tensor(0.0)
    )
    opt_l.step()
    opt_l.zero_grad(set_to_none=True)
    return {
        "loss_vsd": loss_vsd.detach().float(),
        "loss_lora": loss_lora.detach().float(),
        "grad_norm_student": torch.as_tensor(gn_s).detach().float(),
        "grad_norm_lora": torch.as_tensor(gn_l).detach().float(),
    }


# ----------------------------------------------------------------------------------------------------
# Training


class SwiftBrushTraining(TrainingMethod):
    """SwiftBrush's set-up, step and export for the shared loop (step mode: no dataset, two optimizers)."""

    can_preview = True

    def __init__(self, cfg: TrainConfig, prompts: list[str], teacher_components: SDComponents | None = None):
        super().__init__()
        self.cfg, self.prompts, self.teacher_components = cfg, prompts, teacher_components
        self.out = Path(cfg.out).expanduser()
        self.final = Path(cfg.final_dir).expanduser() if cfg.final_dir else self.out / "final"

    def setup(self, run: Run) -> None:
        from accelerate.utils import set_seed

        cfg, device, dtype = self.cfg, run.device, run.weight_dtype
        self.run = run
        if self.teacher_components is not None:
            comps = copy_components(self.teacher_components)
            self.teacher_path = comps.source if comps.source and is_diffusers_folder(comps.source) else None
        else:
            comps = load_model_fresh(cfg.teacher, TEACHER_PUBLISHED)
            self.teacher_path = cfg.teacher
        check_text_to_image(comps, "teacher")
        vae_factor = 2 ** (len(comps.vae.config.block_out_channels) - 1)
        if cfg.resolution % vae_factor:
            raise InputError("resolution", f"a multiple of {vae_factor} for this VAE", str(cfg.resolution))
        alphas = training_alphas_cumprod(comps.scheduler_config)
        self.T = student_timestep(alphas)
        self.alpha_T = float(alphas[self.T])
        self.n_timesteps, self.alphas_dev = len(alphas), alphas.to(device)
        self.latent_shape = (
            comps.unet.config.in_channels,
            cfg.resolution // vae_factor,
            cfg.resolution // vae_factor,
        )

        if cfg.student_init:
            student = load_unet_like(cfg.student_init, comps.unet)
        else:
            student = copy.deepcopy(comps.unet)  # the paper's initialization: the teacher's weights
        if (
            run.checkpoint is not None
        ):  # before any heavy set-up: a checkpoint of another architecture fails clearly
            diff = architecture_difference(
                {"config": run.resumed_state["student_config"], "shapes": {}},
                {"config": architecture(student)["config"], "shapes": {}},
            )
            if diff:
                raise WeightsFormatError(
                    f"{run.checkpoint}: checkpoint was written for another U-Net architecture ({diff})"
                )

        set_seed(cfg.seed)  # the LoRA's lora_A initialization draws from the global generator
        teacher_unet = comps.unet
        comps.unet = student  # what is exported with the teacher's other modules
        teacher_unet.to(device, dtype=dtype)
        self.teacher = LoraTeacher(teacher_unet, cfg.lora_rank, cfg.lora_alpha)
        self.teacher.unet.eval()
        student.requires_grad_(True).train()
        if cfg.gradient_checkpointing:
            student.enable_gradient_checkpointing()
            self.teacher.unet.enable_gradient_checkpointing()

        comps.text_encoder.to(device)
        self.table = PromptTable(
            self.prompts,
            comps.tokenizer,
            comps.text_encoder,
            device,
            self.out / EMBEDDINGS_FILE,
            cfg.max_cached_prompts,
            run.is_main,
            run.accelerator.wait_for_everyone,
        )
        if not self.table.lazy:
            comps.text_encoder.to("cpu")  # only needed again for the export
        self.uncond = self.table.null
        wants_previews = run.callbacks.preview is not None or cfg.preview_every > 0
        n_preview = min(cfg.preview_count, len(self.prompts))
        self.preview_emb = self.table.rows(torch.arange(n_preview)) if wants_previews else None
        if wants_previews:
            comps.vae.to(device, dtype=dtype)

        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_s = torch.optim.Adam(student.parameters(), lr=cfg.student_lr, betas=betas, eps=cfg.adam_eps)
        opt_l = torch.optim.Adam(self.teacher.params, lr=cfg.lora_lr, betas=betas, eps=cfg.adam_eps)
        self.student, self.opt_s, self.opt_l = run.accelerator.prepare(student, opt_s, opt_l)
        self.raw = run.accelerator.unwrap_model(self.student)
        self.param_names, self.params = map(list, zip(*self.raw.named_parameters(), strict=True))
        self.comps = comps
        self.pipe = SwiftBrushPipeline(
            SDComponents(
                self.raw,
                comps.vae,
                comps.text_encoder,
                comps.tokenizer,
                comps.scheduler_config,
                source=str(self.final),
            )
        )

    def train_step(self, state: TrainState) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        d = draw_step(
            step_generator(cfg.seed, state.step, self.run.process_index),
            len(self.prompts),
            cfg.batch_size,
            self.latent_shape,
            cfg,
            self.n_timesteps,
        )
        return distill_step(
            self.run.accelerator,
            self.student,
            self.teacher,
            self.opt_s,
            self.opt_l,
            self.table.rows(d.idx),
            self.uncond,
            d,
            self.alphas_dev,
            self.alpha_T,
            cfg.guidance,
            cfg.max_grad_norm,
        )

    def describe(self, state: TrainState) -> str:
        cfg, acc = self.cfg, self.run.accelerator
        return (
            f"distilling {cfg.teacher} into a one-step student: {len(self.prompts)} prompts, "
            f"{acc.num_processes} process(es) on {acc.device}, mixed precision {acc.mixed_precision}, "
            f"batch {cfg.batch_size} per process, {cfg.resolution}px, steps {state.step}->{cfg.max_steps}"
        )

    def checkpoint_info(self) -> dict:
        return {"student_config": architecture(self.raw)["config"], "teacher": str(self.cfg.teacher)}

    def save_checkpoint(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file(self.teacher.state_dict(), str(folder / "lora_teacher.safetensors"))

    def load_checkpoint(self, folder: Path, saved: dict) -> None:
        from safetensors.torch import load_file

        self.teacher.load_state_dict(load_file(str(folder / "lora_teacher.safetensors")))

    def export(self) -> None:
        cfg, ema = self.cfg, self.run.ema
        info = {"method": "SwiftBrush (arXiv 2312.05239)", "teacher": str(cfg.teacher), "step": self.run.state.step,
                "student_timestep": self.T, "alpha_T": self.alpha_T, "weights": "ema" if ema is not None else "raw",
                "resolution": cfg.resolution, "guidance": cfg.guidance}  # fmt: skip
        weights = ema.named(self.param_names) if ema is not None else None
        export_student(self.final, self.raw, self.comps, self.teacher_path, weights, info)

    def has_export(self) -> bool:
        return (self.final / "unet" / "config.json").is_file()

    def preview(self, step: int) -> torch.Tensor:
        cfg, acc = self.cfg, self.run.accelerator
        was_training = self.raw.training
        self.raw.eval()
        with acc.autocast():
            images = self.pipe(
                embeds=self.preview_emb,
                seed=cfg.seed,
                batch=1,
                height=cfg.resolution,
                width=cfg.resolution,
                device=acc.device,
            ).images
        self.raw.train(was_training)
        if self.run.is_main:
            _save_grid(images, self.out / "previews" / f"step-{step:06d}.png")
        return images


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview: Callable[[int, torch.Tensor], None] | None = None,
    teacher_components: SDComponents | None = None,
) -> Path:
    """Distill; returns the student's diffusers folder. `progress(step, total, metrics)` after every step
    (metrics: loss_vsd, loss_lora, grad_norm_student, grad_norm_lora); `should_stop()` is polled after every
    step and ends the run early (checkpoint and student are still written); `preview(step, images)` receives
    every preview (IMAGE [N, H, W, 3]), the last one made from the exported (EMA) student.
    `teacher_components` replaces loading `config.teacher` (they are copied)."""
    config.validate()
    prompts = read_prompts(config.prompts)
    settings = LoopSettings.from_config(config, config_file=CONFIG_FILE)
    method = SwiftBrushTraining(config, prompts, teacher_components)
    return fit(method, settings, Callbacks(progress, should_stop, preview))


def _save_grid(images: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    row = torch.cat(list(images), dim=1)  # side by side
    Image.fromarray((row.numpy() * 255).round().clip(0, 255).astype("uint8")).save(path)


# ----------------------------------------------------------------------------------------------------
# Command line: one flag per TrainConfig field (common/cli.py)

CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.swiftbrush.train",
    description="SwiftBrush: distill a text-to-image teacher into a one-step student by image-free variational "
    "score distillation (arXiv 2312.05239).",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
