"""One frame of an official TriHuman subject from one camera, chained as the release's inference does
(layout notes section 3): pose the template for frames t, t-1, t-2 (`posing`), normalise by frame t's root,
rasterise the motion texture (`motion_texture`), run the motion MLP and the tri-plane U-Net, cast rays only at
pixels near the posed template with per-pixel near/far from its depth (a 9x9 min / max filter, -/+ 30 mm), and
render them (`fields`).

Pixels: the release casts the ray of pixel (x, y) through (x, y) itself, not its centre; our camera helpers
use centres, so the principal point is moved by half a pixel to cast the same rays.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ...common.camera import pixel_rays
from ...common.errors import InputError
from ...common.mesh_raster import rasterize
from .fields import colour_frame, release_render_rays
from .motion_texture import UVBarycentricMap, normalised_positions, release_motion_texture
from .networks import motion_code_input
from .posing import ReleaseRig, release_posed_templates

DEPTH_OFFSET_MM = 30.0  # `depth_offset`: near / far = template depth -/+ 30 mm
DEPTH_WINDOW = 9  # the release's erosion / dilation kernel (pixels)
GLOBAL_SCALE_MM = 1200.0  # one normalised unit


class OfficialFrame(NamedTuple):
    image: torch.Tensor  # [H, W, 3] in 0..1, black background
    mask: torch.Tensor  # [H, W] bool: pixels whose rays were cast
    opacity: torch.Tensor  # [H, W]
    posed_mm: torch.Tensor  # [3, V, 3] posed templates of frames t, t-1, t-2 (mm)


def depth_near_far(depth_mm: torch.Tensor, covered: torch.Tensor, window: int = DEPTH_WINDOW,
                   offset_mm: float = DEPTH_OFFSET_MM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(near, far, mask) [H, W] from a template depth map: near = the smallest covered depth in the
    window - offset, far = the largest + offset, mask = pixels with any covered pixel in the window."""
    pad = window // 2
    big = torch.where(covered, depth_mm, torch.full_like(depth_mm, 1e5))
    near = -F.max_pool2d(-big[None, None], window, 1, pad)[0, 0]
    far = F.max_pool2d(torch.where(covered, depth_mm, torch.zeros_like(depth_mm))[None, None], window, 1, pad)
    mask = near < 1e4
    return near - offset_mm, far[0, 0] + offset_mm, mask


class OfficialPlanes(NamedTuple):
    posed_mm: torch.Tensor  # [3, V, 3] posed templates of frames t, t-1, t-2 (mm)
    x_hat: torch.Tensor  # [3, V, 3] the same in frame t's normalised space
    root: torch.Tensor  # [3] frame t's root translation (metres)
    planes: torch.Tensor  # [3C, S, S] the tri-plane U-Net's output


def official_planes(networks, rig: ReleaseRig, uv_map: UVBarycentricMap, dofs: torch.Tensor,
                    normalized_dofs: torch.Tensor, body_dofs: torch.Tensor, frame: int) -> OfficialPlanes:  # fmt: skip
    """The posed templates and tri-planes of `frame`: what both the renderer and the mesh read."""
    if networks.implicit is None or networks.explicit is None:
        raise InputError("networks", "both official checkpoints (explicit and implicit)", "one missing")
    posed = release_posed_templates(rig, networks.explicit, normalized_dofs, dofs, frame)  # [3, V, 3] mm
    root = dofs[frame, :3].double()  # metres
    x_hat = normalised_positions(posed / 1000.0, root, GLOBAL_SCALE_MM / 1000.0)
    implicit = networks.implicit
    dtype = next(implicit.parameters()).dtype
    with torch.no_grad():
        texture = release_motion_texture(uv_map, rig.faces, x_hat).to(dtype)
        code = implicit.global_motion_mlp(motion_code_input(dofs, frame, body_dofs).to(dtype)[None])
        planes = implicit.feature_extractor(texture[None], code)[0]
    return OfficialPlanes(posed, x_hat, root, planes)


def render_official_frame(
    networks,
    rig: ReleaseRig,
    uv_map: UVBarycentricMap,
    face_uvs: torch.Tensor,
    dofs: torch.Tensor,
    normalized_dofs: torch.Tensor,
    body_dofs: torch.Tensor,
    base_trans: torch.Tensor,
    frame: int,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    height: int,
    width: int,
    progress=None,
) -> OfficialFrame:
    """Render `frame` of a subject: `networks` an OfficialTriHuman (implicit + explicit), `rig` its
    template rig (mm), `uv_map` = `release_uv_map(template corner UVs)`, `face_uvs` [F, 3, 2] raw UVs,
    `dofs` [T, D] (`read_motion`, metres / radians), `normalized_dofs` [T, 3, D], `body_dofs` (the motion
    MLP's DOF indices), `base_trans` [3] metres, camera K [3, 3] and world -> camera [4, 4] in metres."""
    posed, x_hat, root, planes = official_planes(
        networks, rig, uv_map, dofs, normalized_dofs, body_dofs, frame
    )
    implicit = networks.implicit
    dtype = planes.dtype
    if progress:
        progress("planes", 1, 1)
    raster = rasterize(
        posed[0] / 1000.0, rig.faces, K[None].double(), world_to_camera[None].double(), height, width
    )
    near, far, mask = depth_near_far(raster.depth[0] * 1000.0, raster.mask[0])
    shifted = K.double().clone()
    shifted[0, 2] += 0.5
    shifted[1, 2] += 0.5
    origins, dirs = pixel_rays(shifted, world_to_camera.double(), height, width)
    scale = GLOBAL_SCALE_MM / 1000.0
    o = ((origins[mask] - root) / scale).to(dtype)
    d = dirs[mask].to(dtype)
    c_scale, c_trans = colour_frame(root, base_trans.double())
    out = release_render_rays(implicit, planes, o, d, (near[mask] / GLOBAL_SCALE_MM).to(dtype),
                              (far[mask] / GLOBAL_SCALE_MM).to(dtype), x_hat[0].to(dtype), rig.faces,
                              face_uvs, c_scale, c_trans.to(dtype))  # fmt: skip
    image = torch.zeros(height, width, 3, dtype=dtype)
    opacity = torch.zeros(height, width, dtype=dtype)
    image[mask] = out.color.clamp(0, 1)
    opacity[mask] = out.opacity[:, 0]
    return OfficialFrame(image, mask, opacity, posed)
