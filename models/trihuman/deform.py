"""The deformable template's embedded graph (TriHuman Sec. 3.1, after DDC; Sumner et al. 2007, "Embedded
Deformation for Shape Manipulation"): a few hundred graph nodes carry a rotation and a translation each, and
every template vertex follows a weighted blend of its nearest nodes' rigid motions,

    v' = sum_k w_vk (R_k (v - g_k) + g_k + t_k),

before skeletal skinning (`skinning.py`). A pose-conditioned network predicts the node parameters and
per-vertex offsets (`DeformationNetwork`), so clothing can move beyond skinning.

Graph (our interpretation where DDC's files would give it): nodes by farthest-point sampling of the
template vertices from vertex 0 (deterministic); node edges to the `node_neighbours` nearest nodes; each
vertex bound to its `vertex_nodes` nearest nodes with Sumner's weights (1 - d / d_max)^2, d_max the distance
to the next-nearest node, normalised to sum 1. Euclidean distances (DDC uses geodesic ones on the mesh;
on our world's meshes the two agree away from the limbs' contacts, and Euclidean needs no mesh walk).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..common.errors import InputError


class EmbeddedGraph(NamedTuple):
    nodes: torch.Tensor  # [K, 3] node positions on the template (rest pose)
    node_index: torch.Tensor  # [K] the template vertex each node sits on
    edges: torch.Tensor  # [K, m] each node's nearest other nodes
    vertex_nodes: torch.Tensor  # [V, n] each vertex's nearest nodes
    vertex_weights: torch.Tensor  # [V, n] their weights, summing to 1


def farthest_point_sampling(points: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [count] of points [N, 3]: start at 0, then always the point farthest from those chosen."""
    if not 1 <= count <= points.shape[0]:
        raise InputError("count", f"1..{points.shape[0]} nodes", repr(count))
    chosen = torch.zeros(count, dtype=torch.long)
    dist = (points - points[0]).square().sum(-1)
    for i in range(1, count):
        chosen[i] = torch.argmax(dist)
        dist = torch.minimum(dist, (points - points[chosen[i]]).square().sum(-1))
    return chosen


def build_embedded_graph(
    vertices: torch.Tensor, n_nodes: int, node_neighbours: int = 4, vertex_nodes: int = 4
) -> EmbeddedGraph:
    """The embedded graph of a template [V, 3] (see the module docstring)."""
    if not isinstance(vertices, torch.Tensor) or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError("vertices", "template vertices [V, 3]", repr(getattr(vertices, "shape", vertices)))
    if not 1 <= node_neighbours < n_nodes or not 1 <= vertex_nodes < n_nodes:
        raise InputError("node_neighbours / vertex_nodes", f"1..{n_nodes - 1} (fewer than the nodes)",
                         f"{node_neighbours} / {vertex_nodes}")  # fmt: skip
    index = farthest_point_sampling(vertices, n_nodes)
    nodes = vertices[index]
    node_d = torch.cdist(nodes, nodes)
    edges = node_d.topk(node_neighbours + 1, largest=False).indices[:, 1:]  # skip the node itself
    d, near = torch.cdist(vertices, nodes).topk(vertex_nodes + 1, largest=False)
    w = (1 - d[:, :-1] / d[:, -1:].clamp_min(1e-12)).clamp_min(0).square()
    w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))  # equidistant corner case
    return EmbeddedGraph(nodes, index, edges, near[:, :-1], w / w.sum(1, keepdim=True))


def embedded_deformation(
    vertices: torch.Tensor, graph: EmbeddedGraph, rotations: torch.Tensor, translations: torch.Tensor
) -> torch.Tensor:
    """v' = sum_k w_vk (R_k (v - g_k) + g_k + t_k) for vertices [V, 3], rotations [..., K, 3, 3] and
    translations [..., K, 3] -> [..., V, 3]."""
    k = graph.nodes.shape[0]
    if rotations.shape[-3:] != (k, 3, 3) or translations.shape[-2:] != (k, 3):
        raise InputError("rotations / translations", f"[..., {k}, 3, 3] / [..., {k}, 3]",
                         f"{tuple(rotations.shape)} / {tuple(translations.shape)}")  # fmt: skip
    g = graph.nodes[graph.vertex_nodes]  # [V, n, 3]
    local = (vertices[:, None] - g)[..., None]  # [V, n, 3, 1]
    R = rotations[..., graph.vertex_nodes, :, :]  # [..., V, n, 3, 3]
    moved = (R @ local)[..., 0] + g + translations[..., graph.vertex_nodes, :]
    return (graph.vertex_weights[..., None] * moved).sum(-2)


