"""NeuS volume rendering of a signed distance field (Wang et al. 2021, "NeuS", Sec. 3.3), in pure torch.

BiDiff renders its 3D branch's SDF into the multi-view images the 2D branch sees, and TriHuman renders its
avatar the same way; both use this module. A ray's samples are n equal bins between near and far (bin
midpoints, or jittered inside their bins when a generator is given: training); the SDF is evaluated at
the n + 1 bin edges, and bin i's opacity is NeuS's discrete one,

    alpha_i = clamp((Phi_s(f(t_i)) - Phi_s(f(t_i+1))) / Phi_s(f(t_i)), 0, 1),  Phi_s(x) = sigmoid(inv_s x),

with f > 0 outside (our convention). Evaluating f at the bin edges instead of estimating the edges from
the midpoint and the SDF's gradient (NeuS's own code) needs no gradient of f (the fields may be grids or
MLPs without it) and is exact for the piecewise-linear f the estimate assumes. Colours are taken at the
bin midpoints; weights w_i = T_i alpha_i with T_i = prod_{j<i} (1 - alpha_j); the image is
sum w_i c_i + (1 - sum w_i) background. Rays are processed `chunk` at a time, so memory is bounded by
chunk x samples whatever the image size. With near/far None, each ray is clipped to the cube
[-bound, bound]^3 (the slab method) and rays that miss it are background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .camera import pixel_rays, transform_points
from .errors import InputError

Field = Callable[[torch.Tensor], torch.Tensor]


def _check_rays(origins: torch.Tensor, directions: torch.Tensor) -> None:
    for name, x in (("origins", origins), ("directions", directions)):
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != 3 or not x.is_floating_point():
            got = f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(name, "floating-point rays [..., 3]", got)
    if origins.shape != directions.shape:
        raise InputError(
            "directions", f"the shape of origins {list(origins.shape)}", f"{list(directions.shape)}"
        )


def cube_interval(
    origins: torch.Tensor, directions: torch.Tensor, bound: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances [N] of rays [N, 3] through [-bound, bound]^3 (exit <= entry: a miss)."""
    d = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0, t1 = (-bound - origins) / d, (bound - origins) / d
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def _render_chunk(sdf_fn, color_fn, o, d, near, far, samples, inv_s, background, generator):
    n = o.shape[0]
    edges = torch.linspace(0, 1, samples + 1, dtype=o.dtype, device=o.device)
    t = near[:, None] + (far - near)[:, None] * edges  # [n, S + 1]
    u = (
        torch.rand(n, samples, generator=generator, dtype=o.dtype).to(o.device)
        if generator is not None
        else 0.5
    )
    mid = t[:, :-1] + (t[:, 1:] - t[:, :-1]) * u  # [n, S]
    points_edge = o[:, None] + d[:, None] * t[..., None]
    f = sdf_fn(points_edge.reshape(-1, 3)).reshape(n, samples + 1)
    phi = torch.sigmoid(f * inv_s)
    alpha = ((phi[:, :-1] - phi[:, 1:]) / phi[:, :-1].clamp_min(1e-6)).clamp(0, 1)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1] + 1e-7], 1), 1)
    w = alpha * trans  # [n, S]
    colors = color_fn((o[:, None] + d[:, None] * mid[..., None]).reshape(-1, 3)).reshape(n, samples, 3)
    opacity = w.sum(1)
    rgb = (w[..., None] * colors.to(w.dtype)).sum(1) + (1 - opacity)[:, None] * background
    distance = (w * mid).sum(1) / opacity.clamp_min(1e-6)
    return rgb, opacity, distance


def render_rays(
    sdf_fn: Field,
    color_fn: Field,
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: float | torch.Tensor | None = None,
    far: float | torch.Tensor | None = None,
    samples: int = 64,
    inv_s: float | torch.Tensor = 64.0,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    chunk: int = 4096,
    generator: torch.Generator | None = None,
    bound: float = 1.0,
) -> dict[str, torch.Tensor]:
    """rgb [..., 3], opacity [...], distance along the ray [...] (0 where nothing is hit) of unit rays."""
    _check_rays(origins, directions)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise InputError("samples", "at least 2 samples per ray", repr(samples))
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError("chunk", "a positive number of rays", repr(chunk))
    shape = origins.shape[:-1]
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    if near is None or far is None:
        lo, hi = cube_interval(o, d, bound)
        near = lo if near is None else torch.as_tensor(near, dtype=o.dtype, device=o.device).expand_as(lo)
        far = hi if far is None else torch.as_tensor(far, dtype=o.dtype, device=o.device).expand_as(hi)
    else:
        near = torch.as_tensor(near, dtype=o.dtype, device=o.device).expand(o.shape[0])
        far = torch.as_tensor(far, dtype=o.dtype, device=o.device).expand(o.shape[0])
    hit = far > near
    bg = torch.as_tensor(background, dtype=o.dtype, device=o.device)
    rgb = bg.expand(o.shape[0], 3).clone()
    opacity, distance = o.new_zeros(o.shape[0]), o.new_zeros(o.shape[0])
    idx = hit.nonzero().squeeze(1)
    parts = []
    for i in range(0, len(idx), chunk):
        j = idx[i : i + chunk]
        parts.append(
            (j, *_render_chunk(sdf_fn, color_fn, o[j], d[j], near[j], far[j], samples, inv_s, bg, generator))
        )
    if parts:  # index_put keeps the graph (gradients reach the fields' parameters)
        j = torch.cat([p[0] for p in parts])
        rgb = rgb.index_put((j,), torch.cat([p[1] for p in parts]))
        opacity = opacity.index_put((j,), torch.cat([p[2] for p in parts]))
        distance = distance.index_put((j,), torch.cat([p[3] for p in parts]))
    return {
        "rgb": rgb.reshape(*shape, 3),
        "opacity": opacity.reshape(shape),
        "distance": distance.reshape(shape),
    }


def render_views(
    sdf_fn: Field,
    color_fn: Field,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    height: int,
    width: int,
    **kw,
) -> dict[str, torch.Tensor]:
    """image [V, H, W, 3], mask (opacity) [V, H, W], depth (camera-frame z of the expected hit; 0 where
    empty) [V, H, W] from cameras K [V, 3, 3] or [3, 3] and world -> camera [V, 4, 4] (camera.py)."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, "a positive number of pixels", repr(value))
    if world_to_camera.ndim == 2:
        world_to_camera = world_to_camera[None]
    K = K.expand(world_to_camera.shape[0], 3, 3) if K.ndim == 2 else K
    origins, dirs = pixel_rays(K, world_to_camera, height, width)
    out = render_rays(sdf_fn, color_fn, origins, dirs, **kw)
    points = origins + dirs * out["distance"][..., None]
    z = transform_points(world_to_camera, points.reshape(points.shape[0], -1, 3))[..., 2]
    depth = torch.where(
        out["opacity"] > 0.5, z.reshape(out["opacity"].shape), torch.zeros_like(out["opacity"])
    )
    return {"image": out["rgb"], "mask": out["opacity"], "depth": depth}
