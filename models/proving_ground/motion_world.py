"""The motion world of the proving ground: seeded clips of ONE large object moving with a named motion.

Built on the image world (`world.py`): the same shapes, colors, backgrounds and renderer, so a frame is
exactly `world.render` of a one-object scene, and the same caption grammar with a motion word added. It is
the ground truth for the "Customizing Motion" method (Materzynska et al. 2023): a video model learns the
motions from captions, one motion is held out (`motions=`), then taught back from a few clips of one
subject (`subjects=`) with a new token; the motion classifier below tells which motion a generated clip
shows.

Clips
- 128x128 uint8 RGB frames, F of them (default 8, any F >= 2; 16 is the other common length). A motion is
  a deterministic path (x(t), y(t), r(t)) on normalised time t in [0, 1]; frame k shows t = k / (F - 1).
  So a 16-frame clip is the same motion sampled twice as densely, not a longer one (the path always
  spans the clip, which keeps the per-frame displacement large at 8 frames: several px per frame).
- One object (radius 22-28 px, growing/shrinking 14-32 px), constant rotation, on a static world
  background (any texture), its color contrasting with the background (world rule). The object's
  bounding circle stays at least EDGE_MARGIN inside the image for every t, not only at the frames.
- Motions (`MOTIONS`), each with a random start / direction / phase within the limits in `_sample_path`:
    sliding     straight line at constant velocity, left, right, up or down, 48-68 px over the clip
    bouncing    y = floor - height |sin(pi (hops t + phase))| (1.5-2 hops, height >= 36 px) while
                drifting sideways 10-22 px at constant speed
    orbiting    a circle around a fixed centre (radius 20-34 px), 3/4 to a full turn, either way
    zigzagging  horizontal travel at constant speed (48-68 px) with a triangle wave in y: 3 straight
                diagonal segments of equal duration (2 turns), 22-36 px up/down each
    growing     fixed centre, radius r0 (14-17) -> r0 * (1.7-2.0) geometrically (same ratio per frame)
    shrinking   the reverse of growing

Captions (the image world's one-object phrase + motion word + background phrase)
    caption := ("a" | "an") color shape [token] motion " on " background
e.g. "a red star bouncing on a striped blue background". `parse_motion_caption` inverts it.
Token rule (`caption_with_token`): the new token goes immediately before the motion word and the motion
word stays: "a red star sks bouncing on ...". The token then modifies the motion word as DreamBooth's
"a sks dog" modifies its class noun, and the paper's "a person doing V*"-style prompts keep the subject
phrase intact: subject, background and motion word still read as in training.

Motion classifier (`MotionClassifier`, `classify_motion`, `motion_accuracy`): a ~250k-parameter (2+1)-D
CNN that reads clips [N,F,H,W,3] (uint8 or float 0..1, any size and length) at 32x32 and 8 frames and
names the motion. Trained on world clips (a quarter of them drawn "wobbly", see `wobbly_scenes`) with
strong photometric / blur / noise / quantisation augmentation, so it also reads imperfect generated clips.
It is a closed-set classifier: a clip where nothing moves still gets one of the six names.
    python -m models.proving_ground.motion_world --train-classifier   # ~7 min on 1 CPU thread
    python -m models.proving_ground.motion_world --eval               # re-measure the shipped weights
write / read `weights/motion_classifier.safetensors` (fp16, config and motion names in the metadata) and
`weights/motion_classifier.json` (training settings and time, held-out accuracy per condition and motion).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __name__ == "__main__":  # `python -m models.proving_ground.motion_world`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

import torch.nn as nn
import torch.nn.functional as F

from .world import (
    COLOR_NAMES,
    COLORS,
    EDGE_MARGIN,
    SHAPES,
    SIZE,
    SPLITS,
    Background,
    Scene,
    WorldObject,
    _article,
    background_phrase,
    contrasts,
    object_coverage,
    parse_caption,
    render_background,
    sample_background,
)

MOTIONS: tuple[str, ...] = ("sliding", "bouncing", "orbiting", "zigzagging", "growing", "shrinking")
DEFAULT_FRAMES = 8
MOTION_SALT = 0x6D07  # keeps the clip streams independent of the image world's scene streams
MOVING_RADIUS = (22.0, 28.0)  # object radius of the translating motions
SMALL_RADIUS = (14.0, 17.0)  # growing starts / shrinking ends here
SCALE_RATIO = (1.7, 2.0)  # growing / shrinking radius ratio over the clip
MAX_RADIUS = 32.0
SLIDE_DIRECTIONS = ("left", "right", "up", "down")
_UNIT = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


# ------------------------------------------------------------------------------------------------ paths


def _triangle(s: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0 -> 1 ... linearly, one unit of s per segment (0 at even s, 1 at odd s)."""
    return 1.0 - np.abs(np.mod(s, 2.0) - 1.0)


