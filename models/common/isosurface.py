"""Grids of a field over a box, and the surface where the field crosses a level (marching tetrahedra).

BiDiff turns its SDFs into meshes and TriHuman samples its fields on grids; both use this module, pure
torch (no CUDA extension, no mesh library), batched over cells with no Python loop over them.

Grid convention: [X, Y, Z] with axis 0 = x, 1 = y, 2 = z, corner points at the box corners (point i of the
x axis at xmin + (xmax - xmin) i / (X - 1)); the default box is [-bound, bound]^3.

Sign convention: inside is field < level (an SDF negative inside, as `models/bidiff/prior3d.py`); a grid
point exactly at the level counts as outside.

Why marching tetrahedra rather than marching cubes: each cell is split into six tetrahedra around its main
diagonal (corner 0 -> corner 7; the same split in every cell, so neighbouring cells cut their shared face
along the same diagonal and agree on the surface there), and a tetrahedron has only 16 sign cases with no
ambiguous ones, derived below instead of shipped as a 256-entry table. Every edge of these tetrahedra runs
from a grid point p to p + o with o in {0, 1}^3 \\ {0}, so an edge's global id is 8 * id(p) + code(o):
surface vertices are deduplicated by that id, and a surface closing inside the grid is a watertight mesh.
Triangles face outward (counter-clockwise seen from outside, glTF's convention): the orientation is fixed
per tetrahedron and sign case in the table, which is exact for any interpolation weight in (0, 1) rather
than a test on the (possibly tiny) interpolated triangle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import torch

from .errors import InputError

# Cell corners: index = dx + 2 dy + 4 dz.
CORNERS = torch.tensor(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
)
# The six tetrahedra around the diagonal 0 -> 7 (Kuhn's split): each is a monotone path 0 -> a -> b -> 7
# adding one axis per step, so every edge joins corners whose bits are nested (offset in {0, 1}^3).
TETS = torch.tensor([[0, 1, 3, 7], [0, 2, 3, 7], [0, 2, 6, 7], [0, 4, 6, 7], [0, 4, 5, 7], [0, 1, 5, 7]])
EDGES = list(combinations(range(4), 2))  # the six edges of a tetrahedron, as pairs of its vertices


def _tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per tetrahedron t and inside-mask case (bit k = vertex k inside):
    - TRIS [6, 16, 2, 3]: up to two triangles as local edge indices, oriented outward;
    - USED [6, 16, 2]: which of the two exist (one lone vertex: one triangle; two and two: the quad of the
      four crossed edges, split along the diagonal between the two opposite edges, inside the tetrahedron);
    - EDGE_LO [6, 6]: the cell corner an edge starts from (the one with fewer bits); EDGE_CODE [6, 6]: its
      offset code dx + 2 dy + 4 dz (1..7).
    Orientation: with the edge midpoints as vertices, the normal must point from the inside vertices'
    centroid to the outside ones'. Sliding a vertex along its edge (weight in (0, 1)) never changes the
    side a tetrahedron's corner lies on, so the table holds for every interpolated triangle."""
    corners = CORNERS.double()
    tris = torch.zeros(6, 16, 2, 3, dtype=torch.long)
    used = torch.zeros(6, 16, 2, dtype=torch.bool)
    edge_lo = torch.zeros(6, 6, dtype=torch.long)
    edge_code = torch.zeros(6, 6, dtype=torch.long)
    edge = {pair: i for i, pair in enumerate(EDGES)}
    for t, tet in enumerate(TETS.tolist()):
        for i, (a, b) in enumerate(EDGES):
            lo, hi = min(tet[a], tet[b]), max(tet[a], tet[b])
            assert lo & hi == lo, "Kuhn tetrahedra have nested corner bits"
            edge_lo[t, i], edge_code[t, i] = lo, hi - lo
        pos = corners[tet]
        mid = [(pos[a] + pos[b]) / 2 for a, b in EDGES]

        def e(a: int, b: int) -> int:
            return edge[(min(a, b), max(a, b))]

        for case in range(16):
            inside = [v for v in range(4) if case >> v & 1]
            outside = [v for v in range(4) if not case >> v & 1]
            if len(inside) in (1, 3):
                lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
                found = [[e(lone, o) for o in others]]
            elif len(inside) == 2:
                (a, b), (c, d) = inside, outside
                found = [[e(a, c), e(a, d), e(b, d)], [e(a, c), e(b, d), e(b, c)]]
            else:
                continue
            direction = pos[outside].mean(0) - pos[inside].mean(0)
            for k, tri in enumerate(found):
                p = [mid[i] for i in tri]
                normal = torch.linalg.cross(p[1] - p[0], p[2] - p[0])
                if float(normal @ direction) < 0:
                    tri = [tri[0], tri[2], tri[1]]
                tris[t, case, k] = torch.tensor(tri)
                used[t, case, k] = True
    return tris, used, edge_lo, edge_code


