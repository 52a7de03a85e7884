"""One command that reproduces the hand-motion world's shipped models from seeds.

    python -m models.handdiffuse.reproduce                        # evaluator + generator (+ ablation)
    python -m models.handdiffuse.reproduce --stages evaluator     # one stage

Stages: `evaluator` (the action classifier of classifier.py on 1 400 world clips of seed 1), `generator`
(train.py on the world, seed 0, the settings in GENERATOR_ARGS), `ablation` (the same run with
`--interaction-weight 0`, for the benchmark's ablation row; not shipped). Generator runs resume from
their checkpoints (`--resume auto`), so an interrupted reproduce continues where it stopped. Shipped
files go to models/proving_ground/weights/world_hands/; runs live in --cache. Use 1 torch thread per
process when several run (OMP_NUM_THREADS=1): the two generator runs took 30 and 26 min side by side on
2 cores (2026-12-04, with the smoothness loss); the generator alone 50 min on 1 thread beside other work
(2026-12-07, with the clearance term).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # `python -m models.handdiffuse.reproduce`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import add_stages, chosen_stages  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "proving_ground" / "weights" / "world_hands"
GENERATOR_FILE = "handdiffuse-world.safetensors"
EVALUATOR_FILE = "action_classifier.safetensors"
GENERATOR_ARGS = [
    "--width", "128", "--heads", "4", "--single-layers", "3", "--interact-layers", "2",
    "--batch-size", "16", "--lr", "5e-4", "--max-steps", "5000", "--save-every", "500",
    "--smoothness-weight", "3",
    # the interaction terms only below t = 200 with the two-sided clearance term (since 2026-12-07): claps
    # close in 85 % of clips (0 % before); the overlap it adds is removed at sampling (separate_hands)
    "--interaction-noise-weight", "low_noise", "--clearance-weight", "1", "--clearance-sides", "both",
]  # fmt: skip  # a 4000-step cool-down (--lr-decay-from 5000 --max-steps 9000) was tried: docs/handdiffuse.md
EVALUATOR_CLIPS = (1, 1400)  # (world seed, clips): disjoint from the generator's seed 0
STAGES = ("evaluator", "generator", "ablation")


def stage_evaluator(weights: Path, quick: bool) -> None:
    import torch

    from .classifier import train_evaluator
    from .world import make_clips

    torch.manual_seed(0)
    seed, n = EVALUATOR_CLIPS
    clips = make_clips(seed, 70 if quick else n)
    evaluator = train_evaluator(clips, steps=20 if quick else 1500)
    weights.mkdir(parents=True, exist_ok=True)
    evaluator.save(weights / EVALUATOR_FILE)


def _train(out: Path, extra: list[str], quick: bool) -> Path:
    from .train import main

    args = ["--out", str(out), *GENERATOR_ARGS, "--resume", "auto", *extra]
    if quick:
        args += ["--max-steps", "4", "--world-clips", "14", "--save-every", "0", "--lr-decay-from", "0"]
    code = main(args)
    if code:
        raise SystemExit(code)
    return out / "final" / "handdiffuse.safetensors"


def stage_generator(weights: Path, cache: Path, quick: bool) -> None:
    final = _train(cache / "generator", [], quick)
    weights.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(final, weights / GENERATOR_FILE)


def stage_ablation(cache: Path, quick: bool) -> Path:
    return _train(cache / "ablation-no-interaction-loss", ["--interaction-weight", "0"], quick)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stages(p, STAGES)
    p.add_argument("--weights", default=str(WEIGHTS), help="where shipped files go")
    p.add_argument("--cache", default=".work/handdiffuse-reproduce", help="training runs (resumable)")
    p.add_argument("--quick", action="store_true", help="a plumbing check with tiny budgets")
    args = p.parse_args(argv)
    stages = chosen_stages(p, args.stages, STAGES)
    weights, cache = Path(args.weights), Path(args.cache)
    for stage in stages:
        t0 = time.perf_counter()
        if stage == "evaluator":
            stage_evaluator(weights, args.quick)
        elif stage == "generator":
            stage_generator(weights, cache, args.quick)
        else:
            stage_ablation(cache, args.quick)
        print(f"{stage}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
