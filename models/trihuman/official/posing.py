"""Posing the official template as the release does (layout notes section 3, "Template"): forward kinematics
of the DOFs, dual-quaternion blending of the `.skin` bones with each vertex's first-listed bone as pivot, an
embedded graph built from `ddc_graph.obj` on the template, and the two graph networks' corrections
(`spatial_gcn`: per-node rotation and translation; `delta_gcn`: per-vertex offsets) applied in the rest
space and carried to the pose through the graph nodes' blended transforms.

Everything is in the release's units (millimetres, radians) and float64 by default. Ours (`deform.py`,
`template.py`) builds its graph and skins differently (FPS nodes, Euclidean weights, per-vertex DQS); the
official weights were trained with these choices, so they get their own path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...common.errors import InputError
from ..skinning import dual_quaternion_to_matrix, matrix_to_dual_quaternion
from .files import edges_from_faces


@dataclass(frozen=True)
class ReleaseGraph:
    """The release's embedded graph on a template of V vertices: node k sits on template vertex
    `node_vertex[k]`; link l ties vertex `link_vertex[l]` to node `link_node[l]` with `link_weight[l]`
    (the weights of each vertex sum to 1)."""

    node_vertex: torch.Tensor  # [N] long
    link_vertex: torch.Tensor  # [L] long, vertex-major
    link_node: torch.Tensor  # [L] long
    link_weight: torch.Tensor  # [L] float64
    radius: torch.Tensor  # [N] long: each node's radius in hops

    @property
    def num_nodes(self) -> int:
        return self.node_vertex.shape[0]


def snap_graph_nodes(template: torch.Tensor, graph_vertices: torch.Tensor) -> torch.Tensor:
    """Each graph vertex, in file order, takes the nearest template vertex not yet taken (Euclidean)."""
    if graph_vertices.shape[0] > template.shape[0]:
        raise InputError("graph", f"at most {template.shape[0]} nodes (the template's vertices)",
                         str(graph_vertices.shape[0]))  # fmt: skip
    taken = torch.zeros(template.shape[0], dtype=torch.bool)
    nodes = []
    for p in graph_vertices.to(template):
        d = (template - p).norm(dim=-1)
        d[taken] = float("inf")
        k = int(d.argmin())
        taken[k] = True
        nodes.append(k)
    return torch.tensor(nodes, dtype=torch.long)


def hop_distances(
    faces: torch.Tensor, num_vertices: int, sources: torch.Tensor, max_hops: int
) -> torch.Tensor:
    """[S, V] hop counts along the mesh edges from each source vertex, up to `max_hops`; farther or
    unreachable vertices get max_hops + 1 (the release's breadth-first search, all sources at once)."""
    e = edges_from_faces(faces)
    rows = torch.cat([e[:, 0], e[:, 1]])
    cols = torch.cat([e[:, 1], e[:, 0]])
    adj = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), torch.ones(rows.shape[0]), (num_vertices,) * 2, check_invariants=True
    )
    adj = adj.coalesce()
    dist = torch.full((sources.shape[0], num_vertices), max_hops + 1, dtype=torch.long)
    reached = torch.zeros(sources.shape[0], num_vertices, dtype=torch.bool)
    reached[torch.arange(sources.shape[0]), sources] = True
    dist[reached] = 0
    frontier = reached.clone()
    for hop in range(1, max_hops + 1):
        nxt = torch.sparse.mm(adj, frontier.T.float()).T > 0
        nxt &= ~reached
        if not bool(nxt.any()):
            break
        dist[nxt] = hop
        reached |= nxt
        frontier = nxt
    return dist


