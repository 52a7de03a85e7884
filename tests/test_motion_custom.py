"""Customizing Motion: trainable set per architecture, the timestep law, motion files, and generation
equal to diffusers' own text-to-video pipelines on tiny models in the real formats."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from papernodes.models.common import tiny
from papernodes.models.common.animatediff import build_tiny_motion_adapter
from papernodes.models.common.errors import InputError, WeightsFormatError
from papernodes.models.common.loading import load_components
from papernodes.models.common.saving import save_diffusers_folder
from papernodes.models.common.timesteps import TimestepSampler, timestep_probabilities
from papernodes.models.motion_custom import motion_file as mf
from papernodes.models.motion_custom import pipeline as P
from papernodes.models.motion_custom.trainable import set_trainable, trainable_names

torch.set_num_threads(1)
RUN = dict(prompt="a red star sks bouncing", negative_prompt="blurry", num_frames=4, height=32, width=32,
           steps=3, guidance=9.0, seed=5)  # fmt: skip


@pytest.fixture(scope="module")
def zeroscope_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zs") / "zeroscope-tiny"
    comps = tiny.build_tiny_zeroscope(0)
    comps.scheduler_config = {**comps.scheduler_config, "_class_name": "DPMSolverMultistepScheduler"}
    return save_diffusers_folder(comps, folder)


@pytest.fixture(scope="module")
def zeroscope(zeroscope_folder):
    return P.load_zeroscope(zeroscope_folder)


@pytest.fixture(scope="module")
def animatediff():
    return P.animatediff_model(tiny.build_tiny_components(0), build_tiny_motion_adapter(1, zero_out=False))


# ----------------------------------------------------------------------------------------- trainable set


def _unit(name: str) -> str:
    return re.sub(r"\.\d+\.", ".N.", name)


def test_paper_set_on_zeroscope_is_cross_kv_temporal_layers_and_transformer_in(zeroscope):
    names = trainable_names(zeroscope.unet, "paper")
    every = [n for n, _ in zeroscope.unet.named_parameters()]
    for n in every:
        spatial_kv = ".attentions." in n and re.search(r"\.attn2\.to_[kv]\.weight$", n) is not None
        temporal = n.startswith("transformer_in.") or ".temp_attentions." in n or ".temp_convs." in n
        assert (n in names) == (spatial_kv or temporal), n
    kinds = {_unit(n) for n in names}
    assert "down_blocks.N.attentions.N.transformer_blocks.N.attn2.to_k.weight" in kinds
    assert "down_blocks.N.attentions.N.transformer_blocks.N.attn2.to_q.weight" not in kinds
    assert "down_blocks.N.attentions.N.transformer_blocks.N.attn1.to_k.weight" not in kinds
    assert any(k.startswith("mid_block.temp_convs.") for k in kinds)


def test_paper_set_on_animatediff_is_motion_modules_and_cross_kv(animatediff):
    names = set(trainable_names(animatediff.unet, "paper"))
    for n, _ in animatediff.unet.named_parameters():
        expect = ".motion_modules." in n or (
            ".attentions." in n and re.search(r"\.attn2\.to_[kv]\.weight$", n) is not None
        )
        assert (n in names) == expect, n
    temporal = set(trainable_names(animatediff.unet, "temporal"))
    assert temporal == {n for n in names if ".motion_modules." in n}
    assert len(trainable_names(animatediff.unet, "full")) == len(list(animatediff.unet.parameters()))


def test_set_trainable_freezes_everything_else(animatediff):
    names = set(set_trainable(animatediff.unet, "paper"))
    try:
        for n, p in animatediff.unet.named_parameters():
            assert p.requires_grad == (n in names)
    finally:
        animatediff.unet.requires_grad_(False)


# ----------------------------------------------------------------------------------------- timesteps


def test_timestep_law_is_one_minus_a_cos():
    p = timestep_probabilities(1000, "high", 0.5).numpy()
    t = np.arange(1000)
    assert np.allclose(p / p[0], (1 - 0.5 * np.cos(np.pi * t / 1000)) / 0.5, rtol=1e-12)
    assert p[-1] / p[0] == pytest.approx(3.0, rel=1e-4)  # high noise drawn ~3x as often as clean
    low = timestep_probabilities(1000, "low", 0.5).numpy()
    assert low[0] / low[-1] == pytest.approx(3.0, rel=1e-4)
    assert timestep_probabilities(1000, "uniform").numpy() == pytest.approx(np.full(1000, 1e-3))
    with pytest.raises(InputError, match="timestep_law"):
        timestep_probabilities(1000, "medium")


def test_min_timestep_keeps_the_law_above_it_and_nothing_below():
    full = timestep_probabilities(1000, "high", 0.5).numpy()
    cut = timestep_probabilities(1000, "high", 0.5, min_timestep=500).numpy()
    assert cut[:500].sum() == 0 and cut.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(cut[500:], full[500:] / full[500:].sum(), rtol=1e-12)  # the law, renormalised
    for law in ("high", "uniform"):
        sampler = TimestepSampler(1000, law, min_timestep=700)
        draws = sampler(4000, torch.Generator().manual_seed(0))
        assert int(draws.min()) >= 700 and int(draws.max()) <= 999
        expected = float((sampler.probabilities * torch.arange(1000)).sum())  # 849.5 uniform, more for high
        assert float(draws.double().mean()) == pytest.approx(expected, abs=6)  # ~4 standard errors
    with pytest.raises(InputError, match="min_timestep"):
        timestep_probabilities(1000, "high", 0.5, min_timestep=1000)


@pytest.mark.parametrize("law", ["high", "low", "uniform"])
def test_sampler_draws_follow_the_law(law):
    """Chi-square goodness of fit over 20 bins of 200 000 draws (critical value at p = 0.001: 43.8)."""
    sampler = TimestepSampler(1000, law)
    draws = sampler(200_000, torch.Generator().manual_seed(0)).numpy()
    assert draws.min() >= 0 and draws.max() <= 999
    observed = np.bincount(draws // 50, minlength=20)
    expected = sampler.probabilities.numpy().reshape(20, 50).sum(1) * len(draws)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 43.8, chi2
    if law != "uniform":  # and the law is visibly not uniform
        flat = np.full(20, len(draws) / 20)
        assert ((observed - flat) ** 2 / flat).sum() > 1000


# ----------------------------------------------------------------------------------------- motion files


def _trained_copy(model: P.VideoModel, names: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """The values a training run would leave: base + a seeded change, for `names`."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.unet.named_parameters())
    return {n: params[n].detach() + 0.01 * torch.randn(params[n].shape, generator=gen) for n in names}


