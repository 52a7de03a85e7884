"""The posed template of one frame and its motion texture (TriHuman Sec. 3.1-3.2).

Posing: the rest template is first deformed by the embedded graph and per-vertex offsets the pose network
predicts (`deform.DeformationNetwork`), then skinned by the skeleton's bone transforms with dual-quaternion
skinning (`skinning.dual_quaternion_skinning`), as DDC's deformable template is.

Motion texture: the posed vertex positions and normals of frames t, t - 1, t - 2, rasterised into the
template's UV space (`uv_raster`): 18 channels, ordered (position, normal) per frame, newest first; texels
no face covers are 0 (and the mask says so). It is the tri-plane generator's input (`triplane.py`).
"""

from __future__ import annotations

import torch

from ..common.errors import InputError
from .deform import DeformationNetwork
from .skinning import dual_quaternion_skinning
from .uv_raster import UVRaster, rasterize_uv


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals [..., V, 3] of vertices [..., V, 3] (outward for counter-clockwise
    faces)."""
    v = vertices[..., faces, :]  # [..., F, 3, 3]
    n = torch.linalg.cross(v[..., 1, :] - v[..., 0, :], v[..., 2, :] - v[..., 0, :])  # [..., F, 3]
    out = torch.zeros_like(vertices).index_add_(-2, faces.reshape(-1), n.repeat_interleave(3, -2))
    return torch.nn.functional.normalize(out, dim=-1)


def posed_template(
    rest_vertices: torch.Tensor,
    network: DeformationNetwork,
    pose: torch.Tensor,
    skin_weights: torch.Tensor,
    bone_transforms: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(posed vertices [B, V, 3], the graph regulariser) for pose vectors [B, pose_dim] and rigid bone
    transforms [B, J, 4, 4] (rest -> posed), skin weights [V, J]."""
    if bone_transforms.ndim != 4 or bone_transforms.shape[0] != pose.shape[0]:
        raise InputError("bone_transforms", f"[B = {pose.shape[0]}, J, 4, 4] rigid transforms",
                         str(tuple(bone_transforms.shape)))  # fmt: skip
    deformed, reg = network.deform(rest_vertices, pose)
    posed = torch.stack([dual_quaternion_skinning(deformed[b], skin_weights, bone_transforms[b])
                         for b in range(pose.shape[0])])  # fmt: skip
    return posed, reg


def motion_texture(
    frames: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(texture [18, size, size], mask [size, size]) of posed vertices [3, V, 3] (frames t, t-1, t-2).

    The coverage (which face, which barycentrics) depends only on the UVs, so it is rasterised once and
    every frame's attributes are interpolated with it."""
    if (
        not isinstance(frames, torch.Tensor)
        or frames.ndim != 3
        or frames.shape[0] != 3
        or frames.shape[2] != 3
    ):
        raise InputError(
            "frames", "posed vertices of frames t, t-1, t-2 [3, V, 3]", str(getattr(frames, "shape", frames))
        )
    normals = vertex_normals(frames, faces)
    attributes = torch.cat([torch.cat([frames[k], normals[k]], -1) for k in range(3)], -1)  # [V, 18]
    raster: UVRaster = rasterize_uv(uvs, faces, attributes, size)
    return raster.image.permute(2, 0, 1), raster.mask
