"""The HandDiffuse demo model for the main job and the host tests, written into a ComfyUI base directory.

`trained=True`: the shipped world model (reproduce.py) copied to models/handdiffuse/ under the name the
example workflows use; `trained=False`: a tiny seeded untrained model of the same format (fast, random).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.demo_files import place_demo_file
from .denoiser import HandDenoiser
from .pipeline import ModelConfig, save_model
from .reproduce import GENERATOR_FILE, WEIGHTS

DEMO_HANDS = "papernodes-world-hands.safetensors"
TINY = {"width": 32, "heads": 2, "single_layers": 1, "interact_layers": 1, "num_labels": 7, "max_frames": 512}


def shipped_model() -> Path | None:
    path = WEIGHTS / GENERATOR_FILE
    return path if path.is_file() else None


def write_tiny_hands(dest: Path) -> None:
    torch.manual_seed(0)
    save_model(HandDenoiser(**TINY), ModelConfig(denoiser=dict(TINY), window=60), dest)


def write_hands_demo_model(base_dir: str | Path, trained: bool) -> dict[str, Path]:
    dest = Path(base_dir) / "models" / "handdiffuse" / DEMO_HANDS
    place_demo_file(dest, shipped_model(), trained, write_tiny_hands)
    return {"hands": dest}
