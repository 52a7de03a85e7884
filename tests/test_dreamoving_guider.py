"""DreaMoving Content Guider: IP-Adapter loading, CLIP vision, and the multi-context attention hook's math."""

from __future__ import annotations

import copy

import pytest
import torch
from papernodes.kernels.processor import attention_hooks
from papernodes.models.common import image_prompt as ipa
from papernodes.models.common import tiny
from papernodes.models.common.errors import WeightsFormatError, WeightsNotFoundError
from papernodes.models.dreamoving.content_guider import ContentGuider, ImagePrompt

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def unet():
    return tiny.build_tiny_components(seed=0).unet


@pytest.fixture(scope="module")
def clip_vision():
    return ipa.build_tiny_clip_vision(seed=3)


@pytest.fixture(scope="module")
def adapters(unet, clip_vision):
    return {
        "plain": ipa.build_tiny_ip_adapter(unet, "plain", clip_vision, seed=1),
        "plus": ipa.build_tiny_ip_adapter(unet, "plus", clip_vision, seed=2, depth=4),
    }


def _images(n, h=40, w=52, seed=0):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def _inputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.randn(batch, 7, 48, generator=g)


def _prompts(adapters, clip_vision, face_scale, clothes_scale):
    face = ImagePrompt.from_images(adapters["plain"], clip_vision, _images(2, seed=1), face_scale)
    clothes = ImagePrompt.from_images(adapters["plus"], clip_vision, _images(1, seed=2), clothes_scale)
    return face, clothes


@torch.no_grad()
def test_zero_scales_give_exactly_the_text_only_unet(unet, adapters, clip_vision):
    x, ctx = _inputs(8)
    face, clothes = _prompts(adapters, clip_vision, 0.0, 0.0)
    with attention_hooks(unet, []):
        text_only = unet(x, 10, ctx).sample
    with attention_hooks(unet, [ContentGuider(face, clothes).hook(unet, cfg=True)]):
        guided = unet(x, 10, ctx).sample
    assert torch.equal(guided, text_only)
    torch.testing.assert_close(guided, unet(x, 10, ctx).sample, atol=1e-5, rtol=1e-5)  # diffusers' own
    # α_f = 0 drops the face context exactly: same result as a clothes-only guider.
    face.scale, clothes.scale = 0.0, 0.8
    with attention_hooks(unet, [ContentGuider(face, clothes).hook(unet, cfg=True)]):
        both = unet(x, 10, ctx).sample
    with attention_hooks(unet, [ContentGuider(clothes=clothes).hook(unet, cfg=True)]):
        clothes_only = unet(x, 10, ctx).sample
    assert torch.equal(both, clothes_only) and not torch.allclose(both, text_only, atol=1e-3)


