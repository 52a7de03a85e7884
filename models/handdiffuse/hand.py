"""The open kinematic hand: 21 joints, bone lengths of an adult hand, joint limits, FK and IK.

Used whenever no MANO files are present (and as the skeleton of the hand-motion world). Joint order is
the OpenPose / FreiHAND / MANO-with-fingertips order (docs/handdiffuse.md):

    0 wrist
    1 thumb CMC   2 thumb MCP   3 thumb IP    4 thumb tip
    5 index MCP   6 index PIP   7 index DIP   8 index tip
    9 middle MCP 10 middle PIP 11 middle DIP 12 middle tip
   13 ring MCP   14 ring PIP   15 ring DIP   16 ring tip
   17 little MCP 18 little PIP 19 little DIP 20 little tip

Conventions (ours): positions in metres. Hand frame of the RIGHT hand at rest: +x distal (wrist to
middle finger), +y radial (towards the thumb), +z dorsal (back of the hand); the palm faces -z. As in
MANO/SMPL, every joint frame is aligned with the wrist frame in the rest pose, and a joint's local
rotation rotates its child bones. 16 joints carry a rotation: the wrist (global orientation) and the
15 finger joints; fingertips have none. The LEFT hand is the mirror image: rest positions and local
rotations are reflected through the hand's xz-plane (M = diag(1, -1, 1)), so the same anatomical angles
give a mirrored pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.errors import InputError
from .rotations import axis_angle_to_matrix, kabsch, swing

NUM_JOINTS = 21
JOINT_NAMES = ("wrist",) + tuple(
    f"{finger}_{part}"
    for finger, parts in (
        ("thumb", ("cmc", "mcp", "ip", "tip")),
        ("index", ("mcp", "pip", "dip", "tip")),
        ("middle", ("mcp", "pip", "dip", "tip")),
        ("ring", ("mcp", "pip", "dip", "tip")),
        ("little", ("mcp", "pip", "dip", "tip")),
    )
    for part in parts
)
PARENTS = (-1,) + tuple(0 if k % 4 == 0 else 1 + 4 * (k // 4) + k % 4 - 1 for k in range(20))
FINGER_BASES = (1, 5, 9, 13, 17)
TIPS = (4, 8, 12, 16, 20)
FINGER_JOINTS = tuple(j for j in range(1, NUM_JOINTS) if j not in TIPS)  # 15 joints with a rotation
ROT_JOINTS = (0,) + FINGER_JOINTS  # 16: index 0 is the wrist's global rotation
NUM_ROT = len(ROT_JOINTS)
BONES = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))  # 20 (parent, child) pairs
SIDES = ("right", "left")
MIRROR = (1.0, -1.0, 1.0)  # hand-frame reflection that turns a right hand into a left hand

# Rest pose of the right hand: (base joint position, direction azimuth in the palm plane [deg],
# elevation towards the palm [deg], three bone lengths [m]); a flat hand like MANO's template.
_FINGERS = {
    "thumb": ((0.022, 0.018, -0.008), 42.0, 12.0, (0.046, 0.032, 0.027)),
    "index": ((0.088, 0.024, 0.0), 8.0, 0.0, (0.040, 0.024, 0.021)),
    "middle": ((0.092, 0.004, 0.0), 1.0, 0.0, (0.045, 0.028, 0.023)),
    "ring": ((0.086, -0.015, 0.0), -7.0, 0.0, (0.042, 0.027, 0.022)),
    "little": ((0.076, -0.032, 0.0), -16.0, 0.0, (0.033, 0.019, 0.019)),
}
# Pronation of each finger's anatomical frame about its bone [deg]: the thumb's flexion moves across
# the palm (towards the little finger), not straight down like the other fingers'.
_PRONATION = {"thumb": -60.0, "index": 0.0, "middle": 0.0, "ring": 0.0, "little": 0.0}

# Joint limits in degrees, per finger joint in FINGER_JOINTS order: (flex_min, flex_max, abd_min,
# abd_max). Flexion > 0 curls towards the palm; abduction > 0 moves towards the thumb side.
_LIMITS_DEG = {
    "thumb": ((-20, 45, -20, 40), (-10, 60, 0, 0), (-15, 80, 0, 0)),
    "index": ((-25, 90, -20, 20), (0, 110, 0, 0), (-5, 80, 0, 0)),
    "middle": ((-25, 90, -15, 15), (0, 110, 0, 0), (-5, 80, 0, 0)),
    "ring": ((-25, 90, -15, 15), (0, 110, 0, 0), (-5, 80, 0, 0)),
    "little": ((-25, 90, -25, 25), (0, 110, 0, 0), (-5, 80, 0, 0)),
}
JOINT_LIMITS = (
    torch.tensor([lim for finger in _FINGERS for lim in _LIMITS_DEG[finger]], dtype=torch.float64)
    .mul(math.pi / 180)
    .reshape(15, 2, 2)
)  # [15, (flex, abd), (min, max)] in radians


def side_index(side: str) -> int:
    if side not in SIDES:
        raise InputError("side", "'right' or 'left'", repr(side))
    return SIDES.index(side)


def _mirror(dtype, device) -> Tensor:
    return torch.tensor(MIRROR, dtype=dtype, device=device)


def mirror_rotations(rot: Tensor) -> Tensor:
    """M R M with M = diag(1, -1, 1): the rotation of the mirrored hand (its own inverse operation)."""
    m = _mirror(rot.dtype, rot.device)
    return rot * m[:, None] * m[None, :]


def _rest_right() -> tuple[Tensor, Tensor]:
    """Rest joint positions [21, 3] and anatomical frames [15, 3, 3] (columns: bone, flexion axis,
    dorsal) of the right hand, float64."""
    pos = torch.zeros(NUM_JOINTS, 3, dtype=torch.float64)
    frames = []
    for f, (name, (base, azim, elev, lengths)) in enumerate(_FINGERS.items()):
        a, e = math.radians(azim), math.radians(elev)
        bone = torch.tensor(
            [math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), -math.sin(e)], dtype=torch.float64
        )
        j0 = FINGER_BASES[f]
        pos[j0] = torch.tensor(base, dtype=torch.float64)
        for k, length in enumerate(lengths):
            pos[j0 + k + 1] = pos[j0 + k] + length * bone
        dorsal = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        dorsal = dorsal - (dorsal @ bone) * bone
        dorsal = dorsal / dorsal.norm()
        flex_axis = torch.linalg.cross(dorsal, bone)
        frame = torch.stack([bone, flex_axis, dorsal], -1)
        twist = axis_angle_to_matrix(bone, torch.tensor(math.radians(_PRONATION[name]), dtype=torch.float64))
        frames += [twist @ frame] * 3
    return pos, torch.stack(frames)


@dataclass(frozen=True)
class HandSkeleton:
    """Rest pose of the RIGHT hand in its wrist frame (the left hand is its mirror) and anatomical
    joint frames for the limits. A MANO shape gives another instance of the same structure."""

    rest: Tensor  # [21, 3], metres, wrist at the origin
    frames: Tensor  # [15, 3, 3] per finger joint: (bone axis, flexion axis, dorsal axis) as columns

    @staticmethod
    def default(scale: float = 1.0) -> HandSkeleton:
        pos, frames = _rest_right()
        return HandSkeleton(pos * scale, frames)

    def to(self, dtype=None, device=None) -> HandSkeleton:
        return HandSkeleton(
            self.rest.to(dtype=dtype, device=device), self.frames.to(dtype=dtype, device=device)
        )

    def rest_positions(self, side: str = "right") -> Tensor:
        """[21, 3] rest joints of the given hand in its own wrist frame."""
        return self.rest * _mirror(self.rest.dtype, self.rest.device) if side_index(side) else self.rest

    def offsets(self, side: str = "right") -> Tensor:
        """[21, 3] offset of each joint from its parent at rest (row 0: zeros)."""
        rest = self.rest_positions(side)
        parent = torch.tensor([max(p, 0) for p in PARENTS], device=rest.device)
        return rest - rest[parent]

    def bone_lengths(self) -> Tensor:
        """[20] lengths of BONES (same for both hands)."""
        return self.offsets()[1:].norm(dim=-1)


OPEN_HAND = HandSkeleton.default()


def _bone_dir(flex: Tensor, abd: Tensor) -> Tensor:
    """Unit bone direction in the anatomical frame: longitude = flexion (towards -z), latitude =
    abduction (towards +y). Chosen over yaw-pitch so flexion past 90 deg stays invertible."""
    ca = torch.cos(abd)
    return torch.stack([torch.cos(flex) * ca, torch.sin(abd), -torch.sin(flex) * ca], -1)


def rotations_from_angles(angles: Tensor, side: str = "right", skeleton: HandSkeleton = OPEN_HAND) -> Tensor:
    """Anatomical angles [..., 15, 2] (flexion, abduction; radians) -> local rotations [..., 15, 3, 3].

    Each rotation is the zero-twist swing taking the rest bone to the posed bone, which is exactly what
    `inverse_kinematics` recovers, so angles -> FK -> IK returns the same rotations."""
    sk = skeleton.to(angles.dtype, angles.device)
    frames = sk.frames.expand(*angles.shape[:-2], 15, 3, 3)
    target = (frames @ _bone_dir(angles[..., 0], angles[..., 1])[..., None])[..., 0]
    rest_dir = frames[..., :, 0]
    rot = swing(rest_dir, target)
    return mirror_rotations(rot) if side_index(side) else rot


def angles_from_rotations(rot: Tensor, side: str = "right", skeleton: HandSkeleton = OPEN_HAND) -> Tensor:
    """Local finger rotations [..., 15, 3, 3] -> anatomical angles [..., 15, 2] of the bone directions
    (twist about the bone is dropped: it does not move any joint)."""
    if side_index(side):
        rot = mirror_rotations(rot)
    sk = skeleton.to(rot.dtype, rot.device)
    posed = (rot @ sk.frames[..., :, 0:1])[..., 0]  # posed bone direction in the parent-aligned frame
    d = (sk.frames.transpose(-1, -2) @ posed[..., None])[..., 0]
    abd = torch.asin(d[..., 1].clamp(-1.0, 1.0))
    flex = torch.atan2(-d[..., 2], d[..., 0])
    return torch.stack([flex, abd], -1)


def clamp_angles(angles: Tensor) -> Tensor:
    """Clamp [..., 15, 2] anatomical angles into JOINT_LIMITS."""
    lim = JOINT_LIMITS.to(angles.dtype).to(angles.device)
    return torch.maximum(torch.minimum(angles, lim[..., 1]), lim[..., 0])


def clamp_rotations(rot: Tensor, side: str = "right", skeleton: HandSkeleton = OPEN_HAND) -> Tensor:
    """Project local finger rotations [..., 15, 3, 3] onto the joint limits (and zero twist)."""
    return rotations_from_angles(clamp_angles(angles_from_rotations(rot, side, skeleton)), side, skeleton)


def sample_angles(shape: tuple[int, ...], generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Uniform random anatomical angles inside the joint limits: [*shape, 15, 2]."""
    lim = JOINT_LIMITS.to(dtype)
    u = torch.rand(*shape, 15, 2, generator=generator, dtype=dtype)
    return lim[..., 0] + u * (lim[..., 1] - lim[..., 0])


