"""InfEdit vs the classic inversion baseline, on the same model and image, in one run.

Baseline (implemented here, not as a node): DDIM inversion of the source (50 steps, guidance 1), then
Prompt-to-Prompt editing (50 DDIM steps, guidance 7.5, source + target batched; cross-attention maps
replaced for 80 % of the steps, self-attention maps at <= 16x16 for 40 %).
Ours: InfEdit at the interactive defaults (15 steps) and the benchmark preset (12 steps).

Reported: U-Net calls (batched forward passes) and sample evaluations (rows through the U-Net), wall
time, peak RSS (VmHWM), and the reconstruction error of each method when target prompt = source prompt
(latent RMSE against z0 and image PSNR against the VAE reconstruction).

    python benchmarks/infedit.py [--model DIFFUSERS_FOLDER] [--size 64] [--json ...]

Without --model it uses the pack's tiny seeded model (plumbing-scale numbers, see README).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.kernels.processor import AttentionHook, HookState, attention_hooks  # noqa: E402
from papernodes.models.common import loading, tiny  # noqa: E402
from papernodes.models.infedit.align import token_alignment  # noqa: E402
from papernodes.models.infedit.pipeline import PRESETS, InfEditPipeline  # noqa: E402


class CountingUNet(torch.nn.Module):
    """Counts calls and rows while forwarding to the real U-Net (same attention processors)."""

    def __init__(self, unet):
        super().__init__()
        self.inner, self.calls, self.rows = unet, 0, 0

    def forward(self, x, t, encoder_hidden_states=None, **kw):
        self.calls += 1
        self.rows += x.shape[0]
        return self.inner(x, t, encoder_hidden_states=encoder_hidden_states, **kw)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def _hwm_reset():
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class P2PHook(AttentionHook):
    """Prompt-to-Prompt on a batch [src_u, tgt_u, src_c, tgt_c]: target rows take the source's maps."""

    def __init__(self, mapper, alphas, cross_until=0.8, self_until=0.4):
        self.mapper, self.alphas, self.cross_until, self.self_until = mapper, alphas, cross_until, self_until

    def supplied_probs(self, call):
        p = call.state.progress
        if call.is_cross and p > self.cross_until:
            return None
        if not call.is_cross and (p > self.self_until or call.q.shape[2] > 16 * 16):
            return None
        probs = torch.softmax(call.q.float() @ call.k.float().transpose(-1, -2) * call.scale, -1)
        b, lk = call.q.shape[0], call.k.shape[2]
        supplied = torch.zeros_like(probs)
        weights = torch.zeros(b, lk)
        for src, tgt in ((0, 1), (2, 3)):
            if call.is_cross:
                if src == 0:
                    continue  # P2P controls the conditional half's cross-attention only
                supplied[tgt] = probs[src][..., self.mapper]
                weights[tgt] = self.alphas
            else:
                supplied[tgt] = probs[src]
                weights[tgt] = 1.0
        return supplied, weights


