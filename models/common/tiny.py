"""Tiny seeded models in the real architectures, written in the real file formats.

They are the test doubles of the whole pack and, until the proving-ground models ship, the demo models
the main job runs on. Same classes as SD1.5 / InstructPix2Pix (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel + the real CLIP BPE tokenizer), with configs small enough for a CPU; head counts and norm
groups equal SD1.5's, so the single-file reader can infer them exactly like it does for real files.
"""

from __future__ import annotations

import torch

from .loading import SDComponents, load_tokenizer, shipped_scheduler_config
from .saving import ldm_state_dict, save_diffusers_folder, save_single_file  # noqa: F401 (re-export)

TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=48,
    attention_head_dim=8,
    norm_num_groups=32,
)
TINY_UNET3D = dict(  # ZeroScope/ModelScope architecture (UNet3DConditionModel), tiny
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    cross_attention_dim=48,
    attention_head_dim=8,
    norm_num_groups=32,
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(32, 32, 32, 32),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=64,
    scaling_factor=0.18215,
)
TINY_CLIP = dict(
    hidden_size=48,
    intermediate_size=96,
    num_attention_heads=12,
    num_hidden_layers=2,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="quick_gelu",
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
    projection_dim=48,
)


def _perturb(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.05) -> None:
    """Zero-initialised layers (diffusers zero-inits some outputs) would hide wiring bugs: add noise."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)


def build_tiny_components(seed: int = 0, in_channels: int = 4) -> SDComponents:
    """Seeded tiny SD components; `in_channels=8` gives the InstructPix2Pix variant."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**TINY_UNET, "in_channels": in_channels})
    vae = AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_CLIP))
    for m in (unet, vae, text_encoder):
        _perturb(m, gen)
        m.eval().requires_grad_(False)
    return SDComponents(unet, vae, text_encoder, load_tokenizer(), shipped_scheduler_config(), source="tiny")


def build_tiny_controlnet(seed: int = 0):
    """A ControlNet of the tiny U-Net's architecture with non-zero zero-convolutions (so control shows)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    cn = ControlNetModel.from_unet(UNet2DConditionModel(**TINY_UNET))
    _perturb(cn, torch.Generator().manual_seed(seed + 100), scale=0.1)
    return cn.eval()


def build_tiny_zeroscope(seed: int = 0) -> SDComponents:
    """Seeded tiny text-to-video components in the ZeroScope layout (a UNet3DConditionModel U-Net).

    ModelScope zero-initialises the temporal layers' outputs; the perturbation makes them non-zero so
    tests can see frames interact."""
    from diffusers import UNet3DConditionModel

    comps = build_tiny_components(seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    torch.manual_seed(seed + 1000)
    unet = UNet3DConditionModel(**TINY_UNET3D)
    _perturb(unet, gen)
    comps.unet = unet.eval().requires_grad_(False)
    return comps


def build_sd15_shaped_components(seed: int = 0, in_channels: int = 4) -> SDComponents:
    """A narrow model ComfyUI's checkpoint loader recognises as SD1.5 (or SD1.5-InstructPix2Pix with
    `in_channels=8`): its detection reads the U-Net's channel count (320), the context width (768), the SD
    VAE and CLIP-L, so those are full size; the U-Net has one level. Random weights (~0.9 GB in float32)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from . import ldm_layout

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        in_channels=in_channels,
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