def forward_kinematics(
    rot: Tensor, wrist: Tensor, side: str = "right", skeleton: HandSkeleton = OPEN_HAND
) -> Tensor:
    """Joint positions [..., 21, 3] from rotations [..., 16, 3, 3] (index 0 = global wrist rotation,
    1..15 = local rotations of FINGER_JOINTS) and the wrist position [..., 3]."""
    if rot.shape[-3:] != (NUM_ROT, 3, 3):
        raise InputError("rotations", f"[..., {NUM_ROT}, 3, 3]", str(tuple(rot.shape)))
    off = skeleton.to(rot.dtype, rot.device).offsets(side)
    index = {j: k for k, j in enumerate(ROT_JOINTS)}
    glob: dict[int, Tensor] = {0: rot[..., 0, :, :]}
    pos: list[Tensor] = [wrist.expand(*rot.shape[:-3], 3)]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        pos.append(pos[p] + (glob[p] @ off[j][:, None])[..., 0])
        if j in index:
            glob[j] = glob[p] @ rot[..., index[j], :, :]
    return torch.stack(pos, -2)


def inverse_kinematics(
    joints: Tensor, side: str = "right", skeleton: HandSkeleton = OPEN_HAND
) -> tuple[Tensor, Tensor]:
    """Joint positions [..., 21, 3] -> (rotations [..., 16, 3, 3], wrist [..., 3]).

    Exact for poses made by `forward_kinematics` with this skeleton. Twist is not observable from
    positions, so we resolve it deliberately: the wrist rotation is the Kabsch fit of the five finger
    bases (rigid palm: exact for FK poses, least squares otherwise), and every finger joint gets the
    zero-twist swing from its rest bone to the observed bone. Bone lengths come from the skeleton, so
    positions with other lengths are projected onto it."""
    if joints.shape[-2:] != (NUM_JOINTS, 3):
        raise InputError("joints", f"[..., {NUM_JOINTS}, 3] (21 joints per hand)", str(tuple(joints.shape)))
    off = skeleton.to(joints.dtype, joints.device).offsets(side)
    wrist = joints[..., 0, :]
    bases = list(FINGER_BASES)
    rest_palm = off[bases].expand(*joints.shape[:-2], 5, 3)
    wrist_rot = kabsch(rest_palm, joints[..., bases, :] - wrist[..., None, :])
    glob = {0: wrist_rot}
    local = [wrist_rot]
    for j in FINGER_JOINTS:
        gp = glob[PARENTS[j]]
        bone = joints[..., j + 1, :] - joints[..., j, :]
        v = (gp.transpose(-1, -2) @ bone[..., None])[..., 0]
        r = swing(off[j + 1].expand_as(v), v)
        glob[j] = gp @ r
        local.append(r)
    return torch.stack(local, -3), wrist
