"""The BiDiff demo prior for the main job and the host tests, written into a ComfyUI base directory.

`trained=True`: the shipped world prior and BiDiff model (models/proving_ground/weights/world_3d/) copied
to models/bidiff/ under the names the example workflows use; `trained=False` (or none shipped yet): tiny
seeded untrained models of the same formats (fast, draw noise).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.demo_files import place_demo_file
from .grid_prior import GridPriorConfig, GridUNet, save_grid_prior
from .multiview import MultiViewConfig
from .pipeline import BiDiffModel, save_bidiff
from .volume import VolumeConfig

DEMO_PRIOR = "papernodes-world-3d-prior.safetensors"
DEMO_MODEL = "papernodes-world-bidiff.safetensors"
WEIGHTS = Path(__file__).resolve().parents[1] / "proving_ground" / "weights" / "world_3d"
SHIPPED = WEIGHTS / "grid_prior.safetensors"
SHIPPED_MODEL = WEIGHTS / "bidiff.safetensors"
TINY = GridPriorConfig(resolution=8, channels=(8, 16), emb=16)
TINY_MV = MultiViewConfig(views=4, size=16, channels=(8, 16), emb=16, heads=2)
TINY_VOL = VolumeConfig(
    views=4, size=16, resolution=8, features=4, channels=(8, 16), emb=16, render_samples=16
)


def _place(shipped: Path, dest: Path, trained: bool, write_tiny) -> None:
    def seeded(d: Path) -> None:
        torch.manual_seed(0)
        write_tiny(d)

    place_demo_file(dest, shipped, trained, seeded)


def write_bidiff_demo_prior(base_dir: str | Path, trained: bool) -> dict[str, Path]:
    """The world 3D prior and the world BiDiff model under models/bidiff (tiny seeded ones when untrained)."""
    folder = Path(base_dir) / "models" / "bidiff"
    _place(SHIPPED, folder / DEMO_PRIOR, trained, lambda d: save_grid_prior(GridUNet(TINY), d))
    _place(
        SHIPPED_MODEL, folder / DEMO_MODEL, trained, lambda d: save_bidiff(BiDiffModel(TINY_MV, TINY_VOL), d)
    )
    return {"prior_3d": folder / DEMO_PRIOR, "bidiff": folder / DEMO_MODEL}
