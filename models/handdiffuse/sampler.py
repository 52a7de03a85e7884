"""DDPM noise schedule and a DDIM sampler for x0-predicting models, with keyframe imputation.

Keyframe control on the local representation is by imputation ("replacement"): at every step the known
entries of x_t are replaced by the keyframes noised to that step, the model's x0 is overwritten on the
known entries, and the result carries the keyframes exactly. The model only ever sees a consistent
partially-known sample, which is why training with random keyframe masks (issue 16) will help it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..common.errors import InputError

X0Fn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t [B]) -> predicted x0


def cosine_alphas_cumprod(steps: int = 1000, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal's cosine schedule, float64 [steps]: alpha-bar_t for t = 0 .. steps-1."""
    x = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Forward diffusion x_t = sqrt(ab) x0 + sqrt(1 - ab) noise for timesteps t [B]."""
    ab = alphas_cumprod.to(x0.device)[t].to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def ddim_timesteps(train_steps: int, steps: int) -> list[int]:
    """Evenly spaced timesteps, descending, ending at 0."""
    if steps < 1 or steps > train_steps:
        raise InputError("steps", f"1 .. {train_steps}", str(steps))
    return sorted({round(i * (train_steps - 1) / max(steps - 1, 1)) for i in range(steps)}, reverse=True)


def ddim_sample(
    x0_fn: X0Fn,
    shape: tuple[int, ...],
    steps: int,
    generator: torch.Generator,
    alphas_cumprod: Tensor | None = None,
    keyframes: Tensor | None = None,
    known: Tensor | None = None,
    eta: float = 0.0,
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], None] | None = None,
    clean_keyframes: bool = False,
) -> Tensor:
    """Sample [B, ...] = `shape` from noise by DDIM; `known` (bool, broadcastable to shape) marks entries
    given by `keyframes`, which are kept exactly in the result. `clean_keyframes`: the model's input holds
    the clean keyframes on the known entries (how train.py's masked keyframe training conditions the
    model) instead of the keyframes noised to the step (plain replacement, for models trained without)."""
    ac = cosine_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod
    if (keyframes is None) != (known is None):
        raise InputError("keyframes", "keyframe values together with their mask")
    if known is not None:
        known = known.bool().expand(shape)
        keyframes = keyframes.to(dtype).expand(shape)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    ts = ddim_timesteps(len(ac), steps)
    batch = shape[0]
    for i, t in enumerate(ts):
        tt = torch.full((batch,), t, dtype=torch.long)
        if known is not None:
            noise = torch.randn(shape, generator=generator, dtype=dtype)
            x = torch.where(known, q_sample(keyframes, tt, noise, ac), x)
        x0 = x0_fn(torch.where(known, keyframes, x) if known is not None and clean_keyframes else x, tt)
        if known is not None:
            x0 = torch.where(known, keyframes, x0)
        ab = float(ac[t])
        ab_prev = float(ac[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(shape, generator=generator, dtype=dtype)
        if callback is not None:
            callback(i + 1, len(ts))
    if known is not None:
        x = torch.where(known, keyframes, x)
    return x
