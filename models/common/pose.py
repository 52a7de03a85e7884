"""Pose sequences: POSE_KEYPOINT parsing, OpenPose-style rendering and retiming.

Shared by the pose-driven methods (first DreaMoving's Video ControlNet, arXiv 2312.05107 Sec. 3). Users
bring either rendered pose maps (IMAGE) or keypoints from the ComfyUI pose preprocessors
(comfyui_controlnet_aux OpenPose/DWPose, `POSE_KEYPOINT`: one OpenPose-JSON-like dict per frame). The
OpenPose ControlNets users load were trained on maps drawn by controlnet_aux's `draw_poses`, so the
renderer reproduces that look pixel-for-pixel where it matters (limb ellipses and joint discs are exact;
the 2-px hand edges agree on ~94 % of their pixels, differing only at edge boundaries) in plain numpy: no
OpenCV dependency.

Coordinates. The preprocessors emit coordinates normalised to 0..1 (with `canvas_width/height` the
detection resolution); OpenPose itself and pose editors emit pixels. A frame whose visible coordinates
are all <= 1 is taken as normalised, otherwise as pixels and divided by its canvas size (required
then). A real pose in pixels never fits in a 1x1 pixel box, so the test is unambiguous in practice.
Missing keypoints: confidence <= 0 or a negative coordinate (the preprocessors write (-1/W, -1/H, 1)
for undetected hand/face points). Both are stored as (0, 0, 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .errors import InputError

INPUT = "pose_keypoints"

# COCO-18 body in OpenPose order: 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right leg,
# 11-13 left leg, 14/15 eyes, 16/17 ears. Limbs are 1-based like controlnet_aux's limbSeq; it draws the
# first 17 (the two ear-shoulder links of the original OpenPose table are never drawn).
BODY_LIMBS = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
)  # fmt: skip
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
STICK_WIDTH = 4  # limb ellipse half-thickness in pixels
LIMB_DIM = 0.6  # limbs are drawn at 60 % of the joint colour
BODY_RADIUS = 4
HAND_RADIUS = 4
HAND_LINE_THICKNESS = 2
HAND_POINT_COLOR = (0, 0, 255)
FACE_RADIUS = 3
FACE_COLOR = (255, 255, 255)
_EPS = 0.01  # controlnet_aux skips hand/face points whose integer pixel coordinate is not > eps

# OpenPose's default BODY_25 -> COCO-18 (drops mid-hip and the six foot points).
_BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_FIELDS = {
    "pose_keypoints_2d": None,  # 18 (COCO) or 25 (BODY_25)
    "face_keypoints_2d": None,  # usually 70; any count is drawable
    "hand_left_keypoints_2d": 21,
    "hand_right_keypoints_2d": 21,
}


@dataclass
class PersonPose:
    """One person, coordinates normalised to 0..1; rows are (x, y, confidence), missing rows all zero."""

    body: np.ndarray | None  # [18, 3]
    face: np.ndarray | None  # [K, 3]
    left_hand: np.ndarray | None  # [21, 3]
    right_hand: np.ndarray | None  # [21, 3]


@dataclass
class PoseFrame:
    people: list[PersonPose]
    canvas_width: int | None = None
    canvas_height: int | None = None


# --------------------------------------------------------------------------------------------- parsing


def _field_array(value: Any, frame: int, person: int, field: str) -> np.ndarray | None:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    where = f"frame {frame}, person {person}, '{field}'"
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(INPUT, f"{where} to be a flat list of numbers [x, y, c, ...]") from None
    if arr.ndim != 1 or arr.size % 3 != 0:
        raise InputError(INPUT, f"{where} to be a flat list [x, y, c]*N", f"shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise InputError(INPUT, f"{where} to contain finite numbers", "NaN or inf")
    arr = arr.reshape(-1, 3)
    count = _FIELDS[field]
    if field == "pose_keypoints_2d":
        if len(arr) == 25:
            arr = arr[list(_BODY25_TO_COCO18)]
        elif len(arr) != 18:
            raise InputError(INPUT, f"{where} to hold 18 (COCO) or 25 (BODY_25) keypoints", f"{len(arr)}")
    elif count is not None and len(arr) != count:
        raise InputError(INPUT, f"{where} to hold {count} keypoints", f"{len(arr)}")
    return arr.copy()


def _positive_int(value: Any, frame: int, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or value != int(value):
        raise InputError(INPUT, f"frame {frame}: '{name}' to be a positive integer", repr(value))
    return int(value)


def parse_pose_keypoints(frames: Any) -> list[PoseFrame]:
    """POSE_KEYPOINT (list of per-frame dicts, or one dict) -> frames with normalised coordinates."""
    if isinstance(frames, dict):
        frames = [frames]
    if not isinstance(frames, (list, tuple)) or len(frames) == 0:
        raise InputError(INPUT, "a non-empty list of per-frame dicts (POSE_KEYPOINT)", type(frames).__name__)
    parsed = []
    for f, frame in enumerate(frames):
        if isinstance(frame, PoseFrame):
            parsed.append(frame)
            continue
        if not isinstance(frame, dict):
            raise InputError(INPUT, f"frame {f} to be a dict with 'people'", type(frame).__name__)
        people_raw = frame.get("people", [])
        if people_raw is None:
            people_raw = []
        if not isinstance(people_raw, (list, tuple)):
            raise InputError(INPUT, f"frame {f}: 'people' to be a list", type(people_raw).__name__)
        cw = _positive_int(frame.get("canvas_width"), f, "canvas_width")
        ch = _positive_int(frame.get("canvas_height"), f, "canvas_height")
        people = []
        for p, person in enumerate(people_raw):
            if not isinstance(person, dict):
                raise InputError(INPUT, f"frame {f}, person {p} to be a dict", type(person).__name__)
            arrays = {k: _field_array(person.get(k), f, p, k) for k in _FIELDS}
            people.append(arrays)
        visible = [
            a[(a[:, 2] > 0) & (a[:, 0] >= 0) & (a[:, 1] >= 0)]
            for d in people
            for a in d.values()
            if a is not None
        ]
        coords = np.concatenate([v[:, :2] for v in visible]) if visible else np.zeros((0, 2))
        pixels = coords.size > 0 and float(coords.max()) > 1.0
        if pixels and (cw is None or ch is None):
            raise InputError(
                INPUT,
                f"frame {f}: 'canvas_width' and 'canvas_height' when coordinates are in pixels (values > 1)",
                "no canvas size",
            )
        scale = np.array([cw, ch], dtype=np.float64) if pixels else np.ones(2)
        out_people = []
        for d in people:
            norm = {}
            for k, a in d.items():
                if a is not None:
                    missing = (a[:, 2] <= 0) | (a[:, 0] < 0) | (a[:, 1] < 0)
                    a[:, :2] /= scale
                    a[missing] = 0.0
                norm[k] = a
            out_people.append(
                PersonPose(
                    body=norm["pose_keypoints_2d"],
                    face=norm["face_keypoints_2d"],
                    left_hand=norm["hand_left_keypoints_2d"],
                    right_hand=norm["hand_right_keypoints_2d"],
                )
            )
        parsed.append(PoseFrame(out_people, cw, ch))
    return parsed


def _flat(a: np.ndarray | None) -> list[float] | None:
    return None if a is None else [float(v) for v in a.reshape(-1)]


def to_pose_keypoint(frames: Sequence[PoseFrame]) -> list[dict]:
    """Parsed frames -> POSE_KEYPOINT dicts (normalised coordinates, the preprocessors' convention)."""
    return [
        {
            "people": [
                {
                    "pose_keypoints_2d": _flat(p.body),
                    "face_keypoints_2d": _flat(p.face),
                    "hand_left_keypoints_2d": _flat(p.left_hand),
                    "hand_right_keypoints_2d": _flat(p.right_hand),
                }
                for p in fr.people
            ],
            "canvas_width": fr.canvas_width,
            "canvas_height": fr.canvas_height,
        }
        for fr in frames
    ]


# ------------------------------------------------------------------------------------------ raster ops
# Pixel rules follow OpenCV's LINE_8 drawing that controlnet_aux uses, so the maps match what the
# ControlNets saw in training: a filled circle covers dx^2 + dy^2 <= r^2 around its integer centre; a
# convex polygon with integer vertices covers, per row, the integer x inside its closed span.

# OpenCV evaluates ellipse outlines with a float32 table of sin at whole degrees written to 7 decimals;
# reproducing its values exactly makes our limb outlines vertex-identical to ellipse2Poly.
_SIN_TABLE = np.round(np.sin(np.deg2rad(np.arange(451))), 7).astype(np.float32).astype(np.float64)


def _ellipse_polygon(cx: int, cy: int, a: int, b: int, angle: int) -> np.ndarray:
    """Integer outline of a rotated ellipse sampled every degree (OpenCV ellipse2Poly, delta 1)."""
    angle %= 360
    cos_a, sin_a = _SIN_TABLE[450 - angle], _SIN_TABLE[angle]
    deg = np.arange(361)
    x = a * _SIN_TABLE[450 - deg]
    y = b * _SIN_TABLE[deg]
    px = np.rint(cx + x * cos_a - y * sin_a)
    py = np.rint(cy + x * sin_a + y * cos_a)
    pts = np.stack([px, py], axis=1)
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
    return pts[keep]


def _fill_convex(canvas: np.ndarray, pts: np.ndarray, color: Sequence[int]) -> None:
    """Fill a convex polygon: per row, every pixel centre within the closed horizontal span."""
    h, w = canvas.shape[:2]
    y_lo, y_hi = (
        max(int(math.ceil(pts[:, 1].min() - 1e-9)), 0),
        min(int(math.floor(pts[:, 1].max() + 1e-9)), h - 1),
    )
    if y_lo > y_hi:
        return
    p0, p1 = pts, np.roll(pts, -1, axis=0)
    rows = np.arange(y_lo, y_hi + 1, dtype=np.float64)[:, None]
    dy = p1[:, 1] - p0[:, 1]
    sloped = dy != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rows - p0[:, 1]) / np.where(sloped, dy, 1.0)
    xs = p0[:, 0] + t * (p1[:, 0] - p0[:, 0])
    spans = sloped & (t >= -1e-12) & (t <= 1 + 1e-12)
    flat = ~sloped & (rows == p0[:, 1])  # horizontal edges lying on the row contribute both ends
    lo = np.minimum(
        np.where(spans, xs, np.inf).min(1), np.where(flat, np.minimum(p0[:, 0], p1[:, 0]), np.inf).min(1)
    )
    hi = np.maximum(
        np.where(spans, xs, -np.inf).max(1), np.where(flat, np.maximum(p0[:, 0], p1[:, 0]), -np.inf).max(1)
    )
    x_lo = np.floor(lo + 0.5 + 1e-9)  # OpenCV rounds span ends half-up (LINE_8)
    x_hi = np.floor(hi + 0.5 + 1e-9)
    cols = np.arange(w)[None, :]
    mask = (cols >= x_lo[:, None]) & (cols <= x_hi[:, None])
    canvas[y_lo : y_hi + 1][mask] = color


