"""The 3D-prior interface: a prior turns a prompt into shapes (an SDF and a colour field).

BiDiff's 3D branch starts from a 3D prior's sample (the paper: Shap-E, "lazy" start) and ends in an SDF
from which meshes and renders are made. Every prior here hands out `Shape3D`s, so the sampler, the mesh
export and the renderers never see which prior made them: Shap-E (shap_e.py), the world's grid diffusion
(grid_prior.py), or the world's exact shapes (world.py).

Conventions: world space y up (glTF, core Preview3D), shapes inside the cube [-1, 1]^3; `sdf` is negative
inside and positive outside (NeuS's and marching cubes' convention here), in world units where exact;
`color` is sRGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..common.errors import InputError

BOUND = 1.0  # shapes live in [-BOUND, BOUND]^3


@dataclass
class Shape3D:
    """A shape as two fields over world points [N, 3]: signed distance [N] and colour [N, 3]."""

    sdf: Callable[[torch.Tensor], torch.Tensor]
    color: Callable[[torch.Tensor], torch.Tensor]
    prompt: str = ""
    source: str = ""  # which prior made it (shown in node outputs)
    info: dict = field(default_factory=dict)


class Prior3D:
    """A text-conditioned 3D prior. `sample` returns `count` shapes for one prompt, reproducible by seed."""

    name = "3d-prior"
    default_guidance = 1.0
    default_steps = 25

    def sample(
        self,
        prompt: str,
        *,
        seed: int = 0,
        count: int = 1,
        guidance: float | None = None,
        steps: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Shape3D]:
        raise NotImplementedError


def check_prompt(prompt: str, name: str = "prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(name, "a non-empty text prompt", repr(prompt))
    return prompt.strip()


def grid_lookup(grid: torch.Tensor, points: torch.Tensor, bound: float = BOUND) -> torch.Tensor:
    """Trilinear values of `grid` [C, X, Y, Z] (axis 0 = x, corners at +-bound) at points [N, 3] -> [N, C].

    Points outside the cube take the border value (callers add the distance to the cube for the SDF)."""
    c = grid.shape[0]
    # grid_sample's last coordinate indexes the first spatial axis: (x, y, z) over [C, Z, Y, X]
    vol = grid.permute(0, 3, 2, 1)[None].to(points.dtype)
    coords = (points / bound).reshape(1, -1, 1, 1, 3)
    out = F.grid_sample(vol, coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(c, -1).T


def box_distance(points: torch.Tensor, bound: float = BOUND) -> torch.Tensor:
    """Distance of points [N, 3] to the cube [-bound, bound]^3 (0 inside it)."""
    return (points.abs() - bound).clamp_min(0).norm(dim=-1)


def grid_shape(grid: torch.Tensor, prompt: str = "", source: str = "grid", bound: float = BOUND) -> Shape3D:
    """A Shape3D from a grid [4, X, Y, Z]: channel 0 the SDF, 1..3 the colour (axis 0 = x, corners at
    +-bound). Outside the cube the SDF grows with the distance to it, so rays entering it see no surface."""
    if grid.ndim != 4 or grid.shape[0] != 4:
        raise InputError("grid", "a [4, X, Y, Z] grid (SDF + RGB)", f"shape {list(grid.shape)}")

    def sdf(p: torch.Tensor) -> torch.Tensor:
        return grid_lookup(grid[:1], p, bound)[:, 0] + box_distance(p, bound)

    def color(p: torch.Tensor) -> torch.Tensor:
        return grid_lookup(grid[1:], p, bound).clamp(0, 1)

    return Shape3D(sdf, color, prompt, source, {"grid": grid})
