"""BiDiff's 2D branch on an SD1.5-architecture model (tiny, real classes and formats): a fresh adapter is
the base exactly, the base is never left hooked, cross-view attention is joint softmax attention over all
views (float64 reference), view embeddings and the ControlNet act per view / per sample, the adapter
refuses another architecture, the sampler is seeded and its file round trip exact, and the trainer trains
the adapter and the 3D denoiser only, lowering both losses on a fixed batch."""

from __future__ import annotations

import pytest
import torch
from helpers_bidiff import forward_hooks, perturb
from papernodes.models.bidiff import pipeline_sd as PSD
from papernodes.models.bidiff import train_bidiff_sd as T
from papernodes.models.bidiff.grid_prior import GridPrior, GridPriorConfig, GridUNet
from papernodes.models.bidiff.multiview_sd import CrossViewAttention, SDMultiViewAdapter, cross_view_layers
from papernodes.models.common.errors import InputError, WeightsFormatError
from papernodes.models.common.tiny import TINY_UNET, build_tiny_components, save_diffusers_folder

VIEWS, SIZE = 3, 64  # the tiny VAE downsamples 8x: 8x8 latents


@pytest.fixture(scope="module")
def comps():
    return build_tiny_components(0)


def _inputs(b: int = 2, views: int = VIEWS):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, views, 4, SIZE // 8, SIZE // 8, generator=g)
    text = torch.randn(b, 5, TINY_UNET["cross_attention_dim"], generator=g)
    control = torch.rand(b, views, 3, SIZE, SIZE, generator=g)
    return x, torch.tensor([10, 700])[:b], text, control


def _base(unet, x, t, text):
    b, v = x.shape[:2]
    out = unet(
        x.flatten(0, 1), t.repeat_interleave(v), encoder_hidden_states=text.repeat_interleave(v, 0)
    ).sample
    return out.reshape(x.shape)


def test_a_fresh_adapter_is_the_base_exactly_and_leaves_no_hook(comps):
    adapter = SDMultiViewAdapter.from_unet(comps.unet, VIEWS, SIZE)
    assert (
        adapter.config.layers
        == cross_view_layers(comps.unet)
        == [
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1"  # the only cross-attention down block
        ]
    )
    x, t, text, control = _inputs()
    with torch.no_grad():
        base = _base(comps.unet, x, t, text)
        # zero output projection, zero view embeddings, zero ControlNet convolutions: + exact zeros
        assert torch.equal(adapter.predict(comps.unet, x, t, text), base)
        assert torch.equal(adapter.predict(comps.unet, x, t, text, control), base)
    assert forward_hooks(comps.unet) == 0
    with pytest.raises(RuntimeError, match="inside"), adapter.attached(comps.unet):
        assert forward_hooks(comps.unet) == 2  # one cross-view layer + the time embedding
        raise RuntimeError("inside")
    assert forward_hooks(comps.unet) == 0 and forward_hooks(adapter.controlnet) == 0


