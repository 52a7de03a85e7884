"""Training data for the DreaMoving trainer (`models/dreamoving/train.py`).

Control clips (stage `controlnet`): a folder of videos, each with its control sequence and caption::

    clips/
      dance01.mp4           the video (any codec PyAV/FFmpeg decodes)
      dance01.txt           its caption (UTF-8, one line or several)
      dance01/00000.png ... the control sequence as images (pose or depth maps), one per video frame
      dance02.mp4
      dance02.txt
      dance02.pose.json     ... or POSE_KEYPOINT (a JSON list, one OpenPose dict per frame), rendered
                            OpenPose-style at the video's size by `common.pose.render_openpose`

With `control_suffix=".depth"` the sequence is read from `dance01.depth/` or `dance01.depth.pose.json`,
so pose and depth sequences for the same videos can share a folder. The control sequence must have
exactly as many frames as the video. A sample is `frames` frames `stride` apart starting at a random
frame (seeded by seed, epoch and index, so runs and resumes are reproducible), resized so the short side
is `resolution` and centre-cropped to a square; control frames get the same resize and crop.

Content samples (stage `guider`): a frame, a face crop, a clothes crop and a caption, either as siblings::

    content/
      a.png  a.face.png  a.clothes.png  a.txt      (.png / .jpg / .jpeg / .webp for each image)

or listed in `content/metadata.jsonl`, one JSON object per line with paths relative to the folder::

    {"image": "frames/a.png", "face": "faces/a.png", "clothes": "clothes/a.png", "caption": "..."}

Frames come back as [-1, 1] tensors; face and clothes crops as CLIP pixel values (shortest side to the
encoder's size, centre crop, OpenAI mean/std; `common.image_prompt.preprocess_clip_images`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..common.errors import PaperNodesError
from ..common.image import resize_center_crop
from ..common.image_prompt import preprocess_clip_images
from ..common.pose import parse_pose_keypoints, render_openpose
from ..common.video_io import VideoFileError, read_video_frames, video_info

VIDEO_SUFFIXES = (".mp4",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
POSE_SUFFIX = ".pose.json"
METADATA = "metadata.jsonl"


class DataLayoutError(PaperNodesError, ValueError):
    """A training folder does not have the documented layout; the message names the file."""


# ----------------------------------------------------------------------------------------------------
# Pixels


def _to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in 0..1."""
    return torch.from_numpy(np.array(frames, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)


def read_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB (grayscale depth maps and RGBA are converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataLayoutError(f"{path}: cannot be read as an image ({exc})") from exc


def _video(call, *args):
    """Run a `video_io` reader; its file errors become DataLayoutError, the one error of a bad data folder."""
    try:
        return call(*args)
    except VideoFileError as exc:
        raise DataLayoutError(str(exc)) from exc


# ----------------------------------------------------------------------------------------------------
# Control clips


@dataclass
class ControlClip:
    name: str
    video: Path
    caption: str
    num_frames: int
    width: int
    height: int
    control_frames: list[Path] | None = None  # image sequence
    pose: list | None = None  # parsed POSE_KEYPOINT frames
    pose_file: Path | None = None


def _read_caption(path: Path, what: str) -> str:
    if not path.is_file():
        raise DataLayoutError(f"{path}: missing; every {what} needs a caption file {path.name} (UTF-8 text)")
    return path.read_text(encoding="utf-8").strip()


def _control_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataLayoutError(
            f"{folder}: control folder holds no images (expected 00000.png, 00001.png, ...)"
        )
    return files


def _load_pose(path: Path, num_frames: int) -> list:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataLayoutError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise DataLayoutError(f"{path}: expected a JSON list with one POSE_KEYPOINT dict per frame")
    if len(raw) != num_frames:
        raise DataLayoutError(
            f"{path}: has {len(raw)} pose frames, the video has {num_frames}; expected one per video frame"
        )
    try:
        return parse_pose_keypoints(raw)
    except PaperNodesError as exc:
        raise DataLayoutError(f"{path}: not a POSE_KEYPOINT list ({exc})") from exc


def scan_control_clips(root: str | os.PathLike, control_suffix: str = "") -> list[ControlClip]:
    """Every `<name>.mp4` in `root` with its control sequence and caption (validated up front)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(
            f"{root}: not a folder (expected a folder of <name>.mp4 + <name>.txt + controls)"
        )
    videos = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise DataLayoutError(
            f"{root}: no .mp4 videos found (expected <name>.mp4 with <name>.txt and a control)"
        )
    clips = []
    for video in videos:
        name = video.stem
        caption = _read_caption(root / f"{name}.txt", "video")
        count, width, height = _video(video_info, video)
        folder = root / f"{name}{control_suffix}"
        pose_file = root / f"{name}{control_suffix}{POSE_SUFFIX}"
        if folder.is_dir() and pose_file.is_file():
            raise DataLayoutError(
                f"{video}: both {folder.name}/ and {pose_file.name} exist; keep one control sequence per video"
            )
        clip = ControlClip(name, video, caption, count, width, height)
        if folder.is_dir():
            clip.control_frames = _control_images(folder)
            if len(clip.control_frames) != count:
                raise DataLayoutError(
                    f"{folder}: has {len(clip.control_frames)} control images, {video.name} has {count} frames; "
                    "expected one control image per video frame"
                )
        elif pose_file.is_file():
            clip.pose, clip.pose_file = _load_pose(pose_file, count), pose_file
        else:
            raise DataLayoutError(
                f"{video}: no control sequence; expected a folder {folder.name}/ of frames (00000.png ...) "
                f"or {pose_file.name} (POSE_KEYPOINT)"
            )
        clips.append(clip)
    return clips


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 10_007 + int(index)) % 2**63)


class ControlClipDataset(Dataset):
    """Clips of `frames` frames `stride` apart with their control frames and caption.

    Item: {"pixels": [F, 3, R, R] in [-1, 1], "control": [F, 3, R, R] in [0, 1], "caption": str,
    "name": str, "start": int}. Videos shorter than (frames - 1) * stride + 1 are refused up front.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frames: int = 16,
        stride: int = 4,
        resolution: int = 512,
        control_suffix: str = "",
        seed: int = 0,
    ):
        if frames < 1 or stride < 1 or resolution < 1:
            raise DataLayoutError(
                f"frames, stride and resolution must be >= 1 (got {frames}, {stride}, {resolution})"
            )
        self.frames, self.stride, self.resolution, self.seed, self.epoch = frames, stride, resolution, seed, 0
        self.clips = scan_control_clips(root, control_suffix)
        span = (frames - 1) * stride + 1
        for clip in self.clips:
            if clip.num_frames < span:
                raise DataLayoutError(
                    f"{clip.video}: has {clip.num_frames} frames; {frames} frames with stride {stride} need at "
                    f"least {span} (lower --frames or --stride, or remove the clip)"
                )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def frame_indices(self, index: int) -> list[int]:
        clip = self.clips[index]
        last_start = clip.num_frames - (self.frames - 1) * self.stride - 1
        g = sample_generator(self.seed, self.epoch, index)
        start = int(torch.randint(0, last_start + 1, (1,), generator=g))
        return [start + k * self.stride for k in range(self.frames)]

    def control_frames(self, clip: ControlClip, indices: list[int]) -> torch.Tensor:
        """Control frames at `indices` as float [F, 3, H, W] in 0..1 at the video's own size."""
        if clip.pose is not None:
            images = render_openpose([clip.pose[i] for i in indices], clip.width, clip.height)
            return images.permute(0, 3, 1, 2)
        out = []
        for i in indices:
            img = _to_float(read_image(clip.control_frames[i])[None])
            if tuple(img.shape[-2:]) != (clip.height, clip.width):
                img = F.interpolate(img, size=(clip.height, clip.width), mode="bilinear", antialias=True)
            out.append(img)
        return torch.cat(out)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        idx = self.frame_indices(index)
        video = _to_float(_video(read_video_frames, clip.video, idx))
        if tuple(video.shape[-2:]) != (clip.height, clip.width):  # rotated/odd containers: trust the pixels
            clip.height, clip.width = video.shape[-2:]
        control = self.control_frames(clip, idx)
        return {
            "pixels": resize_center_crop(video, self.resolution) * 2.0 - 1.0,
            "control": resize_center_crop(control, self.resolution).clamp(0.0, 1.0),
            "caption": clip.caption,
            "name": clip.name,
            "start": idx[0],
        }


# ----------------------------------------------------------------------------------------------------
# Content samples (frame, face crop, clothes crop, caption)


@dataclass
class ContentSample:
    image: Path
    face: Path
    clothes: Path
    caption: str


def _sibling(root: Path, stem: str, tag: str, owner: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        p = root / f"{stem}.{tag}{suffix}"
        if p.is_file():
            return p
    raise DataLayoutError(f"{owner}: missing its {tag} crop; expected {stem}.{tag}.png (or .jpg/.jpeg/.webp)")


def _from_metadata(root: Path) -> list[ContentSample]:
    path = root / METADATA
    samples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataLayoutError(f"{path}, line {n}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise DataLayoutError(f"{path}, line {n}: expected a JSON object")
        missing = [k for k in ("image", "face", "clothes") if not isinstance(row.get(k), str)]
        caption = row.get("caption", row.get("text"))
        if not isinstance(caption, str):
            missing.append("caption")
        if missing:
            raise DataLayoutError(
                f"{path}, line {n}: missing {', '.join(repr(k) for k in missing)}; expected "
                '{"image": ..., "face": ..., "clothes": ..., "caption": ...}'
            )
        files = {}
        for key in ("image", "face", "clothes"):
            p = root / row[key]
            if not p.is_file():
                raise DataLayoutError(f"{path}, line {n}: {key} file {p} not found")
            files[key] = p
        samples.append(ContentSample(files["image"], files["face"], files["clothes"], caption.strip()))
    if not samples:
        raise DataLayoutError(f"{path}: no samples")
    return samples


def scan_content_samples(root: str | os.PathLike) -> list[ContentSample]:
    """metadata.jsonl if present, otherwise `<name>.<ext>` + `<name>.face.*` + `<name>.clothes.*` + `<name>.txt`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(
            f"{root}: not a folder (expected images with .face/.clothes crops, or {METADATA})"
        )
    if (root / METADATA).is_file():
        return _from_metadata(root)
    samples = []
    for p in sorted(root.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem.endswith((".face", ".clothes")):
            continue
        samples.append(
            ContentSample(
                p, _sibling(root, p.stem, "face", p), _sibling(root, p.stem, "clothes", p),
                _read_caption(root / f"{p.stem}.txt", "image"),
            )
        )  # fmt: skip
    if not samples:
        raise DataLayoutError(
            f"{root}: no training images; expected <name>.png with <name>.face.png, <name>.clothes.png and "
            f"<name>.txt, or a {METADATA}"
        )
    return samples


class ContentDataset(Dataset):
    """Item: {"pixels": [3, R, R] in [-1, 1], "face"/"clothes": CLIP pixel values [3, S, S], "caption"}."""

    def __init__(self, root: str | os.PathLike, resolution: int = 512, clip_size: int = 224):
        self.samples = scan_content_samples(root)
        self.resolution, self.clip_size = resolution, clip_size

    def set_epoch(self, epoch: int) -> None:  # no random augmentation; kept for the trainer's interface
        pass

    def __len__(self) -> int:
        return len(self.samples)

    def _clip(self, path: Path) -> torch.Tensor:
        img = torch.from_numpy(read_image(path)).float().div_(255.0)[None]
        return preprocess_clip_images(img, self.clip_size)[0]

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        image = _to_float(read_image(s.image)[None])
        return {
            "pixels": resize_center_crop(image, self.resolution)[0] * 2.0 - 1.0,
            "face": self._clip(s.face),
            "clothes": self._clip(s.clothes),
            "caption": s.caption,
        }
