"""Comparison cases for the Triton attention kernels against `kernels/reference.py`.

Two users:
- tests/test_kernels_triton.py tier (b) runs this file as a script in a subprocess with
  TRITON_INTERPRET=1 (the interpreter must be on before triton is imported, and the pytest process may
  already have imported it). The script prints one JSON object per case on stdout.
- tier (d) imports it and calls `run_case(case, device="cuda", ...)` in-process on a GPU.

Importing this module is cheap: torch and the pack are imported inside the functions.

    TRITON_INTERPRET=1 python tests/triton_interp_check.py [case-id ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_NAME = "papernodes"

# Absolute + relative tolerance per input dtype (exact fp32 dots under the interpreter / "ieee").
TOLERANCES = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}
TF32_TOLERANCE = 1e-2
PROBS_TOLERANCE = 1e-5


def _case(
    op: str,
    dtype: str,
    b: int,
    h: int,
    lq: int,
    lks: list[int],
    d: int,
    *,
    dv: int | None = None,
    masks: list[bool] | None = None,
    weights: list[float] | None = None,
    scale: float | None = None,
    fully_masked: bool = False,
    strided: bool = False,
    chunk: int | None = None,
    precision: str = "ieee",
    tag: str = "",
) -> dict:
    masks = masks if masks is not None else [False] * len(lks)
    weights = weights if weights is not None else [1.0] * len(lks)
    ctx = "+".join(f"{n}{'m' if m else ''}" for n, m in zip(lks, masks))
    case_id = (
        f"{op}-{dtype}-b{b}h{h}-q{lq}-k{ctx}-d{d}" + (f"v{dv}" if dv else "") + (f"-{tag}" if tag else "")
    ) + ("-tf32" if precision == "tf32" else "")
    return {
        "id": case_id,
        "op": op,
        "dtype": dtype,
        "B": b,
        "H": h,
        "Lq": lq,
        "Lk": lks,
        "D": d,
        "Dv": dv or d,
        "masks": masks,
        "weights": weights,
        "scale": scale,
        "fully_masked": fully_masked,
        "strided": strided,
        "chunk": chunk,
        "precision": precision,
    }


# Small shapes with awkward lengths (77, 150, 200), SD head dims (40, 64, 80, 160), masks, 1-3
# contexts. Interpreter cost grows with the number of tiles, so Lq/Lk stay at a few hundred at most.
CASES: list[dict] = [
    _case("attention", "float32", 1, 2, 128, [77], 40),
    _case("attention", "float16", 2, 2, 150, [200], 64, masks=[True]),
    _case("attention", "float32", 1, 2, 77, [150], 40, masks=[True], scale=0.3, tag="scale"),
    _case("attention", "float32", 1, 2, 64, [77], 80, masks=[True]),
    _case("attention", "float16", 1, 1, 40, [77], 160),
    _case("attention", "float32", 1, 2, 33, [77], 40, dv=64, tag="dv"),
    _case("attention", "float32", 2, 1, 50, [20], 20, masks=[True], tag="pad-d"),
    _case("attention", "float16", 2, 2, 70, [77], 40, strided=True, tag="strided"),
    _case("attention", "bfloat16", 1, 2, 64, [77], 64, masks=[True]),
    _case("multi", "float32", 1, 2, 128, [77], 40, weights=[0.5]),
    _case("multi", "float32", 2, 2, 150, [77, 4], 40, masks=[True, False], weights=[1.0, 0.6]),
    _case(
        "multi", "float16", 1, 2, 100, [77, 16, 150], 64, masks=[True, False, True], weights=[1.0, 0.5, -0.25]
    ),
    _case(
        "multi", "float32", 1, 1, 200, [77, 9, 33], 80, masks=[False, True, False], weights=[0.8, 1.2, 0.3]
    ),
    _case("probs", "float32", 1, 2, 128, [77], 40, masks=[True]),
    _case("probs", "float16", 1, 3, 150, [200], 64),
    _case("probs", "float32", 2, 2, 77, [150], 80, masks=[True], chunk=16, tag="chunk"),
    _case("probs", "float32", 1, 1, 40, [77], 160, scale=0.2, tag="scale"),
    # More heads, single query rows, tiny key sets; the tf32 code path (exact fp32 in the interpreter).
    _case("attention", "float16", 1, 8, 1, [1], 64, tag="single"),
    _case("attention", "float32", 2, 8, 96, [77], 64, masks=[True], precision="tf32"),
    _case(
        "multi", "float32", 1, 2, 70, [77, 4], 40, masks=[True, False], weights=[1.0, 0.5], precision="tf32"
    ),
    _case("probs", "float32", 1, 4, 70, [77], 40, masks=[True], precision="tf32"),
    _case("attention", "float16", 1, 2, 40, [77], 160, masks=[True], precision="tf32"),
    _case("probs", "float32", 1, 2, 40, [100], 80, masks=[True], precision="tf32"),
    _case("probs", "float16", 1, 2, 40, [77], 160, precision="tf32"),
    # A batch item whose keys are all masked: triton gives 0 there (reference probabilities are NaN).
    _case("attention", "float32", 2, 2, 64, [77], 40, masks=[True], fully_masked=True, tag="fully-masked"),
    _case(
        "multi",
        "float16",
        2,
        2,
        64,
        [77, 16],
        64,
        masks=[True, True],
        weights=[1.0, 0.7],
        fully_masked=True,
        tag="fully-masked",
    ),
    _case("probs", "float32", 2, 2, 64, [77], 40, masks=[True], fully_masked=True, tag="fully-masked"),
]
# GPU-only (tier d): shapes of real SD layers, too many tiles for the interpreter.
GPU_CASES: list[dict] = [
    _case("attention", "float16", 2, 8, 4096, [77], 40, masks=[True], tag="sd15-cross"),
    _case("attention", "float16", 1, 8, 1024, [1024], 64, tag="self"),
    _case("attention", "float16", 1, 20, 256, [256], 64, tag="sdxl-self"),
    _case("attention", "float16", 1, 8, 64, [64], 160, tag="sd15-mid"),
    _case(
        "multi",
        "float16",
        2,
        8,
        1024,
        [77, 16],
        80,
        masks=[True, False],
        weights=[1.0, 0.6],
        tag="ip-adapter",
    ),
    _case("probs", "float16", 2, 8, 1024, [77], 40, masks=[True], tag="p2p-cross"),
    _case("probs", "float16", 1, 8, 1024, [1024], 80, tag="p2p-self"),
]
CASE_IDS = [c["id"] for c in CASES]
assert len({c["id"] for c in CASES + GPU_CASES}) == len(CASES) + len(GPU_CASES), "duplicate case ids"
# Pseudo-case: every config the wrappers launched while running the cases is in KERNEL_CONFIGS.
COVERAGE_ID = "launched-configs-in-KERNEL_CONFIGS"


def import_pack():
    """Register the checkout as package `papernodes` (the pack's one bootstrap) and import the two backends."""
    import importlib

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import papernodes_bootstrap

    papernodes_bootstrap.register()
    reference = importlib.import_module(f"{PACKAGE_NAME}.kernels.reference")
    triton_attention = importlib.import_module(f"{PACKAGE_NAME}.kernels.triton_attention")
    return reference, triton_attention


def _inputs(case: dict, device, dtype):
    """Deterministic q and contexts for a case (seeded from its id)."""
    import torch

    reference, _ = import_pack()
    gen = torch.Generator().manual_seed(zlib.crc32(case["id"].encode()))
    b, h, lq, d, dv = case["B"], case["H"], case["Lq"], case["D"], case["Dv"]

    def rand(*shape):
        t = torch.randn(*shape, generator=gen, dtype=torch.float32).to(dtype)
        if case["strided"]:  # [B, L, H, D] memory viewed as [B, H, L, D]: non-contiguous input
            t = t.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3) if t.ndim == 4 else t
        return t.to(device)

    q = rand(b, h, lq, d)
    contexts = []
    for i, (lk, masked) in enumerate(zip(case["Lk"], case["masks"])):
        k, v = rand(b, h, lk, d), rand(b, h, lk, dv)
        mask = None
        if masked:
            mask = torch.rand(b, lk, generator=gen) > 0.3
            mask[:, 0] = True  # no accidental fully masked rows
            if case["fully_masked"] and i == 0:
                mask[0] = False
            mask = mask.to(device)
        contexts.append(reference.Context(k, v, case["weights"][i], mask))
    return q, contexts


