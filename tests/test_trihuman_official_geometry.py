"""The official geometry branch (models/trihuman/official/geometry): the uniform Laplacian against a loop,
the stage-1 midpoints, and the projection onto an SDF's zero level with hand vertices frozen (a known SDF:
the signed distance to a flat template minus 1 cm, through the real closest-face mapping)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from papernodes.models.trihuman.official import geometry as G
from papernodes.models.trihuman.official.files import edges_from_faces

torch.set_num_threads(1)
F64 = torch.float64


def _strip(nx=5, ny=3, step=0.05):
    v = torch.tensor([[i * step, j * step, 0.0] for i in range(nx) for j in range(ny)], dtype=F64)
    f = []
    for i in range(nx - 1):
        for j in range(ny - 1):
            a, b, c, d = i * ny + j, (i + 1) * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1
            f += [[a, b, c], [b, d, c]]
    return v, torch.tensor(f)


def _loop_subdivision_stage(faces, n):
    """A stage-1 dict as the release's pickle holds it: old vertices (st = ed), then one per edge."""
    st, ed = list(range(n)), list(range(n))
    mid = {}
    for a, b in edges_from_faces(faces).tolist():
        mid[(a, b)] = len(st)
        st.append(a)
        ed.append(b)
    new_faces = []
    for a, b, c in faces.tolist():
        ab, bc, ca = (mid[tuple(sorted(p))] for p in ((a, b), (b, c), (c, a)))
        new_faces += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return {
        "faces": torch.tensor(new_faces),
        "prev_to_cur_st": torch.tensor(st),
        "prev_to_cur_ed": torch.tensor(ed),
    }


def test_uniform_laplacian_equals_a_loop():
    v, f = _strip()
    x = torch.randn(v.shape[0], 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    got = torch.sparse.mm(G.uniform_laplacian(f, v.shape[0]), x)
    nbrs = [set() for _ in range(v.shape[0])]
    for a, b in edges_from_faces(f).tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    want = torch.stack([x[i] - x[sorted(nbrs[i])].mean(0) for i in range(v.shape[0])])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_subdivide_gives_midpoints():
    v, f = _strip()
    stage = _loop_subdivision_stage(f, v.shape[0])
    pts = G.subdivide(v, stage)
    torch.testing.assert_close(pts[: v.shape[0]], v, rtol=0, atol=0)
    k = v.shape[0]
    torch.testing.assert_close(pts[k], (v[stage["prev_to_cur_st"][k]] + v[stage["prev_to_cur_ed"][k]]) / 2)


class _OffsetSDF(torch.nn.Module):
    """sdf = d - 0.01 (d: the signed distance the mapping feeds in as the third input), no features."""

    def forward(self, x):
        return torch.cat([x[:, 2:3] - 0.01, torch.zeros_like(x[:, :4])], 1)


def test_surface_lands_on_the_zero_level_and_hands_stay():
    v, f = _strip()
    uvs = (v[:, :2] / v[:, :2].amax(0) * 0.8 + 0.1)[f]
    stage = _loop_subdivision_stage(f, v.shape[0])
    keep = torch.ones(v.shape[0], dtype=F64)
    keep[0] = 0.0  # a "hand" vertex: it and the midpoints touching it stay put
    implicit = SimpleNamespace(sdf_network=_OffsetSDF())
    planes = torch.zeros(3, 4, 4, dtype=F64)
    out = G.release_surface(implicit, planes, v, f, uvs, stage, keep, iterations=2)
    frozen = (stage["prev_to_cur_st"] == 0) | (stage["prev_to_cur_ed"] == 0)
    start = G.subdivide(v, stage)
    torch.testing.assert_close(out[frozen], start[frozen], rtol=0, atol=0)
    # every other vertex sits on the offset surface z = 0.01 (the face-plane signed distance is +z here),
    # measured from the template moved by the release's 2e-6 before the mapping
    level = 0.01 + G.MAPPING_OFFSET
    torch.testing.assert_close(out[~frozen, 2], torch.full_like(out[~frozen, 2], level), rtol=0, atol=1e-12)
    assert (
        out[~frozen, :2] - start[~frozen, :2]
    ).abs().max() > 1e-3  # the Laplacian step moved them in-plane
