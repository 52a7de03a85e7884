"""HandDiffuse trajectory control and windowed sampling (models/handdiffuse/control.py, pipeline.py):
the spline passes through its control points, windows blend without changing a frame-local result,
the right wrist's path is kept exactly, guidance pulls another joint onto its path, and separation moves
hands out of each other to touching and no further."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse.control import (
    Trajectory,
    catmull_rom,
    interpenetration,
    separate_x0,
    trajectory_error,
    windowed,
)
from papernodes.models.handdiffuse.denoiser import HandDenoiser
from papernodes.models.handdiffuse.metrics import hand_gap, penetration_depth
from papernodes.models.handdiffuse.pipeline import TRANS, HandDiffusion, ModelConfig, features_to_joints
from papernodes.models.handdiffuse.world import make_clip

TINY = {"width": 32, "heads": 2, "single_layers": 1, "interact_layers": 1, "num_labels": 7, "max_frames": 64}


def _pipe(window: int | None = None) -> HandDiffusion:
    torch.manual_seed(0)
    return HandDiffusion(HandDenoiser(**TINY), ModelConfig(denoiser=dict(TINY), window=window))


def test_catmull_rom_passes_through_points_and_is_linear_on_a_line():
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0.02, -0.03], [0.05, 0.1, 0.0], [0.2, 0.0, 0.1]])
    frames = [3, 10, 20, 29]
    pos, known = catmull_rom(frames, pts, 40)
    assert torch.allclose(pos[frames], pts, atol=1e-6)
    assert known[3:30].all() and not known[:3].any() and not known[30:].any()
    line = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]])
    pos, _ = catmull_rom([0, 10, 20], line, 21)  # evenly spaced collinear points: uniform motion
    assert torch.allclose(pos[:, 0], torch.arange(21) * 0.01, atol=1e-6)
    with pytest.raises(InputError, match="points"):
        catmull_rom([0, 0], line[:2], 5)


def test_windows_blend_without_changing_a_frame_local_result_and_see_only_window_lengths():
    x = torch.randn(1, 100, 2, 99, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    seen = []

    def frame_local(z, tt):
        seen.append((z.shape[0], z.shape[1], tt.shape[0]))
        return torch.tanh(z) * 2

    out = windowed(frame_local, x, t, 30)
    assert torch.allclose(out, torch.tanh(x) * 2, atol=1e-6)
    assert seen == [(6, 30, 6)]  # starts 0, 15, 30, 45, 60, 70: one batched call
    assert windowed(frame_local, x, t, 200).shape == x.shape and seen[-1] == (1, 100, 1)


def test_windowed_generation_equals_plain_generation_when_the_clip_fits():
    a = _pipe(window=None).generate("clap", 1.0, 30.0, seed=3, steps=4)
    b = _pipe(window=60).generate("clap", 1.0, 30.0, seed=3, steps=4)
    assert torch.equal(a.rot6d, b.rot6d) and torch.equal(a.trans, b.trans)


def _clip_trajectory(joints, frames):
    clip = make_clip(0, 0)
    g = clip.global_joints()[:frames]
    return g, Trajectory(joints, g[:, [h for h, _ in joints], [j for _, j in joints]],
                         torch.ones(frames, len(joints), dtype=torch.bool), frames)  # fmt: skip


def test_right_wrist_path_is_kept_exactly():
    _, traj = _clip_trajectory([(0, 0)], 30)
    out = _pipe().generate("clap", 1.0, 30.0, seed=0, steps=5, trajectory=traj)
    assert torch.allclose(out.global_joints()[:, 0, 0], traj.positions[:, 0], atol=1e-6)


def test_guidance_pulls_a_fingertip_onto_its_path():
    _, traj = _clip_trajectory([(1, 8)], 30)
    pipe = _pipe()
    free = pipe.generate("clap", 1.0, 30.0, seed=0, steps=6, trajectory=traj, guidance_iters=0)
    led = pipe.generate("clap", 1.0, 30.0, seed=0, steps=6, trajectory=traj, guidance_iters=60)
    e_free, e_led = trajectory_error(free.global_joints(), traj), trajectory_error(led.global_joints(), traj)
    assert e_led < 0.01 and e_led < 0.2 * e_free, (e_free, e_led)


def test_bad_trajectories_are_named_errors():
    _, traj = _clip_trajectory([(0, 0)], 30)
    with pytest.raises(InputError, match="trajectory"):
        _pipe().generate("clap", 2.0, 30.0, seed=0, steps=2, trajectory=traj)
    with pytest.raises(InputError, match="trajectory"):
        Trajectory([(2, 0)], torch.zeros(5, 1, 3), torch.ones(5, 1, dtype=torch.bool), 5)
    with pytest.raises(InputError, match="trajectory"):
        Trajectory([(0, 0)], torch.zeros(5, 2, 3), torch.ones(5, 1, dtype=torch.bool), 5)


def test_merged_trajectories_keep_both_and_the_later_wins():
    a = Trajectory([(0, 0)], torch.zeros(4, 1, 3), torch.tensor([[True], [True], [False], [False]]), 4)
    b = Trajectory(
        [(0, 0), (1, 4)], torch.ones(4, 2, 3), torch.tensor([[False, True]] * 2 + [[True, True]] * 2), 4
    )
    m = a.merged(b)
    assert m.joints == [(0, 0), (1, 4)]
    assert m.known[:, 0].all() and torch.equal(m.positions[:, 0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def _pressed_features(pipe: HandDiffusion, frames: int = 30) -> torch.Tensor:
    """A clap clip's model-space features [1, T, 2, 99] with the left wrist pulled halfway onto the right one."""
    z = pipe.encode(make_clip(0, 0))[:frames].clone()
    z[:, 1, TRANS] *= 0.5  # the left wrist is stored relative to the right hand
    return z[None]


