"""TriHuman's closest-face search: candidates among the nearest face centroids vs brute force — one run.

Mesh: an icosphere (subdivision 4: 5 120 faces) stretched into an ellipsoid (0.35, 1.0, 0.25), so faces
vary in size and shape as on a body. Queries: `--points` points in the shell TriHuman samples in, random
surface points moved along their face normal by up to +-`--shell`. Both searches run on the same points
with the same thread count (`--threads`, default 1); candidates is timed best of `--repeats`, brute force
once (it is the slow one). Printed: ms of each, the ratio, how often they choose the same face, the largest
distance difference, and peak RSS (resource.getrusage ru_maxrss) after each stage.

    python benchmarks/trihuman_closest_face.py [--points 65536] [--candidates 20] [--json out.json]

Also timed: the candidate search with its centroid grid switched off (every point against all centroids),
to show where the speed comes from.

Measured 2026-12-04 (CPU, 1 torch thread, 65 536 points, 5 120 faces, 20 candidates). The machine was
shared: a training job ran on its 2 cores (load average ~2.9), so times are noisy and high; three float32
runs and one float64 run:
    float32: brute force 15.8 / 16.5 / 19.9 s; candidates 491 / 553 / 528 ms (nearest centroids 321-343 ms
             of it); without the grid 1.92 s; ratio 32 / 30 / 38 x; same face 100 %, distances identical.
    float64: brute force 23.4 s; candidates 689 ms; without the grid 2.87 s; ratio 34 x; same face 100 %.
    Peak RSS: ~620 MB after setup (torch, trimesh, mesh and points), 680-710 MB after the candidate runs
    (float64: 760 MB); brute force adds nothing (chunks of PAIR_BUDGET pairs).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.models.trihuman import closest_face  # noqa: E402
from papernodes.models.trihuman.closest_face import (  # noqa: E402
    candidate_faces,
    closest_points_brute,
    closest_points_candidates,
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_mesh(subdivisions: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    vertices = torch.tensor(mesh.vertices, dtype=dtype) * torch.tensor([0.35, 1.0, 0.25], dtype=dtype)
    return vertices, torch.tensor(mesh.faces, dtype=torch.long)


def shell_points(
    vertices: torch.Tensor, faces: torch.Tensor, count: int, shell: float, seed: int
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    face = torch.randint(0, len(faces), (count,), generator=gen)
    w = -torch.rand(count, 3, generator=gen).log()  # uniform barycentrics (Dirichlet(1, 1, 1))
    w = (w / w.sum(1, keepdim=True)).to(vertices.dtype)
    tri = vertices[faces[face]]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    n = n / n.norm(dim=-1, keepdim=True)
    offset = (torch.rand(count, 1, generator=gen, dtype=vertices.dtype) * 2 - 1) * shell
    return (w[..., None] * tri).sum(1) + offset * n


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--subdivisions", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--shell", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    vertices, faces = make_mesh(args.subdivisions, dtype)
    points = shell_points(vertices, faces, args.points, args.shell, seed=0)
    closest_points_candidates(points[:256], vertices, faces, args.candidates)  # warm-up
    rss_setup = peak_rss_mb()

    cand_ms, fast = timed(
        lambda: closest_points_candidates(points, vertices, faces, args.candidates), args.repeats
    )
    topk_ms, _ = timed(lambda: candidate_faces(points, vertices, faces, args.candidates), args.repeats)
    grid_min = closest_face.GRID_MIN_FACES
    closest_face.GRID_MIN_FACES = len(faces)  # the same search with the dense centroid search only
    dense_ms, dense = timed(lambda: closest_points_candidates(points, vertices, faces, args.candidates), 1)
    closest_face.GRID_MIN_FACES = grid_min
    assert torch.equal(dense.face_index, fast.face_index)
    rss_candidates = peak_rss_mb()
    brute_ms, brute = timed(lambda: closest_points_brute(points, vertices, faces), 1)
    rss_brute = peak_rss_mb()

    agree = fast.face_index == brute.face_index
    result = {
        "faces": len(faces),
        "points": len(points),
        "candidates": args.candidates,
        "dtype": args.dtype,
        "threads": args.threads,
        "brute_ms": round(brute_ms, 1),
        "candidates_ms": round(cand_ms, 1),
        "candidate_selection_ms": round(topk_ms, 1),
        "candidates_dense_centroids_ms": round(dense_ms, 1),
        "speedup": round(brute_ms / cand_ms, 1),
        "same_face": round(float(agree.double().mean()), 6),
        "max_distance_difference": float((fast.distance - brute.distance).abs().max()),
        "peak_rss_mb_after_setup": round(rss_setup, 1),
        "peak_rss_mb_after_candidates": round(rss_candidates, 1),
        "peak_rss_mb_after_brute": round(rss_brute, 1),
    }
    print(f"mesh {len(faces)} faces, {len(points)} points, {args.threads} thread(s), {args.dtype}")
    print(f"brute force       {brute_ms:10.1f} ms")
    print(
        f"candidates (k={args.candidates}) {cand_ms:8.1f} ms  (of which nearest centroids {topk_ms:.1f} ms)"
    )
    print(f"  same, centroids searched densely (no grid) {dense_ms:.1f} ms")
    print(f"ratio             {brute_ms / cand_ms:10.1f} x")
    same, diff = 100 * result["same_face"], result["max_distance_difference"]
    print(f"same face         {same:10.3f} %   max |distance difference| {diff:.3g}")
    print(
        f"peak RSS (MB)     setup {rss_setup:.0f}, after candidates {rss_candidates:.0f}, after brute force {rss_brute:.0f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
