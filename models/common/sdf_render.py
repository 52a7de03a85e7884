"""NeuS volume rendering of a signed distance field (Wang et al. 2021, "NeuS", Sec. 3.3), in pure torch.

BiDiff renders its 3D branch's SDF into the multi-view images its 2D branch sees, and TriHuman renders its
avatar the same way; both use this module, so one camera rig (camera.py) and one renderer serve both.

Conventions: the SDF f is negative inside and positive outside (NeuS's and `models/bidiff/prior3d.py`'s);
colours are whatever color_fn returns (sRGB 0..1 for Shape3D); rays have unit directions, so distances
along a ray are world units; depth is the camera-frame z (OpenCV, camera.py).

Sampling: a ray's interval [near, far] is cut into n equal sections (bins) whose n + 1 edges are
t_k = near + k (far - near) / n. With a torch.Generator (training) every interior edge is jittered
uniformly within half a bin of its place (stratified, and still ordered), so the geometry, not only the
colour, is sampled at fresh depths each step. Colours are taken at the section midpoints, the "samples".

Opacity: the SDF is evaluated at the section edges, and section i gets NeuS's discrete opacity

    alpha_i = clamp((Phi_s(f(t_i)) - Phi_s(f(t_i+1))) / Phi_s(f(t_i)), 0, 1),  Phi_s(x) = sigmoid(inv_s x),

computed as -expm1(logsigmoid(inv_s f_i+1) - logsigmoid(inv_s f_i)), which is the same number without
0/0 deep inside the shape (where both Phi_s underflow). Why the edges rather than NeuS's own code (the SDF
at the midpoint, the section ends extrapolated with the SDF's gradient along the ray): it needs no gradient
of f, so grids, analytic shapes and MLPs render alike, it is exact for the piecewise-linear f that estimate
assumes, and it costs n + 1 SDF evaluations instead of n evaluations plus a backward pass.
(`sdf_render_midpoint.py` is NeuS's own scheme, for fields that give their gradient cheaply: TriHuman.)

Compositing: T_i = prod_{j<i} (1 - alpha_j), w_i = T_i alpha_i; colour = sum w_i c_i + (1 - sum w_i)
background; opacity = sum w_i; distance = sum w_i t_mid_i / max(opacity, 1e-10) (the weight-averaged
distance of the visible surface, 0 where nothing is hit).

Memory: rays are rendered `chunk` at a time, so the fields see chunk x (n + 1) points at once whatever the
image size (with autograd on, the graph of every chunk is kept, as the backward pass needs it). With
near/far None each ray is clipped to the cube [-bound, bound]^3 (slab method), where the shapes live;
rays that miss it are background with opacity 0 and never reach the fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .camera import pixel_rays
from .errors import InputError

Field = Callable[[torch.Tensor], torch.Tensor]
Distance = float | torch.Tensor | None


def _check_rays(origins: torch.Tensor, directions: torch.Tensor) -> None:
    for name, x in (("origins", origins), ("directions", directions)):
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != 3 or not x.is_floating_point():
            got = f"shape {list(x.shape)}, {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(name, "floating-point rays [..., 3]", got)
    if origins.shape != directions.shape:
        raise InputError(
            "directions", f"the shape of origins {list(origins.shape)}", f"shape {list(directions.shape)}"
        )
    if directions.dtype != origins.dtype or directions.device != origins.device:
        raise InputError(
            "directions",
            f"the dtype and device of origins ({origins.dtype}, {origins.device})",
            f"{directions.dtype}, {directions.device}",
        )


def _positive_int(value: int, name: str, expected: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, expected, repr(value))
    return value


def cube_interval(
    origins: torch.Tensor, directions: torch.Tensor, bound: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances [...] of rays [..., 3] through [-bound, bound]^3 (slab method); the entry
    is clamped to 0 (nothing behind the origin) and exit <= entry means the ray misses the cube."""
    tiny = torch.full_like(directions, 1e-12)
    d = torch.where(directions.abs() < 1e-12, torch.where(directions < 0, -tiny, tiny), directions)
    t0, t1 = (-bound - origins) / d, (bound - origins) / d
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def _interval(value: Distance, name: str, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """near or far as a flat [N] tensor (a number or a tensor broadcastable to the rays' shape)."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    try:
        return t.expand(shape).reshape(-1)
    except RuntimeError:
        raise InputError(
            name, f"a number or a tensor broadcastable to {list(shape)}", f"shape {list(t.shape)}"
        ) from None


def _field(fn: Field, name: str, points: torch.Tensor, channels: int) -> torch.Tensor:
    out = fn(points)
    n = points.shape[0]
    want = (n,) if channels == 1 else (n, channels)
    if not isinstance(out, torch.Tensor) or out.numel() != n * channels:
        got = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(name, f"a {list(want)} tensor for {n} points", got)
    return out.reshape(want).to(points.dtype)


def section_edges(
    near: torch.Tensor, far: torch.Tensor, samples: int, generator: torch.Generator | None
) -> torch.Tensor:
    """[n, samples + 1] section edges of rays' intervals near/far [n]: equal sections, the interior edges
    jittered within +-half a section with a generator (stratified, still ordered)."""
    n = near.shape[0]
    step = (far - near)[:, None] / samples
    edges = near[:, None] + step * torch.arange(samples + 1, dtype=near.dtype, device=near.device)
    if generator is not None:
        u = torch.rand(n, samples - 1, generator=generator, dtype=near.dtype, device=generator.device)
        edges = torch.cat([edges[:, :1], edges[:, 1:-1] + (u.to(near.device) - 0.5) * step, edges[:, -1:]], 1)
    return edges


def _render_chunk(
    sdf_fn: Field,
    color_fn: Field,
    o: torch.Tensor,
    d: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    samples: int,
    inv_s: float | torch.Tensor,
    background: torch.Tensor,
    generator: torch.Generator | None,
    view_dependent: bool = False,
    color_min_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = o.shape[0]
    edges = section_edges(near, far, samples, generator)
    mid = (edges[:, :-1] + edges[:, 1:]) / 2  # [n, S]
    f = _field(sdf_fn, "sdf_fn", (o[:, None] + d[:, None] * edges[..., None]).reshape(-1, 3), 1)
    log_phi = F.logsigmoid(f.reshape(n, samples + 1) * inv_s)
    alpha = (-torch.expm1(log_phi[:, 1:] - log_phi[:, :-1])).clamp(0, 1)  # (Phi_i - Phi_i+1) / Phi_i
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
    w = alpha * trans  # [n, S]
    points = (o[:, None] + d[:, None] * mid[..., None]).reshape(-1, 3)
    w_flat = w.reshape(-1)
    keep = (w_flat > color_min_weight).nonzero().squeeze(1) if color_min_weight > 0 else None
    if keep is not None:  # colour only where it can show: the rest adds at most S * color_min_weight
        points, w_flat = points[keep], w_flat[keep]
    if view_dependent:  # the colour field also sees each sample's ray direction (IDR / NeuS colour MLPs)
        dirs = d[:, None].expand(n, samples, 3).reshape(-1, 3)
        dirs = dirs if keep is None else dirs[keep]
        colors = _field(lambda x: color_fn(x, dirs), "color_fn", points, 3)
    else:
        colors = _field(color_fn, "color_fn", points, 3)
    weighted = w_flat[:, None] * colors
    if keep is not None:
        weighted = weighted.new_zeros(n * samples, 3).index_put((keep,), weighted)
    opacity = w.sum(1)
    rgb = weighted.reshape(n, samples, 3).sum(1) + (1 - opacity)[:, None] * background
    distance = (w * mid).sum(1) / opacity.clamp_min(1e-10)
    return rgb, opacity, distance


def render_rays(
    sdf_fn: Field,
    color_fn: Field,
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
    view_dependent: bool = False,
    color_min_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """NeuS-render rays (origins, unit directions [..., 3]) through an SDF and a colour field.

    sdf_fn: points [N, 3] -> [N] (negative inside); color_fn: points [N, 3] -> [N, 3], or with
    view_dependent (points [N, 3], ray directions [N, 3]) -> [N, 3]. near/far: numbers or
    per-ray tensors [...]; None clips to the cube [-bound, bound]^3. inv_s: NeuS's sharpness s (1 / the
    standard deviation of the logistic density), a number or a (learnable) tensor. generator: jitter the
    sections (training; then the result depends on `chunk` through the random draws). Returns rgb
    [..., 3], opacity [...] and distance [...] along the ray (0 where nothing is hit), in origins' dtype,
    differentiable w.r.t. everything the fields use and inv_s. color_min_weight > 0: the colour field is
    evaluated only at samples whose weight exceeds it (for rendering, where most of a ray's 32-64 samples
    carry none); each rgb channel then differs from the full sum by at most samples * color_min_weight
    (times the largest colour, <= 1 for colour fields in [0, 1]); opacity and distance are unchanged."""
    _positive_int(samples, "samples", "at least 2 sections per ray", 2)
    if not isinstance(color_min_weight, (int, float)) or not 0 <= color_min_weight < 1:
        raise InputError("color_min_weight", "a sample weight in [0, 1)", repr(color_min_weight))

    def chunk_fn(o, d, near, far, bg):
        return _render_chunk(sdf_fn, color_fn, o, d, near, far, samples, inv_s, bg, generator, view_dependent,
                             color_min_weight)  # fmt: skip

    return march(chunk_fn, origins, directions, near, far, inv_s, background, chunk, bound)


def march(
    chunk_fn: Callable,
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: Distance,
    far: Distance,
    inv_s: float | torch.Tensor,
    background: Sequence[float] | torch.Tensor,
    chunk: int,
    bound: float,
) -> dict[str, torch.Tensor]:
    """What every ray renderer here shares: checks, each ray's interval (near/far, or the cube's), the rays
    with something to march through taken `chunk` at a time by chunk_fn(o, d, near, far, background) ->
    (rgb, opacity, distance), and the image assembled (background elsewhere)."""
    _check_rays(origins, directions)
    _positive_int(chunk, "chunk", "a positive number of rays per chunk")
    s = torch.as_tensor(inv_s)
    if s.numel() != 1 or not bool(s.detach() > 0):
        raise InputError("inv_s", "one sharpness value > 0", repr(inv_s))
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
        raise InputError("bound", "a half-size > 0 of the cube [-bound, bound]^3", repr(bound))
    shape = origins.shape[:-1]
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    bg = torch.as_tensor(background, dtype=o.dtype, device=o.device)
    if bg.shape != (3,):
        raise InputError("background", "an RGB colour (3 values)", repr(background))
    if near is None or far is None:
        lo, hi = cube_interval(o, d, bound)
    near = lo if near is None else _interval(near, "near", shape, o)
    far = hi if far is None else _interval(far, "far", shape, o)

    idx = (far > near).nonzero().squeeze(1)  # rays with something to march through
    parts = [chunk_fn(o[j], d[j], near[j], far[j], bg) for j in idx.split(chunk)]
    rgb = bg.expand(o.shape[0], 3)
    opacity, distance = o.new_zeros(o.shape[0]), o.new_zeros(o.shape[0])
    if parts:  # out-of-place index_put keeps the graph (gradients reach the fields' parameters)
        rgb = rgb.index_put((idx,), torch.cat([p[0] for p in parts]))
        opacity = opacity.index_put((idx,), torch.cat([p[1] for p in parts]))
        distance = distance.index_put((idx,), torch.cat([p[2] for p in parts]))
    else:
        rgb = rgb.clone()
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
    mask_threshold: float = 0.5,
    **kw,
) -> dict[str, torch.Tensor]:
    """Render V pinhole views (camera.py's OpenCV convention, one ray per pixel centre) of an SDF.

    K [V, 3, 3] or [3, 3], world_to_camera [V, 4, 4] or [4, 4]; `kw` go to render_rays (samples, inv_s,
    background, chunk, near, far, generator, bound). Returns image [V, H, W, 3], mask (the opacity, soft)
    [V, H, W] and depth [V, H, W]: the camera-frame z of the expected hit, 0 where the opacity is at most
    `mask_threshold` (a crisp silhouette for depth maps)."""
    return views(lambda o, d: render_rays(sdf_fn, color_fn, o, d, **kw), K, world_to_camera, height, width,
                 mask_threshold)  # fmt: skip


def views(
    render: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    height: int,
    width: int,
    mask_threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """`render_views` for any ray renderer: render(origins, directions [V, H, W, 3]) -> rgb, opacity and
    distance as render_rays returns them."""
    _positive_int(height, "height", "a positive number of pixels")
    _positive_int(width, "width", "a positive number of pixels")
    for name, x, tail in (("K", K, (3, 3)), ("world_to_camera", world_to_camera, (4, 4))):
        if not isinstance(x, torch.Tensor) or x.ndim not in (2, 3) or tuple(x.shape[-2:]) != tail:
            got = f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(name, f"a [V, {tail[0]}, {tail[1]}] or [{tail[0]}, {tail[1]}] tensor", got)
    K = K if K.ndim == 3 else K[None]
    E = world_to_camera if world_to_camera.ndim == 3 else world_to_camera[None]
    if K.shape[0] != E.shape[0] and 1 not in (K.shape[0], E.shape[0]):
        raise InputError("K", f"1 or {E.shape[0]} cameras (as world_to_camera)", f"{K.shape[0]}")
    origins, dirs = pixel_rays(K, E, height, width)  # [V, H, W, 3]
    out = render(origins, dirs)
    cos = (dirs * E[:, None, None, 2, :3].to(dirs.dtype)).sum(-1)  # camera z of a unit step along the ray
    visible = out["opacity"] > mask_threshold
    depth = torch.where(visible, out["distance"] * cos, torch.zeros_like(out["distance"]))
    return {"image": out["rgb"], "mask": out["opacity"], "depth": depth}