def test_deeper_down_blocks_get_the_cross_view_attention():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**{**TINY_UNET, "block_out_channels": (32, 32, 64),
                                   "down_block_types": ("CrossAttnDownBlock2D",) * 2 + ("DownBlock2D",),
                                   "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 2})  # fmt: skip
    assert cross_view_layers(unet) == ["down_blocks.1.attentions.0.transformer_blocks.0.attn1"]


def test_cross_view_attention_is_joint_softmax_attention_over_all_views():
    torch.manual_seed(0)
    layer = CrossViewAttention(16, heads=2)
    torch.nn.init.normal_(layer.to_out.weight, std=0.3)
    hidden = torch.randn(2 * VIEWS, 5, 16)
    out = layer(hidden, VIEWS)
    # float64 reference: per sample, all V * L tokens attend to all of them, per head
    h = hidden.double().reshape(2, VIEWS * 5, 16)
    wq, wk, wv = (m.weight.double() for m in (layer.to_q, layer.to_k, layer.to_v))
    q, k, v = (h @ w.T for w in (wq, wk, wv))
    heads = [torch.softmax(q[..., i:i + 8] @ k[..., i:i + 8].transpose(1, 2) / 8**0.5, -1) @ v[..., i:i + 8]
             for i in (0, 8)]  # fmt: skip
    ref = torch.cat(heads, -1) @ layer.to_out.weight.double().T + layer.to_out.bias.double()
    torch.testing.assert_close(out.double(), ref.reshape(2 * VIEWS, 5, 16), atol=1e-5, rtol=1e-5)
    # a view's output depends on the other views of its sample, not on other samples
    moved = hidden.clone()
    moved[1] += 1.0  # sample 0, view 1
    changed = (layer(moved, VIEWS) - out).abs().amax(dim=(1, 2))
    assert changed[0] > 1e-3 and changed[VIEWS:].max() == 0


def test_trained_parts_act_per_view_and_per_sample(comps):
    adapter = SDMultiViewAdapter.from_unet(comps.unet, VIEWS, SIZE)
    x, t, text, control = _inputs()
    same = x[:, :1].expand(-1, VIEWS, -1, -1, -1).contiguous()  # every view the same latent
    with torch.no_grad():
        base = _base(comps.unet, same, t, text)
        perturb(adapter, only="view")
        views = adapter.predict(comps.unet, same, t, text)
        assert (views[:, 0] - views[:, 1]).abs().max() > 1e-4  # the view embedding tells views apart
        # the base sees the same latent in both rows; rows of one batch may round differently with 2 threads
        torch.testing.assert_close(base[:, 0], base[:, 1], atol=1e-5, rtol=0)
        perturb(adapter.controlnet, seed=1)
        plain = adapter.predict(comps.unet, x, t, text)
        controlled = adapter.predict(comps.unet, x, t, text, control)
        assert (controlled - plain).abs().max() > 1e-4
        mixed = adapter.predict(comps.unet, x, t, text, control, torch.tensor([1.0, 0.0]))
        assert torch.equal(mixed[1], plain[1])  # scale 0: residuals x 0, the no-3D branch exactly
        torch.testing.assert_close(mixed[0], controlled[0], atol=1e-6, rtol=0)
        with pytest.raises(InputError, match="views"):
            adapter.predict(comps.unet, x[:, :2], t, text)


def test_an_adapter_refuses_another_architecture(comps):
    from diffusers import UNet2DConditionModel

    adapter = SDMultiViewAdapter.from_unet(comps.unet, VIEWS, SIZE)
    other = UNet2DConditionModel(**{**TINY_UNET, "cross_attention_dim": 32})
    x, t, _, _ = _inputs()
    with pytest.raises(InputError, match="cross_attention_dim: expected 48, got 32"):
        adapter.predict(other, x, t, torch.zeros(2, 5, 32))
    assert forward_hooks(other) == 0


def _model(comps, seed: int = 0) -> PSD.SDBiDiff:
    torch.manual_seed(seed)
    model = PSD.SDBiDiff.fresh(comps.unet, VIEWS, SIZE, resolution=8, features=4, channels=(8, 16), emb=16,
                               render_samples=8)  # fmt: skip
    perturb(model, seed)  # zero-initialised outputs would hide every path
    return model.eval()


def test_sampling_is_seeded_lazy_start_uses_the_prior_and_the_file_round_trip_is_exact(comps, tmp_path):
    model = _model(comps)
    a = model.generate(comps, "a red cube", seed=3, steps=2)
    b = model.generate(comps, "a red cube", seed=3, steps=2)
    assert torch.equal(a["views"], b["views"]) and torch.equal(a["grid"], b["grid"])
    assert a["views"].shape == (VIEWS, 3, SIZE, SIZE) and a["grid"].shape == (4, 8, 8, 8)
    assert a["renders"].shape == (VIEWS, 3, SIZE, SIZE) and a["prior_views"] is None
    assert not torch.equal(model.generate(comps, "a red cube", seed=4, steps=2)["views"], a["views"])
    # the 3D branch reaches the views through the ControlNet: consistency scale changes the result
    assert not torch.equal(model.generate(comps, "a red cube", seed=3, steps=2, consistency_scale=1.0)["views"],
                           a["views"])  # fmt: skip
    two_d = model.generate(comps, "a red cube", seed=3, steps=2, use_3d=False)  # the 2D-only ablation
    assert not torch.equal(two_d["views"], a["views"]) and two_d["grid"].shape == a["grid"].shape
    torch.manual_seed(0)
    prior = GridPrior(GridUNet(GridPriorConfig(resolution=8, channels=(8, 16), emb=16)))
    ticks = []
    lazy = model.generate(comps, "a red cube", seed=3, steps=10, prior=prior, lazy_t=0.5,
                          progress=lambda i, n: ticks.append(n))  # fmt: skip
    assert lazy["prior_views"].shape == (VIEWS, 3, SIZE, SIZE)
    assert ticks and ticks[0] == len(ticks) == 5  # SD's DDIM steps 451, 351, ..., 51 of 901 ... 1
    path = PSD.save_sd_bidiff(model, tmp_path / "m.safetensors", dtype=torch.float32)
    back = PSD.load_sd_bidiff(path)
    again = back.generate(comps, "a red cube", seed=3, steps=2)
    assert torch.equal(again["views"], a["views"]) and torch.equal(again["grid"], a["grid"])
    with pytest.raises(InputError, match="prompt"):
        model.generate(comps, " ")
    with pytest.raises(InputError, match="lazy_t"):
        model.generate(comps, "a red cube", lazy_t=1.5)
    with pytest.raises(InterruptedError):
        model.generate(comps, "a red cube", steps=2, should_stop=lambda: True)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsFormatError, match="not a BiDiff SD adapter"):
        PSD.load_sd_bidiff(tmp_path / "other.safetensors")


