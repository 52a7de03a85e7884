"""BiDiff on DeepFloyd IF stage I in the real ComfyUI: an IF folder in models/diffusers -> 'BiDiff: Load Adapter
(SD1.5 or IF)' -> Generate 3D -> Shapes to Mesh -> core Save GLB, views saved; an IF stage II folder is refused
by name and the server keeps serving.

The IF folder is the tiny one in the real diffusers layout (tests/helpers_bidiff.py; random weights) and the
adapter a seeded one built for its U-Net.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from comfy_host import ExecutionFailed
from helpers_bidiff import generate_mesh_views_nodes, write_tiny_if_folder
from papernodes.models.bidiff.if_base import load_if_folder
from papernodes.models.bidiff.pipeline_sd import SDBiDiff, save_sd_bidiff
from PIL import Image

pytestmark = [pytest.mark.host, pytest.mark.slow]
IF_NAME, STAGE2, ADAPTER = (
    "papernodes-test-if-i",
    "papernodes-test-if-ii",
    "papernodes-test-if-adapter.safetensors",
)


@pytest.fixture(scope="module")
def if_files(comfy_host):
    diffusers = comfy_host.base_dir / "models" / "diffusers"
    folder = write_tiny_if_folder(diffusers / IF_NAME)
    stage2 = diffusers / STAGE2
    shutil.copytree(folder, stage2)
    config = json.loads((stage2 / "unet" / "config.json").read_text())
    (stage2 / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 6}))
    torch.manual_seed(0)
    model = SDBiDiff.fresh(load_if_folder(folder).unet, 2, 16, resolution=8, features=4, channels=(8, 16),
                           emb=16, render_samples=8)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised outputs would make the adapter invisible
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    save_sd_bidiff(model, comfy_host.base_dir / "models" / "bidiff" / ADAPTER)


def _prompt(model_name: str, prefix: str) -> dict:
    return {
        "adapter": {
            "class_type": "PaperNodes_BiDiffLoadSDAdapter",
            "inputs": {"model_name": model_name, "adapter_name": ADAPTER},
        },
        **generate_mesh_views_nodes("adapter", prefix),
    }


def test_an_if_folder_with_an_adapter_makes_views_and_a_mesh(comfy_host, if_files):
    entry = comfy_host.run(_prompt(f"diffusers/{IF_NAME}", "PaperNodes/bidiff_if"), timeout=900)
    files = comfy_host.output_files({"outputs": {"views": entry["outputs"]["views"]}})
    assert len(files) == 2 and all(Image.open(f).size == (16, 16) for f in files)


def test_an_if_upscaler_folder_is_refused_by_name(comfy_host, if_files):
    with pytest.raises(ExecutionFailed, match="stage II/III"):
        comfy_host.run(_prompt(f"diffusers/{STAGE2}", "PaperNodes/bidiff_if_bad"), timeout=900)
    assert comfy_host.object_info()["PaperNodes_BiDiffLoadSDAdapter"]["display_name"].endswith(
        "(SD1.5 or IF)"
    )
