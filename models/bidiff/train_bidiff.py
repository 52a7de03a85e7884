"""Train BiDiff's bidirectional parts (multiview.py, volume.py) jointly on the 3D world (common/training.py).

Per micro-batch of world scenes: clean views x0 [B, V, 3, S, S] (NeuS renders of the exact scene from the
world rig, in [-1, 1]) and the scene's model-space grid; t ~ U{0..999}, x_t = DDPM(x0, eps, t):

    grid = Volume(x_t, t, text)                     the 2D -> 3D reconstruction
    L_3d = MSE(grid, grid_gt) + MSE(render(grid), x0)
    v    = MultiView(x_t, t, text, control = render(grid).detach(), control kept with prob 1 - p_3d)
    L    = MSE(v, v_target) + λ_3d L_3d

Text is dropped to the empty prompt with probability `caption_dropout` and the 3D control with
`control_dropout`, so one model gives the three branches of decoupled guidance (pipeline.py). Our
interpretation: the paper trains its 3D denoiser and ControlNet on a frozen IF; at world size everything
trains from scratch together, and the control is the 3D branch's own (detached) render, so the 2D model
learns to use what the 3D branch will give it at sampling time.

    python -m models.bidiff.train_bidiff --out OUTDIR [--max-steps N]

Output: OUTDIR/final/bidiff.safetensors (EMA weights, float16, configs in the metadata).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if __name__ == "__main__":  # `python -m models.bidiff.train_bidiff`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError
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
from .grid_prior import scene_grid, tokenize
from .mesh_data import scenes_of
from .multiview import MultiViewConfig
from .pipeline import BiDiffModel, save_bidiff
from .volume import VolumeConfig, check_training_memory

MODEL_FILE = "bidiff.safetensors"


@dataclass
class TrainConfig:
    out: str = option(help="output folder (checkpoints, log.csv, final/)")
    data: str | None = option(
        None, "a folder of meshes + .txt captions (mesh_data.py); none: the 3D world", group="data"
    )
    world_scenes: int = option(4000, "scenes of the 3D world to train on", group="data")
    world_seed: int = option(0, "seed of the 3D world", group="data")
    views: int = option(4, "views per scene (orbit, elevation 20°)", group="model")
    size: int = option(32, "view size in pixels", group="model")
    resolution: int = option(16, "3D grid resolution", group="model")
    lambda_3d: float = option(1.0, "weight of the 3D branch's losses")
    caption_dropout: float = option(0.1, "probability of the empty prompt")
    control_dropout: float = option(0.3, "probability of sampling without the 3D control")
    lr: float = option(3e-4, "AdamW learning rate")
    batch_size: int = option(8, "per-process micro-batch size (scenes)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    max_steps: int = option(3000, "optimizer steps")
    ema_decay: float = option(0.999, "EMA decay of the exported weights; 0 disables")
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables")
    seed: int = option(0, "seed of initial weights, data order and every random draw")
    save_every: int = option(250, "checkpoint + export every N steps; 0 = at the end only")
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all")
    resume: str | None = option(None, "checkpoint-N folder, 'latest' or 'auto'")
    cpu: bool = option(False, "train on the CPU even where CUDA is available")

    def validate(self) -> None:
        for name in ("world_scenes", "views", "batch_size", "grad_accum", "max_steps"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        if self.size % 4 or self.size < 8:
            raise InputError("size", "a multiple of 4 (>= 8)", str(self.size))
        if self.resolution % 4 or self.resolution < 8:
            raise InputError("resolution", "a multiple of 4 (>= 8)", str(self.resolution))
        for name in ("caption_dropout", "control_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(name, "a probability in [0, 1]", str(getattr(self, name)))


class WorldViews:
    """Item i: scene i's clean views (cached after the first render), its grid and caption tokens."""

    def __init__(self, cfg: TrainConfig, model: BiDiffModel, scenes=None):
        self.cfg, self.model, self.cache = cfg, model, {}
        self.scenes = scenes if scenes is not None else scenes_of(cfg)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        if i not in self.cache:
            scene = self.scenes.scene(i)
            views = self.model.shape_views(scene.shape3d()).cpu().half()
            grid = scene_grid(scene.sdf, scene.color, self.cfg.resolution).half()
            c = self.model.multiview.config
            tokens = tokenize([scene.caption], c.vocabulary, c.max_tokens)[0]
            self.cache[i] = {"views": views, "grid": grid, "tokens": tokens}
        item = self.cache[i]
        return {"views": item["views"].float(), "grid": item["grid"].float(), "tokens": item["tokens"]}


class BiDiffTraining(TrainingMethod):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"
        self.batch_size = cfg.batch_size

    def setup(self, run: Run) -> None:
        c = self.cfg
        self.run = run
        check_training_memory(c.resolution, c.batch_size, available_memory(run.device))
        scenes = scenes_of(c)
        words = scenes.vocabulary()
        model = BiDiffModel(
            MultiViewConfig(views=c.views, size=c.size, vocabulary=words),
            VolumeConfig(views=c.views, size=c.size, resolution=c.resolution, vocabulary=words),
        ).train()
        self.dataset = WorldViews(c, model, scenes)
        self.scheduler = model.scheduler
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=0.0)
        self.module, self.optimizer = run.accelerator.prepare(model, optimizer)
        self.model = run.accelerator.unwrap_model(self.module)
        self.param_names, self.params = map(list, zip(*self.model.named_parameters(), strict=True))

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        c, dev = self.cfg, self.run.device
        x0, grid_gt, tokens = batch["views"].to(dev), batch["grid"].to(dev), batch["tokens"].to(dev)
        b = x0.shape[0]
        drop_text = torch.rand(b, generator=generator) < c.caption_dropout
        keep_3d = (torch.rand(b, generator=generator) >= c.control_dropout).float()
        tokens = torch.where(drop_text[:, None].to(dev), torch.zeros_like(tokens), tokens)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        xt = self.scheduler.add_noise(x0, noise, t)
        target = self.scheduler.get_velocity(x0, noise, t)
        model = self.model
        grid = model.volume(xt, t.to(dev), tokens)
        renders = model.volume.render(grid)
        loss_3d = F.mse_loss(grid, grid_gt) + F.mse_loss(renders, x0)
        v = model.multiview(xt, t.to(dev), tokens, renders.detach(), keep_3d)
        self.last = {"loss_2d": F.mse_loss(v, target).detach(), "loss_3d": loss_3d.detach()}
        return F.mse_loss(v, target) + c.lambda_3d * loss_3d

    def describe(self, state: TrainState) -> str:
        return f"training BiDiff (2D multi-view + 3D volume) on the 3D world, steps {state.step}->{self.cfg.max_steps}"

    def export(self) -> None:
        ema = self.run.ema
        with ema.applied(self.params) if ema is not None else nullcontext():
            atomic_write_dir(self.final, lambda folder: save_bidiff(self.model, folder / MODEL_FILE))

    def result(self) -> Path:
        return self.final / MODEL_FILE


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train; returns OUTDIR/final/bidiff.safetensors."""
    config.validate()
    return fit(BiDiffTraining(config), LoopSettings.from_config(config), Callbacks(progress, should_stop))


CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.bidiff.train_bidiff",
    description="Train BiDiff's multi-view 2D model, ControlNet and 3D volume denoiser on the 3D world.",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