def _motion(model: P.VideoModel, which="paper") -> tuple[mf.MotionFile, dict[str, torch.Tensor]]:
    names = trainable_names(model.unet, which)
    params = dict(model.unet.named_parameters())
    base = {n: params[n].detach().clone() for n in names}
    trained = _trained_copy(model, names)
    with torch.no_grad():
        for n in names:
            params[n].copy_(trained[n])
    try:
        motion = mf.extract_motion(base, model.unet, names, token="sks", trainable=which, steps=7)
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(base[n])
    return motion, trained


@pytest.mark.parametrize("arch", ["zeroscope", "animatediff"])
def test_strength_zero_is_the_base_and_one_is_the_trained_model(arch, request):
    model = request.getfixturevalue(arch)
    motion, trained = _motion(model)
    before = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    with mf.motions_applied(model.unet, [(motion, 0.0)]):
        assert all(torch.equal(p, before[n]) for n, p in model.unet.named_parameters())
    with mf.motions_applied(model.unet, [(motion, 1.0)]):
        params = dict(model.unet.named_parameters())
        for n, value in trained.items():  # base + (trained - base): float32 rounding only
            torch.testing.assert_close(params[n], value, rtol=0, atol=1e-6)
        untouched = [n for n in params if n not in trained]
        assert untouched and all(torch.equal(params[n], before[n]) for n in untouched)
    assert all(torch.equal(p, before[n]) for n, p in model.unet.named_parameters())  # restored exactly


def test_restored_exactly_after_an_error(animatediff):
    motion, _ = _motion(animatediff)
    before = {n: p.detach().clone() for n, p in animatediff.unet.named_parameters()}
    with pytest.raises(RuntimeError, match="cancelled"):
        with mf.motions_applied(animatediff.unet, [(motion, 0.7), (motion, 0.3)], check=False):
            raise RuntimeError("cancelled")
    assert all(torch.equal(p, before[n]) for n, p in animatediff.unet.named_parameters())


def test_save_load_round_trip_is_exact(animatediff, tmp_path):
    motion, _ = _motion(animatediff)
    path = mf.save_motion(motion, tmp_path / "bounce.safetensors")
    back = mf.load_motion(path)
    assert back.metadata() == motion.metadata()
    assert back.deltas.keys() == motion.deltas.keys()
    assert all(torch.equal(back.deltas[k], motion.deltas[k]) for k in motion.deltas)
    assert back.token == "sks" and back.steps == 7 and back.trainable == "paper"


def test_motion_for_another_base_is_refused(animatediff, zeroscope, tmp_path):
    motion, _ = _motion(animatediff)
    with pytest.raises(WeightsFormatError, match="animatediff model, this model is zeroscope"):
        zeroscope.with_motion(motion)
    other = P.animatediff_model(tiny.build_tiny_components(3), build_tiny_motion_adapter(1, zero_out=False))
    with pytest.raises(WeightsFormatError, match="different base model"):
        other.with_motion(motion)
    lora = tmp_path / "not_motion.safetensors"
    from safetensors.torch import save_file

    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    with pytest.raises(WeightsFormatError, match="not a motion file"):
        mf.load_motion(lora)
    with pytest.raises(InputError, match="strength"):
        animatediff.with_motion(motion, 5.0)


# ----------------------------------------------------------------------------------------- generation