def _heads(t, h):
    b, n, c = t.shape
    return t.view(b, n, h, c // h).transpose(1, 2)


def _attn64(q, k, v, scale):
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


@torch.no_grad()
def test_layer_equals_float64_text_plus_face_plus_clothes(unet, adapters, clip_vision):
    """CFG batch of 2 videos x 3 frames (12 rows): face tokens per video, clothes shared by both videos."""
    x, ctx = _inputs(12, seed=4)
    face, clothes = _prompts(adapters, clip_vision, 0.6, 0.9)
    layer = "up_blocks.1.attentions.1.transformer_blocks.0.attn2.processor"
    attn = unet.get_submodule(layer[: -len(".processor")])
    seen = {}

    def grab(module, args, kwargs, output):
        seen.update(h=args[0], ctx=kwargs["encoder_hidden_states"], out=output)

    handle = attn.register_forward_hook(grab, with_kwargs=True)
    try:
        with attention_hooks(unet, [ContentGuider(face, clothes).hook(unet, cfg=True)]):
            unet(x, 10, ctx)
    finally:
        handle.remove()

    def rows(prompt):  # [uncond; cond] halves, each [video][frame], written out independently of the hook
        out = []
        for tokens in (prompt.uncond_tokens, prompt.tokens):
            for video in range(2):
                out += [tokens[video if tokens.shape[0] == 2 else 0]] * 3
        return torch.stack(out).double()

    d = lambda t: t.double()  # noqa: E731
    h, heads, scale = d(seen["h"]), attn.heads, attn.scale
    q = _heads(h @ d(attn.to_q.weight).T, heads)
    total = _attn64(
        q,
        _heads(d(seen["ctx"]) @ d(attn.to_k.weight).T, heads),
        _heads(d(seen["ctx"]) @ d(attn.to_v.weight).T, heads),
        scale,
    )
    for prompt in (face, clothes):
        j = prompt.adapter.bind(unet)[layer]
        tok = rows(prompt)
        k = _heads(tok @ d(prompt.adapter.to_k_ip[j].weight).T, heads)
        v = _heads(tok @ d(prompt.adapter.to_v_ip[j].weight).T, heads)
        total = total + prompt.scale * _attn64(q, k, v, scale)
    merged = total.transpose(1, 2).reshape(h.shape[0], h.shape[1], -1)
    expected = merged @ d(attn.to_out[0].weight).T + d(attn.to_out[0].bias)
    torch.testing.assert_close(seen["out"].double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["plain", "plus"])
@torch.no_grad()
def test_unet_equals_diffusers_ip_adapter_path(unet, adapters, clip_vision, variant):
    adapter = adapters[variant]
    x, ctx = _inputs(2, seed=5)
    emb = ipa.encode_images(clip_vision, _images(2, seed=6), adapter).cond
    with attention_hooks(
        unet, [ContentGuider(face=ImagePrompt.from_embeds(adapter, emb, scale=0.7)).hook(unet)]
    ):
        ours = unet(x, 10, ctx).sample

    ref = copy.deepcopy(unet)
    ref._load_ip_adapter_weights(_nested(adapter), low_cpu_mem_usage=False)
    for proc in ref.attn_processors.values():
        if hasattr(proc, "scale") and isinstance(proc.scale, list):
            proc.scale = [0.7]
    theirs = ref(x, 10, ctx, added_cond_kwargs={"image_embeds": [emb[:, None]]}).sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, unet(x, 10, ctx).sample, atol=1e-3)  # the image prompt does act


def _nested(adapter):
    sd = adapter.original_state_dict()
    return {
        top: {k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith(top + ".")}
        for top in ("image_proj", "ip_adapter")
    }


@torch.no_grad()
def test_motion_unet_video_batch_equals_diffusers_two_ip_adapters(unet, adapters, clip_vision):
    """Face (plain) + clothes (plus) on an AnimateDiff-style U-Net, 2 videos x 3 frames: the guider equals
    diffusers' multi-IP-Adapter path (per-video embeddings repeated per frame); motion layers are skipped."""
    from diffusers import MotionAdapter, UNetMotionModel

    motion = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=1,
        motion_norm_num_groups=32,
        motion_num_attention_heads=4,
        motion_max_seq_length=8,
    )
    video_unet = UNetMotionModel.from_unet2d(copy.deepcopy(unet), motion).eval()
    assert ipa.cross_attention_layers(video_unet) == ipa.cross_attention_layers(unet)
    g = torch.Generator().manual_seed(13)
    x, ctx = torch.randn(2, 4, 3, 8, 8, generator=g), torch.randn(2, 7, 48, generator=g)
    ctx = ctx.repeat_interleave(3, dim=0)  # text per frame, as diffusers' AnimateDiff pipeline passes it
    e_face = ipa.encode_images(clip_vision, _images(2, seed=14), adapters["plain"]).cond
    e_clothes = ipa.encode_images(clip_vision, _images(2, seed=15), adapters["plus"]).cond
    face = ImagePrompt.from_embeds(adapters["plain"], e_face, scale=0.6)
    clothes = ImagePrompt.from_embeds(adapters["plus"], e_clothes, scale=0.9)
    with attention_hooks(video_unet, [ContentGuider(face, clothes).hook(video_unet)]):
        ours = video_unet(x, 10, ctx).sample
    plain_out = video_unet(x, 10, ctx).sample

    video_unet._load_ip_adapter_weights([_nested(adapters["plain"]), _nested(adapters["plus"])], False)
    for proc in video_unet.attn_processors.values():
        if isinstance(getattr(proc, "scale", None), list):
            proc.scale = [0.6, 0.9]
    theirs = video_unet(x, 10, ctx, added_cond_kwargs={"image_embeds": [e_face[:, None], e_clothes[:, None]]})
    torch.testing.assert_close(ours, theirs.sample, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, plain_out, atol=1e-3)


