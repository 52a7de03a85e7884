"""The interaction loss: how the two hands relate, compared between prediction and ground truth.

D[t, i, j] = |x_right,i(t) - x_left,j(t)| is the 21 x 21 matrix of right-to-left joint distances.

    L_inter = mean |D_pred - D_gt|  +  w_vel * mean |dD_pred - dD_gt|,   dD(t) = D(t + 1) - D(t)

Our choices (the paper fixes only "dynamic inter-hand relations"): L1, because the pairs that matter
(near contact) have small errors that a square would shrink next to the errors of far pairs; per-frame
differences (metres per frame, not per second) so the two terms stay comparable at any fps; all
21 x 21 pairs equally weighted; w_vel = 1 by default.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common.errors import InputError
from .hand import NUM_JOINTS
from .metrics import pair_clearance


def distance_matrices(joints: Tensor) -> Tensor:
    """World joints [..., 2, 21, 3] (right, left) -> right-to-left distances [..., 21, 21]."""
    if joints.dim() < 3 or tuple(joints.shape[-3:]) != (2, NUM_JOINTS, 3):
        raise InputError("joints", "world joints [..., 2, 21, 3]", str(tuple(joints.shape)))
    diff = joints[..., 0, :, None, :] - joints[..., 1, None, :, :]
    return diff.square().sum(-1).clamp_min(1e-12).sqrt()  # clamp keeps the gradient finite at contact


def interaction_loss(
    pred: Tensor,
    gt: Tensor,
    velocity_weight: float = 1.0,
    frame_dim: int = -4,
    penetration_weight: float = 0.0,
    clearance_weight: float = 0.0,
    clearance_sides: str = "both",
    sample_weight: Tensor | None = None,
    clearance_offset: float = 0.0,
) -> dict[str, Tensor]:
    """Static, temporal, penetration and clearance interaction terms and their weighted sum for joints
    [..., T, 2, 21, 3] (`penetration_loss`, `clearance_loss` with `clearance_sides` and `clearance_offset`;
    weight 0 leaves a term out). `sample_weight` [B] scales each sample of the leading dim (the trainer's
    noise-level weight); None = the plain mean."""
    if pred.shape != gt.shape:
        raise InputError("pred", f"the ground truth's shape {tuple(gt.shape)}", str(tuple(pred.shape)))
    if sample_weight is not None and tuple(sample_weight.shape) != tuple(pred.shape[:1]):
        raise InputError(
            "sample_weight", f"one weight per sample [{pred.shape[0]}]", str(tuple(sample_weight.shape))
        )
    dp, dg = distance_matrices(pred), distance_matrices(gt)
    static = _mean(dp - dg, sample_weight, abs=True)
    dim = frame_dim + 1 if frame_dim < 0 else frame_dim  # distance matrices drop one trailing dim
    if dp.shape[dim] > 1:
        temporal = _mean(torch.diff(dp, dim=dim) - torch.diff(dg, dim=dim), sample_weight, abs=True)
    else:
        temporal = dp.new_zeros(())
    out = {"static": static, "temporal": temporal, "total": static + velocity_weight * temporal}
    if penetration_weight > 0:
        out["penetration"] = penetration_loss(pred, gt, sample_weight)
        out["total"] = out["total"] + penetration_weight * out["penetration"]
    if clearance_weight > 0:
        out["clearance"] = clearance_loss(
            pred, gt, sides=clearance_sides, sample_weight=sample_weight, offset=clearance_offset
        )
        out["total"] = out["total"] + clearance_weight * out["clearance"]
    return out


def _mean(x: Tensor, sample_weight: Tensor | None, abs: bool = False) -> Tensor:
    """Mean of x (|x| with `abs`); with `sample_weight` [B], the mean of each sample's mean times its weight."""
    x = x.abs() if abs else x
    if sample_weight is None:
        return x.mean()
    return (x.reshape(x.shape[0], -1).mean(dim=1) * sample_weight.to(x)).mean()


CLEARANCE_MARGIN = 0.02  # metres: pairs the data brings closer than this are the contact pairs


CLEARANCE_SIDES = ("both", "outside")


