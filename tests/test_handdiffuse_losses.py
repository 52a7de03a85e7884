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


# ---- smoothness loss (velocity + acceleration of the joints vs the data's) ----


def _naive_smoothness(pred: torch.Tensor, gt: torch.Tensor, weight: list[float]) -> tuple[float, float]:
    """Loops over samples, frames and joints in float64."""
    vel = acc = 0.0
    b, t = pred.shape[:2]
    for i in range(b):
        v = a = 0.0
        for f in range(t - 1):
            dv = (pred[i, f + 1] - pred[i, f]) - (gt[i, f + 1] - gt[i, f])
            v += float(dv.square().sum(-1).sum())
        for f in range(t - 2):
            da = (pred[i, f + 2] - 2 * pred[i, f + 1] + pred[i, f]) - (
                gt[i, f + 2] - 2 * gt[i, f + 1] + gt[i, f]
            )
            a += float(da.square().sum(-1).sum())
        vel += weight[i] * v / ((t - 1) * 2 * 21)
        acc += weight[i] * a / ((t - 2) * 2 * 21)
    return vel / b, acc / b


def test_smoothness_matches_a_naive_loop_and_applies_the_weights(clap):
    gt = clap[:20].unsqueeze(0).repeat(2, 1, 1, 1, 1)
    pred = gt + 0.01 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(0), dtype=gt.dtype)
    out = L.smoothness_loss(pred, gt, torch.tensor([1.0, 3.0], dtype=gt.dtype))
    vel, acc = _naive_smoothness(pred, gt, [1.0, 3.0])
    assert float(out["velocity"]) == pytest.approx(vel, rel=1e-12)
    assert float(out["acceleration"]) == pytest.approx(acc, rel=1e-12)
    assert float(out["total"]) == pytest.approx(vel + acc, rel=1e-12)


def test_smoothness_ignores_an_offset_and_a_drift_costs_velocity_only(clap):
    gt = clap[:30].unsqueeze(0)
    assert float(L.smoothness_loss(gt, gt)["total"]) == 0.0
    offset = L.smoothness_loss(gt + 0.05, gt)  # a static offset has the data's velocity and acceleration
    assert float(offset["total"]) == pytest.approx(0.0, abs=1e-20)
    frames = torch.arange(30, dtype=gt.dtype).reshape(1, 30, 1, 1, 1)
    drift = L.smoothness_loss(gt + 0.002 * frames, gt)  # 2 mm per frame along x, y and z
    assert float(drift["velocity"]) == pytest.approx(3 * 0.002**2, rel=1e-9)
    assert float(drift["acceleration"]) == pytest.approx(0.0, abs=1e-20)


def test_a_tremble_costs_sixteen_times_its_squared_amplitude_in_acceleration(clap):
    """pred = gt + a (-1)^t along x: second differences are 4a, first differences 2a."""
    gt = clap[:30].unsqueeze(0)
    sign = (-1.0) ** torch.arange(30, dtype=gt.dtype)
    tremble = torch.zeros_like(gt)
    tremble[..., 0] = 0.003 * sign.reshape(1, 30, 1, 1)
    out = L.smoothness_loss(gt + tremble, gt)
    assert float(out["acceleration"]) == pytest.approx(16 * 0.003**2, rel=1e-9)
    assert float(out["velocity"]) == pytest.approx(4 * 0.003**2, rel=1e-9)
    # the jitter metric sees the same tremble: 4a per frame^2 more than the data on every joint
    assert float(Mx.jitter(gt[0] + tremble[0], 30.0)) > float(Mx.jitter(gt[0], 30.0))


def test_smoothness_rejects_a_wrong_shape(clap):
    with pytest.raises(InputError, match="pred"):
        L.smoothness_loss(clap[:10], clap[:10])  # no batch dimension


