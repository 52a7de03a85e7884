"""Frame-split execution of video U-Nets: spatial layers once per frame in bounded chunks, temporal
layers in overlapping context windows (the FreeNoise split, Qiu et al. 2023, Sec. 3.2 "window-based
attention fusion", applied to whole motion blocks).

Sliding windows over the whole U-Net (`dreamoving.windows`) run a frame that lies in k windows k times
through every layer. Only the temporal (motion) blocks need a window: every other layer of an
AnimateDiff U-Net or a ControlNet is frame-wise. Inside `frame_split(modules, ...)`:

- every motion block (`AnimateDiffTransformer3D`) runs once per context window on that window's frames
  and each frame gets the weighted mean of its windows' outputs (pyramid weights, as the whole-U-Net
  windows). A frame in exactly one window takes that window's output as is (no weighting arithmetic);
- every spatial module (ResNet blocks, spatial transformers, up/down samplers, the convolutions at the
  U-Net's ends, a ControlNet's conditioning encoder and zero convolutions) runs on `chunk` frames at a
  time, so attention matrices and convolution intermediates are those of `chunk` frames whatever the
  video length. Only the hidden states between layers (and the skip connections) hold all frames.

Equivalence: where windows do not overlap and `chunk` equals the window length, every layer sees exactly
the batches the whole-U-Net windows give it, so the two agree bit for bit. Where windows overlap they
differ by design: here the layers after a motion block see the blended frames of the previous one
(information crosses window seams at every layer), there each window's pass is independent and only the
final noise predictions are blended. The tests measure that difference.

Frames are batch-major rows [(B*F), ...] (diffusers' motion U-Net convention); a module call whose
first tensor has another batch size (a per-video time embedding) runs unchanged. Nothing stays patched:
forwards are restored on exit, also on exceptions, and contexts nest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .errors import InputError

SPATIAL_TYPES = (ResnetBlock2D, Transformer2DModel, Downsample2D, Upsample2D)
# Frame-wise leaf modules addressed by attribute name on the U-Net / ControlNet (their ends).
SPATIAL_NAMES = (
    "conv_in",
    "conv_norm_out",
    "conv_out",
    "controlnet_cond_embedding",
    "controlnet_down_blocks",
    "controlnet_mid_block",
)
_WINDOWED = "_papernodes_frame_windows"  # marker on a windowed motion block's forward: (window, overlap)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"an integer >= {minimum}", repr(value))
    return value


def frame_windows(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of each context window, as `dreamoving.windows.context_windows` lays them out: stride
    window - overlap, the last window flush with the end, one window when window >= num_frames."""
    _check_int("num_frames", num_frames, 1)
    _check_int("context_window", window, 1)
    _check_int("context_overlap", overlap, 0)
    if overlap >= window:
        raise InputError("context_overlap", f"a value below context_window ({window})", repr(overlap))
    if window >= num_frames:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - window + 1, window - overlap))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return [(s, s + window) for s in starts]


def pyramid(length: int) -> torch.Tensor:
    """min(i + 1, length - i): the whole-U-Net windows' weights (`windows.window_weights`)."""
    i = torch.arange(length, dtype=torch.float32)
    return torch.minimum(i + 1, length - i)


