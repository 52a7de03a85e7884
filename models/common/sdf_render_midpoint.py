"""NeuS's own renderer: one field evaluation per section, at its midpoint (NeuS, Wang et al. 2021, its
`render_core`; TriHuman's inference renderer follows it, with samples beyond the template's shell empty).

`sdf_render.render_rays` evaluates the SDF at the n + 1 section edges and the colour again at the n
midpoints. Here a shader returns the SDF, its gradient and the colour at the n midpoints in one pass, and
each section's entry and exit SDF are estimated from the midpoint value and its slope along the ray:

    f_prev, f_next = f -+ c delta / 2,   c = -(relu(-cos / 2 + 1/2) (1 - r) + relu(-cos) r) <= 0,

cos the cosine between the ray and the gradient, delta the section length and r NeuS's cosine annealing
ratio (1 after annealing and at inference; TriHuman renders with r = 1). Then alpha = (Phi_s(f_prev) -
Phi_s(f_next)) / Phi_s(f_prev), clamped to [0, 1], computed in log space as in sdf_render (NeuS adds 1e-5
to both terms against 0/0; the log form needs no guard). Samples the shader marks inactive (TriHuman:
|d| beyond the shell) get alpha 0, as TriHuman's renderer masks them. For an SDF linear along the ray and
a ray facing its surface (cos <= 0, r = 1) the estimate is exact, so both renderers give the same image.

Why a second renderer: for fields whose evaluation is dominated by per-point work that does not depend on
needing a gradient (TriHuman's closest-face search), one evaluation per sample halves that work.
Compositing, chunking and outputs are those of sdf_render.render_rays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError
from .sdf_render import Distance, _positive_int, march, section_edges

# points [N, 3], unit ray directions [N, 3] -> (sdf [N], gradient [N, 3], rgb [N, 3], active [N] bool or None)
Shader = Callable[[torch.Tensor, torch.Tensor], tuple]


def _shade(shade_fn: Shader, points: torch.Tensor, dirs: torch.Tensor):
    out = shade_fn(points, dirs)
    n = points.shape[0]
    if not isinstance(out, tuple) or len(out) != 4:
        raise InputError("shade_fn", "a tuple (sdf [N], gradient [N, 3], rgb [N, 3], active [N] or None)",
                         type(out).__name__)  # fmt: skip
    sdf, grad, rgb, active = out
    for name, x, want in (("sdf", sdf, (n,)), ("gradient", grad, (n, 3)), ("rgb", rgb, (n, 3))):
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
            got = f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"shade_fn's {name}", f"a {list(want)} tensor for {n} points", got)
    if active is not None and (not isinstance(active, torch.Tensor) or active.shape != (n,)):
        got = f"shape {list(active.shape)}" if isinstance(active, torch.Tensor) else type(active).__name__
        raise InputError("shade_fn's active", f"None or a [{n}] bool tensor", got)
    return sdf.to(points.dtype), grad.to(points.dtype), rgb.to(points.dtype), active


def _render_chunk(shade_fn, o, d, near, far, samples, inv_s, background, generator, cos_anneal_ratio):
    n = o.shape[0]
    edges = section_edges(near, far, samples, generator)
    mid = (edges[:, :-1] + edges[:, 1:]) / 2  # [n, S]
    delta = edges[:, 1:] - edges[:, :-1]
    points = (o[:, None] + d[:, None] * mid[..., None]).reshape(-1, 3)
    dirs = d[:, None].expand(n, samples, 3).reshape(-1, 3)
    sdf, grad, rgb, active = _shade(shade_fn, points, dirs)
    cos = (dirs * grad).sum(-1).reshape(n, samples)
    r = cos_anneal_ratio
    slope = -(F.relu(-cos * 0.5 + 0.5) * (1 - r) + F.relu(-cos) * r)  # always <= 0
    f = sdf.reshape(n, samples)
    log_prev = F.logsigmoid((f - slope * delta * 0.5) * inv_s)
    log_next = F.logsigmoid((f + slope * delta * 0.5) * inv_s)
    alpha = (-torch.expm1(log_next - log_prev)).clamp(0, 1)
    if active is not None:
        alpha = torch.where(active.reshape(n, samples), alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
    w = alpha * trans
    opacity = w.sum(1)
    colour = (w[..., None] * rgb.reshape(n, samples, 3)).sum(1) + (1 - opacity)[:, None] * background
    distance = (w * mid).sum(1) / opacity.clamp_min(1e-10)
    return colour, opacity, distance


def render_rays_midpoint(
    shade_fn: Shader,
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: Distance = None,
    far: Distance = None,
    samples: int = 64,
    inv_s: float | torch.Tensor = 64.0,
    background: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
    chunk: int = 4096,
    generator: torch.Generator | None = None,
    bound: float = 1.0,
    cos_anneal_ratio: float = 1.0,
) -> dict[str, torch.Tensor]:
    """NeuS-render rays (origins, unit directions [..., 3]) with one shader call per section midpoint.

    shade_fn(points [N, 3], ray directions [N, 3]) -> (sdf [N] negative inside, gradient of the sdf [N, 3],
    rgb [N, 3], active [N] bool or None = all). Other arguments and the returned rgb / opacity / distance
    are those of `sdf_render.render_rays`; cos_anneal_ratio is NeuS's r in [0, 1] (module docstring)."""
    _positive_int(samples, "samples", "at least 1 section per ray")
    if not isinstance(cos_anneal_ratio, (int, float)) or not 0 <= cos_anneal_ratio <= 1:
        raise InputError(
            "cos_anneal_ratio", "NeuS's cosine annealing ratio in [0, 1]", repr(cos_anneal_ratio)
        )

    def chunk_fn(o, d, near, far, bg):
        return _render_chunk(shade_fn, o, d, near, far, samples, inv_s, bg, generator, cos_anneal_ratio)

    return march(chunk_fn, origins, directions, near, far, inv_s, background, chunk, bound)
