"""Motion metrics on world joints [T, 2, 21, 3] (metres): MPJPE, keyframe error, jitter, penetration.

Penetration (our definition): each hand is a set of capsules, one per bone plus three across the
knuckles (so a fingertip cannot pass through the palm unseen), with radii of an adult hand; each joint
is a sphere of the largest radius of its bones. A joint of one hand penetrates the other hand by
max(0, r_bone + r_joint - distance to the bone's segment). Both directions are measured.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common.errors import InputError
from .hand import BONES, FINGER_BASES, NUM_JOINTS

# Capsule radii [m] per BONES entry (palm, then proximal, middle, distal per finger; thumb first).
_FINGER_RADII = {
    "thumb": (0.010, 0.010, 0.009, 0.008),
    "index": (0.010, 0.009, 0.008, 0.007),
    "middle": (0.010, 0.009, 0.008, 0.007),
    "ring": (0.010, 0.0085, 0.0075, 0.0068),
    "little": (0.010, 0.008, 0.007, 0.0065),
}
KNUCKLE_BONES = ((5, 9), (9, 13), (13, 17))
CAPSULES = BONES + KNUCKLE_BONES
CAPSULE_RADII = torch.tensor(
    [r for f in _FINGER_RADII.values() for r in f] + [0.010] * 3, dtype=torch.float64
)
JOINT_RADII = torch.stack(
    [max(CAPSULE_RADII[k] for k, (a, b) in enumerate(CAPSULES) if j in (a, b)) for j in range(NUM_JOINTS)]
)


def _check(name: str, x: Tensor) -> None:
    if x.dim() < 3 or tuple(x.shape[-3:]) != (2, NUM_JOINTS, 3):
        raise InputError(name, "world joints [..., 2, 21, 3]", str(tuple(x.shape)))


def mpjpe(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean per-joint position error [m]; `mask` (broadcastable to [..., 2, 21]) selects joints."""
    _check("pred", pred)
    _check("gt", gt)
    err = (pred - gt).norm(dim=-1)
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype).expand_as(err)
    return (err * mask).sum() / mask.sum().clamp_min(1)


def keyframe_error(
    pred: Tensor, keyframes: Tensor, frame_mask: Tensor, joint_mask: Tensor | None = None
) -> Tensor:
    """MPJPE at the given keyframes only: frame_mask [T] bool, optional joint_mask [T, 2, 21]."""
    mask = frame_mask[:, None, None].expand(*pred.shape[:-1])
    if joint_mask is not None:
        mask = mask & joint_mask.bool()
    return mpjpe(pred, keyframes, mask)


def jitter(joints: Tensor, fps: float) -> Tensor:
    """Mean acceleration magnitude [m/s^2] by second differences over frames (dim 0)."""
    _check("joints", joints)
    if joints.shape[0] < 3:
        return joints.new_zeros(())
    acc = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    return acc.norm(dim=-1).mean() * fps * fps


def palm_centres(joints: Tensor) -> Tensor:
    """[..., 2, 3]: mean of wrist and the five finger bases of each hand."""
    return joints[..., [0, *FINGER_BASES], :].mean(-2)


def _point_segment_distance(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """p [..., P, 3] against segments a, b [..., S, 3] -> [..., P, S]."""
    ab = b - a
    ap = p[..., :, None, :] - a[..., None, :, :]
    t = ((ap * ab[..., None, :, :]).sum(-1) / (ab * ab).sum(-1)[..., None, :].clamp_min(1e-12)).clamp(0, 1)
    closest = a[..., None, :, :] + t[..., None] * ab[..., None, :, :]
    return (p[..., :, None, :] - closest).norm(dim=-1)


def pair_clearance(joints: Tensor) -> Tensor:
    """Signed clearance [..., 2, 21, C] in metres of every joint sphere of hand h (dim -3) from every
    capsule of the other hand: distance(joint, bone segment) - r_bone - r_joint (negative = inside)."""
    _check("joints", joints)
    cr = CAPSULE_RADII.to(joints)
    jr = JOINT_RADII.to(joints)
    a = torch.tensor([c[0] for c in CAPSULES], device=joints.device)
    b = torch.tensor([c[1] for c in CAPSULES], device=joints.device)
    out = []
    for h in (0, 1):
        pts, other = joints[..., h, :, :], joints[..., 1 - h, :, :]
        d = _point_segment_distance(pts, other[..., a, :], other[..., b, :])
        out.append(d - jr[:, None] - cr[None, :])
    return torch.stack(out, -3)


def hand_gap(joints: Tensor) -> Tensor:
    """Per-frame signed clearance [...] in metres between the hands: the smallest
    distance(joint, other hand's bone) - r_bone - r_joint over both directions. Negative = penetration,
    near zero = contact (the basis of contact metrics)."""
    return pair_clearance(joints).amin(dim=(-1, -2, -3))


def penetration_depth(joints: Tensor) -> Tensor:
    """Per-frame deepest penetration [...] in metres between the two hands (0 when apart or touching)."""
    return (-hand_gap(joints)).clamp_min(0)


def penetration_stats(joints: Tensor, threshold: float = 1e-3) -> dict[str, float]:
    """Mean and max per-frame depth [m] and the ratio of frames deeper than `threshold`."""
    d = penetration_depth(joints)
    return {
        "penetration_mean": float(d.mean()),
        "penetration_max": float(d.max()),
        "penetration_ratio": float((d > threshold).to(d.dtype).mean()),
    }
