"""HandDiffuse open kinematic hand (models/handdiffuse/hand.py, rotations.py): 6D round trip, FK of the
rest pose, mirrored left hand, joint limits, and IK that is exact on FK poses (float64, tol 1e-9)."""

from __future__ import annotations

import math

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse import hand as H
from papernodes.models.handdiffuse import rotations as R

TOL = 1e-9
F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pose(n: int, side: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    fingers = H.rotations_from_angles(H.sample_angles((n,), g), side)
    rot = torch.cat([R.random_rotation((n,), g)[:, None], fingers], 1)
    return rot, torch.randn(n, 3, generator=g, dtype=F64) * 0.3


def test_6d_round_trip_and_gram_schmidt():
    rot = R.random_rotation((64,), _gen(1))
    assert torch.allclose(rot.transpose(-1, -2) @ rot, torch.eye(3, dtype=F64).expand(64, 3, 3), atol=TOL)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(64, dtype=F64), atol=TOL)
    assert torch.allclose(R.sixd_to_matrix(R.matrix_to_6d(rot)), rot, atol=TOL)
    # the 6D numbers are the first two COLUMNS (Zhou et al.), not rows
    assert torch.equal(R.matrix_to_6d(rot)[:, :3], rot[:, :, 0])
    # any non-degenerate 6 numbers map to a rotation whose first column is the normalised first vector
    raw = torch.randn(64, 6, generator=_gen(2), dtype=F64) * 5
    m = R.sixd_to_matrix(raw)
    assert torch.allclose(torch.linalg.det(m), torch.ones(64, dtype=F64), atol=TOL)
    assert torch.allclose(m[:, :, 0], raw[:, :3] / raw[:, :3].norm(dim=-1, keepdim=True), atol=TOL)
    assert torch.allclose(R.sixd_to_matrix(R.matrix_to_6d(m)), m, atol=TOL)


