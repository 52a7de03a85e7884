"""DreaMoving long-video sampling vs diffusers' AnimateDiffControlNetPipeline: time per frame and peak RSS.

Every run: pose control active (scale 0.5, DreaMoving's demo value), classifier-free guidance 7.5, DDIM on
AnimateDiff's linear-beta schedule, --steps steps, windows of 16 frames with overlap 4, VAE decode in
chunks of 8 frames, torch.set_num_threads(--threads). Rows:

- ours (Video ControlNet): DreaMovingPipeline with the Video ControlNet (image ControlNet + motion blocks,
  Sec. 3.2) - the DreaMoving configuration; frame-split sampling (the default: spatial layers and the
  ControlNet once per frame in 16-frame chunks, only the motion blocks windowed, `common.frame_split`);
- ours (image ControlNet): the same pipeline with the plain ControlNetModel run frame by frame - the
  like-for-like row against diffusers, which only takes a ControlNetModel;
- ours (image CN, U-Net windows): the same with `split=False`: the whole U-Net and ControlNet per window
  (the previous default, memory of one window) - the baseline of the split;
- diffusers FreeNoise: AnimateDiffControlNetPipeline (diffusers 0.42) built from the same UNetMotionModel,
  ControlNetModel, VAE, text encoder and scheduler config, with `enable_free_noise(context_length=16,
  context_stride=12, weighting_scheme="pyramid", noise_type="random")`: the same 16/12 end-aligned
  windows, pyramid-weighted, same initial noise. FreeNoise windows only the motion modules; the spatial
  U-Net layers and the ControlNet see all frames at once. Without FreeNoise the pipeline cannot take more
  than 32 frames (the motion modules' positional table), so there is no single-pass diffusers row;
- diffusers FreeNoise + split: the same plus `enable_free_noise_split_inference()` (diffusers' memory
  option: U-Net layers run in 16-frame / 256-position chunks; the ControlNet still sees all frames).
  Large model only by default (on the tiny model the working memory is a few MB).

Each (model, row, frame count) runs in a fresh subprocess: build the seeded models, one warm-up run
(16 frames, 1 step), reset the RSS high-water mark (/proc/self/clear_refs "5"), then one timed run.
Peak memory is VmHWM of that run (the whole process, imports and weights included) and, as "work", VmHWM
minus the RSS right before the run. Time is wall and process CPU time (the CPU time is steadier on a
shared machine). At 16 frames the "ours (image ControlNet)" and diffusers outputs are compared (same
modules, noise and windows: they must agree to float rounding).

    python benchmarks/dreamoving.py [--models tiny,large] [--frames 16,32,64,128] [--steps 4] [--threads 1]
                                    [--resume]   # keep the finished runs of an interrupted invocation

Models: "tiny" = the tests' seeded SD1.5-architecture doubles (U-Net blocks (32, 64)) at 64x64 px;
"large" = U-Net blocks (64, 128, 256), 2 cross-attention levels, motion adapter to match, at 128x128 px.
Whole-U-Net windows re-run overlapped frames through every layer, so with 16/12 windows the frame
evaluations per output frame are 1, 1.5, 1.25, 1.375 at 16, 32, 64, 128 frames (-> 4/3 for long videos):
the per-frame time of that row follows the factor, and the table prints it next to the measured ratio.
The split rows (and FreeNoise) pay it in the motion blocks only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import diffusers
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()
for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_key, "1")

from papernodes.models.common import tiny  # noqa: E402
from papernodes.models.dreamoving.windows import context_windows  # noqa: E402

PROMPT, NEGATIVE = "a person dancing in a park", "blurry, low quality"
WINDOW, OVERLAP, GUIDANCE, DECODE_CHUNK = 16, 4, 7.5, 8
ROWS = {
    "ours": "ours (Video ControlNet)",
    "ours_image_cn": "ours (image ControlNet)",
    "ours_windows": "ours (image CN, U-Net windows)",
    "diffusers": "diffusers FreeNoise",
    "diffusers_split": "diffusers FreeNoise + split",
}
MODELS = {
    "tiny": {"unet": {}, "size": 64, "rows": ("ours", "ours_image_cn", "ours_windows", "diffusers")},
    "large": {
        "unet": {
            "block_out_channels": (64, 128, 256),
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        },
        "size": 128,
        "rows": tuple(ROWS),
    },
}


# ----- memory ------------------------------------------------------------------------------------------------
def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> int:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); returns that RSS."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    rss = _status("VmRSS")
    if _status("VmHWM") > rss + (8 << 20):
        raise RuntimeError("/proc/self/clear_refs did not reset VmHWM: peak memory cannot be measured")
    return rss


# ----- models ------------------------------------------------------------------------------------------------
def build_models(name: str) -> dict:
    """Seeded SD1.5-architecture components, a motion adapter to match, and a pose ControlNet."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from papernodes.models.common.animatediff import build_tiny_motion_adapter
    from papernodes.models.dreamoving.video_controlnet import VideoControlNet

    spec = MODELS[name]
    comps = tiny.build_tiny_components(seed=0)
    unet_cfg = {**tiny.TINY_UNET, **spec["unet"]}
    if spec["unet"]:
        torch.manual_seed(10)
        comps.unet = UNet2DConditionModel(**unet_cfg)
        tiny._perturb(comps.unet, torch.Generator().manual_seed(11))
        comps.unet.eval().requires_grad_(False)
    chans = tuple(unet_cfg["block_out_channels"])
    adapter = build_tiny_motion_adapter(seed=1, zero_out=False, block_out_channels=chans)
    torch.manual_seed(5)
    cn = ControlNetModel.from_unet(comps.unet)
    tiny._perturb(cn, torch.Generator().manual_seed(6), scale=0.1)  # zero convs become non-zero
    cn.eval().requires_grad_(False)
    vcn_adapter = build_tiny_motion_adapter(seed=2, zero_out=False, block_out_channels=chans)
    vcn = VideoControlNet.from_motion_adapter(cn, vcn_adapter).eval().requires_grad_(False)
    return {"comps": comps, "adapter": adapter, "controlnet": cn, "vcn": vcn, "size": spec["size"]}


