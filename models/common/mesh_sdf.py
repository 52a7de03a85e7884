"""Signed distance and surface colour of a triangle mesh on a grid, in pure torch (no rtree, no CUDA).

- Distance: the exact closest point on every triangle (Ericson, *Real-Time Collision Detection*, 5.1.5,
  vectorised over points x faces, in chunks), the nearest triangle's point and barycentrics.
- Sign: the generalised winding number (Jacobson et al. 2013): the solid angles of all triangles seen from
  the point (Van Oosterom & Strackee's formula) summed over 4π; inside where it exceeds 1/2. It is exact for
  closed meshes and degrades gracefully on the holes and self-intersections of downloaded meshes, where an
  inside test by ray parity does not.
- Colour: the nearest surface point's colour, interpolated from the vertex colours by its barycentrics.

Cost is points x faces (a 32³ grid of a 10 000-face mesh: ~3e8 point-face pairs, a few seconds per term on
one CPU thread), so data preparation caches the result.
"""

from __future__ import annotations

import math

import torch

from .errors import InputError

PAIR_CHUNK = 1 << 22  # point-face pairs per chunk (~200 MB of float32 temporaries per term)


def _check(vertices: torch.Tensor, faces: torch.Tensor) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise InputError("vertices", "[N >= 3, 3] positions", str(tuple(vertices.shape)))
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) < 1:
        raise InputError("faces", "[M >= 1, 3] vertex indices", str(tuple(faces.shape)))
    if int(faces.min()) < 0 or int(faces.max()) >= len(vertices):
        raise InputError(
            "faces", f"indices in 0..{len(vertices) - 1}", f"{int(faces.min())}..{int(faces.max())}"
        )


