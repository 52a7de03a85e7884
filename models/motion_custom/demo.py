"""A tiny stand-in for the Customizing Motion demo (the test suite's host): a seeded motion file for a base.

The main job uses the motion world's trained files instead (`models/proving_ground/motion_reproduce.py`);
this is only for fast plumbing runs: a motion file whose deltas are seeded noise on the paper's set, in the
same format and with the same base checks as a trained one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .motion_file import MotionFile, base_fingerprint, save_motion
from .pipeline import VideoModel
from .trainable import trainable_names


def write_seeded_motion(model: VideoModel, path: str | Path, token: str = "sks", seed: int = 0,
                        scale: float = 0.02) -> Path:  # fmt: skip
    names = trainable_names(model.unet, "paper")
    params = dict(model.unet.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    deltas = {n: scale * torch.randn(params[n].shape, generator=gen) for n in names}
    motion = MotionFile(deltas, model.architecture, base_fingerprint(model.unet, names), token, "paper", 0)
    return save_motion(motion, path)