def _expected(case: dict, q, contexts):
    """Reference result; for fully masked contexts of a batch item, that context contributes 0."""
    import torch

    reference, _ = import_pack()
    op, scale = case["op"], case["scale"]
    outs, probs = [], []
    for bi in range(q.shape[0]):
        qb = q[bi : bi + 1]
        live = []
        for c in contexts:
            m = None if c.key_mask is None else c.key_mask[bi : bi + 1]
            if m is not None and not bool(m.any()):
                continue
            live.append(reference.Context(c.k[bi : bi + 1], c.v[bi : bi + 1], c.weight, m))
        lk = contexts[0].k.shape[2]
        if not live:
            outs.append(
                torch.zeros(1, *q.shape[1:3], contexts[0].v.shape[-1], dtype=q.dtype, device=q.device)
            )
            probs.append(torch.zeros(1, q.shape[2], lk, dtype=torch.float32, device=q.device))
        elif op == "attention":
            c = live[0]
            outs.append(reference.attention(qb, c.k, c.v, c.key_mask, scale=scale))
        elif op == "multi":
            outs.append(reference.multi_context_attention(qb, live, scale=scale))
        else:
            c = live[0]
            o, p = reference.attention_with_probs(
                qb,
                c.k,
                c.v,
                c.key_mask,
                scale=scale,
                **({"chunk_size": case["chunk"]} if case["chunk"] else {}),
            )
            outs.append(o)
            probs.append(p)
    return torch.cat(outs), (torch.cat(probs) if op == "probs" else None)


