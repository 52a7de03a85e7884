"""The dance world of the proving ground: seeded clips of ONE articulated 2D person dancing, for DreaMoving.

Built on the image world (`world.py`): the same palette, contrast rule, backgrounds (colour, texture and
its geometry) and caption phrases, and the same supersampled rendering. A clip is what DreaMoving
(arXiv 2312.05107) trains and conditions on: the video frames, their OpenPose maps (drawn by the pack's
renderer, `models/common/pose.py`, exactly as a user's pose maps would be), their depth maps, and the
person's face and clothes crops (the Content Guider's references), plus the caption.

Skeleton and dance (all deterministic functions of the clip's parameters)
- Body proportions are fixed multiples of the body scale h (pixels; h = 0.72-0.82 of the frame size
  per clip): head radius 0.08, neck-to-head-centre 0.10, mid-hip-to-neck 0.30, shoulder half-width 0.105,
  hip half-width 0.065, upper arm 0.15, forearm 0.14, thigh and shin 0.235 each. Standing, the figure
  is 0.96 h tall (70-79 % of the frame), its trouser ends on the ground line GROUND (0.95 of the height).
- The person faces the camera turned by a yaw of 15-40 degrees to either side (constant per clip). The
  yaw narrows shoulders and hips by cos(yaw), places the face (nose, eyes, ears on a head sphere) and
  decides which side is near: yaw > 0 turns the person to their left, so their RIGHT side is near.
  The far ear is hidden (confidence 0), so every frame has 17 visible keypoints.
- Pose per frame: pelvis sway and drop, torso lean, head tilt, per arm the upper-arm angle and the elbow
  bend (2D forward kinematics: angles measured from hanging straight down, positive outward), per foot
  a ground position and a lift. Legs are solved by two-bone inverse kinematics from the hip to the
  ankle target (knees bend outward); a target out of reach is pulled onto the reach, so the foot lifts
  a little instead of a bone stretching. All limb lengths are therefore constant over a clip.
- Moves (`MOVES`): wave (arms overhead, swaying in alternation), step (side steps: the pelvis sways,
  the feet follow with a lag and lift as they move), bounce (squat bounces at double tempo with pumping
  arms), disco (one arm up, one down, alternating diagonals, with a lean), swing (both arms sweep to the
  same side, so one arm crosses the torso every half cycle). Every move is a smooth periodic function of
  time t = frame / FPS (FPS = 8) with a random period (1.0-1.6 s), phase and amplitude (0.8-1.2) per
  clip, plus a small head bob. Frame k of a 16-frame clip shows 2 s of dance; the clip length is
  the number of frames, not a resampling (unlike the motion world).
- After the kinematics the figure is shifted sideways (uniformly among the positions that keep every
  part of every frame at least EDGE px inside the frame), so nothing is ever cut off; vertically the
  proportions do it (a hand raised straight up at the largest scale stays > 1 px below the top at 64).

Keypoints: OpenPose COCO-18 order (`pose.BODY_LIMBS`): 0 nose, 1 neck, 2-4 right shoulder/elbow/wrist,
5-7 left, 8-10 right hip/knee/ankle, 11-13 left, 14/15 right/left eye, 16/17 right/left ear. The
person's right is on the image left when facing the camera. `DanceClip.keypoints` is float32 [F, 18, 3]:
(x, y) in PIXELS (pixel (i, j) covers [j, j+1) x [i, i+1), as in the image world) and a confidence 1 or
0 (the hidden ear keeps its geometric position there; `pose_keypoint` writes it as missing (0, 0, 0)).
`pose_keypoint` is the POSE_KEYPOINT list (normalised coordinates, canvas = frame size), and frame k
of `pose` is `render_pose_frame` of it: bit-identical to what the pack's pose nodes draw.

Rendering
- Body parts are flat-coloured unions of capsules, discs and convex polygons, painted back to front in
  `LAYERS` order: far arm, far leg, hips (trouser block), near leg, torso (shirt), neck, head, near arm
  (our interpretation of "layer order": fixed per clip, the near arm always in front of the torso and
  the far arm always behind it). Arms are long sleeves (shirt) ending in a hand disc (skin); legs are
  trousers down to the ground line. The head is a skin disc with a hair cap (the head minus an offset
  face disc, so it also covers the back of the head when turned) and two eye dots: skin tone + hair
  colour are the face's identity, visible in the face crop.
- Clothes patterns (`CLOTH_PATTERNS`: solid, striped, checkered, dotted) mix the garment colour with
  `world.second_tone` of it in the body part's own frame (stripes run across each limb and across the
  torso, period 0.085 h), so they move with the body.
- Anti-aliasing as in the image world: SUPERSAMPLE x SUPERSAMPLE samples a pixel, parts are painted on
  the samples, the pixel is the mean (colour and depth alike). The background is the image world's
  background evaluated at the samples in world coordinates (the frame spans the world's 128x128 canvas
  at any size), so at size 128 it equals `world.render_background`.
- Depth: float32 in 0..1, nearer = brighter as in MiDaS-style maps: background 0, layer k of the
  L layers depth 0.4 + 0.6 k / (L - 1) (far arm 0.4 ... near arm 1.0), anti-aliased like the colours.
  `parts` (uint8) names the layer painted on most of a pixel's samples, 0 = background, k + 1 = layer k.
- Default size 64: a 16-frame clip at 64 px holds as many pixels as 4 image-world frames at 128, which
  keeps a CPU-trained video model's cost per clip near the image world's; the figure is still ~50 px
  tall with an ~8 px head. Any size works (128 is the other intended one). Cost on one CPU thread:
  ~0.26 s per 16-frame 64 px clip (half of it the pose maps), ~0.6 s at 128 px.

Face and clothes crops: a reference image of the same person, background and yaw in a neutral standing
pose at the frame centre (`DanceClip.reference`), and two crops of that scene rendered natively (sharp,
not resized) at `crop_size` (default 64): `face_crop` is the square of side 2.8 head radii around the
head centre; `clothes_crop` the square from just above the shoulders to the ground line, centred on the
pelvis: shirt, sleeves and trousers.

Colours: shirt and trousers are image-world colours that contrast with the background (world rule) and
differ from each other; skin is one of `SKIN_TONES` that contrasts with the background by the same rule
when one does; hair is a world colour at least MIN_CONTRAST (RGB distance) from the skin.

Captions
    caption := "a person in " article shirt_colour [pattern] " shirt and " trousers_colour [pattern]
               " trousers dancing on " background
with `world.background_phrase` for the background, the garment patterns in words of their own
(`GARMENT_WORDS`: stripy, plaid, spotty; the solid pattern omitted), e.g. "a person in a red stripy shirt
and blue trousers dancing on a dotted green background". `parse_dance_caption` inverts it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common.pose import PersonPose, PoseFrame, render_pose_frame, to_pose_keypoint
from .world import (
    COLOR_NAMES,
    COLORS,
    MIN_CONTRAST,
    SPLITS,
    SUPERSAMPLE,
    Background,
    _article,
    _segment_distance,
    background_phrase,
    contrasts,
    parse_caption,
    pattern_on,
    sample_background,
    second_tone,
)
from .world import SIZE as WORLD_SIZE

DEFAULT_SIZE = 64
DEFAULT_FRAMES = 16
CROP_SIZE = 64
FPS = 8.0  # frames per second of the dance's time axis
DANCE_SALT = 0xDA7C  # keeps the clip streams independent of the other worlds' streams
GROUND = 0.95  # ground line, as a fraction of the frame height
EDGE = 1.0  # pixels between every painted part and the frame border
BODY_SCALE = (0.72, 0.82)  # body scale h over the frame size
YAW_DEG = (15.0, 40.0)
PERIOD_S = (1.0, 1.6)
AMPLITUDE = (0.8, 1.2)

MOVES: tuple[str, ...] = ("wave", "step", "bounce", "disco", "swing")
CLOTH_PATTERNS: tuple[str, ...] = ("solid", "striped", "checkered", "dotted")
# The captions' words for the garment patterns: words of their own, not the image world's background words
# (issue 20). The image world says "striped" / "checkered" / "dotted" only of backgrounds, and the dance
# image stage keeps its text encoder frozen, so "dotted trousers" read as "dotted background" and the model
# painted the garments' patterns over plain backgrounds (measured in docs/dreamoving.md).
GARMENT_WORDS: dict[str, str] = {"solid": "", "striped": "stripy", "checkered": "plaid", "dotted": "spotty"}
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "light": (241, 204, 176),
    "tan": (212, 160, 118),
    "brown": (150, 100, 66),
    "dark": (92, 60, 42),
}
LAYERS: tuple[str, ...] = ("far arm", "far leg", "hips", "near leg", "torso", "neck", "head", "near arm")
LAYER_DEPTH = tuple(0.4 + 0.6 * k / (len(LAYERS) - 1) for k in range(len(LAYERS)))
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip

# body proportions, in units of the body scale h (module docstring)
HEAD_R = 0.08
NECK_LEN = 0.10
TORSO = 0.30
SHOULDER_HALF = 0.105
HIP_HALF = 0.065
UPPER_ARM = 0.15
FOREARM = 0.14
THIGH = 0.235
SHIN = 0.235
STANCE_HALF = 0.085  # feet, from the body's midline (standing)
STRAIGHT = 0.985  # hip-ankle distance of a standing leg over the full leg length
# part thickness (radii), in h
ARM_R = (0.034, 0.029)  # upper arm, forearm
HAND_R = 0.036
THIGH_R = 0.05
SHIN_R = 0.042
NECK_R = 0.03
SHOULDER_CAP_R = 0.045
PATTERN_PERIOD = 0.085
EYE_R = 0.12  # in head radii
SOLE = SHIN_R  # ankle keypoint above the ground line: the trouser end touches the ground
EYE_DARK, EYE_LIGHT = (30, 22, 18), (240, 240, 240)

# (bone name, keypoint a, keypoint b): lengths constant over a clip (tests check it)
BONES: tuple[tuple[str, int, int], ...] = (
    ("r_upper_arm", 2, 3), ("r_forearm", 3, 4), ("l_upper_arm", 5, 6), ("l_forearm", 6, 7),
    ("r_thigh", 8, 9), ("r_shin", 9, 10), ("l_thigh", 11, 12), ("l_shin", 12, 13),
    ("shoulders", 2, 5), ("hips", 8, 11), ("neck_nose", 1, 0), ("eyes", 14, 15),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Person:
    """Appearance: skin tone (a SKIN_TONES name), hair, shirt and trouser colours (world COLORS names) and
    their patterns (CLOTH_PATTERNS)."""

    skin: str
    hair: str
    shirt: str
    shirt_pattern: str
    trousers: str
    trousers_pattern: str

    @property
    def skin_rgb(self) -> tuple[int, int, int]:
        return SKIN_TONES[self.skin]

    @property
    def eye_rgb(self) -> tuple[int, int, int]:
        return EYE_LIGHT if np.mean(SKIN_TONES[self.skin]) < 100 else EYE_DARK


@dataclass(frozen=True)
class Dance:
    """A named move with its clip parameters: period (s), phase (rad), amplitude factor, yaw (rad)."""

    move: str
    period: float
    phase: float
    amplitude: float
    yaw: float

    @property
    def near_side(self) -> str:
        """ "right" or "left": the side turned towards the camera (drawn in front)."""
        return "right" if self.yaw > 0 else "left"


@dataclass(frozen=True)
class DanceSpec:
    """Everything a clip is (rendering is a pure function of it): who, where, which dance, how placed."""

    person: Person
    background: Background
    dance: Dance
    frames: int = DEFAULT_FRAMES
    size: int = DEFAULT_SIZE
    scale: float = 0.77  # body scale h over the frame size
    x: float = 0.5  # horizontal position of the body's rest midline, fraction of the frame width

    @property
    def h(self) -> float:
        return self.scale * self.size

    @property
    def ground_y(self) -> float:
        return GROUND * self.size

    def caption(self) -> str:
        return dance_caption(self.person, self.background)

    def attributes(self) -> dict[str, Any]:
        """Plain values (JSON-serialisable)."""
        return {
            **dataclasses.asdict(self.person),
            "move": self.dance.move,
            "near_side": self.dance.near_side,
            "dance": dataclasses.asdict(self.dance),
            "bg_color": self.background.color,
            "bg_texture": self.background.texture,
            "background": dataclasses.asdict(self.background),
            "frames": self.frames,
            "size": self.size,
            "scale": self.scale,
            "x": self.x,
        }


@dataclass
class Skeleton:
    """Per-frame kinematic state in frame pixels: keypoints [F,18,2] (x, y), visible bool [18], and what
    the renderer needs beyond them: head centres [F,2], head angles [F] (rad, 0 = upright, positive
    clockwise on screen), torso angles [F], pelvis (mid-hip) [F,2]."""

    keypoints: np.ndarray
    visible: np.ndarray
    head: np.ndarray
    head_angle: np.ndarray
    torso_angle: np.ndarray
    pelvis: np.ndarray


@dataclass
class DanceClip:
    """A rendered clip. Arrays: frames uint8 [F,H,W,3]; pose uint8 [F,H,W,3] (OpenPose maps); depth
    float32 [F,H,W] (0 background .. 1 nearest); parts uint8 [F,H,W] (0 background, k+1 = LAYERS[k]);
    keypoints float32 [F,18,3] (x, y in pixels, confidence 0/1); reference uint8 [H,W,3] (neutral pose);
    face_crop / clothes_crop uint8 [C,C,3]. pose_keypoint: POSE_KEYPOINT dicts (normalised)."""

    spec: DanceSpec
    frames: np.ndarray
    pose: np.ndarray
    depth: np.ndarray
    parts: np.ndarray
    keypoints: np.ndarray
    pose_keypoint: list[dict] = field(repr=False)
    reference: np.ndarray = field(repr=False)
    reference_keypoints: np.ndarray = field(repr=False)
    face_crop: np.ndarray = field(repr=False)
    clothes_crop: np.ndarray = field(repr=False)
    face_box: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (x0, y0, side) in frame pixels
    clothes_box: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def person(self) -> Person:
        return self.spec.person

    @property
    def background(self) -> Background:
        return self.spec.background

    @property
    def caption(self) -> str:
        return self.spec.caption()

    @property
    def move(self) -> str:
        return self.spec.dance.move


# -------------------------------------------------------------------------------------------- captions


def _garment_phrase(color: str, pattern: str) -> str:
    return f"{color} {GARMENT_WORDS[pattern]}".rstrip()


def dance_caption(person: Person, background: Background) -> str:
    """ "a person in a red stripy shirt and blue trousers dancing on a dotted green background"."""
    shirt = _garment_phrase(person.shirt, person.shirt_pattern)
    trousers = _garment_phrase(person.trousers, person.trousers_pattern)
    return (
        f"a person in {_article(shirt)} {shirt} shirt and {trousers} trousers "
        f"dancing on {background_phrase(background)}"
    )


_PATTERN_OF_WORD = {word: pattern for pattern, word in GARMENT_WORDS.items() if word}
_PATTERN_WORDS = "|".join(_PATTERN_OF_WORD)
_CAPTION_RE = re.compile(
    rf"^a person in (a|an) (\w+)(?: ({_PATTERN_WORDS}))? shirt and (\w+)(?: ({_PATTERN_WORDS}))? trousers"
    r" dancing on (.+)$"
)


def parse_dance_caption(text: str) -> dict[str, Any]:
    """Inverse of `dance_caption`: {shirt, shirt_pattern, trousers, trousers_pattern, bg_color,
    bg_texture, background (the phrase)}. Raises ValueError for anything else."""
    text = " ".join(text.strip().lower().split())
    m = _CAPTION_RE.match(text)
    if m is None:
        raise ValueError(f"not a dance-world caption: {text!r}")
    article, shirt, shirt_pattern, trousers, trousers_pattern, bg_text = m.groups()
    for c in (shirt, trousers):
        if c not in COLORS:
            raise ValueError(f"unknown colour {c!r} in {text!r}")
    shirt_pattern = _PATTERN_OF_WORD.get(shirt_pattern, "solid")
    trousers_pattern = _PATTERN_OF_WORD.get(trousers_pattern, "solid")
    if article != _article(_garment_phrase(shirt, shirt_pattern)):
        raise ValueError(f"wrong article {article!r} in {text!r}")
    bg = parse_caption(f"a red circle on {bg_text}")  # the image world's background grammar
    return {
        "shirt": shirt,
        "shirt_pattern": shirt_pattern,
        "trousers": trousers,
        "trousers_pattern": trousers_pattern,
        "bg_color": bg["bg_color"],
        "bg_texture": bg["bg_texture"],
        "background": bg_text,
    }


# --------------------------------------------------------------------------------------------- sampling


def _rgb_contrasts(rgb: Sequence[int], background_color: str) -> bool:
    """The world's contrast rule for any RGB colour (distance to every mix of the background's tones)."""
    p = np.asarray(rgb, np.float64)
    a = np.asarray(COLORS[background_color], np.float64)
    return _segment_distance(p, a, second_tone(background_color)) >= MIN_CONTRAST


def sample_person(rng: np.random.Generator, background_color: str) -> Person:
    """A random person whose clothes (and skin, when possible) contrast with `background_color`."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    options = [c for c in COLOR_NAMES if contrasts(c, background_color)]
    shirt = pick(options)
    trousers = pick([c for c in options if c != shirt])
    skins = [s for s, rgb in SKIN_TONES.items() if _rgb_contrasts(rgb, background_color)] or list(SKIN_TONES)
    skin = pick(skins)
    s = np.asarray(SKIN_TONES[skin], np.float64)
    hairs = [c for c in COLOR_NAMES if np.linalg.norm(np.asarray(COLORS[c]) - s) >= MIN_CONTRAST]
    hair = pick(hairs)
    return Person(skin, hair, shirt, pick(CLOTH_PATTERNS), trousers, pick(CLOTH_PATTERNS))


