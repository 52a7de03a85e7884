"""Triton attention kernels (kernels/triton_attention.py) against the torch reference.

Tiers (docs/kernels.md: how the kernels are verified on a machine without a GPU):
- (a) wrapper contract, in-process: validation errors, availability, KERNEL_CONFIGS shape.
- (b) interpreter: every kernel runs on the CPU under TRITON_INTERPRET=1 in a subprocess (the
  interpreter must be on before triton is imported) and is compared case by case with the reference
  (tests/triton_interp_check.py prints one JSON result per case).
- (c) ahead-of-time compile: every KERNEL_CONFIGS entry is compiled for sm_80 and sm_90 without a GPU;
  fails on shared memory over the architecture's limit and, via `ptxas -v`, on any register spill.
- (d) CUDA: the tier (b) cases on a GPU in bf16/fp16/fp32 and with tf32 dots (skipped without CUDA).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import triton_interp_check as checks  # tests/ is on sys.path (conftest.py)

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

# Dynamic shared memory one block may use: A100 (sm_80) 163 KB, H100 (sm_90) 227 KB.
SHARED_LIMITS = {80: 163 * 1024, 90: 227 * 1024}
ARCHS = (80, 90)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------
# (a) wrapper contract
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tri():
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    from papernodes.kernels import triton_attention

    return triton_attention


def _qkv(b=1, h=2, lq=8, lk=5, d=16, dv=None):
    import torch

    return torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, dv or d)


def test_validation_errors(tri):
    import torch
    from papernodes.kernels.reference import Context

    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"\[B, H, L, D\]"):
        tri.attention(q[0], k, v)
    with pytest.raises(ValueError, match="mismatched"):
        tri.attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match="key_mask must be"):
        tri.attention(q, k, v, key_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool/integer"):
        tri.attention(q, k, v, key_mask=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="head dims up to"):
        tri.attention(*_qkv(d=264))
    with pytest.raises(ValueError, match="at least one context"):
        tri.multi_context_attention(q, [])
    with pytest.raises(ValueError, match="one value dim"):
        tri.multi_context_attention(q, [Context(k, v), Context(*_qkv(dv=24)[1:])])
    with pytest.raises(ValueError, match="chunk_size"):
        tri.attention_with_probs(q, k, v, chunk_size=0)
    with pytest.raises(ValueError, match="precision"):
        tri.attention(q, k, v, precision="fp64")
    with pytest.raises(ValueError, match="supports"):
        tri.attention(q.double(), k.double(), v.double())
    if not tri.is_available("cpu", torch.float32):  # the usual case: this process is not interpreting
        with pytest.raises(RuntimeError, match="cannot run on cpu"):
            tri.attention(q, k, v)


def test_is_available(tri):
    import torch

    interpreting = tri._interpreting() and os.environ.get("TRITON_INTERPRET") == "1"
    assert tri.is_available("cpu", torch.float32) is interpreting
    assert tri.is_available("cpu", torch.float64) is False
    assert tri.is_available("meta", torch.float16) is False
    assert tri.is_available("cuda", torch.float16) is (not tri._interpreting())


def test_kernel_configs_cover_every_launch_combination(tri):
    import torch

    names = [c.name for c in tri.KERNEL_CONFIGS]
    assert len(names) == len(set(names))
    combos = {
        (c.kernel, c.dtype, c.constexprs["BLOCK_D"], c.constexprs["PRECISION"]) for c in tri.KERNEL_CONFIGS
    }
    for kernel in ("fwd", "probs"):
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            for block_d in tri.BLOCK_DS:
                for precision in tri.PRECISIONS:
                    assert (kernel, dtype, block_d, precision) in combos
    for cfg in tri.KERNEL_CONFIGS:
        sig = cfg.signature()
        assert list(sig) == list(cfg.fn.arg_names), cfg.name  # every parameter, in order
        assert all(sig[n] == "constexpr" for n in cfg.constexprs)


# --------------------------------------------------------------------------------------------------
# (b) interpreter
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interp_results():
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(TESTS_DIR / "triton_interp_check.py")],
        env=_clean_env(TRITON_INTERPRET="1", PYTHONWARNINGS="ignore"),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[result["id"]] = result
    return {"proc": proc, "results": results, "seconds": time.perf_counter() - start}


@needs_triton
@pytest.mark.slow  # one subprocess runs every case under the Triton interpreter: ~14 s
@pytest.mark.parametrize("case_id", checks.CASE_IDS + [checks.COVERAGE_ID])
def test_interpreter_matches_reference(interp_results, case_id):
    result = interp_results["results"].get(case_id)
    if result is None:
        proc = interp_results["proc"]
        pytest.fail(f"no result for {case_id}: helper exited {proc.returncode}\n{proc.stderr[-3000:]}")
    assert result["ok"], result["message"]


# --------------------------------------------------------------------------------------------------
# (c) ahead-of-time compile for sm_80 / sm_90
# --------------------------------------------------------------------------------------------------

_SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS_RE = re.compile(r"Used (\d+) registers")


def _ptxas_candidates(arch: int) -> list[str]:
    """Triton's own choice for the arch first, then every other ptxas bundled with triton."""
    import triton
    from triton.backends.nvidia.compiler import get_ptxas

    first = get_ptxas(arch).path
    bundled = sorted(str(p) for p in (Path(triton.__file__).parent / "backends/nvidia/bin").glob("ptxas*"))
    return [first] + [p for p in bundled if p != first]


