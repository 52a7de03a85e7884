"""Trajectory control on the global representation (the `HAND_TRAJECTORY` type) and windowed sampling.

A trajectory fixes world positions of some joints (a wrist, a fingertip, ...) at some frames. How each
kind is enforced, and why:

- **The right wrist** is itself a number of the local representation (hand 0's wrist position is in the
  world), so its path becomes keyframes on that feature group: imputed with clean values every step,
  the way the model was trained (masked keyframe training gives single joint groups), and kept exactly.
- **Every other joint** (the left wrist is stored relative to the right hand; fingertips are the end of
  a kinematic chain) is a non-linear function of the features, so it is enforced by **guidance on x̂0**:
  after each denoiser call, `guidance_iters` gradient steps move x̂0 so that its forward-kinematics
  joints approach the targets (Adam on an offset, plus a small penalty on the offset's second difference
  in time so that a sparse target does not bend a single frame). The DDIM update then continues from the
  corrected x̂0, so the model re-harmonises the rest of the motion; the last step's x̂0 is the result,
  so the final correction is what is delivered (error reported by `trajectory_error`).

Windowed sampling: the denoiser has learned frame embeddings for the window length it was trained on
(`ModelConfig.window`); longer clips are denoised as overlapping windows (half overlap) whose x̂0 are
blended with triangular weights at every step, so every length sees the positions it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.errors import InputError
from .hand import NUM_JOINTS
from .metrics import pair_clearance

JOINT_NAMES = {
    "wrist": 0,
    "thumb tip": 4,
    "index tip": 8,
    "middle tip": 12,
    "ring tip": 16,
    "little tip": 20,
}
HAND_NAMES = {"right": 0, "left": 1}


@dataclass
class Trajectory:
    """HAND_TRAJECTORY: world positions (metres) of `joints` [(hand, joint), ...] at the frames where
    `known` is set, for a clip of `num_frames` frames."""

    joints: list[tuple[int, int]]
    positions: Tensor  # [num_frames, J, 3]
    known: Tensor  # [num_frames, J] bool
    num_frames: int

    def __post_init__(self) -> None:
        j = len(self.joints)
        if tuple(self.positions.shape) != (self.num_frames, j, 3) or tuple(self.known.shape) != (
            self.num_frames,
            j,
        ):
            raise InputError(
                "trajectory",
                f"positions [{self.num_frames}, {j}, 3] and a mask [{self.num_frames}, {j}]",
                f"{list(self.positions.shape)} / {list(self.known.shape)}",
            )
        for hand, joint in self.joints:
            if hand not in (0, 1) or not 0 <= joint < NUM_JOINTS:
                raise InputError("trajectory", "joints (hand 0/1, joint 0..20)", str((hand, joint)))

    def merged(self, other: Trajectory) -> Trajectory:
        """Both trajectories' joints in one (same clip length; a repeated joint: `other` wins where known)."""
        if other.num_frames != self.num_frames:
            raise InputError(
                "trajectory",
                f"trajectories of one clip length ({self.num_frames} frames)",
                str(other.num_frames),
            )
        joints, pos, known = list(self.joints), [*self.positions.unbind(1)], [*self.known.unbind(1)]
        for k, hj in enumerate(other.joints):
            if hj in joints:
                i = joints.index(hj)
                pos[i] = torch.where(other.known[:, k, None], other.positions[:, k], pos[i])
                known[i] = known[i] | other.known[:, k]
            else:
                joints.append(hj)
                pos.append(other.positions[:, k])
                known.append(other.known[:, k])
        return Trajectory(joints, torch.stack(pos, 1), torch.stack(known, 1), self.num_frames)


