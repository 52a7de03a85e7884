"""BiDiff on the 3D world: does each branch make what the caption says, and do the branches agree? — one run.

Rows (held-out captions: world seed 1, one object each; the models trained on seed 0):
- world scenes (exact SDF): the evaluator's ceiling (metrics.py: best-fit shape, palette colour, stripes);
- world grids at the prior's resolution: what the grid representation itself can hold;
- 3D-only: the 3D prior, prompted with each caption (DDIM `--steps`, guidance `--guidance`, seed = index);
- the 3D prior with the empty prompt (guidance 1): chance for a model that ignores the text;
with `--model` (the paper's ablation, Sec. 4.3):
- 2D-only: the multi-view model alone (no 3D control; text guidance `--text-scale`), its 3D read back from
  its final views by the volume denoiser;
- bidirectional from noise, and bidirectional with the lazy start from the 3D prior (`--lazy-t`);
  both scales `--text-scale` / `--consistency-scale` (the paper: 7 / 7), `--bidiff-steps` DDIM steps.
with `--sd-adapter PATH --sd-base FOLDER` (an SD1.5-architecture model and a BiDiff adapter trained for it,
pipeline_sd.py), the same three rows on that 2D branch ("sd_" rows; `--sd-steps` DDIM steps).
Refinement (`--refine-count` captions, `--refine-steps` SDS steps, refine.py): from a sphere (scratch) and
from BiDiff's lazy-start result; the score is the caption fit (best-fit IoU with the caption's primitive,
+1 when the colour is right); target = scratch's final score; time to target = seconds until the score,
checked every `--refine-every` steps, first reaches it (BiDiff's own sampling time included). The ratio
is the paper's headline (3.4 h -> 20 min, ~10x; ours is stated as a target >= 5x).
Each row: shape / colour / texture accuracy and mean best-fit IoU with the caption's primitive, all of the
3D result (so every view, seen or not, counts); multi-view consistency = PSNR between the 2D branch's final
views and the renders of the 3D result from the same cameras; seconds per shape. Peak RSS at the end.

    python benchmarks/bidiff.py [--count 60] [--model PATH] [--json benchmarks/results/bidiff-cpu.json]
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

from papernodes.models.bidiff import metrics  # noqa: E402
from papernodes.models.bidiff.demo import SHIPPED, SHIPPED_MODEL  # noqa: E402
from papernodes.models.bidiff.grid_prior import grid_to_shape, load_grid_prior, scene_grid  # noqa: E402
from papernodes.models.bidiff.pipeline import load_bidiff  # noqa: E402
from papernodes.models.bidiff.world import make_scene  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two image sets in [-1, 1]."""
    mse = ((a - b) / 2).square().mean().item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def score(rows: list[tuple]) -> dict:
    """rows: (report, primitive, seconds[, consistency PSNR])."""
    n = len(rows)
    cons = [r[3] for r in rows if len(r) > 3]
    return {
        "consistency_psnr": sum(cons) / len(cons) if cons else None,
        "shape_accuracy": sum(r[0].shape == r[1].shape for r in rows) / n,
        "color_accuracy": sum(r[0].color == r[1].color for r in rows) / n,
        "texture_accuracy": sum(r[0].texture == r[1].texture for r in rows) / n,
        "caption_iou": sum(r[0].caption_iou for r in rows) / n,
        # how unblended the stripes are, over the striped captions (metrics.PURE; the 16^3 grid caps it)
        "stripe_purity": _mean([r[0].purity for r in rows if r[1].texture == "striped"]),
        "seconds_per_shape": sum(r[2] for r in rows) / n,
        "count": n,
    }


def fit_score(grid: torch.Tensor, primitive, res: int) -> float:
    from papernodes.models.bidiff.grid_prior import TRUNC

    r = metrics.evaluate(grid_to_shape(grid, TRUNC), primitive.shape, res)
    return r.caption_iou + (r.color == primitive.color)