CASE_TRIANGLES, CASE_USED, EDGE_LO, EDGE_CODE = _tables()
CELLS_PER_SLAB = 1 << 19  # default slab size in cells: ~100 MB of temporaries per slab


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise InputError("resolution", "a whole number of grid points per axis >= 2", repr(resolution))
    return resolution


def _check_bound(bound: float) -> float:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound < float("inf"):
        raise InputError("bound", "a half-size > 0 of the cube [-bound, bound]^3", repr(bound))
    return float(bound)


def grid_points(
    resolution: int,
    bound: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """[R, R, R, 3] points of the grid over [-bound, bound]^3 (axis 0 = x; corners exactly at +-bound)."""
    r, bound = _check_resolution(resolution), _check_bound(bound)
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
    """fn (points [N, 3] -> [N]) on `grid_points(resolution, bound)` -> [R, R, R].

    The points are made `chunk` at a time (the same values as grid_points), so memory is bounded by the
    chunk and the output, not by R^3 x 3 coordinates. Gradients are the caller's business (wrap in
    torch.no_grad() for meshing)."""
    r, bound = _check_resolution(resolution), _check_bound(bound)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError("chunk", "a positive number of points", repr(chunk))
    axis = torch.linspace(-bound, bound, r, dtype=dtype or torch.get_default_dtype(), device=device)
    parts = []
    for start in range(0, r**3, chunk):
        idx = torch.arange(start, min(start + chunk, r**3), device=axis.device)
        p = torch.stack([axis[idx // (r * r)], axis[idx // r % r], axis[idx % r]], -1)
        out = fn(p)
        if not isinstance(out, torch.Tensor) or out.numel() != len(idx):
            got = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError("fn", f"one value per point (a [{len(idx)}] tensor for {len(idx)} points)", got)
        parts.append(out.reshape(-1))
    return torch.cat(parts).reshape(r, r, r)


def _box(
    bound: float,
    bbox_min: Sequence[float] | torch.Tensor | None,
    bbox_max: Sequence[float] | torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if bbox_min is None and bbox_max is None:
        b = _check_bound(bound)
        return torch.full((3,), -b, dtype=torch.float64), torch.full((3,), b, dtype=torch.float64)
    if bbox_min is None or bbox_max is None:
        name = "bbox_min" if bbox_min is None else "bbox_max"
        raise InputError(name, "both bbox_min and bbox_max (or neither, for the cube of `bound`)", "None")
    box = []
    for name, value in (("bbox_min", bbox_min), ("bbox_max", bbox_max)):
        try:
            v = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise InputError(name, "3 coordinates (x, y, z)", repr(value)) from None
        if v.shape != (3,) or not bool(torch.isfinite(v).all()):
            raise InputError(name, "3 finite coordinates (x, y, z)", repr(value))
        box.append(v)
    if not bool((box[1] > box[0]).all()):
        raise InputError("bbox_max", f"coordinates above bbox_min {box[0].tolist()}", repr(bbox_max))
    return box[0], box[1]


def marching_tetrahedra(
    field: torch.Tensor,
    bound: float = 1.0,
    level: float = 0.0,
    slab: int | None = None,
    *,
    bbox_min: Sequence[float] | torch.Tensor | None = None,
    bbox_max: Sequence[float] | torch.Tensor | None = None,
    drop_degenerate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The surface field == level of a grid [X, Y, Z] -> (vertices [N, 3], faces [M, 3] long).

    The grid spans [-bound, bound]^3, or the box bbox_min..bbox_max when both are given. Inside is
    field < level; faces are counter-clockwise seen from outside (normals point outward); vertices have the
    field's dtype ([0, 3] and [0, 3] when nothing is crossed). Cells are processed `slab` x-layers at a time
    (default: about half a million cells per slab), so memory follows the surface, not the grid.
    `drop_degenerate` merges vertices that coincide exactly (the field equals `level` at a grid point) and
    drops the zero-area faces that leaves; the mesh stays closed."""
    if not isinstance(field, torch.Tensor) or field.ndim != 3 or not field.is_floating_point():
        got = (
            f"shape {list(field.shape)}, {field.dtype}"
            if isinstance(field, torch.Tensor)
            else type(field).__name__
        )
        raise InputError("field", "a floating-point grid [X, Y, Z]", got)
    if min(field.shape) < 2:
        raise InputError("field", "a grid with at least 2 points per axis", f"shape {list(field.shape)}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or level != level:
        raise InputError("level", "a number", repr(level))
    if slab is not None and (isinstance(slab, bool) or not isinstance(slab, int) or slab < 1):
        raise InputError("slab", "a positive number of x-layers (or None)", repr(slab))
    if bool(torch.isnan(field).any()):
        raise InputError("field", "values without NaN", f"{int(torch.isnan(field).sum())} NaN values")
    lo_corner, hi_corner = _box(bound, bbox_min, bbox_max)

    dev, out_dtype = field.device, field.dtype
    work = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    X, Y, Z = field.shape
    flat = field.reshape(-1)
    strides = torch.tensor([Y * Z, Z, 1], device=dev)
    corner_offset = (CORNERS.to(dev) * strides).sum(-1)  # [8] flat-id offsets of a cell's corners
    tets, case_tris, case_used = TETS.to(dev), CASE_TRIANGLES.to(dev), CASE_USED.to(dev)
    edge_lo, edge_code = EDGE_LO.to(dev), EDGE_CODE.to(dev)
    if slab is None:
        slab = max(1, CELLS_PER_SLAB // ((Y - 1) * (Z - 1)))
    yz = (torch.arange(Y - 1, device=dev)[:, None] * Z + torch.arange(Z - 1, device=dev)).reshape(-1)

    keys = []
    for x0 in range(0, X - 1, slab):
        x1 = min(x0 + slab, X - 1)
        base = (torch.arange(x0, x1, device=dev)[:, None] * (Y * Z) + yz).reshape(-1)  # [C] corner-0 ids
        vid = base[:, None] + corner_offset  # [C, 8]
        inside = flat[vid] < level
        some = inside.any(1) & ~inside.all(1)  # cells the surface crosses
        vid, inside = vid[some], inside[some]
        case = (inside[:, tets].long() << torch.arange(4, device=dev)).sum(-1)  # [C', 6]
        cell, tet = ((case > 0) & (case < 15)).nonzero(as_tuple=True)  # crossed tetrahedra
        case = case[cell, tet]
        tri_used = case_used[tet, case]  # [T, 2]
        which, k = tri_used.nonzero(as_tuple=True)
        cell, tet = cell[which], tet[which]
        local = case_tris[tet, case[which], k]  # [F, 3] local edge indices
        start = vid[cell[:, None], edge_lo[tet[:, None], local]]  # [F, 3] grid id of each edge's start
        keys.append(start * 8 + edge_code[tet[:, None], local])
    keys = torch.cat(keys) if keys else torch.zeros(0, 3, dtype=torch.long, device=dev)
    if len(keys) == 0:
        return field.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=dev)

    uniq, faces = torch.unique(keys.reshape(-1), return_inverse=True)
    faces = faces.reshape(-1, 3)
    code = uniq % 8
    offset = CORNERS.to(dev)[code]  # [N, 3] edge direction in grid steps
    a = uniq // 8
    b = a + (offset * strides).sum(-1)
    sa, sb = flat[a].to(work), flat[b].to(work)
    t = torch.nan_to_num((level - sa) / (sb - sa), nan=0.5).clamp(0, 1)
    index = torch.stack([a // (Y * Z), a // Z % Y, a % Z], -1).to(work)
    lo_c, hi_c = lo_corner.to(dev, work), hi_corner.to(dev, work)
    spacing = (hi_c - lo_c) / torch.tensor([X - 1, Y - 1, Z - 1], device=dev, dtype=work)
    vertices = lo_c + (index + t[:, None] * offset.to(work)) * spacing

    if drop_degenerate:
        # a vertex at an edge end (t exactly 0 or 1) is that grid point: give it the point's id (code 0)
        point = torch.where(t == 0, a, torch.where(t == 1, b, -1))
        merged = torch.where(point >= 0, point * 8, uniq)
        merged_uniq, remap = torch.unique(merged, return_inverse=True)
        faces = remap[faces]
        keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        faces = faces[keep]
        first = torch.full((len(merged_uniq),), len(remap), dtype=torch.long, device=dev)
        first = first.scatter_reduce(0, remap, torch.arange(len(remap), device=dev), "amin")
        vertices = vertices[first]
        used, faces = torch.unique(faces.reshape(-1), return_inverse=True)  # drop unreferenced vertices
        vertices, faces = vertices[used], faces.reshape(-1, 3)
    return vertices.to(out_dtype), faces
