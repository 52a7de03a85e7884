"""BiDiff's 2D branch on DeepFloyd IF stage I (the paper's prior), on a tiny IF folder in the real diffusers
layout (IF's U-Net blocks, a T5 encoder, a SentencePiece tokenizer, IF's scheduler config): the folder loads
and stage II is refused; prompts are encoded as IFPipeline does (</s>, padding masked); a fresh adapter is the
base exactly; cross-view attention follows IF's attention modules; the encoder ControlNet is the base's own
encoder; sampling, refinement and the trainer run in pixel space."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_bidiff import CAPTIONS, IF_UNET, forward_hooks, perturb, write_tiny_if_folder
from papernodes.models.bidiff import pipeline_sd as PSD
from papernodes.models.bidiff import train_bidiff_sd as T
from papernodes.models.bidiff.encoder_controlnet import EncoderControlNet
from papernodes.models.bidiff.if_base import T5PromptTokenizer, is_if_folder, load_if_folder
from papernodes.models.bidiff.multiview_sd import SDMultiViewAdapter, cross_view_layers
from papernodes.models.common.errors import InputError, WeightsFormatError

VIEWS, SIZE = 2, IF_UNET["sample_size"]


@pytest.fixture(scope="module")
def if_folder(tmp_path_factory):
    return write_tiny_if_folder(tmp_path_factory.mktemp("if") / "IF-I-tiny")


@pytest.fixture(scope="module")
def comps(if_folder):
    return load_if_folder(if_folder)


def _inputs(comps, b: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, VIEWS, 3, SIZE, SIZE, generator=g)
    text = comps.encode_text(CAPTIONS[:b], "cpu")
    control = torch.rand(b, VIEWS, 3, SIZE, SIZE, generator=g)
    return x, torch.tensor([10, 700])[:b], text, control


def test_the_folder_loads_as_if_and_stage_two_is_refused(if_folder, comps, tmp_path):
    from papernodes.models.common.tiny import build_tiny_components, save_diffusers_folder

    assert is_if_folder(if_folder) and comps.vae is None and comps.pixel_multiple == 4
    save_diffusers_folder(build_tiny_components(0), tmp_path / "sd")
    assert not is_if_folder(tmp_path / "sd")  # SD: a VAE and CLIP
    stage2 = tmp_path / "IF-II"
    (stage2 / "unet").mkdir(parents=True)
    (stage2 / "text_encoder").mkdir()
    (stage2 / "unet" / "config.json").write_text(json.dumps({**IF_UNET, "in_channels": 6}))
    (stage2 / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(WeightsFormatError, match="stage II/III"):
        load_if_folder(stage2)


def test_prompts_are_encoded_as_ifpipeline_does(if_folder, comps):
    tok = T5PromptTokenizer(if_folder / "tokenizer")
    ids, mask = tok(["  A Red Cube ", "a red cube", "cube " * 100])
    assert torch.equal(ids[0], ids[1])  # lower-cased and stripped
    n = int(mask[1].sum())
    assert ids[1, n - 1] == tok.eos_id and (ids[1, n:] == tok.pad_id).all() and mask[1, :n].all()
    assert ids.shape == (3, 77) and mask[2].all() and ids[2, -1] == tok.eos_id  # truncated, </s> kept
    # the padding is masked: the real tokens' states equal those of the sequence without any padding
    states = comps.encode_text(["a red cube"], "cpu")[0, :n]
    alone = comps.text_encoder(ids[1:2, :n])[0][0]
    torch.testing.assert_close(states, alone, atol=1e-5, rtol=1e-5)
    assert (
        comps.encode_text(["a red cube"], "cpu")[0, :n] - comps.text_encoder(ids[1:2])[0][0, :n]
    ).abs().max() > 1e-4


def test_a_fresh_if_adapter_is_the_base_exactly(comps):
    unet = comps.unet
    # the deeper down block only (blocks 1 and 2 are SimpleCrossAttn; 1 is the first of them)
    assert cross_view_layers(unet) == ["down_blocks.2.attentions.0"]
    adapter = SDMultiViewAdapter.from_unet(unet, VIEWS, SIZE)
    assert adapter.config.controlnet_kind == "encoder" and adapter.config.qkv_bias
    x, t, text, control = _inputs(comps)
    with torch.no_grad():
        flat = unet(
            x.flatten(0, 1),
            t.repeat_interleave(VIEWS),
            encoder_hidden_states=text.repeat_interleave(VIEWS, 0),
        )
        base = flat.sample[:, :3].reshape(x.shape)  # the noise channels of IF's 6
        assert torch.equal(adapter.predict(unet, x, t, text), base)
        assert torch.equal(adapter.predict(unet, x, t, text, control), base)
    assert forward_hooks(unet) == 0 and forward_hooks(adapter.controlnet) == 0


def test_cross_view_attention_on_if_attends_over_the_normalised_maps_of_all_views(comps):
    unet = comps.unet
    adapter = SDMultiViewAdapter.from_unet(unet, VIEWS, SIZE)
    xview = adapter.xview[0]
    torch.nn.init.normal_(xview.to_out.weight, std=0.3)
    attn = dict(unet.named_modules())["down_blocks.2.attentions.0"]
    maps = []
    # registered before `attached` adds the adapter's hook, so this one sees the base's output
    handle = attn.register_forward_hook(lambda m, a, kw, out: maps.append((a, kw, out)), with_kwargs=True)
    x, t, text, _ = _inputs(comps)
    with torch.no_grad():
        adapter.predict(unet, x, t, text)
    handle.remove()
    args, kwargs, own = maps[0]
    hidden = args[0]
    assert hidden.shape[0] == 2 * VIEWS
    n, c, h, w = hidden.shape
    with torch.no_grad():
        with adapter.attached(unet):
            hooked = attn(*args, **kwargs)  # the same module call with the adapter's cross-view attention
        # float64 reference: the module's group norm, then joint softmax attention over every view's tokens
        tokens = (
            attn.group_norm(hidden.reshape(n, c, h * w)).transpose(1, 2).double().reshape(2, VIEWS * h * w, c)
        )
        q, k, v = (
            tokens @ m.weight.double().T + m.bias.double() for m in (xview.to_q, xview.to_k, xview.to_v)
        )
        d = c // xview.heads
        heads = [torch.softmax(q[..., i:i + d] @ k[..., i:i + d].transpose(1, 2) / d**0.5, -1) @ v[..., i:i + d]
                 for i in range(0, c, d)]  # fmt: skip
        ref = torch.cat(heads, -1) @ xview.to_out.weight.double().T + xview.to_out.bias.double()
        ref = ref.reshape(n, h * w, c).transpose(1, 2).reshape(n, c, h, w)
    torch.testing.assert_close((hooked - own).double(), ref, atol=1e-5, rtol=1e-4)
    assert xview.to_q.bias.abs().max() > 0  # IF's biased projections were copied
    torch.testing.assert_close(xview.to_k.bias, attn.to_k.bias, atol=0, rtol=0)


def test_the_encoder_controlnet_is_the_bases_own_encoder(comps):
    unet = comps.unet
    net = EncoderControlNet.from_unet(unet)
    keys = net.encoder.state_dict().keys()
    assert not any(k.startswith(("up_blocks", "conv_out", "conv_norm_out")) for k in keys)  # no decoder kept
    assert {
        k for k in unet.state_dict() if not k.startswith(("up_blocks", "conv_out", "conv_norm_out"))
    } == set(keys)
    with torch.no_grad():  # identity skips: the residuals are the encoder's features themselves
        for conv in (*net.skips, net.middle):
            conv.weight.copy_(torch.eye(conv.weight.shape[0])[:, :, None, None])
    x, t, text, control = _inputs(comps, 1)
    x, control = x[0], control[0]
    steps = t.expand(VIEWS)
    text = text.expand(VIEWS, -1, -1)
    seen = []
    hooks = [unet.conv_in.register_forward_hook(lambda m, a, out: seen.append(out))]
    hooks += [b.register_forward_hook(lambda m, a, out: seen.extend(out[1])) for b in unet.down_blocks]
    hooks.append(unet.mid_block.register_forward_hook(lambda m, a, out: seen.append(out)))
    with torch.no_grad():
        unet(x, steps, encoder_hidden_states=text)
        for hook in hooks:
            hook.remove()
        skips, middle = net(x, steps, text, control)
    assert len(skips) == len(seen) - 1 == 6  # conv_in + (resnet + downsample) x 2 + resnet
    for mine, theirs in zip([*skips, middle], seen, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    perturb(net.condition, seed=2, scale=0.5)
    with torch.no_grad():
        moved, _ = net(x, steps, text, control)
    assert (moved[0] - skips[0]).abs().max() > 1e-3  # the condition enters after the input convolution
    assert forward_hooks(net) == 0


def _model(comps, seed: int = 0) -> PSD.SDBiDiff:
    torch.manual_seed(seed)
    model = PSD.SDBiDiff.fresh(comps.unet, VIEWS, SIZE, resolution=8, features=4, channels=(8, 16), emb=16,
                               render_samples=8)  # fmt: skip
    perturb(model, seed)
    return model.eval()


def test_if_sampling_is_seeded_in_pixel_space_and_the_file_round_trip_is_exact(comps, tmp_path):
    model = _model(comps)
    assert model.volume.config.in_channels == 3  # the 3D branch reads the noisy pixels
    a = model.generate(comps, "a red cube", seed=3, steps=2)
    assert torch.equal(a["views"], model.generate(comps, "a red cube", seed=3, steps=2)["views"])
    assert a["views"].shape == (VIEWS, 3, SIZE, SIZE) and a["views"].abs().max() <= 1
    assert not torch.equal(model.generate(comps, "a red cube", seed=3, steps=2, consistency_scale=1.0)["views"],
                           a["views"])  # fmt: skip
    from papernodes.models.bidiff.grid_prior import GridPrior, GridPriorConfig, GridUNet

    torch.manual_seed(0)
    prior = GridPrior(GridUNet(GridPriorConfig(resolution=8, channels=(8, 16), emb=16)))
    lazy = model.generate(comps, "a red cube", seed=3, steps=4, prior=prior, lazy_t=0.5)
    assert lazy["prior_views"].shape == (VIEWS, 3, SIZE, SIZE)  # the prior's renders are the start, in pixels
    assert not torch.equal(lazy["views"], model.generate(comps, "a red cube", seed=3, steps=4)["views"])
    path = PSD.save_sd_bidiff(model, tmp_path / "if.safetensors", dtype=torch.float32)
    back = PSD.load_sd_bidiff(path)
    assert back.adapter.config.controlnet_kind == "encoder"
    assert torch.equal(back.generate(comps, "a red cube", seed=3, steps=2)["views"], a["views"])
    from papernodes.models.common.tiny import build_tiny_components

    with pytest.raises(InputError, match="in_channels: expected 3, got 4"):
        PSD.BoundSDBiDiff(back, build_tiny_components(0))  # an IF adapter on an SD model


def test_refinement_with_if_scores_in_pixel_space_and_moves_only_the_grid(comps):
    from papernodes.models.bidiff.refine import refine, sphere_grid

    model = _model(comps)
    bound = PSD.BoundSDBiDiff(model, comps)
    before = {k: v.clone() for k, v in comps.unet.state_dict().items()}
    a = refine(bound, "a red cube", steps=2, lr=0.05, seed=2)
    assert not torch.equal(a, sphere_grid(8))
    assert torch.equal(refine(bound, "a red cube", steps=2, lr=0.05, seed=2), a)
    assert all(torch.equal(v, before[k]) for k, v in comps.unet.state_dict().items())


def test_the_trainer_takes_an_if_folder(if_folder, tmp_path):
    cfg = T.TrainConfig(base=str(if_folder), out=str(tmp_path / "run"), views=VIEWS, size=SIZE, resolution=8,
                        world_scenes=2, max_steps=2, save_every=0, ema_decay=0.0, cpu=True)  # fmt: skip
    trained = PSD.load_sd_bidiff(T.train(cfg))
    assert trained.adapter.config.controlnet_kind == "encoder"
    assert trained.adapter.xview[0].to_out.weight.abs().max() > 0  # gradients reached the zero projection
    assert trained.adapter.controlnet.skips[0].weight.abs().max() > 0


def test_a_folder_with_only_the_fp16_variant_files_loads(if_folder, comps, tmp_path):
    import shutil

    from diffusers import UNet2DConditionModel
    from transformers import T5EncoderModel

    folder = tmp_path / "IF-I-fp16"
    shutil.copytree(if_folder, folder)
    for sub, cls in (("unet", UNet2DConditionModel), ("text_encoder", T5EncoderModel)):
        for f in (folder / sub).glob("*.safetensors"):
            f.unlink()
        cls.from_pretrained(str(if_folder / sub), local_files_only=True).save_pretrained(
            folder / sub, variant="fp16"
        )
    assert all(".fp16." in f.name for f in (folder / "unet").glob("*.safetensors"))
    loaded = load_if_folder(folder)
    a, b = loaded.unet.state_dict(), comps.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
