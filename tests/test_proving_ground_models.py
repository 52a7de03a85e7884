"""The shipped proving-ground models: budgets, the pack's loaders, and behaviour only trained models have."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from papernodes.models.common.loading import clear_cache, load_components, load_single_file
from papernodes.models.common.saving import save_single_file
from papernodes.models.proving_ground import zoo
from papernodes.models.proving_ground.train_base import scaled_linear_alphas_cumprod, tokenize
from papernodes.models.proving_ground.world import WorldDataset, caption, render

MB = 2**20


def _files(folder):
    return [p for p in folder.rglob("*.safetensors")]


def test_every_model_is_shipped_within_the_size_budget():
    assert zoo.shipped() == {"base": True, "colorize": True, "lcm": True, "swiftbrush": True}
    sizes = {p.relative_to(zoo.WEIGHTS_DIR).as_posix(): p.stat().st_size for p in _files(zoo.WEIGHTS_DIR)}
    assert all(s <= 20 * MB for s in sizes.values()), sizes
    # the image world (its four models and two evaluators) within 80 MB; every other method's world, one
    # folder each, within its budget (DESIGN.md: 20 MB; the dance world 40 MB, issue 20): the clone grows by
    # at most that per method
    budgets = {"world_hands": 20 * MB, "world_3d": 20 * MB, "world_dance": 40 * MB, "world_avatar": 20 * MB}
    own_worlds = tuple(budgets)
    image_world = {k: v for k, v in sizes.items() if k.split("/")[0] not in own_worlds}
    assert sum(image_world.values()) <= 80 * MB, sum(image_world.values()) / MB
    for world, budget in budgets.items():
        total = sum(v for k, v in sizes.items() if k.split("/")[0] == world)
        assert 0 < total <= budget, (world, total / MB)
    self_describing = {
        "attribute_classifier.safetensors",
        "motion_classifier.safetensors",
    }  # config in metadata
    for path in _files(zoo.WEIGHTS_DIR):  # diffusers/transformers configs beside every model file
        if path.name not in self_describing and path.parent.name not in own_worlds:
            assert (path.parent / "config.json").is_file(), path


def test_motion_classifier_is_self_describing_and_loads():
    from papernodes.models.proving_ground import motion_world
    from safetensors import safe_open

    with safe_open(str(motion_world.DEFAULT_WEIGHTS), framework="pt") as f:
        meta = f.metadata() or {}
    assert meta, "the motion classifier's config and motion names live in its metadata"
    clf = motion_world.load_motion_classifier()
    assert not clf.training


def test_hand_world_files_are_self_describing_and_load():
    """HandDiffuse's world models carry no config.json: the generator's config is in its metadata, the
    evaluator's architecture is fixed in code; both load through the pack's own loaders."""
    from papernodes.models.handdiffuse import reproduce
    from papernodes.models.handdiffuse.classifier import MotionEvaluator
    from papernodes.models.handdiffuse.pipeline import load_model

    model = load_model(reproduce.WEIGHTS / reproduce.GENERATOR_FILE)
    assert model.config.window == 60 and model.denoiser.x0_skip and model.config.feature_std is not None
    evaluator = MotionEvaluator.load(reproduce.WEIGHTS / reproduce.EVALUATOR_FILE)
    assert evaluator.mean.shape == evaluator.std.shape == (162,)  # classifier.FEATURES


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return load_components(zoo.base_dir())


def test_base_loads_through_the_pack_loader_in_float32(base):
    assert base.unet.dtype == base.vae.dtype == base.text_encoder.dtype == torch.float32
    assert 2 ** (len(base.vae.config.block_out_channels) - 1) == 8 and base.vae.config.latent_channels == 4
    assert base.pixel_multiple == 32  # 8x VAE times the U-Net's two downsamplings
    assert base.scheduler_config["beta_schedule"] == "scaled_linear"
    assert base.tokenizer.vocab_size == 49408  # the real CLIP BPE tokenizer


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_assembled_pipelines_load_and_single_file_round_trip(tmp_path):
    colorizer = load_components(zoo.assemble_pipeline("colorize", tmp_path / "colorizer"))
    assert colorizer.unet.config.in_channels == 8
    lcm = zoo.assemble_pipeline("lcm", tmp_path / "lcm")
    assert (
        json.loads((lcm / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "LCMScheduler"
    )
    base_sched = json.loads((zoo.base_dir() / "scheduler" / "scheduler_config.json").read_text())
    assert base_sched["_class_name"] != "LCMScheduler"  # the hard-linked base folder was not written through
    single = save_single_file(colorizer, tmp_path / "colorizer.safetensors", dtype=torch.float16)
    clear_cache()
    again = load_single_file(single)
    x = torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = colorizer.unet(x, 500, text).sample
        b = again.unet(x, 500, text).sample
    assert torch.allclose(a, b, atol=1e-6)  # weights are float16 values already: the round trip is exact


def _scenes(n, seed=5):
    ds = WorldDataset(n, seed=seed, split="heldout")
    scenes = [ds.scene(i) for i in range(n)]
    return scenes, torch.from_numpy(np.stack([render(s) for s in scenes])).permute(
        0, 3, 1, 2
    ).float() / 127.5 - 1


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_vae_reconstructs_held_out_scenes(base):
    _, x = _scenes(8)
    with torch.no_grad():
        rec = base.vae.decode(base.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((rec - x) / 2).pow(2).mean().item()
    psnr = 10 * np.log10(1 / mse)
    # a random VAE gives < 10 dB; the shipped one 25.5 dB on these scenes (24.05 before its decoder phase)
    assert psnr > 25.0, psnr
    assert base.vae.config.scaling_factor != 1.0  # set from the latent std after training


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_teacher_denoises_its_own_captions_better_than_wrong_ones(base):
    """Text conditioning is learned: the true caption predicts the noise better than a shuffled caption."""
    scenes, x = _scenes(16, seed=6)
    caps = [caption(s) for s in scenes]
    wrong = caps[1:] + caps[:1]
    g = torch.Generator().manual_seed(0)
    ac = scaled_linear_alphas_cumprod()
    with torch.no_grad():
        z0 = base.vae.encode(x).latent_dist.mode() * base.vae.config.scaling_factor
        t = torch.full((16,), 500)
        noise = torch.randn(z0.shape, generator=g)
        zt = ac[500].sqrt() * z0 + (1 - ac[500]).sqrt() * noise
        err = {}
        for name, texts in (("true", caps), ("wrong", wrong)):
            emb = base.text_encoder(tokenize(base.tokenizer, texts))[0]
            err[name] = (base.unet(zt, t, emb).sample - noise).pow(2).mean().item()
    # Measured 0.40 (t = 500); a text-blind model gives 1.0 (the first shipped teacher, without the text
    # encoder's warm start: 0.93).
    assert err["true"] < 0.6 * err["wrong"], err


def test_shipped_hand_model_generates_recognisable_actions():
    """Only a trained generator does this (an untrained one scores ~1 in 7): one 4 s clip per label at the
    benchmark's 20 steps, recognised by the world's evaluator (benchmark: 88 % over 140 clips; one seed
    per label here, so at least 5 of 7)."""
    from papernodes.models.handdiffuse import reproduce
    from papernodes.models.handdiffuse.classifier import MotionEvaluator
    from papernodes.models.handdiffuse.pipeline import load_model
    from papernodes.models.handdiffuse.world import ACTIONS

    model = load_model(reproduce.WEIGHTS / reproduce.GENERATOR_FILE)
    evaluator = MotionEvaluator.load(reproduce.WEIGHTS / reproduce.EVALUATOR_FILE)
    clips = [model.generate(a, 4.0, 30.0, seed=k, steps=20) for k, a in enumerate(ACTIONS)]
    assert evaluator.accuracy(clips, list(ACTIONS)) >= 5 / 7


def test_shipped_hand_model_separated_keeps_rubbing_hands_touching_without_passing_through():
    """Rub keeps the palms pressed together, so the model alone often passes one hand through the other
    (this seed: 17 mm deep); with separate_hands the same clip touches (gap < 5 mm somewhere) and no frame
    is deeper than 1 mm."""
    from papernodes.models.handdiffuse import reproduce
    from papernodes.models.handdiffuse.metrics import hand_gap, penetration_depth
    from papernodes.models.handdiffuse.pipeline import load_model

    model = load_model(reproduce.WEIGHTS / reproduce.GENERATOR_FILE)
    plain, apart = (
        model.generate("rub", 2.0, 30.0, seed=1, steps=20, separate_hands=s) for s in (False, True)
    )
    assert float(penetration_depth(plain.global_joints()).max()) > 0.002  # the model alone presses through
    joints = apart.global_joints()
    assert float(penetration_depth(joints).max()) < 1e-3
    assert float(hand_gap(joints).min()) < 0.005  # still touching


def test_shipped_hand_model_separation_line_search_helps_where_fingers_cross(monkeypatch):
    """Tapping fingertips cross the fingers, where FK bends the overlap depth within one Newton step: on
    this seed plain steps (backtracks=0) bounce for all 100 final steps and leave 8 frames deeper than 1 mm
    (3.6 mm at worst); with the line search 2 frames are left (2.0 mm). Measured 2026-12-07; over 30 seeds
    of this action 12 -> 3 frames of 3 600 (docs/handdiffuse.md)."""
    import functools

    from papernodes.models.handdiffuse import control, pipeline, reproduce
    from papernodes.models.handdiffuse.metrics import penetration_depth

    model = pipeline.load_model(reproduce.WEIGHTS / reproduce.GENERATOR_FILE)

    def deep(backtracks: int) -> torch.Tensor:
        monkeypatch.setattr(
            pipeline, "separate_x0", functools.partial(control.separate_x0, backtracks=backtracks)
        )
        clip = model.generate("tap_fingertips", 4.0, 30.0, seed=3015, steps=20, separate_hands=True)
        return penetration_depth(clip.global_joints())

    plain, searched = deep(0), deep(6)
    assert int((searched > 1e-3).sum()) < int((plain > 1e-3).sum()) and float(searched.max()) < float(
        plain.max()
    )


def test_3d_world_files_are_self_describing_and_load():
    """BiDiff's world models carry their configs in their metadata and load through the pack's loaders."""
    from papernodes.models.bidiff.demo import SHIPPED, SHIPPED_MODEL
    from papernodes.models.bidiff.grid_prior import load_grid_prior
    from papernodes.models.bidiff.pipeline import load_bidiff

    assert load_grid_prior(SHIPPED).config.resolution == 16
    assert load_bidiff(SHIPPED_MODEL).volume.config.views == 4


def _heldout_focus_captions(n: int = 18) -> list[str]:
    ds = WorldDataset(n, seed=21, split="heldout", layout="focus")
    return [caption(ds.scene(i)) for i in range(n)]


def _teacher_images(base, caps: list[str], steps: int) -> np.ndarray:
    """uint8 images of the teacher (DDIM with SD1.5's settings, CFG 5), image k seeded with k."""
    from diffusers import StableDiffusionPipeline
    from papernodes.models.common.schedulers import make_scheduler

    pipe = StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                   unet=base.unet, scheduler=make_scheduler("ddim", base.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(k) for k in range(len(caps))]
    out = pipe(caps, num_inference_steps=steps, guidance_scale=5.0, generator=gens, height=128, width=128,
               output_type="np").images  # fmt: skip
    return (out * 255).round().astype(np.uint8)


@pytest.mark.slow  # samples 18 images: ~20 s on one thread
def test_teacher_paints_the_captions_colors(base):
    """The teacher paints the colors its caption names: 18 held-out focus captions, 25 DDIM steps, CFG 5,
    classified by the world's attribute classifier. Chance is about 1 in 10 per attribute. Benchmark (200
    captions): background 97 %, object color 90 %; shape is NOT learnt (23.5 %, chance 17 %: issue 19), so
    it is not asserted here."""
    from papernodes.models.proving_ground import classifier as C

    caps = _heldout_focus_captions()
    acc = C.attribute_accuracy(_teacher_images(base, caps, steps=25), caps, C.load_classifier())
    assert acc["bg_color"] >= 0.75 and acc["color"] >= 0.65, acc


@pytest.mark.slow
@torch.no_grad()
def test_shipped_colorizer_learnt_the_worlds_colour_priors(tmp_path):
    """Issue 19: the colorizer (luminance lock, 20 steps) against its untrained InstructPix2Pix init on
    held-out prior-palette scenes. Benchmark (100 scenes): 14.97 dB vs the init's 10.92 (and the grey
    input's 14.06); on 20 scenes the grey comparison is within the scene-to-scene spread, the init's not."""
    from papernodes.models.colorize.metrics import image_metrics
    from papernodes.models.colorize.pipeline import ColorizePipeline, ColorizeSettings
    from papernodes.models.colorize.train import expand_conv_in_for_ip2p
    from papernodes.models.common.loading import SDComponents

    ds = WorldDataset(20, seed=7, split="heldout", palette="prior")
    images = torch.from_numpy(np.stack([render(ds.scene(i)) for i in range(20)])).float() / 255
    trained = load_components(zoo.assemble_pipeline("colorize", tmp_path / "colorizer"))
    base = load_components(zoo.base_dir())
    init = SDComponents(expand_conv_in_for_ip2p(copy.deepcopy(base.unet)), base.vae, base.text_encoder,
                        base.tokenizer, base.scheduler_config)  # fmt: skip
    settings = ColorizeSettings(steps=20, keep_luminance=True, seed=0)
    psnr = {name: image_metrics(ColorizePipeline(c)(images, settings), images)["mean_psnr"]
            for name, c in (("trained", trained), ("init", init))}  # fmt: skip
    assert psnr["trained"] > psnr["init"] + 2.0, psnr


@pytest.mark.slow  # 18 one-step images each for the student and the teacher: ~10 s on one thread
@torch.no_grad()
def test_shipped_swiftbrush_student_paints_the_caption_in_one_step(base, tmp_path):
    """Image-free distillation taught the student one-step sampling: on 18 held-out focus captions its
    single step paints the caption's background color where the teacher forced to one step paints noise
    (18 captions: 100 % vs 22 %; benchmark, 200 captions: 93.5 % vs 12 %; the raw guidance-4.5 student
    shipped until 2026-12-07: 83 % and 77 %)."""
    from papernodes.models.proving_ground import classifier as C
    from papernodes.models.swiftbrush.sampler import SwiftBrushPipeline

    caps = _heldout_focus_captions()
    student = SwiftBrushPipeline(load_components(zoo.assemble_pipeline("swiftbrush", tmp_path / "student")))
    one_step = np.concatenate([(student(c, seed=i, height=128, width=128).images.numpy() * 255).round()
                               for i, c in enumerate(caps)]).astype(np.uint8)  # fmt: skip
    clf = C.load_classifier()
    acc = C.attribute_accuracy(one_step, caps, clf)
    acc_forced = C.attribute_accuracy(_teacher_images(base, caps, steps=1), caps, clf)
    assert acc["bg_color"] >= 0.75 and acc["bg_color"] >= acc_forced["bg_color"] + 0.5, (acc, acc_forced)