def clearance_loss(
    pred: Tensor,
    gt: Tensor,
    margin: float = CLEARANCE_MARGIN,
    sides: str = "both",
    sample_weight: Tensor | None = None,
    offset: float = 0.0,
) -> Tensor:
    """Error of the surface clearance on the pairs the data brings near contact, per frame [m]:

        L_clear = mean_frames sum_pairs w_gt * |clearance_pred - clearance_gt|,  w_gt = max(0, 1 - clearance_gt / margin)

    over the (joint sphere, other hand's capsule) pairs of metrics.pair_clearance. Where the data touches
    (w = 1) the prediction is pulled to touch exactly as deep, no deeper and no further; the weight fades
    to 0 at `margin`, so hands apart in the data cost nothing. Why beside the distance-matrix terms: those
    compare joint centres with equal weight on all 441 pairs, so a few near-contact pairs barely move them
    and the hands stop a little short or pass a little through (measured: contact and penetration no better
    than without the loss); the one-sided penetration term alone kept the hands apart (docs/handdiffuse.md).
    Zero for the ground truth.

    `sides="outside"` counts only max(0, clearance_pred - clearance_gt): it pulls hands that stop short
    towards contact and leaves the other side to `penetration_loss` (with the two-sided term about a fifth
    of the generated frames went through: docs/handdiffuse.md).

    `offset` [m] aims the contact pairs that much further apart than the data (target clearance_gt + offset,
    same weights): a skin, as collision margins in physics engines. Why: a model that touches exactly on
    average presses through in about half the frames its error puts on the inner side; an aim inside the
    band between contact (< 5 mm) and visible penetration (> 1 mm) keeps both (our interpretation; 0 = the
    data's own clearance, zero for the ground truth). Measured at 2 mm: no change in contact or penetration
    (docs/handdiffuse.md), so the recipe does not use it."""
    if sides not in CLEARANCE_SIDES:
        raise InputError("clearance_sides", f"one of {', '.join(CLEARANCE_SIDES)}", repr(sides))
    clear_p, clear_g = pair_clearance(pred), pair_clearance(gt)
    weight = (1.0 - clear_g / margin).clamp(0.0, 1.0)
    error = clear_p - (clear_g + offset)
    error = error.clamp_min(0.0) if sides == "outside" else error.abs()
    return _mean((weight * error).sum(dim=(-1, -2, -3)), sample_weight)


def penetration_loss(pred: Tensor, gt: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """How much deeper the predicted hands interpenetrate than the data's, per frame [m], averaged:

        L_pen = mean_frames sum_pairs max(0, depth_pred - depth_gt),   depth = max(0, -clearance)

    over every (joint sphere, other hand's capsule) pair of metrics.pair_clearance. One-sided: hands
    apart or touching cost nothing (contact stays free); a pair the data itself presses together (a
    tight clap) may go as deep as the data does; zero for the ground truth. Summed over pairs so every
    penetrating joint gets a gradient, not only the deepest."""
    depth_p = (-pair_clearance(pred)).clamp_min(0)
    depth_g = (-pair_clearance(gt)).clamp_min(0)
    return _mean((depth_p - depth_g).clamp_min(0).sum(dim=(-1, -2, -3)), sample_weight)


def position_loss(pred: Tensor, gt: Tensor, weight: Tensor | None = None) -> Tensor:
    """Squared error of every joint's world position, for joints [B, T, 2, 21, 3] [m^2]:

        L_pos = mean_b w_b * mean_{t, hand, joint} |X_pred - X_gt|^2

    MDM's geometric position loss (Tevet et al. 2023, Sec. 3, L_pos). Why here: the v-loss compares the
    standardised local features entry by entry, so per m^2 of joint displacement it charges the left
    wrist's relative position 200x less than its rotation and 1 800x or more less than a finger angle
    (measured: benchmarks/handdiffuse_error_split.py), and that position is where the hands overlap; this
    term charges each error by how far it moves the joints (docs/handdiffuse.md). `weight` [B]
    scales each sample (the trainer passes its v-loss weight, as for the smoothness loss)."""
    if pred.shape != gt.shape or pred.dim() != 5 or tuple(pred.shape[-3:]) != (2, NUM_JOINTS, 3):
        raise InputError(
            "pred", f"joints [B, T, 2, 21, 3] shaped like {tuple(gt.shape)}", str(tuple(pred.shape))
        )
    per_sample = (pred - gt).square().sum(-1).flatten(1).mean(1)
    return (per_sample * weight).mean() if weight is not None else per_sample.mean()


def smoothness_loss(pred: Tensor, gt: Tensor, weight: Tensor | None = None) -> dict[str, Tensor]:
    """Velocity and acceleration of every joint, prediction vs ground truth, for joints [B, T, 2, 21, 3].

        L_smooth = mean_b w_b * ( mean |dX_pred - dX_gt|^2 + mean |d2X_pred - d2X_gt|^2 )   (metres; per frame)

    Our choice for the tremble the generated hands showed (docs/handdiffuse.md): motion-diffusion models
    add a velocity term on joint positions; the acceleration term is the jitter metric's own quantity.
    Both compare with the data's, so a prediction smoother than the data costs as much as a trembling one.
    Squared, so a large tremble costs more than a small offset. `weight` [B] scales each sample (the
    trainer passes its v-loss weight 1 / (1 - ab_t), so low-noise steps, where a tremble is left in, count).
    """
    if pred.shape != gt.shape or pred.dim() != 5 or tuple(pred.shape[-3:]) != (2, NUM_JOINTS, 3):
        raise InputError(
            "pred", f"joints [B, T, 2, 21, 3] shaped like {tuple(gt.shape)}", str(tuple(pred.shape))
        )
    err = pred - gt  # differences of the error = error of the differences
    vel = torch.diff(err, dim=1).square().sum(-1).flatten(1).mean(1)
    acc = torch.diff(err, n=2, dim=1).square().sum(-1).flatten(1).mean(1) if err.shape[1] > 2 else vel * 0
    if weight is not None:
        vel, acc = vel * weight, acc * weight
    return {"velocity": vel.mean(), "acceleration": acc.mean(), "total": vel.mean() + acc.mean()}
