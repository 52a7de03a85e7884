"""Tier (a): the torch reference ops against float64 naive math, awkward lengths, masks, all dtypes."""

from __future__ import annotations

import pytest
import torch
from papernodes.kernels import dispatch, ops, reference
from papernodes.kernels.reference import Context

LENGTHS = [(77, 77), (150, 77), (200, 150), (64, 200)]
TOL = {torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}


def _rand(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _naive(q, k, v, key_mask=None, scale=None):
    """float64 softmax(q k^T) v and per-head probabilities; fully masked rows give zeros."""
    q, k, v = q.double(), k.double(), v.double()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = q @ k.transpose(-1, -2) * scale
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return p @ v, p


def _mask(b, lk, seed, keep=0.7):
    m = torch.rand(b, lk, generator=torch.Generator().manual_seed(seed)) < keep
    m[:, 0] = True  # at least one key per row
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lq,lk", LENGTHS)
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_float64(dtype, lq, lk, masked):
    q, k, v = (_rand(2, 3, n, 40, seed=i, dtype=dtype) for i, n in enumerate((lq, lk, lk)))
    mask = _mask(2, lk, 9) if masked else None
    out = reference.attention(q, k, v, key_mask=mask)
    assert out.dtype == dtype
    expected, _ = _naive(q, k, v, mask)
    torch.testing.assert_close(out.double(), expected, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("lq,lk", LENGTHS)
def test_multi_context_is_weighted_sum_of_attentions(lq, lk):
    q = _rand(2, 4, lq, 40, seed=1)
    contexts = [
        Context(_rand(2, 4, n, 40, seed=10 + n), _rand(2, 4, n, 40, seed=20 + n), w, m)
        for n, w, m in ((lk, 1.0, None), (4, 0.6, None), (16, 0.35, _mask(2, 16, 3)))
    ]
    out = reference.multi_context_attention(q, contexts)
    expected = sum(c.weight * _naive(q, c.k, c.v, c.key_mask)[0] for c in contexts)
    torch.testing.assert_close(out.double(), expected, atol=3e-5, rtol=3e-5)


@pytest.mark.parametrize("lq,lk", LENGTHS)
@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_probabilities_are_head_mean_of_softmax(lq, lk, chunk):
    q, k, v = _rand(2, 5, lq, 40, seed=4), _rand(2, 5, lk, 40, seed=5), _rand(2, 5, lk, 40, seed=6)
    mask = _mask(2, lk, 7)
    out, probs = reference.attention_with_probs(q, k, v, key_mask=mask, chunk_size=chunk)
    expected_out, p = _naive(q, k, v, mask)
    torch.testing.assert_close(out.double(), expected_out, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(probs.double(), p.mean(1), atol=1e-6, rtol=1e-5)
    assert probs.dtype == torch.float32 and probs.shape == (2, lq, lk)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, lq), atol=1e-5, rtol=0)
    assert probs[~mask[:, None, :].expand_as(probs)].abs().max() == 0


def test_supplied_probs_replace_keep_and_blend():
    q, k, v = _rand(1, 2, 150, 40, seed=1), _rand(1, 2, 77, 40, seed=2), _rand(1, 2, 77, 40, seed=3)
    src = torch.softmax(_rand(1, 2, 150, 77, seed=4) * 3, -1)
    own_out, own_p = _naive(q, k, v)
    zeros, ones = torch.zeros(77), torch.ones(77)
    torch.testing.assert_close(
        reference.attention_with_supplied_probs(q, k, v, src, zeros).double(), own_out, atol=2e-5, rtol=2e-5
    )
    torch.testing.assert_close(
        reference.attention_with_supplied_probs(q, k, v, src, ones).double(),
        src.double() @ v.double(),
        atol=2e-5,
        rtol=2e-5,
    )
    w = torch.zeros(77)
    w[3:9] = 1.0
    w[20] = 0.25
    mixed = w.double() * src.double() + (1 - w.double()) * own_p
    torch.testing.assert_close(
        reference.attention_with_supplied_probs(q, k, v, src, w, chunk_size=16).double(),
        mixed @ v.double(),
        atol=2e-5,
        rtol=2e-5,
    )


def test_fully_masked_rows_attend_to_nothing():
    q, k, v = _rand(2, 2, 10, 8, seed=1), _rand(2, 2, 6, 8, seed=2), _rand(2, 2, 6, 8, seed=3)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1] = False
    out = reference.attention(q, k, v, key_mask=mask)
    assert torch.isfinite(out).all() and out[1].abs().max() == 0
    _, probs = reference.attention_with_probs(q, k, v, key_mask=mask)
    assert probs[1].abs().max() == 0