def build_release_graph(
    template: torch.Tensor, faces: torch.Tensor, graph_vertices: torch.Tensor
) -> ReleaseGraph:
    """The embedded graph as the release builds it: nodes snapped to template vertices
    (`snap_graph_nodes`); node radius r = max(largest hop count of its vertex's one-ring // 2, 3) (always 3
    on a mesh, whose one-ring is one hop away); each vertex links to the nodes within r hops (if none, within
    2r) with weights exp(-(h/r)^2 / 2), normalised."""
    n_v = template.shape[0]
    nodes = snap_graph_nodes(template, graph_vertices)
    ring = hop_distances(faces, n_v, nodes, 1)
    one_ring_max = torch.where(ring == 1, ring, torch.zeros_like(ring)).amax(1)
    radius = torch.clamp(one_ring_max // 2, min=3)
    hops = hop_distances(faces, n_v, nodes, int(2 * radius.max()))
    rel = hops.double() / radius[:, None].double()  # [N, V]
    near = rel <= 1
    fallback = ~near.any(0)
    near = torch.where(fallback[None], rel <= 2, near)
    if bool((~near.any(0)).any()):
        far = int((~near.any(0)).sum())
        raise InputError("graph", "graph nodes within 2 radii (6 hops) of every template vertex",
                         f"{far} vertices farther from every node")  # fmt: skip
    vert_idx, node_idx = torch.nonzero(near.T, as_tuple=True)  # vertex-major, as the release lists links
    w = torch.exp(-0.5 * rel[node_idx, vert_idx] ** 2)
    total = torch.zeros(n_v, dtype=torch.float64).index_add_(0, vert_idx, w)
    return ReleaseGraph(nodes, vert_idx, node_idx, w / total[vert_idx], radius)


def release_dqs(transforms: torch.Tensor, weights: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
    """Per-vertex rigid transforms [..., V, 4, 4] blended from bone transforms [..., J, 4, 4] with skin
    weights [V, J]: each bone's unit quaternion is flipped unless its dot product with the vertex's pivot
    bone (`pivot` [V], the first-listed bone in `.skin`) is positive, then the dual quaternions are summed
    with the weights and normalised by the real part (Kavan et al. 2008)."""
    real, dual = matrix_to_dual_quaternion(transforms)  # [..., J, 4]
    dots = real @ real.transpose(-1, -2)  # [..., J, J]
    signs = torch.where(dots[..., pivot, :] > 0, 1.0, -1.0).to(real.dtype)  # [..., V, J]
    signed = weights.to(real) * signs
    return dual_quaternion_to_matrix(signed @ real, signed @ dual)


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """[..., 3] angles (a, b, c) -> R = Rz(c) Ry(b) Rx(a) [..., 3, 3] (the release's convention)."""
    ca, cb, cc = torch.cos(angles).unbind(-1)
    sa, sb, sc = torch.sin(angles).unbind(-1)
    rows = [
        cb * cc, sa * sb * cc - ca * sc, ca * sb * cc + sa * sc,
        cb * sc, sa * sb * sc + ca * cc, ca * sb * sc - sa * cc,
        -sb, sa * cb, ca * cb,
    ]  # fmt: skip
    return torch.stack(rows, -1).reshape(*angles.shape[:-1], 3, 3)


def matrix_to_euler(r: torch.Tensor) -> torch.Tensor:
    """Inverse of `euler_to_matrix` [..., 3, 3] -> [..., 3], with the release's branch for |cos b| < 1e-6."""
    sy = torch.sqrt(r[..., 0, 0] ** 2 + r[..., 1, 0] ** 2)
    regular = torch.stack([torch.atan2(r[..., 2, 1], r[..., 2, 2]), torch.atan2(-r[..., 2, 0], sy),
                           torch.atan2(r[..., 1, 0], r[..., 0, 0])], -1)  # fmt: skip
    singular = torch.stack([torch.atan2(-r[..., 1, 2], r[..., 1, 1]), torch.atan2(-r[..., 2, 0], sy),
                            torch.zeros_like(sy)], -1)  # fmt: skip
    return torch.where((sy >= 1e-6)[..., None], regular, singular)


@dataclass(frozen=True)
class ReleaseRig:
    """Everything the release poses its template with (millimetres): the template [V, 3] and faces, the
    skeleton, the `.skin` bones' joints [J], weights [V, J] and pivots [V], the rest pose's inverse bone
    transforms [J, 4, 4], and the embedded graph."""

    template: torch.Tensor
    faces: torch.Tensor
    skeleton: object  # SkeletoolSkeleton
    skin_joints: torch.Tensor
    skin_weights: torch.Tensor
    pivot: torch.Tensor
    rest_inverse: torch.Tensor
    graph: ReleaseGraph

    @classmethod
    def build(cls, template_mm, faces, skeleton, skin, rest_dofs, graph_vertices_mm) -> ReleaseRig:
        """From the release's files as read by `files`/`skeleton` (`read_obj(..., unit=1.0)` keeps mm):
        `skin` an OfficialSkin, `rest_dofs` [D] the rest pose (`ddc.motion`'s first frame)."""
        template = template_mm.double()
        if skin.weights.shape[0] != template.shape[0]:
            raise InputError("skin", f"weights for the template's {template.shape[0]} vertices",
                             str(skin.weights.shape[0]))  # fmt: skip
        joints = skeleton.skin_joint_indices(skin.bone_names)
        rest = skeleton.forward_kinematics(torch.as_tensor(rest_dofs, dtype=torch.float64)[None])[0, joints]
        graph = build_release_graph(template, faces, graph_vertices_mm.double())
        return cls(template, faces.long(), skeleton, joints, skin.weights.double(), skin.first_bone.long(),
                   torch.linalg.inv(rest), graph)  # fmt: skip

    def bone_transforms(self, dofs: torch.Tensor, rest: bool = True) -> torch.Tensor:
        """[B, J, 4, 4] global transforms of the `.skin` bones, relative to the rest pose when `rest`."""
        glob = self.skeleton.forward_kinematics(dofs.double())[:, self.skin_joints]
        return glob @ self.rest_inverse if rest else glob

    def node_transforms(self, dofs: torch.Tensor, rest: bool = True) -> torch.Tensor:
        """[B, N, 4, 4] DQS transforms at the graph nodes' vertices: the release blends every vertex, but
        only the nodes' are ever read (vertices move through their nodes), so only those are blended."""
        nodes = self.graph.node_vertex
        return release_dqs(self.bone_transforms(dofs, rest), self.skin_weights[nodes], self.pivot[nodes])

    def _through_nodes(self, nodes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Points [B, V, 3] (rest space) moved by their nodes' transforms [B, N, 4, 4], link-weighted."""
        g = self.graph
        m = nodes[:, g.link_node]  # [B, L, 4, 4]
        p = points[:, g.link_vertex]
        moved = (m[..., :3, :3] @ p[..., None])[..., 0] + m[..., :3, 3]
        out = torch.zeros_like(points).index_add_(1, g.link_vertex, moved * g.link_weight[:, None].to(moved))
        return out  # the release divides by the blended homogeneous w, which is 1 for rigid transforms

    def skinned(self, dofs: torch.Tensor) -> torch.Tensor:
        """[B, V, 3] the skinned template without network corrections (`delta_gcn`'s input per variant)."""
        nodes = self.node_transforms(dofs)
        return self._through_nodes(nodes, self.template.expand(nodes.shape[0], -1, -1))

    def node_pose(self, dofs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Euler angles [B, N, 3], translations [B, N, 3] mm) of the blended transforms at the graph nodes,
        without the rest-pose inverse: what `spatial_gcn` reads."""
        m = self.node_transforms(dofs, rest=False)
        return matrix_to_euler(m[..., :3, :3]), m[..., :3, 3]

    def deformed(self, dofs, delta_r, delta_t, offsets) -> torch.Tensor:
        """[B, V, 3] posed template with the corrections: node rotations `delta_r` [B, N, 3] (Euler) and
        translations `delta_t` [B, N, 3] (mm) deform the rest template through the graph, `offsets`
        [B, V, 3] (mm) are added, and the result is posed through the nodes' blended transforms."""
        g = self.graph
        rot = euler_to_matrix(delta_r.double())[:, g.link_node]  # [B, L, 3, 3]
        node_pos = self.template[g.node_vertex[g.link_node]]
        local = self.template[g.link_vertex] - node_pos
        moved = (rot @ local[..., None])[..., 0] + node_pos + delta_t.double()[:, g.link_node]
        canonical = torch.zeros(moved.shape[0], self.template.shape[0], 3, dtype=moved.dtype)
        canonical.index_add_(1, g.link_vertex, moved * g.link_weight[:, None])
        return self._through_nodes(self.node_transforms(dofs), canonical + offsets.double())


def release_posed_templates(rig: ReleaseRig, explicit, normalized_dofs: torch.Tensor, dofs: torch.Tensor,
                            frame: int) -> torch.Tensor:  # fmt: skip
    """[3, V, 3] posed templates (mm) of frames t, t-1, t-2 (clamped at 0) as the release computes them:
    the graph networks read the three normalised DOF variants (`read_normalized_motion`, [T, 3, D]) of each
    history frame; the corrections are applied to the plain DOFs (`read_motion`, [T, D]).
    `explicit` holds `spatial_gcn` and `delta_gcn` (`OfficialExplicitNetworks`)."""
    ids = [frame, max(frame - 1, 0), max(frame - 2, 0)]
    if (
        normalized_dofs.ndim != 3
        or normalized_dofs.shape[1] != 3
        or not 0 <= frame < normalized_dofs.shape[0]
    ):
        raise InputError("frame / normalised DOFs", "a frame of normalised DOFs [T, 3, D]",
                         f"frame {frame} of {list(normalized_dofs.shape)}")  # fmt: skip
    variants = normalized_dofs[ids].transpose(0, 1).reshape(9, -1)  # variant-major: (k, history frame)
    skinned = rig.skinned(variants).reshape(3, 3, -1, 3)  # [variant, frame, V, 3]
    euler, trans = rig.node_pose(variants)
    euler, trans = euler.reshape(3, 3, -1, 3), trans.reshape(3, 3, -1, 3)
    spatial_in = torch.cat([torch.cat([trans[k] / 1000.0, euler[k]], -1) for k in range(3)], -1)
    delta_in = torch.cat([skinned[k] for k in range(3)], -1)
    dtype = next(explicit.parameters()).dtype
    with torch.no_grad():
        node_rt = explicit.spatial_gcn(spatial_in.to(dtype)).double()
        offsets = explicit.delta_gcn(delta_in.to(dtype)).double() * 1000.0
    return rig.deformed(dofs[ids].double(), node_rt[..., 3:6], node_rt[..., :3] * 1000.0, offsets)
