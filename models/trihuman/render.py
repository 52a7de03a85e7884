"""Rendering a bound avatar frame: which rays can see it, where they march, and full views in ray chunks.

The avatar's surface lies within `shell` of its posed template (avatar_field.py: beyond the shell f is the
template's own signed distance, so the zero level cannot leave it). So a ray that misses the template
dilated by the shell sees only background, and a ray that hits it meets the surface just behind where it
enters the dilated template. We rasterise the template dilated by DILATION shells (`common/mesh_raster.py`)
once per view and march each covered ray from MARGIN shells before that entry over THICKNESS metres:
TriHuman's 32 uniform samples then lie ~5 mm apart instead of spreading over the whole scene (the paper
casts rays only at covered pixels, near/far = template depth -+ 30 mm; our interval is our
interpretation). Samples several cm off the surface are why the avatar's closest-face search uses larger
grid cells (avatar_field.GRID_DISC): with the default cells 70 % of a frame went to the all-faces
fallback; with 0.3 m intervals and a 1.5-shell dilation, more still.

The rays are rendered as TriHuman's official renderer does, with NeuS's own midpoint scheme
(`common/sdf_render_midpoint.py` over `BoundAvatar.shade`): one closest-face search per sample, samples
beyond the shell empty. The edge scheme (`common/sdf_render.py`: f at section edges, then the colour)
searched twice per sample and rendered a frame 1.5x slower at the same quality (docs/trihuman.md).
"""

from __future__ import annotations

import torch

from ..common.camera import pixel_rays
from ..common.errors import InputError
from ..common.mesh_raster import rasterize
from ..common.sdf_render_midpoint import render_rays_midpoint
from .avatar_field import BoundAvatar
from .template import vertex_normals

THICKNESS = 0.15  # metres marched behind the entry point (a limb or the skirt seen edge-on)
DILATION = 1.2  # the template is dilated by this many shells along its vertex normals
MARGIN = 0.2  # shells marched before the entry point


def ray_intervals(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    shell: float,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    height: int,
    width: int,
    thickness: float = THICKNESS,
    samples: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per pixel of C views: covered [C, H, W] bool, near/far [C, H, W] distances along the ray, and the
    rays (origins, directions [C, H, W, 3])."""
    with torch.no_grad():
        dilated = vertices + DILATION * shell * vertex_normals(vertices, faces)
        raster = rasterize(dilated.float(), faces, K.float(), world_to_camera.float(), height, width)
    origins, dirs = pixel_rays(K.to(vertices.dtype), world_to_camera.to(vertices.dtype), height, width)
    cos = (dirs * world_to_camera[:, None, None, 2, :3].to(dirs.dtype)).sum(-1)  # camera z per unit step
    entry = raster.depth.to(dirs.dtype) / cos.clamp_min(1e-6)
    near = (entry - MARGIN * shell).clamp_min(1e-3)
    return {
        "covered": raster.mask,
        "near": near,
        "far": near + thickness,
        "origins": origins,
        "directions": dirs,
    }


def render_frame(
    bound: BoundAvatar,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    height: int,
    width: int,
    background=(0.0, 0.0, 0.0),
    chunk: int = 2048,
    mask_threshold: float = 0.5,
    should_stop=None,
    thickness: float = THICKNESS,
    samples: int | None = None,
) -> dict[str, torch.Tensor]:
    """Views [C] of one frame: image [C, H, W, 3], mask (opacity) [C, H, W], depth (camera z, 0 where the
    opacity <= mask_threshold) [C, H, W]. No gradients; rays in chunks of `chunk` (memory is bounded by the
    chunk, not the resolution). `should_stop()` is polled between chunks (Cancel). `samples` per ray: the
    avatar's own count (TriHuman: 32) unless given."""
    if K.ndim != 3 or world_to_camera.ndim != 3 or K.shape[0] != world_to_camera.shape[0]:
        raise InputError("cameras", "K [C, 3, 3] and world_to_camera [C, 4, 4] of the same C",
                         f"{tuple(K.shape)} / {tuple(world_to_camera.shape)}")  # fmt: skip
    dtype = bound.vertices.dtype
    iv = ray_intervals(
        bound.vertices, bound.faces, bound.field.config.shell, K, world_to_camera, height, width
    )
    idx = iv["covered"].reshape(-1).nonzero().squeeze(1)
    bg = torch.as_tensor(background, dtype=dtype, device=bound.vertices.device)
    n = iv["covered"].numel()
    rgb = bg.expand(n, 3).clone()
    opacity = torch.zeros(n, dtype=dtype, device=bg.device)
    distance = torch.zeros(n, dtype=dtype, device=bg.device)
    o, d = iv["origins"].reshape(-1, 3), iv["directions"].reshape(-1, 3)
    near, far = iv["near"].reshape(-1), iv["far"].reshape(-1)
    inv_s = bound.field.variance.inv_s().detach()
    samples = samples or bound.field.config.samples
    for j in idx.split(chunk):
        if should_stop is not None and should_stop():
            raise InterruptedError("render cancelled")
        with torch.no_grad():
            out = render_rays_midpoint(bound.shade, o[j], d[j], near=near[j], far=far[j], samples=samples,
                                       inv_s=inv_s, background=bg, chunk=chunk)  # fmt: skip
        rgb[j], opacity[j], distance[j] = out["rgb"], out["opacity"], out["distance"]
    shape = iv["covered"].shape
    cos = (iv["directions"] * world_to_camera[:, None, None, 2, :3].to(dtype)).sum(-1)
    opacity = opacity.reshape(shape)
    depth = torch.where(opacity > mask_threshold, distance.reshape(shape) * cos, torch.zeros_like(cos))
    return {"image": rgb.reshape(*shape, 3).clamp(0, 1), "mask": opacity, "depth": depth}
