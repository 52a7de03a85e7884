"""Train BiDiff's parts for an SD1.5-architecture base (pipeline_sd.py) on the 3D world (common/training.py).

The base (U-Net, VAE, CLIP) stays frozen, as the paper keeps its IF frozen; what trains is the adapter
(cross-view attention, view embeddings, ControlNet: multiview_sd.py) and the 3D denoiser on the base's
latents. Per micro-batch of world scenes: clean views x0 [B, V, 3, S, S] (NeuS renders of the exact scene
from the world rig, in [-1, 1]), their latents z0 (VAE mean x scaling factor), the scene's grid;
t ~ U{min_timestep..T-1} on the base's schedule, z_t = DDPM(z0, eps, t):

    grid = Volume(z_t, t, words)                     the 2D -> 3D reconstruction
    L_3d = MSE(grid, grid_gt) + MSE(render(grid), x0)
    pred = SD + adapter(z_t, t, CLIP(text), control = render(grid).detach(), kept with prob 1 - p_3d)
    L    = MSE(pred, eps or v, as the base's scheduler predicts) + λ_3d L_3d

Text is dropped to the empty prompt with probability `caption_dropout` and the 3D control with
`control_dropout`, so one adapter gives the three branches of decoupled guidance.

    python -m models.bidiff.train_bidiff_sd --base SD_FOLDER_OR_FILE --out OUTDIR [--max-steps N]

Output: OUTDIR/final/bidiff_sd.safetensors (EMA weights, float16, configs in the metadata).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if __name__ == "__main__":  # `python -m models.bidiff.train_bidiff_sd`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError
from ..common.loading import load_model_fresh
from ..common.text import encode_prompts
from ..common.timesteps import TimestepSampler
from ..common.training import (
    Callbacks,
    LoopSettings,
    Run,
    TrainingMethod,
    TrainState,
    atomic_write_dir,
    available_memory,
    fit,
)
from . import train_bidiff
from .grid_prior import scene_grid
from .if_base import is_if_folder, load_if_folder
from .mesh_data import scenes_of
from .pipeline import shape_views
from .pipeline_sd import SDBiDiff, encode_views, save_sd_bidiff
from .volume import check_training_memory

MODEL_FILE = "bidiff_sd.safetensors"


@dataclass(kw_only=True)
class TrainConfig(train_bidiff.TrainConfig):
    """train_bidiff's options (data, views, grid, losses, loop) with the SD base and its defaults."""

    base: str = option(
        help="the 2D prior: an SD1.5-architecture model (diffusers folder or single-file "
        "checkpoint) or a DeepFloyd IF stage I diffusers folder (views of 64 px)"
    )
    size: int = option(256, "view size in pixels (a multiple of the base's pixel multiple)", group="model")
    lr: float = option(1e-4, "AdamW learning rate")
    batch_size: int = option(1, "per-process micro-batch size (scenes; each has `views` images)")
    min_timestep: int = option(
        0,
        "draw training timesteps from [min_timestep, T) only (0: all, the default). At high noise the frozen "
        "base falls back to its own prior and the ControlNet must impose the layout; a phase with e.g. 500 "
        "trains exactly there (common/timesteps.py)",
    )


def load_base(path: str):
    """The 2D prior to train for: an IF stage I folder (pixel space) or an SD1.5-architecture model."""
    return load_if_folder(path) if is_if_folder(path) else load_model_fresh(path)


class WorldLatents:
    """Item i: scene i's clean views and their latents (cached after the first render), grid, caption."""

    def __init__(self, cfg: TrainConfig, model: SDBiDiff, vae, scenes=None):
        self.cfg, self.model, self.vae, self.cache = cfg, model, vae, {}
        self.scenes = scenes if scenes is not None else scenes_of(cfg)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        if i not in self.cache:
            scene = self.scenes.scene(i)
            views = shape_views(scene.shape3d(), self.model.volume).cpu()
            with torch.no_grad():
                latents = encode_views(self.vae, views).float().cpu()
            grid = scene_grid(scene.sdf, scene.color, self.cfg.resolution)
            words = self.model.words(scene.caption)[0].cpu()
            self.cache[i] = {"views": views.half(), "latents": latents, "grid": grid.half(), "words": words,
                             "caption": scene.caption}  # fmt: skip
        item = self.cache[i]
        return {**item, "views": item["views"].float(), "grid": item["grid"].float()}