def _chunks(points: torch.Tensor, faces: int):
    step = max(1, PAIR_CHUNK // faces)
    for lo in range(0, len(points), step):
        yield lo, points[lo : lo + step]


def closest_points(
    points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, max_distance: float | None = None
) -> tuple[torch.Tensor, ...]:
    """For points [P, 3]: (distance [P], nearest face index [P], barycentrics [P, 3] of the nearest point on
    that face, weights of its vertices faces[i, 0..2]).

    Exact, with pruning: a face's distance is at least (distance to its centroid - its radius), and the
    nearest centroid bounds the answer from above (a centroid is on its face), so only faces whose lower
    bound is below that upper bound are solved. With `max_distance`, points whose every lower bound is at
    least that far are not solved: they get their nearest centroid (distance >= max_distance, barycentrics
    1/3 each), which is all a truncated SDF needs of them."""
    _check(vertices, faces)
    tri = vertices[faces.long()]  # [F, 3, 3]
    centre = tri.mean(1)
    radius = (tri - centre[:, None]).norm(dim=-1).amax(1)
    dist = points.new_empty(len(points))
    index = torch.empty(len(points), dtype=torch.long, device=points.device)
    bary = points.new_full((len(points), 3), 1 / 3)
    for lo, p in _chunks(points, len(tri)):
        to_centre = torch.cdist(p, centre)
        upper, nearest_centre = to_centre.min(1)
        lower = to_centre - radius
        d, i = upper.clone(), nearest_centre
        w = bary[lo : lo + len(p)]
        solve = (
            torch.ones_like(upper, dtype=torch.bool) if max_distance is None else lower.amin(1) < max_distance
        )
        if solve.any():
            low = lower[solve]
            k = int(
                (low <= upper[solve, None]).sum(1).max()
            )  # every face that can be nearest is in the top k
            cand = low.topk(k, dim=1, largest=False).indices
            d[solve], i[solve], w[solve] = _nearest(p[solve], tri[cand], cand)
        dist[lo : lo + len(p)], index[lo : lo + len(p)], bary[lo : lo + len(p)] = d, i, w
    return dist, index, bary


def _nearest(p: torch.Tensor, tri: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Nearest of each point's triangles tri [P, K, 3, 3] (face ids [P, K]): distance, face id, barycentrics."""
    w = _barycentrics(p, tri)  # [P, K, 3]
    q = torch.einsum("pkj,pkjc->pkc", w, tri)
    d2 = (p[:, None] - q).square().sum(-1)
    best = d2.argmin(1)
    rows = torch.arange(len(p), device=p.device)
    return d2[rows, best].sqrt(), ids[rows, best], w[rows, best]


def _barycentrics(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Barycentrics [P, K, 3] of the closest point of each point's triangles [P, K, 3, 3] (Ericson 5.1.5)."""
    a, b, c = (tri[:, :, k] for k in range(3))
    ab, ac, ap = b - a, c - a, p[:, None] - a
    bp, cp = p[:, None] - b, p[:, None] - c
    dot = lambda x, y: (x * y).sum(-1)  # noqa: E731
    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = torch.finfo(p.dtype).tiny
    # interior (default); then Ericson's regions in reverse of his early returns (A, B, AB, C, AC, BC), so
    # that where two tie the first of his order wins
    denom = (va + vb + vc).clamp_min(tiny)
    v, w = vb / denom, vc / denom
    out = torch.stack([1 - v - w, v, w], -1)
    edge = lambda t, i, j: _on_edge(t, i, j)  # noqa: E731
    e_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(tiny)
    e_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    t_ac = d2 / (d2 - d6).clamp_min(tiny)
    e_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    t_ab = d1 / (d1 - d3).clamp_min(tiny)
    for mask, weights in (
        (e_bc, edge(t_bc, 1, 2)),
        (e_ac, edge(t_ac, 0, 2)),
        ((d6 >= 0) & (d5 <= d6), _vertex(d6, 2)),
        (e_ab, edge(t_ab, 0, 1)),
        ((d3 >= 0) & (d4 <= d3), _vertex(d3, 1)),
        ((d1 <= 0) & (d2 <= 0), _vertex(d1, 0)),
    ):
        out = torch.where(mask[..., None], weights, out)
    return out


def _on_edge(t: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Weights (1 - t) on vertex i and t on vertex j."""
    out = torch.zeros(*t.shape, 3, dtype=t.dtype, device=t.device)
    out[..., i], out[..., j] = 1 - t, t
    return out


def _vertex(like: torch.Tensor, i: int) -> torch.Tensor:
    out = torch.zeros(*like.shape, 3, dtype=like.dtype, device=like.device)
    out[..., i] = 1
    return out


def winding_numbers(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Generalised winding number [P] of each point (1 inside a closed, outward-oriented mesh, 0 outside)."""
    _check(vertices, faces)
    tri = vertices[faces.long()]
    out = points.new_empty(len(points))
    for lo, p in _chunks(points, len(tri)):
        a, b, c = (tri[None, :, k] - p[:, None] for k in range(3))
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.linalg.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
        out[lo : lo + len(p)] = (2 * torch.atan2(det, den)).sum(1) / (4 * math.pi)
    return out


def mesh_sdf(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    colors: torch.Tensor | None = None,
    max_distance: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(signed distance [P], negative inside; colour [P, C] of the nearest surface point, or None) for
    points [P, 3] against a mesh with optional per-vertex `colors` [N, C]. With `max_distance`, both are
    exact within it and beyond it the distance is only known to be at least that (see `closest_points`)."""
    dist, index, bary = closest_points(points, vertices, faces, max_distance)
    inside = winding_numbers(points, vertices, faces) > 0.5
    sdf = torch.where(inside, -dist, dist)
    if colors is None:
        return sdf, None
    if colors.ndim != 2 or len(colors) != len(vertices):
        raise InputError("colors", f"one colour per vertex [{len(vertices)}, C]", str(tuple(colors.shape)))
    corner = colors[faces.long()[index]]  # [P, 3, C]
    return sdf, (bary[..., None] * corner.to(bary.dtype)).sum(1)
