"""Training clips for Customizing Motion: video files or frame folders, with captions bound to the token.

Layout of a clips folder (the instance set, and likewise the regularisation set):
    clips/
      dance1.mp4            a video file (.mp4 .webm .mov .mkv .avi .gif), read with PyAV
      dance1.txt            optional caption of dance1.mp4
      take2/                or a folder of frames (.png .jpg .jpeg .webp, sorted by name)
        caption.txt         optional caption of the frame folder
Each clip must have at least `frames` frames; a random run of `frames` consecutive frames is taken per
epoch (seeded), resized to cover the training size and centre-cropped.

Token binding (paper Sec. 3.1: the motion is bound to a rare token already in the vocabulary; our rule
where a caption does not say where it goes): a caption that contains the token is used as written; one
without it gets ", <token> motion" appended; a clip without a caption is "a video of <token> motion".
Regularisation clips are used with their captions as written (no token).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..common.errors import PaperNodesError
from ..common.image import resize_center_crop
from ..common.video_io import VideoFileError, read_video_frames, video_info

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ClipsError(PaperNodesError, ValueError):
    """A clips folder that cannot be trained on; the message names the folder or clip and what to fix."""


def insert_token(caption: str, token: str) -> str:
    """The caption bound to `token` (module docstring)."""
    caption = caption.strip()
    if not token:
        return caption
    if token in caption.split() or token in caption.replace(",", " ").split():
        return caption
    if not caption:
        return f"a video of {token} motion"
    return f"{caption.rstrip('.')}, {token} motion"


@dataclass
class ClipSource:
    """One clip: a video file, a frame folder, or frames in memory (uint8 [N, H, W, 3])."""

    name: str
    caption: str
    path: Path | None = None
    frames: np.ndarray | None = None

    def num_frames(self) -> int:
        if self.frames is not None:
            return len(self.frames)
        if self.path.is_dir():
            return len(_frame_files(self.path))
        try:
            return video_info(self.path)[0]
        except VideoFileError as exc:
            raise ClipsError(f"clip {self.name}: cannot be read as a video ({exc})") from exc

    def read(self, start: int, count: int) -> np.ndarray:
        """uint8 [count, H, W, 3] frames start..start+count."""
        if self.frames is not None:
            return self.frames[start : start + count]
        if self.path.is_dir():
            from PIL import Image

            files = _frame_files(self.path)[start : start + count]
            out = []
            for f in files:
                try:
                    with Image.open(f) as img:
                        out.append(np.array(img.convert("RGB")))
                except OSError as exc:
                    raise ClipsError(f"clip {self.name}: frame {f.name} cannot be read ({exc})") from exc
            if len({a.shape for a in out}) > 1:
                raise ClipsError(f"clip {self.name}: frames of different sizes")
            return np.stack(out)
        try:
            return read_video_frames(self.path, range(start, start + count))
        except VideoFileError as exc:
            raise ClipsError(f"clip {self.name}: {exc}") from exc


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _caption(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def scan_clips(root: str | os.PathLike, what: str = "clips") -> list[ClipSource]:
    """The clips of a folder (module docstring), sorted by name; an empty or missing folder is an error."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ClipsError(f"{what} folder {root} does not exist")
    clips = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            clips.append(ClipSource(p.name, _caption(p.with_suffix(".txt")), path=p))
        elif p.is_dir() and _frame_files(p):
            clips.append(ClipSource(p.name, _caption(p / "caption.txt"), path=p))
    if not clips:
        raise ClipsError(
            f"{what} folder {root} holds no clips: put video files ({' '.join(VIDEO_SUFFIXES)}) or folders of "
            f"frames ({' '.join(IMAGE_SUFFIXES)}) in it"
        )
    return clips


def clips_from_frames(batches: list[np.ndarray], captions: list[str] | None = None) -> list[ClipSource]:
    """In-memory clips (uint8 or float 0..1 [N, H, W, 3] each), e.g. IMAGE batches from a graph."""
    out = []
    for i, frames in enumerate(batches):
        arr = np.asarray(frames)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ClipsError(f"clip {i + 1}: expected frames [N, H, W, 3], got {list(arr.shape)}")
        out.append(ClipSource(f"clip {i + 1}", (captions or [""] * len(batches))[i], frames=arr))
    return out


class ClipDataset:
    """Clips as training items {"pixels": [F, 3, H, W] in -1..1, "caption": str}; reproducible by
    (seed, epoch, index). `token` binds captions (None: captions as written, for regularisation)."""

    def __init__(self, clips: list[ClipSource], frames: int, height: int, width: int, token: str | None,
                 seed: int = 0):  # fmt: skip
        self.clips, self.frames, self.size, self.token, self.seed = (
            clips,
            frames,
            (height, width),
            token,
            seed,
        )
        self.epoch = 0
        self.lengths = [c.num_frames() for c in clips]
        short = [(c.name, n) for c, n in zip(clips, self.lengths, strict=True) if n < frames]
        if short:
            names = ", ".join(f"{name} ({n})" for name, n in short[:4])
            raise ClipsError(
                f"{len(short)} clip(s) shorter than the {frames} frames a training clip needs: {names}; "
                "lower the frame count or remove them"
            )

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def caption(self, index: int) -> str:
        text = self.clips[index].caption
        return insert_token(text, self.token) if self.token is not None else text

    def start(self, index: int, epoch: int | None = None) -> int:
        """First frame of the clip's window this epoch (seeded; 0 when the clip is exactly `frames` long)."""
        spare = self.lengths[index] - self.frames
        if spare == 0:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
        return int(rng.integers(0, spare + 1))

    def __getitem__(self, index: int) -> dict:
        frames = self.clips[index].read(self.start(index), self.frames)
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        return {"pixels": resize_center_crop(x, self.size) * 2.0 - 1.0, "caption": self.caption(index),
                "index": index}  # fmt: skip
