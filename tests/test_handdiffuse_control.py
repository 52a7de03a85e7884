"""HandDiffuse trajectory control and windowed sampling (models/handdiffuse/control.py, pipeline.py):
the spline passes through its control points, windows blend without changing a frame-local result,
the right wrist's path is kept exactly, and guidance pulls another joint onto its path."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse.control import Trajectory, catmull_rom, trajectory_error, windowed
from papernodes.models.handdiffuse.denoiser import HandDenoiser
from papernodes.models.handdiffuse.pipeline import HandDiffusion, ModelConfig
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
