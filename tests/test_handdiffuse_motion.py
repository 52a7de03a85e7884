"""HAND_MOTION (models/handdiffuse/motion.py): local <-> global conversions are exact (float64, 1e-9),
the left wrist is stored relative to the right hand, features round-trip, and bad inputs name the input."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse import hand as H
from papernodes.models.handdiffuse import rotations as R
from papernodes.models.handdiffuse.motion import (
    HAND_FEATURES,
    HandMotion,
    relative_to_right,
    relative_to_world,
)

TOL = 1e-9
F64 = torch.float64


def _world(t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random FK-able world rotations [T, 2, 16, 3, 3] (wrists global) and wrist positions [T, 2, 3]."""
    g = torch.Generator().manual_seed(seed)
    hands = []
    for side in H.SIDES:
        fingers = H.rotations_from_angles(H.sample_angles((t,), g), side)
        hands.append(torch.cat([R.random_rotation((t,), g)[:, None], fingers], 1))
    return torch.stack(hands, 1), torch.randn(t, 2, 3, generator=g, dtype=F64) * 0.2


def _fk(rot, wrist):
    return torch.stack([H.forward_kinematics(rot[:, h], wrist[:, h], s) for h, s in enumerate(H.SIDES)], 1)


def test_local_to_global_is_fk_of_both_hands():
    rot, wrist = _world(20)
    m = HandMotion.from_world(rot, wrist, fps=30)
    assert torch.allclose(m.global_joints(), _fk(rot, wrist), atol=TOL)
    wr, wp = m.world_wrists()
    assert torch.allclose(wr, rot[:, :, 0], atol=TOL) and torch.allclose(wp, wrist, atol=TOL)


def test_fk_ik_fk_is_fk_and_ik_fk_ik_is_ik():
    rot, wrist = _world(40, seed=1)
    joints = _fk(rot, wrist)
    m = HandMotion.from_global(joints, fps=30)
    assert (m.global_joints() - joints).abs().max().item() < TOL
    m2 = HandMotion.from_global(m.global_joints(), fps=30)
    assert (m2.rot6d - m.rot6d).abs().max().item() < TOL and (m2.trans - m.trans).abs().max().item() < TOL
    # zero-twist poses from anatomical angles come back as the same local rotations
    assert torch.allclose(m.rotations()[:, :, 1:], rot[:, :, 1:], atol=TOL)


def test_left_wrist_is_relative_to_the_right_hand():
    rot, wrist = _world(10, seed=2)
    m = HandMotion.from_world(rot, wrist, fps=30)
    rr, rl = rot[:, 0, 0], rot[:, 1, 0]
    assert torch.allclose(m.rotations()[:, 1, 0], rr.transpose(-1, -2) @ rl, atol=TOL)
    expected = (rr.transpose(-1, -2) @ (wrist[:, 1] - wrist[:, 0])[..., None])[..., 0]
    assert torch.allclose(m.trans[:, 1], expected, atol=TOL)
    # moving both hands rigidly together changes only the right hand's entries
    q = R.random_rotation((), torch.Generator().manual_seed(3))
    shift = torch.tensor([0.3, -0.1, 0.2], dtype=F64)
    rot_q = rot.clone()
    rot_q[:, :, 0] = q @ rot[:, :, 0]
    m_q = HandMotion.from_world(rot_q, (q @ wrist[..., None])[..., 0] + shift, fps=30)
    assert torch.allclose(m_q.rot6d[:, 1], m.rot6d[:, 1], atol=TOL)
    assert torch.allclose(m_q.trans[:, 1], m.trans[:, 1], atol=TOL)
    wr, wp = relative_to_world(*relative_to_right(rot[:, :, 0], wrist))
    assert torch.allclose(wr, rot[:, :, 0], atol=TOL) and torch.allclose(wp, wrist, atol=TOL)


def test_bone_lengths_are_preserved_in_both_hands():
    rot, wrist = _world(12, seed=4)
    joints = HandMotion.from_world(rot, wrist, fps=24).global_joints()
    p = [a for a, _ in H.BONES]
    c = [b for _, b in H.BONES]
    lengths = (joints[:, :, c] - joints[:, :, p]).norm(dim=-1)
    assert torch.allclose(lengths, H.OPEN_HAND.bone_lengths().expand_as(lengths), atol=TOL)


def test_features_round_trip_and_metadata():
    rot, wrist = _world(8, seed=5)
    m = HandMotion.from_world(rot, wrist, fps=30, label="clap", caption="two hands clap")
    x = m.to_features()
    assert x.shape == (8, 2, HAND_FEATURES) and HAND_FEATURES == 99
    m2 = HandMotion.from_features(x, fps=30, label="clap")
    assert torch.equal(m2.rot6d, m.rot6d) and torch.equal(m2.trans, m.trans)
    assert m.label == "clap" and m.caption == "two hands clap" and m.duration == pytest.approx(8 / 30)


def test_mirrored_motion_gives_mirrored_joints():
    """A left hand built as the world mirror of the right hand (x -> -x) has mirrored joints."""
    rot, wrist = _world(6, seed=6)
    mw = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64))  # world mirror
    mh = torch.diag(torch.tensor(H.MIRROR, dtype=F64))  # hand mirror
    left = torch.cat([(mw @ rot[:, 0, 0] @ mh)[:, None], H.mirror_rotations(rot[:, 0, 1:])], 1)
    rot2 = torch.stack([rot[:, 0], left], 1)
    wrist2 = torch.stack([wrist[:, 0], wrist[:, 0] @ mw], 1)
    j = HandMotion.from_world(rot2, wrist2, fps=30).global_joints()
    assert torch.allclose(j[:, 1], j[:, 0] @ mw, atol=TOL)


@pytest.mark.parametrize("fps", [0, -30, float("nan"), float("inf")])
def test_bad_fps(fps):
    rot, wrist = _world(3)
    with pytest.raises(InputError, match="'fps'"):
        HandMotion.from_world(rot, wrist, fps=fps)
    with pytest.raises(InputError, match="'fps'"):
        HandMotion.from_global(_fk(rot, wrist), fps=fps)


def test_zero_frames_and_wrong_joint_counts():
    with pytest.raises(InputError, match="'joints'.*T = 0"):
        HandMotion.from_global(torch.zeros(0, 2, 21, 3, dtype=F64), fps=30)
    with pytest.raises(InputError, match="'rot6d'.*T = 0"):
        HandMotion(torch.zeros(0, 2, 16, 6), torch.zeros(0, 2, 3), fps=30)
    for bad in (
        torch.zeros(5, 2, 20, 3),
        torch.zeros(5, 2, 42, 3),
        torch.zeros(5, 42, 3),
        torch.zeros(5, 1, 21, 3),
    ):
        with pytest.raises(InputError, match="'joints'.*21 joints"):
            HandMotion.from_global(bad, fps=30)
    with pytest.raises(InputError, match="'rot6d'"):
        HandMotion(torch.zeros(5, 2, 15, 6), torch.zeros(5, 2, 3), fps=30)
    with pytest.raises(InputError, match="'trans'"):
        HandMotion(torch.zeros(5, 2, 16, 6), torch.zeros(4, 2, 3), fps=30)