def test_variants_detected_and_bin_equals_safetensors(tmp_path, unet, adapters, clip_vision):
    built = {
        "ip-adapter_sd15": adapters["plain"],
        "ip-adapter-plus_sd15": adapters["plus"],
        "ip-adapter-plus-face_sd15": ipa.build_tiny_ip_adapter(unet, "plus", clip_vision, seed=7),
        "ip-adapter-full-face_sd15": ipa.build_tiny_ip_adapter(unet, "full-face", clip_vision, seed=8),
    }
    expected = {
        "ip-adapter_sd15": ("plain", 4),
        "ip-adapter-plus_sd15": ("plus", 16),
        "ip-adapter-plus-face_sd15": ("plus-face", 16),
        "ip-adapter-full-face_sd15": ("full-face", 17),  # one token per CLIP token: 4x4 patches + CLS
    }
    hidden = torch.randn(1, 17, 32, generator=torch.Generator().manual_seed(9))
    for stem, adapter in built.items():
        ipa.save_ip_adapter(adapter, tmp_path / f"{stem}.safetensors")
        ipa.save_ip_adapter(adapter, tmp_path / f"{stem}.bin")
        a = ipa.load_ip_adapter(tmp_path / f"{stem}.safetensors")
        b = ipa.load_ip_adapter(tmp_path / f"{stem}.bin")
        assert a.variant == b.variant == expected[stem][0]
        assert a.variant == ("plus-face" if "plus-face" in stem else adapter.variant)
        assert a.layer_ids == b.layer_ids == [1, 3, 5, 7]  # the tiny U-Net's 4 cross-attention layers
        sa, sb, so = a.state_dict(), b.state_dict(), adapter.state_dict()
        assert sa.keys() == sb.keys() == so.keys()
        assert all(torch.equal(sa[k], sb[k]) and torch.equal(sa[k], so[k]) for k in sa)
        feats = torch.randn(1, 24) if a.variant == "plain" else hidden
        tokens = a.project(feats)
        assert tokens.shape == (1, expected[stem][1], 48)
        # a and b are distinct instances: equal weights (above), outputs within float noise (CPU kernels
        # are not bit-stable across instances; see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL)
        torch.testing.assert_close(tokens, b.project(feats), rtol=1e-5, atol=1e-5)
        assert a.bind(unet) == {n: j for j, n in enumerate(n for n in unet.attn_processors if "attn2" in n)}


def test_bad_files_give_clear_errors(tmp_path, unet, adapters):
    with pytest.raises(WeightsNotFoundError, match="missing_sd15.safetensors"):
        ipa.load_ip_adapter(tmp_path / "missing_sd15.safetensors")
    from safetensors.torch import save_file

    sd = adapters["plain"].original_state_dict()
    short = {k: v for k, v in sd.items() if not k.startswith("ip_adapter.7.")}
    save_file(short, str(tmp_path / "short.safetensors"))
    adapter = ipa.load_ip_adapter(tmp_path / "short.safetensors")
    with pytest.raises(
        WeightsFormatError, match=r"short\.safetensors.*3 cross-attention layers, the U-Net has 4"
    ):
        adapter.bind(unet)
    prompt = ImagePrompt.from_embeds(adapter, torch.zeros(1, 24))
    with pytest.raises(WeightsFormatError, match="short.safetensors"):
        ContentGuider(face=prompt).hook(unet)
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsFormatError, match="other.safetensors.*not an IP-Adapter"):
        ipa.load_ip_adapter(tmp_path / "other.safetensors")
    faceid = {"image_proj.proj.0.weight": torch.zeros(4, 2), "image_proj.norm.weight": torch.zeros(2)}
    faceid["ip_adapter.1.to_k_ip.weight"], faceid["ip_adapter.1.to_v_ip.weight"] = (
        torch.zeros(2, 2),
        torch.ones(2, 2),
    )
    save_file(faceid, str(tmp_path / "faceid.safetensors"))
    with pytest.raises(WeightsFormatError, match="FaceID"):
        ipa.load_ip_adapter(tmp_path / "faceid.safetensors")


