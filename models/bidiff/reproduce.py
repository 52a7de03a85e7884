"""One command that reproduces the 3D world's shipped BiDiff models from seeds.

    python -m models.bidiff.reproduce                    # the 3D prior, then the BiDiff model
    python -m models.bidiff.reproduce --stages prior     # one stage

Stages: `prior` (train_prior.py: the grid prior, 4 000 steps, batch 16), `bidiff` (train_bidiff.py: both
branches, PRIOR/BIDIFF steps below). Runs resume from their checkpoints (`--resume auto`), so an interrupted
reproduce continues where it stopped. Shipped files (float16) go to models/proving_ground/weights/world_3d/;
runs live in --cache. Use 1 torch thread per process when several run (OMP_NUM_THREADS=1): on 2 cores
side by side, 1 thread each (2026-12-04), the prior took 97 min and the BiDiff model 80 min.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

if __name__ == "__main__":  # `python -m models.bidiff.reproduce`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import add_stages, chosen_stages  # noqa: E402
from .demo import SHIPPED, SHIPPED_MODEL  # noqa: E402

PRIOR_ARGS = ["--max-steps", "4000", "--batch-size", "16", "--save-every", "500"]
BIDIFF_ARGS = ["--max-steps", "2500", "--batch-size", "8", "--save-every", "250"]
STAGES = ("prior", "bidiff")


def _run(main, out: Path, args: list[str], quick: bool, file: str) -> Path:
    argv = ["--out", str(out), *args, "--resume", "auto"]
    if quick:
        argv += ["--max-steps", "2", "--world-scenes", "4", "--batch-size", "2", "--save-every", "0"]
    code = main(argv)
    if code:
        raise SystemExit(code)
    return out / "final" / file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stages(p, STAGES)
    p.add_argument("--cache", default="~/.cache/comfyui-papernodes/bidiff-runs", help="training runs")
    p.add_argument("--weights", default=str(SHIPPED.parent), help="where the shipped files go")
    p.add_argument("--quick", action="store_true", help="a few steps of each stage (a smoke test)")
    args = p.parse_args(argv)
    stages = chosen_stages(p, args.stages, STAGES)
    cache, weights = Path(args.cache).expanduser(), Path(args.weights).expanduser()
    weights.mkdir(parents=True, exist_ok=True)
    if "prior" in stages:
        from .train_prior import main as train_prior

        final = _run(train_prior, cache / "prior", PRIOR_ARGS, args.quick, "grid_prior.safetensors")
        shutil.copyfile(final, weights / SHIPPED.name)
    if "bidiff" in stages:
        from .train_bidiff import main as train_bidiff

        final = _run(train_bidiff, cache / "bidiff", BIDIFF_ARGS, args.quick, "bidiff.safetensors")
        shutil.copyfile(final, weights / SHIPPED_MODEL.name)
    return 0
