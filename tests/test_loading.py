"""Shared loaders: diffusers folders, original-layout single files, safe pickles, real-size architectures."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from papernodes.models.common import ldm_layout, loading, saving, tiny
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
    for name in ("unet", "vae", "text_encoder"):  # the weights round-trip bit for bit ...
        sa, sb = getattr(ip2p_tiny, name).state_dict(), getattr(loaded, name).state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    # ... but two distinct module instances are not bit-stable on the CPU (the kernel torch picks can
    # depend on e.g. requires_grad; see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL): float noise only.
    for a, b in zip(_outputs(ip2p_tiny), _outputs(loaded)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


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


def test_loader_reuses_a_held_model_and_keeps_none_alive(ip2p_tiny, tmp_path):
    """A model someone holds (ComfyUI's cached loader output) is handed out again; one nobody holds is
    freed: the cache never keeps a model in RAM that the host's caches dropped."""
    import gc
    import weakref

    path = tiny.save_single_file(ip2p_tiny, tmp_path / "cached.safetensors")
    held = loading.load_components(path)
    assert loading.load_components(path) is held
    gone = weakref.ref(held.unet)
    del held
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loaders_build_the_requested_precision(ip2p_tiny, tmp_path, dtype):
    """Half precision is read straight from the file: every tensor equals the float32 load cast to it."""
    path = tiny.save_single_file(ip2p_tiny, tmp_path / "half.safetensors")
    folder = saving.save_diffusers_folder(ip2p_tiny, tmp_path / "half_folder")
    full = loading.load_single_file(path)
    halves = [loading.load_components(p, dtype) for p in (path, folder)] + [
        loading.load_single_file(path, dtype)
    ]
    for comps in halves:
        assert comps is not full
        for module, ref in zip(comps.modules(), full.modules(), strict=True):
            got, want = module.state_dict(), ref.state_dict()
            assert got.keys() == want.keys()
            for k, v in got.items():
                assert v.dtype == (dtype if want[k].is_floating_point() else want[k].dtype), k
                assert torch.equal(v, want[k].to(v.dtype)), k  # the same rounding of the same numbers


def test_folder_tokenizer_keeps_its_special_tokens(tmp_path):
    """SD2.x tokenizer folders pad with "!" (id 0): a folder's special tokens must be honoured."""
    import json
    import shutil

    for name in ("vocab.json", "merges.txt"):
        shutil.copy(loading.TOKENIZER_DIR / name, tmp_path / name)
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "pad_token": "!",
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }
        )
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    sd2 = loading.load_tokenizer(tmp_path)(["a cat"], padding="max_length", max_length=77).input_ids[0]
    sd1 = loading.load_tokenizer()(["a cat"], padding="max_length", max_length=77).input_ids[0]
    assert sd2[:4] == sd1[:4] == [49406, 320, 2368, 49407]
    assert sd2[4] == 0 and sd1[4] == 49407


# ----------------------------------------------------------------------------------------------------
# Loading without random initialisation: modules are built with empty (meta) parameters and take the
# file's tensors; every tensor ends up real, nothing is drawn at random, a missing tensor raises.
# ----------------------------------------------------------------------------------------------------

# In-place and factory random ops: what nn.init and `torch.randn(...)` parameters run.
_RANDOM_OPS = {"uniform_", "normal_", "normal", "randn", "rand", "randint", "random_", "bernoulli_",
               "exponential_", "log_normal_", "cauchy_", "geometric_", "randperm"}  # fmt: skip


class _RandomInitCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Elements written by random ops on real (non-meta) tensors, i.e. random initialisation work."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in _RANDOM_OPS and torch.is_tensor(out) and not out.is_meta:
            self.elements += out.numel()
        return out


def _random_elements(fn):
    with _RandomInitCounter() as counter:
        result = fn()
    return result, counter.elements


def _assert_materialised(module: torch.nn.Module) -> None:
    assert not any(t.is_meta for t in module.state_dict().values())
    assert not any(b.is_meta for _, b in module.named_buffers())
    assert not any(p.is_meta for p in module.parameters())
    assert loading.meta_tensors(module) == []