def sample_dance(rng: np.random.Generator, move: str) -> Dance:
    if move not in MOVES:
        raise ValueError(f"unknown move {move!r}; known: {', '.join(MOVES)}")
    period = float(rng.uniform(*PERIOD_S))
    phase = float(rng.uniform(0.0, 2 * math.pi))
    amplitude = float(rng.uniform(*AMPLITUDE))
    yaw = math.radians(float(rng.uniform(*YAW_DEG))) * (1.0 if rng.random() < 0.5 else -1.0)
    return Dance(move, period, phase, amplitude, yaw)


def sample_spec(
    rng: np.random.Generator, move: str, frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE
) -> DanceSpec:
    """A random clip of `move` (deterministic given the generator's state). Draw order: background,
    person, dance, body scale, then the sideways position among those that keep the figure inside."""
    if frames < 1:
        raise ValueError(f"a clip needs at least 1 frame, got {frames}")
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    bg = sample_background(rng)
    person = sample_person(rng, bg.color)
    dance = sample_dance(rng, move)
    scale = float(rng.uniform(*BODY_SCALE))
    spec = DanceSpec(person, bg, dance, int(frames), int(size), scale, 0.5)
    lo, hi = _x_range(spec)
    return dataclasses.replace(spec, x=float(rng.uniform(lo, hi)) if hi > lo else 0.5 * (lo + hi))