class SDBiDiffTraining(TrainingMethod):
    def __init__(self, cfg: TrainConfig, base=None):
        super().__init__()
        self.given_base = (
            base  # SDComponents already loaded (the node's bridged model), else cfg.base is read
        )
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"
        self.batch_size = cfg.batch_size

    def setup(self, run: Run) -> None:
        from diffusers import DDPMScheduler

        c = self.cfg
        self.run = run
        check_training_memory(c.resolution, c.batch_size, available_memory(run.device))
        base = self.given_base if self.given_base is not None else load_base(c.base)
        for module in base.modules():  # frozen: only hooks are attached to it, its weights are never written
            module.to(run.device).eval().requires_grad_(False)
        if c.size % base.pixel_multiple:
            raise InputError("size", f"a multiple of {base.pixel_multiple} for this model", str(c.size))
        self.base = base
        torch.manual_seed(c.seed)
        scenes = scenes_of(c)
        words = scenes.vocabulary()
        model = SDBiDiff.fresh(base.unet, c.views, c.size, resolution=c.resolution, vocabulary=words).train()
        self.dataset = WorldLatents(c, model, base.vae, scenes)
        self.scheduler = DDPMScheduler.from_config(base.scheduler_config)
        self.timesteps = TimestepSampler(
            self.scheduler.config.num_train_timesteps, "uniform", min_timestep=c.min_timestep
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=0.0)
        self.module, self.optimizer = run.accelerator.prepare(model, optimizer)
        self.model = run.accelerator.unwrap_model(self.module)
        self.param_names, self.params = map(list, zip(*self.model.named_parameters(), strict=True))

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        c, dev = self.cfg, self.run.device
        x0, z0 = batch["views"].to(dev), batch["latents"].to(dev)
        grid_gt, words = batch["grid"].to(dev), batch["words"].to(dev)
        b = x0.shape[0]
        drop_text = (torch.rand(b, generator=generator) < c.caption_dropout).tolist()
        keep_3d = (torch.rand(b, generator=generator) >= c.control_dropout).float()
        captions = ["" if drop else text for drop, text in zip(drop_text, batch["caption"], strict=True)]
        text = encode_prompts(self.base, captions, dev)
        t = self.timesteps(b, generator)
        noise = torch.randn(z0.shape, generator=generator).to(dev)
        zt = self.scheduler.add_noise(z0, noise, t)
        v_pred = self.scheduler.config.prediction_type == "v_prediction"
        target = self.scheduler.get_velocity(z0, noise, t) if v_pred else noise
        model = self.model
        grid = model.volume(zt, t.to(dev), words)
        renders = model.volume.render(grid)
        loss_3d = F.mse_loss(grid, grid_gt) + F.mse_loss(renders, x0)
        hint = (renders.detach().clamp(-1, 1) + 1) / 2
        pred = model.adapter.predict(self.base.unet, zt, t.to(dev), text, hint, keep_3d)
        loss_2d = F.mse_loss(pred.float(), target)
        self.last = {"loss_2d": loss_2d.detach(), "loss_3d": loss_3d.detach()}
        return loss_2d + c.lambda_3d * loss_3d

    def describe(self, state: TrainState) -> str:
        return f"training BiDiff's SD adapter + 3D denoiser on the 3D world, steps {state.step}->{self.cfg.max_steps}"

    def export(self) -> None:
        ema = self.run.ema
        with ema.applied(self.params) if ema is not None else nullcontext():
            atomic_write_dir(self.final, lambda folder: save_sd_bidiff(self.model, folder / MODEL_FILE))

    def result(self) -> Path:
        return self.final / MODEL_FILE


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    base=None,
) -> Path:
    """Train; returns OUTDIR/final/bidiff_sd.safetensors. `base`: the SD model's components when already
    loaded (then `config.base` only names it)."""
    config.validate()
    method = SDBiDiffTraining(config, base)
    return fit(method, LoopSettings.from_config(config), Callbacks(progress, should_stop))


CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.bidiff.train_bidiff_sd",
    description="Train BiDiff's cross-view attention, view embeddings, ControlNet and 3D denoiser for an SD1.5 base.",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
