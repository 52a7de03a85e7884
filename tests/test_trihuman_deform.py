"""TriHuman's embedded graph (Sumner et al. 2007 / DDC): construction, the deformation and its regulariser,
Rodrigues, and the pose network's identity start."""

from __future__ import annotations

import math

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman import deform as D

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def body():
    """A capsule-like point set (a cylinder with caps), float64, 600 vertices."""
    g = torch.Generator().manual_seed(0)
    z = torch.rand(600, generator=g, dtype=torch.float64) * 1.6 - 0.8
    phi = torch.rand(600, generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.stack([0.2 * torch.cos(phi), 0.2 * torch.sin(phi), z], -1)


def _random_rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return q * torch.linalg.det(q)  # a proper rotation (det +1)


def test_graph_nodes_cover_the_template_and_weights_are_a_partition_of_unity(body):
    graph = D.build_embedded_graph(body, 40)
    assert torch.equal(graph.nodes, body[graph.node_index]) and len(set(graph.node_index.tolist())) == 40
    torch.testing.assert_close(graph.vertex_weights.sum(1), torch.ones(600, dtype=torch.float64))
    assert bool((graph.vertex_weights >= 0).all())
    # farthest-point sampling: the covering radius shrinks with more nodes and beats a random choice
    cover = lambda idx: float(torch.cdist(body, body[idx]).min(1).values.max())  # noqa: E731
    assert cover(D.farthest_point_sampling(body, 80)) < cover(graph.node_index)
    assert cover(graph.node_index) < cover(
        torch.randperm(600, generator=torch.Generator().manual_seed(1))[:40]
    )
    assert torch.equal(D.build_embedded_graph(body, 40).edges, graph.edges)  # deterministic


def test_identity_and_rigid_motions_are_reproduced_exactly_with_zero_regulariser(body):
    graph = D.build_embedded_graph(body, 40)
    eye = torch.eye(3, dtype=torch.float64).expand(40, 3, 3)
    zero = torch.zeros(40, 3, dtype=torch.float64)
    torch.testing.assert_close(D.embedded_deformation(body, graph, eye, zero), body, atol=1e-15, rtol=0)
    R, T = _random_rotation(3), torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    t = graph.nodes @ R.T + T - graph.nodes  # every node moves with x -> R x + T
    moved = D.embedded_deformation(body, graph, R.expand(40, 3, 3), t)
    torch.testing.assert_close(moved, body @ R.T + T, atol=1e-12, rtol=0)
    assert float(D.graph_regularizer(graph, R.expand(40, 3, 3), t)) < 1e-24
    # bending: the top half turns, the bottom stays: the regulariser sees the hinge
    top = graph.nodes[:, 2] > 0
    Rs = torch.where(top[:, None, None], _random_rotation(4), torch.eye(3, dtype=torch.float64))
    assert float(D.graph_regularizer(graph, Rs, zero)) > 1e-4


def test_axis_angle_matrix_is_rodrigues():
    v = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    R = D.axis_angle_matrix(v)
    torch.testing.assert_close(
        R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(50, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(R @ v[..., None], v[..., None], atol=1e-12, rtol=0)  # the axis is fixed
    angle = v.norm(dim=-1)
    torch.testing.assert_close(
        (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2, torch.cos(angle), atol=1e-12, rtol=0
    )
    assert torch.equal(
        D.axis_angle_matrix(torch.zeros(2, 3, dtype=torch.float64)),
        torch.eye(3, dtype=torch.float64).expand(2, 3, 3),
    )
    v.requires_grad_(True)
    D.axis_angle_matrix(v * 0).sum().backward()  # finite gradient at zero
    assert torch.isfinite(v.grad).all()


def test_network_starts_at_the_template_and_learns_a_pose_dependent_offset(body):
    torch.manual_seed(0)
    graph = D.build_embedded_graph(body.float(), 24)
    net = D.DeformationNetwork(graph, pose_dim=6, hidden=32)
    poses = torch.randn(4, 6)
    moved, reg = net.deform(body.float(), poses)
    torch.testing.assert_close(moved, body.float().expand(4, -1, -1), atol=1e-6, rtol=0)  # float32 blend
    assert float(reg.detach()) < 1e-12
    # a target that depends on the pose: the top bends along x by pose[0]; a few Adam steps reduce the error
    target = body.float() + torch.stack([poses[:, 0:1] * body[:, 2].float().clamp_min(0) * 0.1,
                                         torch.zeros(4, 600), torch.zeros(4, 600)], -1)  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        moved, reg = net.deform(body.float(), poses)
        loss = (moved - target).square().mean() + 1e-2 * reg
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_bad_inputs_are_named(body):
    with pytest.raises(InputError, match="count"):
        D.farthest_point_sampling(body, 0)
    with pytest.raises(InputError, match="node_neighbours"):
        D.build_embedded_graph(body, 4, node_neighbours=4)
    graph = D.build_embedded_graph(body, 10)
    with pytest.raises(InputError, match="rotations"):
        D.embedded_deformation(body, graph, torch.eye(3).expand(9, 3, 3), torch.zeros(9, 3))