def _assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_init_counter_sees_ordinary_construction():
    """Control for the tests below: building a module the ordinary way is counted."""
    from diffusers import UNet2DConditionModel

    unet, n = _random_elements(lambda: UNet2DConditionModel(**tiny.TINY_UNET))
    weights = sum(p.numel() for name, p in unet.named_parameters() if name.endswith("weight") and p.ndim > 1)
    assert n >= weights  # every matrix / conv kernel was drawn at random


@torch.no_grad()
def test_single_file_and_folder_load_without_random_init(ip2p_tiny, tmp_path):
    single = tiny.save_single_file(ip2p_tiny, tmp_path / "model.safetensors")
    folder = tiny.save_diffusers_folder(ip2p_tiny, tmp_path / "folder")
    for path, loader in ((single, loading.load_single_file), (folder, loading.load_diffusers_folder)):
        loaded, n = _random_elements(lambda: loader(path))  # noqa: B023 (called right here)
        assert n == 0, path.name
        for name in ("unet", "vae", "text_encoder"):
            _assert_materialised(getattr(loaded, name))
            _assert_same_tensors(getattr(ip2p_tiny, name), getattr(loaded, name))
        # CLIP's position_ids is a non-persistent buffer no file holds: computed, not left empty
        buffers = dict(loaded.text_encoder.named_buffers())
        position_ids = next(v for k, v in buffers.items() if k.endswith("position_ids"))
        assert torch.equal(position_ids, torch.arange(77)[None])


@pytest.mark.parametrize(
    "gone,message",
    [
        (
            "model.diffusion_model.out.2.weight",
            r"U-Net tensor 'model\.diffusion_model\.out\.2\.weight' is missing",
        ),
        (
            "model.diffusion_model.out.0.weight",
            r"U-Net weights do not match.*missing \['conv_norm_out\.weight'\]",
        ),
        (
            "first_stage_model.encoder.down.2.downsample.conv.bias",
            r"VAE weights do not match.*missing \['encoder\.down_blocks\.2\.downsamplers\.0\.conv\.bias'\]",
        ),
        (
            "cond_stage_model.transformer.text_model.final_layer_norm.weight",
            r"text encoder weights do not match.*missing \['(text_model\.)?final_layer_norm\.weight'\]",
        ),
    ],
)
def test_missing_tensor_in_single_file_is_named(ip2p_tiny, gone, message):
    """A tensor the file lacks is named (never left empty or random), whether the architecture inference
    or the weights need it."""
    broken = {k: v for k, v in tiny.ldm_state_dict(ip2p_tiny).items() if k != gone}
    with pytest.raises(WeightsFormatError, match="broken.safetensors: " + message):
        loading.components_from_ldm(broken, source="broken.safetensors")


@torch.no_grad()
def test_controlnet_loads_without_random_init(tmp_path):
    from diffusers import ControlNetModel, UNet2DConditionModel
    from papernodes.models.common import controlnet as cnio

    torch.manual_seed(0)
    cn = ControlNetModel.from_unet(UNet2DConditionModel(**tiny.TINY_UNET))
    tiny._perturb(cn, torch.Generator().manual_seed(1))
    cnio.save_controlnet_single_file(cn, tmp_path / "cn.safetensors")
    cn.save_pretrained(str(tmp_path / "cn_folder"), safe_serialization=True)
    for path in (tmp_path / "cn.safetensors", tmp_path / "cn_folder"):
        loaded, n = _random_elements(lambda: cnio.load_controlnet(path))  # noqa: B023
        assert n == 0, path.name
        _assert_materialised(loaded)
        _assert_same_tensors(cn, loaded)


