"""The MODEL/CLIP/VAE bridge: core Load Checkpoint -> our colorizer equals our own single-file loader.

ComfyUI only recognises a checkpoint whose shapes match a known model family (SD1.5-IP2P here: 320 model
channels, 768-d context, the SD VAE, CLIP-L), so this test writes a narrow but correctly shaped
InstructPix2Pix checkpoint (one U-Net level; full-size VAE and CLIP-L) with random weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from papernodes.models.common import saving, tiny
from PIL import Image

pytestmark = [pytest.mark.host, pytest.mark.slow]
CKPT = "papernodes-bridge-ip2p.safetensors"


@pytest.fixture(scope="module")
def bridge_checkpoint(comfy_host):
    path = comfy_host.base_dir / "models" / "checkpoints" / CKPT
    saving.save_single_file(tiny.build_sd15_shaped_components(in_channels=8), path, dtype=torch.float16)
    return path


def _colorize(loader_node: str, loader_inputs: dict, extra_nodes: dict, prefix: str) -> dict:
    prompt = {
        "img": {"class_type": "LoadImage", "inputs": {"image": "papernodes_demo_color.png"}},
        "load": {"class_type": loader_node, "inputs": loader_inputs},
        "color": {
            "class_type": "PaperNodes_Colorize",
            "inputs": {
                "colorizer": ["load", 0],
                "image": ["img", 0],
                "instruction": "colorize",
                "steps": 2,
                "text_guidance": 7.5,
                "image_guidance": 1.5,
                "scheduler": "euler_ancestral",
                "seed": 3,
                "keep_luminance": False,
                "resize_mode": "pad",
            },
        },
        "save": {"class_type": "SaveImage", "inputs": {"images": ["color", 0], "filename_prefix": prefix}},
    }
    prompt.update(extra_nodes)
    return prompt


def _saved(comfy_host, entry) -> np.ndarray:
    files = comfy_host.output_files({"outputs": {"save": entry["outputs"]["save"]}})
    return np.asarray(Image.open(files[0])).astype(np.int16)


def test_core_checkpoint_through_bridge_equals_single_file_loader(comfy_host, bridge_checkpoint):
    via_bridge = _colorize(
        "PaperNodes_ColorizerFromCheckpoint",
        {"model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2]},
        {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}}},
        "PaperNodes/bridge",
    )
    via_file = _colorize(
        "PaperNodes_LoadColorizer", {"model_name": f"checkpoints/{CKPT}"}, {}, "PaperNodes/single_file"
    )
    a = _saved(comfy_host, comfy_host.run(via_bridge, timeout=900))
    b = _saved(comfy_host, comfy_host.run(via_file, timeout=900))
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1, "bridge and single-file loader disagree"
    assert a.std() > 1  # not a blank image


LORA_CKPT = "papernodes-bridge-sd15.safetensors"
LORA_FILE = "papernodes-bridge-lora.safetensors"


@pytest.fixture(scope="module")
def bridge_sd15_with_lora(comfy_host):
    """A 4-channel SD1.5-shaped checkpoint and a kohya-layout LoRA on its attention projections."""
    from papernodes.models.demo_assets import write_demo_lora

    comps = tiny.build_sd15_shaped_components(seed=1, in_channels=4)
    saving.save_single_file(
        comps, comfy_host.base_dir / "models" / "checkpoints" / LORA_CKPT, dtype=torch.float16
    )
    write_demo_lora(comps.unet, comfy_host.base_dir / "models" / "loras" / LORA_FILE, rank=4, seed=5)


def _edit(loader: dict, extra: dict, prefix: str) -> dict:
    """The InfEdit example workflow's API twin with another loader, 2 steps, and only the edited image saved."""
    prompt = json.loads((REPO_ROOT / "example_workflows" / "api" / "infedit.json").read_text())
    for node in ("5", "6", "7"):  # mask and reconstruction outputs: not needed here
        del prompt[node]
    prompt["2"] = loader
    prompt["3"]["inputs"].update(
        source_prompt="a black star", target_prompt="a green star", target_blend_words="", steps=2, seed=4
    )
    prompt["save"] = prompt.pop("4")
    prompt["save"]["inputs"]["filename_prefix"] = prefix
    return {**prompt, **extra}


def test_core_lora_reaches_the_bridge(comfy_host, bridge_sd15_with_lora):
    """Core LoraLoader -> bridge equals our own loader fusing the same LoRA file at the same strength, and
    differs from the bridge without it: the LoRA arrives (ComfyUI 0.3.75 and 0.33, whose dynamic-VRAM
    patcher keeps LoRAs out of the weights, are both run by CI)."""
    ckpt = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": LORA_CKPT}}}
    lora = {
        "lora": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["ckpt", 0],
                "clip": ["ckpt", 1],
                "lora_name": LORA_FILE,
                "strength_model": 0.8,
                "strength_clip": 0.0,
            },
        }
    }
    bridge = {
        "class_type": "PaperNodes_InfEditFromCheckpoint",
        "inputs": {"model": ["lora", 0], "clip": ["lora", 1], "vae": ["ckpt", 2]},
    }
    plain_bridge = {
        "class_type": "PaperNodes_InfEditFromCheckpoint",
        "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2]},
    }
    ours = {
        "class_type": "PaperNodes_InfEditLoadLCM",
        "inputs": {"model_name": f"checkpoints/{LORA_CKPT}", "lcm_lora": LORA_FILE, "lora_strength": 0.8},
    }
    with_core_lora = _saved(
        comfy_host, comfy_host.run(_edit(bridge, {**ckpt, **lora}, "PaperNodes/lora_core"), 900)
    )
    with_our_lora = _saved(comfy_host, comfy_host.run(_edit(ours, {}, "PaperNodes/lora_ours"), 900))
    without = _saved(comfy_host, comfy_host.run(_edit(plain_bridge, ckpt, "PaperNodes/lora_none"), 900))
    assert np.abs(with_core_lora - with_our_lora).max() <= 2, "core LoRA and our fused LoRA disagree"
    assert np.abs(with_core_lora - without).mean() > 1.0, "the LoRA did not change the bridged model"