def _err(actual, expected, tol: float) -> tuple[float, bool]:
    """Max |a - e| and whether |a - e| <= tol * (1 + |e|) everywhere (NaN fails)."""
    import torch

    a, e = actual.float().cpu(), expected.float().cpu()
    if a.shape != e.shape:
        return float("inf"), False
    diff = (a - e).abs()
    ok = bool(torch.isfinite(a).all()) and bool((diff <= tol * (1 + e.abs())).all())
    return float(diff.max()) if diff.numel() else 0.0, ok


def run_case(case: dict, device="cpu", dtype: str | None = None, precision: str | None = None) -> dict:
    """Run one case with the triton backend and compare with the reference. Returns a JSON-able dict.

    `dtype` / `precision` override the case's own (the GPU tier runs every case in several variants).
    """
    import torch

    _, tri = import_pack()
    dtype_name = dtype or case["dtype"]
    precision = precision or case["precision"]
    tdtype = getattr(torch, dtype_name)
    tol = TOLERANCES[dtype_name] if precision == "ieee" else max(TF32_TOLERANCE, TOLERANCES[dtype_name])
    result = {"id": case["id"], "device": str(device), "dtype": dtype_name, "precision": precision}
    start = time.perf_counter()
    try:
        q, contexts = _inputs(case, device, tdtype)
        exp_out, exp_probs = _expected(case, q, contexts)
        c0 = contexts[0]
        if case["op"] == "attention":
            out, probs = (
                tri.attention(q, c0.k, c0.v, c0.key_mask, scale=case["scale"], precision=precision),
                None,
            )
        elif case["op"] == "multi":
            out, probs = (
                tri.multi_context_attention(q, contexts, scale=case["scale"], precision=precision),
                None,
            )
        else:
            out, probs = tri.attention_with_probs(
                q, c0.k, c0.v, c0.key_mask, scale=case["scale"], chunk_size=case["chunk"], precision=precision
            )
        checks = []
        if out.dtype != q.dtype or out.shape != exp_out.shape:
            checks.append(
                f"out {out.dtype}{tuple(out.shape)} != expected {exp_out.dtype}{tuple(exp_out.shape)}"
            )
        err, ok = _err(out, exp_out, tol)
        result["max_err"] = err
        if not ok:
            checks.append(f"out max error {err:.3g} > tol {tol:g}")
        if probs is not None:
            ptol = PROBS_TOLERANCE if precision == "ieee" else TF32_TOLERANCE
            if probs.dtype != torch.float32:
                checks.append(f"probs dtype {probs.dtype}")
            perr, pok = _err(probs, exp_probs, ptol)
            result["probs_max_err"] = perr
            if not pok:
                checks.append(f"probs max error {perr:.3g} > tol {ptol:g}")
        if case["fully_masked"]:
            zero = float(out[0].float().abs().max()) + (0.0 if probs is None else float(probs[0].abs().max()))
            if case["op"] != "multi" and zero != 0.0:
                checks.append(f"fully masked batch item is not exactly 0 (max {zero:g})")
        result["ok"] = not checks
        result["message"] = "; ".join(checks)
    except Exception:  # report, never crash the whole run
        result["ok"] = False
        result["message"] = traceback.format_exc(limit=8)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def main(argv: list[str]) -> int:
    if os.environ.get("TRITON_INTERPRET") != "1":
        print(
            "set TRITON_INTERPRET=1 before running this script (the interpreter is chosen at import)",
            file=sys.stderr,
        )
        return 2
    _, tri = import_pack()
    launched: set[str] = set()
    original_config = tri._config

    def recording_config(*args, **kwargs):
        cfg = original_config(*args, **kwargs)
        launched.add(cfg.name)
        return cfg

    tri._config = recording_config
    wanted = set(argv)
    for case in CASES:
        if wanted and case["id"] not in wanted:
            continue
        print(json.dumps(run_case(case)), flush=True)
    tri._config = original_config
    known = {c.name for c in tri.KERNEL_CONFIGS}
    missing = sorted(launched - known)
    print(
        json.dumps(
            {
                "id": COVERAGE_ID,
                "ok": not missing and bool(launched),
                "message": f"launched {sorted(launched)}; not in KERNEL_CONFIGS: {missing}",
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
