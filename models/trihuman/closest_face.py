"""Closest point on a triangle mesh for many query points, in pure torch: TriHuman's texture-cube mapping.

TriHuman maps every ray sample x to its closest point on the posed template and reads its tri-plane
features at (u, v, d): the UV coordinates of that closest point and the signed distance of x from the
surface. It searches ~20 candidate faces per sample instead of all faces; `closest_points_candidates`
takes the faces whose centroids are nearest (exactly the k nearest: a uniform grid of centroids proves
them for points near the surface, the others fall back to a dense search), and `closest_points_brute`
checks every face: the reference it is measured against (benchmarks/trihuman_closest_face.py).

How: a face is chosen by a selection kernel that needs one matrix product per chunk of points (every
dot product of the region tests is linear in the query point) and scalar arithmetic on [points, faces]
arrays; the chosen face's closest point, barycentrics and distance are then computed once per point by
the exact vector form (Voronoi regions of the triangle: vertex, edge and face regions, as in Ericson,
"Real-Time Collision Detection", 5.1.5). Both searches share both kernels, so where they choose the same
face their results are bitwise equal.

Conventions:
- Ties: faces within a few hundred ulps of the nearest distance (the same point on a shared edge or
  vertex) count as tied and the lowest face index wins, in both searches.
- Zero-area faces are skipped when choosing (in a manifold mesh their points lie on their neighbours'
  edges); guarded divisions keep NaN out of the exact kernel for any triangle.
- Barycentrics [P, 3] are with respect to the face's corners in `faces` order; closest = sum_k b_k v_k.
- Sign of d: positive on the side the face normal (b - a) x (c - a) points to, i.e. outside for a closed
  mesh wound counter-clockwise seen from outside (trimesh's convention). When the closest point is on an
  edge or a vertex, the face normal of whichever face won the tie can point the wrong way at sharp
  edges; the default `sign="pseudonormal"` therefore uses the angle-weighted vertex normal or the edge
  normal (sum of the two faces' normals) there (Baerentzen & Aanaes 2005), which gives the correct inside /
  outside for closed meshes; inside a face both are the face normal. `sign="face"` uses the face normal
  always (what a face-normal implementation does).
- dtype and device follow the inputs (the promoted floating dtype of points and vertices).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..common.errors import InputError

PAIR_BUDGET = 1 << 16  # (point, face) pairs evaluated at once: ~100 B each; small enough to stay in cache
CENTROID_BUDGET = 1 << 22  # (point, centroid) distances at once in the dense candidate search: 4-8 B each
GRID_MIN_FACES = 1024  # below this the dense candidate search is as fast as the grid
GRID_MAX_CELLS = 1 << 20  # cells of the centroid grid at most (two int64 per cell: 16 MB)
GRID_DISC = 2.0  # a disc of radius `cell` on the surface holds about GRID_DISC * k centroids
GRID_CHUNK = 1024  # points of one cell per matrix product in the grid search


class ClosestPoints(NamedTuple):
    points: torch.Tensor  # [P, 3] closest surface points
    face_index: torch.Tensor  # [P] long
    barycentrics: torch.Tensor  # [P, 3]
    distance: torch.Tensor  # [P] unsigned
    signed_distance: torch.Tensor  # [P] > 0 on the normal side (outside)
    uvd: torch.Tensor | None  # [P, 3] texture-cube coordinates (u, v, signed distance), when uvs are given


def _shape(x) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_mesh(
    points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    for name, x, what in (
        ("points", points, "query points [P, 3]"),
        ("vertices", vertices, "vertices [N, 3]"),
    ):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 3:
            raise InputError(name, what, _shape(x))
        if not x.is_floating_point():
            raise InputError(name, f"floating-point {what}", str(x.dtype))
    if not isinstance(faces, torch.Tensor) or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError("faces", "triangle indices [F, 3]", _shape(faces))
    if faces.is_floating_point() or faces.is_complex() or faces.dtype == torch.bool:
        raise InputError("faces", "integer triangle indices [F, 3]", str(faces.dtype))
    if faces.shape[0] == 0:
        raise InputError("faces", "at least one triangle", "0 faces")
    lo, hi = int(faces.min()), int(faces.max())
    if lo < 0 or hi >= vertices.shape[0]:
        raise InputError(
            "faces",
            f"vertex indices in 0..{vertices.shape[0] - 1} ({vertices.shape[0]} vertices)",
            f"index {lo if lo < 0 else hi}",
        )
    for name, x in (("points", points), ("vertices", vertices)):
        if not bool(torch.isfinite(x).all()):
            raise InputError(name, "finite coordinates", "NaN or inf")
    dtype = torch.promote_types(points.dtype, vertices.dtype)
    return points.to(dtype), vertices.to(dtype), faces.long()


def _check_chunk(chunk: int | None, name: str = "chunk") -> None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise InputError(name, "a positive number of points per chunk (or None)", repr(chunk))


def _check_sign(sign: str) -> None:
    if sign not in ("pseudonormal", "face"):
        raise InputError("sign", "'pseudonormal' or 'face'", repr(sign))


# ---------------------------------------------------------------------------------- point-triangle distance


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum(-1)


def _safe(den: torch.Tensor) -> torch.Tensor:
    return torch.where(den == 0, torch.ones_like(den), den)


def triangle_barycentrics(points: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Barycentrics [..., 3] of the closest point of each triangle [..., 3, 3] to points [..., 3].

    Ericson's region tests, in his order of precedence (vertex a, vertex b, edge ab, vertex c, edge ac,
    edge bc, interior); all regions are computed and the first that applies is kept. Edge and vertex
    regions give exact zeros, which `_signs` uses to tell where on the face the closest point is.
    """
    a, b, c = triangles.unbind(-2)
    ab, ac = b - a, c - a
    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    zero, one = torch.zeros_like(d1), torch.ones_like(d1)

    den = _safe(va + vb + vc)  # interior (lowest precedence: the starting value)
    v, w = vb / den, vc / den
    out = torch.stack([1 - v - w, v, w], -1)

    def keep(cond: torch.Tensor, bary: list[torch.Tensor]) -> None:
        nonlocal out
        out = torch.where(cond[..., None], torch.stack(bary, -1), out)

    w = (d4 - d3) / _safe((d4 - d3) + (d5 - d6))
    keep((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), [zero, 1 - w, w])  # edge bc
    w = d2 / _safe(d2 - d6)
    keep((vb <= 0) & (d2 >= 0) & (d6 <= 0), [1 - w, zero, w])  # edge ac
    keep((d6 >= 0) & (d5 <= d6), [zero, zero, one])  # vertex c
    v = d1 / _safe(d1 - d3)
    keep((vc <= 0) & (d1 >= 0) & (d3 <= 0), [1 - v, v, zero])  # edge ab
    keep((d3 >= 0) & (d4 <= d3), [zero, one, zero])  # vertex b
    keep((d1 <= 0) & (d2 <= 0), [one, zero, zero])  # vertex a
    return out