# ------------------------------------------------------------------------------------------ kinematics


def _move_params(dance: Dance, t: np.ndarray) -> dict[str, Any]:
    """Pose parameters at times t (s) as arrays [T] (angles in rad, lengths in h). Arm and foot entries
    are dicts by side sign s (-1 = the person's right, +1 = their left)."""
    c = 2 * math.pi * t / dance.period + dance.phase
    a = dance.amplitude
    z = np.zeros_like(t)
    deg = math.radians
    p: dict[str, Any] = {
        "sway": z.copy(),
        "drop": z.copy(),
        "lean": z.copy(),
        "tilt": deg(6.0) * np.sin(c + 1.0),
        "arm": {},
        "bend": {},
        "foot": {-1: z.copy(), 1: z.copy()},
        "lift": {-1: z.copy(), 1: z.copy()},
        "stance": STANCE_HALF,
    }
    move = dance.move
    for s in (-1, 1):
        if move == "wave":
            p["arm"][s] = deg(135.0) + a * deg(25.0) * np.sin(c + s * math.pi / 2)
            p["bend"][s] = deg(20.0) + deg(25.0) * np.sin(c + s * math.pi / 2 + 1.0)
        elif move == "step":
            p["arm"][s] = deg(30.0) + a * deg(25.0) * np.sin(c + s * math.pi / 2)
            p["bend"][s] = deg(50.0) + z
            lag = c - s * 0.7
            p["foot"][s] = a * 0.09 * np.sin(lag)
            p["lift"][s] = 0.03 * a * np.maximum(0.0, s * np.cos(lag)) ** 2
        elif move == "bounce":
            p["arm"][s] = deg(55.0) + a * deg(30.0) * np.sin(2 * c)
            p["bend"][s] = deg(75.0) + z
        elif move == "disco":
            p["arm"][s] = deg(90.0) + a * deg(65.0) * np.sin(c + (math.pi if s > 0 else 0.0))
            p["bend"][s] = deg(8.0) + z
        elif move == "swing":
            p["arm"][s] = deg(5.0) + a * deg(50.0) * s * np.sin(c)
            p["bend"][s] = deg(35.0) + deg(10.0) * np.cos(c)
        elif move == "stand":  # the reference pose (not a dance move)
            p["arm"][s] = deg(12.0) + z
            p["bend"][s] = deg(8.0) + z
        else:
            raise ValueError(f"unknown move {move!r}; known: {', '.join(MOVES)}")
    if move == "wave":
        p["lean"] = a * deg(6.0) * np.sin(c)
        p["sway"] = a * 0.03 * np.sin(c)
        p["drop"] = 0.02 * (1 - np.cos(2 * c)) / 2
    elif move == "step":
        p["sway"] = a * 0.09 * np.sin(c)
        p["lean"] = deg(5.0) * np.sin(c)
    elif move == "bounce":
        p["drop"] = a * 0.07 * (1 - np.cos(2 * c)) / 2
        p["tilt"] = deg(8.0) * np.sin(2 * c)
        p["stance"] = STANCE_HALF + 0.03
    elif move == "disco":
        p["lean"] = a * deg(8.0) * np.sin(c)
        p["sway"] = a * 0.04 * np.sin(c)
        p["drop"] = 0.02 * (1 - np.cos(2 * c)) / 2
    elif move == "swing":
        p["lean"] = a * deg(7.0) * np.sin(c)
        p["sway"] = a * 0.03 * np.sin(c)
    elif move == "stand":
        p["tilt"] = z.copy()
    return p


