"""Write a HAND_MOTION to files: BVH (a joint hierarchy any motion tool reads) and `.npz` (the trainer's
data layout: `joints` [T, 2, 21, 3], `fps`, `label`, plus the local representation `rot6d`, `trans`).

BVH layout (ours): ROOT `hands` at the world origin (6 channels, all zero), two children `R_wrist` and
`L_wrist` with 6 channels each (world position, world rotation), under each wrist the five finger
chains base -> middle -> distal joint (3 rotation channels each, the hand's local rotations) ending in an
End Site at the fingertip. OFFSETs are the open hand's rest offsets (the left hand mirrored), so BVH
forward kinematics (global = parent global x local, position = parent position + parent global x OFFSET)
reproduces `HandMotion.global_joints`. Units: centimetres (mocap BVH's usual unit; Blender's importer
scales). Rotation channels `Zrotation Xrotation Yrotation`: local = Rz Rx Ry, angles in degrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .hand import FINGER_BASES, JOINT_NAMES, OPEN_HAND, SIDES, TIPS
from .motion import HandMotion

CM = 100.0  # metres -> BVH units
PREFIX = {"right": "R_", "left": "L_"}
POS_CHANNELS = "Xposition Yposition Zposition"
ROT_CHANNELS = "Zrotation Xrotation Yrotation"


def matrix_to_euler_zxy(rot: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> (z, x, y) angles in radians with R = Rz(z) Rx(x) Ry(y)."""
    x = torch.asin(rot[..., 2, 1].clamp(-1.0, 1.0))
    z = torch.atan2(-rot[..., 0, 1], rot[..., 1, 1])
    y = torch.atan2(-rot[..., 2, 0], rot[..., 2, 2])
    return torch.stack([z, x, y], -1)


def _fmt(v) -> str:
    return " ".join(f"{float(a):.6f}" for a in v)


def bvh_text(motion: HandMotion) -> str:
    """The BVH file of `motion` as text (module docstring)."""
    rot = motion.rotations().double()  # [T, 2, 16, 3, 3]; finger entries are local
    wrist_rot, wrist_pos = (a.double() for a in motion.world_wrists())
    lines = ["HIERARCHY", "ROOT hands", "{", "  OFFSET 0.000000 0.000000 0.000000",
             f"  CHANNELS 6 {POS_CHANNELS} {ROT_CHANNELS}"]  # fmt: skip
    columns: list[Tensor] = [torch.zeros(motion.num_frames, 6, dtype=torch.float64)]
    for h, side in enumerate(SIDES):
        off = OPEN_HAND.offsets(side).double() * CM
        p = PREFIX[side]
        lines += [f"  JOINT {p}wrist", "  {", "    OFFSET 0.000000 0.000000 0.000000",
                  f"    CHANNELS 6 {POS_CHANNELS} {ROT_CHANNELS}"]  # fmt: skip
        columns += [wrist_pos[:, h] * CM, torch.rad2deg(matrix_to_euler_zxy(wrist_rot[:, h]))]
        k = 1  # index into the 16 rotations (0 = wrist)
        for base, tip in zip(FINGER_BASES, TIPS, strict=True):
            depth = 2
            for j in range(base, tip):
                pad = "  " * depth
                lines += [f"{pad}JOINT {p}{JOINT_NAMES[j]}", f"{pad}{{", f"{pad}  OFFSET {_fmt(off[j])}",
                          f"{pad}  CHANNELS 3 {ROT_CHANNELS}"]  # fmt: skip
                columns.append(torch.rad2deg(matrix_to_euler_zxy(rot[:, h, k])))
                k += 1
                depth += 1
            pad = "  " * depth
            lines += [f"{pad}End Site", f"{pad}{{", f"{pad}  OFFSET {_fmt(off[tip])}", f"{pad}}}"]
            for d in range(depth - 1, 1, -1):
                lines.append("  " * d + "}")
        lines.append("  }")
    lines.append("}")
    data = torch.cat(columns, 1)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    lines += [_fmt(row) for row in data]
    return "\n".join(lines) + "\n"


def write_bvh(motion: HandMotion, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(bvh_text(motion))
    return path


def write_npz(motion: HandMotion, path: str | Path) -> Path:
    """The trainer's layout (joints, fps, label) plus caption and the local representation."""
    path = Path(path)
    np.savez(
        path,
        joints=motion.global_joints().detach().cpu().numpy().astype(np.float32),
        fps=np.float64(motion.fps),
        label=np.str_(motion.label),
        caption=np.str_(motion.caption),
        rot6d=motion.rot6d.detach().cpu().numpy().astype(np.float32),
        trans=motion.trans.detach().cpu().numpy().astype(np.float32),
    )
    return path
