"""SwiftBrush in the real ComfyUI: the workflow, LATENT = core VAE space, the Distill node, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from comfy_host import ExecutionFailed
from conftest import REPO_ROOT
from PIL import Image

pytestmark = pytest.mark.host

NODES = (
    "PaperNodes_SwiftBrushLoadStudent",
    "PaperNodes_SwiftBrushFromCheckpoint",
    "PaperNodes_SwiftBrushGenerate",
    "PaperNodes_SwiftBrushDistill",
)
SDVAE_STUDENT = "papernodes-test-swiftbrush-sdvae"
SDVAE_FILE = "papernodes-test-sdvae.safetensors"


def _api() -> dict:
    return json.loads((REPO_ROOT / "example_workflows" / "api" / "swiftbrush.json").read_text())


def _saved(comfy_host, entry, node: str) -> list[np.ndarray]:
    files = comfy_host.output_files({"outputs": {node: entry["outputs"][node]}})
    return [np.asarray(Image.open(f)).astype(np.int16) for f in files]


def _generate(student: list, prompt: str, size: int = 64, batch: int = 1, seed: int = 0) -> dict:
    return {
        "class_type": "PaperNodes_SwiftBrushGenerate",
        "inputs": {
            "student": student,
            "prompt": prompt,
            "seed": seed,
            "batch_size": batch,
            "width": size,
            "height": size,
        },
    }


def _load(model_name: str) -> dict:
    return {
        "class_type": "PaperNodes_SwiftBrushLoadStudent",
        "inputs": {"model_name": model_name, "unet_name": "none"},
    }


def _save(images: list, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


def test_nodes_are_registered_with_tooltips(comfy_host):
    info = comfy_host.object_info()
    for key in NODES:
        assert info[key]["category"] == "PaperNodes/SwiftBrush"
        for section in ("required", "optional"):
            for name, spec in info[key]["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{key}.{name} has no tooltip"
    choices = info["PaperNodes_SwiftBrushLoadStudent"]["input"]["required"]["model_name"][0]
    assert "diffusers/papernodes-demo-swiftbrush" in choices


def test_workflow_writes_an_image(comfy_host):
    prompt = _api()
    prompt["2"]["inputs"].update(width=64, height=96, batch_size=2, seed=5)
    images = _saved(comfy_host, comfy_host.run(prompt, timeout=600), "3")
    assert len(images) == 2 and images[0].shape == (96, 64, 3)
    assert np.abs(images[0] - images[1]).max() > 0  # two seeds, two images


def test_loader_swaps_in_a_unet_file(comfy_host):
    from diffusers import UNet2DConditionModel
    from papernodes.models.common.tiny import TINY_UNET, build_tiny_components
    from safetensors.torch import save_file

    unet_dir = comfy_host.base_dir / "models" / "unet"
    unet_dir.mkdir(parents=True, exist_ok=True)
    sd = build_tiny_components(seed=4).unet.state_dict()
    save_file(
        {k: v.contiguous() for k, v in sd.items()}, str(unet_dir / "papernodes-test-student-unet.safetensors")
    )
    wrong = UNet2DConditionModel(**{**TINY_UNET, "cross_attention_dim": 32}).state_dict()
    save_file(
        {k: v.contiguous() for k, v in wrong.items()},
        str(unet_dir / "papernodes-test-wrong-unet.safetensors"),
    )

    def run(unet_name, prefix):
        load = _load("diffusers/papernodes-demo-swiftbrush")
        load["inputs"]["unet_name"] = unet_name
        prompt = {
            "load": load,
            "gen": _generate(["load", 0], "a red circle"),
            "save": _save(["gen", 0], prefix),
        }
        return _saved(comfy_host, comfy_host.run(prompt, timeout=600), "save")[0]

    plain = run("none", "PaperNodes/swiftbrush_plain_unet")
    swapped = run("papernodes-test-student-unet.safetensors", "PaperNodes/swiftbrush_swapped_unet")
    assert np.abs(plain - swapped).max() > 0
    with pytest.raises(ExecutionFailed, match="loaded model's architecture"):
        run("papernodes-test-wrong-unet.safetensors", "PaperNodes/swiftbrush_wrong_unet")


@pytest.fixture(scope="module")
def sdvae_student(comfy_host):
    """A tiny student whose VAE is a full-size SD VAE (what core ComfyUI can load), also in models/vae."""
    from diffusers import AutoencoderKL
    from papernodes.models.common import ldm_layout
    from papernodes.models.common.saving import save_diffusers_folder
    from papernodes.models.common.tiny import build_tiny_components

    models = comfy_host.base_dir / "models"
    folder = models / "diffusers" / SDVAE_STUDENT
    if not (folder / "unet" / "config.json").is_file():
        comps = build_tiny_components(seed=3)
        torch.manual_seed(3)
        comps.vae = AutoencoderKL.from_config(ldm_layout.shipped_config("sd_vae")).half().eval()
        save_diffusers_folder(comps, folder)
    link = models / "vae" / SDVAE_FILE
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(folder / "vae" / "diffusion_pytorch_model.safetensors")
    return folder


def test_core_vae_decode_of_our_latent_equals_our_image(comfy_host, sdvae_student):
    prompt = {
        "load": _load(f"diffusers/{SDVAE_STUDENT}"),
        "gen": _generate(["load", 0], "a red circle on blue stripes", size=64, batch=2, seed=1),
        "ours": _save(["gen", 0], "PaperNodes/swiftbrush_ours"),
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": SDVAE_FILE}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["gen", 1], "vae": ["vae", 0]}},
        "core": _save(["decode", 0], "PaperNodes/swiftbrush_core_decode"),
    }
    entry = comfy_host.run(prompt, timeout=600)
    ours, core = _saved(comfy_host, entry, "ours"), _saved(comfy_host, entry, "core")
    assert len(ours) == len(core) == 2
    for a, b in zip(ours, core):
        assert a.shape == b.shape == (64, 64, 3)
        assert a.std() > 1, "blank image: the comparison would prove nothing"
        assert np.abs(a - b).max() <= 1, "core VAEDecode of our LATENT differs from our IMAGE"


def _distill(
    name: str, steps: int, resume: bool = False, prompts: str = "a red circle\na green square"
) -> dict:
    return {
        "distill": {
            "class_type": "PaperNodes_SwiftBrushDistill",
            "inputs": {
                "teacher_name": "diffusers/papernodes-demo-swiftbrush",
                "prompts": prompts,
                "output_name": name,
                "steps": steps,
                "batch_size": 1,
                "resolution": 64,
                "student_lr": 1e-6,
                "lora_lr": 1e-3,
                "guidance": 4.5,
                "seed": 0,
                "save_every": 0,
                "preview_every": 1,
                "mixed_precision": "no",
                "gradient_checkpointing": False,
                "resume": resume,
            },
        },
        "preview": _save(["distill", 0], "PaperNodes/swiftbrush_preview"),
        "gen": _generate(["distill", 2], "a red circle"),
        "save": _save(["gen", 0], "PaperNodes/swiftbrush_distilled"),
    }


def test_distill_writes_a_student_the_loader_lists(comfy_host):
    name = "papernodes-test-distilled"
    entry = comfy_host.run(_distill(name, steps=2), timeout=600)
    folder = comfy_host.base_dir / "models" / "diffusers" / name
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert len((folder / "log.csv").read_text().splitlines()) == 3  # header + 2 steps
    previews = _saved(comfy_host, entry, "preview")  # the final (EMA) student on the first prompts
    assert len(previews) == 2 and previews[0].shape == (64, 64, 3)
    grids = sorted((folder / "previews").glob("*.png"))
    assert [p.name for p in grids] == ["step-000001.png", "step-000002.png"]
    assert np.asarray(Image.open(grids[-1])).shape == (64, 64 * 2, 3)  # prompts side by side
    assert _saved(comfy_host, entry, "save")[0].shape == (64, 64, 3)

    choices = comfy_host.object_info()["PaperNodes_SwiftBrushLoadStudent"]["input"]["required"]["model_name"][
        0
    ]
    assert f"diffusers/{name}" in choices
    entry = comfy_host.run(
        {
            "load": _load(f"diffusers/{name}"),
            "gen": _generate(["load", 0], "a green square"),
            "save": _save(["gen", 0], "PaperNodes/swiftbrush_reloaded"),
        },
        timeout=600,
    )
    assert _saved(comfy_host, entry, "save")[0].shape == (64, 64, 3)

    with pytest.raises(ExecutionFailed, match="already exists"):  # never overwrite a finished run silently
        comfy_host.run(_distill(name, steps=3), timeout=600)
    comfy_host.run(_distill(name, steps=3, resume=True), timeout=600)
    assert len((folder / "log.csv").read_text().splitlines()) == 4  # continued with step 3


@pytest.mark.parametrize(
    "node,change,expected",
    [
        ("gen", {"prompt": "word " * 90}, "at most 75 tokens"),
        ("gen", {"prompt": "   "}, "Input 'prompt'"),
        ("distill", {"prompts": "\n \n"}, "Input 'prompts'"),
        ("distill", {"output_name": "../escape"}, "Input 'output_name'"),
    ],
)
def test_bad_inputs_fail_with_clear_messages(comfy_host, node, change, expected):
    prompt = _distill("papernodes-test-never-written", steps=1)
    if node == "gen":
        prompt = {
            "load": _load("diffusers/papernodes-demo-swiftbrush"),
            "gen": _generate(["load", 0], "x"),
            "save": _save(["gen", 0], "PaperNodes/swiftbrush_bad"),
        }
    prompt[node]["inputs"].update(change)
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(prompt, timeout=300)
    assert expected in str(info.value)
    assert not (comfy_host.base_dir / "models" / "diffusers" / "papernodes-test-never-written").exists()
