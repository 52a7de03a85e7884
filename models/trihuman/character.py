"""A TriHuman character: the rest template, its skeleton and skinning, and what the avatar is conditioned on.

The official release ships per-subject character files (template mesh, skeleton, skin weights, UV; see
docs/trihuman_official_layout.md); our avatar world builds the same pieces procedurally (world.py). Both
become a `Character`, the one thing the avatar (avatar.py) needs besides its networks:

- `skeleton_transforms`: axis-angle local joint rotations [..., J, 3] (+ a root translation) -> the
  skinning transforms rest -> posed [..., J, 4, 4] by forward kinematics over `parents` (every joint frame
  of the bind pose aligned with the world, as the world's skeleton; module spec of world.py).
- `pose_features`: the three-frame pose vector TriHuman conditions its deformation network and motion code
  on (Sec. 3.1-3.2: the skeletal pose of frames t, t-1, t-2). Per frame: the joint rotations (axis-angle,
  J x 3) and the root translation relative to frame t (3; zero for frame t itself), so the avatar sees
  velocities but not where on the floor it stands (our interpretation: the paper's DOF vector includes
  the global translation; relative translation keeps a held-out trajectory in distribution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common.errors import InputError
from .deform import axis_angle_matrix


def skeleton_transforms(
    poses: torch.Tensor,
    rest_joints: torch.Tensor,
    parents: tuple[int, ...],
    translations: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward kinematics. poses [..., J, 3] axis-angle (joint j's rotation in its parent's frame), rest
    joints [J, 3], parents (-1 for the root, each parent before its children), translations [..., 3] added
    to the root -> (joint positions [..., J, 3], global rotations [..., J, 3, 3], skinning transforms rest ->
    posed [..., J, 4, 4])."""
    n = len(parents)
    if not isinstance(poses, torch.Tensor) or poses.ndim < 2 or tuple(poses.shape[-2:]) != (n, 3):
        got = f"shape {list(poses.shape)}" if isinstance(poses, torch.Tensor) else type(poses).__name__
        raise InputError("poses", f"axis-angle poses [..., {n}, 3] (one per joint of the skeleton)", got)
    rest = rest_joints.to(poses)
    local = axis_angle_matrix(poses)
    rot: list[torch.Tensor] = []
    pos: list[torch.Tensor] = []
    for j, parent in enumerate(parents):
        if parent < 0:
            rot.append(local[..., j, :, :])
            t = translations.to(poses) if translations is not None else torch.zeros_like(poses[..., 0, :])
            pos.append(rest[j] + t)
        else:
            rot.append(rot[parent] @ local[..., j, :, :])
            pos.append(pos[parent] + (rot[parent] @ (rest[j] - rest[parent])[:, None])[..., 0])
    G = torch.stack(rot, -3)
    p = torch.stack(pos, -2)
    T = torch.zeros(*G.shape[:-2], 4, 4, dtype=G.dtype, device=G.device)
    T[..., :3, :3] = G
    T[..., :3, 3] = p - (G @ rest[:, :, None])[..., 0]
    T[..., 3, 3] = 1
    return p, G, T


@dataclass(frozen=True)
class Character:
    vertices: torch.Tensor  # [V, 3] rest template (metres)
    faces: torch.Tensor  # [F, 3] long, counter-clockwise seen from outside
    uvs: torch.Tensor  # [F, 3, 2] per-corner texture coordinates in [0, 1]
    skin_weights: torch.Tensor  # [V, J] rows sum to 1
    rest_joints: torch.Tensor  # [J, 3]
    parents: tuple[int, ...]
    joint_names: tuple[str, ...]

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def frame_features(self) -> int:
        """Numbers per frame in `pose_features`."""
        return 3 * self.num_joints + 3

    def check_poses(self, poses: torch.Tensor, name: str = "poses") -> None:
        j = self.num_joints
        if not isinstance(poses, torch.Tensor) or poses.ndim < 2 or tuple(poses.shape[-2:]) != (j, 3):
            got = f"shape {list(poses.shape)}" if isinstance(poses, torch.Tensor) else type(poses).__name__
            raise InputError(name, f"axis-angle poses [..., {j}, 3] for this character's {j}-joint skeleton "
                             "(a motion of another skeleton must be retargeted first)", got)  # fmt: skip

    def transforms(self, poses: torch.Tensor, translations: torch.Tensor | None = None) -> torch.Tensor:
        """Skinning transforms rest -> posed [..., J, 4, 4]."""
        self.check_poses(poses)
        return skeleton_transforms(poses, self.rest_joints, self.parents, translations)[2]

    def joints(self, poses: torch.Tensor, translations: torch.Tensor | None = None) -> torch.Tensor:
        self.check_poses(poses)
        return skeleton_transforms(poses, self.rest_joints, self.parents, translations)[0]


def pose_features(history_poses: torch.Tensor, history_translations: torch.Tensor) -> torch.Tensor:
    """[..., 3, J, 3] poses and [..., 3, 3] root translations of frames (t, t-1, t-2) -> [..., 3, 3J + 3]
    (module docstring)."""
    rel = history_translations - history_translations[..., :1, :]
    return torch.cat([history_poses.flatten(-2), rel], -1)


def history(poses: torch.Tensor, translations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames [T, J, 3] / [T, 3] -> each frame's (t, t-1, t-2) history [T, 3, J, 3] / [T, 3, 3]; before the
    first frame the first frame repeats (a motion starts at rest velocity)."""
    p = torch.cat([poses[:1], poses[:1], poses])
    t = torch.cat([translations[:1], translations[:1], translations])
    return (torch.stack([p[2:], p[1:-1], p[:-2]], 1), torch.stack([t[2:], t[1:-1], t[:-2]], 1))