def _ptxas_report(ptx: str, arch: int) -> dict:
    """Registers and spill bytes from `ptxas -v` on the PTX; a reason instead when no ptxas accepts it."""
    target = re.search(r"^\.target\s+(sm_\w+)", ptx, re.MULTILINE)
    gpu_name = target.group(1) if target else f"sm_{arch}"
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        for ptxas in _ptxas_candidates(arch):
            # The flags Triton itself compiles with (-lineinfo, --regAllocOptLevel=2), plus -v.
            cmd = [
                ptxas,
                "-lineinfo",
                "-v",
                "--regAllocOptLevel=2",
                f"--gpu-name={gpu_name}",
                str(src),
                "-o",
                str(Path(tmp) / "kernel.cubin"),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            regs, spills = _REGS_RE.search(proc.stderr), _SPILL_RE.search(proc.stderr)
            if proc.returncode == 0 and regs and spills:
                return {
                    "ptxas": ptxas,
                    "regs": int(regs.group(1)),
                    "spill_stores": int(spills.group(1)),
                    "spill_loads": int(spills.group(2)),
                }
            failures.append(f"{Path(ptxas).name} (exit {proc.returncode}): {proc.stderr.strip()[:400]}")
    ptx_version = re.search(r"^\.version\s+(\S+)", ptx, re.MULTILINE)
    return {
        "ptxas_note": f"no bundled ptxas accepted PTX {ptx_version.group(1) if ptx_version else '?'} "
        f"for {gpu_name}: " + " | ".join(failures)
    }


def _aot_compile(index: int, arch: int) -> dict:
    import triton
    from papernodes.kernels import triton_attention as tri
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cfg = tri.KERNEL_CONFIGS[index]
    result = {"config": cfg.name, "arch": arch}
    start = time.perf_counter()
    try:
        sig = cfg.signature()
        names = list(sig)
        # What the JIT sees at launch: torch allocations are 16-byte aligned; ints are not specialised.
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in cfg.pointer_args()}
        kernel = triton.compile(
            ASTSource(cfg.fn, sig, cfg.constexprs, attrs),
            target=GPUTarget("cuda", arch, 32),
            options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages},
        )
        result["shared"] = int(kernel.metadata.shared)
        result.update(_ptxas_report(kernel.asm["ptx"], arch))
    except Exception as err:  # reported per config by the test
        result["error"] = f"{type(err).__name__}: {err}"[:3000]
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _aot_main(jobs: list[str]) -> None:
    """Subprocess entry: compile "index:arch" jobs, one JSON line each."""
    checks.import_pack()
    for job in jobs:
        index, arch = map(int, job.split(":"))
        print(json.dumps(_aot_compile(index, arch)), flush=True)


def _aot_job_ids() -> list[str]:
    """One test id per (config, arch); importing the backend (and triton) costs about a second."""
    if not HAS_TRITON:
        return []
    _, tri = checks.import_pack()
    return [f"{cfg.name}-sm{arch}" for cfg in tri.KERNEL_CONFIGS for arch in ARCHS]