def test_frames_fold_unfold_and_temporal_attention_is_per_pixel():
    b, f, n, c, heads = 2, 5, 12, 16, 2
    x = _rand(b * f, n, c, seed=3)
    folded = reference.fold_frames(x, f)
    assert folded.shape == (b * n, f, c)
    assert torch.equal(reference.unfold_frames(folded, n), x)
    assert torch.equal(folded[1 * n + 7], x.view(b, f, n, c)[1, :, 7])  # pixel 7 of video 1 over time
    split = lambda t: t.view(t.shape[0], f, heads, c // heads).transpose(1, 2)  # noqa: E731
    out = reference.temporal_attention(split(folded), split(folded), split(folded))
    for pixel in (0, 13, 23):
        seq = folded[pixel].view(f, heads, c // heads).transpose(0, 1)[None]
        torch.testing.assert_close(out[pixel], _naive(seq, seq, seq)[0][0].float(), atol=2e-5, rtol=2e-5)


def test_sinusoidal_positions_formula():
    pe = reference.sinusoidal_positions(24, 32).double()
    pos = torch.arange(24, dtype=torch.float64)[:, None]
    i = torch.arange(16, dtype=torch.float64)
    angle = pos / 10000 ** (2 * i / 32)
    torch.testing.assert_close(pe[:, 0::2], torch.sin(angle), atol=1e-6, rtol=0)
    torch.testing.assert_close(pe[:, 1::2], torch.cos(angle), atol=1e-6, rtol=0)


def test_dispatch_env_var_and_context(monkeypatch):
    q = _rand(1, 1, 4, 8, seed=0)
    monkeypatch.setenv(dispatch.ENV_VAR, "torch")
    assert dispatch.select_backend(q.device, q.dtype) == "torch"
    monkeypatch.setenv(dispatch.ENV_VAR, "auto")
    assert dispatch.select_backend(torch.device("cpu"), torch.float32) == "torch"  # no CUDA here
    with dispatch.use_backend("torch"):
        assert dispatch.requested_backend() == "torch"
    assert dispatch.requested_backend() == "auto"
    monkeypatch.setenv(dispatch.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="not a known backend"):
        ops.attention(q, q, q)
    monkeypatch.delenv(dispatch.ENV_VAR)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with dispatch.use_backend("triton"), pytest.raises(RuntimeError, match="forced but cannot run"):
        ops.attention(q, q, q)


OPS = ("attention", "multi_context_attention", "attention_with_probs", "attention_with_supplied_probs",
       "temporal_attention")  # fmt: skip


def test_auto_is_torch_unless_a_gpu_measurement_says_otherwise(monkeypatch):
    """`auto` never prefers a backend because it can run (as triton can on CUDA): only an (op, dtype) that a
    recorded GPU benchmark showed faster (`MEASURED_FASTER`) moves off torch/SDPA. None is recorded."""
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    monkeypatch.setattr(dispatch, "_BACKENDS", dict(dispatch._BACKENDS))  # restored after the test
    capable = lambda device, dtype: True  # noqa: E731  (what triton reports on a GPU)
    dispatch.register_backend(dispatch.Backend("triton", ".triton_attention", capable), first=True)
    cuda = torch.device("cuda")  # selection only: nothing runs, so no GPU is needed
    assert dispatch.MEASURED_FASTER == set()
    for op in OPS:
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            assert dispatch.select_backend(cuda, dtype, op) == "torch", (op, dtype)
    monkeypatch.setattr(dispatch, "MEASURED_FASTER", {("triton", "attention_with_probs", torch.float16)})
    assert dispatch.select_backend(cuda, torch.float16, "attention_with_probs") == "triton"
    assert dispatch.select_backend(cuda, torch.bfloat16, "attention_with_probs") == "torch"
    assert dispatch.select_backend(cuda, torch.float16, "attention") == "torch"
    monkeypatch.setattr(dispatch, "MEASURED_FASTER", set())
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")  # forcing still works
    assert all(dispatch.select_backend(cuda, torch.float16, op) == "triton" for op in OPS)
    with dispatch.use_backend("auto"):
        assert dispatch.select_backend(cuda, torch.float16, "attention") == "torch"