def _disc(canvas: np.ndarray, cx: int, cy: int, radius: int, color: Sequence[int]) -> None:
    h, w = canvas.shape[:2]
    y0, y1 = max(cy - radius, 0), min(cy + radius, h - 1)
    x0, x1 = max(cx - radius, 0), min(cx + radius, w - 1)
    if y0 > y1 or x0 > x1:
        return
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius
    canvas[y0 : y1 + 1, x0 : x1 + 1][mask] = color


def _segment_pixels(canvas: np.ndarray, a: tuple[int, int], b: tuple[int, int], color: Sequence[int]) -> None:
    """One-pixel 8-connected Bresenham segment, walked left to right with OpenCV's error term and ties."""
    (x1, y1), (x2, y2) = (a, b) if a[0] <= b[0] else (b, a)
    dx, dy = x2 - x1, abs(y2 - y1)
    sy = -1 if y2 < y1 else 1
    major, minor = max(dx, dy), min(dx, dy)
    err, m = major - 2 * minor, 0
    steps = np.empty(major + 1, dtype=np.int64)
    for k in range(major + 1):
        steps[k] = m
        if err < 0:
            err += 2 * major - 2 * minor
            m += 1
        else:
            err -= 2 * minor
    k = np.arange(major + 1)
    x, y = (x1 + k, y1 + sy * steps) if dx >= dy else (x1 + steps, y1 + sy * k)
    h, w = canvas.shape[:2]
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    canvas[y[ok], x[ok]] = color