AOT_IDS = _aot_job_ids()


@pytest.fixture(scope="module")
def aot_results(tmp_path_factory):
    """Compile every (config, arch) in two subprocesses (2 cores), with a fresh Triton cache."""
    _, tri = checks.import_pack()
    jobs = [f"{i}:{arch}" for i in range(len(tri.KERNEL_CONFIGS)) for arch in ARCHS]
    workers = 2
    cache = tmp_path_factory.mktemp("triton_cache")
    code = f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import test_kernels_triton as t; t._aot_main(sys.argv[1:])"
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *jobs[w::workers]], cwd=REPO_ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_clean_env(TRITON_CACHE_DIR=str(cache / f"w{w}")))
        for w in range(workers)
    ]  # fmt: skip
    results, errors = {}, []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        errors.append(err[-3000:])
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                results[f"{r['config']}-sm{r['arch']}"] = r
    return {"results": results, "stderr": "\n".join(errors), "seconds": time.perf_counter() - start}


def _aot_result(aot_results, job_id: str) -> dict:
    result = aot_results["results"].get(job_id)
    if result is None:
        pytest.fail(f"no compile result for {job_id}:\n{aot_results['stderr']}")
    if "error" in result:
        pytest.fail(f"{job_id} failed to compile: {result['error']}")
    return result


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("job_id", AOT_IDS)
def test_aot_shared_memory_within_limit(aot_results, job_id):
    result = _aot_result(aot_results, job_id)
    limit = SHARED_LIMITS[result["arch"]]
    assert result["shared"] <= limit, f"{job_id}: {result['shared']} B shared memory > {limit} B"


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("job_id", AOT_IDS)
def test_aot_no_register_spills(aot_results, job_id):
    result = _aot_result(aot_results, job_id)
    if "regs" not in result:
        pytest.skip(f"register check not possible: {result['ptxas_note']}")
    assert result["spill_stores"] == 0 and result["spill_loads"] == 0, (
        f"{job_id}: {result['regs']} registers, spills {result['spill_stores']} B stored / "
        f"{result['spill_loads']} B loaded (ptxas {result['ptxas']})"
    )


# --------------------------------------------------------------------------------------------------
# (d) CUDA
# --------------------------------------------------------------------------------------------------

GPU_VARIANTS = [
    ("bfloat16", "ieee"),
    ("float16", "ieee"),
    ("float32", "ieee"),
    ("float32", "tf32"),
    ("bfloat16", "tf32"),
]
_CASES = {c["id"]: c for c in checks.CASES + checks.GPU_CASES}


@needs_triton
@pytest.mark.gpu
@pytest.mark.parametrize("dtype,precision", GPU_VARIANTS)
@pytest.mark.parametrize("case_id", list(_CASES))
def test_cuda_matches_reference(tri, case_id, dtype, precision):
    if tri._interpreting():
        pytest.skip("TRITON_INTERPRET=1 in the test process: kernels were built for the CPU interpreter")
    result = checks.run_case(_CASES[case_id], device="cuda", dtype=dtype, precision=precision)
    assert result["ok"], result["message"]


@needs_triton
@pytest.mark.gpu
def test_cuda_auto_uses_torch_and_triton_only_when_forced(tri, monkeypatch):
    """No GPU benchmark shows the Triton kernels faster than SDPA (kernels/dispatch.py MEASURED_FASTER is
    empty): on CUDA `auto` runs every op on torch; PAPERNODES_ATTENTION_BACKEND=triton runs Triton's."""
    import torch
    from papernodes.kernels import dispatch

    if tri._interpreting():
        pytest.skip("TRITON_INTERPRET=1 in the test process: kernels were built for the CPU interpreter")
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    cuda = torch.device("cuda")
    ops = ("attention", "multi_context_attention", "attention_with_probs", "temporal_attention")
    for op in ops:
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            assert dispatch.select_backend(cuda, dtype, op) == "torch", (op, dtype)
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    for op in ops:
        assert dispatch.select_backend(cuda, torch.float16, op) == "triton"
        assert dispatch.resolve(op, cuda, torch.float16) is getattr(tri, op)
