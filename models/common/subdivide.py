"""Midpoint subdivision of triangle meshes in torch: every edge gets one new vertex at its midpoint and
every face becomes four (the same topology for every frame of a template, as TriHuman's geometry output
needs: subdivide once, then move the vertices).

New vertex ids: the V original vertices keep theirs; edge midpoints follow as V + edge index, edges
numbered in order of their sorted (low, high) vertex pairs, so the result depends only on the input
arrays. Faces: for a face (a, b, c) with edge midpoints ab, bc, ca the four children are (a, ab, ca),
(ab, b, bc), (ca, bc, c) and (ab, bc, ca): each keeps the parent's winding, so outward normals stay
outward. Per-vertex attributes (UVs, colours, skinning weights) are averaged at midpoints; per-corner
attributes [F, 3, k] (UVs with seams) are subdivided per face, so a seam stays a seam.
"""

from __future__ import annotations

import torch

from .errors import InputError


def _check(vertices: torch.Tensor, faces: torch.Tensor) -> None:
    if not isinstance(vertices, torch.Tensor) or vertices.ndim != 2 or not vertices.is_floating_point():
        raise InputError(
            "vertices", "floating-point vertex attributes [V, k]", repr(getattr(vertices, "shape", vertices))
        )
    if (
        not isinstance(faces, torch.Tensor)
        or faces.ndim != 2
        or faces.shape[1] != 3
        or faces.is_floating_point()
    ):
        raise InputError("faces", "integer triangles [F, 3]", repr(getattr(faces, "shape", faces)))
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[0]):
        raise InputError(
            "faces",
            f"vertex indices in 0..{vertices.shape[0] - 1}",
            f"{int(faces.min())}..{int(faces.max())}",
        )


def edges_of(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique sorted edges [E, 2], each face corner-edge's index [F, 3]: edges ab, bc, ca)."""
    pairs = torch.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 1)  # [F, 3, 2]
    pairs = pairs.sort(-1).values.reshape(-1, 2)
    edges, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    return edges, inverse.reshape(-1, 3)


def subdivide_midpoint(
    vertices: torch.Tensor, faces: torch.Tensor, *attributes: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """(vertices [V + E, 3], faces [4F, 3], *attributes) after one midpoint subdivision.

    attributes: per-vertex [V, k] (averaged at midpoints) or per-corner [F, 3, k] (subdivided per face)."""
    _check(vertices, faces)
    faces = faces.long()
    n = vertices.shape[0]
    edges, corner_edges = edges_of(faces)
    mid = n + corner_edges  # [F, 3]: ids of the midpoints of ab, bc, ca
    a, b, c = faces.unbind(1)
    ab, bc, ca = mid.unbind(1)
    children = torch.stack(
        [torch.stack([a, ab, ca], 1), torch.stack([ab, b, bc], 1), torch.stack([ca, bc, c], 1),
         torch.stack([ab, bc, ca], 1)], 1
    ).reshape(-1, 3)  # fmt: skip
    out = [torch.cat([vertices, vertices[edges].mean(1)]), children]
    for i, attr in enumerate(attributes):
        if isinstance(attr, torch.Tensor) and attr.ndim == 2 and attr.shape[0] == n:
            out.append(torch.cat([attr, attr[edges].to(torch.float64).mean(1).to(attr.dtype)]))
        elif isinstance(attr, torch.Tensor) and attr.ndim == 3 and attr.shape[:2] == faces.shape:
            pa, pb, pc = attr.unbind(1)
            mab, mbc, mca = (pa + pb) / 2, (pb + pc) / 2, (pc + pa) / 2
            out.append(torch.stack([torch.stack([pa, mab, mca], 1), torch.stack([mab, pb, mbc], 1),
                                    torch.stack([mca, mbc, pc], 1), torch.stack([mab, mbc, mca], 1)], 1
                                   ).reshape(-1, 3, attr.shape[-1]))  # fmt: skip
        else:
            raise InputError(f"attributes[{i}]", f"per-vertex [{n}, k] or per-corner [{faces.shape[0]}, 3, k]",
                             repr(getattr(attr, "shape", attr)))  # fmt: skip
    return tuple(out)
