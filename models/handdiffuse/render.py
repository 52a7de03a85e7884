"""Draw two hand skeletons as IMAGE frames: pinhole projection (common/camera.py) and per-pixel distance
tests against the projected bones (capsules of constant pixel width) and joints (discs).

Pure torch, no OpenGL (headless GL errors are a top complaint of motion packs). Occlusion is by depth:
each pixel takes the colour of the nearest covering bone or joint (its camera depth at the closest point),
so a hand in front hides the one behind. The camera orbits the clip's joint centroid (fixed for the whole
clip, so motion shows as motion): yaw 0 looks from +z, the direction the world's person faces.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common.camera import intrinsics_from_fov, look_at, orbit_eye, project
from ..common.errors import InputError
from .hand import BONES

BACKGROUND = (0.08, 0.08, 0.1)
HAND_COLOURS = ((0.95, 0.45, 0.3), (0.3, 0.6, 0.95))  # right, left
JOINT_SHADE = 1.25  # joints drawn a little brighter than bones


def _check_size(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 16 <= v <= 4096:
        raise InputError(name, "an integer in 16 .. 4096 pixels", repr(v))
    return v


def render_skeletons(
    joints: Tensor,
    width: int = 512,
    height: int = 512,
    yaw: float = 0.0,
    pitch: float = 15.0,
    distance: float = 0.8,
    fov: float = 40.0,
    line_px: float | None = None,
) -> Tensor:
    """World joints [T, 2, 21, 3] -> IMAGE [T, H, W, 3] in 0..1."""
    width, height = _check_size("width", width), _check_size("height", height)
    if not distance > 0:
        raise InputError("distance", "a camera distance > 0 (metres)", repr(distance))
    if joints.dim() != 4 or tuple(joints.shape[1:]) != (2, 21, 3):
        raise InputError("motion", "joints [T, 2, 21, 3]", str(tuple(joints.shape)))
    j = joints.detach().double().cpu()
    target = j.reshape(-1, 3).mean(0).tolist()
    E = look_at(torch.tensor(orbit_eye(distance, yaw, pitch, target), dtype=torch.float64),
                torch.tensor(target, dtype=torch.float64))  # fmt: skip
    K = intrinsics_from_fov(fov, width, height, dtype=torch.float64)
    uv, depth = project(j.reshape(j.shape[0], -1, 3), K, E)  # [T, 42, 2], [T, 42]
    uv, depth = uv.reshape(-1, 2, 21, 2), depth.reshape(-1, 2, 21)
    r = line_px if line_px is not None else max(1.0, min(width, height) / 160)

    bones = torch.tensor(BONES)
    a_uv = uv[:, :, bones[:, 0]].reshape(-1, 40, 2)  # [T, 40, 2] both hands' bones
    b_uv = uv[:, :, bones[:, 1]].reshape(-1, 40, 2)
    a_d, b_d = depth[:, :, bones[:, 0]].reshape(-1, 40), depth[:, :, bones[:, 1]].reshape(-1, 40)
    cols = torch.tensor(HAND_COLOURS, dtype=torch.float32)
    seg_col = cols.repeat_interleave(20, 0)  # [40, 3]
    joint_col = (cols.repeat_interleave(21, 0) * JOINT_SHADE).clamp(max=1.0)  # [42, 3]

    background = torch.tensor(BACKGROUND, dtype=torch.float32)
    frames = []
    for t in range(uv.shape[0]):
        # only pixels within reach of a primitive can change (bones reach r, joint discs 1.8 r): the
        # hands cover a small part of the frame, so the per-pixel tests run on their bounding box
        pts = uv[t].reshape(42, 2)
        finite = pts[torch.isfinite(pts).all(1)]
        img = background.expand(height, width, 3).clone()
        if finite.numel() == 0:
            frames.append(img)
            continue
        lo = (finite.min(0).values - 2 * r - 1).floor().clamp(min=0)
        hi = (finite.max(0).values + 2 * r + 2).ceil()
        x0, y0 = int(lo[0]), int(lo[1])
        x1, y1 = min(width, max(x0, int(hi[0]))), min(height, max(y0, int(hi[1])))
        if x1 <= x0 or y1 <= y0:
            frames.append(img)
            continue
        v, u = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64) + 0.5,
                              torch.arange(x0, x1, dtype=torch.float64) + 0.5, indexing="ij")  # fmt: skip
        pix = torch.stack([u, v], -1).reshape(-1, 2)  # [P, 2]
        ab = b_uv[t] - a_uv[t]  # [40, 2]
        s = ((pix[:, None] - a_uv[t][None]) * ab[None]).sum(-1) / ab.square().sum(-1).clamp_min(1e-9)[None]
        s = s.clamp(0, 1)  # [P, 40]
        closest = a_uv[t][None] + s[..., None] * ab[None]
        dist = (pix[:, None] - closest).norm(dim=-1)
        seg_depth = a_d[t][None] + s * (b_d[t] - a_d[t])[None]
        visible = (a_d[t] > 0) & (b_d[t] > 0)
        seg_z = torch.where((dist <= r) & visible[None], seg_depth, torch.inf)
        jd = (pix[:, None] - uv[t].reshape(42, 2)[None]).norm(dim=-1)  # [P, 42]
        jz = depth[t].reshape(42)
        joint_z = torch.where((jd <= 1.8 * r) & (jz > 0)[None], jz[None] - 1e-4, torch.inf)  # discs on top
        z = torch.cat([seg_z, joint_z], 1)
        best = z.argmin(1)
        colour = torch.cat([seg_col, joint_col])[best]
        hit = torch.isfinite(z.gather(1, best[:, None]))[:, 0]
        img[y0:y1, x0:x1] = torch.where(hit[:, None], colour, background).reshape(y1 - y0, x1 - x0, 3)
        frames.append(img)
    return torch.stack(frames).float()
