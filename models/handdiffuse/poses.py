"""Keyframe makers (HAND_KEYFRAMES): named hand poses (open palm, fist, point) from `0: open, 45: fist`, and
whole two-hand poses from a JSON of joints.

A named pose fixes the 15 finger rotations of both hands (clamped anatomical angles, hand.py) and leaves
the wrists free: a word says what the fingers do, not where the hands are, and the masked keyframe
training (train.py) taught the model to fill in what is not given.
"""

from __future__ import annotations

import math
import re

import torch

from ..common.errors import InputError
from .hand import NUM_ROT, SIDES, clamp_angles, rotations_from_angles
from .motion import HAND_FEATURES, HandMotion
from .pipeline import Keyframes
from .rotations import matrix_to_6d

# flexion per joint in degrees for (thumb, index, middle, ring, little) x (base, middle, distal)
_FLEX = {
    "open": ((0, 0, 0),) * 5,
    "fist": ((20, 40, 60), (85, 100, 70), (85, 100, 70), (85, 100, 70), (85, 100, 70)),
    "point": ((20, 40, 60), (0, 0, 0), (85, 100, 70), (85, 100, 70), (85, 100, 70)),
}
POSE_NAMES = tuple(_FLEX)
_ALIASES = {"open palm": "open", "open_palm": "open", "palm": "open", "flat": "open", "pointing": "point"}


def pose_angles(name: str) -> torch.Tensor:
    """Anatomical angles [15, 2] (radians) of a named pose, inside the joint limits."""
    flex = torch.tensor(_FLEX[name], dtype=torch.float64).reshape(15)
    return clamp_angles(torch.stack([flex * math.pi / 180, torch.zeros(15, dtype=torch.float64)], -1))


def pose_features(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [2, 99], known [2, 99]): the finger rotations of both hands given, wrists free."""
    feats = torch.zeros(2, HAND_FEATURES)
    known = torch.zeros(2, HAND_FEATURES, dtype=torch.bool)
    for h, side in enumerate(SIDES):
        rot = rotations_from_angles(pose_angles(name), side)
        feats[h, 6 : NUM_ROT * 6] = matrix_to_6d(rot).float().flatten()
        known[h, 6 : NUM_ROT * 6] = True
    return feats, known


def parse_pose_text(text: str) -> list[tuple[int, str]]:
    """`0: open, 45: fist` (commas, semicolons or new lines between entries) -> [(0, 'open'), (45, 'fist')]."""
    entries = [e.strip() for e in re.split(r"[,;\n]", text or "") if e.strip()]
    if not entries:
        raise InputError("poses", "entries 'frame: pose' such as '0: open, 45: fist'", repr(text))
    out: dict[int, str] = {}
    for e in entries:
        m = re.fullmatch(r"(-?\d+)\s*:\s*([A-Za-z _]+)", e)
        if m is None:
            raise InputError("poses", "'frame: pose' entries such as '0: open'", repr(e))
        name = m.group(2).strip().lower()
        name = _ALIASES.get(name, name)
        if name not in _FLEX:
            raise InputError("poses", f"pose names from {list(POSE_NAMES)}", repr(m.group(2).strip()))
        out[int(m.group(1))] = name
    return sorted(out.items())


def keyframes_from_text(text: str, num_frames: int) -> Keyframes:
    """Keyframes of named poses in a clip of `num_frames` frames (frames outside it: InputError)."""
    entries = parse_pose_text(text)
    bad = [f for f, _ in entries if not 0 <= f < num_frames]
    if bad:
        raise InputError(
            "poses", f"frames in 0 .. {num_frames - 1} (the clip has {num_frames} frames)", str(bad)
        )
    feats, known = zip(*(pose_features(n) for _, n in entries))
    return Keyframes([f for f, _ in entries], torch.stack(feats), torch.stack(known), num_frames)


def keyframes_from_json(text: str, num_frames: int) -> Keyframes:
    """Whole two-hand poses from JSON: `[{"frame": 0, "joints": [[21 x [x, y, z]], [21 x [x, y, z]]]}, ...]`
    (world joint positions in metres, right hand first, the OpenPose order of docs/handdiffuse.md).

    Both hands are required: the left wrist is stored relative to the right one (motion.py), so one hand
    alone does not fix the local representation. Positions go through exact IK (projected onto the open
    hand's bone lengths when they do not fit it)."""
    import json

    try:
        data = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise InputError("keyframes_json", "valid JSON", str(exc)) from None
    if isinstance(data, dict):
        data = data.get("keyframes")
    if not isinstance(data, list) or not data:
        raise InputError(
            "keyframes_json", 'a list of {"frame": int, "joints": [2][21][3]}', type(data).__name__
        )
    frames, feats = [], []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("frame"), int):
            raise InputError("keyframes_json", f'entry {i} with an integer "frame"', repr(entry)[:80])
        f = entry["frame"]
        if not 0 <= f < num_frames:
            raise InputError("keyframes_json", f"frames in 0 .. {num_frames - 1}", f"entry {i}: frame {f}")
        try:
            joints = torch.tensor(entry.get("joints"), dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise InputError("keyframes_json", f'entry {i}: "joints" as numbers [2][21][3]') from None
        if tuple(joints.shape) != (2, 21, 3) or not torch.isfinite(joints).all():
            raise InputError("keyframes_json", f"entry {i}: 2 hands x 21 joints x 3 coordinates (metres)",
                             f"shape {list(joints.shape)}")  # fmt: skip
        frames.append(f)
        feats.append(HandMotion.from_global(joints[None], 30.0).to_features()[0].float())
    if len(set(frames)) != len(frames):
        raise InputError("keyframes_json", "each frame once", str(sorted(frames)))
    x = torch.stack(feats)
    return Keyframes(frames, x, torch.ones_like(x, dtype=torch.bool), num_frames)
