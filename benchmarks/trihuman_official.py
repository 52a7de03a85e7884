"""The official TriHuman path on CPU at the release's sizes — one run: time and peak memory per stage of one
frame, with random weights in the official layout (no real checkpoint is reachable here, so this measures
cost, not quality).

Subject: a UV sphere stretched into a body-sized ellipsoid (0.35 x 1.7 x 0.25 m) with about as many vertices
as the release's sample character (5 514) and 852 graph nodes (farthest points), a root + arm skeleton, a
256² motion texture, the release's networks at their sizes (tri-plane U-Net 18 -> 3 x 16 planes, 3 x 128
SDF and colour MLPs, the two DDC graph CNNs), one camera 3 m away at `--scale` of 1285 x 940. Stages:
rig build (embedded graph), UV map, posing (three frames through both graph CNNs), planes (texture, motion
code, U-Net), rays (depth map, near/far, NeuS over the covered pixels). Peak RSS via getrusage after each.

    python benchmarks/trihuman_official.py [--scale 0.25] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.models.trihuman.deform import farthest_point_sampling  # noqa: E402
from papernodes.models.trihuman.official import (  # noqa: E402
    OfficialExplicitNetworks,
    OfficialImplicitConfig,
    OfficialImplicitNetworks,
    OfficialTriHuman,
    read_skeleton,
    root_arm_skeleton,
    write_skeleton,
)
from papernodes.models.trihuman.official.files import OfficialSkin, edges_from_faces  # noqa: E402
from papernodes.models.trihuman.official.frame import official_planes, render_official_frame  # noqa: E402
from papernodes.models.trihuman.official.motion_texture import release_uv_map  # noqa: E402
from papernodes.models.trihuman.official.posing import ReleaseRig, release_posed_templates  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def body(rings: int = 52, segments: int = 53):
    """A UV-sphere ellipsoid (mm) with per-corner UVs: ~5.5k vertices like the release's sample."""
    import trimesh

    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[rings, segments])
    v = torch.tensor(mesh.vertices, dtype=torch.float64) * torch.tensor(
        [175.0, 850.0, 125.0], dtype=torch.float64
    )
    v[:, 1] += 850.0
    f = torch.tensor(mesh.faces, dtype=torch.long)
    unit = torch.tensor(mesh.vertices, dtype=torch.float64)
    uv = torch.stack([(torch.atan2(unit[:, 1], unit[:, 0]) / (2 * math.pi)) % 1.0,
                      torch.acos(unit[:, 2].clamp(-1, 1)) / math.pi], 1)  # fmt: skip
    return v, f, uv[f] * 0.98 + 0.01


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.25, help="image size as a fraction of 1285 x 940")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    times: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def stage(name, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = round(time.perf_counter() - t0, 3)
        peaks[name] = round(_peak_mb(), 1)
        print(f"{name:10s} {times[name]:8.3f} s   peak RSS {peaks[name]:7.1f} MB", flush=True)
        return out

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_skeleton(Path(tmp) / "ddc.skeleton", root_arm_skeleton((0.0, 400.0, 0.0)))
        skeleton = read_skeleton(Path(tmp) / "ddc.skeleton")
    v, f, corner_uvs = body()
    arm = ((v[:, 1] - 1100) / 300).clamp(0, 1)
    skin = OfficialSkin(("Root", "Arm"), torch.stack([1 - arm, arm], 1), (arm > 0.5).long())
    nodes = farthest_point_sampling(v.float(), 852)
    rig = stage(
        "rig", lambda: ReleaseRig.build(v, f, skeleton, skin, torch.zeros(4, dtype=torch.float64), v[nodes])
    )
    uv_map = stage("uv map", lambda: release_uv_map(corner_uvs, 256))
    implicit = OfficialImplicitNetworks(OfficialImplicitConfig(motion_d_in=9)).eval()
    explicit = OfficialExplicitNetworks(rig.graph.num_nodes, v.shape[0]).eval()
    node_pos = v[
        rig.graph.node_vertex
    ]  # the graph mesh's edges: each node to its 4 nearest (no ddc_graph.obj)
    near = torch.cdist(node_pos, node_pos).topk(5, largest=False).indices[:, 1:]
    graph_edges = torch.stack([torch.arange(len(node_pos)).repeat_interleave(4), near.reshape(-1)], 1)
    explicit.spatial_gcn.set_mesh(graph_edges)
    explicit.delta_gcn.set_mesh(edges_from_faces(f))
    nets = OfficialTriHuman(implicit, explicit)
    dofs = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.1], [0.0, 0.0, 0.0, 0.2]], dtype=torch.float64
    )
    normalized = torch.stack([dofs, dofs, dofs], 1)
    body_dofs = torch.arange(4)
    stage("posing", lambda: release_posed_templates(rig, explicit, normalized, dofs, 2))
    stage("planes", lambda: official_planes(nets, rig, uv_map, dofs, normalized, body_dofs, 2))
    w, h = round(1285 * args.scale), round(940 * args.scale)
    K = torch.tensor(
        [[1500.0 * args.scale, 0, w / 2], [0, 1500.0 * args.scale, h / 2], [0, 0, 1]], dtype=torch.float64
    )
    E = torch.eye(4, dtype=torch.float64)
    E[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    E[:3, 3] = torch.tensor([0.0, 0.85, 3.0], dtype=torch.float64)
    out = stage("frame", lambda: render_official_frame(nets, rig, uv_map, corner_uvs, dofs, normalized, body_dofs,
                                                       torch.zeros(3, dtype=torch.float64), 2, K, E, h, w))  # fmt: skip
    rays = int(out.mask.sum())
    print(f"image {w} x {h}, rays cast {rays} ({rays / (w * h):.0%} of the pixels); vertices {v.shape[0]}, "
          f"graph nodes {rig.graph.num_nodes}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": args.scale, "threads": args.threads, "size": [w, h],
                                               "rays": rays, "vertices": v.shape[0], "seconds": times,
                                               "peak_rss_mb": peaks}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
