"""Train a motion into a text-to-video model (Materzynska et al. 2023, "Customizing Motion in Text-to-Video
Diffusion Models", arXiv 2312.04966), on the shared trainer (common/training.py).

What trains (Sec. 3.2; `trainable.py`): the spatial cross-attention's keys and values and the temporal layers
(ZeroScope: temporal attentions, temporal convolutions, transformer_in; AnimateDiff: the motion modules);
everything else and the text encoder stay frozen. The motion is bound to a token already in the vocabulary
("sks", Sec. 3.1; `data.insert_token`).
Objective: the ε-prediction MSE of the base's noise schedule on the instance clip, plus λ times the same loss
on a clip of the regularisation set (prior preservation, Sec. 3.2, λ = 0.5), with timesteps drawn from
p(t) ∝ 1 − a·cos(πt/T), a = 0.5 (Sec. 3.3; `timesteps.py`).
Defaults (the paper's / its official code's): AdamW, lr 5e-6 constant, weight decay 0.01, gradient clipping
1.0, batch 1, 3000 steps, 16 frames. Training size: ours (256 px; ZeroScope's native 576x320 needs a GPU).
Our interpretation: with no regularisation folder the prior term is off (λ ignored); the paper generates its
regularisation videos with the base model, which a user can do with MotionCustom: Generate Video and save as
a folder.

Usage (from the repository root):
    python -m models.motion_custom.train --clips FOLDER --zeroscope FOLDER --out OUTDIR [...]
    python -m models.motion_custom.train --clips FOLDER --model SD15 --motion-module MM --out OUTDIR [...]
Output: OUTDIR/final/motion.safetensors (deltas from the base, `motion_file.py`), rewritten at every
checkpoint; OUTDIR/checkpoint-N for --resume; OUTDIR/log.csv (step, loss, lr, grad_norm).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if __name__ == "__main__":  # `python -m models.motion_custom.train`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.animatediff import load_motion_adapter, run_motion_unet
from ..common.cli import TrainerCli, option
from ..common.errors import InputError
from ..common.loading import load_model_fresh
from ..common.timesteps import DEFAULT_STRENGTH, LAWS, TimestepSampler
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
)
from .data import ClipDataset, ClipSource, insert_token, scan_clips
from .motion_file import add_motions, base_fingerprint, extract_motion, save_motion
from .pipeline import VideoModel, animatediff_model, generate
from .trainable import TRAINABLE_SETS, set_trainable

MOTION_FILE = "motion.safetensors"
ZEROSCOPE_PUBLISHED = "a ZeroScope/ModelScope diffusers folder (e.g. cerspense/zeroscope_v2_576w)"
SD_PUBLISHED = "an SD1.5-family model (diffusers folder or single file)"


@dataclass
class TrainConfig:
    """Options of a motion customisation run (one command-line flag each; module docstring for defaults)."""

    out: str = option(help="output folder (checkpoints, log.csv, final/motion.safetensors)")
    clips: str | None = option(
        None, "folder of clips showing the motion (videos or frame folders)", group="data"
    )
    regularization: str | None = option(
        None, "folder of generic clips for prior preservation (captions used as written)", group="data"
    )
    zeroscope: str | None = option(None, "ZeroScope/ModelScope diffusers folder (base)", group="model")
    model: str | None = option(None, "SD1.5-family model for the AnimateDiff base", group="model")
    motion_module: str | None = option(None, "AnimateDiff motion module used with --model", group="model")
    token: str = option("sks", "rare token the motion is bound to (paper: sks); '' = captions as written")
    frames: int = option(16, "frames per training clip (paper: 16)", group="data")
    height: int = option(256, "training height in px", group="data")
    width: int = option(256, "training width in px", group="data")
    trainable: str = option("paper", "which tensors train (trainable.py)", choices=TRAINABLE_SETS)
    prior_weight: float = option(0.5, "λ of the prior-preservation loss (paper: 0.5)")
    timestep_law: str = option(
        "high", "p(t) ∝ 1 − a cos(πt/T): high, low (sign flipped) or uniform", choices=LAWS
    )
    timestep_strength: float = option(DEFAULT_STRENGTH, "a of the timestep law (paper: 0.5)")
    min_timestep: int = option(
        0, "draw training timesteps at or above this only (paper: 0; docs/motion_custom.md: high noise only)"
    )
    lr: float = option(5e-6, "AdamW learning rate, constant (paper: 5e-6)")
    weight_decay: float = option(1e-2, "AdamW weight decay (paper: 0.01)")
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables (paper: 1.0)")
    batch_size: int = option(1, "clips per micro-batch (paper: 1)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    max_steps: int = option(3000, "optimizer steps (paper: 3000)")
    ema_decay: float = option(0.0, "EMA decay of the exported weights; 0 disables (paper: none)")
    mixed_precision: str = option("no", "autocast precision (fp16/bf16 need a GPU)", choices=MIXED_PRECISION)
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, slower")
    seed: int = option(0, "seed of the data order and every random draw")
    save_every: int = option(500, "checkpoint + export every N steps; 0 = at the end only")
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all")
    preview_every: int = option(
        0, "preview video every N steps (0 = only at the end when previews are wanted)"
    )
    preview_prompt: str = option("", "prompt of the previews (default: the first clip's caption)")
    resume: str | None = option(
        None, "checkpoint-N folder, 'latest' (newest in --out) or 'auto' (latest if any)"
    )
    cpu: bool = option(False, "train on the CPU even where CUDA is available")

    def validate(self, has_model: bool = False, has_clips: bool = False) -> None:
        if not has_model:
            if bool(self.zeroscope) == bool(self.model):
                raise InputError("model", "exactly one of --zeroscope FOLDER or --model PATH --motion-module FILE",
                                 "both" if self.zeroscope else "neither")  # fmt: skip
            if self.model and not self.motion_module:
                raise InputError("motion_module", "an AnimateDiff motion module with --model", "none")
        if not has_clips and not self.clips:
            raise InputError("clips", "a folder of clips of the motion", "none")
        if self.token and len(self.token.split()) != 1:
            raise InputError("token", "one word (e.g. sks), or '' to train a base on captions as written",
                             repr(self.token))  # fmt: skip
        for name in ("frames", "batch_size", "grad_accum", "max_steps"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        for name in ("height", "width"):
            if getattr(self, name) < 8 or getattr(self, name) % 8:
                raise InputError(name, "a multiple of 8 (VAE downsampling)", str(getattr(self, name)))
        if self.prior_weight < 0:
            raise InputError("prior_weight", "0 or more", str(self.prior_weight))
        if not 0 <= self.ema_decay < 1:
            raise InputError("ema_decay", "a value in [0, 1)", str(self.ema_decay))


def load_base(cfg: TrainConfig) -> VideoModel:
    """The base as modules of our own (training changes the U-Net in place; never the loaders' cache)."""
    if cfg.zeroscope:
        return VideoModel.from_components(load_model_fresh(cfg.zeroscope, ZEROSCOPE_PUBLISHED, video=True))
    return animatediff_model(
        load_model_fresh(cfg.model, SD_PUBLISHED), load_motion_adapter(cfg.motion_module)
    )


class MotionTraining(TrainingMethod):
    """Set-up, loss and export of a motion customisation for the shared loop."""

    can_preview = True

    def __init__(
        self, cfg: TrainConfig, base: VideoModel | None = None, clips: list[ClipSource] | None = None
    ):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"
        self.batch_size = cfg.batch_size
        self._base, self._clips = base, clips

    def setup(self, run: Run) -> None:
        c, device = self.cfg, run.device
        self.run = run
        if (
            self._base is not None
        ):  # a graph's model: train a copy of its U-Net (motions applied to it baked in)
            unet = copy.deepcopy(self._base.unet)
            add_motions(unet, self._base.motions)
            model = VideoModel(unet, self._base.vae, self._base.text_encoder, self._base.tokenizer,
                               self._base.scheduler_config, self._base.source)  # fmt: skip
        else:
            model = load_base(c)
        self.architecture = model.architecture
        clips = self._clips if self._clips is not None else scan_clips(c.clips, "clips")
        self.dataset = ClipDataset(clips, c.frames, c.height, c.width, c.token or None, c.seed)
        self.prior = None
        if c.regularization and c.prior_weight > 0:
            reg = scan_clips(c.regularization, "regularization")
            self.prior = ClipDataset(reg, c.frames, c.height, c.width, None, c.seed + 1)
        unet = model.unet.to(device, torch.float32)
        names = set_trainable(unet, c.trainable)
        params = dict(unet.named_parameters())
        self.base_values = {n: params[n].detach().to("cpu", torch.float32, copy=True) for n in names}
        self.base_fingerprint = base_fingerprint(unet, names)
        if c.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        for m in (model.vae, model.text_encoder):
            m.requires_grad_(False).eval().to(device)
        optimizer = torch.optim.AdamW([params[n] for n in names], lr=c.lr, weight_decay=c.weight_decay)
        self.module, self.optimizer = run.accelerator.prepare(unet, optimizer)
        self.unet = run.accelerator.unwrap_model(self.module)
        self.model = VideoModel(self.unet, model.vae, model.text_encoder, model.tokenizer, model.scheduler_config,
                                model.source)  # fmt: skip
        self.param_names, self.params = names, [params[n] for n in names]
        self.noise_scheduler = make_noise_scheduler(model.scheduler_config)
        self.timesteps = TimestepSampler(self.noise_scheduler.config.num_train_timesteps, c.timestep_law,
                                         c.timestep_strength, c.min_timestep)  # fmt: skip
        self.texts = TextEmbeddingCache(model.tokenizer, model.text_encoder, device)
        self._posteriors: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ----- loss --------------------------------------------------------------------------------------------
    def _latents(self, pixels: torch.Tensor, keys: list[tuple], generator: torch.Generator) -> torch.Tensor:
        """[B, F, 3, H, W] -> latents [B, C, F, h, w] sampled from the VAE posterior (cached per clip window)."""
        vae, out = self.model.vae, []
        for clip, key in zip(pixels, keys, strict=True):
            if key not in self._posteriors:
                with torch.no_grad():
                    dist = vae.encode(clip.to(vae.device, vae.dtype)).latent_dist
                self._posteriors[key] = (dist.mean.float().cpu(), dist.std.float().cpu())
            mean, std = self._posteriors[key]
            z = mean + std * torch.randn(mean.shape, generator=generator)
            out.append((z * vae.config.scaling_factor).permute(1, 0, 2, 3))
        return torch.stack(out).to(self.run.device)

    def _eps_loss(
        self, latents: torch.Tensor, text: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        t = self.timesteps(b, generator).to(latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        if self.architecture == "animatediff":
            pred = run_motion_unet(self.module, noisy, t, text)
        else:
            pred = self.module(noisy, t, encoder_hidden_states=text).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        return F.mse_loss(pred.float(), target.float())

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        ds = self.dataset
        keys = [("clip", int(i), ds.start(int(i))) for i in batch["index"]]
        latents = self._latents(batch["pixels"], keys, generator)
        loss = self._eps_loss(latents, self.texts(list(batch["caption"])), generator)
        if self.prior is not None:
            idx = torch.randint(len(self.prior), (1,), generator=generator).item()
            self.prior.set_epoch(self.run.state.epoch)
            item = self.prior[idx]
            prior_latents = self._latents(
                item["pixels"][None], [("prior", idx, self.prior.start(idx))], generator
            )
            loss = loss + self.cfg.prior_weight * self._eps_loss(prior_latents, self.texts([item["caption"]]),
                                                                 generator)  # fmt: skip
        return loss

    # ----- export, preview ---------------------------------------------------------------------------------
    def motion(self):
        c = self.cfg
        extra = {"frames": c.frames, "height": c.height, "width": c.width, "prior_weight": c.prior_weight,
                 "timestep_law": c.timestep_law, "base": self.model.source}  # fmt: skip
        return extract_motion(self.base_values, self.unet, self.param_names, token=c.token, trainable=c.trainable,
                              steps=self.run.state.step, extra=extra)  # fmt: skip

    def export(self) -> None:
        ema = self.run.ema
        with ema.applied(self.params) if ema is not None else nullcontext():
            motion = self.motion()
        atomic_write_dir(self.final, lambda tmp: save_motion(motion, tmp / MOTION_FILE))

    def preview(self, step: int) -> torch.Tensor | None:
        c = self.cfg
        prompt = c.preview_prompt or self.dataset.caption(0) or insert_token("", c.token)
        was_training = self.unet.training
        self.unet.eval()
        try:
            return generate(self.model, prompt, num_frames=c.frames, height=c.height, width=c.width, steps=20,
                            seed=c.seed)  # fmt: skip
        finally:
            self.unet.train(was_training)

    def checkpoint_info(self) -> dict:
        return {"base_fingerprint": self.base_fingerprint}

    def load_checkpoint(self, folder: Path, saved: dict) -> None:
        """A run resumed on another base would mix two models' deltas: refuse it by name."""
        recorded = saved.get("base_fingerprint")
        if recorded is not None and recorded != self.base_fingerprint:
            raise InputError(
                "resume",
                "the base this run was started on (same model, motion module and motions applied before it)",
                f"{folder} was trained on another base; use a new output name or turn resume off",
            )

    def describe(self, state: TrainState) -> str:
        c = self.cfg
        prior = (
            f"prior λ {c.prior_weight} on {len(self.prior)} clips" if self.prior is not None else "no prior"
        )
        return (f"training motion {c.token!r} into a {self.architecture} model on {len(self.dataset)} clips "
                f"({c.trainable} set, {len(self.params)} tensors, {sum(p.numel() for p in self.params):,} values), "
                f"{prior}, timesteps {c.timestep_law}{f' from t={c.min_timestep}' if c.min_timestep else ''}, "
                f"steps {state.step}->{c.max_steps}")  # fmt: skip

    def result(self) -> Path:
        return self.final / MOTION_FILE


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview: Callable[[int, torch.Tensor], None] | None = None,
    base: VideoModel | None = None,
    clips: list[ClipSource] | None = None,
) -> Path:
    """Train; returns OUTDIR/final/motion.safetensors. `base`/`clips` replace --zeroscope/--model and --clips
    (a graph's model and frames); `should_stop()` ends the run early with a checkpoint and an export."""
    config.validate(has_model=base is not None, has_clips=clips is not None)
    settings = LoopSettings.from_config(config)
    return fit(MotionTraining(config, base, clips), settings, Callbacks(progress, should_stop, preview))


CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.motion_custom.train",
    description="Customize a motion into a text-to-video model (Materzynska et al. 2023).",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main

if __name__ == "__main__":
    raise SystemExit(main())
