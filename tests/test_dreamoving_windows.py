"""Sliding context windows: coverage, overlap, exactness of the one-window path, blend invariants."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.dreamoving.windows import (
    WindowedDenoiser,
    blend_windows,
    context_windows,
    num_windows,
    window_weights,
)

CASES = [
    (n, w, o) for n in (1, 5, 16, 17, 24, 33, 40) for w in (1, 4, 8, 16) for o in range(0, w, max(1, w // 3))
]


@pytest.mark.parametrize("num_frames,window,overlap", CASES)
def test_windows_cover_overlap_and_count(num_frames, window, overlap):
    wins = context_windows(num_frames, window, overlap)
    assert num_windows(num_frames, window, overlap) == len(wins)
    assert sorted({i for w in wins for i in w}) == list(range(num_frames))
    if window >= num_frames:
        assert wins == [list(range(num_frames))]
        return
    assert all(len(w) == window and w == list(range(w[0], w[0] + window)) for w in wins)
    assert wins[0][0] == 0 and wins[-1][-1] == num_frames - 1
    starts = [w[0] for w in wins]
    stride = window - overlap
    # every step is the stride except possibly the last (aligned to the end), which overlaps more
    assert all(b - a == stride for a, b in zip(starts[:-2], starts[1:-1]))
    assert 0 < starts[-1] - starts[-2] <= stride if len(starts) > 1 else True
    for a, b in zip(wins[:-1], wins[1:]):
        assert len(set(a) & set(b)) >= overlap


def test_window_examples():
    assert context_windows(10, 4, 2) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert context_windows(11, 4, 2)[-1] == [7, 8, 9, 10]  # end-aligned, overlap 3 with [4..7]
    assert context_windows(20, 8, 0) == [list(range(0, 8)), list(range(8, 16)), list(range(12, 20))]


def test_weights():
    assert window_weights(5).tolist() == [1, 2, 3, 2, 1]
    assert window_weights(4).tolist() == [1, 2, 2, 1]
    assert window_weights(3, "flat").tolist() == [1, 1, 1]
    for n in range(1, 20):
        assert bool((window_weights(n) > 0).all())


@pytest.mark.parametrize(
    "bad",
    [
        dict(window=0, overlap=0),
        dict(window=4, overlap=4),
        dict(window=4, overlap=-1),
        dict(window=2.5, overlap=0),
    ],
)
def test_errors(bad):
    with pytest.raises(InputError, match="Input 'context_"):
        context_windows(10, **bad)
    with pytest.raises(InputError):
        WindowedDenoiser(**bad)
    with pytest.raises(InputError, match="'pyramid' or 'flat'"):
        window_weights(3, "gauss")


def _framewise_fn(x: torch.Tensor, seen: list[int]):
    def fn(idx):
        seen.append(len(idx))
        sub = x[:, :, idx]
        return torch.tanh(sub) * 2.0 + sub.mean(dim=(3, 4), keepdim=True)  # per-frame, nonlinear

    return fn


@pytest.mark.parametrize(
    "window,overlap,kind", [(4, 0, "pyramid"), (4, 3, "pyramid"), (5, 2, "flat"), (8, 5, "pyramid")]
)
def test_framewise_blend_equals_full_pass(window, overlap, kind):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 19, 4, 5)
    seen: list[int] = []
    full = _framewise_fn(x, [])(list(range(19)))
    progress = []
    out = WindowedDenoiser(window, overlap, kind)(
        19, _framewise_fn(x, seen), on_window=lambda d, t: progress.append((d, t))
    )
    assert torch.allclose(out, full, atol=1e-6, rtol=0)
    assert max(seen) <= window and len(seen) == num_windows(19, window, overlap)
    assert progress[-1] == (len(seen), len(seen))


def test_single_window_is_bit_identical():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 6, 3, 3, dtype=torch.float16)
    marker = torch.randn(1, 4, 6, 3, 3, dtype=torch.float16)

    def fn(idx):
        return marker  # same object: no arithmetic may touch it

    out = WindowedDenoiser(16, 4)(6, fn)
    assert out is marker
    assert torch.equal(WindowedDenoiser(6, 2)(6, lambda idx: x[:, :, idx] * 3), x * 3)


def test_blend_math_against_float64_reference():
    """A window-dependent fn: each frame is the pyramid-weighted mean of its windows' values."""
    num_frames, window, overlap = 11, 4, 2
    wins = context_windows(num_frames, window, overlap)

    def fn(idx):
        k = [w[0] for w in wins].index(idx[0])
        return torch.full((1, 1, len(idx), 1, 1), float(k + 1) ** 2)

    out = blend_windows(num_frames, wins, fn)
    ref = []
    w = window_weights(window).double()
    for f in range(num_frames):
        num = sum(float(w[j.index(f)]) * (k + 1) ** 2 for k, j in enumerate(wins) if f in j)
        den = sum(float(w[j.index(f)]) for j in wins if f in j)
        ref.append(num / den)
    assert torch.allclose(out.flatten().double(), torch.tensor(ref, dtype=torch.float64), atol=1e-6, rtol=0)
    assert out.dtype == torch.float32


def test_blend_rejects_bad_windows_and_shapes():
    ones = lambda idx: torch.ones(1, 1, len(idx), 2, 2)  # noqa: E731
    with pytest.raises(InputError, match="cover every frame"):
        blend_windows(6, [[0, 1, 2], [2, 3]], ones)
    with pytest.raises(InputError, match="0..5"):
        blend_windows(6, [[0, 1, 2], [4, 5, 6]], ones)
    with pytest.raises(InputError, match="Input 'fn'"):
        blend_windows(6, [[0, 1, 2], [3, 4, 5]], lambda idx: torch.ones(1, 1, 2, 2, 2))