def motion_path(motion: str, params: dict[str, float], t: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, r) float64 arrays of the object's centre and radius at normalised times `t` (0..1)."""
    t = np.asarray(t, np.float64)
    p = params
    one = np.ones_like(t)
    if motion == "sliding":
        return p["x0"] + (p["x1"] - p["x0"]) * t, p["y0"] + (p["y1"] - p["y0"]) * t, p["r"] * one
    if motion == "bouncing":
        y = p["floor"] - p["height"] * np.abs(np.sin(math.pi * (p["hops"] * t + p["phase"])))
        return p["x0"] + (p["x1"] - p["x0"]) * t, y, p["r"] * one
    if motion == "orbiting":
        a = p["theta0"] + p["sweep"] * t
        return p["cx"] + p["radius"] * np.cos(a), p["cy"] + p["radius"] * np.sin(a), p["r"] * one
    if motion == "zigzagging":
        y = p["y0"] + p["amp"] * _triangle(t * (p["turns"] + 1))
        return p["x0"] + (p["x1"] - p["x0"]) * t, y, p["r"] * one
    if motion in ("growing", "shrinking"):
        return p["x"] * one, p["y"] * one, p["r0"] * (p["r1"] / p["r0"]) ** t
    raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")


def _sample_path(rng: np.random.Generator, motion: str) -> dict[str, float]:
    """Random parameters of `motion` such that the bounding circle stays EDGE_MARGIN inside at every t."""
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    if motion in ("growing", "shrinking"):
        small = u(*SMALL_RADIUS)
        big = small * u(SCALE_RATIO[0], min(SCALE_RATIO[1], MAX_RADIUS / small))
        lo, hi = big + EDGE_MARGIN, SIZE - big - EDGE_MARGIN
        r0, r1 = (small, big) if motion == "growing" else (big, small)
        return {"x": u(lo, hi), "y": u(lo, hi), "r0": r0, "r1": r1}
    r = u(*MOVING_RADIUS)
    lo, hi = r + EDGE_MARGIN, SIZE - r - EDGE_MARGIN  # allowed centre range on each axis
    room = hi - lo
    if motion == "sliding":
        direction = SLIDE_DIRECTIONS[int(rng.integers(4))]
        length = u(48.0, room)
        start = u(lo, hi - length)  # along the axis, in the direction of travel
        across = u(lo, hi)
        dx, dy = _UNIT[direction]
        a0 = start if dx + dy > 0 else SIZE - start  # travelling left/up starts near the far side
        a1 = a0 + (dx + dy) * length
        x0, x1, y0, y1 = (a0, a1, across, across) if dx else (across, across, a0, a1)
        return {
            "x0": x0,
            "y0": y0,
            "x1": x1,
            "y1": y1,
            "r": r,
            "direction": SLIDE_DIRECTIONS.index(direction),
        }
    if motion == "bouncing":
        height = u(36.0, room)
        floor = u(lo + height, hi)
        drift = u(10.0, 22.0) * (1 if rng.random() < 0.5 else -1)
        x0 = u(lo + max(0.0, -drift), hi - max(0.0, drift))
        return {
            "x0": x0,
            "x1": x0 + drift,
            "floor": floor,
            "height": height,
            "hops": u(1.5, 2.0),
            "phase": u(0.0, 1.0),
            "r": r,
        }
    if motion == "orbiting":
        radius = u(20.0, room / 2)
        return {
            "cx": u(lo + radius, hi - radius),
            "cy": u(lo + radius, hi - radius),
            "radius": radius,
            "theta0": u(0.0, 2 * math.pi),
            "sweep": u(1.5 * math.pi, 2 * math.pi) * (1 if rng.random() < 0.5 else -1),
            "r": r,
        }
    if motion == "zigzagging":
        length = u(48.0, room) * (1 if rng.random() < 0.5 else -1)
        amp = u(22.0, 36.0)
        x0 = u(lo + max(0.0, -length), hi - max(0.0, length))
        y0 = u(lo, hi - amp)
        if rng.random() < 0.5:  # first segment goes up: start at the bottom of the band
            y0, amp = y0 + amp, -amp
        return {"x0": x0, "x1": x0 + length, "y0": y0, "amp": amp, "turns": 2.0, "r": r}
    raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")


# ------------------------------------------------------------------------------------------------ clips