@torch.no_grad()
def test_image_prompt_modules_load_without_random_init(ip2p_tiny, tmp_path):
    from papernodes.models.common import image_prompt as ipa

    clip = ipa.build_tiny_clip_vision(seed=0)
    ipa.save_clip_vision(clip, tmp_path / "vision.safetensors", single_file=True)
    loaded, n = _random_elements(lambda: ipa.load_clip_vision(tmp_path / "vision.safetensors"))
    # CLIP vision creates its class embedding with torch.randn before it moves to the meta device:
    assert n <= clip.config.hidden_size
    _assert_materialised(loaded)
    _assert_same_tensors(clip, loaded)
    position_ids = next(v for k, v in loaded.named_buffers() if k.endswith("position_ids"))
    assert torch.equal(position_ids, torch.arange(position_ids.shape[-1])[None])
    broken = {k: v for k, v in clip.state_dict().items() if not k.endswith("layers.1.mlp.fc2.weight")}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in broken.items()}, str(tmp_path / "broken.safetensors"))
    with pytest.raises(WeightsFormatError, match=r"broken\.safetensors: CLIP vision.*layers\.1\.mlp\.fc2"):
        ipa.load_clip_vision(tmp_path / "broken.safetensors")

    unet = ip2p_tiny.unet
    for variant in ("plain", "plus", "full-face"):
        adapter = ipa.build_tiny_ip_adapter(unet, variant, clip_vision=clip, seed=3)
        ipa.save_ip_adapter(adapter, tmp_path / f"ip-{variant}.safetensors")
        loaded, n = _random_elements(lambda: ipa.load_ip_adapter(tmp_path / f"ip-{variant}.safetensors"))  # noqa: B023
        latents = adapter.image_proj.latents.numel() if variant == "plus" else 0  # Resampler's torch.randn
        assert n == latents, variant
        _assert_materialised(loaded)
        _assert_same_tensors(adapter, loaded)
    sd = ipa.IPAdapter.original_state_dict(adapter)
    del sd["image_proj.proj.3.bias"]
    with pytest.raises(WeightsFormatError, match=r"ip\.safetensors.*missing \['image_proj\.proj\.3\.bias'\]"):
        ipa.ip_adapter_from_state_dict(sd, source="ip.safetensors")


@torch.no_grad()
@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_motion_modules_load_and_inflate_without_random_init(ip2p_tiny, tmp_path):
    from diffusers.models.unets.unet_motion_model import UNetMotionModel
    from papernodes.models.common import animatediff as motion

    unet = tiny.build_tiny_components(seed=0).unet
    adapter = motion.build_tiny_motion_adapter(seed=4, zero_out=False)
    motion.save_motion_adapter_original(adapter, tmp_path / "mm.safetensors")
    loaded, n = _random_elements(lambda: motion.load_motion_adapter(tmp_path / "mm.safetensors"))
    assert n == 0
    _assert_materialised(loaded)
    _assert_same_tensors(adapter, loaded)

    inflated, n = _random_elements(lambda: motion.inflate_unet(unet, loaded))
    assert n == 0
    _assert_materialised(inflated)
    reference = UNetMotionModel.from_unet2d(unet, loaded)  # diffusers' own (random init, then copies)
    _assert_same_tensors(reference, inflated)
    ours = {p.data_ptr() for p in inflated.parameters()}
    assert ours.isdisjoint(p.data_ptr() for m in (unet, loaded) for p in m.parameters())  # copies

    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "mm.safetensors"))
    gone = next(k for k in sd if k.endswith("attention_blocks.1.to_out.0.weight"))
    save_file({k: v for k, v in sd.items() if k != gone}, str(tmp_path / "mm_broken.safetensors"))
    with pytest.raises(
        WeightsFormatError, match=r"mm_broken\.safetensors.*missing \[.*attn2\.to_out\.0\.weight"
    ):
        motion.load_motion_adapter(tmp_path / "mm_broken.safetensors")


@torch.no_grad()
def test_video_controlnet_loads_without_random_init(tmp_path):
    from diffusers import ControlNetModel, UNet2DConditionModel
    from papernodes.models.dreamoving.video_controlnet import (
        MOTION_WEIGHTS,
        VideoControlNet,
        load_video_controlnet,
        save_video_controlnet,
    )

    torch.manual_seed(0)
    vcn = VideoControlNet.zero_init(ControlNetModel.from_unet(UNet2DConditionModel(**tiny.TINY_UNET)))
    tiny._perturb(vcn, torch.Generator().manual_seed(2))
    save_video_controlnet(vcn, tmp_path / "vcn")
    loaded, n = _random_elements(lambda: load_video_controlnet(tmp_path / "vcn"))
    assert n == 0
    _assert_materialised(loaded)
    _assert_same_tensors(vcn, loaded)
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "vcn" / MOTION_WEIGHTS))
    save_file(
        {k: v for k, v in sd.items() if k != "mid.proj_in.weight"}, str(tmp_path / "vcn" / MOTION_WEIGHTS)
    )
    with pytest.raises(
        WeightsFormatError, match=r"motion_blocks\.safetensors.*missing \['mid\.proj_in\.weight'\]"
    ):
        load_video_controlnet(tmp_path / "vcn")


