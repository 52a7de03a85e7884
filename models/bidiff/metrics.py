"""World evaluators for 3D shapes: what shape, what colour, and how well it matches its caption.

Occupancy: the shape's SDF < 0 on a grid over [-1, 1]^3. Shape: the world primitive (centred, as the
one-object scenes are) whose best size and yaw give the highest IoU with the occupancy; the best IoU with
the caption's own primitive is the caption-fit score (1 for the exact scene). Colour: the palette colour
most of the least white quarter of the surface is nearest to; striped when over a quarter of the
surface is white. Texture purity: the fraction of the surface whose colour is within `PURE` of the voted
colour or of white, i.e. not a blend of the two: soft, smeared stripes (the paper's "coarse texture" of a
3D-only model) score low. No learnt model: the evaluator cannot share a generator's blind spots.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..common import isosurface
from .prior3d import Shape3D
from .world import COLORS, SHAPES, TEXTURES, WHITE, Primitive

SIZES = tuple(0.4 + 0.05 * i for i in range(9))  # 0.40 .. 0.80 (the world draws 0.55 .. 0.75)
YAWS = tuple(i * math.pi / 16 for i in range(8))  # 0 .. 90 degrees: every primitive is 90-degree symmetric
PURE = 0.15  # RGB distance (colours in [0, 1]) within which a colour counts as pure (or white)


def grid_points(resolution: int) -> torch.Tensor:
    return isosurface.grid_points(resolution, 1.0, dtype=torch.float32).reshape(-1, 3)


def occupancy(shape: Shape3D, resolution: int = 32) -> torch.Tensor:
    """[R^3] bool: inside the shape."""
    with torch.no_grad():
        return shape.sdf(grid_points(resolution)) < 0


@functools.lru_cache(maxsize=16)
def reference_occupancies(shape: str, resolution: int) -> torch.Tensor:
    """[K, R^3] bool: the centred primitive `shape` at every fitted size and yaw (built once per resolution;
    every evaluation compares against the same references). Only the cube's yaw matters: the others are
    round about y."""
    from .world import primitive_sdf

    p = grid_points(resolution)
    yaws = YAWS if shape == "cube" else (0.0,)
    return torch.stack(
        [primitive_sdf(Primitive(shape, "red", size=s, yaw=y), p) < 0 for s in SIZES for y in yaws]
    )


def best_fit_iou(occ: torch.Tensor, shape: str, resolution: int = 32) -> float:
    """Highest IoU of `occ` with the centred primitive `shape` over the world's sizes and yaws."""
    refs = reference_occupancies(shape, resolution)
    inter = (refs & occ).sum(-1)
    union = (refs | occ).sum(-1)
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter, dtype=torch.float32))
    return float(iou.max())


def surface_colors(shape: Shape3D, resolution: int = 32) -> torch.Tensor:
    """Colours [N, 3] of the grid points within one cell of the surface."""
    p = grid_points(resolution)
    with torch.no_grad():
        d = shape.sdf(p)
        near = d.abs() < 2.0 / (resolution - 1)
        return shape.color(p[near]) if near.any() else torch.zeros(0, 3)


@dataclass
class ShapeReport:
    shape: str
    color: str
    texture: str
    caption_iou: float  # best-fit IoU with the caption's primitive (0 when the caption names none)
    ious: dict
    purity: float = 0.0  # fraction of the surface in the pure colour or white (not blended)


def evaluate(shape: Shape3D, caption_shape: str | None, resolution: int = 32) -> ShapeReport:
    occ = occupancy(shape, resolution)
    ious = {s: best_fit_iou(occ, s, resolution) for s in SHAPES}
    cols = surface_colors(shape, resolution)
    from_white = (cols - cols.new_tensor(WHITE)).norm(dim=-1)
    white = from_white < 0.35
    # the colour: a vote of the quarter of the surface farthest from white (stripe edges blend into white,
    # and red blended with white is nearer orange than red)
    colored = cols[from_white >= from_white.quantile(0.75)] if len(cols) else cols
    palette = torch.tensor(list(COLORS.values()))
    votes = torch.cdist(colored, palette).argmin(-1).bincount(minlength=len(palette))
    color = list(COLORS)[int(votes.argmax())] if len(colored) else "none"
    texture = TEXTURES[1] if len(cols) and white.float().mean().item() > 0.25 else TEXTURES[0]
    purity = 0.0
    if len(colored):
        pure = torch.stack([palette[int(votes.argmax())], cols.new_tensor(WHITE)])
        purity = (torch.cdist(cols, pure).min(-1).values < PURE).float().mean().item()
    return ShapeReport(
        max(ious, key=ious.get),
        color,
        texture,
        ious.get(caption_shape, 0.0) if caption_shape else 0.0,
        ious,
        purity,
    )