def test_the_trainer_trains_the_adapter_and_the_3d_denoiser_only(comps, tmp_path):
    save_diffusers_folder(comps, tmp_path / "sd")
    cfg = T.TrainConfig(base=str(tmp_path / "sd"), out=str(tmp_path / "run"), views=VIEWS, size=SIZE,
                        resolution=8, world_scenes=2, max_steps=2, save_every=0, ema_decay=0.0, cpu=True)  # fmt: skip
    path = T.train(cfg)
    from safetensors.torch import load_file

    state = load_file(str(path))
    assert {k.split(".")[0] for k in state} == {"adapter", "volume"}
    trained = PSD.load_sd_bidiff(path)
    out = trained.adapter.xview[0].to_out.weight
    assert out.abs().max() > 0  # the zero-initialised output projection received gradients
    with pytest.raises(InputError, match="size"):
        T.train(
            T.TrainConfig(
                base=str(tmp_path / "sd"), out=str(tmp_path / "bad"), size=60, max_steps=1, cpu=True
            )
        )
    with pytest.raises(InputError, match="min_timestep"):
        T.train(T.TrainConfig(base=str(tmp_path / "sd"), out=str(tmp_path / "bad2"), size=SIZE, views=VIEWS,
                              resolution=8, world_scenes=2, min_timestep=1000, max_steps=1, cpu=True))  # fmt: skip


@pytest.mark.slow
def test_training_lowers_both_losses_on_a_fixed_batch(comps, tmp_path):
    cfg = T.TrainConfig(base="unused", out=str(tmp_path), views=VIEWS, size=SIZE, resolution=8, world_scenes=2,
                        batch_size=2, max_steps=1, cpu=True, ema_decay=0.0, save_every=0, caption_dropout=0.0)  # fmt: skip
    method = T.SDBiDiffTraining(cfg)
    method.base, method.run = comps, type("R", (), {"device": torch.device("cpu")})()
    from diffusers import DDPMScheduler
    from papernodes.models.common.timesteps import TimestepSampler

    method.scheduler = DDPMScheduler.from_config(comps.scheduler_config)
    method.timesteps = TimestepSampler(method.scheduler.config.num_train_timesteps, "uniform")
    torch.manual_seed(0)
    method.model = PSD.SDBiDiff.fresh(comps.unet, VIEWS, SIZE, resolution=8)
    ds = T.WorldLatents(cfg, method.model, comps.vae)
    from papernodes.models.common.training import collate

    batch = collate([ds[i] for i in range(2)])
    opt = torch.optim.AdamW(method.model.parameters(), lr=1e-3)
    first = None
    for step in range(30):
        loss = method.loss(batch, torch.Generator().manual_seed(step % 2))
        if first is None:
            first = dict(method.last)
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.loss(batch, torch.Generator().manual_seed(0))
    assert method.last["loss_3d"] < 0.5 * first["loss_3d"]
    assert method.last["loss_2d"] < first["loss_2d"]


def test_refinement_with_the_sd_prior_moves_only_the_grid_and_is_seeded(comps):
    from papernodes.models.bidiff.refine import refine, sphere_grid

    model = _model(comps)
    bound = PSD.BoundSDBiDiff(model, comps)
    modules = (comps.unet, comps.vae, model)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    a = refine(bound, "a red cube", steps=3, lr=0.05, seed=2)
    assert not torch.equal(
        a, sphere_grid(8)
    )  # the SDS gradient reached the grid through encoder and renderer
    assert torch.equal(refine(bound, "a red cube", steps=3, lr=0.05, seed=2), a)
    for m, state, flag in zip(modules, before, flags, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
        assert [p.requires_grad for p in m.parameters()] == flag
    with pytest.raises(InterruptedError):
        refine(bound, "a red cube", steps=2, should_stop=lambda: True)


def test_min_timestep_draws_training_noise_levels_above_it_only():
    from papernodes.models.common.timesteps import TimestepSampler

    sampler = TimestepSampler(1000, "uniform", min_timestep=500)
    t = sampler(4000, torch.Generator().manual_seed(0))
    assert t.min() >= 500 and t.max() <= 999 and abs(t.float().mean().item() - 749.5) < 10
    assert torch.equal(TimestepSampler(1000, "uniform")(8, torch.Generator().manual_seed(3)),
                       torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(3)))  # fmt: skip