@torch.no_grad()
def ddim_inversion_p2p(comps, image, source, target, steps=50, guidance=7.5):
    from diffusers import DDIMScheduler

    vae, unet = comps.vae, comps.unet
    sched = DDIMScheduler.from_config(
        {
            **{
                k: v
                for k, v in comps.scheduler_config.items()
                if k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")
            },
            "clip_sample": False,
            "set_alpha_to_one": False,
            "steps_offset": 1,
        }
    )
    sched.set_timesteps(steps)
    ac = sched.alphas_cumprod
    enc = lambda ps: comps.text_encoder(
        comps.tokenizer(
            ps,
            padding="max_length",
            max_length=77,
            truncation=True,  # noqa: E731
            return_tensors="pt",
        ).input_ids
    )[0]
    z0 = vae.encode(image.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
    src_c, tgt_c, unc = enc([source]), enc([target]), enc([""])
    x = z0
    ts = list(reversed(sched.timesteps.tolist()))
    for i, t in enumerate(ts):  # inversion: z0 -> x_T
        prev_a = ac[ts[i - 1]] if i > 0 else sched.final_alpha_cumprod
        eps = unet(x, t, encoder_hidden_states=src_c).sample
        x0 = (x - (1 - prev_a) ** 0.5 * eps) / prev_a**0.5
        x = ac[t] ** 0.5 * x0 + (1 - ac[t]) ** 0.5 * eps
    al = token_alignment(comps.tokenizer(source).input_ids, comps.tokenizer(target).input_ids)
    text = torch.cat([unc, unc, src_c, tgt_c])
    lat = torch.cat([x, x])
    state = HookState(num_steps=steps)
    with attention_hooks(unet, [P2PHook(al.mapper, al.alphas)], state):
        for i, t in enumerate(sched.timesteps):
            state.step = i
            e = unet(torch.cat([lat, lat]), t, encoder_hidden_states=text).sample
            eu, ec = e.chunk(2)
            lat = sched.step(eu + guidance * (ec - eu), t, lat).prev_sample
    return z0, lat


def _measure(fn, counter, repeat: int) -> dict:
    """Best-of-`repeat` wall time after a warm-up; U-Net counts and peak RSS of one run."""
    fn()
    best, peak = float("inf"), 0.0
    for _ in range(repeat):
        counter.calls = counter.rows = 0
        base = _hwm_reset()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, (_status("VmHWM") - base) / 2**20)
    return {"unet_calls": counter.calls, "unet_rows": counter.rows, "seconds": best, "peak_mib": peak}


def run(args) -> dict:
    comps = loading.load_components(args.model) if args.model else tiny.build_tiny_components(seed=0)
    counter = CountingUNet(comps.unet)
    comps.unet = counter
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, args.size, args.size, 3, generator=g)
    source, target = "a red circle and a green square", "a yellow circle and a green square"
    rows = {}
    pipe = InfEditPipeline(comps)
    for name, preset in (
        ("InfEdit interactive (15 steps)", PRESETS["interactive"]),
        ("InfEdit benchmark preset (12 steps)", PRESETS["benchmark"]),
    ):
        rows[name] = _measure(lambda p=preset: pipe(image, source, [target], p), counter, args.repeat)
        same = dict(preset.__dict__, target_guidance=preset.source_guidance)
        r = pipe(image, source, [source], type(preset)(**same))
        rows[name]["recon_latent_rmse"] = float((r.latents - r.z0).pow(2).mean().sqrt())
    name = "DDIM inversion 50 + P2P 50"
    rows[name] = _measure(lambda: ddim_inversion_p2p(comps, image, source, target), counter, args.repeat)
    z0, lat = ddim_inversion_p2p(comps, image, source, source)
    rows[name]["recon_latent_rmse"] = float((lat[1:] - z0).pow(2).mean().sqrt())
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="diffusers folder or single file (default: tiny model)")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (best is reported)")
    parser.add_argument("--json", default=str(REPO_ROOT / "benchmarks" / "results" / "infedit-cpu.json"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 gives stable numbers on a shared 2-core machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args)
    base = rows["DDIM inversion 50 + P2P 50"]
    print(f"model={args.model or 'tiny seeded'} size={args.size} threads={torch.get_num_threads()}")
    print(
        f"{'method':<38} {'calls':>6} {'rows':>6} {'seconds':>8} {'peak MiB':>9} {'recon RMSE':>11} "
        f"{'calls x':>8} {'time x':>7}"
    )
    for name, r in rows.items():
        print(
            f"{name:<38} {r['unet_calls']:>6} {r['unet_rows']:>6} {r['seconds']:>8.2f} {r['peak_mib']:>9.1f} "
            f"{r['recon_latent_rmse']:>11.2e} {base['unet_calls'] / r['unet_calls']:>8.2f} "
            f"{base['seconds'] / r['seconds']:>7.2f}"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps({"model": args.model or "tiny", "size": args.size, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
