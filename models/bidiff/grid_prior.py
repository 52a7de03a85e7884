"""The world's 3D prior: a text-conditioned diffusion over small SDF + colour grids, behind the Prior3D
interface that Shap-E also implements (BiDiff's 3D prior is Shap-E; a Shap-E-size model cannot be trained
on 2 CPU cores, so the world gets a grid diffusion of the same role — issue 18 proposes exactly this).

Grid: [4, R, R, R] over [-1, 1]^3 (corners on the cube's corners, axis 0 = x): channel 0 the SDF truncated
to +-TRUNC and divided by it (so the grid holds [-1, 1], -1 deep inside), channels 1..3 the colour mapped
to [-1, 1]. Denoiser: a 3D U-Net (GroupNorm, SiLU, FiLM of a time + text embedding in every block).
Text: a world-vocabulary word embedding with positions, one transformer layer and mean pooling (our
interpretation: it stands in for Shap-E's CLIP text encoder; captions of other words map to "unknown").
Diffusion: diffusers' DDPM cosine schedule, v-prediction; sampling with DDIM and classifier-free guidance
(the empty prompt is the unconditional branch).

File: one `.safetensors` with the JSON config in its metadata (key "bidiff_grid_prior").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.config_file import load_with_config, save_with_config
from ..common.errors import InputError
from . import slabs
from .prior3d import Prior3D, Shape3D, check_prompt, grid_shape
from .world import world_vocabulary

TRUNC = 0.3  # SDF truncation (world units): the grid holds sdf / TRUNC clamped to [-1, 1]
META_KEY = "bidiff_grid_prior"
PAD, UNK = 0, 1  # token ids; words start at 2


@dataclass
class GridPriorConfig:
    resolution: int = 16
    channels: tuple[int, ...] = (32, 64, 128)
    emb: int = 128
    text_layers: int = 1
    max_tokens: int = 16
    vocabulary: list[str] = field(default_factory=world_vocabulary)
    trunc: float = TRUNC
    train_timesteps: int = 1000
    in_channels: int = 4  # the prior's grids; BiDiff's 3D denoiser feeds back-projected features


def tokenize(prompts: list[str], vocabulary: list[str], max_tokens: int) -> torch.Tensor:
    """Word ids [B, max_tokens] (PAD after the words, UNK for words outside the vocabulary)."""
    index = {w: i + 2 for i, w in enumerate(vocabulary)}
    out = torch.full((len(prompts), max_tokens), PAD, dtype=torch.long)
    for b, text in enumerate(prompts):
        words = text.lower().replace(",", " ").replace(".", " ").split()[:max_tokens]
        out[b, : len(words)] = torch.tensor([index.get(w, UNK) for w in words], dtype=torch.long)
    return out


class TextEncoder(nn.Module):
    """Words -> one pooled vector; an all-PAD prompt (the empty prompt) gives a learnt null vector."""

    def __init__(self, vocab: int, dim: int, layers: int, max_tokens: int):
        super().__init__()
        self.words = nn.Embedding(vocab + 2, dim, padding_idx=PAD)
        self.positions = nn.Parameter(torch.zeros(max_tokens, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == PAD
        empty = pad.all(-1)
        h = self.words(tokens) + self.positions[: tokens.shape[1]]
        h = self.layers(h, src_key_padding_mask=pad & ~empty[:, None])
        keep = (~pad).to(h.dtype)[..., None]
        pooled = (h * keep).sum(1) / keep.sum(1).clamp_min(1)
        return torch.where(empty[:, None], self.null.expand_as(pooled), pooled)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], -1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    """Conv residual block (3D grids or 2D images) with FiLM of an embedding; its output conv starts at 0."""

    def __init__(self, cin: int, cout: int, emb: int, dims: int = 3):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.dims = dims
        self.norm1, self.conv1 = _norm(cin), conv(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = _norm(cout), conv(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).reshape(*emb.shape[:1], -1, *([1] * self.dims)).chunk(2, 1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


ResBlock3d = ResBlock


class GridUNet(nn.Module):
    """eps/v-denoiser of [B, 4, R, R, R] grids; R divisible by 2^(levels-1)."""

    def __init__(self, config: GridPriorConfig):
        super().__init__()
        c, e = list(config.channels), config.emb
        self.config = config
        self.text = TextEncoder(len(config.vocabulary), e, config.text_layers, config.max_tokens)
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.cond = nn.Sequential(nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Conv3d(config.in_channels, c[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, ch in enumerate(c):
            self.down.append(ResBlock3d(c[max(i - 1, 0)] if i else c[0], ch, e))
            self.downsample.append(nn.Conv3d(ch, ch, 3, stride=2, padding=1) if i < len(c) - 1 else None)
        self.mid = ResBlock3d(c[-1], c[-1], e)
        self.up = nn.ModuleList()
        for i in reversed(range(len(c))):
            self.up.append(ResBlock3d(c[min(i + 1, len(c) - 1)] + c[i], c[i], e))
        self.out_norm, self.out = _norm(c[0]), nn.Conv3d(c[0], 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, slab: int | None = None
    ) -> torch.Tensor:
        """With `slab`, every residual block runs `slab` planes at a time (slabs.py: the same numbers, a
        fraction of the memory at large grids; for inference)."""
        emb = self.cond(self.time(timestep_embedding(t, self.config.emb)) + self.text(tokens))

        def run(block: ResBlock, parts: list) -> torch.Tensor:
            if slab is not None:
                return slabs.resblock_in_slabs(block, parts, emb, slab)
            return block(parts[0] if len(parts) == 1 else torch.cat(parts, 1), emb)

        h, skips = (self.inp(x) if slab is None else slabs.slab_conv([x], self.inp, slab)), []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = run(block, [h])
            skips.append(h)
            if down is not None:
                h = down(h)
        h = run(self.mid, [h])
        for block in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                if slab is not None and all(2 * a == b for a, b in zip(h.shape[2:], skip.shape[2:])):
                    h = slabs.Upsampled(h)  # built slab by slab inside the block
                else:
                    h = F.interpolate(h, size=skip.shape[-3:], mode="nearest")
            h = run(block, [h, skip])
            del skip
        if slab is not None:
            return slabs.slab_conv([h], self.out, slab, self.out_norm)
        return self.out(F.silu(self.out_norm(h)))


def noise_scheduler(config: GridPriorConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )


# ----------------------------------------------------------------------------------------------------
# Grids <-> shapes


def scene_grid(sdf: Callable, color: Callable, resolution: int, trunc: float = TRUNC) -> torch.Tensor:
    """[4, R, R, R] model-space grid of a shape's fields (what the prior is trained to produce)."""
    from ..common.isosurface import grid_points

    p = grid_points(resolution, 1.0, dtype=torch.float32).reshape(-1, 3)
    d = (sdf(p) / trunc).clamp(-1, 1)
    col = color(p) * 2 - 1
    return torch.cat([d[:, None], col], 1).T.reshape(4, resolution, resolution, resolution)