def test_swing_is_minimal_and_handles_opposite_vectors():
    g = _gen(3)
    u = torch.nn.functional.normalize(torch.randn(100, 3, generator=g, dtype=F64), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(100, 3, generator=g, dtype=F64), dim=-1)
    r = R.swing(u, v)
    assert torch.allclose((r @ u[..., None])[..., 0], v, atol=TOL)
    # minimal: rotation angle equals the angle between u and v
    angle = torch.acos(((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    assert torch.allclose(angle, torch.acos((u * v).sum(-1).clamp(-1, 1)), atol=1e-7)
    r = R.swing(u, -u)
    assert torch.allclose((r @ u[..., None])[..., 0], -u, atol=TOL)
    assert torch.allclose(torch.linalg.det(r), torch.ones(100, dtype=F64), atol=TOL)


def test_joint_order_parents_and_bone_lengths_of_an_adult_hand():
    assert len(H.JOINT_NAMES) == 21 and H.JOINT_NAMES[0] == "wrist" and H.JOINT_NAMES[4] == "thumb_tip"
    assert H.JOINT_NAMES[8] == "index_tip" and H.JOINT_NAMES[20] == "little_tip"
    assert H.PARENTS[:6] == (-1, 0, 1, 2, 3, 0) and H.PARENTS[17:] == (0, 17, 18, 19)
    rest = H.OPEN_HAND.rest
    hand_length = (rest[12] - rest[0]).norm().item()  # wrist to middle fingertip
    assert 0.17 <= hand_length <= 0.21, hand_length  # adult hand length ~ 17-21 cm
    lengths = H.OPEN_HAND.bone_lengths()
    assert lengths.min().item() >= 0.015 and lengths.max().item() <= 0.1
    # fingertips beyond their knuckles along +x (distal); thumb on +y for the right hand
    assert all(rest[t, 0] > rest[t - 3, 0] for t in H.TIPS)
    assert rest[4, 1] > rest[8, 1] > rest[12, 1] > rest[16, 1] > rest[20, 1]


def test_rest_pose_fk_and_left_hand_is_the_mirror():
    eye = torch.eye(3, dtype=F64).expand(16, 3, 3)
    zero = torch.zeros(3, dtype=F64)
    right = H.forward_kinematics(eye, zero, "right")
    left = H.forward_kinematics(eye, zero, "left")
    assert torch.allclose(right, H.OPEN_HAND.rest, atol=TOL)
    assert torch.allclose(left, right * torch.tensor([1.0, -1.0, 1.0], dtype=F64), atol=TOL)
    # the same anatomical angles give the mirrored pose
    ang = H.sample_angles((8,), _gen(4))
    eye8 = torch.eye(3, dtype=F64).expand(8, 1, 3, 3)
    pr = H.forward_kinematics(torch.cat([eye8, H.rotations_from_angles(ang, "right")], 1), zero, "right")
    pl = H.forward_kinematics(torch.cat([eye8, H.rotations_from_angles(ang, "left")], 1), zero, "left")
    assert torch.allclose(pl, pr * torch.tensor([1.0, -1.0, 1.0], dtype=F64), atol=TOL)

    # left is a true mirror (handedness flips): signed palm volume changes sign
    def vol(p):
        return torch.linalg.det(torch.stack([p[..., 5, :], p[..., 17, :], p[..., 1, :] + p[..., 9, :]], -2))

    assert torch.all(vol(pr) * vol(pl) < 0)


def test_flexion_curls_towards_the_palm():
    ang = torch.zeros(15, 2, dtype=F64)
    ang[3:6, 0] = math.radians(60)  # index MCP, PIP, DIP
    rot = torch.cat([torch.eye(3, dtype=F64)[None], H.rotations_from_angles(ang)], 0)
    p = H.forward_kinematics(rot, torch.zeros(3, dtype=F64))
    assert p[8, 2].item() < -0.03  # the index tip moves to the palm side (-z)
    assert torch.allclose(p[[12, 16, 20]], H.OPEN_HAND.rest[[12, 16, 20]], atol=TOL)


@pytest.mark.parametrize("side", H.SIDES)
def test_ik_is_exact_on_fk_poses_and_preserves_bone_lengths(side):
    rot, wrist = _pose(256, side, seed=5)
    x = H.forward_kinematics(rot, wrist, side)
    rot2, wrist2 = H.inverse_kinematics(x, side)
    x2 = H.forward_kinematics(rot2, wrist2, side)
    assert (x2 - x).abs().max().item() < TOL  # FK∘IK∘FK = FK
    # poses built from anatomical angles are zero-twist, so IK returns the very same rotations
    assert (rot2 - rot).abs().max().item() < TOL
    parents = [p for p, _ in H.BONES]
    children = [c for _, c in H.BONES]
    lengths = (x2[:, children] - x2[:, parents]).norm(dim=-1)
    assert torch.allclose(lengths, H.OPEN_HAND.bone_lengths().expand_as(lengths), atol=TOL)


def test_ik_twist_is_resolved_to_zero_and_positions_still_match():
    rot, wrist = _pose(32, "right", seed=6)
    g = _gen(7)
    # twist every finger joint's frame about its rest bone (T_j) and undo it in the child (T_j^-1 R_c T_c):
    # global bone directions, hence positions, are unchanged; IK returns the zero-twist rotations
    bones = H.OPEN_HAND.frames[:, :, 0]
    twist = R.axis_angle_to_matrix(bones.expand(32, 15, 3), torch.rand(32, 15, generator=g, dtype=F64) * 2)
    eye = torch.eye(3, dtype=F64).expand(32, 3, 3)
    parent_twist = [eye if k % 3 == 0 else twist[:, k - 1] for k in range(15)]
    twisted = torch.stack(
        [rot[:, 0]] + [parent_twist[k].transpose(-1, -2) @ rot[:, k + 1] @ twist[:, k] for k in range(15)], 1
    )
    assert (twisted - rot).abs().max().item() > 0.1
    x = H.forward_kinematics(twisted, wrist)
    assert torch.allclose(x, H.forward_kinematics(rot, wrist), atol=TOL)
    rot2, _ = H.inverse_kinematics(x)
    assert torch.allclose(rot2, rot, atol=TOL)


def test_ik_projects_noisy_joints_onto_the_skeleton():
    rot, wrist = _pose(16, "left", seed=8)
    x = H.forward_kinematics(rot, wrist, "left")
    noisy = x + 0.002 * torch.randn(x.shape, generator=_gen(9), dtype=F64)
    x2 = H.forward_kinematics(*H.inverse_kinematics(noisy, "left"), "left")
    parents = [p for p, _ in H.BONES]
    children = [c for _, c in H.BONES]
    lengths = (x2[:, children] - x2[:, parents]).norm(dim=-1)
    assert torch.allclose(lengths, H.OPEN_HAND.bone_lengths().expand_as(lengths), atol=TOL)
    assert (x2 - x).norm(dim=-1).mean().item() < 0.01  # stays near the pose (errors accumulate along fingers)


def test_joint_limits_clamp_and_sample():
    g = _gen(10)
    ang = H.sample_angles((500,), g)
    lim = H.JOINT_LIMITS
    assert torch.all(ang >= lim[..., 0]) and torch.all(ang <= lim[..., 1])
    wild = (torch.rand(500, 15, 2, generator=g, dtype=F64) - 0.5) * 2.8  # up to +-80 deg
    clamped = H.clamp_angles(wild)
    assert torch.all(clamped >= lim[..., 0]) and torch.all(clamped <= lim[..., 1])
    inside = (wild >= lim[..., 0]) & (wild <= lim[..., 1])
    assert torch.equal(clamped[inside], wild[inside])
    # clamp on rotation matrices: projected rotations have in-range angles; in-range rotations are kept
    for side in H.SIDES:
        rot = H.clamp_rotations(H.rotations_from_angles(wild, side), side)
        back = H.angles_from_rotations(rot, side)
        assert torch.all(back >= lim[..., 0] - TOL) and torch.all(back <= lim[..., 1] + TOL)
        ok = H.rotations_from_angles(ang, side)
        assert torch.allclose(H.clamp_rotations(ok, side), ok, atol=TOL)
        assert torch.allclose(H.angles_from_rotations(ok, side), ang, atol=TOL)


def test_bad_inputs_name_the_input():
    with pytest.raises(InputError, match="'joints'"):
        H.inverse_kinematics(torch.zeros(4, 20, 3, dtype=F64))
    with pytest.raises(InputError, match="'rotations'"):
        H.forward_kinematics(torch.zeros(4, 15, 3, 3, dtype=F64), torch.zeros(4, 3, dtype=F64))
    with pytest.raises(InputError, match="'side'"):
        H.OPEN_HAND.rest_positions("middle")
