"""The hand-motion world: procedural, seeded two-hand interactions on the open hand.

Seven actions (ACTIONS) with random tempo, amplitude, placement (centre, yaw about the vertical) and
finger relaxation; 30 fps, 2-4 s. `make_clip(seed, index)` is deterministic per (seed, index) and the
label cycles with the index, so any contiguous range of indices is balanced.

World frame (ours): metres, +y up, the person faces +z; the right hand lives at -x, the left at +x.
Contact is built, not hoped for: mirror-symmetric actions (clap, rub, tap) keep each hand in its own
half-space x <= -gap/2 (joint spheres included, metrics.JOINT_RADII), so they touch without
penetrating; the other actions place the touching hand by its fingertip with a clearance of the two
capsule radii; "interlock" picks its finger offsets by a small search on the penetration metric.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .hand import SIDES, forward_kinematics, rotations_from_angles
from .metrics import JOINT_RADII, penetration_depth
from .motion import HandMotion

FPS = 30.0
ACTIONS = ("clap", "rub", "interlock", "tap_fingertips", "point_palm", "wave", "count")
F64 = torch.float64
M_WORLD = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64))  # mirror x -> -x
M_HAND = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=F64))
_SPLAY = (
    8.0,
    1.0,
    -7.0,
    -16.0,
)  # rest azimuth of index..little (hand.py), cancelled to make fingers parallel

_CAPTIONS = {
    "clap": ("two hands clap", "the hands clap {n} times", "clapping hands"),
    "rub": ("the palms rub together", "two hands rub against each other", "rubbing palms"),
    "interlock": ("the fingers interlock", "two hands lace their fingers together", "interlocking fingers"),
    "tap_fingertips": (
        "the fingertips tap together",
        "fingertips of both hands touch repeatedly",
        "tapping fingertips",
    ),
    "point_palm": (
        "the right index points at the left palm",
        "one finger points at the other palm",
        "pointing at a palm",
    ),
    "wave": ("the {side} hand waves", "a hand waves hello", "waving"),
    "count": (
        "the right index counts the left fingers",
        "counting on the fingers",
        "touching each finger in turn",
    ),
}


def _normalize(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def hand_frame(distal: Tensor, palm_normal: Tensor) -> Tensor:
    """Wrist rotation [..., 3, 3] whose hand +x points along `distal` and whose palm faces `palm_normal`
    (hand +z, the back of the hand, is opposite); same construction for both hands."""
    x = _normalize(distal)
    z = -palm_normal
    z = _normalize(z - (z * x).sum(-1, keepdim=True) * x)
    return torch.stack([x, torch.linalg.cross(z, x, dim=-1), z], -1)


def _local_joints(angles: Tensor, side: str) -> Tensor:
    """Joints [T, 21, 3] in the wrist frame (wrist at the origin, no wrist rotation)."""
    eye = torch.eye(3, dtype=F64).expand(*angles.shape[:-2], 1, 3, 3)
    rot = torch.cat([eye, rotations_from_angles(angles, side)], -3)
    return forward_kinematics(rot, torch.zeros(3, dtype=F64), side)


def _smoothstep(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def _relaxed(t: int, rng: np.random.Generator, scale: float = 1.0) -> Tensor:
    """A nearly flat hand with a per-clip relaxation: [T, 15, 2]."""
    a = torch.zeros(t, 15, 2, dtype=F64)
    a[:, 3::3, 0] = float(rng.uniform(-0.1, 0.05)) * scale  # MCPs
    a[:, 4::3, 0] = float(rng.uniform(0.0, 0.08)) * scale  # PIPs
    a[:, 5::3, 0] = float(rng.uniform(0.0, 0.08)) * scale  # DIPs
    a[:, 0, 1] = float(rng.uniform(0.0, 0.2))  # thumb abduction
    return a


def _thumb_in_palm_plane(a: Tensor, rng: np.random.Generator) -> Tensor:
    """Extend the thumb into the palm plane (flat-hand clap and rub: the palms, not the thumbs, meet)."""
    a[:, 0] = torch.tensor([-0.35, float(rng.uniform(-0.1, 0.0))], dtype=F64)
    a[:, 1, 0], a[:, 2, 0] = -0.17, float(rng.uniform(-0.26, -0.1))
    return a


def _parallel(a: Tensor) -> Tensor:
    """Abduct index..little so the four fingers run parallel (cancels the rest splay)."""
    for f, splay in enumerate(_SPLAY):
        a[..., 3 + 3 * f, 1] = -math.radians(splay)
    return a


def _pointing(t: int) -> Tensor:
    """Index extended, other fingers curled, thumb tucked: [T, 15, 2]."""
    a = torch.zeros(t, 15, 2, dtype=F64)
    a[:, 0] = torch.tensor([0.4, -0.1], dtype=F64)
    a[:, 1, 0], a[:, 2, 0] = 0.5, 0.4
    for f in (2, 3, 4):  # middle, ring, little
        a[:, 3 * f, 0], a[:, 3 * f + 1, 0], a[:, 3 * f + 2, 0] = 1.4, 1.7, 0.9
    return a


def _symmetric(r0: Tensor, angles: Tensor, gap: Tensor, slide: Tensor | None = None):
    """Right hand in the half-space x <= -gap/2 (joint spheres included), left = its mirror image."""
    p = (r0[:, None] @ _local_joints(angles, "right")[..., None])[..., 0]
    xmax = (p[..., 0] + JOINT_RADII).amax(-1)
    wrist_r = torch.zeros(r0.shape[0], 3, dtype=F64)
    wrist_r[:, 0] = -xmax - gap / 2
    wrist_l = wrist_r @ M_WORLD
    if slide is not None:  # in-plane offsets (no x component): right +slide, left -slide
        wrist_r, wrist_l = wrist_r + slide, wrist_l - slide
    r0_l = M_WORLD @ r0 @ M_HAND
    return torch.stack([r0, r0_l], 1), torch.stack([wrist_r, wrist_l], 1), torch.stack([angles, angles], 1)


def _beats(time: Tensor, f: float, phase: float, dwell: float = 0.3) -> Tensor:
    """0..1 separation with f contacts per second at t = (k - phase/pi)/f; the hands rest together
    while |sin| < dwell (>= 2 frames at 30 fps for f <= 2.5 Hz) so a contact is never between frames."""
    return ((torch.abs(torch.sin(math.pi * f * time + phase)) - dwell) / (1 - dwell)).clamp_min(0)


def _contacts(duration: float, f: float, phase: float) -> int:
    """Number of contact instants k/f - phase/(pi f) inside [0, duration] (phase in (0, pi))."""
    return math.floor(f * duration + phase / math.pi) - math.ceil(phase / math.pi) + 1


def _clap_frame(t: int, rng: np.random.Generator) -> Tensor:
    tilt = math.radians(rng.uniform(15, 45))
    distal = torch.tensor([0.0, math.cos(tilt), math.sin(tilt)], dtype=F64)
    return hand_frame(distal, torch.tensor([1.0, 0.0, 0.0], dtype=F64)).expand(t, 3, 3)


def _clap(time: Tensor, rng: np.random.Generator):
    f, amp, phase = rng.uniform(1.0, 2.5), rng.uniform(0.10, 0.25), rng.uniform(0.1, math.pi - 0.1)
    gap = amp * _beats(time, f, phase)
    a = _thumb_in_palm_plane(_relaxed(len(time), rng, 0.5), rng)
    return _symmetric(_clap_frame(len(time), rng), a, gap), {"n": _contacts(float(time[-1]), f, phase)}


def _rub(time: Tensor, rng: np.random.Generator):
    f, amp, phase = rng.uniform(1.5, 3.0), rng.uniform(0.015, 0.04), rng.uniform(0, 2 * math.pi)
    r0 = _clap_frame(len(time), rng)
    distal = r0[:, :, 0]
    slide = (amp / 2) * torch.sin(2 * math.pi * f * time + phase)[:, None] * distal
    gap = torch.full_like(time, rng.uniform(0.0, 0.002))
    return _symmetric(r0, _thumb_in_palm_plane(_relaxed(len(time), rng, 0.5), rng), gap, slide), {}


def _tap(time: Tensor, rng: np.random.Generator):
    f, amp, phase = rng.uniform(1.0, 2.5), rng.uniform(0.015, 0.05), rng.uniform(0.1, math.pi - 0.1)
    a = _relaxed(len(time), rng, 0.3)
    bend = rng.uniform(0.35, 0.7)  # MCP flexion that brings the fingertips, not the palms, together
    a[:, 3::3, 0] += bend
    a[:, 0, 0] += 0.3
    return _symmetric(_clap_frame(len(time), rng), a, amp * _beats(time, f, phase)), {}


_INTERLOCK_OVERLAPS = (0.0, 0.02, 0.035)
_INTERLOCK_FLEX = (0.0, 0.3, 0.6)


def _interlock_pose(overlap: float, flex: float, dz: float, dy: float):
    """Canonical interlock: both palms down, fingers parallel and pointing at each other, the right hand
    raised by dy and shifted sideways by dz; tips overlap by `overlap` along x; the lower (left) hand
    curls its fingers by `flex` (the upper one stays straight: rigid capsules cannot squeeze between
    fingers at one height). Returns rot [2, 3, 3], wrist [2, 3], angles [2, 15, 2]."""
    r_right = hand_frame(torch.tensor([1.0, 0, 0], dtype=F64), torch.tensor([0, -1.0, 0], dtype=F64))
    r_left = hand_frame(torch.tensor([-1.0, 0, 0], dtype=F64), torch.tensor([0, -1.0, 0], dtype=F64))
    a_right = _parallel(torch.zeros(1, 15, 2, dtype=F64))
    a_right[:, 0] = torch.tensor([0.2, 0.0], dtype=F64)
    a_left = a_right.clone()
    a_left[:, 3:, 0] = flex
    tips = [8, 12, 16, 20]
    pr = (r_right @ _local_joints(a_right, "right")[0][..., None])[..., 0]
    pl = (r_left @ _local_joints(a_right, "left")[0][..., None])[..., 0]  # tips of the straight left hand
    wr = torch.tensor([-pr[tips, 0].max() + overlap / 2, dy / 2, dz / 2], dtype=F64)
    wl = torch.tensor([-pl[tips, 0].min() - overlap / 2, -dy / 2, -dz / 2], dtype=F64)
    return torch.stack([r_right, r_left]), torch.stack([wr, wl]), torch.cat([a_right, a_left])


def _lateral(rot, wrist, angles) -> Tensor:
    """Sideways (z) positions of the middle phalanges of index..little for both hands: [2, 4]."""
    pts = []
    for h, side in enumerate(SIDES):
        p = (rot[h] @ _local_joints(angles[h : h + 1], side)[0][..., None])[..., 0] + wrist[h]
        pts.append(p[[6, 10, 14, 18], 2])
    return torch.stack(pts)


@lru_cache(maxsize=1)
def interlock_offsets() -> tuple[float, float]:
    """(dz, dy): the sideways shift that puts each right finger midway between left fingers, then the
    smallest height difference at which no interlock pose of the clip family penetrates (> 0.5 mm)."""
    best_dz, best_gap = 0.0, -1.0
    for dz in np.arange(-0.03, 0.03, 0.0005):
        lat = _lateral(*_interlock_pose(0.02, 0.0, float(dz), 0.0))
        gap = float((lat[0][:, None] - lat[1][None, :]).abs().min())
        if gap > best_gap:
            best_dz, best_gap = float(dz), gap
    for dy in np.arange(0.0, 0.04, 0.0005):
        worst = 0.0
        for o in _INTERLOCK_OVERLAPS:
            for fl in _INTERLOCK_FLEX:
                rot, wrist, ang = _interlock_pose(o, fl, best_dz, float(dy))
                joints = torch.stack(
                    [_world_joints(rot[h], wrist[h], ang[h], s) for h, s in enumerate(SIDES)]
                )
                worst = max(worst, float(penetration_depth(joints)))
        if worst <= 5e-4:
            return best_dz, float(dy)
    return best_dz, 0.04


def _world_joints(rot: Tensor, wrist: Tensor, angles: Tensor, side: str) -> Tensor:
    return (rot @ _local_joints(angles[None], side)[0][..., None])[..., 0] + wrist


def _interlock(time: Tensor, rng: np.random.Generator):
    dz, dy = interlock_offsets()
    dur = float(time[-1])
    arrive = rng.uniform(0.3, 0.5) * dur
    overlap_max = rng.uniform(0.02, _INTERLOCK_OVERLAPS[-1])
    f, bob = rng.uniform(0.8, 2.0), rng.uniform(0.0, 0.03)
    approach = _smoothstep(time / arrive)
    overlap = -0.08 + (overlap_max + 0.08) * approach
    squeeze = 0.5 - 0.5 * torch.cos(2 * math.pi * f * (time - arrive))  # grip and release after arriving
    flex = _INTERLOCK_FLEX[-1] * torch.where(time > arrive, squeeze, torch.zeros_like(time))
    rots, wrists, angs = [], [], []
    for k in range(len(time)):
        r, w, a = _interlock_pose(float(overlap[k]), float(flex[k]), dz, dy)
        w = w + torch.tensor([0.0, bob * math.sin(2 * math.pi * f * float(time[k])), 0.0], dtype=F64)
        rots.append(r)
        wrists.append(w)
        angs.append(a)
    return (torch.stack(rots), torch.stack(wrists), torch.stack(angs)), {}


def _tip_anchor(angles: Tensor, side: str, tip: int) -> Tensor:
    return _local_joints(angles, side)[:, tip]


def _point(time: Tensor, rng: np.random.Generator):
    t = len(time)
    f, amp, phase = rng.uniform(0.8, 2.0), rng.uniform(0.02, 0.07), rng.uniform(0, 2 * math.pi)
    turn = math.radians(rng.uniform(-20, 20))
    n_left = torch.tensor(
        [-math.cos(turn), 0.0, math.sin(turn)], dtype=F64
    )  # the left palm faces the right hand
    r_left = hand_frame(torch.tensor([0.0, 1.0, 0.1], dtype=F64), n_left).expand(t, 3, 3)
    a_left = _relaxed(t, rng)
    p_left = (r_left[:, None] @ _local_joints(a_left, "left")[..., None])[..., 0]
    wrist_l = torch.tensor([0.08, -0.08, 0.0], dtype=F64).expand(t, 3)
    centre = (p_left[:, [0, 1, 5, 9, 13, 17]].mean(1) + p_left[:, 9]) / 2 + wrist_l
    dist = 0.025 + amp * (0.5 + 0.5 * torch.sin(2 * math.pi * f * time + phase))
    target = centre + dist[:, None] * n_left
    r_right = hand_frame(-n_left, torch.tensor([0.0, -1.0, 0.0], dtype=F64)).expand(t, 3, 3)
    a_right = _pointing(t)
    wrist_r = target - (r_right @ _tip_anchor(a_right, "right", 8)[..., None])[..., 0]
    return (
        torch.stack([r_right, r_left], 1),
        torch.stack([wrist_r, wrist_l], 1),
        torch.stack([a_right, a_left], 1),
    ), {}


def _wave(time: Tensor, rng: np.random.Generator):
    t = len(time)
    f, amp = rng.uniform(1.5, 3.0), rng.uniform(0.3, 0.6)
    waving = int(rng.integers(2))  # 0: right hand waves, 1: left
    angle = amp * torch.sin(2 * math.pi * f * time + rng.uniform(0, 2 * math.pi))
    up = torch.stack(
        [torch.sin(angle) * (1 if waving == 1 else -1), torch.cos(angle), torch.zeros_like(angle)], -1
    )
    r_wave = hand_frame(up, torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(t, 3))
    r_rest = hand_frame(
        torch.tensor([0.0, 0.0, 1.0], dtype=F64), torch.tensor([0.0, -1.0, 0.0], dtype=F64)
    ).expand(t, 3, 3)
    side_x = -1.0 if waving == 0 else 1.0
    wrist_wave = torch.tensor([0.2 * side_x, 0.12, 0.0], dtype=F64).expand(t, 3)
    wrist_rest = torch.tensor([-0.18 * side_x, -0.15, 0.0], dtype=F64) + torch.zeros(t, 1, dtype=F64)
    wrist_rest = wrist_rest + 0.005 * torch.sin(2 * math.pi * 0.5 * time)[:, None] * torch.tensor(
        [0, 1.0, 0], dtype=F64
    )
    a_wave, a_rest = _relaxed(t, rng), _relaxed(t, rng, 3.0)
    if waving == 0:
        rots, wrists, angs = (r_wave, r_rest), (wrist_wave, wrist_rest), (a_wave, a_rest)
    else:
        rots, wrists, angs = (r_rest, r_wave), (wrist_rest, wrist_wave), (a_rest, a_wave)
    return (torch.stack(rots, 1), torch.stack(wrists, 1), torch.stack(angs, 1)), {"side": SIDES[waving]}


def _count(time: Tensor, rng: np.random.Generator):
    t = len(time)
    rate = rng.uniform(1.0, 2.0)  # touches per second
    n_left = torch.tensor([0.0, 0.0, -1.0], dtype=F64)  # the left palm faces the body
    r_left = hand_frame(torch.tensor([-0.15, 1.0, 0.0], dtype=F64), n_left).expand(t, 3, 3)
    a_left = _relaxed(t, rng)
    a_left[:, 3, 1], a_left[:, 9, 1], a_left[:, 12, 1] = 0.15, -0.12, -0.25  # spread
    wrist_l = torch.tensor([0.1, -0.05, 0.05], dtype=F64).expand(t, 3)
    tips = (_local_joints(a_left, "left") @ r_left.transpose(-1, -2))[:, [4, 8, 12, 16, 20]] + wrist_l[
        :, None
    ]
    order = list(range(5)) if rng.integers(2) else list(range(4, -1, -1))
    clearance = float(JOINT_RADII[4] + JOINT_RADII[8]) + 0.002
    targets = tips + clearance * n_left  # in front of each fingertip, on the palm side
    phase = time * rate
    k = phase.floor().long().clamp(max=10**6)
    frac = phase - k
    src = torch.tensor([order[int(i) % 5] for i in k])
    dst = torch.tensor([order[(int(i) + 1) % 5] for i in k])
    s = _smoothstep(frac / 0.6)  # move during 60 % of each beat, rest on the fingertip for the rest
    rows = torch.arange(t)
    target = (1 - s)[:, None] * targets[rows, src] + s[:, None] * targets[rows, dst]
    target = (
        target + 0.03 * torch.sin(math.pi * s)[:, None] * n_left
    )  # lift away from the hand between touches
    r_right = hand_frame(
        torch.tensor([0.1, 0.0, 1.0], dtype=F64), torch.tensor([0.0, -1.0, 0.0], dtype=F64)
    ).expand(t, 3, 3)
    a_right = _pointing(t)
    wrist_r = target - (r_right @ _tip_anchor(a_right, "right", 8)[..., None])[..., 0]
    return (
        torch.stack([r_right, r_left], 1),
        torch.stack([wrist_r, wrist_l], 1),
        torch.stack([a_right, a_left], 1),
    ), {}


_BUILDERS = {
    "clap": _clap,
    "rub": _rub,
    "interlock": _interlock,
    "tap_fingertips": _tap,
    "point_palm": _point,
    "wave": _wave,
    "count": _count,
}


def _yaw(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=F64)


def make_clip(seed: int, index: int, dtype: torch.dtype = torch.float32) -> HandMotion:
    """Clip `index` of the world with `seed`: label ACTIONS[index % 7], 2-4 s at 30 fps."""
    label = ACTIONS[index % len(ACTIONS)]
    rng = np.random.default_rng([seed, index])
    frames = int(round(rng.uniform(2.0, 4.0) * FPS))
    time = torch.arange(frames, dtype=F64) / FPS
    (rot0, wrist, angles), fmt = _BUILDERS[label](time, rng)
    q = _yaw(math.radians(rng.uniform(-25, 25)))
    centre = torch.tensor(rng.uniform(-0.05, 0.05, 3), dtype=F64)
    rot0 = q @ rot0
    wrist = (q @ wrist[..., None])[..., 0] + centre
    rot = torch.cat(
        [
            rot0[:, :, None],
            torch.stack([rotations_from_angles(angles[:, h], s) for h, s in enumerate(SIDES)], 1),
        ],
        2,
    )
    templates = _CAPTIONS[label]
    caption = templates[int(rng.integers(len(templates)))].format(**{"n": 2, "side": "right", **fmt})
    motion = HandMotion.from_world(rot, wrist, FPS, label=label, caption=caption)
    return HandMotion(motion.rot6d.to(dtype), motion.trans.to(dtype), FPS, label, caption)


def make_clips(seed: int, count: int, start: int = 0, dtype: torch.dtype = torch.float32) -> list[HandMotion]:
    return [make_clip(seed, i, dtype) for i in range(start, start + count)]
