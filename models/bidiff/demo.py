"""The BiDiff demo prior for the main job and the host tests, written into a ComfyUI base directory.

`trained=True`: the shipped world prior (models/proving_ground/weights/world_3d/) copied to models/bidiff/
under the name the example workflow uses; `trained=False` (or none shipped yet): a tiny seeded untrained
prior of the same format (fast, draws noise).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .grid_prior import GridPriorConfig, GridUNet, save_grid_prior

DEMO_PRIOR = "papernodes-world-3d-prior.safetensors"
WEIGHTS = Path(__file__).resolve().parents[1] / "proving_ground" / "weights" / "world_3d"
SHIPPED = WEIGHTS / "grid_prior.safetensors"
TINY = GridPriorConfig(resolution=8, channels=(8, 16), emb=16)


def write_bidiff_demo_prior(base_dir: str | Path, trained: bool) -> dict[str, Path]:
    dest = Path(base_dir) / "models" / "bidiff" / DEMO_PRIOR
    dest.parent.mkdir(parents=True, exist_ok=True)
    if trained and SHIPPED.is_file():
        if not dest.is_file() or dest.stat().st_size != SHIPPED.stat().st_size:
            shutil.copyfile(SHIPPED, dest)
    elif not dest.is_file():
        torch.manual_seed(0)
        save_grid_prior(GridUNet(TINY), dest)
    return {"prior_3d": dest}
