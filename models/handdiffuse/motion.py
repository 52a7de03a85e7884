"""HAND_MOTION: two hands over T frames, in the paper's two representations with exact conversions.

Local (what the denoisers and keyframe control work on): per hand 16 rotations in 6D (wrist + 15
finger joints, root-relative: finger rotations are relative to their parent joint) and a wrist
position. The right hand's wrist rotation and position are in the world; the LEFT wrist is expressed
in the right wrist's frame (rotation R_r^T R_l, position R_r^T (p_l - p_r)), so the representation
carries the relation between the hands directly (our reading of "wrist trajectory relative to the
other hand").

Global (what trajectory control and the metrics use): world joint positions [T, 2, 21, 3].

Hand index 0 is the right hand, 1 the left (as InterHand2.6M lists them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..common.errors import InputError
from .hand import NUM_JOINTS, NUM_ROT, OPEN_HAND, SIDES, HandSkeleton, forward_kinematics, inverse_kinematics
from .rotations import matrix_to_6d, sixd_to_matrix

HAND_FEATURES = NUM_ROT * 6 + 3  # 99 numbers per hand and frame in the local representation


def _check_fps(fps: float) -> float:
    if not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        raise InputError("fps", "a frame rate > 0", repr(fps))
    return float(fps)


def _check_shape(name: str, x: Tensor, tail: tuple[int, ...], what: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != len(tail) + 1 or tuple(x.shape[1:]) != tail:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(name, f"a tensor [T, {', '.join(map(str, tail))}] ({what})", str(got))
    if x.shape[0] == 0:
        raise InputError(name, "at least one frame (T >= 1)", "T = 0")


def relative_to_right(wrist_rot: Tensor, wrist_pos: Tensor) -> tuple[Tensor, Tensor]:
    """World wrist poses [..., 2, 3, 3] / [..., 2, 3] -> local: right unchanged, left in the right
    wrist's frame."""
    rr, pr = wrist_rot[..., 0, :, :], wrist_pos[..., 0, :]
    rl = rr.transpose(-1, -2) @ wrist_rot[..., 1, :, :]
    pl = (rr.transpose(-1, -2) @ (wrist_pos[..., 1, :] - pr)[..., None])[..., 0]
    return torch.stack([rr, rl], -3), torch.stack([pr, pl], -2)


def relative_to_world(wrist_rot: Tensor, wrist_pos: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of `relative_to_right`."""
    rr, pr = wrist_rot[..., 0, :, :], wrist_pos[..., 0, :]
    rl = rr @ wrist_rot[..., 1, :, :]
    pl = pr + (rr @ wrist_pos[..., 1, :, None])[..., 0]
    return torch.stack([rr, rl], -3), torch.stack([pr, pl], -2)


@dataclass
class HandMotion:
    """Two hands over T frames at `fps`, stored in the local representation (see module docstring)."""

    rot6d: Tensor  # [T, 2, 16, 6]
    trans: Tensor  # [T, 2, 3]
    fps: float
    label: str = ""
    caption: str = ""
    skeleton: HandSkeleton = field(default=OPEN_HAND, repr=False)

    def __post_init__(self) -> None:
        self.fps = _check_fps(self.fps)
        _check_shape("rot6d", self.rot6d, (2, NUM_ROT, 6), "6D rotations of 16 joints per hand")
        _check_shape("trans", self.trans, (2, 3), "wrist positions")
        if self.trans.shape[0] != self.rot6d.shape[0]:
            raise InputError("trans", f"{self.rot6d.shape[0]} frames like rot6d", f"{self.trans.shape[0]}")

    @property
    def num_frames(self) -> int:
        return self.rot6d.shape[0]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def rotations(self) -> Tensor:
        """Local rotation matrices [T, 2, 16, 3, 3] (left wrist relative to the right wrist)."""
        return sixd_to_matrix(self.rot6d)

    def world_wrists(self) -> tuple[Tensor, Tensor]:
        """World wrist rotations [T, 2, 3, 3] and positions [T, 2, 3]."""
        return relative_to_world(self.rotations()[:, :, 0], self.trans)

    def global_joints(self) -> Tensor:
        """World joint positions [T, 2, 21, 3] by forward kinematics."""
        rot = self.rotations()
        wr, wp = relative_to_world(rot[:, :, 0], self.trans)
        rot = torch.cat([wr[:, :, None], rot[:, :, 1:]], 2)
        return torch.stack(
            [forward_kinematics(rot[:, h], wp[:, h], side, self.skeleton) for h, side in enumerate(SIDES)], 1
        )

    @classmethod
    def from_world(
        cls, rot: Tensor, wrist: Tensor, fps: float, skeleton: HandSkeleton = OPEN_HAND, **meta
    ) -> HandMotion:
        """From rotations [T, 2, 16, 3, 3] whose wrist entries are WORLD rotations and world wrist
        positions [T, 2, 3]."""
        _check_shape("rotations", rot, (2, NUM_ROT, 3, 3), "rotation matrices")
        _check_shape("wrist", wrist, (2, 3), "world wrist positions")
        wr, wp = relative_to_right(rot[:, :, 0], wrist)
        rot = torch.cat([wr[:, :, None], rot[:, :, 1:]], 2)
        return cls(matrix_to_6d(rot), wp, fps, skeleton=skeleton, **meta)

    @classmethod
    def from_global(
        cls, joints: Tensor, fps: float, skeleton: HandSkeleton = OPEN_HAND, **meta
    ) -> HandMotion:
        """From world joints [T, 2, 21, 3] by inverse kinematics (exact for FK poses of `skeleton`;
        other positions are projected onto its bone lengths, see hand.inverse_kinematics)."""
        _check_shape("joints", joints, (2, NUM_JOINTS, 3), "21 joints per hand, right then left")
        _check_fps(fps)
        rots, wrists = zip(
            *(inverse_kinematics(joints[:, h], side, skeleton) for h, side in enumerate(SIDES))
        )
        return cls.from_world(torch.stack(rots, 1), torch.stack(wrists, 1), fps, skeleton, **meta)

    def to_features(self) -> Tensor:
        """[T, 2, 99]: 16 x 6D rotations then the wrist position, per hand (the denoisers' input)."""
        return torch.cat([self.rot6d.flatten(-2), self.trans], -1)

    @classmethod
    def from_features(cls, x: Tensor, fps: float, skeleton: HandSkeleton = OPEN_HAND, **meta) -> HandMotion:
        _check_shape("features", x, (2, HAND_FEATURES), "local hand features")
        return cls(
            x[..., : NUM_ROT * 6].unflatten(-1, (NUM_ROT, 6)),
            x[..., NUM_ROT * 6 :],
            fps,
            skeleton=skeleton,
            **meta,
        )
