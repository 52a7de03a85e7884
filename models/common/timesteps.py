"""Non-uniform training timesteps: Customizing Motion's law (Materzynska et al. 2023, Sec. 3.3),
p(t) ∝ 1 − a·cos(π t / T), optionally only above a minimum t.

With a = 0.5 ("high", the default) noisy timesteps are drawn up to 3× as often as clean ones: coarse
motion is decided at high noise, so that is where the customisation should learn. The "low" variant flips
the sign of the cosine (for appearance-level detail); "uniform" is the ablation baseline. Shared: BiDiff's
SD-adapter trainer uses the same lever for the layout its ControlNet must impose at high noise.
"""

from __future__ import annotations

import math

import torch

from ..common.errors import InputError

LAWS = ("high", "low", "uniform")
DEFAULT_STRENGTH = 0.5  # a in the paper


def timestep_probabilities(
    num_train_timesteps: int, law: str = "high", a: float = DEFAULT_STRENGTH, min_timestep: int = 0
) -> torch.Tensor:
    """p(t) for t = 0..T−1 (float64, sums to 1); zero below `min_timestep` (the law renormalised above it)."""
    if law not in LAWS:
        raise InputError("timestep_law", f"one of {', '.join(LAWS)}", repr(law))
    if not 0 <= a < 1:
        raise InputError("timestep_strength", "a value in [0, 1)", str(a))
    if num_train_timesteps < 1:
        raise InputError("num_train_timesteps", "at least 1", str(num_train_timesteps))
    if not 0 <= min_timestep < num_train_timesteps:
        raise InputError("min_timestep", f"a value in [0, {num_train_timesteps})", str(min_timestep))
    t = torch.arange(num_train_timesteps, dtype=torch.float64)
    sign = {"high": 1.0, "low": -1.0, "uniform": 0.0}[law]
    w = 1.0 - sign * a * torch.cos(math.pi * t / num_train_timesteps)
    w[:min_timestep] = 0.0
    return w / w.sum()


class TimestepSampler:
    """Draws training timesteps from `timestep_probabilities`, reproducibly from a torch Generator."""

    def __init__(
        self, num_train_timesteps: int, law: str = "high", a: float = DEFAULT_STRENGTH, min_timestep: int = 0
    ):
        self.law, self.a, self.min_timestep = law, a, min_timestep
        self.probabilities = timestep_probabilities(num_train_timesteps, law, a, min_timestep)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` timesteps (int64)."""
        if self.law == "uniform":
            return torch.randint(self.min_timestep, len(self.probabilities), (n,), generator=generator)
        return torch.multinomial(self.probabilities.float(), n, replacement=True, generator=generator)
