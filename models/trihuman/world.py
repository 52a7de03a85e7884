"""The TriHuman proving ground: a procedural articulated character in a skirt, with ground truth renders.

A character of our own (issue 17: "the avatar world"): a skeleton, a skinned watertight template, a
procedural texture and a skirt whose shape depends on the motion, so an avatar must learn pose- and
velocity-dependent detail beyond skinning. Everything is drawn from (seed, split, index) and computed in
torch on the CPU: `make_sequence(seed, split, index)` is the same sequence on every machine.

Spec (our interpretation of the issue; every number below is a constant of this module):

World frame: metres, +y up, the character faces +z, its left hand side is +x; the floor is y = 0 (the
soles touch it at rest; every frame is lifted or lowered so the lowest foot point stays at y = 0).

Skeleton (JOINTS, PARENTS, REST_JOINTS): 17 joints, pelvis at (0, 0.95, 0), head top at 1.75 m, arms
hanging 35 degrees out from the vertical (an A-pose, so the arms do not touch the body at rest). A pose is
one axis-angle vector per joint [J, 3], the joint's rotation in its parent's frame, plus a root translation
[3] added to the pelvis. The rest (bind) pose has every joint frame aligned with the world, so
    G_j = G_parent(j) R_j,   p_j = p_parent(j) + G_parent(j) (rest_j - rest_parent(j))   (p_0 = rest_0 + t)
and the skinning transform of joint j (rest -> posed, the layout `skinning.py` expects) is
[[G_j, p_j - G_j rest_j], [0, 1]]. Invariant: bone lengths |p_j - p_parent(j)| never change.

Template (`avatar_template`): the zero level of a smooth union (polynomial smooth min, k = 2.5 cm) of
round cones (limbs, torso, neck, head, hands, feet; the torso and skirt flattened in z) and a capped cone
(the skirt: waist y = 1.00, radius 0.155 -> hem y = 0.56, radius 0.30), meshed by the pack's marching
tetrahedra (`common/isosurface.py`) on a 4 cm grid (about 5.5k vertices, 11k faces): one closed,
outward-facing (counter-clockwise) triangle mesh, every edge shared by exactly two faces. The legs
inside the skirt are part of the solid, so the mesh is the "dress" a DDC/TriHuman template is.
- labels [V] / face_labels [F]: the primitive (PRIMITIVES) nearest the rest point (face: its centroid).
- skin weights [V, J]: softmax of -|sdf of the joint's primitives| / 2 cm over the joints (each primitive
  belongs to one joint), the 4 largest kept and renormalised; skirt vertices blend towards the pelvis at
  the waist and half pelvis, half the hip on their side at the hem (so the hem follows the thighs a bit).
- skirt [V] in [0, 1]: skirt membership (smoothstep of how much nearer the skirt is than the body, over
  +-1.5 cm), times a gate that keeps the inner bottom cap (around the legs) still; hem [V] in [0, 1]:
  0 at the waist, 1 at the hem.
- uvs [F, 3, 2] per face corner: one cylindrical chart per primitive (angle around the primitive's axis,
  position along it) in a 5 x 5 atlas; faces straddling a chart's angle seam are unwrapped past 2 pi into
  the tile's spare 13 %, so charts do not tear. Known flaw: at the poles of end caps (head top, hands,
  feet) a few triangles overlap in UV.
- colours [V, 3] and `albedo`: a procedural texture of the rest point and its primitive: skin, hair and
  a face (eyes, mouth) on the head, a blue shirt with white horizontal stripes and a yellow badge on the
  chest front, a red skirt with yellow pleat bands and a dark hem band, dark shoes. `template_texture`
  bakes it into the UV atlas.

Clothing (`clothed_vertices`): posed = DQS(rest, weights, T_t) + skirt * (hem^2 lag + flare radial):
- lag = -tau (0.7 v_t + 0.3 v_{t-1}) with v the velocity (m/s, 25 fps) of the DQS-skinned vertex between
  frames (t-1, t) and (t-2, t-1), tau = 0.07 s, vertical part x 0.3, magnitude saturated at 10 cm by tanh:
  the skirt trails its motion (walking, spinning);
- flare = hem^2 (0.12 alpha + 0.05 tanh((omega / 3)^2)) metres outward from the pelvis' vertical axis,
  alpha the angle between the thighs (0 at rest), omega the pelvis yaw rate (rad/s);
so it depends on the three frames t, t-1, t-2 TriHuman conditions on, and standing still in the rest pose
gives the rest skirt exactly.

Motions (MOTIONS): seeded smooth joint-angle curves at 25 fps: "walk" (in place, arms counter-swinging),
"dance" (arm raises, hip sway, twists), "squat", "turn" (spinning on the spot with arms out), each with
random tempo, amplitudes, phase and a small smooth random wobble on every joint. Splits: "train" draws
walk, dance and squat; "test" draws all four (so "turn" is a held-out motion type) from a separate random
stream (held-out poses). The motion cycles with the index.

Cameras (`camera_rig`): 16 on a ring (radius 3.0 m, elevation 10 degrees, 40 degree field of view,
looking at (0, 0.88, 0)), OpenCV convention (`common/camera.py`). HELD_OUT_VIEWS (45, 135, 225 and 315
degrees) are never training views.

Rendering (`render`): our z-buffer rasteriser (`common/mesh_raster.py`): mask (a pixel centre covered
by a triangle), depth (camera z, 0 on the background), RGB = albedo at the interpolated rest point times
0.45 + 0.55 max(0, n . L) (n the interpolated vertex normal of the posed mesh, L a fixed world light),
background 0 (configurable). Frames t = -2, -1 before the sequence exist (history) so frame 0 has its
three-frame context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..common.camera import orbit_rig
from ..common.errors import InputError
from ..common.isosurface import marching_tetrahedra
from ..common.mesh_raster import interpolate, rasterize
from .character import Character, skeleton_transforms
from .deform import axis_angle_matrix
from .skinning import dual_quaternion_skinning, matrix_to_quaternion
from .template import vertex_normals
from .uv_raster import rasterize_uv

FPS = 25.0
F64 = torch.float64

# --------------------------------------------------------------------------------------------- skeleton

JOINTS = (
    "pelvis", "spine", "chest", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle",
)  # fmt: skip
J = {name: i for i, name in enumerate(JOINTS)}
PARENTS = (-1, 0, 1, 2, 3, 2, 5, 6, 2, 8, 9, 0, 11, 12, 0, 14, 15)
ARM_ANGLE = math.radians(35.0)  # rest arms: this far out from hanging straight down
_ARM = (math.sin(ARM_ANGLE), -math.cos(ARM_ANGLE))


def _rest_joints() -> torch.Tensor:
    sh = (0.18, 1.43)
    el = (sh[0] + 0.28 * _ARM[0], sh[1] + 0.28 * _ARM[1])
    wr = (el[0] + 0.25 * _ARM[0], el[1] + 0.25 * _ARM[1])
    rows = [
        (0, 0.95, 0), (0, 1.12, 0), (0, 1.30, 0), (0, 1.48, 0), (0, 1.58, 0),
        (sh[0], sh[1], 0), (el[0], el[1], 0), (wr[0], wr[1], 0),
        (-sh[0], sh[1], 0), (-el[0], el[1], 0), (-wr[0], wr[1], 0),
        (0.09, 0.91, 0), (0.09, 0.50, 0), (0.09, 0.09, 0),
        (-0.09, 0.91, 0), (-0.09, 0.50, 0), (-0.09, 0.09, 0),
    ]  # fmt: skip
    return torch.tensor(rows, dtype=F64)


REST_JOINTS = _rest_joints()  # [J, 3] metres


def forward_kinematics(
    poses: torch.Tensor, translations: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Axis-angle poses [..., J, 3] (+ root translations [..., 3]) -> (joint positions [..., J, 3],
    global rotations [..., J, 3, 3], skinning transforms rest -> posed [..., J, 4, 4])."""
    if not isinstance(poses, torch.Tensor) or poses.shape[-2:] != (len(JOINTS), 3):
        raise InputError(
            "poses", f"axis-angle poses [..., {len(JOINTS)}, 3]", str(getattr(poses, "shape", poses))
        )
    return skeleton_transforms(poses, REST_JOINTS, PARENTS, translations)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors [..., 3] (angle in [0, pi]) of rotation matrices [..., 3, 3]."""
    q = matrix_to_quaternion(R)
    v = q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    return torch.where(s > 1e-12, v * angle / s.clamp_min(1e-12), 2 * v)


# --------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Primitive:
    name: str
    joint: str  # the joint whose bone carries it (skin weights, labels)
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    ra: float
    rb: float
    kind: str = "round_cone"  # or "capped_cone" (the skirt: a at the waist, b at the hem)
    z_scale: float = 1.0  # cross-section flattened in z


def _along(j: str, length: float, direction=None) -> tuple[float, float, float]:
    p = REST_JOINTS[J[j]].tolist()
    d = direction
    return (p[0] + length * d[0], p[1] + length * d[1], p[2] + length * d[2])


def _primitives() -> tuple[Primitive, ...]:
    R = {n: tuple(REST_JOINTS[J[n]].tolist()) for n in JOINTS}
    out = [
        Primitive("hips", "pelvis", (0, 0.90, 0), R["spine"], 0.135, 0.125, z_scale=0.75),
        Primitive("belly", "spine", R["spine"], R["chest"], 0.125, 0.145, z_scale=0.72),
        Primitive("chest", "chest", R["chest"], (0, 1.40, 0), 0.15, 0.13, z_scale=0.70),
        Primitive("shoulders", "chest", (-0.15, 1.41, 0), (0.15, 1.41, 0), 0.065, 0.065),
        Primitive("neck", "neck", (0, 1.40, 0), (0, 1.56, 0), 0.05, 0.048),
        Primitive("head", "head", (0, 1.62, 0.01), (0, 1.68, 0.0), 0.095, 0.088),
        Primitive("skirt", "pelvis", (0, 1.00, 0), (0, 0.56, 0), 0.155, 0.30, "capped_cone", 0.85),
    ]
    for side, s in (("l", 1.0), ("r", -1.0)):
        arm = (s * _ARM[0], _ARM[1], 0.0)
        out += [
            Primitive(f"{side}_upper_arm", f"{side}_shoulder", R[f"{side}_shoulder"], R[f"{side}_elbow"], 0.052, 0.042),
            Primitive(f"{side}_forearm", f"{side}_elbow", R[f"{side}_elbow"], R[f"{side}_wrist"], 0.040, 0.032),
            Primitive(f"{side}_hand", f"{side}_wrist", _along(f"{side}_wrist", 0.03, arm),
                      _along(f"{side}_wrist", 0.10, arm), 0.036, 0.03),
            Primitive(f"{side}_thigh", f"{side}_hip", R[f"{side}_hip"], R[f"{side}_knee"], 0.075, 0.052),
            Primitive(f"{side}_shin", f"{side}_knee", R[f"{side}_knee"], R[f"{side}_ankle"], 0.05, 0.038),
            Primitive(f"{side}_foot", f"{side}_ankle", (s * 0.09, 0.045, -0.02), (s * 0.09, 0.035, 0.15),
                      0.045, 0.035),
        ]  # fmt: skip
    return tuple(out)


PRIMITIVES = _primitives()
SKIRT = next(i for i, p in enumerate(PRIMITIVES) if p.name == "skirt")
WAIST_Y, HEM_Y = 1.00, 0.56
SMOOTH = 0.025  # smooth-union radius (m)
GRID = 0.04  # marching-tetrahedra grid spacing (m): about 5.5k vertices
BOX = ((-0.66, -0.04, -0.30), (0.66, 1.80, 0.30))
FOOT_CONTACTS = {  # rest points of the soles that touch the floor at rest
    "l_ankle": ((0.09, 0.0, -0.02), (0.09, 0.0, 0.15)),
    "r_ankle": ((-0.09, 0.0, -0.02), (-0.09, 0.0, 0.15)),
}


def _round_cone(p: torch.Tensor, a, b, r1: float, r2: float) -> torch.Tensor:
    """Exact distance to the round cone between spheres (a, r1) and (b, r2) (Inigo Quilez)."""
    a, b = p.new_tensor(a), p.new_tensor(b)
    ba = b - a
    l2 = float(ba @ ba)
    rr = r1 - r2
    a2 = l2 - rr * rr
    pa = p - a
    y = pa @ ba
    z = y - l2
    x2 = (pa * l2 - y[:, None] * ba).square().sum(-1)
    y2, z2 = y * y * l2, z * z * l2
    k = math.copysign(1.0, rr) * rr * rr * x2
    d1 = (x2 + z2).sqrt() / l2 - r2
    d2 = (x2 + y2).sqrt() / l2 - r1
    d3 = ((x2 * a2 / l2).sqrt() + y * rr) / l2 - r1
    return torch.where(torch.sign(z) * a2 * z2 > k, d1, torch.where(torch.sign(y) * a2 * y2 < k, d2, d3))


def _capped_cone(
    p: torch.Tensor, top_y: float, bottom_y: float, r_top: float, r_bottom: float
) -> torch.Tensor:
    """Exact distance to a vertical truncated cone (Inigo Quilez's sdCappedCone)."""
    h = (top_y - bottom_y) / 2
    qx = p[:, [0, 2]].norm(dim=-1)
    qy = p[:, 1] - (top_y + bottom_y) / 2
    k1 = (r_top, h)
    k2 = (r_top - r_bottom, 2 * h)
    cax = qx - torch.minimum(
        qx, torch.where(qy < 0, torch.full_like(qx, r_bottom), torch.full_like(qx, r_top))
    )
    cay = qy.abs() - h
    t = (((k1[0] - qx) * k2[0] + (k1[1] - qy) * k2[1]) / (k2[0] ** 2 + k2[1] ** 2)).clamp(0, 1)
    cbx, cby = qx - k1[0] + k2[0] * t, qy - k1[1] + k2[1] * t
    s = torch.where((cbx < 0) & (cay < 0), -1.0, 1.0).to(p)
    return s * torch.minimum(cax.square() + cay.square(), cbx.square() + cby.square()).sqrt()


def primitive_sdfs(points: torch.Tensor) -> torch.Tensor:
    """[P, N] signed distances (negative inside) of rest points [N, 3] to each primitive (approximate
    where the cross-section is flattened)."""
    out = []
    for prim in PRIMITIVES:
        p = points * points.new_tensor([1.0, 1.0, 1.0 / prim.z_scale])
        if prim.kind == "capped_cone":
            d = _capped_cone(p, prim.a[1], prim.b[1], prim.ra, prim.rb)
        else:
            d = _round_cone(p, prim.a, prim.b, prim.ra, prim.rb)
        out.append(d * min(1.0, prim.z_scale))
    return torch.stack(out)


def _smooth_min(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    h = (k - (a - b).abs()).clamp_min(0) / k
    return torch.minimum(a, b) - h * h * k / 4


def body_sdf(points: torch.Tensor) -> torch.Tensor:
    """[N] signed distance (approximate, negative inside) of the clothed rest body at points [N, 3]."""
    d = primitive_sdfs(points)
    out = d[0]
    for k in range(1, len(PRIMITIVES)):
        out = _smooth_min(out, d[k], SMOOTH)
    return out


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


# ----------------------------------------------------------------------------------------------- texture

SKIN = (0.90, 0.70, 0.56)
HAIR = (0.25, 0.15, 0.08)
SHIRT = (0.20, 0.35, 0.80)
SHIRT_STRIPE = (0.93, 0.93, 0.96)
BADGE = (0.98, 0.82, 0.15)
SKIRT_RED = (0.80, 0.14, 0.18)
PLEAT = (0.96, 0.76, 0.22)
HEM_BAND = (0.35, 0.05, 0.10)
SHOE = (0.14, 0.12, 0.10)
EYE = (0.05, 0.05, 0.08)
MOUTH = (0.65, 0.20, 0.25)
LIGHT = (0.3, 0.8, 0.5)


def albedo(rest_points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Procedural base colour [N, 3] in 0..1 at rest points [N, 3] on primitives `labels` [N]."""
    x, y, z = rest_points.unbind(-1)
    names = [p.name for p in PRIMITIVES]

    def part(*keys: str) -> torch.Tensor:
        ids = [i for i, n in enumerate(names) if any(n.endswith(k) for k in keys)]
        return torch.isin(labels, torch.tensor(ids, device=labels.device))

    def col(c) -> torch.Tensor:
        return rest_points.new_tensor(c).expand_as(rest_points)

    out = col(SKIN).clone()
    shirt = part("hips", "belly", "chest", "shoulders", "upper_arm")
    stripe = torch.remainder(y, 0.08) < 0.028
    out = torch.where(shirt[:, None], torch.where(stripe[:, None], col(SHIRT_STRIPE), col(SHIRT)), out)
    badge = part("chest", "belly") & (z > 0) & ((x.square() + (y - 1.27).square()) < 0.045**2)
    out = torch.where(badge[:, None], col(BADGE), out)
    skirt = part("skirt")
    theta = torch.atan2(x, z)
    pleat = torch.remainder(theta / (2 * math.pi) * 12, 1.0) < 0.22
    skirt_col = torch.where(pleat[:, None], col(PLEAT), col(SKIRT_RED))
    skirt_col = torch.where((y < HEM_Y + 0.045)[:, None], col(HEM_BAND), skirt_col)
    out = torch.where(skirt[:, None], skirt_col, out)
    head = part("head")
    hair = head & ((y > 1.675) | (z < -0.01) | ((x.abs() > 0.075) & (y > 1.60)))
    eyes = head & (z > 0.04) & (((x.abs() - 0.035).square() + (y - 1.645).square()) < 0.016**2)
    mouth = head & (z > 0.04) & (x.abs() < 0.03) & ((y - 1.592).abs() < 0.007)
    out = torch.where(hair[:, None], col(HAIR), out)
    out = torch.where(eyes[:, None], col(EYE), out)
    out = torch.where(mouth[:, None], col(MOUTH), out)
    out = torch.where(part("foot")[:, None], col(SHOE), out)
    return out


# ---------------------------------------------------------------------------------------------- template


@dataclass(frozen=True)
class AvatarTemplate:
    vertices: torch.Tensor  # [V, 3] rest vertices (metres, world frame)
    faces: torch.Tensor  # [F, 3] long, counter-clockwise seen from outside
    weights: torch.Tensor  # [V, J] skin weights (>= 0, rows sum to 1)
    uvs: torch.Tensor  # [F, 3, 2] per-corner texture coordinates in [0, 1]
    colors: torch.Tensor  # [V, 3] albedo at the vertices
    labels: torch.Tensor  # [V] long: nearest primitive (PRIMITIVES)
    face_labels: torch.Tensor  # [F] long: primitive nearest the face centroid
    skirt: torch.Tensor  # [V] skirt membership in [0, 1] (0 on the body)
    hem: torch.Tensor  # [V] 0 at the waist .. 1 at the hem (0 above the waist)
    joints: torch.Tensor  # [J, 3] rest joint positions
    parents: tuple[int, ...]


ATLAS = 5  # tiles per side of the UV atlas (25 >= number of primitives)
SEAM_ROOM = 1.13  # a tile's width spans this many turns: room for faces unwrapped past the seam


def _chart_axes(prim: Primitive) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a, b = torch.tensor(prim.a, dtype=F64), torch.tensor(prim.b, dtype=F64)
    axis = b - a
    ref = torch.tensor([0.0, 0.0, 1.0], dtype=F64)  # seam at the back (-z) for vertical charts
    if abs(float(axis @ ref)) > 0.9 * float(axis.norm()):
        ref = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    e1 = ref - (ref @ axis) / (axis @ axis) * axis
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(axis / axis.norm(), e1)
    return a, axis, torch.stack([e1, e2])


def _unwrap_uvs(vertices: torch.Tensor, faces: torch.Tensor, face_labels: torch.Tensor) -> torch.Tensor:
    """Per-corner UVs [F, 3, 2]: each face in its primitive's cylindrical chart (see the module spec)."""
    uvs = torch.zeros(faces.shape[0], 3, 2, dtype=F64)
    for c, prim in enumerate(PRIMITIVES):
        sel = (face_labels == c).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        a, axis, frame = _chart_axes(prim)
        p = vertices[faces[sel]] - a  # [f, 3, 3]
        s = (p @ axis) / (axis @ axis)
        theta = torch.atan2(p @ frame[1], p @ frame[0]) + math.pi  # [0, 2 pi), seam at the reference
        low = theta < theta.amax(1, keepdim=True) - math.pi
        theta = torch.where(low, theta + 2 * math.pi, theta)  # straddling faces continue past 2 pi
        u = theta / (2 * math.pi * SEAM_ROOM)
        v = (s - s.min()) / (s.max() - s.min())
        row, col = divmod(c, ATLAS)
        margin = 0.03
        uvs[sel, :, 0] = (col + margin + (1 - 2 * margin) * u.clamp(0, 1)) / ATLAS
        uvs[sel, :, 1] = 1 - (row + margin + (1 - 2 * margin) * (1 - v)) / ATLAS
    return uvs


@lru_cache(maxsize=2)
def _template_cached(spacing: float) -> AvatarTemplate:
    lo, hi = torch.tensor(BOX[0], dtype=F64), torch.tensor(BOX[1], dtype=F64)
    counts = ((hi - lo) / spacing).round().long() + 1
    hi = lo + (counts - 1) * spacing
    axes = [torch.linspace(float(lo[i]), float(hi[i]), int(counts[i]), dtype=F64) for i in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    field = body_sdf(grid.reshape(-1, 3)).reshape(grid.shape[:3])
    vertices, faces = marching_tetrahedra(field, bbox_min=lo, bbox_max=hi)

    d = primitive_sdfs(vertices)  # [P, V]
    labels = d.abs().argmin(0)
    centroids = vertices[faces].mean(1)
    face_labels = primitive_sdfs(centroids).abs().argmin(0)

    # skin weights from the distances to each joint's primitives
    n_j = len(JOINTS)
    owner = torch.tensor([J[p.joint] for p in PRIMITIVES])
    body = torch.ones(len(PRIMITIVES), dtype=torch.bool)
    body[SKIRT] = False
    dj = torch.full((n_j, vertices.shape[0]), float("inf"), dtype=F64)
    for k in body.nonzero().squeeze(1).tolist():
        dj[owner[k]] = torch.minimum(dj[owner[k]], d[k].abs())
    logits = -(dj - dj.amin(0)) / 0.02
    w = torch.softmax(logits, 0).T  # [V, J]
    top = w.topk(4, dim=1)
    w = torch.zeros_like(w).scatter_(1, top.indices, top.values)
    w = w / w.sum(1, keepdim=True)

    # the skirt: membership, hem factor, its own weights
    d_body = d[body].amin(0)
    member = _smoothstep((d_body - d[SKIRT]) / 0.03 + 0.5)
    hem = ((WAIST_Y - vertices[:, 1]) / (WAIST_Y - HEM_Y)).clamp(0, 1)
    r_cone = 0.155 + (0.30 - 0.155) * hem  # the skirt's radius at the vertex height
    r = (vertices[:, 0].square() + (vertices[:, 2] / 0.85).square()).sqrt()
    gate = _smoothstep((r / r_cone - 0.55) / 0.4)  # inner bottom cap (around the legs) stays put
    skirt = member * gate
    left = torch.sigmoid(vertices[:, 0] / 0.04)
    ws = torch.zeros_like(w)
    ws[:, J["pelvis"]] = 1 - 0.5 * hem
    ws[:, J["l_hip"]] = 0.5 * hem * left
    ws[:, J["r_hip"]] = 0.5 * hem * (1 - left)
    w = torch.lerp(w, ws, member[:, None])

    uvs = _unwrap_uvs(vertices, faces, face_labels)
    colors = albedo(vertices, labels)
    f32 = torch.float32
    return AvatarTemplate(
        vertices.to(f32), faces, w.to(f32), uvs.to(f32), colors.to(f32), labels, face_labels,
        skirt.to(f32), (hem * (member > 0)).to(f32), REST_JOINTS.to(f32), PARENTS,
    )  # fmt: skip


def avatar_template(spacing: float = GRID) -> AvatarTemplate:
    """The rest template (cached: treat its tensors as read-only). See the module spec."""
    return _template_cached(float(spacing))


def world_character(template: AvatarTemplate | None = None) -> Character:
    """The world's character as the avatar sees it (character.py): template, skin weights, UVs, skeleton."""
    t = template or avatar_template()
    return Character(t.vertices, t.faces, t.uvs, t.weights, t.joints, t.parents, JOINTS)


def template_texture(template: AvatarTemplate, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(albedo baked into the UV atlas [size, size, 3], mask [size, size])."""
    corners = template.vertices[template.faces]  # [F, 3, 3] rest points per corner
    raster = rasterize_uv(template.uvs, template.faces, corners, size)
    labels = template.face_labels[raster.face_index.clamp_min(0)]
    image = albedo(raster.image.reshape(-1, 3), labels.reshape(-1)).reshape(size, size, 3)
    return image * raster.mask[..., None], raster.mask


# ---------------------------------------------------------------------------------------------- clothing

TAU = 0.07  # s: how far the skirt lags behind its skinned motion
LAG_MAX = 0.10  # m
FLARE_SPREAD = 0.12  # m per radian between the thighs
FLARE_SPIN = 0.05  # m at fast spins


def _thigh_spread(joints: torch.Tensor) -> torch.Tensor:
    """[...] angle (rad) between the two thighs (hip -> knee); 0 at rest."""
    dl = joints[..., J["l_knee"], :] - joints[..., J["l_hip"], :]
    dr = joints[..., J["r_knee"], :] - joints[..., J["r_hip"], :]
    cos = (dl * dr).sum(-1) / (dl.norm(dim=-1) * dr.norm(dim=-1))
    return torch.acos(cos.clamp(-1, 1))


def _yaw(rotation: torch.Tensor) -> torch.Tensor:
    forward = rotation[..., :, 2]  # the pelvis' +z axis in the world
    return torch.atan2(forward[..., 0], forward[..., 2])


def clothed_vertices(
    template: AvatarTemplate, poses: torch.Tensor, translations: torch.Tensor, fps: float = FPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed vertices of frames t = 2 .. T-1 of poses [T, J, 3] / translations [T, 3] (the first two
    frames are history): (clothed [T-2, V, 3], skinned only [T-2, V, 3]). See the module spec."""
    if poses.ndim != 3 or poses.shape[0] < 3:
        raise InputError(
            "poses", "at least 3 frames [T >= 3, J, 3] (t-2, t-1, t ...)", str(tuple(poses.shape))
        )
    dtype = template.vertices.dtype
    joints, rot, T = forward_kinematics(poses.to(F64), translations.to(F64))
    skinned = dual_quaternion_skinning(
        template.vertices.to(F64)[None], template.weights.to(F64), T
    )  # [T, V, 3]
    v = (skinned[1:] - skinned[:-1]) * fps  # v[k]: frames k -> k+1
    lag = -TAU * (0.7 * v[1:] + 0.3 * v[:-1])  # [T-2, V, 3]
    lag = lag * lag.new_tensor([1.0, 0.3, 1.0])
    n = lag.norm(dim=-1, keepdim=True)
    lag = torch.where(n > 1e-12, lag * (LAG_MAX * torch.tanh(n / LAG_MAX) / n.clamp_min(1e-12)), lag * 0)
    yaw = _yaw(rot[:, J["pelvis"]])
    omega = torch.remainder(yaw[1:] - yaw[:-1] + math.pi, 2 * math.pi) - math.pi  # wrapped
    omega = omega[1:] * fps  # [T-2]
    spread = _thigh_spread(joints)[2:]
    hem2 = template.hem.to(F64).square()
    flare = hem2 * (FLARE_SPREAD * spread[:, None] + FLARE_SPIN * torch.tanh((omega / 3).square())[:, None])
    up = rot[2:, J["pelvis"], :, 1]  # [T-2, 3]
    rel = skinned[2:] - joints[2:, None, J["pelvis"]]
    radial = rel - (rel * up[:, None]).sum(-1, keepdim=True) * up[:, None]
    radial = radial / radial.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    offset = template.skirt.to(F64)[:, None] * (hem2[:, None] * lag + flare[..., None] * radial)
    return (skinned[2:] + offset).to(dtype), skinned[2:].to(dtype)


# ----------------------------------------------------------------------------------------------- motions

MOTIONS = ("walk", "dance", "squat", "turn")
SPLIT_MOTIONS = {"train": ("walk", "dance", "squat"), "test": ("walk", "dance", "squat", "turn")}
_SPLIT_STREAM = {"train": 0, "test": 1}


def _euler(ax: torch.Tensor, ay: torch.Tensor, az: torch.Tensor) -> torch.Tensor:
    """R = Ry(ay) Rz(az) Rx(ax) as matrices [T, 3, 3]."""
    zero = torch.zeros_like(ax)
    rx = axis_angle_matrix(torch.stack([ax, zero, zero], -1))
    ry = axis_angle_matrix(torch.stack([zero, ay, zero], -1))
    rz = axis_angle_matrix(torch.stack([zero, zero, az], -1))
    return ry @ rz @ rx


def _curves(
    motion: str, rng: np.random.Generator, t: torch.Tensor
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Per-joint (x, y, z) angle curves {joint: [T, 3]}, root yaw [T] and root sway (x, z) [T, 2]."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    zero = torch.zeros_like(t)
    ang = {name: [zero.clone(), zero.clone(), zero.clone()] for name in JOINTS}
    yaw = zero.clone()
    sway = torch.stack([zero, zero], -1)
    w = 2 * math.pi * u(0.7, 1.2)
    ph = u(0, 2 * math.pi)
    s, c = torch.sin(w * t + ph), torch.cos(w * t + ph)
    if motion in ("walk", "turn"):
        a, b, k = u(0.3, 0.55), u(0.2, 0.5), u(0.5, 0.9)
        if motion == "turn":
            a, k = a * 0.5, k * 0.6
        ang["l_hip"][0] += -a * s
        ang["r_hip"][0] += a * s
        ang["l_knee"][0] += k * (0.5 + 0.5 * torch.cos(w * t + ph - 1.2)).square()
        ang["r_knee"][0] += k * (0.5 - 0.5 * torch.cos(w * t + ph - 1.2)).square()
        ang["l_ankle"][0] += 0.15 * s
        ang["r_ankle"][0] += -0.15 * s
        ang["l_shoulder"][0] += b * s
        ang["r_shoulder"][0] += -b * s
        ang["l_elbow"][0] += -0.25 - 0.15 * (0.5 + 0.5 * s)
        ang["r_elbow"][0] += -0.25 - 0.15 * (0.5 - 0.5 * s)
        ang["spine"][1] += 0.12 * s
        ang["pelvis"][1] += -0.08 * s
        sway[:, 0] += 0.02 * torch.sin(w * t + ph + 0.5)
        if motion == "turn":
            speed = u(1.5, 3.5) * (1 if rng.uniform() < 0.5 else -1)
            yaw = speed * t
            out = u(0.4, 1.0)
            ang["l_shoulder"][2] += out
            ang["r_shoulder"][2] += -out
    elif motion == "dance":
        raise_ = u(0.6, 1.6)
        w2 = w * u(0.45, 0.55)
        lift = 0.5 - 0.5 * torch.cos(w2 * t + ph)
        ang["l_shoulder"][2] += raise_ * lift
        ang["r_shoulder"][2] += -raise_ * (0.5 - 0.5 * torch.cos(w2 * t + ph + u(0, math.pi)))
        ang["l_elbow"][0] += -u(0.2, 1.0) * (0.5 + 0.5 * s)
        ang["r_elbow"][0] += -u(0.2, 1.0) * (0.5 - 0.5 * s)
        hip = u(0.1, 0.3)
        ang["l_hip"][2] += hip * (0.5 + 0.5 * s)
        ang["r_hip"][2] += -hip * (0.5 - 0.5 * s)
        ang["l_hip"][0] += -0.2 * (0.5 + 0.5 * c)
        ang["l_knee"][0] += 0.35 * (0.5 + 0.5 * c)
        ang["pelvis"][2] += 0.08 * s
        ang["spine"][2] += -0.10 * s
        ang["spine"][1] += u(0.1, 0.35) * torch.sin(w2 * t)
        ang["head"][0] += 0.12 * torch.sin(2 * w * t)
        sway[:, 0] += u(0.04, 0.1) * s
    elif motion == "squat":
        depth = u(0.7, 1.4)
        wq = w * u(0.4, 0.6)
        q = 0.5 - 0.5 * torch.cos(wq * t + ph)
        for side in ("l", "r"):
            ang[f"{side}_hip"][0] += -0.9 * depth * q
            ang[f"{side}_knee"][0] += 1.6 * depth * q
            ang[f"{side}_ankle"][0] += -0.6 * depth * q
        reach = u(0.6, 1.3)
        ang["l_shoulder"][0] += -reach * q
        ang["r_shoulder"][0] += -reach * q
        ang["spine"][0] += 0.25 * depth * q
        ang["pelvis"][0] += 0.2 * depth * q
        ang["neck"][0] += -0.2 * depth * q
        sway[:, 1] += -0.05 * depth * q  # hips back
    else:
        raise InputError("motion", f"one of {MOTIONS}", repr(motion))
    for name in JOINTS:  # a small smooth wobble on every joint
        for axis in range(3):
            f, p, amp = u(0.15, 0.6), u(0, 2 * math.pi), u(0.0, 0.04)
            ang[name][axis] = ang[name][axis] + amp * torch.sin(2 * math.pi * f * t + p)
    return {k: torch.stack(v, -1) for k, v in ang.items()}, yaw, sway


def _grounded(poses: torch.Tensor, translations: torch.Tensor) -> torch.Tensor:
    """Translations with y chosen so the lowest sole point stays on the floor (y = 0)."""
    _, _, T = forward_kinematics(poses, translations)
    lows = []
    for joint, points in FOOT_CONTACTS.items():
        p = torch.tensor(points, dtype=poses.dtype)
        m = T[:, J[joint]]
        lows.append((p @ m[:, :3, :3].transpose(-1, -2) + m[:, None, :3, 3])[..., 1].amin(-1))
    low = torch.stack(lows, -1).amin(-1)
    out = translations.clone()
    out[:, 1] = out[:, 1] - low
    return out


@dataclass(frozen=True)
class Motion:
    name: str
    poses: torch.Tensor  # [T + 2, J, 3] axis-angle, frames t = -2 .. T-1 (two history frames first)
    translations: torch.Tensor  # [T + 2, 3] root translations (metres)


def make_motion(seed: int, split: str, index: int, frames: int, motion: str | None = None) -> Motion:
    """Seeded poses of frames -2 .. frames-1 (float64)."""
    if split not in SPLIT_MOTIONS:
        raise InputError("split", f"one of {tuple(SPLIT_MOTIONS)}", repr(split))
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError("frames", "a positive number of frames", repr(frames))
    rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split], int(index)])
    options = SPLIT_MOTIONS[split]
    name = motion if motion is not None else options[index % len(options)]
    start = rng.uniform(0, 10.0)
    t = start + (torch.arange(frames + 2, dtype=F64) - 2) / FPS
    ang, yaw, sway = _curves(name, rng, t)
    poses = torch.zeros(frames + 2, len(JOINTS), 3, dtype=F64)
    for name_j, a in ang.items():
        j = J[name_j]
        R = _euler(a[:, 0], a[:, 1], a[:, 2])
        if j == 0:
            R = _euler(torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)) @ R
        poses[:, j] = matrix_to_axis_angle(R)
    translations = torch.stack([sway[:, 0], torch.zeros_like(t), sway[:, 1]], -1)
    return Motion(name, poses, _grounded(poses, translations))


# ----------------------------------------------------------------------------------------------- cameras

RING = 16
HELD_OUT_VIEWS = (2, 6, 10, 14)
TRAIN_VIEWS = tuple(i for i in range(RING) if i not in HELD_OUT_VIEWS)
CAMERA_RADIUS, CAMERA_ELEVATION, CAMERA_FOV = 3.0, 10.0, 40.0
CAMERA_TARGET = (0.0, 0.88, 0.0)


def camera_rig(
    views: str | tuple[int, ...] | list[int] = "train", size: int = 64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(view ids [C] long, K [C, 3, 3], world -> camera [C, 4, 4]) of the ring; views: "train", "test"
    (the held-out views), "all" or a list of ring indices."""
    if isinstance(views, str):
        table = {"train": TRAIN_VIEWS, "test": HELD_OUT_VIEWS, "all": tuple(range(RING))}
        if views not in table:
            raise InputError("cameras", f"one of {tuple(table)} or ring indices 0..{RING - 1}", repr(views))
        ids = table[views]
    else:
        ids = tuple(int(i) for i in views)
        if not ids or min(ids) < 0 or max(ids) >= RING:
            raise InputError("cameras", f"ring indices 0..{RING - 1}", repr(views))
    K, E = orbit_rig(RING, CAMERA_RADIUS, CAMERA_ELEVATION, CAMERA_FOV, size, size, target=CAMERA_TARGET,
                     dtype=torch.float32)  # fmt: skip
    idx = torch.tensor(ids, dtype=torch.long)
    return idx, K[idx], E[idx]


# ---------------------------------------------------------------------------------------------- rendering


def render(
    template: AvatarTemplate,
    vertices: torch.Tensor,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    size: int,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One posed frame (vertices [V, 3]) in C cameras: (rgb [C, H, W, 3], mask [C, H, W], depth [C, H, W])."""
    faces = template.faces
    raster = rasterize(vertices, faces, K, world_to_camera, size, size)
    normals = vertex_normals(vertices, faces)
    attrs = torch.cat([template.vertices, normals], -1)  # rest point, posed normal
    values = interpolate(raster, faces, attrs)  # [C, H, W, 6]
    mask = raster.mask
    hit = mask.nonzero(as_tuple=True)
    rest = values[..., :3][hit]
    n = torch.nn.functional.normalize(values[..., 3:][hit], dim=-1)
    labels = template.face_labels[raster.face_index[hit]]
    light = torch.nn.functional.normalize(n.new_tensor(LIGHT), dim=0)
    shade = 0.45 + 0.55 * (n @ light).clamp_min(0)
    rgb = vertices.new_tensor(background).expand(*mask.shape, 3).clone()
    rgb[hit] = (albedo(rest, labels) * shade[:, None]).clamp(0, 1)
    return rgb, mask, raster.depth


# --------------------------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class AvatarSequence:
    seed: int
    split: str
    index: int
    motion: str
    fps: float
    poses: torch.Tensor  # [T, J, 3] axis-angle local joint rotations (float32)
    translations: torch.Tensor  # [T, 3] root translations (m)
    history_poses: torch.Tensor  # [2, J, 3] frames t = -2, -1
    history_translations: torch.Tensor  # [2, 3]
    joints: torch.Tensor  # [T, J, 3] world joint positions
    bone_transforms: torch.Tensor  # [T, J, 4, 4] skinning transforms rest -> posed
    vertices: torch.Tensor  # [T, V, 3] posed clothed mesh (ground truth)
    skinned: torch.Tensor  # [T, V, 3] the same by skinning alone (no clothing dynamics)
    faces: torch.Tensor  # [F, 3]
    images: torch.Tensor  # [T, C, H, W, 3] in 0..1
    masks: torch.Tensor  # [T, C, H, W] bool
    depths: torch.Tensor  # [T, C, H, W] camera z (m), 0 on the background
    views: torch.Tensor  # [C] ring indices of the cameras
    K: torch.Tensor  # [C, 3, 3]
    world_to_camera: torch.Tensor  # [C, 4, 4] (OpenCV)
    template: AvatarTemplate

    @property
    def pose_history(self) -> torch.Tensor:
        """[T, 3, J, 3]: each frame's poses of t, t-1, t-2 (newest first, as the motion texture)."""
        all_poses = torch.cat([self.history_poses, self.poses])
        return torch.stack([all_poses[2:], all_poses[1:-1], all_poses[:-2]], 1)


def make_sequence(
    seed: int = 0,
    split: str = "train",
    index: int = 0,
    frames: int = 16,
    cameras: str | tuple[int, ...] | list[int] = "train",
    size: int = 64,
    motion: str | None = None,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    render_images: bool = True,
) -> AvatarSequence:
    """A seeded motion of the character with its ground-truth meshes and multi-view renders (module spec).
    `render_images=False` skips the renders (images, masks, depths then have C = 0)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise InputError("size", "an image size >= 8 pixels", repr(size))
    template = avatar_template()
    mo = make_motion(seed, split, index, frames, motion)
    clothed, skinned = clothed_vertices(template, mo.poses, mo.translations)
    joints, _, T = forward_kinematics(mo.poses[2:], mo.translations[2:])
    views, K, E = camera_rig(cameras, size)
    if not render_images:
        views, K, E = views[:0], K[:0], E[:0]
    imgs, masks, depths = [], [], []
    for t in range(frames):
        rgb, mask, depth = render(template, clothed[t], K, E, size, background)
        imgs.append(rgb)
        masks.append(mask)
        depths.append(depth)
    f32 = torch.float32
    return AvatarSequence(
        int(seed), split, int(index), mo.name, FPS, mo.poses[2:].to(f32), mo.translations[2:].to(f32),
        mo.poses[:2].to(f32), mo.translations[:2].to(f32), joints.to(f32), T.to(f32), clothed, skinned,
        template.faces, torch.stack(imgs), torch.stack(masks), torch.stack(depths), views, K, E, template,
    )  # fmt: skip
