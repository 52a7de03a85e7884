"""Posing the official template (models/trihuman/official/posing): the release's embedded graph against a
plain-loop reference of its rule, DQS with the first-listed bone as pivot against Kavan's formula written
per vertex, the Euler convention, and the rig's invariants (rest pose = template, rigid root motion, zero
corrections = skinning, constant corrections carried through), on a small hand-written character."""

from __future__ import annotations

import math
from collections import deque

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.official import posing as P
from papernodes.models.trihuman.official import read_skeleton
from papernodes.models.trihuman.official.files import OfficialSkin, edges_from_faces

torch.set_num_threads(1)
F64 = torch.float64


def _grid(nx=9, ny=3, step=25.0):
    """A flat strip of nx x ny vertices (mm) along x, two triangles per cell."""
    xs, ys = torch.meshgrid(
        torch.arange(nx, dtype=F64) * step, torch.arange(ny, dtype=F64) * step, indexing="ij"
    )
    v = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.zeros(nx * ny, dtype=F64)], 1)
    f = []
    for i in range(nx - 1):
        for j in range(ny - 1):
            a, b, c, d = i * ny + j, (i + 1) * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1
            f += [[a, b, c], [b, d, c]]
    return v, torch.tensor(f)


def _plain_graph(template, faces, graph_vertices):
    """The release's rule, written with loops: greedy snapping, BFS hops, r = max(one-ring max // 2, 3),
    links within r (else 2r), Gaussian weights, normalised."""
    n_v = template.shape[0]
    nbrs = [set() for _ in range(n_v)]
    for a, b in edges_from_faces(faces).tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    used, nodes = set(), []
    for p in graph_vertices:
        d = [(float((template[i] - p).norm()) if i not in used else math.inf, i) for i in range(n_v)]
        k = min(d)[1]
        used.add(k)
        nodes.append(k)
    dists, radii = [], []
    for k in nodes:
        dist = [math.inf] * n_v
        dist[k] = 0
        q = deque([k])
        while q:
            c = q.popleft()
            for n in nbrs[c]:
                if dist[c] + 1 < dist[n]:
                    dist[n] = dist[c] + 1
                    q.append(n)
        dists.append(dist)
        radii.append(max(max(dist[n] for n in nbrs[k]) // 2, 3))
    links = []
    for i in range(n_v):
        rel = [dists[k][i] / radii[k] for k in range(len(nodes))]
        near = [k for k in range(len(nodes)) if rel[k] <= 1] or [k for k in range(len(nodes)) if rel[k] <= 2]
        w = [math.exp(-0.5 * rel[k] ** 2) for k in near]
        links += [(i, k, wk / sum(w)) for k, wk in zip(near, w)]
    return nodes, links


def test_graph_equals_the_plain_rule():
    v, f = _grid(13, 4)
    graph_pts = torch.tensor([[0, 0, 5], [100, 30, 0], [101, 30, 0], [200, 70, 0], [300, 0, 0]], dtype=F64)
    g = P.build_release_graph(v, f, graph_pts)
    nodes, links = _plain_graph(v, f, graph_pts)
    assert g.node_vertex.tolist() == nodes  # the second point near (100, 30) takes the next free vertex
    got = sorted(zip(g.link_vertex.tolist(), g.link_node.tolist(), g.link_weight.tolist()))
    assert [(a, b) for a, b, _ in got] == [(a, b) for a, b, _ in sorted(links)]
    for (_, _, w1), (_, _, w2) in zip(got, sorted(links)):
        assert abs(w1 - w2) < 1e-12
    assert g.radius.tolist() == [3] * 5


def test_graph_refuses_vertices_far_from_every_node():
    v, f = _grid(30, 2)
    with pytest.raises(InputError, match="graph"):
        P.build_release_graph(v, f, torch.tensor([[0.0, 0.0, 0.0]], dtype=F64))


def _rot(axis, angle):
    k = torch.tensor(axis, dtype=F64)
    k = k / k.norm()
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=F64)
    return torch.eye(3, dtype=F64) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def _rigid(axis, angle, t):
    m = torch.eye(4, dtype=F64)
    m[:3, :3], m[:3, 3] = _rot(axis, angle), torch.tensor(t, dtype=F64)
    return m


def _kavan(transforms, weights, pivot):
    """Per-vertex DQS written out: quaternion of each bone, sign by its dot with the pivot's, weighted sum,
    normalise, rotation matrix and translation 2 (q_e q_0*)."""

    def quat(r):
        w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
        x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
        y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
        z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
        return torch.tensor([w, x, y, z], dtype=F64)

    def mul(a, b):
        return torch.tensor(
            [a[0] * b[0] - a[1:] @ b[1:], *(a[0] * b[1:] + b[0] * a[1:] + torch.linalg.cross(a[1:], b[1:]))],
            dtype=F64,
        )

    out = []
    for v in range(weights.shape[0]):
        q0s = [quat(t[:3, :3]) for t in transforms]
        qes = [
            0.5 * mul(torch.cat([torch.zeros(1, dtype=F64), t[:3, 3]]), q) for t, q in zip(transforms, q0s)
        ]
        piv = q0s[int(pivot[v])]
        r, d = torch.zeros(4, dtype=F64), torch.zeros(4, dtype=F64)
        for j in range(len(transforms)):
            s = 1.0 if float(q0s[j] @ piv) > 0 else -1.0
            r, d = r + s * weights[v, j] * q0s[j], d + s * weights[v, j] * qes[j]
        n = r.norm()
        r, d = r / n, d / n
        conj = r * torch.tensor([1, -1, -1, -1], dtype=F64)
        t = 2 * mul(d, conj)[1:]
        w, x, y, z = r.tolist()
        rm = torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                           [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                           [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=F64)  # fmt: skip
        m = torch.eye(4, dtype=F64)
        m[:3, :3], m[:3, 3] = rm, t
        out.append(m)
    return torch.stack(out)


def test_dqs_uses_the_given_pivot_and_equals_kavan_per_vertex():
    # three bones whose quaternions chain: q_a . q_b > 0, q_b . q_c > 0, q_a . q_c < 0 (0, 120, 240 degrees)
    bones = torch.stack([_rigid([0, 0, 1], 0.0, [0, 0, 0]), _rigid([0, 0, 1], 2.1, [10, 0, 0]),
                         _rigid([0, 0, 1], 4.2, [0, 5, 3])])  # fmt: skip
    weights = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0]], dtype=F64)
    pivot = torch.tensor([0, 2, 1])
    got = P.release_dqs(bones[None], weights, pivot)[0]
    torch.testing.assert_close(got, _kavan(bones, weights, pivot), rtol=0, atol=1e-12)
    assert not torch.allclose(got[0], got[1], atol=1e-3)  # same weights, other pivot: another blend
    torch.testing.assert_close(got[2], bones[0], rtol=0, atol=1e-12)  # one bone: its transform


