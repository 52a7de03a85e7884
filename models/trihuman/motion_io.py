"""Motions that drive a TriHuman avatar: the motion type between nodes, the avatar world's motions, `.npz`
and BVH files (read, retargeted by joint name, written), resampling, and matching a motion to an avatar.

A motion (`TriHumanMotion`) is the avatar's input (character.py): per frame one axis-angle rotation per
joint [T, J, 3] (joint j in its parent's frame, rest pose = every joint frame aligned with the world) and a
root translation [T, 3] in metres, added to the rest root joint; plus its frame rate, the joint names
(the skeleton it belongs to; empty when a file did not say) and `history`: how many leading frames are
context only. The avatar conditions frame t on t-1 and t-2, so a world motion keeps its two history frames
and an avatar renders only the frames after them.

`.npz` (read with allow_pickle=False): poses [T, J, 3], translations [T, 3], fps (scalar); optional
joint_names [J] (strings) and history (int).

BVH: HIERARCHY (ROOT / JOINT / End Site, OFFSET, CHANNELS) and MOTION (Frames, Frame Time, one line per
frame). A BVH skeleton's rest pose has every joint frame aligned with the world (OFFSETs only translate),
as ours does, so a local rotation means the same thing in both and retargeting by name is exact for the
rotations: each avatar joint takes the BVH joint of the same name (exact, else case-insensitive); BVH
joints between two matched ones (e.g. a second spine joint) have their rotations composed into the child.
Rotation channels in the order listed (e.g. Zrotation Xrotation Yrotation: R = Rz Rx Ry), in degrees.
The root translation is the displacement of the matched root from its BVH rest position (our
interpretation; a root OFFSET of 0 0 0 with position channels is taken as a skeleton standing with its
lowest joint on the floor, the common layout of captured files). Known limit: bone lengths and rest
poses other than the avatar's (a T-pose file on an A-pose avatar) are not corrected. `write_bvh` writes
the rest root as the root OFFSET and absolute root positions (Blender's reading), Euler order ZXY.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..common.errors import InputError
from .deform import axis_angle_matrix
from .skinning import matrix_to_quaternion

F64 = torch.float64
UNITS = {"cm": 0.01, "m": 1.0, "mm": 0.001, "inch": 0.0254}  # BVH length unit -> metres
_BVH_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class TriHumanMotion:
    poses: torch.Tensor  # [T, J, 3] float64 axis-angle, joint j in its parent's frame
    translations: torch.Tensor  # [T, 3] float64 metres, added to the rest root joint
    fps: float
    joint_names: tuple[str, ...] = ()  # empty: the file did not name its joints
    history: int = 0  # leading frames that are context only (t-1, t-2 of the first output frame)
    name: str = ""

    def __post_init__(self):
        p, t = self.poses, self.translations
        if not isinstance(p, torch.Tensor) or p.ndim != 3 or p.shape[-1] != 3 or p.shape[0] < 1:
            raise InputError("poses", "axis-angle poses [T >= 1, J, 3]", _shape(p))
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (p.shape[0], 3):
            raise InputError("translations", f"root translations [{p.shape[0]}, 3] (one per pose)", _shape(t))
        if not (torch.isfinite(p).all() and torch.isfinite(t).all()):
            raise InputError("poses", "finite numbers", "NaN or inf")
        if self.joint_names and len(self.joint_names) != p.shape[1]:
            raise InputError("joint_names", f"{p.shape[1]} names (one per joint)", str(len(self.joint_names)))
        if not 0 <= self.history < p.shape[0]:
            raise InputError("history", f"0 .. {p.shape[0] - 1} context frames", str(self.history))
        if not (isinstance(self.fps, int | float) and self.fps > 0 and math.isfinite(self.fps)):
            raise InputError("fps", "a frame rate > 0", repr(self.fps))

    @property
    def num_joints(self) -> int:
        return self.poses.shape[1]

    @property
    def frames(self) -> int:
        """Output frames (after the history)."""
        return self.poses.shape[0] - self.history


def _shape(x) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


# ------------------------------------------------------------------------------------------ rotations


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Axis-angle [..., 3] (angle in [0, pi]) of rotation matrices [..., 3, 3]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0: angle <= pi
    v = q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    return torch.where(s > 1e-12, v * angle / s.clamp_min(1e-12), 2 * v)


def _axis_matrix(axis: str, degrees: torch.Tensor) -> torch.Tensor:
    v = torch.zeros(*degrees.shape, 3, dtype=F64)
    v[..., "XYZ".index(axis)] = torch.deg2rad(degrees)
    return axis_angle_matrix(v)


def euler_to_matrix(degrees: torch.Tensor, order: str) -> torch.Tensor:
    """[..., 3] angles (degrees) of rotations about the axes in `order` (e.g. "ZXY": R = Rz Rx Ry, the
    BVH reading of channels listed in that order) -> [..., 3, 3]."""
    R = _axis_matrix(order[0], degrees[..., 0])
    for k in (1, 2):
        R = R @ _axis_matrix(order[k], degrees[..., k])
    return R


def matrix_to_euler_zxy(R: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> (z, x, y) degrees with R = Rz(z) Rx(x) Ry(y) (x in [-90, 90])."""
    x = torch.asin(R[..., 2, 1].clamp(-1, 1))
    y = torch.atan2(-R[..., 2, 0], R[..., 2, 2])
    z = torch.atan2(-R[..., 0, 1], R[..., 1, 1])
    return torch.rad2deg(torch.stack([z, x, y], -1))