def test_position_loss_matches_a_naive_loop_and_a_wrist_offset_costs_its_square_on_every_joint(clap):
    gt = clap[:12].unsqueeze(0).repeat(2, 1, 1, 1, 1)
    pred = gt + 0.01 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1), dtype=gt.dtype)
    naive = 0.0
    for b, w in enumerate((1.0, 3.0)):
        total = sum(
            sum((float(pred[b, f, h, j, k]) - float(gt[b, f, h, j, k])) ** 2 for k in range(3))
            for f in range(12)
            for h in range(2)
            for j in range(21)
        )
        naive += w * total / (12 * 2 * 21) / 2
    out = L.position_loss(pred, gt, torch.tensor([1.0, 3.0], dtype=gt.dtype))
    assert float(out) == pytest.approx(naive, rel=1e-12)
    # moving the left hand 1 cm (wrist and every joint with it) costs half of 1 cm^2: one of two hands
    moved = gt.clone()
    moved[:, :, 1, :, 0] += 0.01
    assert float(L.position_loss(moved, gt)) == pytest.approx(0.5 * 0.01**2, rel=1e-9)
    assert float(L.position_loss(gt, gt)) == 0.0
    with pytest.raises(InputError, match="pred"):
        L.position_loss(clap[:10], clap[:10])


# ---- penetration term of the interaction loss (one-sided, relative to the data's own) ----


def _naive_clearances(joints: torch.Tensor) -> dict:
    """{(frame, hand, joint, capsule): surface clearance}, looping over frames, both directions, joints and
    the other hand's capsules; distances to segments by hand."""
    radii, jr = Mx.CAPSULE_RADII.tolist(), Mx.JOINT_RADII.tolist()
    out = {}
    for f in range(joints.shape[0]):
        for h in (0, 1):
            for j in range(21):
                for c in range(len(Mx.CAPSULES)):
                    p = joints[f, h, j]
                    a, b = joints[f, 1 - h, Mx.CAPSULES[c][0]], joints[f, 1 - h, Mx.CAPSULES[c][1]]
                    ab = b - a
                    t = min(1.0, max(0.0, float((p - a) @ ab) / max(float(ab @ ab), 1e-12)))
                    out[f, h, j, c] = float((p - (a + t * ab)).norm()) - radii[c] - jr[j]
    return out


def _naive_penetration(pred: torch.Tensor, gt: torch.Tensor) -> float:
    cp, cg = _naive_clearances(pred), _naive_clearances(gt)
    return sum(max(0.0, max(0.0, -cp[k]) - max(0.0, -cg[k])) for k in cp) / pred.shape[0]


def test_penetration_term_matches_a_naive_loop_and_is_one_sided(clap):
    gt = clap[:6]
    assert float(L.penetration_loss(gt, gt)) == 0.0  # the data costs nothing, even where it touches
    apart = gt.clone()
    apart[:, 1, :, 0] -= 0.2  # left hand 20 cm further away: no penetration at all
    assert float(L.penetration_loss(apart, gt)) == 0.0
    pressed = gt.clone()
    centre = gt[:, 0].mean(1, keepdim=True)
    pressed[:, 1] = centre + 0.5 * (gt[:, 1] - centre)  # left hand pulled into the right one
    got = float(L.penetration_loss(pressed, gt))
    assert got > 1e-3 and got == pytest.approx(_naive_penetration(pressed, gt), rel=1e-9)


def test_penetration_term_enters_the_interaction_loss_with_its_weight_and_pushes_apart(clap):
    gt = clap[:6]
    pressed = gt.clone()
    centre = gt[:, 0].mean(1, keepdim=True)
    pressed[:, 1] = centre + 0.5 * (gt[:, 1] - centre)
    plain = L.interaction_loss(pressed, gt)
    both = L.interaction_loss(pressed, gt, penetration_weight=2.0)
    assert "penetration" not in plain
    assert float(both["total"]) == pytest.approx(float(plain["total"]) + 2 * float(both["penetration"]))
    x = pressed.clone().requires_grad_(True)
    L.penetration_loss(x, gt).backward()
    assert torch.isfinite(x.grad).all()
    # a small step against the gradient lowers the penetration
    with torch.no_grad():
        stepped = x - 1e-3 * x.grad / x.grad.norm()
    assert float(L.penetration_loss(stepped, gt)) < float(L.penetration_loss(pressed, gt))


# ---- clearance term of the interaction loss (two-sided, on the pairs the data brings near contact) ----


def _naive_clearance(pred: torch.Tensor, gt: torch.Tensor, margin: float) -> float:
    cp, cg = _naive_clearances(pred), _naive_clearances(gt)
    return sum(min(1.0, max(0.0, 1.0 - cg[k] / margin)) * abs(cp[k] - cg[k]) for k in cp) / pred.shape[0]


