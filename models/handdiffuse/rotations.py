"""Rotation helpers: the 6D representation (Zhou et al. 2019), minimal "swing" rotations and Kabsch.

6D convention: the FIRST TWO COLUMNS of the rotation matrix, [r11, r21, r31, r12, r22, r32], as in the
paper (pytorch3d's `matrix_to_rotation_6d` stores the first two ROWS, i.e. the transpose). All functions
take any leading batch shape and keep the dtype (tests run them in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-12


def _normalize(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(EPS)


def matrix_to_6d(rot: Tensor) -> Tensor:
    """[..., 3, 3] -> [..., 6]: the first two columns, concatenated."""
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], dim=-1)


def sixd_to_matrix(d6: Tensor) -> Tensor:
    """[..., 6] -> [..., 3, 3] by Gram–Schmidt: any 6 numbers (two non-parallel vectors) give a rotation,
    which is why a network can regress them without a constraint."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def skew(v: Tensor) -> Tensor:
    """[..., 3] -> [..., 3, 3] cross-product matrix."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return torch.stack(
        [torch.stack([z, -w, y], -1), torch.stack([w, z, -x], -1), torch.stack([-y, x, z], -1)], -2
    )


def axis_angle_to_matrix(axis: Tensor, angle: Tensor) -> Tensor:
    """Rodrigues: unit axis [..., 3], angle [...] (radians) -> [..., 3, 3]."""
    k = skew(_normalize(axis))
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def swing(u: Tensor, v: Tensor) -> Tensor:
    """The minimal rotation taking unit vector u to unit vector v (axis u x v, no twist about u).

    Closed form R = I + [w]x + [w]x^2 / (1 + c) with w = u x v, c = u.v. For (near-)opposite vectors the
    axis is undefined; we then rotate by pi about a fixed axis perpendicular to u (any choice maps u to v).
    """
    u, v = _normalize(u), _normalize(v)
    w = torch.linalg.cross(u, v, dim=-1)
    c = (u * v).sum(-1)
    k = skew(w)
    eye = torch.eye(3, dtype=u.dtype, device=u.device).expand_as(k)
    opposite = c < -1 + 1e-9
    denom = torch.where(opposite, torch.ones_like(c), 1 + c)[..., None, None]
    rot = eye + k + (k @ k) / denom
    if bool(opposite.any()):
        helper = torch.zeros_like(u)
        helper[..., 0] = 1.0
        alt = torch.zeros_like(u)
        alt[..., 1] = 1.0
        helper = torch.where((u[..., :1].abs() > 0.9), alt, helper)
        perp = _normalize(torch.linalg.cross(u, helper, dim=-1))
        flip = 2 * perp[..., :, None] * perp[..., None, :] - eye  # rotation by pi about perp
        rot = torch.where(opposite[..., None, None], flip, rot)
    return rot


def kabsch(src: Tensor, dst: Tensor) -> Tensor:
    """Rotation R minimising sum |R src_i - dst_i|^2 over points [..., N, 3] (no translation, no scale).

    Exact (to rounding) when dst is a rotated copy of src with at least two non-parallel points."""
    h = src.transpose(-1, -2) @ dst  # [..., 3, 3] = sum src_i dst_i^T
    u, _, vh = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return vh.transpose(-1, -2) @ fix @ u.transpose(-1, -2)


def random_rotation(shape: tuple[int, ...], generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Uniform-ish random rotations (6D of two Gaussian vectors), for tests and augmentation."""
    return sixd_to_matrix(torch.randn(*shape, 6, generator=generator, dtype=dtype))
