"""Training data for colorization fine-tuning of InstructPix2Pix (An et al. 2023).

Two sources:
- `ColorFolderDataset`: any folder of color images; the grayscale input is made on the fly with the
  ITU-R BT.601 luma weights (0.299, 0.587, 0.114), replicated to 3 channels because the
  InstructPix2Pix VAE takes RGB. Each item gets a randomly worded instruction (`instructions.py`).
- `TripletDataset`: prepared (gray, color, instruction) triplets listed in `metadata.jsonl`.

Items are dicts `gray`, `color` (float32 tensors, 3xSxS, range [-1, 1], the VAE's input range) and
`instruction` (str). Randomness (instruction choice, flips) comes from a `random.Random` seeded by
(seed, epoch, index), so the same index gives the same item for the same seed and epoch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..common.errors import PaperNodesError
from .instructions import sample_instruction

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
BT601 = (0.299, 0.587, 0.114)


class DatasetError(PaperNodesError, ValueError):
    """A training-data folder is missing, empty or malformed; the message names the folder."""


def to_grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of a (..., 3, H, W) tensor, replicated to 3 channels.

    The weights sum to 1, so the formula is the same for [0, 1] and [-1, 1] tensors.
    """
    r, g, b = rgb.unbind(dim=-3)
    y = BT601[0] * r + BT601[1] * g + BT601[2] * b
    return torch.stack((y, y, y), dim=-3)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` (bicubic), then crop the central `size` x `size` square."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 3xHxW tensor in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_folder(folder: str | Path, what: str) -> Path:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise DatasetError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise DatasetError(f"{what} path {folder} is not a folder")
    return folder


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:  # a corrupt file should name itself, not fail deep inside a DataLoader
        raise DatasetError(f"could not read image {path}: {exc}") from exc


class _SeededDataset(Dataset):
    def __init__(self, size: int, random_flip: bool, seed: int):
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.size, self.random_flip, self.seed, self.epoch = int(size), bool(random_flip), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Different (still reproducible) instructions and flips in each epoch."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> random.Random:
        return random.Random((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)


class ColorFolderDataset(_SeededDataset):
    """Every png/jpg/jpeg/webp/bmp under `folder` (recursively): (BT.601 gray, color, instruction).

    `size` 256 is the training resolution of An et al. (2023).
    """

    def __init__(self, folder: str | Path, size: int = 256, random_flip: bool = False, seed: int = 0):
        super().__init__(size, random_flip, seed)
        self.folder = _check_folder(folder, "Training image")
        self.files = find_images(self.folder)
        if not self.files:
            raise DatasetError(
                f"Training image folder {self.folder} contains no images "
                f"(looked recursively for {', '.join(IMAGE_SUFFIXES)})"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        img = resize_center_crop(_open_rgb(self.files[index]), self.size)
        if self.random_flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        color = pil_to_tensor(img)
        return {"gray": to_grayscale(color), "color": color, "instruction": sample_instruction(rng)}


class TripletDataset(_SeededDataset):
    """Prepared triplets: `folder/metadata.jsonl`, one JSON object per line,
    `{"gray": "relative/path", "color": "relative/path", "instruction": "..."}`.

    A line without "instruction" gets a randomly sampled one. If the gray and color images differ in
    size, the gray one is resized to the color one first so both crops cover the same region.
    """

    def __init__(self, folder: str | Path, size: int = 256, random_flip: bool = False, seed: int = 0):
        super().__init__(size, random_flip, seed)
        self.folder = _check_folder(folder, "Triplet")
        meta = self.folder / "metadata.jsonl"
        if not meta.is_file():
            raise DatasetError(f"Triplet folder {self.folder} has no metadata.jsonl")
        self.rows: list[tuple[Path, Path, str | None]] = []
        for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                row = json.loads(line)
                gray, color = self.folder / row["gray"], self.folder / row["color"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(
                    f'{meta} line {lineno}: expected a JSON object with "gray" and "color" paths ({exc})'
                ) from exc
            for p in (gray, color):
                if not p.is_file():
                    raise DatasetError(f"{meta} line {lineno}: image {p} not found")
            instruction = row.get("instruction")
            if instruction is not None and not isinstance(instruction, str):
                raise DatasetError(f'{meta} line {lineno}: "instruction" must be a string')
            self.rows.append((gray, color, instruction or None))
        if not self.rows:
            raise DatasetError(f"Triplet folder {self.folder}: metadata.jsonl lists no triplets")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        gray_path, color_path, instruction = self.rows[index]
        color_img, gray_img = _open_rgb(color_path), _open_rgb(gray_path)
        if gray_img.size != color_img.size:
            gray_img = gray_img.resize(color_img.size, Image.BICUBIC)
        color_img, gray_img = (
            resize_center_crop(color_img, self.size),
            resize_center_crop(gray_img, self.size),
        )
        if self.random_flip and rng.random() < 0.5:
            color_img = color_img.transpose(Image.FLIP_LEFT_RIGHT)
            gray_img = gray_img.transpose(Image.FLIP_LEFT_RIGHT)
        if instruction is None:
            instruction = sample_instruction(rng)
        return {
            "gray": pil_to_tensor(gray_img),
            "color": pil_to_tensor(color_img),
            "instruction": instruction,
        }
