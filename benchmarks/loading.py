"""Loading full-size single files: our loaders against ComfyUI's and diffusers' own, in one run.

Files: an SD1.5 checkpoint (U-Net + VAE + CLIP-L in the original LDM layout, with the schedule buffers and
CLIP position_ids real files carry) and a ControlNet v1.1 (the original layout without `control_model.`,
as the widely used `control_v11p_sd15_*_fp16.safetensors` re-packs), random weights in the real shapes,
fp16 by default. They are written once into a cache folder (about 2.9 GB) and read once before timing,
so every row reads from the page cache.

Rows, each in a fresh process with 1 torch thread (imports not timed):
- ours: `loading.load_single_file` / `controlnet.load_controlnet` (each tensor cast to float32 straight
  from the file's mapping, modules built without initialisation, the tensors assigned);
- ours, random init: the same code with accelerate's `init_empty_weights` made a no-op, i.e. modules
  initialised at random and then overwritten, as the loaders did before (they also copied the tensors
  in, which this row does not: the old path was a little slower still);
- ComfyUI: `comfy.sd.load_checkpoint_guess_config` / `comfy.controlnet.load_controlnet` from the ComfyUI
  tree of scripts/env.sh (or COMFYUI_PATH), `--cpu`;
- diffusers: `StableDiffusionPipeline.from_single_file` / `ControlNetModel.from_single_file`, offline,
  with local configs written beside the files.
Reported per row: wall and CPU seconds of the load call, peak RSS (VmHWM) during it, RSS before it, and
the time ratio against ours. All rows read through a mapping of the file, whose pages count in RSS while
mapped (they are page cache). ComfyUI keeps CLIP's weights in float16 on the CPU (its text-encoder dtype)
and casts per layer at run time: it converts ~123M fewer parameters than the other rows.
Every row must end with a float32 U-Net (ControlNet) on the CPU holding the file's numbers (one tensor is checked).

    python benchmarks/loading.py [--cache DIR] [--repeat 3] [--dtype float16] [--warm-gb 10] [--json ...]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

DEFAULT_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "papernodes-loading-bench"
SD_FILE, CN_FILE = "sd15_random.safetensors", "control_sd15_random.safetensors"
# (model, row) in run order; ours first so the others' ratios can be printed as they finish
ROWS = [
    ("sd15", "ours"),
    ("sd15", "ours_random_init"),
    ("sd15", "comfyui"),
    ("sd15", "diffusers"),
    ("controlnet", "ours"),
    ("controlnet", "ours_random_init"),
    ("controlnet", "comfyui"),
    ("controlnet", "diffusers"),
]
# One tensor per model, compared with the file after loading: (file key, how to reach it per row).
PROBE = {
    "sd15": "model.diffusion_model.input_blocks.4.1.proj_in.weight",
    "controlnet": "zero_convs.5.0.weight",
}


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _schedule_buffers() -> dict:
    """The DDPM buffers that original SD checkpoints carry next to the weights (scaled-linear betas)."""
    import torch

    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    variance = betas * (1 - prev) / (1 - alphas_cumprod)
    bufs = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1 - alphas_cumprod),
        "posterior_mean_coef2": (1 - prev) * (1 - betas).sqrt() / (1 - alphas_cumprod),
    }
    return {k: v.float() for k, v in bufs.items()}


def _random_like(shapes: dict, dtype, seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(s, generator=g) * 0.02).to(dtype) for k, s in shapes.items()}


def write_files(cache: Path, dtype_name: str) -> dict[str, Path]:
    """The two full-size files (written once per dtype) and the local configs diffusers needs offline."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from papernodes.models.common import controlnet as cnio
    from papernodes.models.common import ldm_layout, loading
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    dtype = getattr(torch, dtype_name)
    folder = cache / dtype_name
    paths = {"sd15": folder / SD_FILE, "controlnet": folder / CN_FILE, "sd15_config": folder / "sd15_config",
             "controlnet_config": folder / "controlnet_config"}  # fmt: skip
    unet_cfg, vae_cfg = ldm_layout.shipped_config("sd15_unet"), ldm_layout.shipped_config("sd_vae")
    clip_cfg = ldm_layout.shipped_config("clip_l_text")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        vae = AutoencoderKL.from_config(vae_cfg)
        clip = CLIPTextModel(CLIPTextConfig(**clip_cfg))
        cn = ControlNetModel.from_unet(unet)
    if not paths["sd15"].is_file():
        folder.mkdir(parents=True, exist_ok=True)
        ldm = ldm_layout.unet_to_ldm(unet.state_dict(), dict(unet.config))
        ldm.update(ldm_layout.vae_to_ldm(vae.state_dict(), dict(vae.config)))
        ldm.update(ldm_layout.clip_to_ldm(clip.state_dict()))
        shapes = {k: tuple(v.shape) for k, v in ldm.items()}
        print(f"[bench] writing {paths['sd15']} ({len(shapes)} tensors, {dtype_name}) ...", flush=True)
        sd = _random_like(shapes, dtype, seed=0)
        sd.update(_schedule_buffers())
        sd[ldm_layout.CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
        tmp = paths["sd15"].with_suffix(".tmp")
        save_file(sd, str(tmp))
        tmp.rename(paths["sd15"])
        del sd
    if not paths["controlnet"].is_file():
        shapes = {k: tuple(v.shape) for k, v in cnio.ldm_keys(cn, prefix="").items()}
        print(f"[bench] writing {paths['controlnet']} ({len(shapes)} tensors, {dtype_name}) ...", flush=True)
        tmp = paths["controlnet"].with_suffix(".tmp")
        save_file(_random_like(shapes, dtype, seed=1), str(tmp))
        tmp.rename(paths["controlnet"])
    # Local configs for diffusers' from_single_file (it would otherwise fetch them from the hub).
    pipe = paths["sd15_config"]
    if not (pipe / "model_index.json").is_file():
        for sub, cfg in (("unet", unet.config), ("vae", vae.config)):
            (pipe / sub).mkdir(parents=True, exist_ok=True)
            (pipe / sub / "config.json").write_text(json.dumps(dict(cfg), indent=2))
        (pipe / "text_encoder").mkdir(parents=True, exist_ok=True)
        CLIPTextConfig(**clip_cfg).to_json_file(str(pipe / "text_encoder" / "config.json"))
        shutil.copytree(loading.TOKENIZER_DIR, pipe / "tokenizer", dirs_exist_ok=True)
        (pipe / "scheduler").mkdir(exist_ok=True)
        scheduler = loading.shipped_scheduler_config()
        (pipe / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
        (pipe / "model_index.json").write_text(json.dumps({
            "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", scheduler["_class_name"]],
            "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False,
        }, indent=2))  # fmt: skip
    cn_cfg = paths["controlnet_config"]
    if not (cn_cfg / "config.json").is_file():
        cn_cfg.mkdir(parents=True, exist_ok=True)
        (cn_cfg / "config.json").write_text(json.dumps(dict(cn.config), indent=2))
    return paths


# --------------------------------------------------------------------------------------------------
# One row, in a child process
# --------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _comfy_import(comfyui: str):
    """ComfyUI's loaders in-process (HOST.md): args before comfy.model_management is imported."""
    sys.path.insert(0, comfyui)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.controlnet
    import comfy.sd

    return comfy


def _loader(model: str, row: str, paths: dict, comfyui: str):
    """(load function, probe function: loaded object -> the probe tensor) for one row."""
    import torch

    if row in ("ours", "ours_random_init"):
        # what the loaders import on first use (inside ComfyUI the pack's other modules import it at start)
        import diffusers.loaders.single_file_utils  # noqa: F401
        from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel  # noqa: F401
        from papernodes.models.common import controlnet as cnio
        from papernodes.models.common import loading
        from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401

        if row == "ours_random_init":
            import accelerate

            accelerate.init_empty_weights = lambda include_buffers=None: contextlib.nullcontext()
        if model == "sd15":
            return (
                lambda: loading.load_single_file(paths["sd15"]),
                lambda c: c.unet.down_blocks[1].attentions[0].proj_in.weight,
            )
        return lambda: cnio.load_controlnet(paths["controlnet"]), lambda m: m.controlnet_down_blocks[5].weight
    if row == "comfyui":
        comfy = _comfy_import(comfyui)
        if model == "sd15":
            return (
                lambda: comfy.sd.load_checkpoint_guess_config(
                    str(paths["sd15"]), output_vae=True, output_clip=True, embedding_directory=None
                ),
                lambda out: out[0].model.diffusion_model.input_blocks[4][1].proj_in.weight,
            )
        return (
            lambda: comfy.controlnet.load_controlnet(str(paths["controlnet"])),
            lambda cn: cn.control_model.zero_convs[5][0].weight,
        )
    if row == "diffusers":
        from diffusers import ControlNetModel, StableDiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        if model == "sd15":
            return (
                lambda: StableDiffusionPipeline.from_single_file(
                    str(paths["sd15"]),
                    config=str(paths["sd15_config"]),
                    local_files_only=True,
                    safety_checker=None,
                    requires_safety_checker=False,
                    torch_dtype=torch.float32,
                ),
                lambda p: p.unet.down_blocks[1].attentions[0].proj_in.weight,
            )
        return (
            lambda: ControlNetModel.from_single_file(
                str(paths["controlnet"]),
                config=str(paths["controlnet_config"]),
                local_files_only=True,
                torch_dtype=torch.float32,
            ),
            lambda m: m.controlnet_down_blocks[5].weight,
        )
    raise ValueError(f"unknown row {row!r}")


def child(model: str, row: str, paths: dict, comfyui: str) -> dict:
    import torch
    from safetensors import safe_open

    torch.set_num_threads(1)
    load, probe = _loader(model, row, paths, comfyui)
    with safe_open(str(paths[model]), framework="pt") as f:
        expected = f.get_tensor(PROBE[model]).float()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    rss_before = _status_kib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    loaded = load()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM")
    got = probe(loaded).detach().to("cpu")
    if got.dtype != torch.float32 or not torch.equal(got.reshape(expected.shape), expected):
        raise RuntimeError(f"{model}/{row}: the loaded weights differ from the file ({got.dtype})")
    return {"model": model, "row": row, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "peak_rss_mb": round(peak / 1024), "rss_before_mb": round(rss_before / 1024)}  # fmt: skip


def run_child(model: str, row: str, cache: Path, dtype: str, comfyui: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    cmd = [sys.executable, __file__, "--child", model, row, "--cache", str(cache), "--dtype", dtype,
           "--comfyui", comfyui]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return {"model": model, "row": row, "error": " | ".join(tail)}
    return json.loads(lines[-1])


def _comfyui_dir() -> str:
    if os.environ.get("COMFYUI_PATH"):
        return os.environ["COMFYUI_PATH"]
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "env.sh")], capture_output=True, text=True)
    return next((ln[len("COMFYUI=") :] for ln in out.stdout.splitlines() if ln.startswith("COMFYUI=")), "")


