"""LoRA fusing: the fused layer equals base + scaled low-rank path; the input model is never modified."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from papernodes.models.common import tiny
from papernodes.models.common.errors import WeightsFormatError
from papernodes.models.common.lora import fuse_lora


@pytest.fixture(scope="module")
def comps():
    return tiny.build_tiny_components(seed=0)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def test_linear_and_conv_loras_equal_the_explicit_low_rank_path(comps):
    lin = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    conv = "down_blocks.0.resnets.0.conv1"
    r = 4
    lw, cw = comps.unet.get_submodule(lin), comps.unet.get_submodule(conv)
    sd = {
        f"lora_unet_{lin.replace('.', '_')}.lora_down.weight": torch.randn(
            r, lw.in_features, generator=_g(1)
        ),
        f"lora_unet_{lin.replace('.', '_')}.lora_up.weight": torch.randn(lw.out_features, r, generator=_g(2)),
        f"lora_unet_{lin.replace('.', '_')}.alpha": torch.tensor(2.0),
        f"lora_unet_{conv.replace('.', '_')}.lora_down.weight": torch.randn(
            r, cw.in_channels, 3, 3, generator=_g(3)
        ),
        f"lora_unet_{conv.replace('.', '_')}.lora_up.weight": torch.randn(
            cw.out_channels, r, 1, 1, generator=_g(4)
        ),
    }
    before = {k: v.clone() for k, v in comps.unet.state_dict().items()}
    fused = fuse_lora(comps, sd, strength=0.5)
    x = torch.randn(3, lw.in_features, generator=_g(5))
    scale = 0.5 * 2.0 / r
    down, up = (
        sd[f"lora_unet_{lin.replace('.', '_')}.lora_down.weight"],
        sd[f"lora_unet_{lin.replace('.', '_')}.lora_up.weight"],
    )
    torch.testing.assert_close(
        fused.unet.get_submodule(lin)(x), lw(x) + scale * (x @ down.T) @ up.T, atol=1e-4, rtol=1e-4
    )
    xc = torch.randn(1, cw.in_channels, 8, 8, generator=_g(6))
    cd, cu = (
        sd[f"lora_unet_{conv.replace('.', '_')}.lora_down.weight"],
        sd[f"lora_unet_{conv.replace('.', '_')}.lora_up.weight"],
    )
    explicit = cw(xc) + 0.5 * 1.0 * F.conv2d(F.conv2d(xc, cd, padding=1), cu)  # no alpha: alpha = rank
    torch.testing.assert_close(fused.unet.get_submodule(conv)(xc), explicit, atol=1e-4, rtol=1e-4)
    after = comps.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the shared model is untouched
    assert fused.vae is comps.vae and fused.text_encoder is comps.text_encoder


@torch.no_grad()
def test_peft_format_and_text_encoder_keys(comps):
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    te = "encoder.layers.0.self_attn.q_proj"
    layer, te_layer = (
        comps.unet.get_submodule(name),
        comps.text_encoder.get_submodule(
            te if not hasattr(comps.text_encoder, "text_model") else "text_model." + te
        ),
    )
    sd = {
        f"unet.{name}.lora_A.weight": torch.randn(2, layer.in_features, generator=_g(1)),
        f"unet.{name}.lora_B.weight": torch.randn(layer.out_features, 2, generator=_g(2)),
        f"lora_te_text_model_{te.replace('.', '_')}.lora_down.weight": torch.randn(
            2, te_layer.in_features, generator=_g(3)
        ),
        f"lora_te_text_model_{te.replace('.', '_')}.lora_up.weight": torch.randn(
            te_layer.out_features, 2, generator=_g(4)
        ),
    }
    fused = fuse_lora(comps, sd)
    delta = sd[f"unet.{name}.lora_B.weight"] @ sd[f"unet.{name}.lora_A.weight"]
    torch.testing.assert_close(fused.unet.get_submodule(name).weight, layer.weight + delta)
    assert not torch.equal(
        fused.text_encoder.state_dict()[
            next(k for k in fused.text_encoder.state_dict() if k.endswith("layers.0.self_attn.q_proj.weight"))
        ],
        te_layer.weight,
    )


def test_lora_for_another_architecture_is_refused(comps):
    sd = {
        "lora_unet_input_blocks_1_1_proj_in.lora_down.weight": torch.zeros(2, 4),
        "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": torch.zeros(4, 2),
    }
    with pytest.raises(WeightsFormatError, match="does not fit"):
        fuse_lora(comps, sd)
    with pytest.raises(WeightsFormatError, match="unrecognised"):
        fuse_lora(comps, {"something.weight": torch.zeros(1)})
