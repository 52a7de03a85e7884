"""The MODEL/CLIP/VAE bridge: core Load Checkpoint -> our colorizer equals our own single-file loader.

ComfyUI only recognises a checkpoint whose shapes match a known model family (SD1.5-IP2P here: 320 model
channels, 768-d context, the SD VAE, CLIP-L), so this test writes a narrow but correctly shaped
InstructPix2Pix checkpoint (one U-Net level; full-size VAE and CLIP-L) with random weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from papernodes.models.common import ldm_layout, saving
from papernodes.models.common.loading import SDComponents, load_tokenizer, shipped_scheduler_config
from PIL import Image

pytestmark = [pytest.mark.host, pytest.mark.slow]
CKPT = "papernodes-bridge-ip2p.safetensors"


def _sd15_shaped_ip2p(seed: int = 0) -> SDComponents:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        in_channels=8,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(320,),
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
        cross_attention_dim=768,
        attention_head_dim=8,
        sample_size=8,
    )
    with torch.no_grad():  # diffusers zero-initialises conv_out; give it weights so outputs depend on it
        unet.conv_out.weight.normal_(0, 0.02)
    vae = AutoencoderKL.from_config(ldm_layout.shipped_config("sd_vae"))
    clip = CLIPTextModel(CLIPTextConfig(**ldm_layout.shipped_config("clip_l_text")))
    return SDComponents(unet.eval(), vae.eval(), clip.eval(), load_tokenizer(), shipped_scheduler_config())


@pytest.fixture(scope="module")
def bridge_checkpoint(comfy_host):
    path = comfy_host.base_dir / "models" / "checkpoints" / CKPT
    saving.save_single_file(_sd15_shaped_ip2p(), path, dtype=torch.float16)
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