@dataclass(frozen=True)
class MotionClip:
    """Everything a clip is: subject, background, motion and its path parameters (rendering is pure)."""

    motion: str
    color: str
    shape: str
    rotation: float
    background: Background
    params: dict[str, float] = field(default_factory=dict)
    frames: int = DEFAULT_FRAMES

    def times(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.frames)

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth per frame: centres float32 [F,2] (x, y in pixels) and radii float32 [F]."""
        x, y, r = motion_path(self.motion, self.params, self.times())
        return np.stack([x, y], 1).astype(np.float32), r.astype(np.float32)

    def scenes(self) -> list[Scene]:
        """One world scene per frame (the object at its path position)."""
        x, y, r = motion_path(self.motion, self.params, self.times())
        return [
            Scene(
                (WorldObject(self.shape, self.color, float(a), float(b), float(c), self.rotation),),
                self.background,
            )
            for a, b, c in zip(x, y, r)
        ]

    def caption(self) -> str:
        return motion_caption(self.color, self.shape, self.motion, self.background)

    def attributes(self) -> dict[str, Any]:
        """Plain values (JSON-serialisable)."""
        return {
            "motion": self.motion,
            "color": self.color,
            "shape": self.shape,
            "bg_color": self.background.color,
            "bg_texture": self.background.texture,
            "background": dataclasses.asdict(self.background),
            "rotation": self.rotation,
            "params": dict(self.params),
            "frames": self.frames,
            **(
                {"direction": SLIDE_DIRECTIONS[int(self.params["direction"])]}
                if self.motion == "sliding"
                else {}
            ),
        }


def render_clip(clip: MotionClip) -> np.ndarray:
    """uint8 [F,128,128,3]; frame k is bit-identical to `world.render(clip.scenes()[k])`."""
    return render_scenes(clip.scenes())


def render_scenes(scenes: Sequence[Scene]) -> np.ndarray:
    """uint8 [F,128,128,3] of one-object scenes on one background (rendered once, as `world.render` would)."""
    bg = render_background(scenes[0].background)
    out = np.empty((len(scenes), SIZE, SIZE, 3), np.uint8)
    for k, scene in enumerate(scenes):
        c = object_coverage(scene)[0][..., None]
        color = np.asarray(COLORS[scene.objects[0].color], np.float32)
        out[k] = np.clip(np.rint(bg * (1.0 - c) + color * c), 0, 255).astype(np.uint8)
    return out


def wobbly_scenes(
    clip: MotionClip,
    rng: np.random.Generator,
    jitter: float = 3.0,
    scale_jitter: float = 0.08,
    shape_swap: float = 0.25,
) -> list[Scene]:
    """The clip's scenes as an imperfect generator might draw them: per frame, the centre moves by
    N(0, jitter) px, the radius by a factor N(1, scale_jitter), and with probability `shape_swap` the
    object takes another shape. The motion stays recognisable (its paths span tens of pixels); the
    classifier trains on some of these and is evaluated on them."""
    out = []
    for scene in clip.scenes():
        o = scene.objects[0]
        dx, dy = rng.normal(0.0, jitter, 2)
        shape = SHAPES[int(rng.integers(len(SHAPES)))] if rng.random() < shape_swap else o.shape
        size = o.size * float(max(0.5, rng.normal(1.0, scale_jitter)))
        obj = dataclasses.replace(o, x=o.x + float(dx), y=o.y + float(dy), size=size, shape=shape)
        out.append(Scene((obj,), scene.background))
    return out


def sample_clip(
    rng: np.random.Generator,
    motion: str,
    frames: int = DEFAULT_FRAMES,
    subjects: Sequence[tuple[str, str]] | None = None,
) -> MotionClip:
    """A random clip of `motion`; the subject (color, shape) is drawn from `subjects` if given."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
    if frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {frames}")
    if subjects:
        color, shape = subjects[int(rng.integers(len(subjects)))]
        bg = sample_background(rng, color=_pick_contrasting_background(rng, color))
    else:
        bg = sample_background(rng)
        options = [c for c in COLOR_NAMES if contrasts(c, bg.color)]
        color, shape = options[int(rng.integers(len(options)))], SHAPES[int(rng.integers(len(SHAPES)))]
    rotation = float(rng.uniform(0.0, 2 * math.pi))
    return MotionClip(motion, color, shape, rotation, bg, _sample_path(rng, motion), int(frames))


def _pick_contrasting_background(rng: np.random.Generator, color: str) -> str:
    options = [c for c in COLOR_NAMES if contrasts(color, c)]
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------------------------- captions


def motion_caption(
    color: str, shape: str, motion: str, background: Background, token: str | None = None
) -> str:
    """ "a red star bouncing on a striped blue background" (with `token`: "a red star sks bouncing on ...")."""
    words = [_article(color), color, shape] + ([token] if token else []) + [motion]
    return f"{' '.join(words)} on {background_phrase(background)}"