def test_zeroscope_generation_equals_diffusers_text_to_video(zeroscope):
    from diffusers import DPMSolverMultistepScheduler, TextToVideoSDPipeline

    ours = P.generate(zeroscope, **RUN)
    ref_pipe = TextToVideoSDPipeline(
        vae=zeroscope.vae, text_encoder=zeroscope.text_encoder, tokenizer=zeroscope.tokenizer,
        unet=zeroscope.unet,
        scheduler=DPMSolverMultistepScheduler.from_config(zeroscope.scheduler_config),
    )  # fmt: skip
    ref_pipe.set_progress_bar_config(disable=True)
    ref = ref_pipe(
        RUN["prompt"], negative_prompt=RUN["negative_prompt"], num_frames=4, height=32, width=32,
        num_inference_steps=3, guidance_scale=9.0, generator=torch.Generator().manual_seed(5), output_type="pt",
    ).frames[0]  # fmt: skip
    assert ours.shape == (4, 32, 32, 3)
    torch.testing.assert_close(ours, ref.permute(0, 2, 3, 1).float(), rtol=0, atol=2e-5)


def test_animatediff_generation_equals_diffusers_animatediff(animatediff):
    from diffusers import AnimateDiffPipeline, DPMSolverMultistepScheduler

    ours = P.generate(animatediff, **RUN)
    ref_pipe = AnimateDiffPipeline(
        vae=animatediff.vae, text_encoder=animatediff.text_encoder, tokenizer=animatediff.tokenizer,
        unet=animatediff.unet, motion_adapter=None,
        scheduler=DPMSolverMultistepScheduler.from_config(animatediff.scheduler_config),
    )  # fmt: skip
    ref_pipe.set_progress_bar_config(disable=True)
    ref = ref_pipe(
        RUN["prompt"], negative_prompt=RUN["negative_prompt"], num_frames=4, height=32, width=32,
        num_inference_steps=3, guidance_scale=9.0, generator=torch.Generator().manual_seed(5), output_type="pt",
    ).frames[0]  # fmt: skip
    torch.testing.assert_close(ours, ref.permute(0, 2, 3, 1).float(), rtol=0, atol=2e-5)


def test_applied_motion_changes_the_video_and_leaves_the_base(animatediff):
    motion, _ = _motion(animatediff)
    base = P.generate(animatediff, **RUN)
    moved = P.generate(animatediff.with_motion(motion, 1.0), **RUN)
    off = P.generate(animatediff.with_motion(motion, 0.0), **RUN)
    assert torch.equal(off, base)  # strength 0 is the base, exactly
    assert (moved - base).abs().max() > 1e-3
    assert torch.equal(P.generate(animatediff, **RUN), base)  # the shared model was not left patched
    assert P.token_warning(animatediff.with_motion(motion), "a red star bouncing").startswith(
        "the prompt has no 'sks'"
    )
    assert P.token_warning(animatediff.with_motion(motion), RUN["prompt"]) == ""


def test_folder_kind_is_checked(zeroscope_folder, tmp_path):
    with pytest.raises(WeightsFormatError, match="MotionCustom: Load Video Model"):
        load_components(zeroscope_folder)
    sd = save_diffusers_folder(tiny.build_tiny_components(0), tmp_path / "sd")
    with pytest.raises(WeightsFormatError, match="not a ZeroScope"):
        P.load_zeroscope(sd)


def test_bad_generation_inputs_name_the_input(animatediff):
    with pytest.raises(InputError, match="prompt"):
        P.generate(animatediff, **{**RUN, "prompt": "  "})
    with pytest.raises(InputError, match="height"):
        P.generate(animatediff, **{**RUN, "height": 30})
    with pytest.raises(InputError, match="num_frames"):
        P.generate(animatediff, **{**RUN, "num_frames": 64})


def test_motions_stack_in_order_and_bind_to_the_motions_before_them(animatediff, tmp_path):
    from papernodes.models.motion_custom.demo import write_seeded_motion

    first = mf.load_motion(write_seeded_motion(animatediff, tmp_path / "a.safetensors", seed=1))
    with_first = animatediff.with_motion(first)
    with mf.motions_applied(animatediff.unet, with_first.motions):  # a motion trained on base + first
        second = mf.load_motion(write_seeded_motion(animatediff, tmp_path / "b.safetensors", seed=2))
    stacked = with_first.with_motion(second)
    with pytest.raises(WeightsFormatError, match="motions it was trained on top of"):
        animatediff.with_motion(second)
    before = {n: p.detach().clone() for n, p in animatediff.unet.named_parameters()}
    with mf.motions_applied(animatediff.unet, stacked.motions):
        params = dict(animatediff.unet.named_parameters())
        for n in second.deltas:  # base + first + second, added in that order
            torch.testing.assert_close(
                params[n], before[n] + first.deltas[n] + second.deltas[n], rtol=0, atol=1e-6
            )
    assert all(torch.equal(p, before[n]) for n, p in animatediff.unet.named_parameters())
