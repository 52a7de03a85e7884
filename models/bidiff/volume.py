"""BiDiff's 3D branch: from the current noisy multi-view images to an SDF + colour grid and its renders
(the 2D -> 3D direction; its renders are the 3D x̂0 that guide the 2D branch).

As in the paper (Sec. 3.2), features of the noisy views are back-projected into a feature volume and a 3D
network turns it into the shape: here a small 2D CNN gives each view's pixels features (FiLM of time and
text), every voxel centre of an R³ grid over [-1, 1]³ is projected into every view and samples them
bilinearly, the views' mean and variance form the volume (variance says where views disagree: off the
surface), and a 3D U-Net (grid_prior.GridUNet, same blocks) maps it to the model-space grid of
grid_prior.py (SDF / TRUNC, colour in [-1, 1]). The paper's volume is sparse (96³) and its mesh comes from
DMTet; ours is dense (back-projected in chunks of points; the shipped world model is 16³), rendered by NeuS
(common/sdf_render.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..common.camera import orbit_rig, project
from ..common.errors import InputError
from ..common.isosurface import grid_points
from ..common.sdf_render import render_views
from .grid_prior import TRUNC, GridPriorConfig, GridUNet, ResBlock, grid_to_shape, timestep_embedding
from .world import world_vocabulary

ELEVATION, RADIUS, FOV = 20.0, 3.0, 40.0  # the world's multi-view rig (export.py's orbit views)


@dataclass
class VolumeConfig:
    views: int = 4
    size: int = 32
    resolution: int = 16
    features: int = 16
    channels: tuple[int, ...] = (32, 64, 64)
    emb: int = 128
    render_samples: int = 32
    inv_s: float = 64.0
    vocabulary: list[str] = field(default_factory=world_vocabulary)
    # channels of the views it reads: 3 (pixels) or the latent channels of an SD 2D branch
    in_channels: int = 3


# Work memory of one training step of the 3D branch per scene and voxel (autograd through the back-
# projection, the dense 3D U-Net and the renders). Measured: the pixel trainer's step above its start, one
# scene, 32 px views: 162 / 313 / 627 / 1 237 MB at 16³ / 32³ / 48³ / 64³ (~145 MB + 4.2 KB per voxel;
# 4.5 KB is used, rounded up; one-off measurement, 2026-12-06).
TRAIN_BYTES_PER_VOXEL = 4608


def check_training_memory(resolution: int, batch: int, available: int | None) -> None:
    """Refuse, before allocating, a training grid whose 3D branch alone would not fit in `available` bytes."""
    need = batch * resolution**3 * TRAIN_BYTES_PER_VOXEL
    if available is not None and need > 0.9 * available:
        raise InputError(
            "resolution",
            f"a grid whose training step fits in memory: {resolution}³ with batch {batch} needs about "
            f"{need / 2**30:.1f} GB for the 3D branch, {available / 2**30:.1f} GB is available (lower "
            "resolution or batch_size)",
            str(resolution),
        )


def world_rig(views: int, size: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The V cameras of the multi-view set (azimuths 0, 360/V, ...; elevation 20°; 3 units away)."""
    return orbit_rig(views, RADIUS, ELEVATION, FOV, size, size, dtype=dtype)


POINT_CHUNK = 32768  # voxels back-projected at a time (benchmarks/bidiff_volume.py: the stage's peak)
SLAB_DEPTH = 16  # planes per slab of the 3D U-Net when no gradient is needed (slabs.py) ...
SLAB_FROM = 64  # ... at grids this large and up (below it, slabs saved no memory and cost time)


