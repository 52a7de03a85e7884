"""Video files as uint8 RGB frames, through PyAV (FFmpeg): frame count and size, random access, writing.

Methods read training clips and reference videos here (DreaMoving's control clips, Customizing Motion's
reference video) and hand frames on as arrays; in ComfyUI a video is an IMAGE batch plus an fps, and
saving goes through the core video nodes. `write_video` exists for datasets, tests and scripts.

PyAV is imported lazily (ComfyUI ships it; `models/` stays importable without it). Errors about a file
are `VideoFileError` and name the file; bad arguments are `InputError` naming the argument.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, PaperNodesError


class VideoFileError(PaperNodesError, ValueError):
    """A video file cannot be opened or decoded, or has fewer frames than asked for; names the file."""


def _open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises several FFmpeg error classes
        raise VideoFileError(f"{path}: cannot be opened as a video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoFileError(f"{path}: has no video stream")
    return container


def video_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frame count, width, height). Uses the container's frame count, or decodes to count if absent."""
    path = Path(path)
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        count, width, height = int(stream.frames or 0), int(stream.width), int(stream.height)
        if count <= 0:
            try:
                count = sum(1 for _ in container.decode(stream))
            except Exception as exc:
                raise VideoFileError(f"{path}: video frames cannot be decoded ({exc})") from exc
    finally:
        container.close()
    if count <= 0:
        raise VideoFileError(f"{path}: contains no video frames")
    return count, width, height


def video_fps(path: str | os.PathLike) -> float:
    """The stream's average frame rate (the container's guess when the average is not stored)."""
    path = Path(path)
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    finally:
        container.close()
    if not rate:
        raise VideoFileError(f"{path}: the video stream stores no frame rate")
    return float(rate)


def read_video_frames(path: str | os.PathLike, indices: Sequence[int] | None = None) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] RGB frames at `indices` (any order, repeats allowed), decoding only up
    to the last one asked for; `None` reads every frame."""
    path = Path(path)
    if indices is not None:
        indices = list(indices)
        if not indices or any(
            isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in indices
        ):
            raise InputError("indices", "a non-empty list of frame numbers >= 0", repr(indices[:8]))
        indices = [int(i) for i in indices]
    wanted = set(indices) if indices is not None else None
    last = max(indices) if indices is not None else None
    got: dict[int, np.ndarray] = {}
    decoded = 0
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if wanted is None or i in wanted:
                got[i] = frame.to_ndarray(format="rgb24")
            if last is not None and i >= last:
                break
    except Exception as exc:
        raise VideoFileError(f"{path}: video frames cannot be decoded ({exc})") from exc
    finally:
        container.close()
    if indices is None:
        if not got:
            raise VideoFileError(f"{path}: contains no video frames")
        indices = sorted(got)
    missing = [i for i in indices if i not in got]
    if missing:
        raise VideoFileError(
            f"{path}: frame {missing[0]} requested but the video decodes to only {decoded} frames"
        )
    return np.stack([got[i] for i in indices])


def _uint8_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """IMAGE float [F, H, W, 3] in 0..1 (rounded) or uint8 [F, H, W, 3] -> contiguous uint8 numpy."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.is_floating_point():
            frames = (frames.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        frames = frames.numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise InputError("frames", "a non-empty batch [F, H, W, 3]", f"shape {list(arr.shape)}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError("frames", "uint8 or float frames in 0..1", str(arr.dtype))
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | torch.Tensor,
    fps: float,
    codec: str = "mpeg4",
    options: dict[str, str] | None = None,
) -> Path:
    """Encode frames (uint8, or IMAGE floats in 0..1) to `path` with PyAV in yuv420p.

    `mpeg4` is in every FFmpeg build, so it is the default; its `qscale` 2 (the default option here) keeps
    flat colours within a few levels. yuv420p needs an even width and height.
    """
    import av

    arr = _uint8_frames(frames)
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise InputError("fps", "a frame rate > 0", repr(fps))
    height, width = arr.shape[1:3]
    if width % 2 or height % 2:
        raise InputError("frames", "an even width and height (yuv420p)", f"{width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001 * 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict({"qscale": "2"} if codec == "mpeg4" and options is None else (options or {}))
        for f in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