def pose_frames(num_frames: int, size: int) -> torch.Tensor:
    """Seeded stand-in control frames [F, 3, H, W] in 0..1 (the cost does not depend on the content)."""
    return torch.rand(num_frames, 3, size, size, generator=torch.Generator().manual_seed(7))


class FrameCounter:
    """Counts frames through the motion U-Net (rows x frames per call) by a forward pre-hook."""

    def __init__(self, unet):
        self.frames = 0
        self.handle = unet.register_forward_pre_hook(self._pre, with_kwargs=True)

    def _pre(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.frames += sample.shape[0] * sample.shape[2]


def make_runner(row: str, m: dict, steps: int):
    """(run(num_frames, steps) -> frames [F, H, W, 3], motion U-Net) for one benchmark row."""
    from papernodes.models.dreamoving.pipeline import DreaMovingPipeline
    from papernodes.models.dreamoving.video_controlnet import POSE_SCALE, ControlSpec

    comps, size = m["comps"], m["size"]
    pipe = DreaMovingPipeline(comps, m["adapter"])
    if row.startswith("ours"):
        net = m["vcn"] if row == "ours" else m["controlnet"]
        split = row != "ours_windows"

        def run(num_frames: int, n_steps: int) -> torch.Tensor:
            spec = ControlSpec(net, pose_frames(num_frames, size), scale=POSE_SCALE)
            return pipe(
                PROMPT,
                NEGATIVE,
                num_frames=num_frames,
                height=size,
                width=size,
                steps=n_steps,
                guidance=GUIDANCE,
                scheduler="ddim",
                seed=0,
                window=WINDOW,
                overlap=OVERLAP,
                controls=[spec],
                split=split,
            )

        return run, pipe.unet

    from diffusers import AnimateDiffControlNetPipeline

    # The same inflated U-Net and the same scheduler (DDIM, linear betas) our pipeline samples with.
    dp = AnimateDiffControlNetPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=pipe.unet,
        motion_adapter=m["adapter"],
        controlnet=m["controlnet"],
        scheduler=pipe.scheduler("ddim"),
    )
    dp.set_progress_bar_config(disable=True)
    dp.enable_free_noise(
        context_length=WINDOW,
        context_stride=WINDOW - OVERLAP,  # FreeNoise's stride is between window starts
        weighting_scheme="pyramid",
        noise_type="random",  # independent noise per frame, as ours
    )
    if row == "diffusers_split":
        dp.enable_free_noise_split_inference()

    def run_diffusers(num_frames: int, n_steps: int) -> torch.Tensor:
        video = dp(
            PROMPT,
            num_frames=num_frames,
            height=size,
            width=size,
            num_inference_steps=n_steps,
            guidance_scale=GUIDANCE,
            negative_prompt=NEGATIVE,
            generator=torch.Generator("cpu").manual_seed(0),
            conditioning_frames=list(pose_frames(num_frames, size)),  # a list of [3, H, W] frames
            controlnet_conditioning_scale=POSE_SCALE,
            output_type="pt",
            decode_chunk_size=DECODE_CHUNK,
        ).frames  # [1, F, 3, H, W] in 0..1
        return video[0].permute(0, 2, 3, 1)

    return run_diffusers, dp.unet


