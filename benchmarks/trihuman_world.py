"""TriHuman on the avatar world: held-out quality, render speed against an MLP-only NeuS, memory at 512².

    python benchmarks/trihuman_world.py [--avatar FILE] [--sections quality,speed,memory] [--json out.json]

quality: models/trihuman/evaluate.py on the world's held-out motions (test split: walk, dance, squat and the
held-out type 'turn') from the 4 held-out views at 64 px: PSNR, mask IoU and Chamfer distance (mm) of the
skinned template (the world's exact texture and lighting on skinning alone), the avatar's deformable
template, and the TriHuman avatar (NeuS render; geometry = subdivided template projected to the zero level).

speed: one frame of one view at 128² and 256², 32 samples per ray, 1 torch thread. Ours: the frame as
render_frame makes it (tri-plane generator, the dilated template rasterised for the rays that can see the
avatar, NeuS's own midpoint renderer, common/sdf_render_midpoint.py, with the closest-face search, tri-plane
lookup and small MLPs; samples beyond the shell empty), and for comparison the same with the edge renderer
(common/sdf_render.py: f at section edges, colour only where a sample weighs > EDGE_COLOR_MIN_WEIGHT /
samples; the previous render_frame). Baseline: an MLP-only NeuS of the paper's size class (NeuS's 8 x 256
SDF MLP, 6 PE frequencies, a 4 x 256 IDR colour MLP) with each renderer, its faster one counted, (a) on our
rays (a template-free NeuS cannot know them: the strict comparison) and (b) on every pixel ray through the
subject's bounding box, as a NeuS renders a frame (NeuS uses a bounding sphere; a tight box is kinder).

memory: peak RSS (ru_maxrss) before and after rendering one view at 128² and then 512² in ray chunks of
2 048: chunking bounds the memory by the chunk, not the resolution.
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
import papernodes_bootstrap  # noqa: E402

papernodes_bootstrap.register()

from papernodes.models.common.camera import pixel_rays  # noqa: E402
from papernodes.models.common.sdf_render import cube_interval, render_rays  # noqa: E402
from papernodes.models.common.sdf_render_midpoint import render_rays_midpoint  # noqa: E402
from papernodes.models.trihuman import world  # noqa: E402
from papernodes.models.trihuman.avatar import load_avatar  # noqa: E402
from papernodes.models.trihuman.evaluate import evaluate, held_out  # noqa: E402
from papernodes.models.trihuman.fields import ColorNetwork, SDFNetwork  # noqa: E402
from papernodes.models.trihuman.render import ray_intervals, render_frame  # noqa: E402
from papernodes.models.trihuman.reproduce import AVATAR_FILE, WEIGHTS  # noqa: E402

SECTIONS = ("quality", "speed", "memory")
EDGE_COLOR_MIN_WEIGHT = (
    32e-4  # the edge renderer's colour skip: a pixel moves < 1/255 (tests/test_sdf_render.py)
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_frame(avatar, size: int):
    """The held-out dance's third frame in held-out view 2: (posed, features, roots, K, world_to_camera)."""
    s = world.make_sequence(0, "test", 1, 3, (2,), size, render_images=False)
    poses = torch.cat([s.history_poses, s.poses])
    trans = torch.cat([s.history_translations, s.translations])
    with torch.no_grad():
        posed, feats, _ = avatar.frames(poses, trans)
    _, K, E = world.camera_rig((2,), size)
    return posed, feats, avatar.root_positions(poses, trans), K, E


def section_quality(avatar, frames: int, stride: int) -> dict:
    t0 = time.perf_counter()
    res = evaluate(avatar, held_out(frames=frames), stride=stride)
    print(f"quality ({time.perf_counter() - t0:.0f} s):")
    print("| row | PSNR (dB) | mask IoU | Chamfer (mm) |\n|---|---|---|---|")
    for row, m in res.items():
        print(f"| {row} | {m['psnr']:.2f} | {m['iou']:.3f} | {1000 * m['chamfer']:.1f} |")
    return res


def mlp_neus() -> tuple[SDFNetwork, ColorNetwork]:
    torch.manual_seed(0)
    sdf = SDFNetwork(feature_dim=0, out_features=256, hidden=256, n_layers=8, skip=4, num_freqs=6, radius=0.5,
                     refit_init=False)  # fmt: skip
    return sdf, ColorNetwork(feature_dim=256, hidden=256, n_layers=4)