def _outline(canvas: np.ndarray, pts: np.ndarray, color: Sequence[int]) -> None:
    """Closed 8-connected outline through integer vertices (OpenCV draws it with every polygon fill)."""
    ip = [(int(x), int(y)) for x, y in pts]
    for i in range(len(ip)):
        _segment_pixels(canvas, ip[i - 1], ip[i], color)


def _thick_line(canvas: np.ndarray, a: tuple[int, int], b: tuple[int, int], thickness: int, color) -> None:
    """OpenCV-style thick line: a rectangle of half-width thickness/2 with its outline, plus round caps."""
    half = thickness / 2.0
    dx, dy = a[0] - b[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length > 0:
        nx = round(dy / length * half * 65536) / 65536  # OpenCV works in 16-bit fixed point
        ny = round(dx / length * half * 65536) / 65536
        quad = np.array(
            [[a[0] + nx, a[1] + ny], [a[0] - nx, a[1] - ny], [b[0] - nx, b[1] - ny], [b[0] + nx, b[1] + ny]]
        )
        quad_rows = quad.copy()
        quad_rows[:, 1] = np.floor(quad[:, 1] + 0.5)  # OpenCV snaps fixed-point vertex rows, keeps x
        _fill_convex(canvas, quad_rows, color)
        corners = [(math.floor(x + 0.5), math.floor(y + 0.5)) for x, y in quad]
        for i in range(4):
            _segment_pixels(canvas, corners[i], corners[(i + 1) % 4], color)
    cap = int(math.floor(half + 0.5))
    _disc(canvas, a[0], a[1], cap, color)
    _disc(canvas, b[0], b[1], cap, color)


def _hsv_color(h: float) -> tuple[int, int, int]:
    """Fully saturated hue -> 8-bit RGB, with matplotlib's float64 arithmetic and OpenCV's rounding."""
    i = int(h * 6.0)
    f = h * 6.0 - i
    q, t = 1.0 - f, 1.0 - (1.0 - f)
    rgb = [(1.0, t, 0.0), (q, 1.0, 0.0), (0.0, 1.0, t), (0.0, q, 1.0), (t, 0.0, 1.0), (1.0, 0.0, q)][i % 6]
    return tuple(int(np.rint(c * 255)) for c in rgb)


HAND_EDGE_COLORS = tuple(_hsv_color(i / len(HAND_EDGES)) for i in range(len(HAND_EDGES)))


# ------------------------------------------------------------------------------------------- rendering


def _draw_body(canvas: np.ndarray, body: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    present = body[:, 2] > 0
    for (k1, k2), color in zip(BODY_LIMBS, BODY_COLORS):
        i, j = k1 - 1, k2 - 1
        if not (present[i] and present[j]):
            continue
        xs = np.array([body[i, 0], body[j, 0]]) * float(w)
        ys = np.array([body[i, 1], body[j, 1]]) * float(h)
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = int(math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1])))
        poly = _ellipse_polygon(int(xs.mean()), int(ys.mean()), int(length / 2), STICK_WIDTH, angle)
        limb_color = [int(float(c) * LIMB_DIM) for c in color]
        _fill_convex(canvas, poly, limb_color)
        _outline(canvas, poly, limb_color)
    for k, color in enumerate(BODY_COLORS):
        if present[k]:
            _disc(canvas, int(body[k, 0] * w), int(body[k, 1] * h), BODY_RADIUS, color)


