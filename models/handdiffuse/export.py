"""Write a HAND_MOTION to files: BVH (a joint hierarchy any motion tool reads) and `.npz` (the trainer's
data layout: `joints` [T, 2, 21, 3], `fps`, `label`, plus the local representation `rot6d`, `trans`).

BVH layout (ours): ROOT `hands` at the world origin (6 channels, all zero), two children `R_wrist` and
`L_wrist` with 6 channels each (world position, world rotation), under each wrist the five finger
chains base -> middle -> distal joint (3 rotation channels each, the hand's local rotations) ending in an
End Site at the fingertip. OFFSETs are the open hand's rest offsets (the left hand mirrored), so BVH
forward kinematics (global = parent global x local, position = parent position + parent global x OFFSET)
reproduces `HandMotion.global_joints`. Units: centimetres (mocap BVH's usual unit; Blender's importer
scales). Rotation channels `Zrotation Xrotation Yrotation`: local = Rz Rx Ry, angles in degrees.

Hand meshes (the two MANO hands, or any [T, 2, V, 3] pair): `combine_hands` gives core MESH tensors
(both hands as one mesh per frame, equal topology every frame) and `hands_glb_bytes` / `write_hands_glb`
a binary glTF for core Preview3D / any glTF viewer. Preview3D shows ONE file, so the GLB holds chosen
frames as a scene: per frame two nodes `f<frame>_right` / `f<frame>_left` (vertex colours: right orange,
left blue), each node's mesh in world coordinates (metres, +y up as the hand world and glTF), and frame
k of the selection translated by k x `spacing` along +x in its node transform (spacing 0: frames
overlap, so pass one frame; spacing > 0: a filmstrip of poses side by side).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..common.errors import InputError
from ..common.mesh_io import to_trimesh
from .hand import FINGER_BASES, JOINT_NAMES, OPEN_HAND, SIDES, TIPS
from .motion import HandMotion
from .render import HAND_COLOURS

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


def _hand_faces(faces) -> list[Tensor]:
    if isinstance(faces, Tensor) and faces.dim() == 2:
        return [faces.long(), faces.long()]
    faces = [torch.as_tensor(f).long() for f in faces]
    if len(faces) != 2:
        raise InputError(
            "faces", "[F, 3] shared or one [F, 3] per hand (right, left)", f"{len(faces)} arrays"
        )
    return faces


def _check_hands(vertices: Tensor) -> Tensor:
    if (
        not isinstance(vertices, Tensor)
        or vertices.dim() != 4
        or vertices.shape[1] != 2
        or vertices.shape[3] != 3
    ):
        got = tuple(vertices.shape) if isinstance(vertices, Tensor) else type(vertices).__name__
        raise InputError("vertices", "two hands' vertices [T, 2, V, 3]", str(got))
    return vertices


def combine_hands(vertices: Tensor, faces) -> tuple[Tensor, Tensor, Tensor]:
    """[T, 2, V, 3] + faces (shared [F, 3] or per hand) -> core MESH parts: vertices [T, 2V, 3] (right
    then left), faces [F_r + F_l, 3] (long, the same every frame), vertex colours [2V, 3] (0..1)."""
    vertices = _check_hands(vertices)
    fr, fl = _hand_faces(faces)
    nv = vertices.shape[2]
    colours = torch.cat([torch.tensor(c, dtype=torch.float32).expand(nv, 3) for c in HAND_COLOURS])
    return vertices.reshape(vertices.shape[0], 2 * nv, 3).float(), torch.cat([fr, fl + nv]), colours


def hands_glb_scene(vertices: Tensor, faces, frames=0, spacing: float = 0.0):
    """A trimesh.Scene of the chosen frame(s) (an int or a sequence of frame indices), see the module
    docstring for the layout."""
    import trimesh

    vertices = _check_hands(vertices)
    fr, fl = _hand_faces(faces)
    chosen = [frames] if isinstance(frames, int) else list(frames)
    count = vertices.shape[0]
    if not chosen or any(
        isinstance(t, bool) or not isinstance(t, int) or not -count <= t < count for t in chosen
    ):
        raise InputError("frames", f"frame indices in 0..{count - 1}", repr(frames))
    scene = trimesh.Scene()
    for k, t in enumerate(chosen):
        t = t % count
        shift = np.eye(4)
        shift[0, 3] = k * float(spacing)
        for h, (side, f) in enumerate(zip(SIDES, (fr, fl), strict=True)):
            colour = torch.tensor(HAND_COLOURS[h], dtype=torch.float32).expand(vertices.shape[2], 3)
            mesh = to_trimesh(vertices[t, h].detach().cpu(), f.cpu(), colour, name=f"{side} hand, frame {t}")
            name = f"f{t:04d}_{side}"
            scene.add_geometry(mesh, node_name=name, geom_name=name, transform=shift)
    return scene


def hands_glb_bytes(vertices: Tensor, faces, frames=0, spacing: float = 0.0) -> bytes:
    return hands_glb_scene(vertices, faces, frames, spacing).export(file_type="glb")


def write_hands_glb(vertices: Tensor, faces, path: str | Path, frames=0, spacing: float = 0.0) -> Path:
    """The GLB of `hands_glb_scene` at `path` (parent folders created)."""
    data = hands_glb_bytes(vertices, faces, frames, spacing)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