def section_speed(avatar, sizes=(128, 256)) -> dict:
    out = {}
    sdf_net, color_net = mlp_neus()
    centre = torch.tensor(world.CAMERA_TARGET)

    def mlp_sdf(x):
        return sdf_net(x - centre)[0][:, 0]

    def mlp_shade(x, d):  # NeuS's pass: f, its gradient and the colour at every sample
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            f, feat = sdf_net(y - centre)
            (g,) = torch.autograd.grad(f.sum(), y)
        return f[:, 0], g, color_net(x, torch.nn.functional.normalize(g, dim=-1), d, feat), None

    def mlp_color(x, d):  # the edge renderer's colour pass: the same work, colour only
        return mlp_shade(x, d)[2]

    for size in sizes:
        posed, feats, roots, K, E = first_frame(avatar, size)
        k = posed.shape[0] - 1
        t0 = time.perf_counter()
        with torch.no_grad():
            bound = avatar.bind(posed, feats, roots, k)
        t_planes = time.perf_counter() - t0
        t0 = time.perf_counter()
        iv = ray_intervals(posed[k], avatar.faces, bound.field.config.shell, K, E, size, size)
        t_rays = time.perf_counter() - t0
        idx = iv["covered"].reshape(-1).nonzero().squeeze(1)
        ours_rays = (iv["origins"].reshape(-1, 3)[idx], iv["directions"].reshape(-1, 3)[idx],
                     iv["near"].reshape(-1)[idx], iv["far"].reshape(-1)[idx])  # fmt: skip
        shell = bound.field.config.shell
        box = box_rays(K, E, size, posed[k].amin(0) - shell, posed[k].amax(0) + shell)
        samples = avatar.field.config.samples
        kw = dict(
            samples=samples, inv_s=avatar.field.variance.inv_s().detach(), background=(0, 0, 0), chunk=2048
        )
        edge_kw = dict(kw, view_dependent=True, color_min_weight=EDGE_COLOR_MIN_WEIGHT / samples)
        runs = {  # row: (renderer, fields, rays, settings)
            "ours": (render_rays_midpoint, (bound.shade,), ours_rays, kw),
            "ours_edges": (render_rays, (bound.sdf, bound.color), ours_rays, edge_kw),
            "mlp_neus_same_rays": (render_rays_midpoint, (mlp_shade,), ours_rays, kw),
            "mlp_neus_same_rays_edges": (render_rays, (mlp_sdf, mlp_color), ours_rays, edge_kw),
            "mlp_neus_box": (render_rays_midpoint, (mlp_shade,), box, kw),
            "mlp_neus_box_edges": (render_rays, (mlp_sdf, mlp_color), box, edge_kw),
        }
        row = {"rays": int(idx.numel()), "box_rays": int(box[0].shape[0]), "planes_ms": 1000 * t_planes,
               "ray_intervals_ms": 1000 * t_rays}  # fmt: skip
        for name, (renderer, fields, (o, d, near, far), settings) in runs.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                renderer(*fields, o, d, near=near, far=far, **settings)
            extra = (
                t_planes + t_rays if name.startswith("ours") else 0.0
            )  # our frame: generator + rasteriser too
            row[f"{name}_ms"] = 1000 * (time.perf_counter() - t0 + extra)
        for rays in ("same_rays", "box"):  # against the baseline's faster renderer
            best = min(row[f"mlp_neus_{rays}_ms"], row[f"mlp_neus_{rays}_edges_ms"])
            row[f"speedup_{rays}"] = best / row["ours_ms"]
        row["speedup_over_edges"] = row["ours_edges_ms"] / row["ours_ms"]
        print(f"speed {size}², {samples} samples per ray: ours {row['ours_ms']:.0f} ms ({row['rays']} rays; "
              f"generator {row['planes_ms']:.0f} ms, rasteriser {row['ray_intervals_ms']:.0f} ms; the edge renderer "
              f"{row['ours_edges_ms']:.0f} ms); MLP-only NeuS on the same rays {row['mlp_neus_same_rays_ms']:.0f} / "
              f"{row['mlp_neus_same_rays_edges_ms']:.0f} ms (midpoint / edges): {row['speedup_same_rays']:.2f}x; "
              f"on the {row['box_rays']} rays through the subject's box {row['mlp_neus_box_ms']:.0f} / "
              f"{row['mlp_neus_box_edges_ms']:.0f} ms: {row['speedup_box']:.2f}x", flush=True)  # fmt: skip
        out[size] = row
    return out


def box_rays(K, E, size, lo, hi):
    """Every pixel ray crossing the box [lo, hi] with its entry and exit: what an MLP-only NeuS marches for a
    frame (NeuS clips its rays to the object's bounding sphere; a box tight around the subject is kinder to
    the baseline). (origins, directions, near, far) of those rays."""
    o, d = pixel_rays(K, E, size, size)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    near, far = cube_interval((o - centre) / half, d / half)  # the same distances along the rays
    keep = (far > near).nonzero().squeeze(1)
    return o[keep], d[keep], near[keep], far[keep]


def section_memory(avatar) -> dict:
    out = {"start_mb": peak_rss_mb()}
    for size in (128, 512):
        posed, feats, roots, K, E = first_frame(avatar, size)
        k = posed.shape[0] - 1
        t0 = time.perf_counter()
        with torch.no_grad():
            bound = avatar.bind(posed, feats, roots, k)
        render_frame(bound, K, E, size, size, chunk=2048)
        out[f"after_{size}_mb"] = peak_rss_mb()
        out[f"render_{size}_s"] = time.perf_counter() - t0
        print(f"memory: peak RSS after {size}² {out[f'after_{size}_mb']:.0f} MB ({out[f'render_{size}_s']:.1f} s)",
              flush=True)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--avatar", default=str(WEIGHTS / AVATAR_FILE))
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--frames", type=int, default=6, help="frames per held-out motion")
    p.add_argument("--stride", type=int, default=1, help="every n-th frame is measured")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    avatar = load_avatar(args.avatar)
    results = {"avatar": args.avatar, "threads": args.threads}
    for section in args.sections.split(","):
        if section == "quality":
            results["quality"] = section_quality(avatar, args.frames, args.stride)
        elif section == "speed":
            results["speed"] = section_speed(avatar)
        elif section == "memory":
            results["memory"] = section_memory(avatar)
        else:
            p.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
