"""SwiftBrush: exact one-step sampler, VSD gradient, LoRA teacher, training step, resume, bad inputs."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from papernodes.models.common.errors import InputError, WeightsFormatError, WeightsNotFoundError
from papernodes.models.common.loading import load_components, shipped_scheduler_config
from papernodes.models.common.saving import save_diffusers_folder
from papernodes.models.common.tiny import build_tiny_components
from papernodes.models.common.training import make_accelerator
from papernodes.models.swiftbrush import train as T
from papernodes.models.swiftbrush.sampler import SwiftBrushPipeline, one_step_latents, training_alphas_cumprod
from papernodes.models.swiftbrush.teacher import ADAPTER, LoraTeacher
from papernodes.models.swiftbrush.vsd import lora_teacher_loss, vsd_gradient, vsd_student_loss
from papernodes.models.swiftbrush.weights import load_unet_like
from safetensors.torch import load_file, save_file

RES = 64
PROMPTS = ["a red circle on blue stripes", "a green square", "a photo of a cat", "a yellow star at night"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; one thread also keeps CPU results reproducible."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("swiftbrush")
    teacher = root / "teacher"
    save_diffusers_folder(build_tiny_components(seed=2), teacher)
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:2]) + "\n\n" + "\n".join(PROMPTS[2:]) + "\n")
    return {"root": root, "teacher": teacher, "prompts": prompts}


def _embed(comps, prompts):
    tok = comps.tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return comps.text_encoder(tok.input_ids)[0]


def _schedule_alpha_T_float64() -> float:
    cfg = shipped_scheduler_config()
    betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, 1000, dtype=torch.float64) ** 2
    return float(torch.prod(1 - betas))


# ----------------------------------------------------------------------------------------------------
# Sampler


def test_alpha_T_is_the_schedules_last_value():
    a = training_alphas_cumprod(shipped_scheduler_config())
    assert len(a) == 1000
    assert float(a[999]) == pytest.approx(_schedule_alpha_T_float64(), rel=1e-5)
    assert float(a[999]) == pytest.approx(0.0047, abs=1e-4)


def test_one_step_sampler_equals_the_formula():
    comps = build_tiny_components(seed=2)
    pipe = SwiftBrushPipeline(comps)
    seen = []
    hook = comps.unet.register_forward_pre_hook(lambda m, args, kw: seen.append((args, kw)), with_kwargs=True)
    try:
        out = pipe(PROMPTS[0], seed=7, batch=2, height=RES, width=RES)
    finally:
        hook.remove()
    assert out.unet_evaluations == 2 and len(seen) == 1  # one U-Net evaluation per image, one call

    # independently: noise of image k from seed 7 + k, eps of the U-Net at t = 999 ON z itself
    z = torch.stack(
        [
            torch.randn((4, RES // 8, RES // 8), generator=torch.Generator().manual_seed(7 + k))
            for k in range(2)
        ]
    )
    args, kw = seen[0]
    assert torch.equal(args[0], z), "the student must see z, not sqrt(1 - a_T) z"
    assert args[1].tolist() == [999, 999]
    emb = _embed(comps, [PROMPTS[0]] * 2)
    with torch.no_grad():
        eps = comps.unet(z, 999, encoder_hidden_states=emb).sample.double()
    a_T = float(pipe.alphas_cumprod[999])
    assert a_T == pytest.approx(_schedule_alpha_T_float64(), rel=1e-5)
    x0 = (z.double() - math.sqrt(1 - a_T) * eps) / math.sqrt(a_T)
    torch.testing.assert_close(out.latents.double(), x0, rtol=1e-5, atol=1e-5)

    # the image is the VAE decode of x0 / scaling_factor; LATENT is that VAE-space latent
    vae_latent = pipe.vae_latents(out.latents)
    torch.testing.assert_close(vae_latent * comps.vae.config.scaling_factor, out.latents)
    with torch.no_grad():
        img = comps.vae.decode(x0.float() / comps.vae.config.scaling_factor).sample
    img = ((img + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    assert out.images.shape == (2, RES, RES, 3)
    torch.testing.assert_close(out.images, img, rtol=0, atol=1e-4)

    # one_step_latents on its own, and seeds per image: image 1 of seed 7 == image 0 of seed 8
    torch.testing.assert_close(one_step_latents(comps.unet, emb, z, a_T).double(), x0, rtol=1e-5, atol=1e-5)
    alone = pipe(PROMPTS[0], seed=8, batch=1, height=RES, width=RES, decode=False)
    torch.testing.assert_close(
        alone.latents[0], out.latents[1], rtol=0, atol=2e-4
    )  # batch-size rounding only


def test_sampler_rejects_bad_inputs():
    pipe = SwiftBrushPipeline(build_tiny_components(seed=2))
    with pytest.raises(InputError, match="Input 'prompt'.*non-empty"):
        pipe("   ", height=RES, width=RES)
    with pytest.raises(InputError, match="at most 75 tokens"):
        pipe("word " * 90, height=RES, width=RES)
    with pytest.raises(InputError, match="Input 'width'"):
        pipe("a cat", height=RES, width=RES + 4)
    with pytest.raises(WeightsFormatError, match="text-to-image"):
        SwiftBrushPipeline(build_tiny_components(seed=0, in_channels=8))
    vpred = build_tiny_components(seed=2)
    vpred.scheduler_config = {**vpred.scheduler_config, "prediction_type": "v_prediction"}
    with pytest.raises(WeightsFormatError, match="epsilon"):
        SwiftBrushPipeline(vpred)


# ----------------------------------------------------------------------------------------------------
# LoRA teacher and VSD


def test_lora_teacher_is_rank_64_alpha_108_on_to_q_and_to_v_and_off_is_the_teacher():
    unet = build_tiny_components(seed=2).unet
    original = copy.deepcopy(unet)
    teacher = LoraTeacher(unet)
    layers = {n.split(".lora_")[0] for n, _ in teacher.named_params}
    assert layers and all(n.endswith((".to_q", ".to_v")) for n in layers)
    n_attn = sum(1 for n, _ in original.named_modules() if n.endswith((".attn1", ".attn2")))
    assert len(layers) == 2 * n_attn
    lora_a = dict(teacher.named_params)[next(n for n, _ in teacher.named_params if "lora_A" in n)]
    assert lora_a.shape[0] == 64
    module = unet.get_submodule(next(iter(layers)))
    assert module.scaling[ADAPTER] == pytest.approx(108 / 64)
    assert all(p.requires_grad for p in teacher.params)
    assert not any(p.requires_grad for _, p in teacher.base_named_params())

    with torch.no_grad():
        for n, p in teacher.named_params:
            if "lora_B" in n:
                p.normal_(0, 0.1)
    x, t, emb = torch.randn(2, 4, 8, 8), torch.tensor([500, 30]), torch.randn(2, 77, 48)
    with torch.no_grad():
        ref = original(x, t, encoder_hidden_states=emb).sample
        with teacher.lora(False):
            off = unet(x, t, encoder_hidden_states=emb).sample
        with teacher.lora(True):
            on = unet(x, t, encoder_hidden_states=emb).sample
    # `original` is a distinct instance (a deep copy): float noise only (CPU kernels are not bit-stable
    # across instances, see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL); the LoRA itself moves it far
    torch.testing.assert_close(off, ref, rtol=1e-5, atol=1e-5, msg="adapter off must be the original teacher")
    assert not torch.allclose(on, ref)
    assert not teacher.lora_enabled  # the context restored the state


def _vsd_inputs(seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    comps = build_tiny_components(seed=2)
    cond = _embed(comps, PROMPTS[:b])
    uncond = _embed(comps, [""])
    x0 = torch.randn(b, 4, 8, 8, generator=g)
    t = torch.tensor([20, 980][:b])
    noise = torch.randn(b, 4, 8, 8, generator=g)
    return comps, cond, uncond, x0, t, noise


def test_vsd_gradient_reaching_x0_is_weighted_score_difference_over_numel():
    comps, cond, uncond, x0, t, noise = _vsd_inputs()
    original = copy.deepcopy(comps.unet)
    teacher = LoraTeacher(comps.unet)
    with torch.no_grad():
        for n, p in teacher.named_params:
            if "lora_B" in n:
                p.normal_(0, 0.05)
    alphas = training_alphas_cumprod(comps.scheduler_config)
    scale = 4.5
    x0 = x0.clone().requires_grad_(True)
    loss, g = vsd_student_loss(x0, teacher, cond, uncond, t, noise, alphas, scale)
    loss.backward()

    # independently: separate U-Net calls per branch; the frozen teacher is the untouched original copy
    a = alphas.double()[t].view(-1, 1, 1, 1)
    x_t = (a.sqrt() * x0.detach().double() + (1 - a).sqrt() * noise.double()).float()
    with torch.no_grad():

        def cfg(model):
            eu = model(x_t, t, encoder_hidden_states=uncond.expand(2, -1, -1)).sample.double()
            ec = model(x_t, t, encoder_hidden_states=cond).sample.double()
            return eu + scale * (ec - eu)

        eps_teacher = cfg(original)
        with teacher.lora(True):
            eps_lora = cfg(comps.unet)
    expected = (1 - a) * (eps_teacher - eps_lora) / x0.numel()
    assert expected.abs().max() > 1e-6  # a real, non-zero gradient
    torch.testing.assert_close(x0.grad.double(), expected, rtol=1e-3, atol=1e-7)
    torch.testing.assert_close(g.double(), expected * x0.numel(), rtol=1e-3, atol=1e-5)
    assert loss.item() == pytest.approx(0.5 * (g.double() ** 2).mean().item(), rel=1e-5)


def test_vsd_gradient_is_exactly_zero_with_a_fresh_lora():
    comps, cond, uncond, x0, t, noise = _vsd_inputs(seed=1)
    teacher = LoraTeacher(comps.unet)  # lora_B = 0: the LoRA teacher equals the teacher
    x0 = x0.clone().requires_grad_(True)
    loss, g = vsd_student_loss(
        x0, teacher, cond, uncond, t, noise, training_alphas_cumprod(comps.scheduler_config)
    )
    loss.backward()
    assert torch.count_nonzero(g) == 0 and torch.count_nonzero(x0.grad) == 0 and loss.item() == 0


def test_small_loss_functions():
    a = torch.tensor([0.25, 0.81]).view(-1, 1, 1, 1)
    e_t, e_l = torch.ones(2, 1, 1, 2), torch.zeros(2, 1, 1, 2)
    e_t[0, 0, 0, 0] = float("nan")
    g = vsd_gradient(e_t, e_l, a)
    assert torch.isfinite(g).all() and g[0, 0, 0, 0] == 0 and g[1, 0, 0, 0] == pytest.approx(0.19)
    eps_hat, eps = torch.ones(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)
    assert lora_teacher_loss(eps_hat, eps, a).item() == pytest.approx((0.25 + 0.81) / 2)


# ----------------------------------------------------------------------------------------------------
# Training


def test_prompt_embeddings_are_encoded_once_and_cached(tmp_path):
    comps = build_tiny_components(seed=2)
    cache = tmp_path / "emb.safetensors"
    table = T.PromptTable(PROMPTS, comps.tokenizer, comps.text_encoder, "cpu", cache, max_cached=100)
    idx = torch.tensor([3, 0, 3])
    torch.testing.assert_close(table.rows(idx), _embed(comps, [PROMPTS[3], PROMPTS[0], PROMPTS[3]]))
    torch.testing.assert_close(table.null, _embed(comps, [""]))
    stamp = cache.stat().st_mtime_ns
    again = T.PromptTable(PROMPTS, comps.tokenizer, comps.text_encoder, "cpu", cache, max_cached=100)
    assert cache.stat().st_mtime_ns == stamp and torch.equal(again.rows(idx), table.rows(idx))  # reused
    lazy = T.PromptTable(PROMPTS, comps.tokenizer, comps.text_encoder, "cpu", None, max_cached=2)
    assert lazy.lazy and torch.equal(lazy.rows(idx), table.rows(idx))
    with torch.no_grad():
        norm = next(
            p for n, p in comps.text_encoder.named_parameters() if n.endswith("final_layer_norm.weight")
        )
        norm.mul_(2)  # another encoder: the cache is not reused
    other = T.PromptTable(PROMPTS, comps.tokenizer, comps.text_encoder, "cpu", cache, max_cached=100)
    assert not torch.allclose(other.rows(idx), table.rows(idx))


def _draws(cfg, step, n_prompts=4):
    return T.draw_step(T.step_generator(cfg.seed, step), n_prompts, cfg.batch_size, (4, 8, 8), cfg, 1000)


def test_a_training_step_trains_the_right_things(tmp_path):
    comps = build_tiny_components(seed=2)
    cfg = T.TrainConfig(teacher="tiny", prompts="", out=str(tmp_path), batch_size=2, resolution=RES)
    accelerator = make_accelerator("no", tmp_path, cpu=True)
    student = copy.deepcopy(comps.unet).requires_grad_(True).train()
    torch.manual_seed(0)
    teacher = LoraTeacher(comps.unet)
    opt_s = torch.optim.Adam(student.parameters(), lr=cfg.student_lr)
    opt_l = torch.optim.Adam(teacher.params, lr=cfg.lora_lr)
    student, opt_s, opt_l = accelerator.prepare(student, opt_s, opt_l)
    cond, uncond = _embed(comps, PROMPTS[:2]), _embed(comps, [""])
    alphas = training_alphas_cumprod(comps.scheduler_config)

    def snap():
        return (
            {n: p.detach().clone() for n, p in student.named_parameters()},
            {n: p.detach().clone() for n, p in teacher.base_named_params()},
            {n: p.detach().clone() for n, p in teacher.named_params},
        )

    def changed(before, module_params):
        return {n for n, p in module_params if not torch.equal(before[n], p)}

    s0, b0, l0 = snap()
    stats = T.distill_step(
        accelerator,
        student,
        teacher,
        opt_s,
        opt_l,
        cond,
        uncond,
        _draws(cfg, 0),
        alphas,
        float(alphas[999]),
        cfg.guidance,
        cfg.max_grad_norm,
    )
    # step 1: the LoRA teacher starts equal to the teacher, so the VSD gradient is 0 and the student stays
    assert stats["loss_vsd"].item() == 0 and stats["loss_lora"].item() > 0
    assert not changed(s0, student.named_parameters())
    assert not changed(b0, teacher.base_named_params()), "the frozen teacher changed"
    lora_changed = changed(l0, teacher.named_params)
    assert lora_changed and all("lora_B" in n for n in lora_changed)  # lora_A has no gradient while B = 0

    s1, _, l1 = snap()
    stats = T.distill_step(
        accelerator,
        student,
        teacher,
        opt_s,
        opt_l,
        cond,
        uncond,
        _draws(cfg, 1),
        alphas,
        float(alphas[999]),
        cfg.guidance,
        cfg.max_grad_norm,
    )
    assert stats["loss_vsd"].item() > 0
    assert len(changed(s1, student.named_parameters())) > len(s1) // 2, "the student did not train"
    assert not changed(b0, teacher.base_named_params()), "the frozen teacher changed"
    assert changed(l1, teacher.named_params)
    all_params = {n for n, _ in teacher.unet.named_parameters()}
    assert changed(l1, teacher.named_params) <= all_params - set(b0)


def _two_steps(gradient_checkpointing: bool):
    comps = build_tiny_components(seed=2)
    cfg = T.TrainConfig(teacher="tiny", prompts="", out="unused", batch_size=2, resolution=RES)
    accelerator = make_accelerator("no", Path("unused"), cpu=True)
    student = copy.deepcopy(comps.unet).requires_grad_(True).train()
    torch.manual_seed(0)
    teacher = LoraTeacher(comps.unet)
    if gradient_checkpointing:
        student.enable_gradient_checkpointing()
        teacher.unet.enable_gradient_checkpointing()
    opt_s = torch.optim.Adam(student.parameters(), lr=cfg.student_lr)
    opt_l = torch.optim.Adam(teacher.params, lr=cfg.lora_lr)
    student, opt_s, opt_l = accelerator.prepare(student, opt_s, opt_l)
    cond, uncond = _embed(comps, PROMPTS[:2]), _embed(comps, [""])
    alphas = training_alphas_cumprod(comps.scheduler_config)
    for step in range(2):
        T.distill_step(
            accelerator,
            student,
            teacher,
            opt_s,
            opt_l,
            cond,
            uncond,
            _draws(cfg, step),
            alphas,
            float(alphas[999]),
            cfg.guidance,
            cfg.max_grad_norm,
        )
    return dict(student.named_parameters()), dict(teacher.named_params)


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_gradient_checkpointing_gives_the_same_updates():
    """Checkpointing recomputes forwards during backward: the LoRA must still be enabled there."""
    s_ref, l_ref = _two_steps(False)
    s_gc, l_gc = _two_steps(True)
    for n in l_ref:
        torch.testing.assert_close(l_gc[n], l_ref[n], rtol=0, atol=1e-7)
    for n in s_ref:
        torch.testing.assert_close(s_gc[n], s_ref[n], rtol=0, atol=1e-9)


def _cli(assets, out, *extra):
    return T.main(
        [
            "--teacher",
            str(assets["teacher"]),
            "--prompts",
            str(assets["prompts"]),
            "--out",
            str(out),
            "--resolution",
            str(RES),
            "--batch-size",
            "2",
            "--max-steps",
            "2",
            "--save-every",
            "1",
            "--preview-every",
            "1",
            "--preview-count",
            "2",
            "--cpu",
            *extra,
        ]
    )


@pytest.mark.slow  # trains (command line)
def test_cli_writes_a_loadable_student_and_resume_is_bit_identical(assets, tmp_path, capsys):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert _cli(assets, run_a) == 0
    printed = capsys.readouterr().out
    assert "step 2/2 loss_vsd" in printed and "loss_lora" in printed
    rows = (run_a / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss_vsd,loss_lora") and len(rows) == 3
    assert sorted(p.name for p in (run_a / "previews").glob("*.png")) == [
        "step-000001.png",
        "step-000002.png",
    ]
    ckpt = run_a / "checkpoint-2"
    assert {"model.safetensors", "lora_teacher.safetensors", "ema.safetensors", "trainer_state.json"} <= {
        p.name for p in ckpt.iterdir()
    }
    assert (run_a / "text_embeddings.safetensors").is_file()

    final = run_a / "final"
    comps = load_components(final)
    teacher = load_components(assets["teacher"])
    for sub in ("vae", "text_encoder"):  # the teacher's, byte for byte
        name = "diffusion_pytorch_model.safetensors" if sub == "vae" else "model.safetensors"
        assert (final / sub / name).read_bytes() == (assets["teacher"] / sub / name).read_bytes()
    assert any(
        not torch.equal(a, b)
        for a, b in zip(comps.unet.state_dict().values(), teacher.unet.state_dict().values())
    )
    assert json.loads((final / "swiftbrush.json").read_text())["step"] == 2
    out = SwiftBrushPipeline(comps)(PROMPTS[0], seed=0, height=RES, width=RES)
    assert out.images.shape == (1, RES, RES, 3) and torch.isfinite(out.images).all()

    # resume from step 1 into another folder: step 2 is bit-identical to the uninterrupted run
    assert _cli(assets, run_b, "--resume", str(run_a / "checkpoint-1")) == 0
    assert "resumed from" in capsys.readouterr().out
    for name in ("model.safetensors", "lora_teacher.safetensors", "ema.safetensors"):
        a, b = load_file(str(run_a / "checkpoint-2" / name)), load_file(str(run_b / "checkpoint-2" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ua = load_file(str(final / "unet" / "diffusion_pytorch_model.safetensors"))
    ub = load_file(str(run_b / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(ua[k], ub[k]) for k in ua)


# ----------------------------------------------------------------------------------------------------
# Bad inputs


def _config(assets, out, **kw):
    base = dict(
        teacher=str(assets["teacher"]),
        prompts=str(assets["prompts"]),
        out=str(out),
        resolution=RES,
        batch_size=1,
        max_steps=1,
        save_every=0,
        preview_every=0,
        cpu=True,
    )
    base.update(kw)
    return T.TrainConfig(**base)


def test_empty_or_missing_prompt_file_is_a_clear_error(assets, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n")
    with pytest.raises(T.PromptFileError, match="contains no prompts"):
        T.train(_config(assets, tmp_path / "o", prompts=str(empty)))
    with pytest.raises(FileNotFoundError, match="prompt file .*nope.txt not found"):
        T.train(_config(assets, tmp_path / "o", prompts=str(tmp_path / "nope.txt")))
    assert (
        T.main(["--teacher", str(assets["teacher"]), "--prompts", str(empty), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "contains no prompts" in capsys.readouterr().err


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_teacher_student_architecture_mismatch_is_a_clear_error(assets, tmp_path):
    from diffusers import UNet2DConditionModel
    from papernodes.models.common.tiny import TINY_UNET

    other = UNet2DConditionModel(**{**TINY_UNET, "cross_attention_dim": 32})
    other.save_pretrained(tmp_path / "other_unet", safe_serialization=True)
    with pytest.raises(
        WeightsFormatError, match="does not have the teacher's architecture.*cross_attention_dim"
    ):
        T.train(_config(assets, tmp_path / "o", student_init=str(tmp_path / "other_unet")))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsFormatError, match="do not match the teacher's architecture"):
        load_unet_like(tmp_path / "other.safetensors", load_components(assets["teacher"]).unet)
    with pytest.raises(WeightsFormatError, match="text-to-image"):
        ip2p = tmp_path / "ip2p"
        save_diffusers_folder(build_tiny_components(seed=0, in_channels=8), ip2p)
        T.train(_config(assets, tmp_path / "o", teacher=str(ip2p)))


def test_student_unet_files_load_in_every_layout(assets, tmp_path):
    from papernodes.models.common import ldm_layout

    template = load_components(assets["teacher"]).unet
    other = build_tiny_components(seed=5).unet
    want = other.state_dict()
    diffusers_file, ldm_file = tmp_path / "unet_diffusers.safetensors", tmp_path / "unet_ldm.safetensors"
    save_file({k: v.contiguous() for k, v in want.items()}, str(diffusers_file))
    ldm = ldm_layout.unet_to_ldm(want, dict(other.config))
    save_file({k[len(ldm_layout.UNET_PREFIX) :]: v.contiguous() for k, v in ldm.items()}, str(ldm_file))
    other.save_pretrained(tmp_path / "unet_folder", safe_serialization=True)
    for path in (diffusers_file, ldm_file, tmp_path / "unet_folder"):
        got = load_unet_like(path, template).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), path.name
    assert not torch.equal(template.conv_in.weight, other.conv_in.weight)  # a real swap, template untouched


def test_missing_weights_file_is_a_clear_error(assets, tmp_path):
    broken = tmp_path / "broken_teacher"
    shutil.copytree(assets["teacher"], broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(
        WeightsNotFoundError, match=r"unet/diffusion_pytorch_model.safetensors.*broken_teacher"
    ):
        T.train(_config(assets, tmp_path / "o", teacher=str(broken)))
    with pytest.raises(WeightsNotFoundError, match="'missing_teacher' was not found"):
        T.train(_config(assets, tmp_path / "o", teacher=str(tmp_path / "missing_teacher")))
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        T.train(_config(assets, tmp_path / "o", resume=str(tmp_path)))


def test_bad_config_values_are_rejected(assets, tmp_path):
    with pytest.raises(InputError, match="resolution"):
        T.train(_config(assets, tmp_path / "o", resolution=60))
    with pytest.raises(InputError, match="mixed_precision"):
        T.train(_config(assets, tmp_path / "o", mixed_precision="fp8"))
    with pytest.raises(InputError, match="t_max"):
        T.train(_config(assets, tmp_path / "o", t_min=500, t_max=100))