def warm_memory(gb: float) -> None:
    """Touch `gb` of fresh memory once, then free it. On a virtual machine the first touch of guest memory
    the host has not backed yet is several times slower than a later touch: measured on a fresh machine,
    the first round's rows took 1.3-5x their later times (ours 14.1 s, then 11.9, 7.0, 5.3, 5.6), so the
    rows that touched new memory first lost, whatever their code. Warming beforehand gives every row the
    same already-backed memory (`--warm-gb 0` to see the effect)."""
    if gb <= 0:
        return
    import numpy as np

    block = np.ones(int(gb * 2**30), dtype=np.uint8)  # np.ones writes every page
    del block


LABELS = {"ours": "ours (no random init)", "ours_random_init": "ours, random init (old path)",
          "comfyui": "ComfyUI 0.3.75", "diffusers": "diffusers from_single_file"}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the full-size files are written")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all rows; the fastest is reported")
    parser.add_argument("--comfyui", default=None, help="ComfyUI directory (default: scripts/env.sh's)")
    parser.add_argument("--json", default=str(REPO_ROOT / "benchmarks" / "results" / "loading-cpu.json"))
    parser.add_argument("--warm-gb", type=float, default=10.0,
                        help="GB of memory touched once (then freed) before the rounds; 0 = none")  # fmt: skip
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "ROW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    if args.child:
        paths = write_files(cache, args.dtype)
        print(json.dumps(child(*args.child, paths, args.comfyui or "")), flush=True)
        return 0

    comfyui = args.comfyui or _comfyui_dir()
    paths = write_files(cache, args.dtype)
    for key in ("sd15", "controlnet"):  # into the page cache: every row reads from memory
        with open(paths[key], "rb") as f:
            while f.read(1 << 24):
                pass
    warm_memory(args.warm_gb)
    load_before = os.getloadavg()[0]  # other processes on the machine: "measured under load" when > ~0.5
    runs: dict[tuple[str, str], list[dict]] = {key: [] for key in ROWS}
    for round_ in range(max(1, args.repeat)):  # rounds, so that a change of machine load hits every row
        for model, row in ROWS:
            result = run_child(model, row, cache, args.dtype, comfyui)
            runs[(model, row)].append(result)
            took = f"{result['seconds']:.2f} s" if "error" not in result else f"failed: {result['error']}"
            print(f"[round {round_ + 1}] {model} {row}: {took}", flush=True)
    results, ours = [], {}
    print(f"{'model':<11} {'row':<30} {'s':>7} {'median':>7} {'cpu s':>7} {'x ours':>7} {'peak MB':>8} "
          f"{'before MB':>9}")  # fmt: skip
    for model, row in ROWS:
        ok = [r for r in runs[(model, row)] if "error" not in r]
        best = min(ok, key=lambda r: r["seconds"]) if ok else runs[(model, row)][0]
        if ok:
            best["runs_seconds"] = [r["seconds"] for r in ok]
            best["median_seconds"] = sorted(best["runs_seconds"])[len(ok) // 2]
            if row == "ours":
                ours[model] = best["seconds"]
            if model in ours:
                best["ratio_to_ours"] = round(best["seconds"] / ours[model], 2)
            print(f"{model:<11} {LABELS[row]:<30} {best['seconds']:>7.2f} {best['median_seconds']:>7.2f} "
                  f"{best['cpu_seconds']:>7.2f} "
                  f"{best.get('ratio_to_ours', float('nan')):>7.2f} {best['peak_rss_mb']:>8} "
                  f"{best['rss_before_mb']:>9}", flush=True)  # fmt: skip
        else:
            print(f"{model:<11} {LABELS[row]:<30} failed: {best['error']}", flush=True)
        results.append(best)
    import torch

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    sizes = {k: round(paths[k].stat().st_size / 2**20) for k in ("sd15", "controlnet")}
    meta = {"dtype": args.dtype, "file_mb": sizes, "torch_threads": 1, "repeat": args.repeat,
            "warm_gb": args.warm_gb}  # fmt: skip
    meta.update(torch=torch.__version__, comfyui=comfyui, cpus=os.cpu_count())
    meta.update(loadavg_1min_before=load_before, loadavg_1min_after=os.getloadavg()[0], rows=results)
    out.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out} (1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