def test_safetensors_are_read_into_memory_not_mapped(tmp_path):
    """Loaded tensors become parameters without a copy: they must not live in a mapping of the file (a file
    rewritten in place would crash the process on the next access to a cached model)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs /proc/self/maps")
    from safetensors.torch import save_file

    path = tmp_path / "mapped_or_not.safetensors"
    tensors = {"a": torch.randn(256, 256), "h": torch.randn(256, 256).half(), "i": torch.arange(77)[None]}
    save_file(tensors, str(path), metadata={"note": "kept"})
    for dtype in (None, torch.float32):
        sd = loading.load_state_dict(path, dtype)
        assert path.name not in maps.read_text()
        assert sd.metadata == {"note": "kept"}
        assert torch.equal(sd["a"], tensors["a"]) and torch.equal(sd["i"], tensors["i"])
        assert sd["h"].dtype == (dtype or torch.float16) and torch.equal(
            sd["h"], tensors["h"].to(sd["h"].dtype)
        )


# ---- the text encoder of a half-precision file: kept in half precision, computed in float32 ----


def test_a_half_precision_files_text_encoder_is_kept_and_computes_exactly_in_float32(ip2p_tiny, tmp_path):
    """ComfyUI's choice on the CPU: CLIP weights stay float16 (not converted at load), the U-Net and VAE are
    float32; the embeddings equal those of the float32 conversion of the same weights bit for bit (the
    upcast is exact and the computation the same)."""
    from papernodes.models.common import saving, text

    path = saving.save_single_file(ip2p_tiny, tmp_path / "fp16.safetensors", torch.float16)
    comps = loading.load_single_file(path)
    assert {p.dtype for p in comps.text_encoder.parameters()} == {torch.float16}
    assert {p.dtype for m in (comps.unet, comps.vae) for p in m.parameters()} == {torch.float32}
    assert text.compute_dtype(comps.text_encoder) == torch.float32
    prompts = ["a red star", "two yellow circles on a striped background"]
    got = text.encode_prompts(comps, prompts, "cpu")
    stored = [p.clone() for p in comps.text_encoder.parameters()]
    reference = copy.deepcopy(comps.text_encoder).float()
    want = reference(text.tokenize_prompts(comps.tokenizer, prompts))[0]
    assert got.dtype == torch.float32 and torch.equal(got, want)
    # the stored weights are left as they were (float copies live only during the call)
    assert all(
        torch.equal(a, b) and a.dtype == torch.float16
        for a, b in zip(comps.text_encoder.parameters(), stored)
    )


def test_a_float32_files_text_encoder_and_explicit_half_precision_are_cast_as_asked(ip2p_tiny, tmp_path):
    from papernodes.models.common import saving, text

    fp32 = loading.load_single_file(saving.save_single_file(ip2p_tiny, tmp_path / "fp32.safetensors"))
    assert {p.dtype for p in fp32.text_encoder.parameters()} == {torch.float32}
    assert not hasattr(fp32.text_encoder, text.COMPUTE_DTYPE_ATTR)  # never downcast a float32 file
    half_file = saving.save_single_file(ip2p_tiny, tmp_path / "fp16.safetensors", torch.float16)
    half = loading.load_single_file(half_file, torch.float16)
    assert text.compute_dtype(half.text_encoder) == torch.float16  # fp16 asked: fp16 computation
    assert text.encode_prompts(half, ["a star"], "cpu").dtype == torch.float16
    kept = loading.load_single_file(half_file)
    loading.cast_module(kept.text_encoder, torch.bfloat16)  # an explicit cast takes over
    assert text.compute_dtype(kept.text_encoder) == torch.bfloat16
