"""Shared loaders: diffusers folders, original-layout single files, safe pickles, real-size architectures."""

from __future__ import annotations

import pickle

import pytest
import torch
from papernodes.models.common import ldm_layout, loading, tiny
from papernodes.models.common.errors import WeightsFormatError


@pytest.fixture(scope="module")
def ip2p_tiny():
    return tiny.build_tiny_components(seed=0, in_channels=8)


def _outputs(comps):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 16, 16, generator=g)
    img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    ids = comps.tokenizer(
        ["a red star on a blue background"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    ctx = comps.text_encoder(ids).last_hidden_state
    unet = comps.unet(x, 500, ctx).sample
    vae = comps.vae.decode(comps.vae.encode(img).latent_dist.mode()).sample
    return ctx, unet, vae


@torch.no_grad()
@pytest.mark.parametrize("fmt", ["diffusers", "single_safetensors", "single_ckpt"])
def test_round_trip_gives_identical_outputs(ip2p_tiny, tmp_path, fmt):
    if fmt == "diffusers":
        path = tiny.save_diffusers_folder(ip2p_tiny, tmp_path / "folder")
    elif fmt == "single_safetensors":
        path = tiny.save_single_file(ip2p_tiny, tmp_path / "model.safetensors")
    else:
        path = tmp_path / "model.ckpt"
        torch.save({"state_dict": tiny.ldm_state_dict(ip2p_tiny)}, path)
    loaded = loading.load_components(path)
    assert loaded.unet.config.in_channels == 8
    for a, b in zip(_outputs(ip2p_tiny), _outputs(loaded)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_single_file_uses_original_key_layout(ip2p_tiny):
    keys = set(tiny.ldm_state_dict(ip2p_tiny))
    for expected in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.output_blocks.1.1.conv.weight",  # upsampler after a plain block
        "model.diffusion_model.out.2.weight",
        "model.diffusion_model.time_embed.0.weight",
        "first_stage_model.encoder.down.0.block.0.conv1.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "first_stage_model.quant_conv.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    ):
        assert expected in keys, expected
    assert tiny.ldm_state_dict(ip2p_tiny)["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4


def test_real_sd15_architecture_is_inferred_from_original_keys():
    """Full-size SD1.5 / IP2P shapes (on the meta device: no memory) map to the shipped configs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    for in_channels in (4, 8):
        ref = {**ldm_layout.shipped_config("sd15_unet"), "in_channels": in_channels}
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(ref)
            vae = AutoencoderKL.from_config(ldm_layout.shipped_config("sd_vae"))
            clip = CLIPTextModel(CLIPTextConfig(**ldm_layout.shipped_config("clip_l_text")))
        ldm = ldm_layout.unet_to_ldm(unet.state_dict(), dict(unet.config))
        inferred = ldm_layout.infer_unet_config(ldm)
        for key in (
            "in_channels",
            "block_out_channels",
            "layers_per_block",
            "down_block_types",
            "up_block_types",
            "cross_attention_dim",
            "attention_head_dim",
        ):
            assert (
                list(inferred[key]) == list(ref[key])
                if isinstance(ref[key], list)
                else inferred[key] == ref[key]
            )
        assert inferred["use_linear_projection"] is False
        # LDM names of a real SD1.5 file (v1-5-pruned) that our writer must produce:
        assert "model.diffusion_model.output_blocks.2.1.conv.weight" in ldm
        assert "model.diffusion_model.output_blocks.5.2.conv.weight" in ldm
        assert "model.diffusion_model.input_blocks.3.0.op.weight" in ldm
        assert len(ldm) == 686
        vae_ldm = ldm_layout.vae_to_ldm(vae.state_dict(), dict(vae.config))
        assert ldm_layout.infer_vae_config(vae_ldm)["block_out_channels"] == [128, 256, 512, 512]
        assert len(vae_ldm) == 248
        clip_cfg = ldm_layout.infer_clip_config(ldm_layout.clip_to_ldm(clip.state_dict()))
        assert (clip_cfg["num_hidden_layers"], clip_cfg["hidden_size"]) == (12, 768)


def test_unsafe_pickle_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": Exploit()}}, f)
    with pytest.raises(WeightsFormatError, match="weights_only"):
        loading.load_state_dict(path)


def test_incomplete_checkpoint_names_missing_part(ip2p_tiny, tmp_path):
    from safetensors.torch import save_file

    sd = {k: v for k, v in tiny.ldm_state_dict(ip2p_tiny).items() if not k.startswith("first_stage_model.")}
    save_file(sd, str(tmp_path / "novae.safetensors"))
    with pytest.raises(WeightsFormatError, match="no vae tensors"):
        loading.load_single_file(tmp_path / "novae.safetensors")


def test_unknown_suffix_is_rejected(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"0")
    with pytest.raises(WeightsFormatError, match="unsupported"):
        loading.load_state_dict(tmp_path / "model.gguf")


def test_loader_cache_returns_same_objects(ip2p_tiny, tmp_path):
    path = tiny.save_single_file(ip2p_tiny, tmp_path / "cached.safetensors")
    assert loading.load_components(path) is loading.load_components(path)


def test_folder_tokenizer_keeps_its_special_tokens(tmp_path):
    """SD2.x tokenizer folders pad with "!" (id 0): a folder's special tokens must be honoured."""
    import json
    import shutil

    for name in ("vocab.json", "merges.txt"):
        shutil.copy(loading.TOKENIZER_DIR / name, tmp_path / name)
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": "!", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                    "unk_token": "<|endoftext|>"})
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    sd2 = loading.load_tokenizer(tmp_path)(["a cat"], padding="max_length", max_length=77).input_ids[0]
    sd1 = loading.load_tokenizer()(["a cat"], padding="max_length", max_length=77).input_ids[0]
    assert sd2[:4] == sd1[:4] == [49406, 320, 2368, 49407]
    assert sd2[4] == 0 and sd1[4] == 49407
