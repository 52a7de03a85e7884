"""HandDiffuse interaction loss (models/handdiffuse/losses.py): zero for the ground truth, grows with a
hand offset, and its temporal term sees a timing shift that the static term cannot tell from an offset."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse import losses as L
from papernodes.models.handdiffuse import metrics as Mx
from papernodes.models.handdiffuse import world as W


@pytest.fixture(scope="module")
def clap() -> torch.Tensor:
    return W.make_clip(0, 0, torch.float64).global_joints()  # index 0: a mirror-symmetric clap


def test_distance_matrix_values():
    j = torch.zeros(2, 21, 3, dtype=torch.float64)
    j[1, :, 0] = 0.1
    j[1, 5, 1] = 0.1
    d = L.distance_matrices(j)
    assert d.shape == (21, 21)
    assert d[3, 4].item() == pytest.approx(0.1, abs=1e-12)
    assert d[0, 5].item() == pytest.approx(2**0.5 * 0.1, abs=1e-12)


def test_zero_for_ground_truth(clap):
    out = L.interaction_loss(clap, clap.clone())
    assert out["static"].item() == 0.0 and out["temporal"].item() == 0.0 and out["total"].item() == 0.0


def test_grows_with_a_hand_offset(clap):
    direction = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    values = []
    for delta in (0.0, 0.005, 0.01, 0.02, 0.04, 0.08):
        pred = clap.clone()
        pred[:, 1] += delta * direction
        values.append(L.interaction_loss(pred, clap)["static"].item())
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values, values[1:])), values
    # a pure distance change in x moves every pair by at most delta (triangle inequality)
    assert values[-1] <= 0.08 + 1e-12


def _delay_left(joints: torch.Tensor, k: int) -> torch.Tensor:
    out = joints.clone()
    out[k:, 1] = joints[:-k, 1]
    out[:k, 1] = joints[0, 1]
    return out


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_temporal_term_sees_a_timing_shift_that_the_static_term_misses(clap):
    """The left hand delayed by k frames vs the left hand moved away by a constant offset chosen (by
    bisection) so that the STATIC terms are equal to 1e-12: the static term cannot tell the two errors
    apart, the temporal term is many times larger for the timing shift."""
    for k in (1, 2, 4):
        shifted = _delay_left(clap, k)
        target = L.interaction_loss(shifted, clap)["static"].item()
        pc = Mx.palm_centres(clap)
        outward = torch.nn.functional.normalize(pc[:, 1] - pc[:, 0], dim=-1)[:, None]  # per frame

        def offset(delta: float, outward: torch.Tensor = outward) -> torch.Tensor:
            out = clap.clone()
            out[:, 1] += delta * outward
            return out

        lo, hi = 0.0, 0.2
        for _ in range(200):
            mid = (lo + hi) / 2
            if L.interaction_loss(offset(mid), clap)["static"].item() < target:
                lo = mid
            else:
                hi = mid
        off = L.interaction_loss(offset(lo), clap)
        late = L.interaction_loss(shifted, clap)
        assert off["static"].item() == pytest.approx(late["static"].item(), rel=1e-12, abs=1e-15)
        assert late["temporal"].item() > 5 * off["temporal"].item(), (k, late, off)


def test_temporal_term_alone_is_zero_for_static_poses_and_weight_applies():
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(1, 2, 21, 3, generator=g, dtype=torch.float64)
    gt = pose.expand(6, 2, 21, 3).clone()
    pred = gt.clone()
    pred[:, 1] += 0.01
    out = L.interaction_loss(pred, gt, velocity_weight=3.0)
    assert out["static"].item() > 0 and out["temporal"].item() == 0.0
    pred[3:, 1] += 0.02  # a jump
    out = L.interaction_loss(pred, gt, velocity_weight=3.0)
    assert out["total"].item() == pytest.approx(out["static"].item() + 3 * out["temporal"].item(), rel=1e-12)
    assert out["temporal"].item() > 0


def test_batched_and_gradients_finite_at_contact():
    j = torch.zeros(2, 5, 2, 21, 3, dtype=torch.float64, requires_grad=True)  # all joints coincide
    gt = torch.rand(2, 5, 2, 21, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    L.interaction_loss(j, gt)["total"].backward()
    assert torch.isfinite(j.grad).all()
    with pytest.raises(InputError, match="'pred'"):
        L.interaction_loss(torch.zeros(4, 2, 21, 3), torch.zeros(5, 2, 21, 3))