def back_project(
    features: torch.Tensor, uv: torch.Tensor, chunk: int | None = POINT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view features [B, V, C, H, W] sampled where each of N points projects (uv [V, N, 2] in
    grid_sample's [-1, 1], x then y; bilinear, zero outside the image) -> their mean and variance over the
    views, [B, C, N] each.

    Points go `chunk` at a time: the per-view samples [B, V, C, chunk] are the stage's largest tensor, V
    times the result (at 96³, 4 views, 16 channels: 226 MB whole). `None` takes all points at once."""
    n = uv.shape[1]
    if chunk is None or n <= chunk:
        return _view_statistics(features, uv)
    b, c = features.shape[0], features.shape[2]
    mean = features.new_empty(b, c, n)
    var = features.new_empty(b, c, n)
    for lo in range(0, n, chunk):
        mean[..., lo : lo + chunk], var[..., lo : lo + chunk] = _view_statistics(
            features, uv[:, lo : lo + chunk]
        )
    return mean, var


def _view_statistics(features: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, v, c = features.shape[:3]
    grid = uv[None].expand(b, -1, -1, -1).reshape(b * v, -1, 1, 2).to(features.dtype)
    samples = torch.nn.functional.grid_sample(features.reshape(b * v, c, *features.shape[3:]), grid,
                                              align_corners=False).reshape(b, v, c, -1)  # fmt: skip
    return samples.mean(1), samples.var(1, unbiased=False)


class VolumeDenoiser(nn.Module):
    def __init__(self, cfg: VolumeConfig):
        super().__init__()
        self.config = cfg
        e, f = cfg.emb, cfg.features
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.conv_in = nn.Conv2d(cfg.in_channels, f, 3, padding=1)
        self.block = ResBlock(f, f, e, dims=2)
        self.net = GridUNet(GridPriorConfig(resolution=cfg.resolution, channels=tuple(cfg.channels), emb=e,
                                            vocabulary=list(cfg.vocabulary), in_channels=2 * f))  # fmt: skip
        K, E = world_rig(cfg.views, cfg.size)
        self.register_buffer("K", K, persistent=False)
        self.register_buffer("E", E, persistent=False)
        pts = grid_points(cfg.resolution, 1.0, dtype=torch.float32).reshape(-1, 3)
        uv, _ = project(pts[None].expand(cfg.views, -1, -1), K, E)  # [V, R^3, 2] pixels
        self.register_buffer("uv", uv / cfg.size * 2 - 1, persistent=False)  # grid_sample's [-1, 1]
        self.point_chunk: int | None = POINT_CHUNK  # back-projection chunk (None: all voxels at once)
        self.slab_depth: int | None = SLAB_DEPTH  # 3D U-Net planes per slab without autograd (None: dense)

    def volume(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Views [B, V, C, s, s] (pixels, or latents of any size: the projection is in normalised image
        coordinates) -> back-projected features [B, 2F, R, R, R] (mean, variance over views)."""
        b, v = x.shape[:2]
        emb = self.time(timestep_embedding(t, self.config.emb)).repeat_interleave(v, 0)
        feats = self.block(self.conv_in(x.reshape(b * v, *x.shape[2:])), emb)  # [B V, F, S, S]
        mean, var = back_project(feats.reshape(b, v, *feats.shape[1:]), self.uv, self.point_chunk)
        r = self.config.resolution
        return torch.cat([mean, var], 1).reshape(b, -1, r, r, r)

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Model-space grids [B, 4, R, R, R] of the shape the noisy views show."""
        slab = self.slab_depth
        if torch.is_grad_enabled() or slab is None or self.config.resolution < SLAB_FROM:
            slab = None  # training keeps the dense blocks (slabs keep no graph across slabs)
        return self.net(self.volume(x, t), t, tokens, slab=slab)

    def render(self, grids: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """Views [B, V, 3, S, S] in [-1, 1] of model-space grids (differentiable): the 3D x̂0."""
        c = self.config
        out = []
        for g in grids:
            shape = grid_to_shape(g, TRUNC)
            img = render_views(shape.sdf, shape.color, self.K, self.E, c.size, c.size,
                               samples=samples or c.render_samples, inv_s=c.inv_s)["image"]  # fmt: skip
            out.append(img.permute(0, 3, 1, 2) * 2 - 1)
        return torch.stack(out)