def test_euler_convention_and_round_trip():
    a = torch.tensor([[0.3, -0.7, 1.9], [-2.5, 0.2, -0.4]], dtype=F64)
    r = P.euler_to_matrix(a)
    want = torch.stack(
        [_rot([0, 0, 1], c) @ _rot([0, 1, 0], b) @ _rot([1, 0, 0], x) for x, b, c in a.tolist()]
    )
    torch.testing.assert_close(r, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(P.matrix_to_euler(r), a, rtol=0, atol=1e-12)
    gimbal = P.euler_to_matrix(torch.tensor([0.4, math.pi / 2, 0.0], dtype=F64))
    torch.testing.assert_close(P.euler_to_matrix(P.matrix_to_euler(gimbal)), gimbal, rtol=0, atol=1e-9)


SKELETON = """Skeletool Skeleton Definition V1.0
joints: 3
  Root_tx      prismatic none        0     0    0    1  0  0   1.0
  Root_rz      revolute  Root_tx     0     0    0    0  0  1   1.0
  Arm_ry       revolute  Root_rz   100     0    0    0  1  0   1.0
markers: 0
scaling joints: 0
dofs: 3
  translate_x   1
      nolimits
      Root_tx        1000
  rotate_z      1
      nolimits
      Root_rz        1
  bend      1
      nolimits
      Arm_ry         1
textureEntries: 0
"""


def _rig(tmp_path):
    path = tmp_path / "ddc.skeleton"
    path.write_text(SKELETON)
    skeleton = read_skeleton(path)
    v, f = _grid(9, 3)  # x from 0 to 200 mm: the arm starts at 100
    arm = (v[:, 0] - 75).clamp(0, 50) / 50  # a soft elbow between 75 and 125 mm
    weights = torch.stack([1 - arm, arm], 1)
    first = (arm > 0.5).long()  # the heavier bone listed first
    skin = OfficialSkin(("Root", "Arm"), weights, first)
    graph_pts = v[[0, 7, 13, 19, 26]] + 1.0
    return P.ReleaseRig.build(v, f, skeleton, skin, torch.zeros(3, dtype=F64), graph_pts), v


def test_rig_rest_pose_is_the_template_and_root_motion_is_rigid(tmp_path):
    rig, v = _rig(tmp_path)
    torch.testing.assert_close(rig.skinned(torch.zeros(1, 3, dtype=F64))[0], v, rtol=0, atol=1e-9)
    moved = rig.skinned(torch.tensor([[0.05, 0.0, 0.0]], dtype=F64))[0]
    torch.testing.assert_close(moved, v + torch.tensor([50.0, 0, 0], dtype=F64), rtol=0, atol=1e-9)
    turned = rig.skinned(torch.tensor([[0.0, 0.7, 0.0]], dtype=F64))[0]
    torch.testing.assert_close(turned, v @ _rot([0, 0, 1], 0.7).T, rtol=0, atol=1e-9)
    bent = rig.skinned(torch.tensor([[0.0, 0.0, 0.9]], dtype=F64))[0]
    # through the graph a vertex follows its nodes (within 3 hops): x = 25 already feels the elbow's node at
    # x = 100; x = 0 links only to nodes on the root bone and stays
    torch.testing.assert_close(bent[v[:, 0] == 0], v[v[:, 0] == 0], rtol=0, atol=1e-9)
    assert (bent[v[:, 0] == 25] - v[v[:, 0] == 25]).norm(dim=1).max() > 1.0
    tip = bent[v[:, 0] == 200]
    want = (
        torch.tensor([100.0, 0, 0], dtype=F64)
        + (v[v[:, 0] == 200] - torch.tensor([100.0, 0, 0], dtype=F64)) @ _rot([0, 1, 0], 0.9).T
    )
    torch.testing.assert_close(tip, want, rtol=0, atol=1e-9)  # the tip's nodes follow the arm bone only


def test_rig_corrections(tmp_path):
    rig, v = _rig(tmp_path)
    dofs = torch.tensor([[0.02, 0.3, 0.5]], dtype=F64)
    n, nv = rig.graph.num_nodes, v.shape[0]
    zero_n, zero_v = torch.zeros(1, n, 3, dtype=F64), torch.zeros(1, nv, 3, dtype=F64)
    torch.testing.assert_close(
        rig.deformed(dofs, zero_n, zero_n, zero_v), rig.skinned(dofs), rtol=0, atol=1e-9
    )
    rest = torch.zeros(1, 3, dtype=F64)
    shift = torch.tensor([3.0, -2.0, 1.0], dtype=F64)
    offsets = torch.randn(1, nv, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    got = rig.deformed(rest, zero_n, shift.expand(1, n, 3), offsets)
    torch.testing.assert_close(got[0], v + shift + offsets[0], rtol=0, atol=1e-9)  # weights sum to 1


class _RecordingGCNs(torch.nn.Module):
    """Stands in for the explicit networks: records their inputs, returns fixed corrections."""

    def __init__(self, n, v):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros((), dtype=F64))
        self.n, self.v, self.seen = n, v, {}
        self.spatial_gcn = lambda x: self._out("spatial", x, torch.zeros(3, n, 6, dtype=F64))
        self.delta_gcn = lambda x: self._out("delta", x, torch.full((3, v, 3), 0.002, dtype=F64))

    def _out(self, name, x, y):
        self.seen[name] = x
        return y


def test_posed_templates_feed_the_networks_the_release_layout(tmp_path):
    rig, v = _rig(tmp_path)
    plain = torch.tensor([[0.0, 0.0, 0.0], [0.01, 0.1, 0.2], [0.02, 0.2, 0.4]], dtype=F64)
    normalised = torch.stack([plain, plain * 0.5, plain * 0.25], 1)  # [T, 3 variants, D]
    nets = _RecordingGCNs(rig.graph.num_nodes, v.shape[0])
    out = P.release_posed_templates(rig, nets, normalised, plain, frame=2)
    assert out.shape == (3, v.shape[0], 3)
    # frames t, t-1, t-2 = 2, 1, 0, each with 2 mm offsets added in the rest space, posed by the plain DOFs
    n, nv = rig.graph.num_nodes, v.shape[0]
    zero, two = torch.zeros(1, n, 3, dtype=F64), torch.full((1, nv, 3), 2.0, dtype=F64)
    for k, t in enumerate([2, 1, 0]):
        torch.testing.assert_close(
            out[k : k + 1], rig.deformed(plain[t : t + 1], zero, zero, two), rtol=0, atol=1e-9
        )
    torch.testing.assert_close(out[2], v + 2.0, rtol=0, atol=1e-9)  # frame 0 is the rest pose
    spatial, delta = nets.seen["spatial"], nets.seen["delta"]
    assert spatial.shape == (3, rig.graph.num_nodes, 18) and delta.shape == (3, v.shape[0], 9)
    euler, trans = rig.node_pose(normalised[2, 1:2])  # variant 1 of frame t
    torch.testing.assert_close(spatial[0, :, 6:9], trans[0] / 1000, rtol=0, atol=1e-12)
    torch.testing.assert_close(spatial[0, :, 9:12], euler[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(delta[1, :, 6:9], rig.skinned(normalised[1, 2:3])[0], rtol=0, atol=1e-12)
