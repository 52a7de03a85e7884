"""The BiDiff world's 3D prior (models/bidiff/grid_prior.py, train_prior.py) on a tiny config: grids that
hold the world's fields, the tokenizer, classifier-free guidance (scale 1 = the conditional branch; the
guided output is the CFG combination), seeded sampling, the file round trip, and the trainer (loss goes
down on a fixed batch, exact resume, export loads back)."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.bidiff import grid_prior as G
from papernodes.models.bidiff import train_prior as T
from papernodes.models.bidiff.world import Primitive, Scene, make_scene
from papernodes.models.common.errors import InputError, WeightsFormatError

TINY = G.GridPriorConfig(resolution=8, channels=(8, 16), emb=16)


def _prior(seed: int = 0) -> G.GridPrior:
    torch.manual_seed(seed)
    model = G.GridUNet(TINY)
    for p in model.parameters():  # zero-initialised outputs would make every branch equal
        p.data.add_(0.05 * torch.randn_like(p))
    return G.GridPrior(model)


def test_scene_grid_holds_the_truncated_sdf_and_colour_and_reads_back():
    scene = Scene((Primitive("sphere", "blue", size=0.6),))
    grid = G.scene_grid(scene.sdf, scene.color, 9)
    axis = torch.linspace(-1, 1, 9)
    assert grid.shape == (4, 9, 9, 9)
    assert grid[0, 4, 4, 4].item() == pytest.approx(-1.0)  # deep inside: clamped
    assert grid[0, 4, 4, 6].item() == pytest.approx((axis[6].item() - 0.6) / G.TRUNC, abs=1e-6)
    shape = G.grid_to_shape(grid, G.TRUNC)
    p = torch.tensor([[0.0, 0.0, axis[6].item()], [0.0, 0.0, 0.4], [3.0, 0.0, 0.0]])
    d = shape.sdf(p)
    assert d[0].item() == pytest.approx(axis[6].item() - 0.6, abs=1e-5)  # a grid point: exact
    assert d[1].item() < 0 and d[2].item() > 2.0 - 0.01  # inside; far outside grows with the distance
    assert torch.allclose(shape.color(p[:1]), torch.tensor([[0.15, 0.30, 0.90]]), atol=1e-6)


def test_tokenize_maps_words_pads_and_marks_unknown():
    tok = G.tokenize(["a red cube", "", "a shiny cube"], ["a", "red", "cube"], 5)
    assert tok.tolist() == [[2, 3, 4, 0, 0], [0, 0, 0, 0, 0], [2, G.UNK, 4, 0, 0]]


def test_empty_prompt_is_the_learnt_null_vector():
    model = _prior().model
    tok = G.tokenize(["", "a red cube"], TINY.vocabulary, TINY.max_tokens)
    out = model.text(tok)
    assert torch.equal(out[0], model.text.null)
    assert not torch.allclose(out[1], out[0])


def test_guidance_one_is_the_conditional_branch_and_cfg_combines_the_branches():
    prior = _prior()
    steps, calls = 2, []
    real = prior.model.forward

    def spy(x, t, tokens):
        out = real(x, t, tokens)
        calls.append((x.clone(), tokens.clone(), out.clone()))
        return out

    prior.model.forward = spy
    plain = prior.sample_grids("a red cube", seed=3, guidance=1.0, steps=steps)
    assert all(c[1].shape[0] == 1 for c in calls)  # one (conditional) branch
    calls.clear()
    guided = prior.sample_grids("a red cube", seed=3, guidance=4.0, steps=steps)
    x, tokens, out = calls[0]
    assert tokens.shape[0] == 2 and tokens[1].eq(0).all()  # conditional + empty prompt
    cond, uncond = out.chunk(2)
    assert not torch.allclose(plain, guided)
    # the first step's model output is uncond + 4 (cond - uncond): check it through a 1-step sample
    calls.clear()
    one = prior.sample_grids("a red cube", seed=3, guidance=4.0, steps=1)
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(G.noise_scheduler(TINY).config, set_alpha_to_one=False)
    sched.set_timesteps(1)
    x0, _, out = calls[0]
    c, u = out.chunk(2)
    expect = sched.step(u + 4.0 * (c - u), sched.timesteps[0], x0[:1]).prev_sample
    torch.testing.assert_close(one, expect, atol=1e-6, rtol=0)


def test_sampling_is_seeded_and_checks_its_inputs():
    prior = _prior()
    a = prior.sample_grids("a red cube", seed=1, steps=2, count=2)
    assert torch.equal(a, prior.sample_grids("a red cube", seed=1, steps=2, count=2))
    assert not torch.equal(a, prior.sample_grids("a red cube", seed=2, steps=2, count=2))
    assert a.shape == (2, 4, 8, 8, 8)
    with pytest.raises(InputError, match="prompt"):
        prior.sample("  ", steps=2)
    with pytest.raises(InputError, match="steps"):
        prior.sample("a red cube", steps=0)
    ticks = []
    prior.sample("a red cube", steps=3, progress=lambda i, n: ticks.append((i, n)))
    assert ticks == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(InterruptedError):
        prior.sample("a red cube", steps=3, should_stop=lambda: True)


def test_file_round_trip_and_wrong_files(tmp_path):
    prior = _prior()
    path = G.save_grid_prior(prior.model, tmp_path / "p.safetensors", dtype=torch.float32)
    back = G.load_grid_prior(path)
    assert back.config == prior.config
    a = prior.sample_grids("a blue torus", seed=0, steps=2)
    torch.testing.assert_close(back.sample_grids("a blue torus", seed=0, steps=2), a, atol=0, rtol=0)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsFormatError, match="not a BiDiff grid prior"):
        G.load_grid_prior(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(WeightsFormatError, match="readable"):
        G.load_grid_prior(tmp_path / "junk.safetensors")


TRAIN = dict(resolution=8, channels="8,16", emb=16, world_scenes=8, batch_size=4, lr=3e-3, ema_decay=0.0,
             save_every=0, cpu=True)  # fmt: skip


@pytest.mark.slow
def test_trainer_learns_resumes_exactly_and_exports(tmp_path):
    cfg = T.TrainConfig(out=str(tmp_path / "a"), max_steps=30, **TRAIN)
    method = T.GridPriorTraining(cfg)
    path = T.train(cfg)
    prior = G.load_grid_prior(path)
    assert prior.config.resolution == 8
    # a fixed batch: the loss of the trained model is below the untrained one's
    ds = T.WorldGrids(cfg, prior.config)
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    sched = G.noise_scheduler(prior.config)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (8,), generator=g)
    noise = torch.randn(batch["grid"].shape, generator=g)
    xt, v = sched.add_noise(batch["grid"], noise, t), sched.get_velocity(batch["grid"], noise, t)
    torch.manual_seed(0)
    fresh = G.GridUNet(prior.config)
    with torch.no_grad():
        trained_loss = (prior.model(xt, t, batch["tokens"]) - v).square().mean()
        fresh_loss = (fresh(xt, t, batch["tokens"]) - v).square().mean()
    assert trained_loss < 0.8 * fresh_loss
    # resume: 15 + 15 steps equals 30 straight (weights written in float16 by the export: compare those)
    half = T.TrainConfig(out=str(tmp_path / "b"), max_steps=15, **{**TRAIN, "save_every": 15})
    T.train(half)
    resumed = T.train(T.TrainConfig(out=str(tmp_path / "b"), max_steps=30, resume="latest", **TRAIN))
    from safetensors.torch import load_file

    a, b = load_file(str(path)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert method.final == tmp_path / "a" / "final"


def test_config_errors_name_the_flag(tmp_path):
    with pytest.raises(InputError, match="resolution"):
        T.TrainConfig(out=str(tmp_path), resolution=10).validate()
    with pytest.raises(InputError, match="channels"):
        T.TrainConfig(out=str(tmp_path), channels="a,b").validate()
    with pytest.raises(InputError, match="max_objects"):
        T.TrainConfig(out=str(tmp_path), max_objects=3).validate()


def test_world_scene_items_are_reproducible():
    cfg = T.TrainConfig(out="unused", world_scenes=4, resolution=8)
    ds = T.WorldGrids(cfg, G.GridPriorConfig(resolution=8))
    assert torch.equal(ds[2]["grid"], ds[2]["grid"])
    assert make_scene(0, 2).caption.split()[-1] in TINY.vocabulary


@pytest.mark.slow
def test_reproduce_quick_runs_both_stages_into_a_weights_folder(tmp_path):
    from papernodes.models.bidiff import reproduce
    from papernodes.models.bidiff.pipeline import load_bidiff

    code = reproduce.main(["--quick", "--cache", str(tmp_path / "runs"), "--weights", str(tmp_path / "w")])
    assert code == 0
    assert G.load_grid_prior(tmp_path / "w" / "grid_prior.safetensors").config.resolution == 16
    assert load_bidiff(tmp_path / "w" / "bidiff.safetensors").volume.config.views == 4