def closest_point_on_triangle(
    points: torch.Tensor, triangles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(closest points [..., 3], barycentrics [..., 3]) of points [..., 3] on triangles [..., 3, 3]
    (leading dimensions broadcast): the exact primitive both searches use."""
    bary = triangle_barycentrics(points, triangles)
    return (bary[..., None] * triangles).sum(-2), bary


class _FaceTable(NamedTuple):
    """Per-face constants of the selection kernel. Every dot product the region tests need is linear in the
    query point p, so for all pairs they come from one matrix product p . (ab, ac, n) minus per-face
    offsets; the rest is scalar arithmetic on [points, faces] arrays (no [points, faces, 3] temporaries)."""

    directions: torch.Tensor  # [F, 3, 3]: ab, ac, unit normal n
    offsets: torch.Tensor  # [F, 3]: a.ab, a.ac, a.n
    gram: torch.Tensor  # [F, 6]: ab.ab, ab.ac, ac.ac and the inverse Gram matrix's g11, g12, g22
    degenerate: torch.Tensor  # [F] bool: zero-area faces (skipped by the selection)


def _face_table(vertices: torch.Tensor, faces: torch.Tensor) -> _FaceTable:
    a, b, c = vertices[faces].unbind(1)
    ab, ac = b - a, c - a
    aa, bc, cc = _dot(ab, ab), _dot(ab, ac), _dot(ac, ac)
    det = aa * cc - bc * bc
    degenerate = det <= 64 * torch.finfo(det.dtype).eps * aa * cc
    inv = 1 / torch.where(degenerate, torch.ones_like(det), det)
    n = torch.linalg.cross(ab, ac, dim=-1)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(n.dtype).tiny)
    directions = torch.stack([ab, ac, n], 1)
    offsets = torch.stack([_dot(a, ab), _dot(a, ac), _dot(a, n)], -1)
    gram = torch.stack([aa, bc, cc, cc * inv, -bc * inv, aa * inv], -1)
    return _FaceTable(directions, offsets, gram, degenerate)


def _selection_distance(
    d1: torch.Tensor,
    d2: torch.Tensor,
    h: torch.Tensor,
    gram: tuple[torch.Tensor, ...],
    degenerate: torch.Tensor,
) -> torch.Tensor:
    """Squared point-triangle distances from d1 = ab.ap, d2 = ac.ap, h = n.ap (the height over the plane).

    Ericson's regions give the closest point's (v, w); the distance is then measured in the face's frame,
    h^2 + |(alpha - v) ab + (beta - w) ac|^2 with (alpha, beta) the point's in-plane coordinates, which stays
    accurate to round-off in the distance (not in its square) for points near the surface. Used to choose
    the face only; the reported result is recomputed by `closest_point_on_triangle`. Degenerate faces get
    +inf (in a manifold mesh their points lie on their neighbours' edges)."""
    aa, bc, cc, g11, g12, g22 = gram
    d3, d4, d5, d6 = d1 - aa, d2 - bc, d1 - bc, d2 - cc
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    zero, one = torch.zeros_like(d1), torch.ones_like(d1)
    den = _safe(va + vb + vc)
    v, w = vb / den, vc / den  # interior
    t = (d4 - d3) / _safe((d4 - d3) + (d5 - d6))
    cond = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)  # edge bc
    v, w = torch.where(cond, 1 - t, v), torch.where(cond, t, w)
    t = d2 / _safe(d2 - d6)
    cond = (vb <= 0) & (d2 >= 0) & (d6 <= 0)  # edge ac
    v, w = torch.where(cond, zero, v), torch.where(cond, t, w)
    cond = (d6 >= 0) & (d5 <= d6)  # vertex c
    v, w = torch.where(cond, zero, v), torch.where(cond, one, w)
    t = d1 / _safe(d1 - d3)
    cond = (vc <= 0) & (d1 >= 0) & (d3 <= 0)  # edge ab
    v, w = torch.where(cond, t, v), torch.where(cond, zero, w)
    cond = (d3 >= 0) & (d4 <= d3)  # vertex b
    v, w = torch.where(cond, one, v), torch.where(cond, zero, w)
    cond = (d1 <= 0) & (d2 <= 0)  # vertex a
    v, w = torch.where(cond, zero, v), torch.where(cond, zero, w)
    dv = g11 * d1 + g12 * d2 - v
    dw = g12 * d1 + g22 * d2 - w
    dist2 = h * h + dv * dv * aa + 2 * dv * dw * bc + dw * dw * cc
    return torch.where(degenerate, torch.full_like(dist2, float("inf")), dist2)


# -------------------------------------------------------------------------------------------------- normals


def _face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = vertices[faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(n.dtype).tiny)


def _pseudonormals(
    vertices: torch.Tensor, faces: torch.Tensor, face_normals: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertex pseudonormals [N, 3]: the face normals weighted by the face's angle at the vertex;
    edge normals per face edge [F, 3, 3]: edge k joins corners k and k + 1, the sum of its faces' normals)."""
    tri = vertices[faces]
    angles = []
    for k in range(3):
        e1 = tri[:, (k + 1) % 3] - tri[:, k]
        e2 = tri[:, (k + 2) % 3] - tri[:, k]
        cos = _dot(e1, e2) / (e1.norm(dim=-1) * e2.norm(dim=-1)).clamp_min(torch.finfo(e1.dtype).tiny)
        angles.append(torch.arccos(cos.clamp(-1, 1)))
    angle = torch.stack(angles, -1)  # [F, 3]
    vertex_normals = torch.zeros_like(vertices).index_add_(
        0, faces.reshape(-1), (angle[..., None] * face_normals[:, None]).reshape(-1, 3)
    )
    ends = torch.stack([faces, faces.roll(-1, dims=1)], -1)  # [F, 3, 2]: edge k = (corner k, corner k+1)
    lo, hi = ends.amin(-1), ends.amax(-1)
    key = lo * vertices.shape[0] + hi
    unique, inverse = torch.unique(key.reshape(-1), return_inverse=True)
    edge_sum = torch.zeros(len(unique), 3, dtype=vertices.dtype, device=vertices.device).index_add_(
        0, inverse, face_normals[:, None].expand(-1, 3, 3).reshape(-1, 3)
    )
    return vertex_normals, edge_sum[inverse].reshape(-1, 3, 3)


def _signs(
    offset: torch.Tensor,
    face: torch.Tensor,
    bary: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    sign: str,
) -> torch.Tensor:
    """+1 / -1 per point: which side of the surface (point - closest) lies on."""
    face_normals = _face_normals(vertices, faces)
    normal = face_normals[face]
    if sign == "pseudonormal":
        vertex_normals, edge_normals = _pseudonormals(vertices, faces, face_normals)
        zeros = bary == 0
        n_zero = zeros.sum(-1)
        corner = bary.argmax(-1)  # the vertex, when two barycentrics are zero
        edge = (zeros.long().argmax(-1) + 1) % 3  # the edge opposite the zero corner, when one is zero
        on_edge = edge_normals[face, edge]
        on_vertex = vertex_normals[faces[face, corner]]
        normal = torch.where((n_zero == 1)[:, None], on_edge, normal)
        normal = torch.where((n_zero >= 2)[:, None], on_vertex, normal)
    return torch.where(_dot(offset, normal) < 0, -1.0, 1.0).to(offset.dtype)


def _finish(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    face: torch.Tensor,
    uvs: torch.Tensor | None,
    sign: str,
) -> ClosestPoints:
    """Everything about the chosen faces, computed the same way by both searches (so where they choose the
    same face their results are bitwise equal)."""
    closest, bary = closest_point_on_triangle(points, vertices[faces[face]])
    offset = points - closest
    distance = offset.norm(dim=-1)
    signed = distance * _signs(offset, face, bary, vertices, faces, sign)
    uvd = None
    if uvs is not None:
        corner_uv = _corner_uvs(uvs, faces, vertices.shape[0])
        uv = (bary[..., None].to(corner_uv.dtype) * corner_uv[face]).sum(-2)
        uvd = torch.cat([uv.to(signed.dtype), signed[:, None]], -1)
    return ClosestPoints(closest, face, bary, distance, signed, uvd)


def _corner_uvs(uvs: torch.Tensor, faces: torch.Tensor, n_vertices: int) -> torch.Tensor:
    if isinstance(uvs, torch.Tensor) and uvs.is_floating_point():
        if uvs.shape == (n_vertices, 2):
            return uvs[faces]
        if uvs.shape == (faces.shape[0], 3, 2):
            return uvs
    raise InputError(
        "uvs",
        f"floating-point texture coordinates [{n_vertices}, 2] per vertex or [{faces.shape[0]}, 3, 2] per face corner",
        _shape(uvs),
    )


def _check_uvs(uvs: torch.Tensor | None, vertices: torch.Tensor, faces: torch.Tensor) -> None:
    if uvs is not None:
        _corner_uvs(uvs, faces, vertices.shape[0])


# ---------------------------------------------------------------------------------------------- the searches


def _tie_tolerance(points: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """[P] distance band treated as a tie: a few hundred ulps of the coordinates' magnitude, well above the
    selection kernel's round-off, so both searches see the same set of tied faces."""
    scale = points.abs().amax(-1) + vertices.abs().amax()
    return 256 * torch.finfo(points.dtype).eps * scale


def _choose(dist2: torch.Tensor, tolerance: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """The lowest face index within `tolerance` of the nearest, per row (dist2 [c, n] of the faces `face`
    [c, n] or [n]): ties at shared edges and vertices resolve the same way whatever round-off says."""
    dist = dist2.clamp_min(0).sqrt()
    near = dist <= dist.amin(1, keepdim=True) + tolerance[:, None]
    return torch.where(near, face, torch.iinfo(face.dtype).max).amin(1)


def closest_points_brute(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    chunk: int | None = None,
    uvs: torch.Tensor | None = None,
    sign: str = "pseudonormal",
) -> ClosestPoints:
    """The closest surface point of each query point [P, 3] over every face: exact, O(P F).

    `chunk` points are tested against all faces at once (default: about PAIR_BUDGET point-face pairs);
    `uvs` ([N, 2] per vertex or [F, 3, 2] per corner) adds the texture-cube coordinates (u, v, d).
    """
    points, vertices, faces = _check_mesh(points, vertices, faces)
    _check_chunk(chunk)
    _check_sign(sign)
    _check_uvs(uvs, vertices, faces)
    with torch.no_grad():  # choosing needs no gradient; `_finish` carries it
        best = _choose_brute(points.detach(), vertices.detach(), faces, chunk)
    return _finish(points, vertices, faces, best, uvs, sign)


def _choose_brute(
    points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, chunk: int | None
) -> torch.Tensor:
    table = _face_table(vertices, faces)
    n_faces = faces.shape[0]
    directions = table.directions.transpose(0, 1).reshape(3 * n_faces, 3).T  # [3, 3F]: all ab, all ac, all n
    offsets = table.offsets.T.reshape(1, 3 * n_faces)
    gram = table.gram.T.contiguous().unbind(0)  # six [F] rows, broadcast against [c, F]
    tolerance = _tie_tolerance(points, vertices)
    every = torch.arange(n_faces, device=points.device)
    step = chunk or max(1, PAIR_BUDGET // n_faces)
    best = torch.empty(points.shape[0], dtype=torch.long, device=points.device)
    for start in range(0, points.shape[0], step):
        dots = torch.addmm(offsets, points[start : start + step], directions, beta=-1)  # [c, 3F]
        d1, d2, h = dots.view(-1, 3, n_faces).unbind(1)
        dist2 = _selection_distance(d1, d2, h, gram, table.degenerate)
        best[start : start + step] = _choose(dist2, tolerance[start : start + step], every)
    return best


def candidate_faces(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    candidates: int = 20,
    chunk: int | None = None,
) -> torch.Tensor:
    """[P, k] indices of the k faces whose centroids are nearest each point, ascending by face index
    (k = min(candidates, F)).

    Meshes of more than GRID_MIN_FACES faces bin the centroids in a uniform grid (`_CentroidGrid`): points
    near the surface compare against a few hundred centroids around them, which proves their k nearest;
    the rest, and small meshes, compare against all (one matrix product |c|^2 - 2 p.c per chunk and
    `topk`). `chunk`: points per step (default GRID_CHUNK in the grid, about CENTROID_BUDGET distances in
    the dense search).
    """
    points, vertices, faces = _check_mesh(points, vertices, faces)
    _check_chunk(chunk)
    _check_candidates(candidates)
    with torch.no_grad():
        return _candidate_faces(points.detach(), vertices.detach(), faces, candidates, chunk).sort(1).values


def _check_candidates(candidates: int) -> None:
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise InputError("candidates", "a positive number of candidate faces", repr(candidates))


def _candidate_faces(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    candidates: int,
    chunk: int | None,
    grid_disc: float | tuple[float, ...] = GRID_DISC,
) -> torch.Tensor:
    """Several `grid_disc` values are tried in order, each on the points the previous grids did not prove
    (fine cells first: near-surface points compare against fewer centroids), then the dense search."""
    k = min(candidates, faces.shape[0])
    centroids = vertices[faces].mean(1)  # [F, 3]
    out = torch.empty(points.shape[0], k, dtype=torch.long, device=points.device)
    if faces.shape[0] <= GRID_MIN_FACES:
        return _nearest_dense(points, centroids, k, chunk, out)
    missed = torch.arange(points.shape[0], device=points.device)
    for disc in grid_disc if isinstance(grid_disc, tuple) else (grid_disc,):
        grid = _CentroidGrid.build(vertices, faces, centroids, k, disc)
        if grid is None or not missed.numel():
            break
        part = out[missed]
        found = grid.nearest(points[missed], k, chunk, part)
        out[missed] = part
        missed = missed[~found]
    if missed.numel():
        out[missed] = _nearest_dense(points[missed], centroids, k, chunk, out[missed])
    return out


def _nearest_dense(
    points: torch.Tensor, centroids: torch.Tensor, k: int, chunk: int | None, out: torch.Tensor
) -> torch.Tensor:
    """k nearest centroids against all of them: one matrix product (|c|^2 - 2 p.c; |p|^2 does not change
    the order) and `topk` per chunk. O(P F): the fallback of the grid and the path for small meshes."""
    c2 = centroids.square().sum(-1)
    step = chunk or max(1, CENTROID_BUDGET // centroids.shape[0])
    for start in range(0, points.shape[0], step):
        d2 = torch.addmm(c2, points[start : start + step], centroids.T, alpha=-2)
        out[start : start + step] = d2.topk(k, dim=1, largest=False, sorted=False).indices
    return out


# the 3 x 3 x 3 block of cells around a cell, as offsets [27, 3]
_NEIGHBOURS = torch.cartesian_prod(torch.arange(-1, 2), torch.arange(-1, 2), torch.arange(-1, 2))


class _CentroidGrid(NamedTuple):
    """Face centroids binned in a uniform grid of cubic cells of side `cell` (sorted by cell, CSR layout).

    Why exact: a point lies inside its own cell, so every centroid within distance `cell` of it lies in
    the 3 x 3 x 3 block around that cell. If the block holds k centroids no farther than `cell`, they are
    the k nearest of all; otherwise (too few nearby: points far from the surface) the point falls back to
    the dense search. The cell side is set from the mean face area so that a disc of the surface of
    radius `cell` holds about GRID_DISC * k centroids. Uneven meshes stay exact: cells of small faces just
    hold more centroids (slower), points among large faces fall back more often."""

    origin: torch.Tensor  # [3] corner of cell (0, 0, 0)
    cell: float
    dims: torch.Tensor  # [3] cells per axis
    start: torch.Tensor  # [cells] first entry of each cell in `order`
    count: torch.Tensor  # [cells] centroids per cell
    order: torch.Tensor  # [F] face ids sorted by cell
    centroids: torch.Tensor  # [F, 3]

    @staticmethod
    def build(
        vertices: torch.Tensor, faces: torch.Tensor, centroids: torch.Tensor, k: int, disc: float = GRID_DISC
    ):
        tri = vertices[faces]
        area = 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)
        mean_area = float(area.mean())
        if not mean_area > 0:
            return None
        lo, hi = centroids.amin(0), centroids.amax(0)
        cell = (disc * k * mean_area / torch.pi) ** 0.5
        extent = (hi - lo).clamp_min(cell)
        cells = float(torch.prod(extent / cell + 1))
        if cells > GRID_MAX_CELLS:  # a few faces far apart: coarser cells (still exact, just slower)
            cell *= (cells / GRID_MAX_CELLS) ** (1 / 3)
        dims = ((hi - lo) / cell).floor().long() + 1
        ids = _linear(((centroids - lo) / cell).floor().long(), dims)
        n_cells = int(torch.prod(dims))
        order = torch.argsort(ids, stable=True)
        count = torch.bincount(ids, minlength=n_cells)
        start = count.cumsum(0) - count
        return _CentroidGrid(lo, cell, dims, start, count, order, centroids)

    def nearest(self, points: torch.Tensor, k: int, chunk: int | None, out: torch.Tensor) -> torch.Tensor:
        """Fill out[p] with the k nearest centroids where the block proves them; returns which it did.

        The points of one cell share its block, so one matrix product against the block's centroids (as
        in the dense search, but over a few hundred centroids instead of all) and one `topk` serve them
        all, `chunk` points at a time."""
        found = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        for sel, face, cent, c2 in self._blocks(points, chunk or GRID_CHUNK):
            if face.numel() < k:
                continue
            p = points[sel]
            d2 = torch.addmm(c2, p, cent.T, alpha=-2) + p.square().sum(-1, keepdim=True)
            best = d2.topk(k, dim=1, largest=False, sorted=False)
            ok = best.values.amax(1) <= self.cell**2
            out[sel[ok]] = face[best.indices[ok]]
            found[sel[ok]] = True
        return found

    def _blocks(self, points: torch.Tensor, step: int):
        """Per group of points sharing a cell, `step` points at a time: (point ids, the face ids and
        centroids of the cell's 3 x 3 x 3 block, their squared norms). Points more than one cell outside
        the grid have no centroid in their block and are not visited."""
        device = points.device
        coords = ((points - self.origin) / self.cell).floor().long()  # [P, 3], may lie outside the grid
        high = self.dims - 1
        index = ((coords >= -1) & (coords <= self.dims)).all(-1).nonzero().squeeze(1)
        if not index.numel():
            return
        key = _linear(coords[index] + 1, self.dims + 2)  # cells of the grid grown by one on every side
        key, by_cell = key.sort(stable=True)
        index = index[by_cell]
        _, sizes = torch.unique_consecutive(key, return_counts=True)
        neighbours = _NEIGHBOURS.to(device)
        begin = 0
        for size, first_point in zip(sizes.tolist(), index[sizes.cumsum(0) - sizes].tolist(), strict=True):
            block = coords[first_point] + neighbours  # [27, 3]
            ids = _linear(block[((block >= 0) & (block <= high)).all(-1)], self.dims)
            counts = self.count[ids]
            total = int(counts.sum())
            if total:
                start = torch.repeat_interleave(self.start[ids] - (counts.cumsum(0) - counts), counts)
                face = self.order[start + torch.arange(total, device=device)]  # every face of the block
                cent = self.centroids[face]
                c2 = cent.square().sum(-1)
                for lo in range(begin, begin + size, step):
                    yield index[lo : min(lo + step, begin + size)], face, cent, c2
            begin += size


def _linear(coords: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    return (coords[..., 0] * dims[1] + coords[..., 1]) * dims[2] + coords[..., 2]


def closest_points_candidates(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    candidates: int = 20,
    chunk: int | None = None,
    uvs: torch.Tensor | None = None,
    sign: str = "pseudonormal",
    grid_disc: float | tuple[float, ...] = GRID_DISC,
) -> ClosestPoints:
    """The closest surface point among the `candidates` faces with the nearest centroids (TriHuman's fast
    path): exact distance to each candidate, the nearest wins. Equals `closest_points_brute` when the true
    closest face is among the candidates, which holds for points near a reasonably even mesh (the samples
    TriHuman keeps lie in a thin shell around the template); far points or very uneven faces can miss it.
    `uvs` adds (u, v, d); `chunk` is passed to `candidate_faces`; the exact distances to the candidates are
    taken about PAIR_BUDGET (point, face) pairs at a time. `grid_disc` sizes the centroid grid's cells
    (`_CentroidGrid`; the result does not depend on it): larger cells prove more points that lie farther
    from the surface (NeuS samples along a ray) at the cost of more centroids per block; a tuple of sizes
    is tried fine to coarse, each on the points the previous left unproven.
    """
    points, vertices, faces = _check_mesh(points, vertices, faces)
    _check_chunk(chunk)
    _check_sign(sign)
    _check_uvs(uvs, vertices, faces)
    _check_candidates(candidates)
    with torch.no_grad():  # choosing needs no gradient; `_finish` carries it
        best = _choose_candidates(points.detach(), vertices.detach(), faces, candidates, chunk, grid_disc)
    return _finish(points, vertices, faces, best, uvs, sign)


def closest_points_on_faces(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    face_index: torch.Tensor,
    uvs: torch.Tensor | None = None,
    sign: str = "pseudonormal",
) -> ClosestPoints:
    """Everything the searches report, on faces already chosen (`face_index` [P], e.g. a search's
    `face_index` from a pass without autograd): the same computation, so bitwise equal to that search's
    result, and differentiable in the points and vertices. For renderers that search once and then need
    the gradient through the mapping only at some of the points."""
    points, vertices, faces = _check_mesh(points, vertices, faces)
    _check_sign(sign)
    _check_uvs(uvs, vertices, faces)
    if not isinstance(face_index, torch.Tensor) or face_index.shape != points.shape[:1]:
        raise InputError("face_index", f"one face index per point [{points.shape[0]}]", _shape(face_index))
    if face_index.numel() and (int(face_index.min()) < 0 or int(face_index.max()) >= faces.shape[0]):
        raise InputError("face_index", f"face indices in 0..{faces.shape[0] - 1}", "an index outside")
    return _finish(points, vertices, faces, face_index.long(), uvs, sign)


def _choose_candidates(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    candidates: int,
    chunk: int | None,
    grid_disc: float | tuple[float, ...] = GRID_DISC,
) -> torch.Tensor:
    cand = _candidate_faces(points, vertices, faces, candidates, chunk, grid_disc)  # [P, k]
    table = _face_table(vertices, faces)
    tolerance = _tie_tolerance(points, vertices)
    step = max(1, PAIR_BUDGET // cand.shape[1])
    best = torch.empty(points.shape[0], dtype=torch.long, device=points.device)
    for start in range(0, points.shape[0], step):
        idx = cand[start : start + step]  # [c, k]
        p = points[start : start + step]
        dots = (table.directions[idx] * p[:, None, None, :]).sum(-1) - table.offsets[idx]  # [c, k, 3]
        d1, d2, h = dots.unbind(-1)
        dist2 = _selection_distance(d1, d2, h, table.gram[idx].unbind(-1), table.degenerate[idx])
        best[start : start + step] = _choose(dist2, tolerance[start : start + step], idx)
    return best