# --------------------------------------------------------------------------------------------- sources


def world_motion(motion: str, seed: int, frames: int) -> TriHumanMotion:
    """A motion of the avatar world (world.py: walk, dance, squat, turn) from its held-out ("test") stream,
    with the two history frames it starts with."""
    from .world import FPS, JOINTS, MOTIONS, make_motion

    if motion not in MOTIONS:
        raise InputError("motion", f"one of {MOTIONS}", repr(motion))
    m = make_motion(int(seed), "test", 0, frames, motion)
    return TriHumanMotion(m.poses.to(F64), m.translations.to(F64), FPS, tuple(JOINTS), history=2, name=motion)


def _npz_array(data, key: str, path: Path, ndim: int | None) -> np.ndarray:
    if key not in data:
        raise InputError("file", f"an .npz with '{key}' (poses [T, J, 3], translations [T, 3], fps)",
                         f"{path.name} has {sorted(data.files)}")  # fmt: skip
    a = data[key]
    if ndim is not None and a.ndim != ndim:
        raise InputError("file", f"'{key}' with {ndim} dimensions", f"{path.name}: shape {list(a.shape)}")
    return a


def load_npz(path: str | Path) -> TriHumanMotion:
    """A motion from an .npz (module docstring); never unpickles."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError("file", "a readable .npz motion file", f"{path.name}: {exc}") from None
    with data:
        poses = _npz_array(data, "poses", path, 3)
        trans = _npz_array(data, "translations", path, 2)
        fps = float(_npz_array(data, "fps", path, None).reshape(-1)[0])
        names = tuple(str(n) for n in data["joint_names"].reshape(-1)) if "joint_names" in data else ()
        history = int(data["history"].reshape(-1)[0]) if "history" in data else 0
    if poses.shape[-1] != 3 or trans.shape != (poses.shape[0], 3):
        raise InputError("file", "poses [T, J, 3] and translations [T, 3]",
                         f"{path.name}: {list(poses.shape)} / {list(trans.shape)}")  # fmt: skip
    return TriHumanMotion(torch.from_numpy(poses.astype(np.float64)), torch.from_numpy(trans.astype(np.float64)),
                          fps, names, history, path.stem)  # fmt: skip


def save_npz(motion: TriHumanMotion, path: str | Path) -> Path:
    path = Path(path)
    np.savez(path, poses=motion.poses.numpy(), translations=motion.translations.numpy(), fps=np.float64(motion.fps),
             joint_names=np.array(motion.joint_names, dtype=str), history=np.int64(motion.history))  # fmt: skip
    return path


# -------------------------------------------------------------------------------------------------- BVH


@dataclass(frozen=True)
class BvhClip:
    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root; each parent before its children
    offsets: torch.Tensor  # [J, 3] in the file's unit
    channels: tuple[tuple[str, ...], ...]  # per joint, e.g. ("Xposition", ..., "Zrotation", ...)
    frame_time: float
    values: torch.Tensor  # [T, sum of channel counts] float64


CHANNEL_NAMES = {f"{a}{k}" for a in "XYZ" for k in ("position", "rotation")}


def parse_bvh(text: str, source: str = "BVH") -> BvhClip:
    """The hierarchy and motion of a BVH file's text; errors name `source` and the line."""
    lines = text.splitlines()
    tokens: list[tuple[str, int]] = [(tok, i + 1) for i, line in enumerate(lines) for tok in line.split()]
    pos = 0

    def fail(what: str, line: int | None = None) -> InputError:
        where = f"{source}, line {line}" if line else source
        return InputError("file", f"a BVH file ({what})", where)

    def take() -> tuple[str, int]:
        nonlocal pos
        if pos >= len(tokens):
            raise fail("it ends early")
        pos += 1
        return tokens[pos - 1]

    def number(what: str) -> float:
        tok, line = take()
        try:
            return float(tok)
        except ValueError:
            raise fail(f"{what} expected, found {tok!r}", line) from None

    if take()[0].upper() != "HIERARCHY":
        raise fail("it must start with HIERARCHY", 1)
    names: list[str] = []
    parents: list[int] = []
    offsets: list[tuple[float, float, float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []  # open joints; -2 marks an End Site
    tok, line = take()
    if tok.upper() != "ROOT":
        raise fail("ROOT expected", line)
    while True:
        if tok.upper() in ("ROOT", "JOINT"):
            name, line = take()
            parent = next((j for j in reversed(stack) if j >= 0), -1)
            if tok.upper() == "JOINT" and parent < 0:
                raise fail("JOINT outside the ROOT", line)
            if take()[0] != "{":
                raise fail(f"'{{' after joint {name}", line)
            names.append(name)
            parents.append(parent)
            stack.append(len(names) - 1)
            offsets.append((0.0, 0.0, 0.0))
            channels.append(())
        elif tok.upper() == "END":
            site, line = take()
            if site.upper() != "SITE" or take()[0] != "{":
                raise fail("'End Site {'", line)
            stack.append(-2)
        elif tok.upper() == "OFFSET":
            xyz = (number("an OFFSET value"), number("an OFFSET value"), number("an OFFSET value"))
            if stack and stack[-1] >= 0:
                offsets[stack[-1]] = xyz
        elif tok.upper() == "CHANNELS":
            if not stack or stack[-1] < 0:
                raise fail("CHANNELS outside a joint", line)
            count = number("a channel count")
            chans = tuple(take()[0] for _ in range(int(count)))
            bad = [c for c in chans if c.capitalize() not in CHANNEL_NAMES]
            if bad or count != int(count):
                raise fail(f"channels among Xposition .. Zrotation, found {bad or count}", line)
            channels[stack[-1]] = tuple(c.capitalize() for c in chans)
        elif tok == "}":
            if not stack:
                raise fail("unbalanced '}'", line)
            stack.pop()
            if not stack:
                break
        else:
            raise fail(f"unexpected {tok!r}", line)
        tok, line = take()
    tok, line = take()
    if tok.upper() == "ROOT":
        raise fail("one ROOT only (one skeleton)", line)
    if tok.upper() != "MOTION":
        raise fail("MOTION after the hierarchy", line)
    tok, line = take()
    if tok.rstrip(":").upper() != "FRAMES":
        raise fail("'Frames:'", line)
    frames = number("the frame count")
    tok, line = take()
    if tok.upper() != "FRAME" or take()[0].rstrip(":").upper() != "TIME":
        raise fail("'Frame Time:'", line)
    frame_time = number("the frame time")
    if frames < 1 or frames != int(frames) or not frame_time > 0:
        raise fail(
            f"at least one frame and a frame time > 0, found {frames:g} frames of {frame_time:g} s", line
        )
    width = sum(len(c) for c in channels)
    rest = [t for t, _ in tokens[pos:]]
    if len(rest) < int(frames) * width:
        raise fail(f"{int(frames)} frames of {width} values, found {len(rest)} values")
    try:
        values = np.array(rest[: int(frames) * width], dtype=np.float64).reshape(int(frames), width)
    except ValueError:
        raise fail("numbers in the MOTION section") from None
    return BvhClip(tuple(names), tuple(parents), torch.tensor(offsets, dtype=F64), tuple(channels), frame_time,
                   torch.from_numpy(values))  # fmt: skip


def _local_transforms(clip: BvhClip, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame and BVH joint: local rotations [T, J, 3, 3] and local translations [T, J, 3] (metres):
    the OFFSET, or for joints with position channels the channel values (Blender's reading)."""
    T, J = clip.values.shape[0], len(clip.names)
    R = torch.eye(3, dtype=F64).expand(T, J, 3, 3).clone()
    t = (clip.offsets * scale).expand(T, J, 3).clone()
    col = 0
    for j, chans in enumerate(clip.channels):
        rot = [(c[0], col + k) for k, c in enumerate(chans) if c.endswith("rotation")]
        for k, c in enumerate(chans):
            if c.endswith("position"):
                t[:, j, "XYZ".index(c[0])] = clip.values[:, col + k] * scale
        if rot:
            angles = torch.zeros(T, 3, dtype=F64)
            for i, (_, c) in enumerate(rot):
                angles[:, i] = clip.values[:, c]
            order = "".join(a for a, _ in rot)
            R[:, j] = _chain([_axis_matrix(order[i], angles[:, i]) for i in range(len(rot))])
        col += len(chans)
    return R, t


def _chain(mats: list[torch.Tensor]) -> torch.Tensor:
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    return out


def _match(names: tuple[str, ...], wanted: tuple[str, ...]) -> dict[str, int]:
    exact = {n: i for i, n in enumerate(names)}
    folded: dict[str, int] = {}
    for i, n in enumerate(names):
        folded.setdefault(n.casefold(), i)
    return {w: exact[w] if w in exact else folded[w.casefold()] for w in wanted
            if w in exact or w.casefold() in folded}  # fmt: skip


def bvh_to_motion(
    clip: BvhClip,
    joint_names: tuple[str, ...],
    parents: tuple[int, ...],
    units: str = "cm",
    name: str = "BVH",
) -> TriHumanMotion:
    """Retarget a parsed BVH onto a skeleton (joint names and parents) by joint name (module docstring)."""
    if units not in UNITS:
        raise InputError("units", f"one of {tuple(UNITS)}", repr(units))
    scale = UNITS[units]
    found = _match(clip.names, joint_names)
    missing = [n for n in joint_names if n not in found]
    if missing:
        raise InputError("file", f"a BVH with the avatar's joints (matched by name); {name} lacks {missing}",
                         f"its joints {list(clip.names)}")  # fmt: skip
    R, t = _local_transforms(clip, scale)
    bvh_of = [found[n] for n in joint_names]
    matched = {b: j for j, b in enumerate(bvh_of)}
    T = R.shape[0]
    poses = torch.zeros(T, len(joint_names), 3, dtype=F64)
    root_chain: list[int] = []
    for j, b in enumerate(bvh_of):
        chain = [b]  # b and its unmatched BVH ancestors up to the nearest matched one
        a = clip.parents[b]
        while a >= 0 and a not in matched:
            chain.append(a)
            a = clip.parents[a]
        want = parents[j]
        if (a < 0 and want >= 0) or (a >= 0 and matched[a] != want):
            got = "the root" if a < 0 else f"'{clip.names[a]}'"
            should = "the root" if want < 0 else f"'{joint_names[want]}'"
            raise InputError("file", f"a BVH whose '{joint_names[j]}' hangs under {should}, as in the avatar",
                             f"under {got} in {name}")  # fmt: skip
        poses[:, j] = matrix_to_axis_angle(_chain([R[:, c] for c in reversed(chain)]))
        if want < 0:
            root_chain = list(reversed(chain))
    # the root joint's world position by forward kinematics along its chain (usually the BVH root alone)
    G = torch.eye(3, dtype=F64).expand(T, 3, 3)
    p = torch.zeros(T, 3, dtype=F64)
    rest = torch.zeros(3, dtype=F64)
    for c in root_chain:
        p = p + (G @ t[:, c, :, None])[..., 0]
        G = G @ R[:, c]
        rest = rest + clip.offsets[c] * scale
    if float(clip.offsets[0].abs().max()) == 0 and any(ch.endswith("position") for ch in clip.channels[0]):
        rest = rest + torch.tensor([0.0, _root_height(clip) * scale, 0.0], dtype=F64)
    return TriHumanMotion(poses, p - rest, 1.0 / clip.frame_time, tuple(joint_names), 0, name)


def _root_height(clip: BvhClip) -> float:
    """Height of the BVH root above its lowest joint (End Sites not counted) in the rest pose."""
    pos: list[torch.Tensor] = []
    for j, parent in enumerate(clip.parents):
        pos.append(clip.offsets[j] if parent < 0 else pos[parent] + clip.offsets[j])
    ys = torch.stack(pos)[:, 1]
    return float(ys[0] - ys.min())


def load_bvh(
    path: str | Path, joint_names: tuple[str, ...], parents: tuple[int, ...], units: str = "cm"
) -> TriHumanMotion:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError("file", "a readable BVH file", f"{path.name}: {exc}") from None
    return bvh_to_motion(parse_bvh(text, path.name), joint_names, parents, units, path.stem)


def bvh_text(
    motion: TriHumanMotion, rest_joints: torch.Tensor, parents: tuple[int, ...], units: str = "cm"
) -> str:
    """BVH of every frame of `motion` (history included) on the skeleton (rest joints [J, 3] metres,
    parents). Root: OFFSET = rest root, position channels = rest root + translation; rotations ZXY."""
    if units not in UNITS:
        raise InputError("units", f"one of {tuple(UNITS)}", repr(units))
    if not motion.joint_names or len(motion.joint_names) != len(parents):
        raise InputError(
            "motion", f"a motion with names for the {len(parents)} joints", str(motion.joint_names)
        )
    if bad := [n for n in motion.joint_names if not _BVH_NAME.match(n)]:
        raise InputError("motion", "joint names without spaces (BVH)", str(bad))
    k = 1.0 / UNITS[units]
    rest = rest_joints.to(F64)
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parents):
        children.setdefault(p, []).append(j)
    out = ["HIERARCHY"]
    chans = "CHANNELS 3 Zrotation Xrotation Yrotation"

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        off = rest[j] if parents[j] < 0 else rest[j] - rest[parents[j]]
        kind = "ROOT" if parents[j] < 0 else "JOINT"
        out.append(f"{pad}{kind} {motion.joint_names[j]}")
        out.append(pad + "{")
        out.append(f"{pad}  OFFSET {' '.join(f'{v * k:.6f}' for v in off.tolist())}")
        out.append(f"{pad}  " + ("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
                                 if parents[j] < 0 else chans))  # fmt: skip
        for c in children.get(j, []):
            emit(c, depth + 1)
        if not children.get(j):
            tip = off / off.norm().clamp_min(1e-9) * 0.05  # a 5 cm end site along the bone
            out.append(f"{pad}  End Site")
            out.append(pad + "  {")
            out.append(f"{pad}    OFFSET {' '.join(f'{v * k:.6f}' for v in tip.tolist())}")
            out.append(pad + "  }")
        out.append(pad + "}")

    for root in children.get(-1, []):
        emit(root, 0)
    euler = matrix_to_euler_zxy(axis_angle_matrix(motion.poses.to(F64)))  # [T, J, 3]
    root = rest[children[-1][0]] + motion.translations.to(F64)
    out += ["MOTION", f"Frames: {motion.poses.shape[0]}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    order = _depth_first(children)
    for f in range(motion.poses.shape[0]):
        row = [f"{v * k:.6f}" for v in root[f].tolist()]
        for j in order:
            row += [f"{v:.6f}" for v in euler[f, j].tolist()]
        out.append(" ".join(row))
    return "\n".join(out) + "\n"


def _depth_first(children: dict[int, list[int]]) -> list[int]:
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in children.get(j, []):
            visit(c)

    for r in children.get(-1, []):
        visit(r)
    return order


def write_bvh(
    motion: TriHumanMotion, path: str | Path, rest_joints: torch.Tensor, parents: tuple[int, ...], units="cm"
) -> Path:
    path = Path(path)
    path.write_text(bvh_text(motion, rest_joints, parents, units))
    return path


# ------------------------------------------------------------------------------------- frames and joints


def resample(motion: TriHumanMotion, fps: float) -> TriHumanMotion:
    """The motion at another frame rate: rotations by quaternion slerp, translations linearly, over the
    same duration (the last frame at or before the end). History frames are resampled with the rest."""
    if not fps > 0:
        raise InputError("fps", "a frame rate > 0", repr(fps))
    if abs(fps - motion.fps) < 1e-9 * fps:
        return motion
    T = motion.poses.shape[0]
    n = int(math.floor((T - 1) * fps / motion.fps + 1e-9)) + 1
    s = torch.arange(n, dtype=F64) * (motion.fps / fps)
    i0 = s.floor().long().clamp(max=T - 1)
    i1 = (i0 + 1).clamp(max=T - 1)
    w = (s - i0.to(F64))[:, None]
    trans = motion.translations[i0] * (1 - w) + motion.translations[i1] * w
    q = matrix_to_quaternion(axis_angle_matrix(motion.poses.to(F64)))  # [T, J, 4]
    q0, q1 = q[i0], q[i1]
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    cos = dot.abs().clamp(max=1.0)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    wj = w[:, None]
    near = sin < 1e-6
    a = torch.where(near, 1 - wj, torch.sin((1 - wj) * theta) / sin.clamp_min(1e-12))
    b = torch.where(near, wj, torch.sin(wj * theta) / sin.clamp_min(1e-12))
    qs = a * q0 + b * q1
    qs = qs / qs.norm(dim=-1, keepdim=True)
    history = min(round(motion.history * fps / motion.fps), n - 1)
    return replace(
        motion, poses=quaternion_to_axis_angle(qs), translations=trans, fps=float(fps), history=history
    )


def trimmed(motion: TriHumanMotion, frames: int) -> TriHumanMotion:
    """The history and at most `frames` output frames after it (0: all)."""
    if frames <= 0 or motion.frames <= frames:
        return motion
    end = motion.history + frames
    return replace(motion, poses=motion.poses[:end], translations=motion.translations[:end])


def conform(motion: TriHumanMotion, joint_names: tuple[str, ...]) -> TriHumanMotion:
    """The motion with its joints in the avatar's order (by name where the motion names its joints), or an
    InputError naming `motion` (another skeleton's joint count, or joints the avatar has that it lacks)."""
    j = len(joint_names)
    if not isinstance(motion, TriHumanMotion):
        raise InputError("motion", "a TRIHUMAN_MOTION from 'TriHuman: Load Motion'", type(motion).__name__)
    if motion.joint_names:
        if tuple(motion.joint_names) == tuple(joint_names):
            return motion
        found = _match(motion.joint_names, joint_names)
        missing = [n for n in joint_names if n not in found]
        if missing:
            raise InputError("motion", f"poses of the avatar's {j}-joint skeleton (joints matched by name); "
                             f"the motion's poses lack {missing}",
                             f"poses [T, {motion.num_joints}, 3] of joints {list(motion.joint_names)}")  # fmt: skip
        idx = torch.tensor([found[n] for n in joint_names])
        return replace(motion, poses=motion.poses[:, idx], joint_names=tuple(joint_names))
    if motion.num_joints != j:
        source = f" from '{motion.name}'" if motion.name else ""
        raise InputError("motion", f"poses [T, {j}, 3] for the avatar's {j}-joint skeleton "
                         f"({', '.join(joint_names)}); a motion of another skeleton must be retargeted "
                         "(a BVH with these joint names is, by Load Motion)",
                         f"poses [T, {motion.num_joints}, 3]{source}")  # fmt: skip
    return replace(motion, joint_names=tuple(joint_names))
