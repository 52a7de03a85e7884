"""One command that reproduces the avatar world's shipped TriHuman avatar from seeds.

    python -m models.trihuman.reproduce                      # template, then avatar
    python -m models.trihuman.reproduce --stages avatar      # one stage

Stages (train.py, the world's 24 training motions of seed 0, 12 training views): `template` (the
deformable template from 256 px masks, TEMPLATE_ARGS), `avatar` (tri-planes and fields from 64 px
images, from the template stage's file, AVATAR_ARGS), `ablation` (the avatar stage on the skinned template,
no template stage: the benchmark's ablation row; not shipped). Runs resume from their checkpoints (`--resume
auto`). The shipped file goes to models/proving_ground/weights/world_avatar/; runs live in --cache. Use 1
torch thread per process (OMP_NUM_THREADS=1) when anything else runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # `python -m models.trihuman.reproduce`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import add_stages, chosen_stages  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "proving_ground" / "weights" / "world_avatar"
AVATAR_FILE = "trihuman-world.safetensors"
TEMPLATE_ARGS = ["--stage", "template", "--size", "256", "--max-steps", "1500", "--save-every", "500"]
AVATAR_ARGS = [
    "--stage", "avatar", "--size", "64", "--max-steps", "5000", "--lr-decay-from", "1250", "--save-every", "250",
]  # fmt: skip  # NeuS's midpoint renderer (train.py's default) is 1.6x faster per step: twice the steps
STAGES = ("template", "avatar", "ablation")


def _train(out: Path, args: list[str], quick: bool) -> Path:
    from .train import MODEL_FILE, main

    args = ["--out", str(out), *args, "--resume", "auto"]
    if quick:
        args += ["--max-steps", "2", "--world-sequences", "1", "--world-frames", "3", "--save-every", "0",
                 "--size", "32", "--rays", "32"]  # fmt: skip
    code = main(args)
    if code:
        raise SystemExit(code)
    return out / "final" / MODEL_FILE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stages(p, STAGES)
    p.add_argument("--weights", default=str(WEIGHTS), help="where the shipped file goes")
    p.add_argument("--cache", default=".work/trihuman-reproduce", help="training runs (resumable)")
    p.add_argument("--quick", action="store_true", help="a plumbing check with tiny budgets")
    args = p.parse_args(argv)
    stages = chosen_stages(p, args.stages, STAGES)
    weights, cache = Path(args.weights), Path(args.cache)
    for stage in stages:
        t0 = time.perf_counter()
        if stage == "template":
            _train(cache / "template", TEMPLATE_ARGS, args.quick)
        elif stage == "ablation":
            _train(cache / "avatar-skinned-template", AVATAR_ARGS, args.quick)
        else:
            init = cache / "template" / "final" / "trihuman-avatar.safetensors"
            final = _train(cache / "avatar", [*AVATAR_ARGS, "--init", str(init)], args.quick)
            weights.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(final, weights / AVATAR_FILE)
        print(f"{stage}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
