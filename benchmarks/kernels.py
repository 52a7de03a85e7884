"""Attention ops vs their baselines, side by side in one run: time and peak memory, with ratios.

Shapes are SD1.5 at 64x64 latents (8 heads, d=40): self-attention 4096x4096, cross-attention 4096x77.
Peak memory is the process RSS high-water mark (VmHWM, reset through /proc/self/clear_refs), not
tracemalloc, which does not see torch's allocator. On a GPU the CUDA peak allocator stat is used.

    python benchmarks/kernels.py [--device cpu|cuda] [--repeat 3] [--json benchmarks/results/kernels-cpu.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.kernels import Context, ops  # noqa: E402
from papernodes.kernels.processor import attention_hooks  # noqa: E402


def _read_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(fn, device: torch.device, repeat: int) -> tuple[float, float]:
    """(median seconds, peak extra MiB) of fn(); one warm-up call first."""
    fn()
    times, peaks = [], []
    for _ in range(repeat):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            base = _rss_kib() * 1024
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _read_hwm_kib() * 1024
        peaks.append(max(0, peak - base) / 2**20)
        del result
    return statistics.median(times), max(peaks)


def naive_probs(q, k, v):
    """Materialise softmax(QK^T) for all heads at once, as a plain capture processor would."""
    p = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1)
    return p @ v, p.mean(1)


def run(device: torch.device, repeat: int, dtype: torch.dtype) -> list[dict]:
    g = torch.Generator("cpu").manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    h, d = 8, 40
    q = mk(1, h, 4096, d)
    k_self, v_self = mk(1, h, 4096, d), mk(1, h, 4096, d)
    k_txt, v_txt = mk(1, h, 77, d), mk(1, h, 77, d)
    k_f, v_f, k_c, v_c = mk(1, h, 4, d), mk(1, h, 4, d), mk(1, h, 16, d), mk(1, h, 16, d)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    from diffusers.models.attention_processor import Attention

    attn = Attention(query_dim=h * d, heads=h, dim_head=d).to(device, dtype).eval()
    hs = mk(1, 4096, h * d)

    cases = [
        (
            "self-attention module 4096^2",
            "diffusers default processor",
            lambda: attn(hs),
            lambda: _with_ours(attn, hs),
        ),
        (
            "cross-attention + probs 4096x77",
            "naive softmax(QK^T)",
            lambda: naive_probs(q, k_txt, v_txt),
            lambda: ops.attention_with_probs(q, k_txt, v_txt),
        ),
        (
            "cross-attention + probs 4096x77",
            "SDPA (no probs)",
            lambda: sdpa(q, k_txt, v_txt),
            lambda: ops.attention_with_probs(q, k_txt, v_txt),
        ),
        (
            "self-attention + probs 4096^2",
            "naive softmax(QK^T)",
            lambda: naive_probs(q, k_self, v_self),
            lambda: ops.attention_with_probs(q, k_self, v_self),
        ),
        (
            "multi-context (text+face+clothes)",
            "3x SDPA + adds",
            lambda: sdpa(q, k_txt, v_txt) + 0.6 * sdpa(q, k_f, v_f) + 0.4 * sdpa(q, k_c, v_c),
            lambda: ops.multi_context_attention(
                q, [Context(k_txt, v_txt), Context(k_f, v_f, 0.6), Context(k_c, v_c, 0.4)]
            ),
        ),
    ]
    rows = []
    with torch.no_grad():
        for name, baseline_name, baseline, ours in cases:
            bt, bm = measure(baseline, device, repeat)
            ot, om = measure(ours, device, repeat)
            rows.append(
                {
                    "op": name,
                    "baseline": baseline_name,
                    "baseline_s": bt,
                    "ours_s": ot,
                    "time_ratio": ot / bt,
                    "baseline_peak_mib": bm,
                    "ours_peak_mib": om,
                    "memory_ratio": om / bm if bm > 0 else None,
                }
            )
    return rows


def _with_ours(attn, hs):
    with attention_hooks(attn, []):
        return attn(hs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or float16 (GPU default)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="where to write results (default benchmarks/results/)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 gives stable numbers on a shared 2-core machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.float16 if device.type == "cuda" else torch.float32)
    )
    from papernodes.kernels.dispatch import select_backend

    backend = select_backend(device, dtype)
    rows = run(device, args.repeat, dtype)
    print(f"device={device} dtype={dtype} backend={backend} threads={torch.get_num_threads()}")
    print(
        f"{'op':<36} {'baseline':<28} {'base s':>8} {'ours s':>8} {'time x':>7} "
        f"{'base MiB':>9} {'ours MiB':>9} {'mem x':>6}"
    )
    for r in rows:
        mem = f"{r['memory_ratio']:.2f}" if r["memory_ratio"] is not None else "-"
        print(
            f"{r['op']:<36} {r['baseline']:<28} {r['baseline_s']:8.4f} {r['ours_s']:8.4f} "
            f"{r['time_ratio']:7.2f} {r['baseline_peak_mib']:9.1f} {r['ours_peak_mib']:9.1f} {mem:>6}"
        )
    out = (
        Path(args.json) if args.json else REPO_ROOT / "benchmarks" / "results" / f"kernels-{device.type}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": str(device),
                "dtype": str(dtype),
                "backend": backend,
                "machine": platform.machine(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