@torch.no_grad()
def test_clip_vision_single_file_equals_folder(tmp_path, clip_vision):
    ipa.save_clip_vision(clip_vision, tmp_path / "folder")
    ipa.save_clip_vision(clip_vision, tmp_path / "tiny_vision.safetensors", single_file=True)
    a = ipa.load_clip_vision(tmp_path / "folder")
    b = ipa.load_clip_vision(tmp_path / "tiny_vision.safetensors")
    for key, value in ipa.TINY_CLIP_VISION.items():
        assert getattr(b.config, key) == getattr(a.config, key) == value, key
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    oa = a(pixel_values=pixels, output_hidden_states=True)
    ob = b(pixel_values=pixels, output_hidden_states=True)
    # distinct instances: outputs within float noise (see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL)
    torch.testing.assert_close(oa.image_embeds, ob.image_embeds, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(oa.hidden_states[-2], ob.hidden_states[-2], rtol=1e-5, atol=1e-5)
    with pytest.raises(WeightsNotFoundError, match="nothing.safetensors"):
        ipa.load_clip_vision(tmp_path / "nothing.safetensors")


def test_known_vision_widths_infer_published_configs():
    """ViT-H/14 (IP-Adapter SD1.5's encoder): 1280 wide, 16 heads of 80, exact GELU, 224 px, 14 px patches."""
    sd = {
        "vision_model.embeddings.patch_embedding.weight": torch.empty(1280, 3, 14, 14),
        "vision_model.embeddings.position_embedding.weight": torch.empty(257, 1280),
        "vision_model.encoder.layers.0.mlp.fc1.weight": torch.empty(5120, 1280),
        "vision_model.encoder.layers.31.mlp.fc1.weight": torch.empty(5120, 1280),
        "visual_projection.weight": torch.empty(1024, 1280),
    }
    cfg = ipa.infer_clip_vision_config(sd)
    assert (cfg["num_attention_heads"], cfg["hidden_act"], cfg["image_size"], cfg["patch_size"]) == (
        16,
        "gelu",
        224,
        14,
    )
    assert (cfg["num_hidden_layers"], cfg["projection_dim"], cfg["intermediate_size"]) == (32, 1024, 5120)


@pytest.mark.parametrize("hw", [(40, 52), (64, 32), (32, 45)])
def test_preprocess_matches_clip_image_processor(hw):
    from transformers import CLIPImageProcessor

    image = _images(1, *hw, seed=11)
    proc = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_rescale=False
    )
    ref = proc(images=[image[0].permute(2, 0, 1)], return_tensors="pt").pixel_values
    ours = ipa.preprocess_clip_images(image, size=32)
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    torch.testing.assert_close(ours, ref.float(), atol=1e-5, rtol=0)


@torch.no_grad()
def test_unconditional_features_follow_ip_adapter(clip_vision, adapters):
    images = _images(2, seed=12)
    plain = ipa.encode_images(clip_vision, images, adapters["plain"])
    assert torch.equal(plain.uncond, torch.zeros_like(plain.cond))
    plus = ipa.encode_images(clip_vision, images, adapters["plus"])
    zero_pixels = torch.zeros(1, 3, 32, 32)
    expected = clip_vision(pixel_values=zero_pixels, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(plus.uncond, expected.expand(2, -1, -1), atol=1e-6, rtol=0)
    assert plus.cond.shape == (2, 17, 32) and plain.cond.shape == (2, 24)
