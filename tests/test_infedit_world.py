"""InfEdit on the shipped proving-ground LCM (issue 19): local blend must localise the demo edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from papernodes.models.common.loading import SDComponents, load_components
from papernodes.models.demo_assets import DEMO_SCENE, world_demo_image
from papernodes.models.infedit.pipeline import InfEditPipeline, InfEditSettings
from papernodes.models.proving_ground import zoo
from papernodes.models.proving_ground.world import WorldDataset, object_coverage

torch.set_num_threads(1)
SRC = "a black star and a red cross on a striped purple background"
TGT = "a green star and a red cross on a striped purple background"


def demo_object_coverage() -> np.ndarray:
    """[objects, 128, 128] coverage of the demo scene's objects (the star first)."""
    ds = WorldDataset(DEMO_SCENE["index"] + 1, seed=DEMO_SCENE["seed"], split=DEMO_SCENE["split"])
    return object_coverage(ds.scene(DEMO_SCENE["index"]))


def demo_image() -> torch.Tensor:
    """The demo scene as a [1, 128, 128, 3] IMAGE in [0, 1]."""
    return torch.from_numpy(world_demo_image()).float().div(255)[None]


@pytest.fixture(scope="module")
def world_lcm():
    from diffusers import UNet2DConditionModel

    base = load_components(zoo.base_dir())
    folder = zoo.derived_unet_dir("lcm")
    unet = (
        UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).eval().requires_grad_(False)
    )
    sched = json.loads((folder / "scheduler_config.json").read_text())
    return InfEditPipeline(SDComponents(unet, base.vae, base.text_encoder, base.tokenizer, sched))


@pytest.mark.slow  # ~5 s: a 15-step edit of the demo scene on the shipped world models
def test_demo_edit_local_blend_mask_is_local(world_lcm):
    """Before: maps at latent / 4 = the 4x4 mid block, flat -> the mask was white everywhere."""
    star = demo_object_coverage()[0] > 0.5
    image = demo_image()
    r = world_lcm(image, SRC, [TGT], InfEditSettings(target_blend_words="green star"))
    mask = r.masks[0].numpy() > 0.5
    assert mask.mean() < 0.8, f"mask covers {mask.mean():.0%} of the image"
    assert (mask & star).sum() / star.sum() > 0.9  # and it covers the star
    assert np.any(~mask)


@pytest.mark.slow  # ~5 s: the example workflow's edit on the shipped world models
def test_demo_workflow_edit_recolours_the_background_and_keeps_the_star(world_lcm):
    """The main job's InfEdit edit, with the workflow's own prompts and settings: the stripes turn from purple
    to yellow where the mask lets the edit act, and the black star is masked out and stays black."""
    inputs = json.loads((REPO_ROOT / "example_workflows" / "api" / "infedit.json").read_text())["3"]["inputs"]
    settings = InfEditSettings(
        **{k: v for k, v in inputs.items() if k in InfEditSettings.__dataclass_fields__}
    )
    objects = demo_object_coverage()
    star, anything = objects[0] > 0.5, objects.max(0) > 0
    image = demo_image()
    r = world_lcm(image, inputs["source_prompt"], [inputs["target_prompt"]], settings)
    edited, free = r.edited[0].numpy() * 255, r.masks[0].numpy() > 0.5
    assert free[star].mean() < 0.3 and free.mean() > 0.6  # the star is protected, the background is not
    before = image[0].numpy()[free & ~anything].mean(0) * 255
    red, green, blue = edited[free & ~anything].mean(0)
    assert before[1] < 80 and before[2] > 120  # the source background is purple ...
    assert red > 150 and green > 120 and blue < 90, (red, green, blue)  # ... and the edit's is yellow
    assert edited[star].mean() < 90  # still a dark star
