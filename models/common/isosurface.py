"""Grids of a field over a cube, and the surface where the field crosses a level (marching tetrahedra).

BiDiff turns its SDFs into meshes and TriHuman samples its fields on grids; both use this module.
Grid convention: [R, R, R] with axis 0 = x, 1 = y, 2 = z, corner points at +-bound (point i of an axis at
-bound + 2 bound i / (R - 1)).

Marching tetrahedra rather than marching cubes: each cell is split into six tetrahedra around its main
diagonal (the same split in every cell, so neighbouring cells agree on their shared faces), and a
tetrahedron has only 16 sign cases, derived below instead of shipped as a 256-entry table. Surface vertices
sit on grid edges and are shared by edge id, so a surface that closes inside the grid is a watertight
mesh; triangles are turned to face outward (from inside, field < level, to outside).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import torch

from .errors import InputError

# Cell corners: index = dx + 2 dy + 4 dz. The six tetrahedra share the diagonal 0 -> 7 and walk around it
# through corners that differ in one axis from their neighbours (1, 3, 2, 6, 4, 5).
CORNERS = torch.tensor(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
)
TETS = torch.tensor([[0, 1, 3, 7], [0, 3, 2, 7], [0, 2, 6, 7], [0, 6, 4, 7], [0, 4, 5, 7], [0, 5, 1, 7]])
EDGES = list(combinations(range(4), 2))  # the six edges of a tetrahedron, as pairs of its corners


def _case_triangles() -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the 16 inside-masks of a tetrahedron: up to two triangles as edge indices [16, 2, 3] and
    which of them exist [16, 2]. One corner apart: one triangle; two and two: the quad of the four crossed
    edges, split into two triangles."""
    tris = torch.zeros(16, 2, 3, dtype=torch.long)
    used = torch.zeros(16, 2, dtype=torch.bool)
    edge = {pair: i for i, pair in enumerate(EDGES)}
    e = lambda a, b: edge[(min(a, b), max(a, b))]  # noqa: E731
    for case in range(16):
        inside = [c for c in range(4) if case >> c & 1]
        outside = [c for c in range(4) if not case >> c & 1]
        if len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            tris[case, 0] = torch.tensor([e(lone, o) for o in others])
            used[case, 0] = True
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            tris[case, 0] = torch.tensor([e(a, c), e(a, d), e(b, d)])
            tris[case, 1] = torch.tensor([e(a, c), e(b, d), e(b, c)])
            used[case] = True
    return tris, used


CASE_TRIANGLES, CASE_USED = _case_triangles()
EDGE_CORNERS = torch.tensor(EDGES)  # [6, 2]


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise InputError("resolution", "a whole number of grid points per axis >= 2", repr(resolution))
    return resolution