def parse_motion_caption(text: str) -> dict[str, Any]:
    """Inverse of `motion_caption`: {motion, color, shape, token (None if absent), bg_color, bg_texture,
    background (the background phrase)}. Raises ValueError for anything else."""
    text = " ".join(text.strip().lower().split())
    if " on " not in text:
        raise ValueError(f"not a motion-world caption (no ' on '): {text!r}")
    subject, bg_text = text.rsplit(" on ", 1)
    words = subject.split()
    if len(words) < 4 or words[-1] not in MOTIONS:
        raise ValueError(f"not a motion-world subject phrase (object [token] motion): {subject!r}")
    token = " ".join(words[3:-1]) or None
    parsed = parse_caption(f"{' '.join(words[:3])} on {bg_text}")
    (count, color, shape) = parsed["groups"][0]
    if count != 1 or len(parsed["groups"]) != 1:
        raise ValueError(f"a motion-world caption has exactly one object: {text!r}")
    return {
        "motion": words[-1],
        "color": color,
        "shape": shape,
        "token": token,
        "bg_color": parsed["bg_color"],
        "bg_texture": parsed["bg_texture"],
        "background": bg_text,
    }


def caption_with_token(text: str, token: str) -> str:
    """The caption with `token` inserted right before the motion word (rule in the module docstring)."""
    p = parse_motion_caption(text)
    if p["token"] is not None:
        raise ValueError(f"caption already has a token ({p['token']!r}): {text!r}")
    subject, bg_text = " ".join(text.strip().split()).rsplit(" on ", 1)
    words = subject.split()
    return " ".join(words[:-1] + [token, words[-1]]) + " on " + bg_text


# ---------------------------------------------------------------------------------------------- dataset


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of clip `index` of `split`: one stream per (seed, split, index), apart from the
    image world's streams (MOTION_SALT)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], MOTION_SALT, int(index)]))


