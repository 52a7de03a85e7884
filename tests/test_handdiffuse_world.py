"""HandDiffuse hand-motion world and metrics (models/handdiffuse/world.py, metrics.py): determinism,
balanced labels, bounded penetration, claps that bring the palms together, and the metric definitions
checked on hand-made cases."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse import metrics as Mx
from papernodes.models.handdiffuse import world as W
from papernodes.models.handdiffuse.motion import HandMotion

SEED = 3
N_CLIPS = 21  # three of each action


@pytest.fixture(scope="module")
def clips() -> list[HandMotion]:
    return W.make_clips(SEED, N_CLIPS, dtype=torch.float64)


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_clips_are_deterministic_per_seed_and_index(clips):
    again = W.make_clip(SEED, 5, torch.float64)
    assert torch.equal(again.rot6d, clips[5].rot6d) and torch.equal(again.trans, clips[5].trans)
    assert again.caption == clips[5].caption and again.label == clips[5].label
    assert not torch.equal(W.make_clip(SEED + 1, 5, torch.float64).trans, clips[5].trans)
    assert torch.equal(W.make_clips(SEED, 2, start=5, dtype=torch.float64)[0].rot6d, clips[5].rot6d)


def test_labels_balanced_lengths_and_captions(clips):
    counts = Counter(c.label for c in clips)
    assert set(counts) == set(W.ACTIONS) and set(counts.values()) == {N_CLIPS // len(W.ACTIONS)}
    for c in clips:
        assert c.fps == 30 and 60 <= c.num_frames <= 120 and 2.0 <= c.duration <= 4.0
        assert c.caption and "{" not in c.caption
        assert torch.isfinite(c.rot6d).all() and torch.isfinite(c.trans).all()
    # float32 by default (what training uses), same motion
    c32 = W.make_clip(SEED, 0)
    assert c32.rot6d.dtype == torch.float32
    assert torch.allclose(c32.global_joints().double(), clips[0].global_joints(), atol=1e-5)


def test_variation_in_placement_and_tempo(clips):
    claps = [c for c in clips if c.label == "clap"]
    starts = torch.stack([c.global_joints()[0, 0, 0] for c in claps])
    assert (starts[0] - starts[1]).norm() > 0.01 and (starts[1] - starts[2]).norm() > 0.01
    assert len({c.num_frames for c in clips}) > 10


def test_hands_do_not_interpenetrate(clips):
    """Penetration (metrics.penetration_depth: joint spheres in bone capsules) stays under 1 mm in every
    frame of every generated clip."""
    worst = {}
    for c in clips:
        depth = Mx.penetration_depth(c.global_joints())
        worst[c.label] = max(worst.get(c.label, 0.0), float(depth.max()))
    assert max(worst.values()) <= 1e-3, worst


def test_touching_actions_touch(clips):
    """Contact is real: every touching action comes within 3 mm of contact (metrics.hand_gap: surface
    clearance), pointing stays >= 5 mm off the palm and the wave keeps the hands far apart."""
    for c in clips:
        gap = Mx.hand_gap(c.global_joints())
        assert float(gap.min()) >= -1e-3  # the penetration bound, again
        if c.label == "wave":
            assert float(gap.min()) > 0.1
        elif c.label == "point_palm":
            assert 0.005 <= float(gap.min()) <= 0.03
        else:
            assert float(gap.min()) <= 0.003, (c.label, float(gap.min()))


def test_clap_brings_the_palms_together_as_often_as_the_caption_says(clips):
    for c in (c for c in clips if c.label == "clap"):
        pc = Mx.palm_centres(c.global_joints())
        dist = (pc[:, 0] - pc[:, 1]).norm(dim=-1)
        assert float(dist.min()) <= 0.04  # palms within 4 cm at contact
        assert float(dist.max()) >= 0.10  # and apart between claps
        closed = dist <= dist.min() + 0.002
        episodes = int(closed[0]) + int((closed[1:] & ~closed[:-1]).sum())
        n = re.search(r"(\d+) times", c.caption)
        if n:
            assert episodes == int(n.group(1)), (episodes, c.caption)
        assert episodes >= 2


def test_mpjpe_keyframe_error_and_jitter_on_known_cases():
    t = 10
    gt = torch.zeros(t, 2, 21, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[..., 0] += 0.003  # every joint 3 mm off
    assert Mx.mpjpe(pred, gt).item() == pytest.approx(0.003, abs=1e-12)
    pred[4, 1, 7] += torch.tensor([0.0, 0.04, 0.0], dtype=torch.float64)
    frames = torch.zeros(t, dtype=torch.bool)
    frames[[0, 9]] = True
    assert Mx.keyframe_error(pred, gt, frames).item() == pytest.approx(0.003, abs=1e-12)
    frames[4] = True
    joint_mask = torch.zeros(t, 2, 21, dtype=torch.bool)
    joint_mask[4, 1, 7] = True
    assert Mx.keyframe_error(pred, gt, frames, joint_mask).item() == pytest.approx(
        (0.003**2 + 0.04**2) ** 0.5
    )
    # constant acceleration a along x: jitter = a exactly; constant velocity: 0
    time = torch.arange(t, dtype=torch.float64) / 30
    acc = gt.clone()
    acc[..., 0] += 0.5 * 2.0 * time[:, None, None] ** 2
    assert Mx.jitter(acc, 30).item() == pytest.approx(2.0, rel=1e-9)
    vel = gt.clone()
    vel[..., 1] += 0.7 * time[:, None, None]
    assert Mx.jitter(vel, 30).item() == pytest.approx(0.0, abs=1e-9)


def test_penetration_depth_on_a_constructed_case():
    """A left joint placed at distance d from the axis of a right bone penetrates by r_bone + r_joint - d."""
    f64 = torch.float64
    j = torch.zeros(1, 2, 21, 3, dtype=f64)
    j[0, 0, :, 0] = torch.linspace(-1.0, -0.2, 21)  # right joints on a far line
    j[0, 0, 6] = torch.tensor([0.0, 0.0, 0.0], dtype=f64)  # index middle phalanx along x
    j[0, 0, 7] = torch.tensor([0.1, 0.0, 0.0], dtype=f64)
    j[0, 1] = torch.tensor([0.05, 0.0, 1.0], dtype=f64)  # left hand far away ...
    j[0, 1, 20] = torch.tensor([0.05, 0.01, 0.0], dtype=f64)  # ... but its little tip 1 cm above the bone
    expected = float(Mx.CAPSULE_RADII[Mx.CAPSULES.index((6, 7))] + Mx.JOINT_RADII[20]) - 0.01
    assert expected > 0
    assert Mx.penetration_depth(j).item() == pytest.approx(expected, abs=1e-12)
    assert Mx.hand_gap(j).item() == pytest.approx(-expected, abs=1e-12)
    j[0, 1, 20, 1] = 0.05
    assert Mx.penetration_depth(j).item() == 0.0
    stats = Mx.penetration_stats(torch.cat([j, j]))
    assert stats == {"penetration_mean": 0.0, "penetration_max": 0.0, "penetration_ratio": 0.0}
    with pytest.raises(InputError, match="'joints'"):
        Mx.penetration_depth(torch.zeros(3, 2, 20, 3))
