"""Sliding context windows: denoise videos of any length at the memory cost of one window.

DreaMoving's motion blocks attend over the frames of one clip (arXiv 2312.05107, Sec. 3.1, AnimateDiff
style); a long dance video is therefore denoised in overlapping windows of the length the motion module
was trained on (16 for AnimateDiff v2/v3), and at every step each frame's prediction is the weighted
mean of the predictions of the windows that contain it. Overlap carries motion across window seams;
pyramid weights (highest in a window's centre) make the hand-over gradual.

Invariants the tests pin down: every frame is covered; the stride is `window - overlap` and the last
window is aligned to the end (never a short window when there are enough frames); with one window the
result is exactly `fn`'s output (no weighting arithmetic); for a frame-wise `fn` the blend equals a
single full pass; `fn` never sees more than `window` frames, and only one window's output is held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..common.errors import InputError

WindowFn = Callable[[list[int]], torch.Tensor]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"an integer >= {minimum}", repr(value))
    return value


def _validate(num_frames: int, window: int, overlap: int) -> None:
    _check_int("num_frames", num_frames, 1)
    _check_int("context_window", window, 1)
    _check_int("context_overlap", overlap, 0)
    if overlap >= window:
        raise InputError("context_overlap", f"a value below context_window ({window})", repr(overlap))


def context_windows(num_frames: int, window: int, overlap: int) -> list[list[int]]:
    """Frame indices of each window, in order; one window of all frames when window >= num_frames."""
    _validate(num_frames, window, overlap)
    if window >= num_frames:
        return [list(range(num_frames))]
    stride = window - overlap
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)  # last window flush with the end: full length, more overlap
    return [list(range(s, s + window)) for s in starts]


def num_windows(num_frames: int, window: int, overlap: int) -> int:
    """How many `fn` calls one step costs (progress bars count windows x steps)."""
    _validate(num_frames, window, overlap)
    if window >= num_frames:
        return 1
    stride = window - overlap
    full = (num_frames - window) // stride + 1
    return full + (1 if (full - 1) * stride + window < num_frames else 0)


def window_weights(length: int, kind: str = "pyramid") -> torch.Tensor:
    """Positive per-frame blend weights of one window (float32 [length]).

    "pyramid": min(i + 1, length - i), rising linearly to the centre, so a frame near a seam follows the
    window in which it has the most temporal context; "flat": all ones (plain average).
    """
    _check_int("length", length, 1)
    if kind == "flat":
        return torch.ones(length, dtype=torch.float32)
    if kind == "pyramid":
        i = torch.arange(length, dtype=torch.float32)
        return torch.minimum(i + 1, length - i)
    raise InputError("context_weights", "'pyramid' or 'flat'", repr(kind))


def blend_windows(
    num_frames: int,
    windows: Sequence[Sequence[int]],
    fn: WindowFn,
    kind: str = "pyramid",
    on_window: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Call `fn(indices) -> [B, C, len, H, W]` per window; return the weighted mean per frame [B, C, F, H, W].

    Sums are accumulated in float32 (or float64 for float64 outputs) and cast back to fn's dtype; a
    single window covering all frames returns fn's output itself. `on_window(done, total)` is called after
    each window (progress / interruption checks).
    """
    _check_int("num_frames", num_frames, 1)
    windows = [list(w) for w in windows]
    if not windows:
        raise InputError("windows", "at least one window")
    if len(windows) == 1 and windows[0] == list(range(num_frames)):
        out = _checked(fn(windows[0]), windows[0])
        if on_window is not None:
            on_window(1, 1)
        return out
    acc: torch.Tensor | None = None
    weight_sum: torch.Tensor | None = None
    out_dtype = None
    for n, idx in enumerate(windows):
        if any(i < 0 or i >= num_frames for i in idx):
            raise InputError("windows", f"frame indices in 0..{num_frames - 1}", f"window {n}: {idx}")
        y = _checked(fn(idx), idx)
        if acc is None:
            out_dtype = y.dtype
            acc_dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
            b, c, _, h, w = y.shape
            acc = torch.zeros(b, c, num_frames, h, w, dtype=acc_dtype, device=y.device)
            weight_sum = torch.zeros(num_frames, dtype=acc_dtype, device=y.device)
        elif y.shape[:2] != acc.shape[:2] or y.shape[3:] != acc.shape[3:]:
            raise InputError(
                "fn", f"every window to return [B, C, len, H, W] = {list(acc.shape)}", f"{list(y.shape)}"
            )
        wts = window_weights(len(idx), kind).to(device=y.device, dtype=acc.dtype)
        index = torch.tensor(idx, dtype=torch.long, device=y.device)
        acc.index_add_(2, index, y.to(acc.dtype) * wts.view(1, 1, -1, 1, 1))
        weight_sum.index_add_(0, index, wts)
        del y  # only one window's activations live at a time
        if on_window is not None:
            on_window(n + 1, len(windows))
    if bool((weight_sum == 0).any()):
        missing = torch.nonzero(weight_sum == 0).flatten().tolist()
        raise InputError("windows", "windows that cover every frame", f"frames {missing[:8]} uncovered")
    return (acc / weight_sum.view(1, 1, -1, 1, 1)).to(out_dtype)


def _checked(y: torch.Tensor, idx: list[int]) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim != 5 or y.shape[2] != len(idx):
        shape = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise InputError(
            "fn", f"a tensor [B, C, {len(idx)}, H, W] for a window of {len(idx)} frames", f"{shape}"
        )
    return y


class WindowedDenoiser:
    """Applies a per-window model call over an unbounded number of frames at constant memory.

    Used once per sampler step: `denoiser(num_frames, fn)` where `fn(indices)` runs the U-Net (and the
    Video ControlNet) on `latents[:, :, indices]` with the matching control frames.
    """

    def __init__(self, window: int = 16, overlap: int = 4, kind: str = "pyramid"):
        _validate(1, window, overlap)
        window_weights(1, kind)  # validates kind
        self.window, self.overlap, self.kind = window, overlap, kind

    def windows(self, num_frames: int) -> list[list[int]]:
        return context_windows(num_frames, self.window, self.overlap)

    def calls_per_step(self, num_frames: int) -> int:
        return num_windows(num_frames, self.window, self.overlap)

    def __call__(
        self, num_frames: int, fn: WindowFn, on_window: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        return blend_windows(num_frames, self.windows(num_frames), fn, self.kind, on_window)
