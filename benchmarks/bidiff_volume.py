"""BiDiff's volume stage at the paper's grid sizes: peak memory and time of one 3D step, by resolution.

One 3D step of the bidirectional sampler (pipeline.py): back-project the noisy views into an R³ feature
volume, the 3D U-Net to an SDF + colour grid, and NeuS renders of that grid (the 3D x̂0). The shipped
world model's 3D denoiser (trained at 16³; a convolutional network, so its weights run at any R divisible
by 4) at R = 16, 32, 64, 96 (the paper's volume is 96³). Rows: "chunked" = the defaults (back-projection
`volume.POINT_CHUNK` voxels at a time, the U-Net's blocks in slabs of `volume.SLAB_DEPTH` planes,
slabs.py) and "dense" = all voxels at once, whole blocks. Each row in a fresh process, 1 torch thread,
inference mode; "work" = VmHWM minus the RSS before the step (the high-water mark reset through
/proc/self/clear_refs), for the back-projection alone and for the whole step (which back-projects
again, then runs the U-Net and the renders); seconds of each.

    python benchmarks/bidiff_volume.py [--resolutions 16 32 64 96] [--json benchmarks/results/bidiff-volume-cpu.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

MODES = ("chunked", "dense")


def _status(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def child(resolution: int, mode: str) -> dict:
    import torch
    from papernodes.models.bidiff.demo import SHIPPED_MODEL
    from papernodes.models.bidiff.grid_prior import tokenize
    from papernodes.models.bidiff.pipeline import load_bidiff
    from papernodes.models.bidiff.volume import VolumeDenoiser

    torch.set_num_threads(1)
    shipped = load_bidiff(SHIPPED_MODEL).volume
    vol = VolumeDenoiser(dataclasses.replace(shipped.config, resolution=resolution))
    vol.load_state_dict(shipped.state_dict())
    vol.eval()
    del shipped
    if mode == "dense":
        vol.point_chunk, vol.slab_depth = None, None
    c = vol.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c.views, 3, c.size, c.size, generator=g)
    t = torch.tensor([500])
    tokens = tokenize(["a red striped cube"], list(c.vocabulary), vol.net.config.max_tokens)
    with torch.inference_mode():
        before = _status("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        feats = vol.volume(x, t)
        t1 = time.perf_counter()
        back_projection_mb = _status("VmHWM") - before
        del feats
        grid = vol(x, t, tokens)  # back-projection again, then the U-Net (slabs unless dense)
        renders = vol.render(grid)
        t2 = time.perf_counter()
    return {
        "resolution": resolution, "mode": mode, "rss_before_mb": before,
        "back_projection_work_mb": back_projection_mb, "step_work_mb": _status("VmHWM") - before,
        "back_projection_s": t1 - t0, "step_s": t2 - t0, "renders": list(renders.shape),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[16, 32, 64, 96])
    ap.add_argument("--json", default=str(REPO_ROOT / "benchmarks/results/bidiff-volume-cpu.json"))
    ap.add_argument("--quiet-machine", action="store_true", help="record that nothing else ran")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return 0
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    print(f"{'R':>4} {'mode':8} {'back-proj MB':>12} {'step MB':>9} {'back-proj s':>11} {'step s':>7}")
    for r in args.resolutions:
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--child", str(r), mode], env=env, check=True,
                                 capture_output=True, text=True).stdout  # fmt: skip
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{r:>4} {mode:8} {row['back_projection_work_mb']:>12.0f} {row['step_work_mb']:>9.0f} "
                  f"{row['back_projection_s']:>11.2f} {row['step_s']:>7.2f}", flush=True)  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "quiet_machine": args.quiet_machine,
                                           "load_average": os.getloadavg()}, indent=1))  # fmt: skip
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
