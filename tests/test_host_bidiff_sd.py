"""BiDiff on an SD1.5 checkpoint in the real ComfyUI: core Load Checkpoint -> 'BiDiff: SD Adapter on Checkpoint' ->
Generate 3D -> Shapes to Mesh -> core Save GLB, views saved; an adapter trained for another architecture is
refused with an error naming the input, and the server keeps serving.

ComfyUI recognises a checkpoint as SD1.5 only with SD1.5's shapes, so the checkpoint is the narrow
SD1.5-shaped model of the bridge tests (random weights) and the adapter a seeded one built for its U-Net.
"""

from __future__ import annotations

import pytest
import torch
from comfy_host import ExecutionFailed
from helpers_bidiff import generate_mesh_views_nodes
from papernodes.models.bidiff.pipeline_sd import SDBiDiff, save_sd_bidiff
from papernodes.models.common import saving, tiny
from PIL import Image

pytestmark = [pytest.mark.host, pytest.mark.slow]
CKPT, ADAPTER, OTHER = (
    "papernodes-bidiff-sd15.safetensors",
    "papernodes-test-sd-adapter.safetensors",
    "papernodes-test-sd-adapter-tiny.safetensors",
)


def _adapter(unet, path, seed: int) -> None:
    torch.manual_seed(seed)
    model = SDBiDiff.fresh(unet, 2, 64, resolution=8, features=4, channels=(8, 16), emb=16, render_samples=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # zero-initialised outputs would make the adapter invisible
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    save_sd_bidiff(model, path)


@pytest.fixture(scope="module")
def sd_files(comfy_host):
    comps = tiny.build_sd15_shaped_components(seed=2)
    saving.save_single_file(comps, comfy_host.base_dir / "models" / "checkpoints" / CKPT, dtype=torch.float16)
    folder = comfy_host.base_dir / "models" / "bidiff"
    _adapter(comps.unet, folder / ADAPTER, 0)
    _adapter(tiny.build_tiny_components(0).unet, folder / OTHER, 1)


def _prompt(adapter: str, prefix: str) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "adapter": {
            "class_type": "PaperNodes_BiDiffSDAdapterOnCheckpoint",
            "inputs": {
                "model": ["ckpt", 0],
                "clip": ["ckpt", 1],
                "vae": ["ckpt", 2],
                "adapter_name": adapter,
            },
        },
        **generate_mesh_views_nodes("adapter", prefix),
    }


def test_an_sd_checkpoint_with_an_adapter_makes_views_and_a_mesh(comfy_host, sd_files):
    entry = comfy_host.run(_prompt(ADAPTER, "PaperNodes/bidiff_sd"), timeout=900)
    files = comfy_host.output_files({"outputs": {"views": entry["outputs"]["views"]}})
    assert len(files) == 2
    views = [Image.open(f) for f in files]
    assert all(v.size == (64, 64) for v in views)


def test_an_adapter_for_another_architecture_is_refused_by_name(comfy_host, sd_files):
    with pytest.raises(ExecutionFailed, match="model") as err:
        comfy_host.run(_prompt(OTHER, "PaperNodes/bidiff_sd_bad"), timeout=900)
    assert "cross_attention_dim" in str(err.value)
    assert (
        comfy_host.object_info()["PaperNodes_BiDiffSDAdapterOnCheckpoint"]["category"] == "PaperNodes/BiDiff"
    )
