"""RAM of a colorize -> InfEdit -> SwiftBrush session in one ComfyUI host, this checkout against an earlier one.

A user's session: three workflows run one after the other in the same server, as from the browser.
1. core Load Checkpoint (an InstructPix2Pix file) -> "Colorize: Model from Checkpoint" -> Colorize;
2. "InfEdit: Load LCM Model" (an SD1.5-family file) -> Edit Image;
3. "SwiftBrush: Load Student" (another SD1.5-family file) -> Generate.
The files are SD1.5-shaped as ComfyUI's loader recognises them (full-size VAE and CLIP-L, a one-level
U-Net with SD's widths: ~0.9 GB in float32 each; models/common/tiny.py), fp16 on disk as published.
Each row is a fresh server (`--cpu`, 1 torch thread) with one checkout of the pack installed; after each
workflow the server's RSS (VmRSS) is read, and its high-water mark (VmHWM) at the end. The "before" row
installs a git worktree of `--before` (default: the last commit before ComfyUI memory management); the
third row is this checkout with every loader's `dtype` set to fp16 (the bridge then converts the host's
float32 weights: a copy). RSS is read 11 s after each workflow: ComfyUI collects garbage (our models'
patcher cycles) at most every 10 s after a prompt.

    python benchmarks/memory.py [--before 6860b01] [--json benchmarks/results/memory-cpu.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import comfy_host  # noqa: E402  (scripts/comfy_host.py: the headless host the tests use)
import papernodes_bootstrap  # noqa: E402

papernodes_bootstrap.register()

FILES = {
    "bench-ip2p.safetensors": (0, 8),
    "bench-lcm.safetensors": (1, 4),
    "bench-student.safetensors": (2, 4),
}
DEFAULT_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "papernodes-memory-bench"


def write_files(cache: Path) -> None:
    """The three checkpoints, written once (random weights in the real layout, fp16)."""
    import torch
    from papernodes.models.common import saving, tiny

    cache.mkdir(parents=True, exist_ok=True)
    for name, (seed, channels) in FILES.items():
        if not (cache / name).is_file():
            comps = tiny.build_sd15_shaped_components(seed=seed, in_channels=channels)
            saving.save_single_file(comps, cache / name, dtype=torch.float16)


def workflows(dtype: str = "") -> list[tuple[str, dict]]:
    """The three prompts, from the example workflows' API twins with only the models and sizes changed
    (and, with `dtype`, every loader's dtype input set to it)."""
    api = REPO_ROOT / "example_workflows" / "api"
    color = json.loads((api / "colorize.json").read_text())
    loader = next(k for k, n in color.items() if n["class_type"] == "PaperNodes_LoadColorizer")
    color["ckpt"] = {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "bench-ip2p.safetensors"},
    }
    color[loader] = {
        "class_type": "PaperNodes_ColorizerFromCheckpoint",
        "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2], "dtype": "auto"},
    }
    edit = json.loads((api / "infedit.json").read_text())
    swift = json.loads((api / "swiftbrush.json").read_text())
    for prompt, cls, model in (
        (edit, "PaperNodes_InfEditLoadLCM", "checkpoints/bench-lcm.safetensors"),
        (swift, "PaperNodes_SwiftBrushLoadStudent", "checkpoints/bench-student.safetensors"),
    ):
        for node in prompt.values():
            if node["class_type"] == cls:
                node["inputs"]["model_name"] = model
    for prompt in (color, edit, swift):
        for node in prompt.values():
            inputs = node["inputs"]
            if "steps" in inputs:
                inputs["steps"] = 2
            for key in ("width", "height"):
                if key in inputs:
                    inputs[key] = 64
            if dtype and "dtype" in inputs:
                inputs["dtype"] = dtype
    return [("colorize", color), ("infedit", edit), ("swiftbrush", swift)]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def run_row(label: str, pack_dir: Path, cache: Path, comfy_dir: Path, dtype: str = "") -> dict:
    """One fresh server with `pack_dir` installed; the three workflows; RSS after each."""
    base = Path(tempfile.mkdtemp(prefix=f"papernodes-mem-{label}-"))
    host = comfy_host.ComfyHost(comfy_dir, base, pack_dir)
    host.prepare_base_dir()
    comfy_host.call_prepare_hook(comfy_host.DEMO_HOOK, base)  # the example workflows' input images
    for name in FILES:
        os.link(cache / name, base / "models" / "checkpoints" / name)
    os.environ["OMP_NUM_THREADS"] = "1"
    host.start(timeout=300)
    row: dict = {"row": label, "pack": str(pack_dir), "after_mb": {}, "seconds": {}}
    try:
        pid = host.proc.pid
        row["startup_mb"] = round(status_kb(pid, "VmRSS") / 1024)
        for name, prompt in workflows(dtype):
            t0 = time.monotonic()
            host.run(copy.deepcopy(prompt), timeout=1800)
            row["seconds"][name] = round(time.monotonic() - t0, 1)
            time.sleep(11)  # the server collects garbage at most every 10 s after a prompt (main.py)
            row["after_mb"][name] = round(status_kb(pid, "VmRSS") / 1024)
        row["peak_mb"] = round(status_kb(pid, "VmHWM") / 1024)
    finally:
        host.stop()
        shutil.rmtree(base, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="6860b01", help="git revision of the 'before' row")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the checkpoints are written")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    write_files(cache)
    comfy_dir = comfy_host.find_comfyui()
    worktree = Path(tempfile.mkdtemp(prefix="papernodes-before-")) / "ComfyUI-PaperNodes"
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                   check=True, capture_output=True)  # fmt: skip
    try:
        rows = [
            run_row(f"before ({args.before})", worktree, cache, comfy_dir),
            run_row("after (this checkout)", REPO_ROOT, cache, comfy_dir),
            run_row("after, dtype fp16", REPO_ROOT, cache, comfy_dir, "fp16"),
        ]
    finally:
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(worktree)], check=False
        )
    before, after = rows[:2]
    print(
        f"{'row':<24} {'startup':>8} {'colorize':>9} {'infedit':>8} {'swiftbrush':>10} {'peak':>7}  (MB RSS)"
    )
    for r in rows:
        a = r["after_mb"]
        print(f"{r['row']:<24} {r['startup_mb']:>8} {a['colorize']:>9} {a['infedit']:>8} {a['swiftbrush']:>10} "
              f"{r['peak_mb']:>7}")  # fmt: skip
    end = after["after_mb"]["swiftbrush"] / before["after_mb"]["swiftbrush"]
    print(
        f"peak after/before: {after['peak_mb'] / before['peak_mb']:.2f}; end of session after/before: {end:.2f}"
    )
    result = {
        "rows": rows,
        "comfyui": str(comfy_dir),
        "cpus": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
