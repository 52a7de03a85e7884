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


def _peft_file(comps, tmp_path, **config_kwargs):
    """A LoRA written by diffusers' own `save_lora_weights`, as its training scripts call it (the adapter's
    LoraConfig as `unet_lora_adapter_metadata`). Returns (path, U-Net with the live PEFT adapter)."""
    import copy

    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = copy.deepcopy(comps.unet)
    torch.manual_seed(0)
    # init_lora_weights=False: random A and B (the default zero B would make every delta zero)
    config = LoraConfig(
        target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False, **config_kwargs
    )
    unet.add_adapter(config)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path,
        unet_lora_layers=get_peft_model_state_dict(unet),
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
    )
    return tmp_path / "pytorch_lora_weights.safetensors", unet


@torch.no_grad()
@pytest.mark.parametrize(
    "config,alpha_of",
    [
        (dict(r=4, lora_alpha=1), lambda name: 1.0 / 4),
        (  # per-module patterns: to_k gets alpha 8, to_v rank 2 (with the global alpha 1)
            dict(r=4, lora_alpha=1, alpha_pattern={"to_k": 8}, rank_pattern={"to_v": 2}),
            lambda name: 8.0 / 4 if name.endswith("to_k") else 1.0 / 2 if name.endswith("to_v") else 1.0 / 4,
        ),
        (dict(r=4, lora_alpha=1, use_rslora=True), lambda name: 1.0 / 2),  # alpha / sqrt(rank)
    ],
    ids=["alpha", "patterns", "rslora"],
)
def test_peft_file_from_diffusers_is_fused_at_alpha_over_rank(comps, tmp_path, config, alpha_of):
    """diffusers keeps a PEFT LoRA's alpha only in the safetensors header: fused weights must equal
    base + (alpha / r) B A, computed here in float64, and PEFT's own merge."""
    import json

    from papernodes.models.common.loading import load_state_dict
    from peft.tuners.tuners_utils import BaseTunerLayer

    path, peft_unet = _peft_file(comps, tmp_path, **config)
    sd = load_state_dict(path)
    written = json.loads(sd.metadata["lora_adapter_metadata"])  # what diffusers 0.42 writes
    assert written["unet.r"] == 4 and written["unet.lora_alpha"] == 1
    assert all(k.startswith("unet.") and k.endswith(("lora_A.weight", "lora_B.weight")) for k in sd)
    fused = fuse_lora(comps, sd)

    names = sorted({k[len("unet.") : -len(".lora_A.weight")] for k in sd if k.endswith(".lora_A.weight")})
    assert len(names) == 4 * 2 * 4  # q, k, v, out x (attn1, attn2) x 4 transformer blocks (down, mid, 2 up)
    for name in names:
        a, b = sd[f"unet.{name}.lora_A.weight"].double(), sd[f"unet.{name}.lora_B.weight"].double()
        expected = comps.unet.get_submodule(name).weight.double() + alpha_of(name) * (b @ a)
        # float32 weights and a float32 delta: rounding of |w| <= ~1 only
        torch.testing.assert_close(
            fused.unet.get_submodule(name).weight.double(), expected, rtol=0, atol=2e-6
        )
    for module in peft_unet.modules():  # PEFT's own merge of the same adapter agrees
        if isinstance(module, BaseTunerLayer):
            module.merge()
    merged = {k.replace(".base_layer", ""): v for k, v in peft_unet.state_dict().items() if "lora_" not in k}
    for name in names:
        torch.testing.assert_close(
            fused.unet.get_submodule(name).weight, merged[f"{name}.weight"], rtol=0, atol=2e-6
        )
    # ... and the old reading (scale 1) would have been off by far more than the tolerance
    name = names[0]
    a, b = sd[f"unet.{name}.lora_A.weight"], sd[f"unet.{name}.lora_B.weight"]
    assert (b @ a).abs().max() * abs(1 - alpha_of(name)) > 1e-2


def test_peft_header_contradicting_the_tensors_is_refused(comps, tmp_path):
    import json

    from papernodes.models.common.loading import load_state_dict

    path, _ = _peft_file(comps, tmp_path, r=4, lora_alpha=1)
    sd = load_state_dict(path)
    config = json.loads(sd.metadata["lora_adapter_metadata"])
    with pytest.raises(WeightsFormatError, match="rank 4 in the tensors, 8 in the header"):
        fuse_lora(comps, sd, metadata={"lora_adapter_metadata": json.dumps({**config, "unet.r": 8})})
    with pytest.raises(WeightsFormatError, match="DoRA"):
        fuse_lora(
            comps, sd, metadata={"lora_adapter_metadata": json.dumps({**config, "unet.use_dora": True})}
        )


@torch.no_grad()
def test_kohya_file_keeps_its_alpha_tensors(comps, tmp_path):
    """kohya files carry `.alpha` tensors (and kohya's own ss_* header fields, which change nothing)."""
    from papernodes.models.common.loading import load_state_dict
    from safetensors.torch import save_file

    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v"
    layer, key, r = comps.unet.get_submodule(name), "lora_unet_" + name.replace(".", "_"), 8
    tensors = {
        f"{key}.lora_down.weight": torch.randn(r, layer.in_features, generator=_g(7)),
        f"{key}.lora_up.weight": torch.randn(layer.out_features, r, generator=_g(8)),
        f"{key}.alpha": torch.tensor(4.0),
    }
    save_file(
        tensors,
        str(tmp_path / "kohya.safetensors"),
        metadata={"ss_network_alpha": "4", "ss_network_dim": "8"},
    )
    fused = fuse_lora(comps, load_state_dict(tmp_path / "kohya.safetensors"))
    a, b = tensors[f"{key}.lora_down.weight"].double(), tensors[f"{key}.lora_up.weight"].double()
    expected = layer.weight.double() + 4.0 / r * (b @ a)
    torch.testing.assert_close(fused.unet.get_submodule(name).weight.double(), expected, rtol=0, atol=2e-6)
