"""BiDiff on the 3D world: does the 3D prior make what the caption says? — one run.

Rows (held-out captions: world seed 1, one object each; the prior trained on seed 0):
- world scenes (exact SDF): the evaluator's ceiling (metrics.py: best-fit shape, palette colour, stripes);
- world grids at the prior's resolution: what the grid representation itself can hold;
- the 3D prior, prompted with each caption (DDIM `--steps`, guidance `--guidance`, seed = row index);
- the 3D prior with the empty prompt (guidance 1): chance for a model that ignores the text.
Each row: shape / colour / texture accuracy, mean best-fit IoU with the caption's primitive, seconds per
shape. Peak RSS (high-water mark) of the whole run at the end.

    python benchmarks/bidiff.py [--count 60] [--prior PATH] [--json benchmarks/results/bidiff-cpu.json]
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

from papernodes.models.bidiff import metrics  # noqa: E402
from papernodes.models.bidiff.demo import SHIPPED  # noqa: E402
from papernodes.models.bidiff.grid_prior import grid_to_shape, load_grid_prior, scene_grid  # noqa: E402
from papernodes.models.bidiff.world import make_scene  # noqa: E402


def score(rows: list[tuple]) -> dict:
    """rows: (report, primitive, seconds)."""
    n = len(rows)
    return {
        "shape_accuracy": sum(r.shape == o.shape for r, o, _ in rows) / n,
        "color_accuracy": sum(r.color == o.color for r, o, _ in rows) / n,
        "texture_accuracy": sum(r.texture == o.texture for r, o, _ in rows) / n,
        "caption_iou": sum(r.caption_iou for r, _, _ in rows) / n,
        "seconds_per_shape": sum(s for _, _, s in rows) / n,
        "count": n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=60, help="held-out captions")
    ap.add_argument("--prior", default=str(SHIPPED), help="grid prior file")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--resolution", type=int, default=32, help="evaluator grid")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet-machine", action="store_true", help="record that nothing else ran")
    args = ap.parse_args()
    torch.manual_seed(0)
    prior = load_grid_prior(args.prior)
    scenes = [make_scene(1, i) for i in range(args.count)]
    res = args.resolution
    rows: dict[str, list] = {"world_exact": [], "world_grid": [], "prior": [], "prior_no_text": []}
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
        t = time.perf_counter()
        shape = prior.sample(scene.caption, seed=i, steps=args.steps, guidance=args.guidance)[0]
        dt = time.perf_counter() - t
        rows["prior"].append((metrics.evaluate(shape, o.shape, res), o, dt))
        t = time.perf_counter()
        grid = prior.sample_grids("", seed=i, steps=args.steps, guidance=1.0, unconditional=True)[0]
        shape = grid_to_shape(grid, prior.config.trunc)
        rows["prior_no_text"].append((metrics.evaluate(shape, o.shape, res), o, time.perf_counter() - t))
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(scenes)}", flush=True)
    table = {name: score(r) for name, r in rows.items()}
    out = {
        "table": table,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    print(f"{'row':16s} shape  colour texture  IoU   s/shape")
    for name, r in table.items():
        print(f"{name:16s} {r['shape_accuracy']:5.1%} {r['color_accuracy']:6.1%} {r['texture_accuracy']:6.1%} "
              f"{r['caption_iou']:5.2f} {r['seconds_per_shape']:7.3f}")  # fmt: skip
    print(f"peak RSS {out['peak_rss_mb']:.0f} MB, {out['threads']} torch threads")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