class MotionWorldDataset:
    """`n` clips of one split, reproducible by index: item i depends only on (seed, split, i) (and on the
    restrictions and frame count).

    Item i shows motion `motions[i % len(motions)]` (balanced classes in any prefix of the dataset);
    `motions` restricts the set (hold one out), `subjects` restricts the (color, shape) pairs, e.g. one
    subject for the "4-8 clips of one subject" customisation set. Items are dicts: frames uint8
    [F,128,128,3], caption, motion, attributes (`MotionClip.attributes()`), centers float32 [F,2] (x, y),
    radii float32 [F], clip (the `MotionClip`).
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        split: str = "train",
        frames: int = DEFAULT_FRAMES,
        motions: Sequence[str] | None = None,
        subjects: Sequence[tuple[str, str]] | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        self.motions = tuple(MOTIONS if motions is None else motions)
        bad = [m for m in self.motions if m not in MOTIONS]
        if bad or not self.motions:
            raise ValueError(f"unknown or empty motions {list(self.motions)}; known: {', '.join(MOTIONS)}")
        self.subjects = None if subjects is None else [tuple(s) for s in subjects]
        for color, shape in self.subjects or []:
            if color not in COLORS or shape not in SHAPES:
                raise ValueError(f"unknown subject {(color, shape)}: colors {COLOR_NAMES}, shapes {SHAPES}")
        if frames < 2:
            raise ValueError(f"a clip needs at least 2 frames, got {frames}")
        self.n, self.seed, self.split, self.frames = int(n), int(seed), split, int(frames)

    def __len__(self) -> int:
        return self.n

    def clip(self, index: int) -> MotionClip:
        if not 0 <= index < self.n:
            raise IndexError(index)
        motion = self.motions[index % len(self.motions)]
        return sample_clip(clip_rng(self.seed, self.split, index), motion, self.frames, self.subjects)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clip(index)
        centers, radii = clip.trajectory()
        return {
            "frames": render_clip(clip),
            "caption": clip.caption(),
            "motion": clip.motion,
            "attributes": clip.attributes(),
            "centers": centers,
            "radii": radii,
            "clip": clip,
        }


# ------------------------------------------------------------------------------------ motion classifier
#
# Why a learned classifier and not a tracker: generated clips are blurry, their backgrounds flicker and
# their objects change shape between frames, so segmenting "the object" per frame is the fragile part.
# A small (2+1)-D conv net trained on world clips with heavy degradations reads the motion from the whole
# clip instead. It works at 32x32 and 8 frames: every motion here is coarse (tens of pixels), a 4x area
# downsample removes most pixel noise and JPEG blocking by itself, and it keeps training to minutes.

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "motion_classifier.safetensors"
DEFAULT_CLASSIFIER_CONFIG: dict[str, Any] = {
    "motions": list(MOTIONS),
    "frames": DEFAULT_FRAMES,  # clips of other lengths are resampled in time to this
    "internal_size": 32,  # frames are area-downsampled to this
    "channels": [16, 32, 64],
    "hidden": 128,
}
EVAL_SEED = 0  # held-out clips of the recorded accuracy
EVAL_CLIPS = 600  # 100 per motion
WOBBLE_SALT = 0x3B0B  # seeds of the wobbly drawings (training pool; evaluation uses WOBBLE_SALT + 1)
DEGRADED = {"blur": 2.0, "noise": 0.06, "jpeg": 40}  # the "degraded" evaluation condition
HEAVY = {"blur": 3.0, "noise": 0.10, "jpeg": 25, "flicker": 0.06, "shake": 2.0, "color_shift": 25.0}


class MotionClassifier(nn.Module):
    """(2+1)-D CNN over clips [B,3,T,S,S] in -1..1 (T = config frames, S = internal size) -> motion logits.

    The input gets 3 more channels: each frame minus the clip's temporal mean, which cancels the static
    background and leaves the moving object (plus its "ghosts"), so texture matters less. Convolutions
    are 3x3x3 (stride 2 in space; the last one also stride 2 in time); the last map is pooled over space
    only (mean + max), so the head still sees the temporal order (growing vs shrinking, bouncing's
    up-down rhythm vs zigzagging's straight segments).
    """

    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        self.config = json.loads(json.dumps(config or DEFAULT_CLASSIFIER_CONFIG))
        c1, c2, c3 = self.config["channels"]
        t = self.config["frames"]

        def block(cin: int, cout: int, k: tuple, stride: tuple) -> list[nn.Module]:
            pad = tuple(kk // 2 for kk in k)
            return [nn.Conv3d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm3d(cout), nn.SiLU()]

        self.trunk = nn.Sequential(
            *block(6, c1, (1, 3, 3), (1, 2, 2)),  # S/2
            *block(c1, c2, (3, 3, 3), (1, 2, 2)),  # S/4
            *block(c2, c3, (3, 3, 3), (1, 2, 2)),  # S/8
            *block(c3, c3, (3, 3, 3), (2, 1, 1)),  # T/2
        )
        t_out = (t + 1) // 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * c3 * t_out, self.config["hidden"]), nn.SiLU(), nn.Dropout(0.1)
        )
        self.out = nn.Linear(self.config["hidden"], len(self.config["motions"]))

    @property
    def motions(self) -> list[str]:
        return self.config["motions"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, x - x.mean(2, keepdim=True)], 1)
        h = self.trunk(x)
        h = torch.cat([h.mean((3, 4)), h.amax((3, 4))], 1)  # [B, 2C, T']
        return self.out(self.head(h))


def clips_to_input(clips: Any, frames: int = DEFAULT_FRAMES, size: int = 32) -> torch.Tensor:
    """Clips -> float [N,3,frames,size,size] in -1..1, what the classifier reads.

    Accepts [N,F,H,W,C] or one clip [F,H,W,C], uint8 (0..255) or float (0..1, ComfyUI IMAGE), numpy or
    torch, C in {1, 3, 4}. Space: area average to size x size (adaptive pooling: exact 4x4 means at 128).
    Time: linear interpolation to `frames` with the end frames kept, since a motion spans the clip
    whatever its length (a 16-frame clip becomes 8 frames at the same normalised times).
    """
    x = clips if isinstance(clips, torch.Tensor) else torch.as_tensor(np.asarray(clips))
    if x.ndim == 4:
        x = x.unsqueeze(0)
    if x.ndim != 5 or x.shape[-1] not in (1, 3, 4) or x.shape[1] < 2:
        raise ValueError(f"expected clips [N, frames >= 2, height, width, 3], got shape {tuple(x.shape)}")
    x = x[..., :3] if x.shape[-1] == 4 else x.expand(*x.shape[:-1], 3)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    n, f, h, w, _ = x.shape
    x = F.adaptive_avg_pool2d(x.permute(0, 1, 4, 2, 3).reshape(n * f, 3, h, w), size)
    x = x.reshape(n, f, 3, size, size).permute(0, 2, 1, 3, 4)  # [N,3,F,S,S]
    if f != frames:
        x = F.interpolate(x, size=(frames, size, size), mode="trilinear", align_corners=True)
    return x.clamp(0, 1) * 2.0 - 1.0


def save_motion_classifier(model: MotionClassifier, path: str | Path, report: dict | None = None) -> Path:
    """fp16 safetensors; metadata "config" (JSON, includes the motion names) and "motions" (JSON list)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    meta = {"config": json.dumps(model.config), "motions": json.dumps(model.motions)}
    save_file(sd, str(path), metadata=meta)
    if report is not None:
        path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return path


def load_motion_classifier(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> MotionClassifier:
    """The motion classifier in `path` (default: the shipped weights), float32, eval mode."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"motion classifier weights not found: {path} (reproduce them with "
            "`python -m models.proving_ground.motion_world --train-classifier` from the pack's root)"
        )
    from .classifier import metadata_config

    model = MotionClassifier(metadata_config(path, DEFAULT_CLASSIFIER_CONFIG))
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(sd)
    return model.to(device).eval()


@torch.no_grad()
def motion_logits(clips: Any, classifier: MotionClassifier, batch_size: int = 64) -> torch.Tensor:
    """float32 [N, motions] logits of clips [N,F,H,W,3] (or one clip [F,H,W,3])."""
    if np.ndim(clips) == 4:
        clips = clips[None]
    classifier.eval()
    device = next(classifier.parameters()).device
    cfg = classifier.config
    out = []
    for s in range(0, len(clips), batch_size):
        x = clips_to_input(clips[s : s + batch_size], cfg["frames"], cfg["internal_size"])
        out.append(classifier(x.to(device)).float().cpu())
    return torch.cat(out)


def classify_motion(clips: Any, classifier: MotionClassifier | None = None) -> list[str]:
    """The predicted motion name of each clip [N,F,H,W,3] (or of one clip [F,H,W,3], still a list)."""
    classifier = classifier or load_motion_classifier()
    return [classifier.motions[i] for i in motion_logits(clips, classifier).argmax(1).tolist()]


def motion_accuracy(clips: Any, motions: Sequence[str], classifier: MotionClassifier | None = None) -> dict:
    """{"all": fraction right, "per_motion": {motion: fraction right}} against the true motion names."""
    pred = classify_motion(clips, classifier)
    if len(pred) != len(motions):
        raise ValueError(f"{len(pred)} clips but {len(motions)} motions")
    hits = np.array([p == m for p, m in zip(pred, motions)])
    per = {m: float(hits[[t == m for t in motions]].mean()) for m in dict.fromkeys(motions)}
    return {"all": float(hits.mean()), "per_motion": per, "n": len(pred)}


# -------------------------------------------------------------------------------------- degradations


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of [B,C,H,W] with one sigma per image (sigma <= 0: unchanged)."""
    b, c, h, w = x.shape
    rad = int(math.ceil(3 * float(sigma.max()))) if float(sigma.max()) > 0 else 0
    if rad == 0:
        return x
    r = torch.arange(-rad, rad + 1, dtype=x.dtype)
    ker = torch.exp(-(r[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None].to(x.dtype) ** 2))
    ker = ker / ker.sum(1, keepdim=True)
    ker = torch.where((sigma > 0)[:, None], ker, (r == 0).to(x.dtype)[None].expand(b, -1))
    kh = ker.repeat_interleave(c, 0)
    xb = x.reshape(1, b * c, h, w)
    mode = "reflect" if rad < min(h, w) else "replicate"
    xb = F.conv2d(F.pad(xb, (rad, rad, 0, 0), mode=mode), kh[:, None, None, :], groups=b * c)
    xb = F.conv2d(F.pad(xb, (0, 0, rad, rad), mode=mode), kh[:, None, :, None], groups=b * c)
    return xb.reshape(b, c, h, w)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def degrade_clips(
    clips: np.ndarray,
    seed: int = 0,
    blur: float = 0.0,
    noise: float = 0.0,
    jpeg: int | None = None,
    flicker: float = 0.0,
    shake: float = 0.0,
    color_shift: float = 0.0,
) -> np.ndarray:
    """Degraded copies of uint8 clips [N,F,H,W,3], the stand-in for generated clips (seeded).

    blur: Gaussian sigma in pixels; noise: i.i.d. Gaussian std in 0..1 units, fresh per frame; jpeg: real
    JPEG at this quality per frame (PIL); flicker: per-frame brightness gain std; shake: per-frame random
    whole-frame translation up to this many pixels (a wobbling background); color_shift: per-clip random
    RGB offset up to this many levels. Order: shake, color, blur, noise, flicker, JPEG.
    """
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(np.asarray(clips)).float() / 255.0
    n, f, h, w, _ = x.shape
    x = x.permute(0, 1, 4, 2, 3).reshape(n * f, 3, h, w)
    if shake > 0:
        d = torch.as_tensor(rng.uniform(-shake, shake, (n * f, 2)), dtype=torch.float32)
        theta = torch.zeros(n * f, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, :, 2] = d * 2.0 / torch.tensor([w, h], dtype=torch.float32)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if color_shift > 0:
        off = torch.as_tensor(
            rng.uniform(-color_shift, color_shift, (n, 1, 3, 1, 1)) / 255.0, dtype=torch.float32
        )
        x = (x.reshape(n, f, 3, h, w) + off).reshape(n * f, 3, h, w)
    if blur > 0:
        x = _gaussian_blur(x, torch.full((n * f,), float(blur)))
    if noise > 0:
        x = x + torch.as_tensor(rng.normal(0.0, noise, x.shape), dtype=torch.float32)
    if flicker > 0:
        x = x * torch.as_tensor(1.0 + rng.normal(0.0, flicker, (n * f, 1, 1, 1)), dtype=torch.float32)
    out = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).reshape(n, f, 3, h, w).permute(0, 1, 3, 4, 2)
    out = out.contiguous().numpy()
    if jpeg is not None:
        for i in range(n):
            for k in range(f):
                out[i, k] = _jpeg(out[i, k], jpeg)
    return out


def _augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training augmentation of internal clips [B,3,T,S,S] in -1..1 and their labels.

    Label-preserving: horizontal mirror (left/right, clockwise/anticlockwise are one class each), time
    reversal (growing <-> shrinking swap labels; the other motions are their own reverse), channel
    permutation, contrast / brightness / saturation jitter, per-frame flicker, per-frame sub-pixel shake,
    blur, noise and coarse quantisation, each per clip with its own probability. The strengths are
    those of blur up to sigma ~5 px at 128 px (1.2 px at 32), noise up to std 0.06 at 32 px (what
    i.i.d. noise of std 0.24 at 128 px averages down to) and coarse quantisation (4-15 levels).
    """
    b, _, t, s, _ = x.shape
    rnd = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    flip = rnd(b) < 0.5
    x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
    rev = rnd(b) < 0.5
    x = torch.where(rev[:, None, None, None, None], x.flip(2), x)
    i_grow, i_shrink = MOTIONS.index("growing"), MOTIONS.index("shrinking")
    swapped = torch.where(y == i_grow, i_shrink, torch.where(y == i_shrink, i_grow, y))
    y = torch.where(rev, swapped, y)
    perm = torch.stack([torch.randperm(3, generator=g) for _ in range(b)])
    keep = rnd(b) < 0.5
    perm[keep] = torch.arange(3)
    x = torch.gather(x, 1, perm[:, :, None, None, None].expand_as(x))
    x = (x + 1) / 2  # 0..1 for the photometric part
    gray = x.mean(1, keepdim=True)
    sat = 0.3 + rnd(b, 1, 1, 1, 1) * 1.0
    x = gray + (x - gray) * sat
    mean = x.mean((1, 2, 3, 4), keepdim=True)
    x = mean + (x - mean) * (0.5 + rnd(b, 1, 1, 1, 1) * 0.7) + (rnd(b, 1, 1, 1, 1) - 0.5) * 0.4
    flick = (rnd(b, 1, 1, 1, 1) < 0.3) * torch.randn(b, 1, t, 1, 1, generator=g) * 0.06
    x = x * (1 + flick)
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, 3, s, s)
    shake = (rnd(b, 1) < 0.3).repeat_interleave(t, 0) * (rnd(b * t, 2) - 0.5) * 1.2  # px at S
    theta = torch.zeros(b * t, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shake * 2.0 / s
    frames = F.grid_sample(
        frames,
        F.affine_grid(theta, list(frames.shape), align_corners=False),
        padding_mode="border",
        align_corners=False,
    )
    sigma = (rnd(b) < 0.6) * rnd(b) * 1.2
    frames = _gaussian_blur(frames, sigma.repeat_interleave(t))
    x = frames.reshape(b, t, 3, s, s).permute(0, 2, 1, 3, 4)
    x = x + (rnd(b, 1, 1, 1, 1) < 0.6) * rnd(b, 1, 1, 1, 1) * 0.06 * torch.randn(x.shape, generator=g)
    levels = 4 + (rnd(b, 1, 1, 1, 1) * 12).floor()
    quant = rnd(b, 1, 1, 1, 1) < 0.2
    x = torch.where(quant, (x * levels).round() / levels, x)
    return x.clamp(0, 1) * 2 - 1, y


# ------------------------------------------------------------------------------------------- training


def _pool_frames(clip: MotionClip, seed: int, index: int) -> np.ndarray:
    """Every 4th training clip is drawn wobbly (`wobbly_scenes`), seeded by (seed, index)."""
    if index % 4 != 3:
        return render_clip(clip)
    return render_scenes(wobbly_scenes(clip, np.random.default_rng([int(seed), int(index), WOBBLE_SALT])))


def render_training_pool(n: int, seed: int, size: int = 32, log_every: int = 1000) -> dict[str, torch.Tensor]:
    """Train-split clips 0..n-1 (balanced motions; every 4th one wobbly), area-downsampled as the classifier reads them:
    x uint8 [n,3,T,size,size] (0..255; memory: 24 KB a clip at 32 px), y int64 [n] motion indices."""
    ds = MotionWorldDataset(n, seed, "train")
    xs, ys = [], []
    t0 = time.time()
    for start in range(0, n, 100):
        idx = range(start, min(n, start + 100))
        batch = [ds.clip(i) for i in idx]
        frames = np.stack([_pool_frames(c, seed, i) for c, i in zip(batch, idx)])
        xs.append(((clips_to_input(frames, DEFAULT_FRAMES, size) + 1) * 127.5).round().to(torch.uint8))
        ys.extend(MOTIONS.index(c.motion) for c in batch)
        if log_every and (start + 100) % log_every == 0:
            print(f"rendered {start + 100}/{n} clips ({time.time() - t0:.0f}s)", flush=True)
    return {"x": torch.cat(xs), "y": torch.tensor(ys)}


def train_motion_classifier(
    steps: int = 1500,
    seed: int = 0,
    out_path: str | Path | None = DEFAULT_WEIGHTS,
    pool: int = 6000,
    batch_size: int = 48,
    lr: float = 3e-3,
    log_every: int = 100,
    eval_clips: int = EVAL_CLIPS,
) -> tuple[MotionClassifier, dict[str, Any]]:
    """Train on `pool` rendered train-split clips with `_augment`, evaluate on held-out clips, save.

    AdamW, linear warm-up over 5% of the steps then cosine decay, label smoothing 0.05. Returns
    (classifier in eval mode, report); with `out_path`, writes the fp16 weights there and the report as
    JSON next to them (same name, .json).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = MotionClassifier()
    t0 = time.time()
    data = render_training_pool(pool, seed, model.config["internal_size"])
    render_seconds = time.time() - t0
    print(f"rendered {pool} train clips in {render_seconds:.0f}s", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))),
    )
    model.train()
    running = None
    for step in range(steps):
        idx = torch.randint(pool, (batch_size,), generator=g)
        x = data["x"][idx].float() / 127.5 - 1.0
        x, y = _augment(x, data["y"][idx], g)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        running = acc if running is None else 0.95 * running + 0.05 * acc
        if log_every and (step + 1) % log_every == 0:
            print(
                f"step {step + 1}/{steps} loss={loss.item():.4f} acc={running:.3f} ({time.time() - t0:.0f}s)",
                flush=True,
            )
    train_seconds = time.time() - t0
    model.eval()
    t1 = time.time()
    report: dict[str, Any] = {
        "config": model.config,
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "pool_clips": pool,
            "lr": lr,
            "seed": seed,
            "train_split": "train",
            "seconds": round(train_seconds, 1),
            "render_seconds": round(render_seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "command": "python -m models.proving_ground.motion_world --train-classifier"
            f" --steps {steps} --seed {seed} --pool {pool} --batch-size {batch_size}",
        },
        **evaluate_motion_classifier(model, eval_clips),
    }
    report["eval_seconds"] = round(time.time() - t1, 1)
    if out_path is not None:
        save_motion_classifier(model, out_path, report)
    return model, report


