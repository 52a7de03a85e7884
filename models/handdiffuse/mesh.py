"""The two hands as a triangle mesh per frame, for core ComfyUI's MESH / SaveGLB / Preview3D.

Without MANO files the mesh is the penetration metric's own geometry (metrics.py): a cylinder per bone
and knuckle capsule (8 sides, the capsule's radius) and an icosahedron per joint (its sphere radius), so
what the viewer shows is what the contact and penetration numbers measure. Topology is the same every
frame (core MESH batches need that); right hand orange, left blue, as the skeleton renderer draws them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .metrics import CAPSULE_RADII, CAPSULES, JOINT_RADII
from .render import HAND_COLOURS  # one colour table: the mesh matches the renders and the MANO export

SIDES_PER_CYLINDER = 8


def _icosahedron() -> tuple[Tensor, Tensor]:
    p = (1 + math.sqrt(5)) / 2
    v = torch.tensor(
        [[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p],
         [0, -1, -p], [0, 1, -p], [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]], dtype=torch.float64,
    )  # fmt: skip
    f = torch.tensor(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
    )  # fmt: skip
    return v / v.norm(dim=1, keepdim=True), f


def _orthonormal(d: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors perpendicular to unit directions d [..., 3] and to each other."""
    helper = torch.where(d[..., :1].abs() < 0.9, torch.tensor([1.0, 0, 0], dtype=d.dtype),
                         torch.tensor([0, 1.0, 0], dtype=d.dtype))  # fmt: skip
    u = torch.linalg.cross(d, helper)
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return u, torch.linalg.cross(d, u)


def skeleton_mesh(joints: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """World joints [T, 2, 21, 3] -> vertices [T, V, 3], faces [F, 3] (long), vertex colours [V, 3]."""
    joints = joints.double()
    frames = joints.shape[0]
    n = SIDES_PER_CYLINDER
    ang = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    cos, sin = ang.cos(), ang.sin()
    ico_v, ico_f = _icosahedron()
    verts, faces, colours, offset = [], [], [], 0
    for hand in (0, 1):
        j = joints[:, hand]
        a = j[:, [c[0] for c in CAPSULES]]  # [T, C, 3]
        b = j[:, [c[1] for c in CAPSULES]]
        d = b - a
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        u, w = _orthonormal(d)
        r = CAPSULE_RADII[None, :, None, None]
        ring = r * (cos[None, None, :, None] * u[:, :, None] + sin[None, None, :, None] * w[:, :, None])
        cyl = torch.cat([a[:, :, None] + ring, b[:, :, None] + ring], 2)  # [T, C, 2n, 3]
        k = torch.arange(n)
        quad = torch.stack(
            [torch.stack([k, (k + 1) % n, n + k], 1), torch.stack([(k + 1) % n, n + (k + 1) % n, n + k], 1)],
            1,
        )
        quad = quad.reshape(-1, 3)
        for c in range(len(CAPSULES)):
            faces.append(quad + offset + c * 2 * n)
        verts.append(cyl.reshape(frames, -1, 3))
        offset += len(CAPSULES) * 2 * n
        spheres = j[:, :, None] + JOINT_RADII[None, :, None, None] * ico_v[None, None]  # [T, 21, 12, 3]
        for jj in range(j.shape[1]):
            faces.append(ico_f + offset + jj * 12)
        verts.append(spheres.reshape(frames, -1, 3))
        offset += j.shape[1] * 12
        count = len(CAPSULES) * 2 * n + j.shape[1] * 12
        colours.append(torch.tensor(HAND_COLOURS[hand], dtype=torch.float32).expand(count, 3))
    return torch.cat(verts, 1).float(), torch.cat(faces).long(), torch.cat(colours)