def worker(spec: dict) -> dict:
    """One measurement in this (fresh) process: build, warm up, reset the peak, time one run."""
    torch.set_num_threads(spec["threads"])
    m = build_models(spec["model"])
    run, unet = make_runner(spec["row"], m, spec["steps"])
    run(min(WINDOW, spec["frames"]), 1)  # warm-up: lazy allocations, oneDNN primitives
    counter = FrameCounter(unet)
    before = reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    out = run(spec["frames"], spec["steps"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status("VmHWM")
    counter.handle.remove()
    if spec.get("save"):
        torch.save(out.contiguous(), spec["save"])
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "wall_per_frame": wall / spec["frames"],
        "cpu_per_frame": cpu / spec["frames"],
        "peak_rss_bytes": peak,
        "rss_before_bytes": before,
        "peak_work_bytes": peak - before,
        "unet_frames_per_step": counter.frames / spec["steps"],
        "finite": bool(torch.isfinite(out).all()),
        "shape": list(out.shape),
    }


# ----- driver ------------------------------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (/proc/<pid>/stat fields 14, 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_subprocess(spec: dict, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter. The budget is the worker's CPU time, so a run that the
    machine's owner pauses (SIGSTOP) or starves is not mistaken for one that is too slow."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        while proc.poll() is None:
            if _cpu_seconds(proc.pid) > timeout:
                proc.kill()
                proc.wait()
                return {"status": f"over the budget of {timeout:.0f} CPU s"}
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return {"status": f"failed (exit {proc.returncode}): {' | '.join(tail)}"}
    return {"status": "ok", **json.loads(lines[-1][len("RESULT ") :])}


def evals_per_frame(num_frames: int) -> float:
    """Frame evaluations per output frame with our windows (1.0 when one window covers the clip)."""
    return sum(len(w) for w in context_windows(num_frames, WINDOW, OVERLAP)) / num_frames


def summarise(results: dict, frames: list[int]) -> dict:
    """Per model and row: ratios 128/16 (or longest/shortest) of time per frame and peak RSS."""
    lo, hi = min(frames), max(frames)
    out = {}
    for model, rows in results.items():
        out[model] = {}
        for row, by_frames in rows.items():
            a, b = by_frames.get(str(lo), {}), by_frames.get(str(hi), {})
            if a.get("status") != "ok" or b.get("status") != "ok":
                out[model][row] = {"status": "incomplete"}
                continue
            s = {
                "frames": [lo, hi],
                "wall_per_frame_ratio": b["wall_per_frame"] / a["wall_per_frame"],
                "cpu_per_frame_ratio": b["cpu_per_frame"] / a["cpu_per_frame"],
                "peak_rss_ratio": b["peak_rss_bytes"] / a["peak_rss_bytes"],
                "peak_work_ratio": b["peak_work_bytes"] / max(a["peak_work_bytes"], 1),
            }
            s["memory_flat"] = s["peak_rss_ratio"] <= 1.2
            if row == "ours_windows":  # whole-U-Net windows re-run overlapped frames through every layer
                s["window_factor"] = evals_per_frame(hi) / evals_per_frame(lo)
                s["cpu_per_evaluated_frame_ratio"] = s["cpu_per_frame_ratio"] / s["window_factor"]
            out[model][row] = s
        out[model]["vs_diffusers"] = versus_diffusers(rows, frames)
    return out


def versus_diffusers(rows: dict, frames: list[int]) -> dict:
    """Each of our rows against diffusers FreeNoise per length: speedup > 1 means ours is faster per frame."""
    theirs = rows.get("diffusers", {})
    out = {}
    for row in ("ours_image_cn", "ours", "ours_windows"):
        for f in frames:
            x, y = rows.get(row, {}).get(str(f), {}), theirs.get(str(f), {})
            if x.get("status") == "ok" and y.get("status") == "ok":
                out.setdefault(row, {})[str(f)] = {
                    "cpu_speedup": y["cpu_per_frame"] / x["cpu_per_frame"],
                    "wall_speedup": y["wall_per_frame"] / x["wall_per_frame"],
                    "peak_rss_ratio": x["peak_rss_bytes"] / y["peak_rss_bytes"],
                    "peak_work_ratio": x["peak_work_bytes"] / max(y["peak_work_bytes"], 1),
                }
    return out


def print_table(results: dict, summary: dict, frames: list[int]) -> None:
    mb = 1 << 20
    for model, rows in results.items():
        print(f"\n== {model} ({MODELS[model]['size']} px) ==")
        print(
            f"{'row':30s} {'frames':>6s} {'wall s/frame':>12s} {'CPU s/frame':>12s} {'peak RSS MB':>12s} "
            f"{'work MB':>8s} {'U-Net frames/step':>18s}"
        )
        for row, by_frames in rows.items():
            for f in frames:
                r = by_frames.get(str(f), {"status": "not run"})
                if r.get("status") != "ok":
                    print(f"{ROWS[row]:30s} {f:6d}  {r['status']}")
                    continue
                print(
                    f"{ROWS[row]:30s} {f:6d} {r['wall_per_frame']:12.4f} {r['cpu_per_frame']:12.4f} "
                    f"{r['peak_rss_bytes'] / mb:12.0f} {r['peak_work_bytes'] / mb:8.0f} "
                    f"{r['unet_frames_per_step']:18.0f}"
                )
        lo, hi = min(frames), max(frames)
        for row in rows:
            s = summary[model][row]
            if s.get("status") == "incomplete":
                print(f"{ROWS[row]:30s} {hi}/{lo}: incomplete")
                continue
            windows = (
                f"; frame evaluations x{s['window_factor']:.3f} -> per evaluation "
                f"x{s['cpu_per_evaluated_frame_ratio']:.2f}"
                if "window_factor" in s
                else ""
            )
            print(
                f"{ROWS[row]:30s} {hi}/{lo}: per-frame CPU x{s['cpu_per_frame_ratio']:.2f} "
                f"(wall x{s['wall_per_frame_ratio']:.2f}{windows}), "
                f"peak RSS x{s['peak_rss_ratio']:.2f} ({'flat' if s['memory_flat'] else 'NOT flat'}), "
                f"work x{s['peak_work_ratio']:.2f}"
            )
        for row, by_frames in summary[model]["vs_diffusers"].items():
            for f, v in by_frames.items():
                print(
                    f"  {ROWS[row]} at {f:>3s} frames: {v['cpu_speedup']:.2f}x diffusers' per-frame CPU speed "
                    f"(wall {v['wall_speedup']:.2f}x), peak RSS x{v['peak_rss_ratio']:.2f} "
                    f"(work x{v['peak_work_ratio']:.2f}) of diffusers'"
                )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,large", help="comma list of: " + ", ".join(MODELS))
    p.add_argument("--frames", default="16,32,64,128")
    p.add_argument(
        "--rows",
        default=None,
        help="comma list of: " + ", ".join(ROWS) + " (default: all for large, no split row for tiny)",
    )
    p.add_argument("--steps", type=int, default=4)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per run (1: stable on a shared machine)",
    )
    p.add_argument("--timeout", type=float, default=240.0, help="CPU seconds allowed per subprocess run")
    p.add_argument("--json", default=None, help="default benchmarks/results/dreamoving-cpu.json")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the successful runs of an earlier (interrupted) invocation with the same settings",
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    models = [x for x in args.models.split(",") if x]
    rows = [x for x in args.rows.split(",") if x] if args.rows else []
    frames = sorted(int(x) for x in args.frames.split(",") if x)
    for name, known in ((models, MODELS), (rows, ROWS)):
        bad = [x for x in name if x not in known]
        if bad:
            p.error(f"unknown {bad}; choose from {list(known)}")
    out = Path(args.json) if args.json else REPO_ROOT / "benchmarks" / "results" / "dreamoving-cpu.json"
    previous = json.loads(out.read_text()) if args.resume and out.exists() else {}
    settings = {"steps": args.steps, "threads": args.threads}
    old = previous.get("results", {}) if all(previous.get(k) == v for k, v in settings.items()) else {}
    # 16-frame outputs for the agreement check; outside the results folder, kept for --resume
    save_dir = Path(tempfile.gettempdir()) / f"papernodes-dreamoving-bench-{args.steps}steps"
    save_dir.mkdir(exist_ok=True)
    results: dict = {}
    agreement: dict = {}
    started = time.perf_counter()

    def write(complete: bool) -> dict:
        report = {
            "device": "cpu",
            **settings,
            "guidance": GUIDANCE,
            "window": WINDOW,
            "overlap": OVERLAP,
            "control": "pose, scale 0.5",
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
            "models": {m: {"size": MODELS[m]["size"], **MODELS[m]["unet"]} for m in models},
            "rows": ROWS,
            "complete": complete,
            "results": results,
            "summary": summarise(results, frames),
            "agreement": agreement,
            "seconds_this_invocation": time.perf_counter() - started,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        return report

    for model in models:
        results[model] = {}
        for row in rows or MODELS[model]["rows"]:
            results[model][row] = {}
            for f in frames:
                spec = {"model": model, "row": row, "frames": f, **settings}
                if f == WINDOW and row in ("ours_image_cn", "diffusers"):
                    spec["save"] = str(save_dir / f"{model}-{row}.pt")
                r = old.get(model, {}).get(row, {}).get(str(f), {})
                reused = r.get("status") == "ok" and ("save" not in spec or Path(spec["save"]).exists())
                if not reused:
                    r = run_subprocess(spec, args.timeout)
                results[model][row][str(f)] = r
                desc = f"{r['cpu_per_frame']:.4f} CPU s/frame" if r["status"] == "ok" else r["status"]
                when = "reused" if reused else f"{time.perf_counter() - started:4.0f} s"
                print(f"[{when:>6s}] {model} {ROWS[row]} {f} frames: {desc}", flush=True)
                write(complete=False)
        a, b = save_dir / f"{model}-ours_image_cn.pt", save_dir / f"{model}-diffusers.pt"
        ran = [
            results[model].get(r, {}).get(str(WINDOW), {}).get("status")
            for r in ("ours_image_cn", "diffusers")
        ]
        if ran == ["ok", "ok"] and a.exists() and b.exists():
            x, y = torch.load(a), torch.load(b)
            agreement[model] = {"frames": WINDOW, "max_abs_diff": float((x - y).abs().max())}
    report = write(complete=True)
    print_table(results, report["summary"], frames)
    for model, agr in agreement.items():
        print(
            f"{model}: ours (image CN) vs diffusers FreeNoise at {agr['frames']} frames, "
            f"max |difference| of the decoded frames = {agr['max_abs_diff']:.2e}"
        )
    print(f"wrote {out} ({report['seconds_this_invocation']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