def evaluate_motion_classifier(
    classifier: MotionClassifier, n: int = EVAL_CLIPS, seed: int = EVAL_SEED, n16: int | None = None
) -> dict[str, Any]:
    """Held-out accuracy (overall and per motion) on clean 8-frame clips, clean 16-frame clips, and the
    same 8-frame clips DEGRADED (blur 2 px + noise 0.06 + JPEG 40) and HEAVY (more of each, plus flicker,
    2 px shake and a colour shift), and the same clips drawn wobbly (`wobbly_scenes`: jittered centre and
    size, shape swaps; fresh draws, not the training ones) then DEGRADED."""
    ds = MotionWorldDataset(n, seed, "heldout")
    clips = np.stack([ds[i]["frames"] for i in range(n)])
    labels = [MOTIONS[i % len(MOTIONS)] for i in range(n)]
    wobbly = np.stack(
        [
            render_scenes(wobbly_scenes(ds.clip(i), np.random.default_rng([seed, i, WOBBLE_SALT + 1])))
            for i in range(n)
        ]
    )
    n16 = n // 2 if n16 is None else n16
    ds16 = MotionWorldDataset(n16, seed, "heldout", frames=16)
    clips16 = np.stack([ds16[i]["frames"] for i in range(n16)])
    return {
        "eval_seed": seed,
        "heldout_clips": n,
        "degraded": DEGRADED,
        "heavy": HEAVY,
        "accuracy": {
            "clean": motion_accuracy(clips, labels, classifier),
            "clean_16_frames": motion_accuracy(clips16, labels[:n16], classifier),
            "degraded": motion_accuracy(degrade_clips(clips, seed + 1, **DEGRADED), labels, classifier),
            "heavy": motion_accuracy(degrade_clips(clips, seed + 2, **HEAVY), labels, classifier),
            "wobbly_degraded": motion_accuracy(
                degrade_clips(wobbly, seed + 3, **DEGRADED), labels, classifier
            ),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The motion world's classifier: train or evaluate.")
    p.add_argument("--train-classifier", action="store_true", help="train, write weights + JSON report")
    p.add_argument("--eval", action="store_true", help="evaluate the weights at --out on held-out clips")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=6000, help="train clips rendered once and reused")
    p.add_argument("--batch-size", type=int, default=48)
    p.add_argument("--eval-clips", type=int, default=EVAL_CLIPS)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shipped run used 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train_classifier:
        _, report = train_motion_classifier(
            args.steps, args.seed, args.out, args.pool, args.batch_size, eval_clips=args.eval_clips
        )
    elif args.eval:
        report = evaluate_motion_classifier(load_motion_classifier(args.out), args.eval_clips)
    else:
        p.error("nothing to do: pass --train-classifier or --eval")
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    main()