def _frames_view(x: torch.Tensor, videos: int) -> torch.Tensor:
    return x.reshape(videos, x.shape[0] // videos, *x.shape[1:])


def _rows(x: torch.Tensor, videos: int, start: int, end: int) -> torch.Tensor:
    """Rows of frames start..end-1 of every video, batch-major."""
    v = _frames_view(x, videos)[:, start:end]
    return v.reshape(videos * (end - start), *x.shape[1:])


def windowed_motion_forward(
    forward: Callable, window: int, overlap: int, weighting: Callable[[int], torch.Tensor] = pyramid
) -> Callable:
    """A motion block forward that runs `forward` per context window and blends per frame."""

    def run(
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        timestep=None,
        class_labels=None,
        num_frames: int = 1,
        cross_attention_kwargs=None,
    ) -> torch.Tensor:
        extra = (encoder_hidden_states, timestep, class_labels)
        n = hidden_states.shape[0]
        if num_frames < 1 or n % num_frames:
            raise InputError("num_frames", f"a divisor of the batch of {n} frames", str(num_frames))
        spans = frame_windows(num_frames, window, overlap)
        if len(spans) == 1:
            return forward(hidden_states, *extra, num_frames, cross_attention_kwargs)
        videos = n // num_frames
        acc = torch.zeros(videos, num_frames, *hidden_states.shape[1:], dtype=torch.float32,
                          device=hidden_states.device)  # fmt: skip
        weight_sum = torch.zeros(num_frames, dtype=torch.float32, device=hidden_states.device)
        cover = torch.zeros(num_frames, dtype=torch.int64)
        for s, e in spans:
            cover[s:e] += 1
        out = torch.empty(videos, num_frames, *hidden_states.shape[1:], dtype=hidden_states.dtype,
                          device=hidden_states.device)  # fmt: skip
        for s, e in spans:
            y = forward(_rows(hidden_states, videos, s, e), *extra, e - s, cross_attention_kwargs)
            y = _frames_view(y, videos)
            once = cover[s:e] == 1
            if bool(once.any()):
                out[:, s:e][:, once] = y[:, once]  # frames only this window covers: its output as is
            w = weighting(e - s).to(acc.device)
            acc[:, s:e] += y.float() * w.view(1, -1, *([1] * (y.ndim - 2)))
            weight_sum[s:e] += w
            del y
        shared = (cover > 1).to(acc.device)
        if bool(shared.any()):
            blended = acc[:, shared] / weight_sum[shared].view(1, -1, *([1] * (acc.ndim - 2)))
            out[:, shared] = blended.to(out.dtype)
        return out.reshape(n, *hidden_states.shape[1:])

    setattr(run, _WINDOWED, (window, overlap))
    return run


def chunked_forward(forward: Callable, rows: int, videos: int, chunk: int) -> Callable:
    """A frame-wise module forward run on `chunk` frames of every video at a time.

    Tensor arguments with `rows` = videos * frames rows are sliced per chunk; others pass unchanged. The
    output (a tensor or a tuple of tensors) is written into one preallocated result, so the peak holds
    one chunk's intermediates plus the full output.
    """
    frames = rows // videos

    def run(*args, **kwargs):
        first = next((a for a in (*args, *kwargs.values()) if torch.is_tensor(a)), None)
        if first is None or first.shape[0] != rows or frames <= chunk:
            return forward(*args, **kwargs)
        slice_ = lambda a, s, e: _rows(a, videos, s, e) if torch.is_tensor(a) and a.shape[0] == rows else a  # noqa: E731
        result, is_tensor = None, True
        for s in range(0, frames, chunk):
            e = min(s + chunk, frames)
            y = forward(*(slice_(a, s, e) for a in args), **{k: slice_(v, s, e) for k, v in kwargs.items()})
            is_tensor = torch.is_tensor(y)
            parts = (y,) if is_tensor else y
            if not isinstance(parts, tuple) or not all(torch.is_tensor(p) for p in parts):
                raise TypeError(f"frame_split: cannot chunk a module returning {type(y).__name__}")
            if result is None:
                result = tuple(
                    torch.empty(videos, frames, *p.shape[1:], dtype=p.dtype, device=p.device) for p in parts
                )
            for r, p in zip(result, parts):
                r[:, s:e] = _frames_view(p, videos)
            del y, parts
        flat = tuple(r.reshape(rows, *r.shape[2:]) for r in result)
        return flat[0] if is_tensor else flat

    return run


def motion_blocks(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, AnimateDiffTransformer3D)]


def is_windowed(module: nn.Module) -> bool:
    """True inside `frame_split` over `module`: its motion blocks take videos longer than a window."""
    blocks = motion_blocks(module)
    return bool(blocks) and all(hasattr(m.__dict__.get("forward"), _WINDOWED) for m in blocks)


def _spatial_modules(root: nn.Module) -> list[nn.Module]:
    """The outermost frame-wise modules under `root` outside its motion blocks."""
    found: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, AnimateDiffTransformer3D):
                continue
            if isinstance(child, SPATIAL_TYPES) or name in SPATIAL_NAMES:
                found.extend(child if isinstance(child, nn.ModuleList) else [child])
            elif not isinstance(child, Attention):
                visit(child)

    visit(root)
    return found


_MISSING = object()


@contextmanager
def frame_split(
    modules: Sequence[nn.Module], num_frames: int, videos: int, window: int, overlap: int, chunk: int
) -> Iterator[None]:
    """Run `modules` (motion U-Nets, Video ControlNets, ControlNets) frame-split while inside.

    `num_frames` x `videos` is the batch the modules will be called with (CFG rows count as videos).
    """
    _check_int("num_frames", num_frames, 1)
    _check_int("videos", videos, 1)
    _check_int("chunk", chunk, 1)
    frame_windows(num_frames, window, overlap)  # validates
    rows = num_frames * videos
    patched: list[tuple[nn.Module, object]] = []
    seen: set[int] = set()
    try:
        for root in modules:
            for m in motion_blocks(root):
                if id(m) in seen:
                    continue
                seen.add(id(m))
                patched.append((m, m.__dict__.get("forward", _MISSING)))
                m.forward = windowed_motion_forward(m.forward, window, overlap)
            for m in _spatial_modules(root):
                if id(m) in seen:
                    continue
                seen.add(id(m))
                patched.append((m, m.__dict__.get("forward", _MISSING)))
                m.forward = chunked_forward(m.forward, rows, videos, chunk)
        yield
    finally:
        for m, fwd in reversed(patched):
            if fwd is _MISSING:
                m.__dict__.pop("forward", None)
            else:
                m.forward = fwd