def grid_to_shape(grid: torch.Tensor, trunc: float, prompt: str = "", source: str = "grid prior") -> Shape3D:
    """Model-space grid -> Shape3D (SDF in world units, colour in [0, 1])."""
    world = torch.cat([grid[:1].clamp(-1, 1) * trunc, (grid[1:] + 1) / 2], 0)
    return grid_shape(world, prompt, source)


# ----------------------------------------------------------------------------------------------------
# The prior


class GridPrior(Prior3D):
    """The grid diffusion as a Prior3D: DDIM with classifier-free guidance."""

    name = "world grid prior"
    default_guidance = 3.0
    default_steps = 25

    def __init__(self, model: GridUNet, device: torch.device | str = "cpu"):
        self.model = model.eval().to(device)
        self.config = model.config
        self.device = torch.device(device)

    @torch.no_grad()
    def sample_grids(
        self,
        prompt: str,
        *,
        seed: int = 0,
        count: int = 1,
        guidance: float | None = None,
        steps: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        unconditional: bool = False,
    ) -> torch.Tensor:
        """Grids [count, 4, R, R, R] in model space; `unconditional` samples the empty prompt (a baseline)."""
        from diffusers import DDIMScheduler

        prompt = "" if unconditional else check_prompt(prompt)
        guidance = self.default_guidance if guidance is None else float(guidance)
        steps = self.default_steps if steps is None else int(steps)
        if steps < 1:
            raise InputError("steps", "at least 1", str(steps))
        if count < 1:
            raise InputError("count", "at least 1", str(count))
        c, dev = self.config, self.device
        sched = DDIMScheduler.from_config(noise_scheduler(c).config, set_alpha_to_one=False)
        sched.set_timesteps(steps)
        r = c.resolution
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn(count, 4, r, r, r, generator=g).to(dev)
        cond = tokenize([prompt] * count, c.vocabulary, c.max_tokens).to(dev)
        uncond = torch.zeros_like(cond)
        dtype = next(self.model.parameters()).dtype
        for i, t in enumerate(sched.timesteps):
            if should_stop is not None and should_stop():
                raise InterruptedError("3D prior sampling was cancelled")
            tt = t.expand(count).to(dev)
            if guidance == 1.0:
                out = self.model(x.to(dtype), tt, cond).float()
            else:
                both = self.model(torch.cat([x, x]).to(dtype), torch.cat([tt, tt]), torch.cat([cond, uncond]))
                oc, ou = both.float().chunk(2)
                out = ou + guidance * (oc - ou)
            x = sched.step(out, t, x).prev_sample
            if progress is not None:
                progress(i + 1, steps)
        return x

    def sample(self, prompt: str, **kw) -> list[Shape3D]:
        grids = self.sample_grids(prompt, **kw)
        return [grid_to_shape(g, self.config.trunc, prompt.strip(), self.name) for g in grids]


def save_grid_prior(model: GridUNet, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    return save_with_config(model, path, META_KEY, asdict(model.config), dtype)


def load_grid_prior(path: str | Path, device: torch.device | str = "cpu") -> GridPrior:
    """A GridPrior from a file of `save_grid_prior` (weights computed in float32)."""
    state, raw = load_with_config(
        path, META_KEY, "BiDiff grid prior",
        "train one with `python -m models.bidiff.train_prior` or load Shap-E with 'BiDiff: Load Shap-E'",
    )  # fmt: skip
    raw["channels"] = tuple(raw["channels"])
    model = GridUNet(GridPriorConfig(**raw))
    model.load_state_dict(state)
    return GridPrior(model, device)
