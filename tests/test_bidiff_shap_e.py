"""Shap-E as BiDiff's 3D prior (models/bidiff/shap_e.py) on a tiny Shap-E folder (tests/helpers_bidiff.py).

References are diffusers' own code paths: `ShapEPipeline(..., output_type="latent")` for the latents and
the field `ShapERenderer.decode_to_mesh` computes (weights copied into the MLP, STF signed distance on its
grid)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers_bidiff import write_tiny_shap_e
from papernodes.models.bidiff.prior3d import Shape3D
from papernodes.models.bidiff.shap_e import (
    ShapEPrior,
    from_shap_e_frame,
    load_shap_e,
    shape_from_latent,
    to_shap_e_frame,
)
from papernodes.models.common.errors import InputError, WeightsFormatError, WeightsNotFoundError

PROMPT = "a red chair"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return write_tiny_shap_e(tmp_path_factory.mktemp("shap_e") / "tiny-shap-e")


@pytest.fixture(scope="module")
def prior(tiny_folder) -> ShapEPrior:
    return load_shap_e(tiny_folder)


@pytest.fixture(scope="module")
def pipe(tiny_folder):
    from diffusers import ShapEPipeline

    p = ShapEPipeline.from_pretrained(tiny_folder, local_files_only=True)
    p.set_progress_bar_config(disable=True)
    return p


def _pipeline_latents(pipe, prompt, seed, count, guidance, steps):
    gen = torch.Generator().manual_seed(seed)
    out = pipe(
        prompt,
        num_images_per_prompt=count,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=gen,
        output_type="latent",
    )
    return out.images


def _decode_to_mesh_field(renderer, latent, grid_size=10):
    """What decode_to_mesh computes before marching cubes, on a deep copy (diffusers patches the MLP)."""
    from diffusers.pipelines.shap_e.renderer import volume_query_points

    ref = copy.deepcopy(renderer)
    with torch.no_grad():
        projected = ref.params_proj(latent[None])
        for name, param in ref.mlp.state_dict().items():
            if f"nerstf.{name}" in projected.keys():
                param.copy_(projected[f"nerstf.{name}"].squeeze(0))
        points = volume_query_points(ref.volume, grid_size)
        out = ref.mlp(position=points[None], direction=None, ts=None, nerf_level="fine", rendering_mode="stf")
    return points, out.signed_distance[0, :, 0], out.channels[0]


# ------------------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize(
    "seed,count,guidance,steps",
    [(3, 2, 15.0, 3), (0, 1, 1.0, 2), (7, 1, 4.0, 1)],  # CFG, no CFG (guidance <= 1), single Euler step
)
def test_latents_equal_the_pipeline(prior, pipe, seed, count, guidance, steps):
    ours = prior.sample_latents(PROMPT, seed=seed, count=count, guidance=guidance, steps=steps)
    ref = _pipeline_latents(pipe, PROMPT, seed, count, guidance, steps)
    assert ours.shape == (count, 32, 32)
    # the same computation in the same order: bitwise equal (tolerance 0)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_defaults_are_bidiffs():
    assert ShapEPrior.name == "shap-e"
    assert ShapEPrior.default_guidance == 15.0
    assert ShapEPrior.default_steps == 64


def test_seed_reproducible_and_count(prior):
    a = prior.sample_latents(PROMPT, seed=5, count=3, steps=2)
    b = prior.sample_latents(PROMPT, seed=5, count=3, steps=2)
    c = prior.sample_latents(PROMPT, seed=6, count=3, steps=2)
    d = prior.sample_latents("a blue ball", seed=5, count=3, steps=2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, d)  # the prompt reaches the prior
    assert not torch.allclose(a[0], a[1])
    shapes = prior.sample(f"  {PROMPT} ", seed=5, count=3, steps=2)
    assert len(shapes) == 3 and all(isinstance(s, Shape3D) for s in shapes)
    assert shapes[0].prompt == PROMPT and shapes[0].source == "shap-e"
    assert torch.equal(shapes[1].info["latent"], a[1])


def test_progress_once_per_step_and_should_stop(prior):
    calls = []
    prior.sample_latents(PROMPT, steps=4, progress=lambda k, n: calls.append((k, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]

    polls = []

    def stop_on_third():
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(InterruptedError):
        prior.sample_latents(PROMPT, steps=4, should_stop=stop_on_third)
    assert len(polls) == 3  # stopped before the third network evaluation
    prior.sample_latents(PROMPT, steps=2, should_stop=lambda: False)  # never stopping completes


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(prior, prompt):
    with pytest.raises(InputError, match="prompt"):
        prior.sample(prompt)


def test_bad_steps_and_count(prior):
    with pytest.raises(InputError, match="steps"):
        prior.sample(PROMPT, steps=0)
    with pytest.raises(InputError, match="count"):
        prior.sample(PROMPT, count=0)


# ------------------------------------------------------------------------------------------ decoding


def test_frame_is_a_rotation_y_up():
    p = torch.randn(20, 3)
    assert torch.equal(from_shap_e_frame(to_shap_e_frame(p)), p)
    up = torch.tensor([[0.0, 1.0, 0.0]])  # our up (y) is Shap-E's up (z)
    assert torch.equal(to_shap_e_frame(up), torch.tensor([[0.0, 0.0, 1.0]]))
    matrix = to_shap_e_frame(torch.eye(3))
    assert torch.det(matrix).item() == pytest.approx(1.0)


def test_sdf_and_colour_equal_decode_to_mesh_field(prior):
    latent = prior.sample_latents(PROMPT, seed=1, steps=2)[0]
    shape = shape_from_latent(prior.renderer, latent, PROMPT)
    points, field, channels = _decode_to_mesh_field(prior.renderer, latent)
    assert (field > 0).any() and (field < 0).any()  # both sides of a surface on the grid
    ours = from_shap_e_frame(points)  # the same physical points in our y-up frame
    with torch.no_grad():
        torch.testing.assert_close(shape.sdf(ours), -field, rtol=0, atol=1e-5)  # Shap-E: positive inside
        torch.testing.assert_close(shape.color(ours), channels, rtol=0, atol=1e-5)  # sRGB as is
    # chunking does not change values
    small = shape_from_latent(prior.renderer, latent, PROMPT, chunk=7)
    torch.testing.assert_close(small.sdf(ours), shape.sdf(ours), rtol=0, atol=1e-6)


def test_fields_outside_the_cube_and_shapes(prior):
    shape = prior.sample(PROMPT, seed=2, steps=2)[0]
    outside = torch.tensor([[1.5, 0.0, 0.0], [0.0, -1.2, 0.3], [2.0, 2.0, 2.0]])
    sdf = shape.sdf(outside)
    assert (sdf > 0).all()
    assert sdf[2] >= torch.tensor(3.0).sqrt() * 1.0 - 1e-6  # at least the distance to the cube
    grid = torch.rand(4, 5, 3) * 2 - 1
    assert shape.sdf(grid).shape == (4, 5)
    colour = shape.color(grid)
    assert colour.shape == (4, 5, 3) and colour.min() >= 0 and colour.max() <= 1


def test_points_gradient_when_asked(prior):
    shape = prior.sample(PROMPT, seed=2, steps=1)[0]
    p = (torch.rand(16, 3) * 1.6 - 0.8).requires_grad_(True)
    shape.sdf(p).sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(q.grad is None for q in prior.renderer.parameters())


def test_renderer_not_modified(prior):
    before = {k: v.clone() for k, v in prior.renderer.state_dict().items()}
    for shape in prior.sample(PROMPT, seed=4, count=2, steps=2):
        with torch.no_grad():
            shape.sdf(torch.rand(100, 3) * 2 - 1)
            shape.color(torch.rand(100, 3) * 2 - 1)
    after = prior.renderer.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------------ loading


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_folder_missing_prior(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "broken-shap-e")
    shutil.rmtree(folder / "prior")
    with pytest.raises(WeightsFormatError) as err:
        load_shap_e(folder)
    msg = str(err.value)
    assert str(folder) in msg and "prior/" in msg and "huggingface.co/openai/shap-e" in msg and "MIT" in msg


def test_folder_missing_weights(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "no-weights")
    for f in (folder / "shap_e_renderer").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(WeightsFormatError, match="shap_e_renderer/ weights"):
        load_shap_e(folder)


def test_sd_folder_refused(tmp_path):
    folder = tmp_path / "sd15"
    for sub in ("unet", "vae", "text_encoder"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "config.json").write_text("{}")
        (folder / sub / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text("{}")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(WeightsFormatError) as err:
        load_shap_e(folder)
    msg = str(err.value)
    assert str(folder) in msg and "StableDiffusionPipeline" in msg
    assert "prior/" in msg and "shap_e_renderer/" in msg and "huggingface.co/openai/shap-e" in msg


def test_img2img_variant_refused(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "shap-e-img2img")
    shutil.rmtree(folder / "text_encoder")
    (folder / "image_encoder").mkdir()
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "ShapEImg2ImgPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(WeightsFormatError, match="image-conditioned"):
        load_shap_e(folder)


def test_wrong_text_encoder_refused(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "clip-without-projection")
    config_path = folder / "text_encoder" / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = ["CLIPTextModel"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(WeightsFormatError, match="CLIPTextModelWithProjection"):
        load_shap_e(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="openai/shap-e"):
        load_shap_e(tmp_path / "nowhere")