def _points_px(points: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (points[:, 0] * w).astype(np.int64)  # int() truncation as the reference
    y = (points[:, 1] * h).astype(np.int64)
    return x, y, (points[:, 2] > 0) & (x > _EPS) & (y > _EPS)


def _draw_hand(canvas: np.ndarray, hand: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    x, y, ok = _points_px(hand, w, h)
    for (e1, e2), color in zip(HAND_EDGES, HAND_EDGE_COLORS):
        if ok[e1] and ok[e2]:
            _thick_line(
                canvas, (int(x[e1]), int(y[e1])), (int(x[e2]), int(y[e2])), HAND_LINE_THICKNESS, color
            )
    for k in np.nonzero(ok)[0]:
        _disc(canvas, int(x[k]), int(y[k]), HAND_RADIUS, HAND_POINT_COLOR)


def _draw_face(canvas: np.ndarray, face: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    x, y, ok = _points_px(face, w, h)
    for k in np.nonzero(ok)[0]:
        _disc(canvas, int(x[k]), int(y[k]), FACE_RADIUS, FACE_COLOR)


def render_pose_frame(
    frame: PoseFrame,
    width: int,
    height: int,
    draw_body: bool = True,
    draw_hands: bool = True,
    draw_face: bool = True,
) -> np.ndarray:
    """One frame -> uint8 [H, W, 3] RGB; per person: body, left hand, right hand, face (reference order)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in frame.people:
        if draw_body and person.body is not None:
            _draw_body(canvas, person.body)
        if draw_hands:
            for hand in (person.left_hand, person.right_hand):
                if hand is not None:
                    _draw_hand(canvas, hand)
        if draw_face and person.face is not None:
            _draw_face(canvas, person.face)
    return canvas


def render_openpose(
    frames: Any,
    width: int,
    height: int,
    draw_body: bool = True,
    draw_hands: bool = True,
    draw_face: bool = True,
) -> torch.Tensor:
    """POSE_KEYPOINT (or parsed frames) -> IMAGE float32 [F, H, W, 3] in 0..1, OpenPose colours on black."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, "a positive integer", repr(value))
    parsed = parse_pose_keypoints(frames)
    out = np.stack([render_pose_frame(f, width, height, draw_body, draw_hands, draw_face) for f in parsed])
    return torch.from_numpy(out).float().div_(255.0)


# -------------------------------------------------------------------------------------------- retiming


def retime_positions(
    num_src: int, src_fps: float, dst_fps: float | None = None, num_frames: int | None = None
) -> list[Fraction]:
    """Source positions (in frames, exact rationals) of each output frame.

    Output frame j is shown at t = j / fps_out; the first frame stays at t = 0 and the clip keeps its
    duration: with `dst_fps`, N = round(F * dst / src) frames at position j * src / dst; with
    `num_frames`, position j * F / N. Positions past the last source frame hold it.
    """
    if isinstance(num_src, bool) or not isinstance(num_src, int) or num_src < 1:
        raise InputError(INPUT, "at least one frame", repr(num_src))
    if not isinstance(src_fps, (int, float)) or isinstance(src_fps, bool) or not src_fps > 0:
        raise InputError("src_fps", "a frame rate > 0", repr(src_fps))
    if (dst_fps is None) == (num_frames is None):
        raise InputError("dst_fps", "exactly one of dst_fps or num_frames")
    if dst_fps is not None:
        if not isinstance(dst_fps, (int, float)) or isinstance(dst_fps, bool) or not dst_fps > 0:
            raise InputError("dst_fps", "a frame rate > 0", repr(dst_fps))
        step = Fraction(src_fps) / Fraction(dst_fps)
        count = max(1, round(Fraction(num_src) / step))
    else:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise InputError("num_frames", "a positive integer", repr(num_frames))
        count, step = num_frames, Fraction(num_src, num_frames)
    last = Fraction(num_src - 1)
    return [min(j * step, last) for j in range(count)]


def _lerp_part(a: np.ndarray | None, b: np.ndarray | None, w: float) -> np.ndarray | None:
    if a is None or b is None:
        return None
    out = a * (1.0 - w) + b * w
    out[:, 2] = np.minimum(a[:, 2], b[:, 2])
    missing = (a[:, 2] <= 0) | (b[:, 2] <= 0)  # missing in either neighbour -> missing
    out[missing] = 0.0
    return out


def retime_keypoints(
    frames: Any, src_fps: float, dst_fps: float | None = None, num_frames: int | None = None
) -> list[dict]:
    """Resample a keypoint sequence in time; coordinates interpolate linearly per joint.

    Output frames that land exactly on a source frame are copies of it. In between, people are matched
    by their index in 'people' (the order the preprocessors keep); a person, hand or face absent in
    either neighbour is absent in the output. Returns POSE_KEYPOINT dicts with normalised coordinates.
    """
    parsed = parse_pose_keypoints(frames)
    out = []
    for pos in retime_positions(len(parsed), src_fps, dst_fps, num_frames):
        i = math.floor(pos)
        w = float(pos - i)
        a = parsed[i]
        if w == 0.0:
            out.append(a)
            continue
        b = parsed[i + 1]
        people = [
            PersonPose(
                body=_lerp_part(pa.body, pb.body, w),
                face=_lerp_part(pa.face, pb.face, w),
                left_hand=_lerp_part(pa.left_hand, pb.left_hand, w),
                right_hand=_lerp_part(pa.right_hand, pb.right_hand, w),
            )
            for pa, pb in zip(a.people, b.people)
        ]
        out.append(PoseFrame(people, a.canvas_width, a.canvas_height))
    return to_pose_keypoint(out)


def resample_frames(images: torch.Tensor, num_frames: int, mode: str = "nearest") -> torch.Tensor:
    """Retime rendered pose maps [F, H, W, C] to `num_frames`, keeping the first frame and the duration.

    "nearest" takes the closest source frame (ties to the earlier one, so 2x upsampling repeats each
    frame twice); "linear" blends the two neighbours, which ghosts limbs but keeps motion smooth.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError(
            "images", "an IMAGE batch [F, H, W, C]", repr(getattr(images, "shape", type(images)))
        )
    if mode not in ("nearest", "linear"):
        raise InputError("mode", "'nearest' or 'linear'", repr(mode))
    positions = retime_positions(images.shape[0], 1.0, num_frames=num_frames)
    last = images.shape[0] - 1
    if mode == "nearest":
        index = [min(math.ceil(p - Fraction(1, 2)), last) for p in positions]
        return images[torch.tensor(index, dtype=torch.long)]
    lo = [math.floor(p) for p in positions]
    hi = [min(i + 1, last) for i in lo]
    w = torch.tensor([float(p - i) for p, i in zip(positions, lo)], dtype=images.dtype).view(-1, 1, 1, 1)
    a, b = images[torch.tensor(lo)], images[torch.tensor(hi)]
    return torch.where(w == 0, a, a + (b - a) * w)