def refinement_race(model, prior, scenes, args) -> dict:
    """Seconds to the from-scratch refinement's final score: from a sphere vs from BiDiff's result."""
    from papernodes.models.bidiff.refine import refine

    ratios, rows = [], []
    for i, scene in enumerate(scenes):
        o = scene.objects[0]
        curves = {}
        for start in ("scratch", "bidiff"):
            grid, t0 = None, time.perf_counter()
            if start == "bidiff":
                grid = model.generate(scene.caption, seed=i, steps=args.bidiff_steps, prior=prior,
                                      lazy_t=args.lazy_t)["grid"]  # fmt: skip
            setup = time.perf_counter() - t0
            curve, clock = (
                [(0, setup, fit_score(grid, o, args.resolution) if grid is not None else 0.0)],
                [0.0],
            )
            t1 = time.perf_counter()

            def check(step, g, curve=curve, clock=clock, t1=t1, setup=setup, o=o):
                if step % args.refine_every == 0:
                    pause = time.perf_counter()  # scoring is not refinement time
                    curve.append((step, setup + pause - t1 - clock[0], fit_score(g, o, args.resolution)))
                    clock[0] += time.perf_counter() - pause

            refine(model, scene.caption, grid, steps=args.refine_steps, seed=i, on_step=check)
            curves[start] = curve
        target = sum(c[2] for c in curves["scratch"][-3:]) / 3
        first = lambda curve, target=target: next((t for _, t, s in curve if s >= target), None)  # noqa: E731
        ts, tb = first(curves["scratch"]), first(curves["bidiff"])
        rows.append({"caption": scene.caption, "target": target, "scratch_s": ts, "bidiff_s": tb,
                     "bidiff_start": curves["bidiff"][0][2], "bidiff_final": curves["bidiff"][-1][2],
                     "scratch_final": curves["scratch"][-1][2]})  # fmt: skip
        if ts is not None and tb is not None:
            ratios.append(ts / max(tb, 1e-6))
        print(f"refine {scene.caption}: target {target:.2f}, scratch {ts} s, bidiff {tb} s", flush=True)
    reached = [r for r in rows if r["bidiff_s"] is not None]
    return {
        "captions": len(rows),
        "bidiff_reached_target": len(reached),
        "median_speedup": sorted(ratios)[len(ratios) // 2] if ratios else None,
        "mean_scratch_final": sum(r["scratch_final"] for r in rows) / len(rows),
        "mean_bidiff_start": sum(r["bidiff_start"] for r in rows) / len(rows),
        "mean_bidiff_final": sum(r["bidiff_final"] for r in rows) / len(rows),
        "rows": rows,
    }


def sd_model(args):
    """The SD 2D branch bound to its base (pipeline_sd.BoundSDBiDiff), or None without --sd-adapter."""
    if not args.sd_adapter:
        return None
    if not args.sd_base:
        raise SystemExit("--sd-adapter needs --sd-base (the SD model it was trained for)")
    from papernodes.models.bidiff.pipeline_sd import BoundSDBiDiff, load_sd_bidiff
    from papernodes.models.common.loading import load_components

    return BoundSDBiDiff(load_sd_bidiff(args.sd_adapter), load_components(args.sd_base))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=60, help="held-out captions")
    ap.add_argument("--prior", default=str(SHIPPED), help="grid prior file")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--resolution", type=int, default=32, help="evaluator grid")
    ap.add_argument(
        "--model",
        default=str(SHIPPED_MODEL) if SHIPPED_MODEL.is_file() else None,
        help="BiDiff model file (adds the ablation rows)",
    )
    ap.add_argument("--bidiff-steps", type=int, default=25)
    ap.add_argument("--text-scale", type=float, default=7.0)
    ap.add_argument("--consistency-scale", type=float, default=7.0)
    ap.add_argument("--lazy-t", type=float, default=0.6)
    ap.add_argument("--sd-adapter", default=None, help="a BiDiff SD adapter file (needs --sd-base)")
    ap.add_argument("--sd-base", default=None, help="the SD model the adapter was trained for")
    ap.add_argument("--sd-steps", type=int, default=25)
    ap.add_argument(
        "--rows", default="all", help="'all', or 'sd' for the world ceilings and the sd_ rows only"
    )
    ap.add_argument("--refine-count", type=int, default=0, help="captions for the refinement race (0: skip)")
    ap.add_argument("--refine-steps", type=int, default=300)
    ap.add_argument("--refine-every", type=int, default=10)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet-machine", action="store_true", help="record that nothing else ran")
    args = ap.parse_args()
    torch.manual_seed(0)
    prior = load_grid_prior(args.prior)
    scenes = [make_scene(1, i) for i in range(args.count)]
    res = args.resolution
    rows: dict[str, list] = {"world_exact": [], "world_grid": [], "prior": [], "prior_no_text": []}
    model = load_bidiff(args.model) if args.model else None
    if model is not None:
        rows.update({"2d_only": [], "bidirectional": [], "bidirectional_lazy": []})
    sd = sd_model(args)
    if sd is not None:
        rows.update({"sd_2d_only": [], "sd_bidirectional": [], "sd_bidirectional_lazy": []})
    only_sd = args.rows == "sd"
    if only_sd:
        rows = {k: v for k, v in rows.items() if k.startswith(("world_", "sd_"))}
    kw = dict(steps=args.bidiff_steps, text_scale=args.text_scale, consistency_scale=args.consistency_scale)
    for i, scene in enumerate(scenes):
        o = scene.objects[0]
        t = time.perf_counter()
        rows["world_exact"].append(
            (metrics.evaluate(scene.shape3d(), o.shape, res), o, time.perf_counter() - t)
        )
        grid = scene_grid(scene.sdf, scene.color, prior.config.resolution, prior.config.trunc)
        rows["world_grid"].append(
            (metrics.evaluate(grid_to_shape(grid, prior.config.trunc), o.shape, res), o, 0.0)
        )
        if not only_sd:
            t = time.perf_counter()
            shape = prior.sample(scene.caption, seed=i, steps=args.steps, guidance=args.guidance)[0]
            dt = time.perf_counter() - t
            rows["prior"].append((metrics.evaluate(shape, o.shape, res), o, dt))
            t = time.perf_counter()
            grid = prior.sample_grids("", seed=i, steps=args.steps, guidance=1.0, unconditional=True)[0]
            shape = grid_to_shape(grid, prior.config.trunc)
            rows["prior_no_text"].append((metrics.evaluate(shape, o.shape, res), o, time.perf_counter() - t))
        for prefix, m, steps in (
            ("", None if only_sd else model, args.bidiff_steps),
            ("sd_", sd, args.sd_steps),
        ):
            if m is None:
                continue
            for name, extra in (("2d_only", {"use_3d": False}), ("bidirectional", {}),
                                ("bidirectional_lazy", {"prior": prior, "lazy_t": args.lazy_t})):  # fmt: skip
                t = time.perf_counter()
                out = m.generate(scene.caption, seed=i, **{**kw, "steps": steps}, **extra)
                dt = time.perf_counter() - t
                report = metrics.evaluate(out["shape"], o.shape, res)
                rows[prefix + name].append((report, o, dt, psnr(out["views"], out["renders"])))
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(scenes)}", flush=True)
    table = {name: score(r) for name, r in rows.items()}
    if model is not None and args.refine_count:
        table["refinement"] = refinement_race(model, prior, scenes[: args.refine_count], args)
    out = {
        "table": table,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    print(f"{'row':20s} shape  colour texture  IoU  consistency  s/shape")
    for name, r in table.items():
        if name == "refinement":
            print(f"refinement: median speed-up {r['median_speedup']}, BiDiff start reached the scratch final score "
                  f"in {r['bidiff_reached_target']}/{r['captions']}; final fit scratch {r['mean_scratch_final']:.2f}, "
                  f"from BiDiff {r['mean_bidiff_start']:.2f} -> {r['mean_bidiff_final']:.2f}")  # fmt: skip
            continue
        cons = f"{r['consistency_psnr']:6.2f} dB" if r["consistency_psnr"] is not None else "     -   "
        print(f"{name:20s} {r['shape_accuracy']:5.1%} {r['color_accuracy']:6.1%} {r['texture_accuracy']:6.1%} "
              f"{r['caption_iou']:5.2f}  {cons}  {r['seconds_per_shape']:7.3f}")  # fmt: skip
    print(f"peak RSS {out['peak_rss_mb']:.0f} MB, {out['threads']} torch threads")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