def _dir(angle: np.ndarray, s: int) -> np.ndarray:
    """Unit vectors [T,2] of limb angles (0 = straight down, positive = outward on side s)."""
    return np.stack([s * np.sin(angle), np.cos(angle)], -1)


def _rot(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate vectors [T,2] by angles [T] (image coordinates: positive turns clockwise on screen)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], -1)


def _two_bone(hip: np.ndarray, target: np.ndarray, l1: float, l2: float, s: int) -> tuple:
    """Knee and ankle [T,2] reaching `target` from `hip` (target pulled onto the reach if too far)."""
    d = target - hip
    dist = np.linalg.norm(d, axis=-1)
    reach = (l1 + l2) * (1 - 1e-9)
    dist_c = np.clip(dist, abs(l1 - l2) + 1e-6, reach)
    unit = d / np.maximum(dist, 1e-12)[:, None]
    ankle = hip + unit * dist_c[:, None]
    cos_b = np.clip((l1 * l1 + dist_c**2 - l2 * l2) / (2 * l1 * dist_c), -1.0, 1.0)
    beta = np.arccos(cos_b)
    knee = hip + l1 * _rot(unit, -s * beta)  # (0, 1) rotated by -s*beta points to side s
    return knee, ankle


def skeleton(spec: DanceSpec, frames: int | None = None, move: str | None = None) -> Skeleton:
    """Forward (arms, torso, head) and inverse (legs) kinematics of every frame, in frame pixels."""
    n = spec.frames if frames is None else frames
    dance = spec.dance if move is None else dataclasses.replace(spec.dance, move=move)
    t = np.arange(n, dtype=np.float64) / FPS
    p = _move_params(dance, t)
    h, yaw = spec.h, dance.yaw
    cy = math.cos(yaw)
    x0 = spec.x * spec.size
    ground = spec.ground_y
    leg = THIGH + SHIN
    stand = math.sqrt((STRAIGHT * leg) ** 2 - (p["stance"] - HIP_HALF * cy) ** 2)
    pelvis = np.stack([x0 + p["sway"] * h, ground - (SOLE + stand - p["drop"]) * h + 0 * t], -1)
    lean = p["lean"]
    up = np.stack([np.sin(lean), -np.cos(lean)], -1)
    across = np.stack([np.cos(lean), np.sin(lean)], -1)
    neck = pelvis + TORSO * h * up
    head_angle = lean + p["tilt"]
    head = neck + NECK_LEN * h * np.stack([np.sin(head_angle), -np.cos(head_angle)], -1)
    kp = np.zeros((n, 18, 2))
    kp[:, 1] = neck
    for s, (i_sh, i_el, i_wr, i_hip, i_kn, i_an) in ((-1, (2, 3, 4, 8, 9, 10)), (1, (5, 6, 7, 11, 12, 13))):
        shoulder = neck + s * SHOULDER_HALF * cy * h * across
        elbow = shoulder + UPPER_ARM * h * _dir(p["arm"][s], s)
        wrist = elbow + FOREARM * h * _dir(p["arm"][s] + p["bend"][s], s)
        hip = pelvis + np.array([s * HIP_HALF * cy * h, 0.0])
        target = np.stack(
            [x0 + (s * p["stance"] * cy + p["foot"][s]) * h + 0 * t, ground - (SOLE + p["lift"][s]) * h], -1
        )
        knee, ankle = _two_bone(hip, target, THIGH * h, SHIN * h, s)
        kp[:, i_sh], kp[:, i_el], kp[:, i_wr] = shoulder, elbow, wrist
        kp[:, i_hip], kp[:, i_kn], kp[:, i_an] = hip, knee, ankle
    # face points on the head sphere: azimuth (0 = front, +90 = the person's left), height (head radii)
    r_head = HEAD_R * h
    right = np.stack([np.cos(head_angle), np.sin(head_angle)], -1)
    head_up = np.stack([np.sin(head_angle), -np.cos(head_angle)], -1)
    visible = np.ones(18, bool)
    for k, az, el, rad in ((0, 0.0, -0.1, 1.0), (14, -35.0, 0.15, 0.9), (15, 35.0, 0.15, 0.9),
                           (16, -90.0, 0.0, 0.92), (17, 90.0, 0.0, 0.92)):  # fmt: skip
        a = math.radians(az) + yaw
        kp[:, k] = head + r_head * (rad * math.sin(a) * right + el * head_up)
        visible[k] = math.cos(a) > 0.05
    return Skeleton(kp, visible, head, head_angle, lean, pelvis)