def catmull_rom(frames: list[int], points: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """A centripetal-free (uniform) Catmull-Rom path through control `points` [K, 3] at `frames` (sorted,
    distinct), sampled at every frame between the first and the last control frame -> (positions
    [num_frames, 3], known [num_frames]); a single point fixes a single frame. Uniform in frame time so a
    point's frame is when the joint is there."""
    order = sorted(range(len(frames)), key=lambda i: frames[i])
    f = [frames[i] for i in order]
    p = points[order].double()
    if len(set(f)) != len(f):
        raise InputError("points", "one control point per frame", str(f))
    pos = torch.zeros(num_frames, 3, dtype=torch.float64)
    known = torch.zeros(num_frames, dtype=torch.bool)
    if len(f) == 1:
        pos[f[0]], known[f[0]] = p[0], True
        return pos.float(), known
    ext = torch.cat([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])  # mirrored end tangents
    for k in range(len(f) - 1):
        p0, p1, p2, p3 = ext[k], ext[k + 1], ext[k + 2], ext[k + 3]
        span = f[k + 1] - f[k]
        for n in range(f[k], f[k + 1] + 1):
            u = (n - f[k]) / span
            pos[n] = 0.5 * (
                2 * p1
                + (-p0 + p2) * u
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3
            )
            known[n] = True
    return pos.float(), known


def trajectory_error(joints: Tensor, trajectory: Trajectory) -> float:
    """Mean distance (metres) between world joints [T, 2, 21, 3] and the trajectory where it is known."""
    errs = [
        (joints[:, h, j] - trajectory.positions[:, k].to(joints)).norm(dim=-1)[trajectory.known[:, k]]
        for k, (h, j) in enumerate(trajectory.joints)
    ]
    errs = torch.cat(errs) if errs else torch.zeros(0)
    return float(errs.mean()) if errs.numel() else 0.0


def guide_x0(
    x0: Tensor,
    to_joints: Callable[[Tensor], Tensor],
    joints: list[tuple[int, int]],
    targets: Tensor,
    known: Tensor,
    iters: int = 30,
    lr: float = 0.05,
    smooth: float = 1.0,
    fixed: Tensor | None = None,
) -> Tensor:
    """x̂0 [B, T, 2, F] moved so that to_joints(x̂0)[:, :, hand, joint] approach targets [T, J, 3] where known
    [T, J] (Adam on an additive offset; a second-difference penalty keeps the offset smooth in time).
    `fixed` (bool, broadcastable to x̂0) marks entries that must not move (keyframes: the sampler puts
    them back, so a target reached by moving them would be lost)."""
    if not joints or iters <= 0:
        return x0
    hands = torch.tensor([h for h, _ in joints])
    idx = torch.tensor([j for _, j in joints])
    w = known.to(x0.dtype)[None, :, :, None]
    tgt = targets.to(x0.dtype)[None]
    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    with torch.enable_grad():
        for _ in range(iters):
            step = delta if fixed is None else delta.masked_fill(fixed, 0.0)
            pos = to_joints(x0 + step)[:, :, hands, idx]  # [B, T, J, 3]
            loss = ((pos - tgt) ** 2 * w).sum() / w.sum().clamp(min=1) * 1e4  # cm^2
            if delta.shape[1] > 2:
                loss = loss + smooth * (step[:, 2:] - 2 * step[:, 1:-1] + step[:, :-2]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (x0 + (delta if fixed is None else delta.masked_fill(fixed, 0.0))).detach()


def interpenetration(joints: Tensor) -> Tensor:
    """How far the hands of world joints [..., 2, 21, 3] pass through each other, per frame [...] in metres:
    the depth of every (joint sphere, other hand's capsule) pair of metrics.pair_clearance that overlaps,
    summed over pairs. Zero for hands apart or exactly touching."""
    return (-pair_clearance(joints)).clamp_min(0).sum(dim=(-1, -2, -3))


def separate_x0(
    x0: Tensor,
    to_joints: Callable[[Tensor], Tensor],
    iters: int = 20,
    margin: float = 2e-4,
    max_step: float = 0.1,
    fixed: Tensor | None = None,
    backtracks: int = 6,
) -> Tensor:
    """x̂0 [B, T, 2, F] moved out of interpenetration and no further. Each frame f takes Newton steps on its
    summed depth d_f (`interpenetration`, metres) towards -`margin`:

        z_f <- z_f - (d_f + margin) g_f / |g_f|²,   g_f = ∂d_f/∂z_f   (largest entry at most `max_step`)

    until no pair overlaps (or `iters`). Why this form: d_f is piecewise linear in depth, so one step clears
    a frame whose overlapping pairs all leave together, and when some leave first the rest shrink less than
    predicted, so (as far as FK is linear over one step) a step does not carry a frame past the surface by
    more than `margin`: touching hands stay touching (tests: < 1 mm apart after separation).
    Frames already apart have d_f = 0, g_f = 0 and never move. `fixed` entries (keyframes) stay.
    FK bends the depth within one step where fingers cross, and there the full step can land in a deeper
    overlap (a tap_fingertips clip bounced between 2 and 7 mm for 100 steps), so a step that does not lower
    d_f is halved up to `backtracks` times (a backtracking line search); where no halving lowers it either
    (a kink where pairs push opposite ways), the full step is taken to leave the kink."""
    z = x0.detach()
    depth, grad = _depth_and_grad(z, to_joints, fixed)
    for _ in range(iters):
        if not bool((depth > 0).any()):
            break
        norm2 = grad.square().sum(dim=(-1, -2)).clamp_min(1e-20)
        step = ((depth + margin) * (depth > 0) / norm2)[..., None, None] * grad
        peak = step.abs().amax(dim=(-1, -2), keepdim=True)
        step = step * (max_step / peak.clamp_min(max_step))
        scale, movable = torch.ones_like(depth), step.abs().amax(dim=(-1, -2)) > 0  # not all-fixed frames
        moved = z - step
        for _ in range(backtracks + 1):
            new_depth, new_grad = _depth_and_grad(moved, to_joints, fixed)  # the next step's, if kept
            worse = movable & (new_depth >= depth)
            if not bool(worse.any()):
                break
            scale = torch.where(worse, scale * 0.5, scale)
            moved = z - scale[..., None, None] * step
        else:  # no shorter step lowers d_f (a kink of the summed depth): take the full one
            moved = torch.where(worse[..., None, None], z - step, moved)
            new_depth, new_grad = _depth_and_grad(moved, to_joints, fixed)
        z, depth, grad = moved, new_depth, new_grad
    return z


def _depth_and_grad(z: Tensor, to_joints: Callable[[Tensor], Tensor], fixed: Tensor | None):
    """Per-frame summed depth [B, T] at z and its gradient (frames are independent, so row f of the
    gradient of the sum is ∂d_f/∂z_f), zero on `fixed` entries."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        depth = interpenetration(to_joints(z))
        if bool((depth > 0).any()):
            (grad,) = torch.autograd.grad(depth.sum(), z)
        else:
            grad = torch.zeros_like(z)
    if fixed is not None:
        grad = grad.masked_fill(fixed, 0.0)
    return depth.detach(), grad


def windowed(x0_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor, window: int | None) -> Tensor:
    """x0_fn over overlapping windows of `window` frames (half overlap, all windows in one batch), blended
    with triangular weights; the whole clip in one call when it fits."""
    frames = x.shape[1]
    if window is None or frames <= window:
        return x0_fn(x, t)
    stride = max(1, window // 2)
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    b = x.shape[0]
    batch = torch.cat([x[:, s : s + window] for s in starts])
    out = x0_fn(batch, t.repeat(len(starts))).reshape(len(starts), b, window, *x.shape[2:])
    ramp = torch.arange(1, window + 1, dtype=x.dtype)
    weight = torch.minimum(ramp, ramp.flip(0)).reshape(window, *([1] * (x.dim() - 2)))
    acc = torch.zeros_like(x)
    total = torch.zeros(frames, *([1] * (x.dim() - 2)), dtype=x.dtype)
    for k, s in enumerate(starts):
        acc[:, s : s + window] += out[k] * weight
        total[s : s + window] += weight
    return acc / total


def trajectory_from_text(text: str, hand: str, joint: str, num_frames: int) -> Trajectory:
    """A joint's path from control points 'frame: x, y, z' (centimetres in the world frame: +y up, the
    person faces +z, the right hand at -x), one per line or separated by ';', joined by a Catmull-Rom
    spline (catmull_rom) over the frames between the first and the last point."""
    if hand not in HAND_NAMES:
        raise InputError("hand", f"one of {list(HAND_NAMES)}", repr(hand))
    if joint not in JOINT_NAMES:
        raise InputError("joint", f"one of {list(JOINT_NAMES)}", repr(joint))
    frames, points = [], []
    for entry in (e.strip() for e in text.replace(";", "\n").splitlines()):
        if not entry:
            continue
        head, sep, rest = entry.partition(":")
        try:
            frame = int(head)
            xyz = [float(v) for v in rest.replace(",", " ").split()]
        except ValueError:
            frame, xyz = -1, []
        if not sep or len(xyz) != 3:
            raise InputError("points", "entries 'frame: x, y, z' (centimetres)", repr(entry))
        if not 0 <= frame < num_frames:
            raise InputError("points", f"frames in 0 .. {num_frames - 1}", str(frame))
        frames.append(frame)
        points.append(xyz)
    if not frames:
        raise InputError("points", "at least one 'frame: x, y, z' entry", repr(text))
    pos, known = catmull_rom(frames, torch.tensor(points, dtype=torch.float64) / 100.0, num_frames)
    return Trajectory([(HAND_NAMES[hand], JOINT_NAMES[joint])], pos[:, None], known[:, None], num_frames)