def graph_regularizer(
    graph: EmbeddedGraph, rotations: torch.Tensor, translations: torch.Tensor
) -> torch.Tensor:
    """Sumner's E_reg, the mean over graph edges (j, k) of |R_j (g_k - g_j) + g_j + t_j - (g_k + t_k)|^2:
    zero when neighbouring nodes move as one rigid body, so the deformation stays locally rigid."""
    gj, gk = graph.nodes[:, None], graph.nodes[graph.edges]  # [K, 1, 3], [K, m, 3]
    pred = (rotations[..., :, None, :, :] @ (gk - gj)[..., None])[..., 0] + gj + translations[..., :, None, :]
    return (pred - (gk + translations[..., graph.edges, :])).square().sum(-1).mean()


def axis_angle_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of axis-angle vectors [..., 3] (Rodrigues; exact at 0)."""
    theta2 = v.square().sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    theta = theta2.clamp_min(1e-24).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-24))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(K)
    return eye + a * K + b * (K @ K)


class DeformationNetwork(nn.Module):
    """Pose -> per-node rotation (axis-angle) and translation, and per-vertex offsets (DDC's two networks).

    Our interpretation of the architecture: the three-frame pose vector goes through an MLP to a feature per
    node (a learnt node embedding added), `graph_layers` rounds of mixing each node's feature with the mean
    of its graph neighbours' (a graph convolution on the embedded graph), then a linear head to 6 numbers
    per node. Per-vertex offsets are node-feature heads blended with the vertex weights (3 numbers per
    vertex without a [V x hidden] layer). Both heads start at zero: at init the template only skins."""

    def __init__(self, graph: EmbeddedGraph, pose_dim: int, hidden: int = 64, graph_layers: int = 2):
        super().__init__()
        if pose_dim < 1 or hidden < 1 or graph_layers < 0:
            raise InputError("DeformationNetwork", "pose_dim >= 1, hidden >= 1, graph_layers >= 0")
        k = graph.nodes.shape[0]
        self.graph = graph
        self.pose_mlp = nn.Sequential(nn.Linear(pose_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.node_embedding = nn.Parameter(torch.randn(k, hidden) * 0.1)
        self.mix = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(graph_layers))
        self.node_head = nn.Linear(hidden, 6)
        self.offset_head = nn.Linear(hidden, 3)
        for head in (self.node_head, self.offset_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """pose [B, pose_dim] -> rotations [B, K, 3, 3], translations [B, K, 3], offsets [B, V, 3]."""
        h = self.pose_mlp(pose)[:, None] + self.node_embedding  # [B, K, hidden]
        for layer in self.mix:
            h = h + torch.nn.functional.silu(layer(torch.cat([h, h[:, self.graph.edges].mean(2)], -1)))
        params = self.node_head(h)
        per_node_offset = self.offset_head(h)  # [B, K, 3]
        offsets = (self.graph.vertex_weights[..., None] * per_node_offset[:, self.graph.vertex_nodes]).sum(-2)
        return {
            "rotations": axis_angle_matrix(params[..., :3]),
            "translations": params[..., 3:],
            "offsets": offsets,
        }

    def deform(self, vertices: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(deformed rest-pose vertices [B, V, 3] = embedded deformation + offsets, graph regulariser)."""
        out = self.forward(pose)
        moved = embedded_deformation(vertices, self.graph, out["rotations"], out["translations"])
        return moved + out["offsets"], graph_regularizer(self.graph, out["rotations"], out["translations"])