def test_clearance_term_matches_a_naive_loop_and_is_two_sided_near_contact_only(clap):
    gt = clap[:6].double()
    assert float(Mx.hand_gap(gt).min()) < L.CLEARANCE_MARGIN  # the clap brings the hands into contact
    assert float(L.clearance_loss(gt, gt)) == 0.0
    centre = gt[:, 0].mean(1, keepdim=True)
    pressed, opened = gt.clone(), gt.clone()
    pressed[:, 1] = centre + 0.5 * (gt[:, 1] - centre)  # left hand pulled into the right one
    opened[:, 1, :, 0] -= 0.03  # left hand 3 cm further away: stops short of contact
    for moved in (pressed, opened):  # both directions cost
        got = float(L.clearance_loss(moved, gt))
        assert got > 1e-3 and got == pytest.approx(_naive_clearance(moved, gt, L.CLEARANCE_MARGIN), rel=1e-9)
    far = gt.clone()
    far[:, 1, :, 0] -= 0.5  # data 50 cm apart: no pair near contact, nothing to pull together
    assert float(L.clearance_loss(far + torch.randn_like(far) * 0.01, far)) == 0.0


def test_clearance_term_enters_the_interaction_loss_and_pulls_toward_contact(clap):
    gt = clap[:6]
    away = gt[:, 1].mean(1) - gt[:, 0].mean(1)  # per frame, from the right hand's centre to the left's
    opened = gt.clone()
    opened[:, 1] += 0.03 * (away / away.norm(dim=-1, keepdim=True))[:, None]  # left hand 3 cm further out
    plain = L.interaction_loss(opened, gt)
    both = L.interaction_loss(opened, gt, clearance_weight=3.0)
    assert "clearance" not in plain
    assert float(both["total"]) == pytest.approx(float(plain["total"]) + 3 * float(both["clearance"]))
    x = opened.clone().requires_grad_(True)
    L.clearance_loss(x, gt).backward()
    with torch.no_grad():
        stepped = x - 1e-3 * x.grad / x.grad.norm()
    assert torch.isfinite(x.grad).all()
    assert float(L.clearance_loss(stepped, gt)) < float(L.clearance_loss(opened, gt))

    def contact_pairs_error(joints):
        """Signed: > 0 where the contact pairs stand further apart than the data's."""
        w = (1 - Mx.pair_clearance(gt) / L.CLEARANCE_MARGIN).clamp(0, 1)
        return float((w * (Mx.pair_clearance(joints) - Mx.pair_clearance(gt))).sum())

    assert 0 < contact_pairs_error(stepped) < contact_pairs_error(opened)  # pulled back toward contact


def test_outside_clearance_charges_only_hands_that_stop_short(clap):
    gt = clap[:6].double()
    centre = gt[:, 0].mean(1, keepdim=True)
    pressed, opened = gt.clone(), gt.clone()
    pressed[:, 1] = centre + 0.5 * (gt[:, 1] - centre)  # through the other hand: the penetration term's side
    away = gt[:, 1].mean(1) - gt[:, 0].mean(1)  # per frame, from the right hand's centre to the left's
    opened[:, 1] += 0.03 * (away / away.norm(dim=-1, keepdim=True))[:, None]  # stops short of contact
    assert float(L.clearance_loss(gt, gt, sides="outside")) == 0.0

    def one_side(moved, sign):
        cp, cg = _naive_clearances(moved), _naive_clearances(gt)
        w = {k: min(1.0, max(0.0, 1.0 - cg[k] / L.CLEARANCE_MARGIN)) for k in cp}
        return sum(w[k] * max(0.0, sign * (cp[k] - cg[k])) for k in cp) / moved.shape[0]

    got = float(L.clearance_loss(opened, gt, sides="outside"))
    assert got > 1e-3 and got == pytest.approx(one_side(opened, +1), rel=1e-9)
    # the two-sided term is the outside part plus the inside part (the side the penetration term covers)
    inside = one_side(pressed, -1)
    outside = float(L.clearance_loss(pressed, gt, sides="outside"))
    assert float(L.clearance_loss(pressed, gt)) == pytest.approx(outside + inside, rel=1e-9)
    assert inside > 1e-3 and outside == pytest.approx(one_side(pressed, +1), rel=1e-9)
    with pytest.raises(InputError, match="clearance_sides"):
        L.clearance_loss(gt, gt, sides="inside")


