"""Colorization sampling: equal to diffusers' reference InstructPix2Pix pipeline; luminance; seeds; sizes."""

from __future__ import annotations

import subprocess
import sys

import kornia.color as kc
import pytest
import torch
from papernodes.models.colorize.metrics import image_metrics
from papernodes.models.colorize.pipeline import ColorizePipeline, ColorizeSettings
from papernodes.models.common import tiny
from papernodes.models.common.errors import InputError
from papernodes.models.common.image import fit_to_multiple, restore_size, to_grayscale, transfer_luminance


@pytest.fixture(scope="module")
def pipe():
    return ColorizePipeline(tiny.build_tiny_components(seed=0, in_channels=8))


def _gray_batch(b=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(b, h, w, 1, generator=g)
    return y.expand(-1, -1, -1, 3).contiguous()


@torch.no_grad()
def test_matches_diffusers_instruct_pix2pix_pipeline(pipe):
    """Our sampler equals diffusers' StableDiffusionInstructPix2PixPipeline on the same model and seed."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    c = pipe.components
    images = _gray_batch(1, 32, 32)
    settings = ColorizeSettings(
        instruction="colorize it",
        steps=4,
        text_guidance=5.0,
        image_guidance=1.3,
        scheduler="euler_ancestral",
        seed=7,
        keep_luminance=False,
    )
    ours = pipe(images, settings)

    from papernodes.models.common.schedulers import make_scheduler

    ref = StableDiffusionInstructPix2PixPipeline(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=make_scheduler("euler_ancestral", c.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    ref.set_progress_bar_config(disable=True)
    out = ref(
        prompt="colorize it",
        image=images.permute(0, 3, 1, 2),
        num_inference_steps=4,
        guidance_scale=5.0,
        image_guidance_scale=1.3,
        generator=torch.Generator().manual_seed(7),
        output_type="pt",
    ).images
    torch.testing.assert_close(ours, out.permute(0, 2, 3, 1), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_keep_luminance_preserves_input_lightness(pipe):
    images = _gray_batch(2, 40, 24)
    out = pipe(images, ColorizeSettings(steps=2, keep_luminance=True, seed=1))
    l_in = kc.rgb_to_lab(images.permute(0, 3, 1, 2))[:, 0]
    l_out = kc.rgb_to_lab(out.permute(0, 3, 1, 2))[:, 0]
    assert (l_in - l_out).abs().max() < 0.05  # L is 0..100; 8-bit rounding alone is ~0.2
    # ...and it is colored: chroma comes from the model, not zero.
    assert kc.rgb_to_lab(out.permute(0, 3, 1, 2))[:, 1:].abs().mean() > 0.1


def test_transfer_luminance_keeps_chroma_in_gamut_and_hue_out_of_it():
    g = torch.Generator().manual_seed(3)
    colored = torch.rand(1, 16, 16, 3, generator=g)
    same_l = transfer_luminance(colored, colored)
    torch.testing.assert_close(same_l, colored, atol=2e-4, rtol=0)  # own L: nothing changes
    bright = torch.full((1, 16, 16, 3), 0.97)  # very light L under saturated chroma: leaves the gamut
    out = transfer_luminance(bright, colored)
    lab_out = kc.rgb_to_lab(out.permute(0, 3, 1, 2))
    lab_bright = kc.rgb_to_lab(bright.permute(0, 3, 1, 2))
    assert (lab_out[:, 0] - lab_bright[:, 0]).abs().max() < 0.05
    hue_in = torch.atan2(*kc.rgb_to_lab(colored.permute(0, 3, 1, 2))[:, [2, 1]].unbind(1))
    hue_out = torch.atan2(*lab_out[:, [2, 1]].unbind(1))
    chroma = lab_out[:, 1:].norm(dim=1)
    diff = torch.remainder(hue_in - hue_out + torch.pi, 2 * torch.pi) - torch.pi
    assert diff[chroma > 1].abs().max() < 1e-2


@torch.no_grad()
def test_same_seed_same_output_other_seed_other_output(pipe):
    images = _gray_batch(1)
    s = ColorizeSettings(steps=3, keep_luminance=False, seed=11)
    a, b = pipe(images, s), pipe(images, s)
    assert torch.equal(a, b)
    c = pipe(images, ColorizeSettings(steps=3, keep_luminance=False, seed=12))
    assert not torch.allclose(a, c)


@torch.no_grad()
@pytest.mark.parametrize("mode", ["pad", "resize"])
def test_any_size_comes_back_at_its_own_size(pipe, mode):
    images = _gray_batch(1, 37, 53)
    out = pipe(images, ColorizeSettings(steps=1, resize_mode=mode))
    assert out.shape == images.shape
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_pad_restore_is_exact_identity():
    images = torch.rand(2, 37, 5, 3)
    x, info = fit_to_multiple(images, 16, "pad")
    assert x.shape[-2] % 16 == 0 and x.shape[-1] % 16 == 0
    assert torch.equal(restore_size(x, info), images)


def test_color_input_is_seen_as_grayscale(pipe):
    color = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(5))
    s = ColorizeSettings(steps=2, keep_luminance=False, seed=3)
    torch.testing.assert_close(pipe(color, s), pipe(to_grayscale(color), s))


@pytest.mark.parametrize(
    "bad,match", [(torch.zeros(0, 8, 8, 3), "non-empty"), (torch.zeros(8, 8), "IMAGE tensor")]
)
def test_bad_image_names_the_input(pipe, bad, match):
    with pytest.raises(InputError, match=f"Input 'image'.*{match}"):
        pipe(bad, ColorizeSettings(steps=1))


def test_plain_sd_model_is_rejected_with_a_clear_error():
    with pytest.raises(InputError, match="8 input channels"):
        ColorizePipeline(tiny.build_tiny_components(seed=0, in_channels=4))


def test_metrics_match_float64_formulas():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 24, 24, 3, generator=g), torch.rand(2, 24, 24, 3, generator=g)
    m = image_metrics(a, b)
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)
    assert m["mse"] == pytest.approx(mse.tolist(), rel=1e-9)
    assert m["psnr"] == pytest.approx((10 * torch.log10(1 / mse)).tolist(), rel=1e-6)
    assert m["mae"] == pytest.approx((a.double() - b.double()).abs().flatten(1).mean(1).tolist(), rel=1e-9)
    same = image_metrics(a, a)
    assert same["ssim"] == pytest.approx([1.0, 1.0]) and same["psnr"] == [float("inf")] * 2
    assert abs(m["mean_ssim"]) < 0.1  # independent noise is nearly uncorrelated


def test_metrics_reject_mismatched_batches():
    with pytest.raises(InputError, match="Input 'reference'.*batch of 1 or 3"):
        image_metrics(torch.rand(3, 8, 8, 3), torch.rand(2, 8, 8, 3))


@pytest.mark.slow  # spawns a Python subprocess
def test_models_package_imports_without_comfyui():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1] + '/scripts'); "
        "import papernodes_bootstrap; papernodes_bootstrap.register(); "
        "import papernodes.models.colorize.pipeline, papernodes.models.colorize.metrics, "
        "papernodes.models.common.loading, papernodes.models.common.tiny; "
        "bad = [n for n in sys.modules if n == 'comfy' or n.startswith('comfy.') or n == 'folder_paths']; "
        "assert not bad, bad"
    )
    from conftest import REPO_ROOT

    subprocess.run([sys.executable, "-c", code, str(REPO_ROOT)], check=True, timeout=300)
