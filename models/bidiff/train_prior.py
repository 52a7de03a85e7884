"""Train the world's 3D prior (grid_prior.py) on the shared trainer (common/training.py).

Objective per micro-batch of world grids x0 [B, 4, R, R, R] (grid_prior.scene_grid of world scenes):
t ~ U{0..999}, x_t = DDPM(x0, eps, t) on the cosine schedule, the U-Net predicts v, loss = MSE(v_pred, v).
Captions are dropped to the empty prompt with probability `caption_dropout` (classifier-free guidance).

Data: world scenes make_scene(world_seed, i) for i < world_scenes, one object each by default (the world's
simplest distribution, chosen so a 2-core CPU learns it in about an hour; `--max-objects 2` adds pairs).
Held-out evaluation uses another world seed.

Usage (from the checkout root):

    python -m models.bidiff.train_prior --out OUTDIR [--max-steps N] [--resolution 16]

Output: OUTDIR/final/grid_prior.safetensors (EMA weights in float16, config in the metadata);
OUTDIR/checkpoint-N for --resume; OUTDIR/log.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if __name__ == "__main__":  # `python -m models.bidiff.train_prior`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError
from ..common.training import Callbacks, LoopSettings, Run, TrainingMethod, TrainState, atomic_write_dir, fit
from .grid_prior import GridPriorConfig, GridUNet, noise_scheduler, save_grid_prior, scene_grid, tokenize
from .world import make_scene

MODEL_FILE = "grid_prior.safetensors"


@dataclass
class TrainConfig:
    out: str = option(help="output folder (checkpoints, log.csv, final/)")
    world_scenes: int = option(20000, "scenes of the 3D world to train on", group="data")
    world_seed: int = option(0, "seed of the 3D world", group="data")
    max_objects: int = option(1, "objects per scene (1 or 2)", group="data")
    resolution: int = option(16, "grid resolution R (R^3 cells); divisible by 4", group="model")
    channels: str = option("32,64,128", "U-Net channels per level", group="model")
    emb: int = option(128, "time / text embedding width", group="model")
    caption_dropout: float = option(0.1, "probability of the empty prompt (classifier-free guidance)")
    lr: float = option(3e-4, "AdamW learning rate")
    batch_size: int = option(16, "per-process micro-batch size")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    max_steps: int = option(4000, "optimizer steps")
    ema_decay: float = option(0.999, "EMA decay of the exported weights; 0 disables")
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables")
    seed: int = option(0, "seed of initial weights, data order and every random draw")
    save_every: int = option(500, "checkpoint + export every N steps; 0 = at the end only")
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all")
    resume: str | None = option(None, "checkpoint-N folder, 'latest' or 'auto'")
    cpu: bool = option(False, "train on the CPU even where CUDA is available")

    def validate(self) -> None:
        for name in ("world_scenes", "batch_size", "grad_accum", "max_steps", "emb"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        if self.max_objects not in (1, 2):
            raise InputError("max_objects", "1 or 2", str(self.max_objects))
        levels = len(self.channel_list())
        if self.resolution < 2 ** (levels - 1) * 2 or self.resolution % 2 ** (levels - 1):
            raise InputError(
                "resolution", f"a multiple of {2 ** (levels - 1)} (>= {2**levels})", str(self.resolution)
            )
        if not 0 <= self.caption_dropout <= 1:
            raise InputError("caption_dropout", "a probability in [0, 1]", str(self.caption_dropout))

    def channel_list(self) -> tuple[int, ...]:
        try:
            out = tuple(int(c) for c in self.channels.split(","))
        except ValueError:
            raise InputError(
                "channels", "comma-separated integers such as 32,64,128", self.channels
            ) from None
        if not out or min(out) < 1:
            raise InputError("channels", "positive integers", self.channels)
        return out


class WorldGrids:
    """Map-style dataset: item i is scene i of the world as a model-space grid and its caption."""

    def __init__(self, cfg: TrainConfig, model_cfg: GridPriorConfig):
        self.cfg, self.model_cfg = cfg, model_cfg

    def __len__(self) -> int:
        return self.cfg.world_scenes

    def __getitem__(self, i: int) -> dict:
        scene = make_scene(self.cfg.world_seed, i, max_objects=self.cfg.max_objects)
        grid = scene_grid(scene.sdf, scene.color, self.model_cfg.resolution, self.model_cfg.trunc)
        tokens = tokenize([scene.caption], self.model_cfg.vocabulary, self.model_cfg.max_tokens)[0]
        return {"grid": grid, "tokens": tokens}


class GridPriorTraining(TrainingMethod):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"
        self.batch_size = cfg.batch_size

    def setup(self, run: Run) -> None:
        c = self.cfg
        self.run = run
        self.model_cfg = GridPriorConfig(resolution=c.resolution, channels=c.channel_list(), emb=c.emb)
        self.dataset = WorldGrids(c, self.model_cfg)
        self.scheduler = noise_scheduler(self.model_cfg)
        model = GridUNet(self.model_cfg).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=0.0)
        self.module, self.optimizer = run.accelerator.prepare(model, optimizer)
        self.model = run.accelerator.unwrap_model(self.module)
        self.param_names, self.params = map(list, zip(*self.model.named_parameters(), strict=True))

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        dev = self.run.device
        x0, tokens = batch["grid"].to(dev), batch["tokens"].to(dev)
        b = x0.shape[0]
        drop = torch.rand(b, generator=generator) < self.cfg.caption_dropout
        tokens = torch.where(drop[:, None].to(dev), torch.zeros_like(tokens), tokens)
        t = torch.randint(0, self.model_cfg.train_timesteps, (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        xt = self.scheduler.add_noise(x0, noise, t)
        target = self.scheduler.get_velocity(x0, noise, t)
        return F.mse_loss(self.module(xt, t.to(dev), tokens).float(), target)

    def describe(self, state: TrainState) -> str:
        c = self.cfg
        return (f"training the BiDiff world grid prior ({c.resolution}^3, {len(self.dataset)} scenes), "
                f"steps {state.step}->{c.max_steps}")  # fmt: skip

    def export(self) -> None:
        ema = self.run.ema
        with ema.applied(self.params) if ema is not None else nullcontext():
            atomic_write_dir(self.final, lambda folder: save_grid_prior(self.model, folder / MODEL_FILE))

    def result(self) -> Path:
        return self.final / MODEL_FILE


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train; returns OUTDIR/final/grid_prior.safetensors."""
    config.validate()
    return fit(GridPriorTraining(config), LoopSettings.from_config(config), Callbacks(progress, should_stop))


CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.bidiff.train_prior",
    description="Train the BiDiff world's 3D prior (an SDF + colour grid diffusion).",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