def grid_points(
    resolution: int,
    bound: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """[R, R, R, 3] points of the grid over [-bound, bound]^3 (axis 0 = x)."""
    r = _check_resolution(resolution)
    axis = torch.linspace(-bound, bound, r, dtype=dtype or torch.get_default_dtype(), device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)


def sample_grid(
    fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int,
    bound: float = 1.0,
    chunk: int = 65536,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """fn (points [N, 3] -> [N]) on the grid, `chunk` points at a time -> [R, R, R]."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError("chunk", "a positive number of points", repr(chunk))
    p = grid_points(resolution, bound, dtype, device).reshape(-1, 3)
    out = torch.cat([fn(p[i : i + chunk]).reshape(-1) for i in range(0, len(p), chunk)])
    return out.reshape(resolution, resolution, resolution)


def marching_tetrahedra(
    field: torch.Tensor, bound: float = 1.0, level: float = 0.0, slab: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """The surface field == level of a grid [X, Y, Z] over [-bound, bound]^3 -> (vertices [N, 3] in the
    field's float dtype, faces [M, 3] long), inside = field < level, faces counter-clockwise from outside.
    Cells are processed `slab` x-layers at a time, so memory follows the surface, not the grid."""
    if not isinstance(field, torch.Tensor) or field.ndim != 3 or not field.is_floating_point():
        got = (
            f"shape {list(field.shape)}, {field.dtype}"
            if isinstance(field, torch.Tensor)
            else type(field).__name__
        )
        raise InputError("field", "a floating-point grid [X, Y, Z]", got)
    if min(field.shape) < 2:
        raise InputError("field", "at least 2 points per axis", f"shape {list(field.shape)}")
    dev, dtype = field.device, field.dtype
    X, Y, Z = field.shape
    dims = torch.tensor([X, Y, Z], device=dev)
    strides = torch.tensor([Y * Z, Z, 1], device=dev)
    flat = field.reshape(-1)
    corners, tets = CORNERS.to(dev), TETS.to(dev)
    case_tris, case_used, edge_corners = CASE_TRIANGLES.to(dev), CASE_USED.to(dev), EDGE_CORNERS.to(dev)
    keys, orient_in, orient_out = [], [], []
    for x0 in range(0, X - 1, slab):
        x1 = min(x0 + slab, X - 1)
        cx, cy, cz = torch.meshgrid(
            torch.arange(x0, x1, device=dev), torch.arange(Y - 1, device=dev), torch.arange(Z - 1, device=dev),
            indexing="ij",
        )  # fmt: skip
        cell = torch.stack([cx, cy, cz], -1).reshape(-1, 1, 3)  # [C, 1, 3]
        vid = ((cell + corners[None]) * strides).sum(-1)  # [C, 8] flat grid ids of the corners
        inside = flat[vid] < level  # [C, 8]
        some = inside.any(1) & ~inside.all(1)  # cells the surface crosses
        vid, inside = vid[some], inside[some]
        tv = vid[:, tets]  # [C', 6, 4]
        tin = inside[:, tets]
        case = (tin.long() * torch.tensor([1, 2, 4, 8], device=dev)).sum(-1)  # [C', 6]
        tv, tin, case = tv.reshape(-1, 4), tin.reshape(-1, 4), case.reshape(-1)
        hit = (case > 0) & (case < 15)
        tv, tin, case = tv[hit], tin[hit], case[hit]
        tris, used = case_tris[case], case_used[case]  # [T, 2, 3], [T, 2]
        owner = torch.arange(len(case), device=dev)[:, None].expand(-1, 2)[used]  # tet of each triangle
        tris = tris[used]  # [F, 3] edge indices within the tet
        ends = tv[owner[:, None, None], edge_corners[tris]]  # [F, 3, 2] grid ids of each crossed edge's ends
        lo, hi = ends.min(-1).values, ends.max(-1).values
        keys.append(lo * flat.numel() + hi)  # [F, 3] edge ids
        tin_f = tin[owner].to(dtype)  # [F, 4]
        pos = ((tv[owner][..., None] // strides) % dims).to(dtype)  # [F, 4, 3] grid coordinates
        n_in = tin_f.sum(-1, keepdim=True)
        orient_in.append((pos * tin_f[..., None]).sum(1) / n_in)
        orient_out.append((pos * (1 - tin_f)[..., None]).sum(1) / (4 - n_in))
    if not keys or sum(len(k) for k in keys) == 0:
        return field.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=dev)
    keys = torch.cat(keys)
    uniq, faces = torch.unique(keys.reshape(-1), return_inverse=True)
    faces = faces.reshape(-1, 3)
    a, b = uniq // flat.numel(), uniq % flat.numel()
    sa, sb = flat[a], flat[b]
    t = ((level - sa) / (sb - sa)).clamp(0, 1)[:, None]
    coord = lambda i: ((i[:, None] // strides) % dims).to(dtype)  # noqa: E731
    scale = 2 * bound / (dims - 1).to(dtype)
    vertices = (coord(a) + t * (coord(b) - coord(a))) * scale - bound
    # face outward: the normal must point from the tetrahedron's inside corners to its outside ones
    tri = vertices[faces]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * (torch.cat(orient_out) - torch.cat(orient_in)) * scale).sum(-1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return vertices, faces