def _to_joints(pipe: HandDiffusion):
    return lambda z: features_to_joints(pipe.from_model(z), 1.0)


def test_separation_removes_penetration_and_keeps_the_hands_touching():
    pipe = _pipe()
    x0 = _pressed_features(pipe)
    before = _to_joints(pipe)(x0)[0]
    deep = penetration_depth(before) > 0.005
    assert int(deep.sum()) >= 5  # frames pressed through by over 5 mm (9 of 30)
    after = _to_joints(pipe)(separate_x0(x0, _to_joints(pipe)))[0]
    assert float(interpenetration(after).max()) == 0.0  # nothing overlaps any more
    gap = hand_gap(after)[deep]
    assert float(gap.max()) < 0.001  # and no frame was pushed further than touching (< 1 mm apart)


def test_separation_line_search_never_raises_a_frames_depth_where_fingers_cross():
    """Step k of separate_x0 continues step k - 1 (the loop is deterministic). On a pressed clip with its
    features jittered (fingers crossing, where FK bends the depth within a step) no frame's summed depth
    rises from one step to the next: the backtracking line search. Plain Newton steps (backtracks=0) raise
    it 14 times over these 7 steps."""
    pipe = _pipe()
    x0 = _pressed_features(pipe)
    x0[:, :, 1, TRANS] *= 0.5
    x0 = x0 + 0.3 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    to_joints = _to_joints(pipe)

    def rises(backtracks: int) -> int:
        depths = [
            interpenetration(to_joints(separate_x0(x0, to_joints, iters=k, backtracks=backtracks)))[0]
            for k in range(8)
        ]
        assert float(depths[-1].sum()) < 0.2 * float(depths[0].sum())
        return sum(int((after > before).sum()) for before, after in zip(depths, depths[1:]))

    assert rises(6) == 0
    assert rises(0) > 5  # the test can tell


def test_separation_leaves_hands_apart_untouched_and_respects_fixed_entries():
    pipe = _pipe()
    apart = pipe.encode(make_clip(0, 0))[None, :30].clone()
    apart[..., 1, TRANS] *= 3.0  # left hand three times further away: nothing overlaps
    assert float(interpenetration(_to_joints(pipe)(apart)).max()) == 0.0
    assert torch.equal(separate_x0(apart, _to_joints(pipe)), apart)
    pressed = _pressed_features(pipe)
    fixed = torch.zeros_like(pressed, dtype=torch.bool)
    fixed[:, :5] = True  # keyframes: the sampler puts them back, so separation must not move them
    out = separate_x0(pressed, _to_joints(pipe), fixed=fixed)
    assert torch.equal(out[:, :5], pressed[:, :5]) and not torch.equal(out[:, 5:], pressed[:, 5:])


def test_generate_without_separation_is_the_plain_sampler_and_a_bad_flag_is_named():
    pipe = _pipe()
    a = pipe.generate("clap", 1.0, 30.0, seed=2, steps=3)
    b = pipe.generate("clap", 1.0, 30.0, seed=2, steps=3, separate_hands=False)
    assert torch.equal(a.rot6d, b.rot6d) and torch.equal(a.trans, b.trans)
    with pytest.raises(InputError, match="separate_hands"):
        pipe.generate("clap", 1.0, 30.0, seed=2, steps=3, separate_hands=1.5)


def test_generate_with_separation_ends_without_penetration():
    pipe = _pipe()  # an untrained model: its hands overlap freely
    depths = []
    for separate in (False, True):
        out = pipe.generate("clap", 1.0, 30.0, seed=5, steps=4, separate_hands=separate)
        depths.append(float(penetration_depth(out.global_joints()).max()))
    assert depths[0] > 0.005 and depths[1] < 1e-3, depths