def test_clearance_offset_aims_contact_pairs_that_far_outside_the_data(clap):
    """With an offset the target is the data's clearance + offset on the same pairs (a naive loop, float64),
    so the ground truth costs offset × the summed weights, and hands moved apart until their contact pairs
    stand about that far out cost less than the data's own touching pose."""
    gt = clap[:6].double()
    cg = _naive_clearances(gt)
    w = {k: min(1.0, max(0.0, 1.0 - cg[k] / L.CLEARANCE_MARGIN)) for k in cg}
    offset = 0.002
    assert float(L.clearance_loss(gt, gt, offset=offset)) == pytest.approx(
        offset * sum(w.values()) / gt.shape[0], rel=1e-9
    )
    away = gt[:, 1].mean(1) - gt[:, 0].mean(1)
    unit = (away / away.norm(dim=-1, keepdim=True))[:, None]
    costs = {}
    for mm in (0, 1, 2, 3, 6):
        moved = gt.clone()
        moved[:, 1] += mm * 1e-3 * unit
        cp = _naive_clearances(moved)
        naive = sum(w[k] * abs(cp[k] - cg[k] - offset) for k in cp) / gt.shape[0]
        costs[mm] = float(L.clearance_loss(moved, gt, offset=offset))
        assert costs[mm] == pytest.approx(naive, rel=1e-9)
    assert min(costs, key=costs.get) in (1, 2, 3) and costs[0] > costs[2] < costs[6]
    both = L.interaction_loss(gt, gt, clearance_weight=1.0, clearance_offset=offset)
    assert float(both["clearance"]) == pytest.approx(float(L.clearance_loss(gt, gt, offset=offset)))


def test_sample_weight_is_the_weighted_mean_of_each_samples_loss():
    """With per-sample weights [B], every term is the mean over samples of weight × that sample's own loss
    (a loop, float64); weights of one give the plain mean; a zero weight takes a sample's gradient away."""
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(3, 5, 2, 21, 3, generator=g, dtype=torch.float64) * 0.1
    pred = (gt + 0.02 * torch.randn(gt.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    w = torch.tensor([0.9, 0.0, 0.25], dtype=torch.float64)
    kw = dict(penetration_weight=2.0, clearance_weight=0.5)
    out = L.interaction_loss(pred, gt, sample_weight=w, **kw)
    for term in ("static", "temporal", "penetration", "clearance", "total"):
        each = [L.interaction_loss(pred[i : i + 1], gt[i : i + 1], **kw)[term].item() for i in range(3)]
        naive = sum(wi * li for wi, li in zip(w.tolist(), each)) / 3
        assert out[term].item() == pytest.approx(naive, rel=1e-12, abs=1e-15), term
    ones = L.interaction_loss(pred, gt, sample_weight=torch.ones(3, dtype=torch.float64), **kw)
    plain = L.interaction_loss(pred, gt, **kw)
    for term in plain:
        assert ones[term].item() == pytest.approx(plain[term].item(), rel=1e-12), term
    out["total"].backward()
    assert pred.grad[1].abs().max().item() == 0.0 and pred.grad[0].abs().max().item() > 0
    with pytest.raises(InputError, match="'sample_weight'"):
        L.interaction_loss(pred, gt, sample_weight=torch.ones(2, dtype=torch.float64))


# ---- the sampler's separation measure (control.interpenetration) ----


def test_interpenetration_matches_a_naive_loop_and_is_zero_when_apart(clap):
    from papernodes.models.handdiffuse.control import interpenetration

    gt = clap[:6]
    apart = gt.clone()
    apart[:, 1, :, 0] -= 0.2
    assert float(interpenetration(apart).max()) == 0.0
    pressed = gt.clone()
    centre = gt[:, 0].mean(1, keepdim=True)
    pressed[:, 1] = centre + 0.5 * (gt[:, 1] - centre)
    clear = _naive_clearances(pressed)
    naive = [sum(max(0.0, -c) for k, c in clear.items() if k[0] == f) for f in range(6)]
    got = interpenetration(pressed)
    assert got.shape == (6,) and float(got.max()) > 0.01  # the first frames pressed through
    assert got.tolist() == pytest.approx(naive, rel=1e-9)