def _extent(spec: DanceSpec, sk: Skeleton) -> tuple[float, float]:
    """Leftmost and rightmost painted x over all frames (keypoints widened by the parts' radii)."""
    h = spec.h
    pad = np.full(18, max(ARM_R[0], HAND_R + 0.02, THIGH_R, SHIN_R) * h)
    pad[[1, 2, 5]] = SHOULDER_CAP_R * h + 0.02 * h
    pad[[0, 14, 15, 16, 17]] = HEAD_R * h
    xs = sk.keypoints[..., 0]
    lo = min(float((xs - pad).min()), float((sk.head[:, 0] - HEAD_R * h).min()))
    hi = max(float((xs + pad).max()), float((sk.head[:, 0] + HEAD_R * h).max()))
    return lo, hi


def _x_range(spec: DanceSpec) -> tuple[float, float]:
    """The allowed range of `spec.x` keeping the clip's figure and its reference pose EDGE px inside."""
    lo0, hi0 = 1e9, -1e9
    centred = dataclasses.replace(spec, x=0.5)
    for sk in (skeleton(centred), skeleton(centred, 1, "stand")):
        lo, hi = _extent(centred, sk)
        lo0, hi0 = min(lo0, lo), max(hi0, hi)
    mid = 0.5 * spec.size
    # shifting x by dx (fraction) moves everything by dx * size
    return (EDGE - (lo0 - mid)) / spec.size, (spec.size - EDGE - (hi0 - mid)) / spec.size


# ------------------------------------------------------------------------------------------- rendering


