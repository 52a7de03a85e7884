"""The 3D world: procedural scenes of primitives with exact SDFs, colours, simple textures and captions.

A scene is one or two objects (sphere, cube, cylinder, cone, torus, capsule), each with a colour from a
small palette and a texture (plain, or striped: white bands across y), a size, a yaw and a position, and
a caption ("a red striped cube", "a red cube and a blue sphere"). Its SDF is exact (Inigo Quilez's
primitive distances, a union by min), so meshes, renders and grids made from it are ground truth for the
BiDiff world models and their evaluators. Everything is drawn from (seed, index): `make_scene(seed, i)`
is the same scene on every machine.

World space as prior3d.py: y up, shapes inside [-1, 1]^3, SDF negative inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .prior3d import Shape3D

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "capsule")
COLORS = {
    "red": (0.86, 0.13, 0.13),
    "green": (0.15, 0.70, 0.22),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.12),
    "purple": (0.58, 0.22, 0.78),
    "orange": (0.98, 0.55, 0.10),
}
TEXTURES = ("plain", "striped")
STRIPE_PERIOD = 0.5  # world units per white + coloured band pair: bands of 0.25, two cells of a 16^3 grid
WHITE = (0.95, 0.95, 0.95)


@dataclass(frozen=True)
class Primitive:
    shape: str
    color: str
    texture: str = "plain"
    size: float = 0.6  # half-extent of the object's bounding box (world units)
    yaw: float = 0.0  # rotation about y (radians)
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def words(self) -> str:
        tex = "striped " if self.texture == "striped" else ""
        return f"{self.color} {tex}{self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[Primitive, ...]

    @property
    def caption(self) -> str:
        return " and ".join(f"{article(o.words())} {o.words()}" for o in self.objects)

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        return torch.stack([primitive_sdf(o, points) for o in self.objects]).amin(0)

    def color(self, points: torch.Tensor) -> torch.Tensor:
        """Colour of the nearest object's texture at each point (defined everywhere, so grids have it)."""
        d = torch.stack([primitive_sdf(o, points) for o in self.objects])
        cols = torch.stack([primitive_color(o, points) for o in self.objects])
        nearest = d.argmin(0)
        return cols.gather(0, nearest[None, :, None].expand(1, -1, 3))[0]

    def shape3d(self) -> Shape3D:
        return Shape3D(self.sdf, self.color, self.caption, "world", {"scene": self})


# ----------------------------------------------------------------------------------------------------
# Exact SDFs (negative inside) of the primitives in their own frame: y up, centred, half-extent `s`.


def _length2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x * x + y * y)


def sd_sphere(p: torch.Tensor, s: float) -> torch.Tensor:
    return p.norm(dim=-1) - s


def sd_box(p: torch.Tensor, half: tuple[float, float, float]) -> torch.Tensor:
    q = p.abs() - p.new_tensor(half)
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def sd_cylinder(p: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    dx = _length2(p[..., 0], p[..., 2]) - radius
    dy = p[..., 1].abs() - half_height
    return torch.maximum(dx, dy).clamp_max(0) + _length2(dx.clamp_min(0), dy.clamp_min(0))


def sd_capsule(p: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    """A vertical segment of half length `half_height` thickened by `radius`."""
    y = p[..., 1].clamp(-half_height, half_height)
    return torch.stack([p[..., 0], p[..., 1] - y, p[..., 2]], -1).norm(dim=-1) - radius


def sd_torus(p: torch.Tensor, major: float, minor: float) -> torch.Tensor:
    """A ring in the xz plane."""
    return _length2(_length2(p[..., 0], p[..., 2]) - major, p[..., 1]) - minor


def sd_cone(p: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    """A cone standing on its base (radius at y = -h, apex at y = +h): IQ's exact capped cone with r2 = 0."""
    qx, qy = _length2(p[..., 0], p[..., 2]), p[..., 1]
    h, r1 = half_height, radius
    k2x, k2y = -r1, 2 * h  # (r2 - r1, 2h)
    ca_x = qx - torch.minimum(qx, torch.where(qy < 0, torch.full_like(qx, r1), torch.zeros_like(qx)))
    ca_y = qy.abs() - h
    t = ((-qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y)  # dot(k1 - q, k2) / |k2|^2, k1 = (0, h)
    t = t.clamp(0, 1)
    cb_x, cb_y = qx + k2x * t, qy - h + k2y * t
    sign = torch.where((cb_x < 0) & (ca_y < 0), -1.0, 1.0).to(p.dtype)
    return sign * torch.sqrt(torch.minimum(ca_x * ca_x + ca_y * ca_y, cb_x * cb_x + cb_y * cb_y))


def to_local(o: Primitive, points: torch.Tensor) -> torch.Tensor:
    """World points -> the primitive's frame (undo its position, then its yaw about y)."""
    p = points - points.new_tensor(o.center)
    c, s = math.cos(o.yaw), math.sin(o.yaw)
    x, y, z = p.unbind(-1)
    return torch.stack([c * x - s * z, y, s * x + c * z], -1)


def primitive_sdf(o: Primitive, points: torch.Tensor) -> torch.Tensor:
    p, s = to_local(o, points), o.size
    if o.shape == "sphere":
        return sd_sphere(p, s)
    if o.shape == "cube":
        return sd_box(p, (0.8 * s, 0.8 * s, 0.8 * s))
    if o.shape == "cylinder":
        return sd_cylinder(p, 0.7 * s, s)
    if o.shape == "cone":
        return sd_cone(p, 0.9 * s, s)
    if o.shape == "torus":
        return sd_torus(p, 0.7 * s, 0.3 * s)
    if o.shape == "capsule":
        return sd_capsule(p, 0.5 * s, 0.5 * s)
    raise ValueError(f"unknown shape {o.shape!r}")


def primitive_color(o: Primitive, points: torch.Tensor) -> torch.Tensor:
    base = points.new_tensor(COLORS[o.color]).expand(points.shape[0], 3)
    if o.texture != "striped":
        return base
    y = points[:, 1] - o.center[1]
    white = torch.remainder(y / STRIPE_PERIOD, 1.0) >= 0.5
    return torch.where(white[:, None], points.new_tensor(WHITE).expand_as(base), base)


# ----------------------------------------------------------------------------------------------------
# Drawing scenes


def make_scene(seed: int, index: int, max_objects: int = 1, textures: bool = True) -> Scene:
    """Scene `index` of world `seed`: 1..max_objects objects; one object sits at the centre, two stand
    side by side along x."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    n = 1 + int(torch.randint(0, max_objects, (1,), generator=g))

    def draw(options: tuple[str, ...]) -> str:
        return options[int(torch.randint(0, len(options), (1,), generator=g))]

    objects = []
    for k in range(n):
        shape, color = draw(SHAPES), draw(tuple(COLORS))
        texture = draw(TEXTURES) if textures else "plain"
        u = torch.rand(3, generator=g).tolist()
        if n == 1:
            size, center = 0.55 + 0.2 * u[0], (0.0, 0.0, 0.0)
        else:
            size, center = 0.3 + 0.1 * u[0], ((-0.5 if k == 0 else 0.5), 0.0, 0.0)
        objects.append(Primitive(shape, color, texture, size, 2 * math.pi * u[1], center))
    return Scene(tuple(objects))


def article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def world_vocabulary() -> list[str]:
    """Every word a world caption can hold (the grid prior's text encoder vocabulary)."""
    return ["a", "an", "and", *COLORS, "striped", *SHAPES]