def _background_samples(bg: Background, X: np.ndarray, Y: np.ndarray, size: int) -> np.ndarray:
    """float32 [..., 3]: the image world's background at frame-pixel sample points (X, Y) of a frame of
    `size` px (the frame spans the world's 128 px canvas; same formulas as `world._texture_fraction`)."""
    k = WORLD_SIZE / size
    X, Y = X * k, Y * k
    c, s = math.cos(bg.angle), math.sin(bg.angle)
    if bg.texture == "solid":
        t = np.zeros(X.shape, np.float32)
    elif bg.texture == "gradient":
        proj = c * (X - WORLD_SIZE / 2) + s * (Y - WORLD_SIZE / 2)
        half = (abs(c) + abs(s)) * WORLD_SIZE / 2
        t = np.clip((proj / half + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    else:
        u = (c * X + s * Y) / bg.period + bg.phase
        v = (-s * X + c * Y) / bg.period + bg.phase
        t = pattern_on(bg.texture, u, v).astype(np.float32)
    a = np.asarray(COLORS[bg.color], np.float32)
    b = second_tone(bg.color).astype(np.float32)
    return a * (1.0 - t[..., None]) + b * t[..., None]


def _capsule(a, b, r) -> tuple:
    return ("capsule", np.asarray(a, np.float64), np.asarray(b, np.float64), float(r))


def _disc(c, r) -> tuple:
    return ("capsule", np.asarray(c, np.float64), np.asarray(c, np.float64), float(r))


def _poly(pts) -> tuple:
    return ("poly", np.asarray(pts, np.float64))


def _prim_box(prim: tuple) -> tuple[float, float, float, float]:
    if prim[0] == "capsule":
        _, a, b, r = prim
        return min(a[0], b[0]) - r, max(a[0], b[0]) + r, min(a[1], b[1]) - r, max(a[1], b[1]) + r
    pts = prim[1]
    return pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()


def _prim_inside(prim: tuple, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    if prim[0] == "capsule":
        _, a, b, r = prim
        d = b - a
        dd = float(d @ d)
        if dd == 0.0:
            return (X - a[0]) ** 2 + (Y - a[1]) ** 2 <= r * r
        t = np.clip(((X - a[0]) * d[0] + (Y - a[1]) * d[1]) / dd, 0.0, 1.0)
        return (X - a[0] - t * d[0]) ** 2 + (Y - a[1] - t * d[1]) ** 2 <= r * r
    pts = prim[1]  # convex, either orientation
    area = sum(pts[i - 1, 0] * pts[i, 1] - pts[i, 0] * pts[i - 1, 1] for i in range(len(pts)))
    sign = 1.0 if area > 0 else -1.0
    ok = np.ones(X.shape, bool)
    for i in range(len(pts)):
        (x1, y1), (x2, y2) = pts[i - 1], pts[i]
        ok &= sign * ((x2 - x1) * (Y - y1) - (y2 - y1) * (X - x1)) >= 0
    return ok


def _pattern(pattern: str, X: np.ndarray, Y: np.ndarray, origin, axis, period: float) -> np.ndarray:
    """bool: samples in the garment's second tone; stripes run across `axis` (unit vector)."""
    if pattern == "solid":
        return np.zeros(X.shape, bool)
    dx, dy = X - origin[0], Y - origin[1]
    v = (dx * axis[0] + dy * axis[1]) / period  # along the body part
    u = (-dx * axis[1] + dy * axis[0]) / period + 0.5  # across it (centred on the axis)
    if pattern == "striped":
        return (v - np.floor(v)) < 0.5
    if pattern == "checkered":
        return ((np.floor(u * 1.0) + np.floor(v)) % 2) == 1
    if pattern == "dotted":
        du, dv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        return du * du + dv * dv <= 0.3**2
    raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(CLOTH_PATTERNS)}")


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else np.array([0.0, 1.0])


def _parts(spec: DanceSpec, sk: Skeleton, k: int) -> list[list[tuple]]:
    """Per layer (LAYERS order), a list of pieces (primitive, fill) where fill is ("rgb", colour) or
    ("cloth", colour name, pattern, origin, axis) or ("hair", ...) / ("eye", ...)."""
    h, person = spec.h, spec.person
    kp = sk.keypoints[k]
    skin = ("rgb", person.skin_rgb)
    shirt = lambda o, ax: ("cloth", person.shirt, person.shirt_pattern, o, ax)  # noqa: E731
    trousers = lambda o, ax: ("cloth", person.trousers, person.trousers_pattern, o, ax)  # noqa: E731
    near = -1 if spec.dance.yaw > 0 else 1  # side sign of the near side (module docstring)
    idx = {-1: (2, 3, 4, 8, 9, 10), 1: (5, 6, 7, 11, 12, 13)}
    lean = float(sk.torso_angle[k])
    torso_axis = np.array([-math.sin(lean), math.cos(lean)])  # neck -> pelvis
    across = np.array([math.cos(lean), math.sin(lean)])

    def arm(s: int) -> list[tuple]:
        sh, el, wr = (kp[i] for i in idx[s][:3])
        hand_dir = _unit(wr - el)
        return [
            (_capsule(sh, el, ARM_R[0] * h), shirt(sh, _unit(el - sh))),
            (_capsule(el, wr, ARM_R[1] * h), shirt(sh, hand_dir)),
            (_disc(wr + hand_dir * 0.02 * h, HAND_R * h), skin),
        ]

    def leg(s: int) -> list[tuple]:
        hip, kn, an = (kp[i] for i in idx[s][3:])
        return [
            (_capsule(hip, kn, THIGH_R * h), trousers(hip, _unit(kn - hip))),
            (_capsule(kn, an, SHIN_R * h), trousers(hip, _unit(an - kn))),
        ]

    neck, pelvis = kp[1], sk.pelvis[k]
    r_hip, l_hip = kp[8], kp[11]
    waist = pelvis - 0.04 * h * torso_axis
    half_w = abs(l_hip[0] - r_hip[0]) / 2 + THIGH_R * h
    hips = [
        (_poly([waist - half_w * across, waist + half_w * across,
                l_hip + np.array([THIGH_R * h, 0.0]), r_hip - np.array([THIGH_R * h, 0.0])]),
         trousers(waist, torso_axis)),
        (_capsule(r_hip, l_hip, THIGH_R * h), trousers(waist, torso_axis)),
    ]  # fmt: skip
    r_sh, l_sh = kp[2], kp[5]
    w_half = abs(l_hip[0] - r_hip[0]) / 2 + 0.045 * h
    shirt_bottom = pelvis - 0.02 * h * torso_axis
    torso = [
        (_poly([r_sh - 0.02 * h * across, l_sh + 0.02 * h * across,
                shirt_bottom + w_half * across, shirt_bottom - w_half * across]), shirt(neck, torso_axis)),
        (_capsule(r_sh, l_sh, SHOULDER_CAP_R * h), shirt(neck, torso_axis)),
    ]  # fmt: skip
    head_c = sk.head[k]
    r_head = HEAD_R * h
    ha = float(sk.head_angle[k])
    h_right, h_up = np.array([math.cos(ha), math.sin(ha)]), np.array([math.sin(ha), -math.cos(ha)])
    face_c = head_c + r_head * (0.3 * math.sin(spec.dance.yaw) * h_right - 0.12 * h_up)
    eyes = [kp[i] for i in (14, 15) if sk.visible[i]]
    head = [
        (_disc(head_c, r_head), skin),
        (_disc(head_c, r_head), ("hair", COLORS[person.hair], face_c, 0.8 * r_head)),
        *[(_disc(e, EYE_R * r_head), ("rgb", person.eye_rgb)) for e in eyes],
    ]
    neck_part = [(_capsule(neck, neck + 0.7 * (head_c - neck), NECK_R * h), skin)]
    by_name = {
        "far arm": arm(-near),
        "far leg": leg(-near),
        "hips": hips,
        "near leg": leg(near),
        "torso": torso,
        "neck": neck_part,
        "head": head,
        "near arm": arm(near),
    }
    return [by_name[name] for name in LAYERS]


def _fill_colors(fill: tuple, X: np.ndarray, Y: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(colours float32 [n,3] or [3], extra inside-mask or None) of a piece's fill at samples (X, Y)."""
    kind = fill[0]
    if kind == "rgb":
        return np.asarray(fill[1], np.float32), None
    if kind == "hair":
        _, rgb, face_c, face_r = fill
        outside_face = (X - face_c[0]) ** 2 + (Y - face_c[1]) ** 2 > face_r * face_r
        return np.asarray(rgb, np.float32), outside_face
    _, color, pattern, origin, axis = fill
    on = _pattern(pattern, X, Y, origin, axis, PATTERN_PERIOD * h)
    a = np.asarray(COLORS[color], np.float32)
    b = second_tone(color).astype(np.float32)
    return np.where(on[:, None], b, a), None


def _grid(box: tuple[float, float, float], out: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample coordinates (frame pixels) of an out x out view of the square box (x0, y0, side)."""
    x0, y0, side = box
    s = SUPERSAMPLE
    offs = (np.arange(s, dtype=np.float32) + 0.5) / s  # float32 as `world._sample_coords`: at size 128
    g = (np.arange(out, dtype=np.float32)[:, None] + offs[None, :]).reshape(-1)  # the frame's samples are
    g = g * np.float32(side / out)  # the image world's, bit for bit
    X, Y = np.meshgrid(np.float32(x0) + g, np.float32(y0) + g)
    return X, Y


def _box_mean(x: np.ndarray, out: int) -> np.ndarray:
    s = SUPERSAMPLE
    return x.reshape(out, s, out, s, *x.shape[2:]).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def render_view(
    spec: DanceSpec,
    sk: Skeleton,
    k: int,
    box: tuple[float, float, float] | None = None,
    out: int | None = None,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame k of the skeleton seen through the square `box` (x0, y0, side in frame pixels; default the
    whole frame) at out x out pixels: (rgb uint8 [out,out,3], depth float32 [out,out], parts uint8
    [out,out]). `background`: precomputed `_background_samples` of this view's sample grid."""
    box = (0.0, 0.0, float(spec.size)) if box is None else box
    out = spec.size if out is None else out
    X, Y = _grid(box, out)
    rgb = (_background_samples(spec.background, X, Y, spec.size) if background is None else background).copy()
    depth = np.zeros(X.shape, np.float32)
    part = np.zeros(X.shape, np.uint8)
    step = box[2] / (out * SUPERSAMPLE)  # frame pixels per sample
    first = box[0] + 0.5 * step  # coordinate of sample 0 (same on both axes up to x0/y0)
    n = X.shape[0]
    for layer, pieces in enumerate(_parts(spec, sk, k)):
        for prim, fill in pieces:
            bx0, bx1, by0, by1 = _prim_box(prim)
            j0 = max(0, int(math.floor((bx0 - first) / step)))
            j1 = min(n, int(math.ceil((bx1 - first) / step)) + 1)
            i0 = max(0, int(math.floor((by0 - box[1] - 0.5 * step) / step)))
            i1 = min(n, int(math.ceil((by1 - box[1] - 0.5 * step) / step)) + 1)
            if j0 >= j1 or i0 >= i1:
                continue
            xs, ys = X[i0:i1, j0:j1], Y[i0:i1, j0:j1]
            inside = _prim_inside(prim, xs, ys)
            if not inside.any():
                continue
            colors, extra = _fill_colors(fill, xs[inside], ys[inside], spec.h)
            sub_rgb, sub_d, sub_p = rgb[i0:i1, j0:j1], depth[i0:i1, j0:j1], part[i0:i1, j0:j1]
            if extra is not None:
                where = inside.copy()
                where[inside] = extra
                sub_rgb[where] = colors
            else:
                sub_rgb[inside] = colors
            sub_d[inside] = LAYER_DEPTH[layer]
            sub_p[inside] = layer + 1
    image = np.clip(np.rint(_box_mean(rgb, out)), 0, 255).astype(np.uint8)
    counts = np.stack([_box_mean((part == i).astype(np.float32), out) for i in range(len(LAYERS) + 1)])
    return image, _box_mean(depth, out), counts.argmax(0).astype(np.uint8)


def part_coverage(spec: DanceSpec, sk: Skeleton, k: int) -> np.ndarray:
    """float32 [L, size, size]: the fraction of each pixel's samples inside each layer's shape ALONE
    (ignoring occlusion; the hair and eyes are part of the head's disc)."""
    X, Y = _grid((0.0, 0.0, float(spec.size)), spec.size)
    cov = np.zeros((len(LAYERS), *X.shape), np.float32)
    for layer, pieces in enumerate(_parts(spec, sk, k)):
        for prim, _ in pieces:
            cov[layer] = np.maximum(cov[layer], _prim_inside(prim, X, Y))
    return np.stack([_box_mean(c, spec.size) for c in cov])


def pose_frames(keypoints: np.ndarray, visible: np.ndarray, size: int) -> list[PoseFrame]:
    """Pixel keypoints [F,18,2] -> parsed pose frames (normalised; hidden points (0, 0, 0))."""
    out = []
    for kp in np.asarray(keypoints, np.float64):
        body = np.zeros((18, 3))
        body[:, :2] = kp[:, :2] / size
        body[:, 2] = 1.0
        body[~np.asarray(visible, bool)] = 0.0
        out.append(PoseFrame([PersonPose(body, None, None, None)], size, size))
    return out


def render_dance(spec: DanceSpec, crop_size: int = CROP_SIZE) -> DanceClip:
    """Render every frame, pose map and depth map of `spec`, and its reference pose and crops."""
    size = spec.size
    sk = skeleton(spec)
    X, Y = _grid((0.0, 0.0, float(size)), size)
    bg = _background_samples(spec.background, X, Y, size)
    n = spec.frames
    frames = np.empty((n, size, size, 3), np.uint8)
    depth = np.empty((n, size, size), np.float32)
    parts = np.empty((n, size, size), np.uint8)
    for k in range(n):
        frames[k], depth[k], parts[k] = render_view(spec, sk, k, background=bg)
    pf = pose_frames(sk.keypoints, sk.visible, size)
    pose = np.stack([render_pose_frame(f, size, size) for f in pf])
    keypoints = np.concatenate(
        [sk.keypoints, np.broadcast_to(sk.visible[None, :, None], (n, 18, 1)).astype(np.float64)], -1
    ).astype(np.float32)
    # reference: the neutral standing pose at the frame centre, and its crops rendered natively
    ref_spec = dataclasses.replace(spec, x=0.5, frames=1)
    ref = skeleton(ref_spec, 1, "stand")
    reference = render_view(ref_spec, ref, 0, background=bg)[0]
    h = spec.h
    hc = ref.head[0]
    side = 2.8 * HEAD_R * h
    face_box = (float(hc[0] - side / 2), float(hc[1] - side / 2), float(side))
    top = float(ref.keypoints[0, 1, 1] - (SHOULDER_CAP_R + 0.02) * h)
    side = spec.ground_y + 0.02 * h - top
    clothes_box = (float(ref.pelvis[0, 0] - side / 2), top, float(side))
    face = render_view(ref_spec, ref, 0, face_box, crop_size)[0]
    clothes = render_view(ref_spec, ref, 0, clothes_box, crop_size)[0]
    ref_kp = np.concatenate([ref.keypoints[0], ref.visible[:, None].astype(np.float64)], -1).astype(
        np.float32
    )
    return DanceClip(
        spec=spec,
        frames=frames,
        pose=pose,
        depth=depth,
        parts=parts,
        keypoints=keypoints,
        pose_keypoint=to_pose_keypoint(pf),
        reference=reference,
        reference_keypoints=ref_kp,
        face_crop=face,
        clothes_crop=clothes,
        face_box=face_box,
        clothes_box=clothes_box,
    )


# ---------------------------------------------------------------------------------------------- dataset


def dance_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of clip `index` of `split`: one stream per (seed, split, index), apart from the other
    worlds' streams (DANCE_SALT)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], DANCE_SALT, int(index)]))


def clip_spec(
    seed: int,
    split: str = "train",
    index: int = 0,
    num_frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_SIZE,
    move: str | None = None,
) -> DanceSpec:
    """The spec of clip `index`: move MOVES[index % 5] unless `move` is given (balanced moves in any prefix
    of a dataset), everything else drawn from `dance_rng(seed, split, index)`."""
    move = MOVES[index % len(MOVES)] if move is None else move
    return sample_spec(dance_rng(seed, split, index), move, num_frames, size)


def make_clip(
    seed: int,
    split: str = "train",
    index: int = 0,
    num_frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_SIZE,
    move: str | None = None,
    crop_size: int = CROP_SIZE,
) -> DanceClip:
    """Clip `index` of `split`, rendered; depends only on the arguments."""
    return render_dance(clip_spec(seed, split, index, num_frames, size, move), crop_size)


def make_clips(
    seed: int,
    n: int,
    split: str = "train",
    num_frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_SIZE,
    move: str | None = None,
    crop_size: int = CROP_SIZE,
    start: int = 0,
) -> list[DanceClip]:
    """Clips start .. start + n - 1 of `split`."""
    return [make_clip(seed, split, i, num_frames, size, move, crop_size) for i in range(start, start + n)]
