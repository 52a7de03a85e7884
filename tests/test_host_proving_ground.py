"""An example workflow on the trained proving-ground models, in the real ComfyUI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO_ROOT
from helpers_models import WORLD_COLORIZER, WORLD_COLORIZER_INIT, WORLD_IMAGE
from PIL import Image

pytestmark = pytest.mark.host

SAMPLES = 6  # one prompt, one seed: a batch of the same scene gives SAMPLES independent samples


def _colorize_prompt(model: str, steps: int = 10) -> tuple[dict, str]:
    """The shipped colorize workflow on the world scene with `model`; returns it and the Colorize node id."""
    prompt = json.loads((REPO_ROOT / "example_workflows" / "api" / "colorize.json").read_text())
    prompt["1"]["inputs"]["image"] = WORLD_IMAGE
    loaders = [k for k, n in prompt.items() if n["class_type"] == "PaperNodes_LoadColorizer"]
    assert loaders, "the colorize workflow has no loader"
    prompt[loaders[0]]["inputs"]["model_name"] = f"diffusers/{model}"
    colorize = next(k for k, n in prompt.items() if n["class_type"] == "PaperNodes_Colorize")
    prompt[colorize]["inputs"]["steps"] = steps
    return prompt, colorize


def _lab(rgb: np.ndarray):
    """[N,H,W,3] float 0..1 -> Lab [N,3,H,W] (L in 0..100)."""
    import kornia.color as kc
    import torch

    return kc.rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(0, 3, 1, 2))


def _truth_and_gray(comfy_host) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(Image.open(comfy_host.base_dir / "input" / WORLD_IMAGE).convert("RGB"))
    gray = truth.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255  # BT.601, as the node
    return truth, np.repeat(gray[..., None], 3, 2)


def _saved_images(comfy_host, entry: dict, node: str) -> np.ndarray:
    files = comfy_host.output_files({"outputs": {node: entry["outputs"][node]}})
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype(np.float32) / 255


def test_colorize_workflow_runs_on_the_trained_colorizer(comfy_host):
    """Plumbing: the shipped proving-ground colorizer loads from models/diffusers, runs in the workflow, adds
    color, and the luminance lock keeps the input's lightness. (The lock is post-processing, so this holds
    for any model: what the training achieved is tested below.)"""
    prompt, _ = _colorize_prompt(WORLD_COLORIZER)
    entry = comfy_host.run(prompt, timeout=600)
    out = _saved_images(comfy_host, entry, "5")
    truth, gray = _truth_and_gray(comfy_host)
    assert out.shape == (1, *truth.shape)
    lab_out, lab_in = _lab(out), _lab(gray[None])
    assert (lab_out[0, 0] - lab_in[0, 0]).abs().mean() < 1.0  # L in 0..100: the lock keeps lightness
    chroma = lab_out[0, 1:].pow(2).sum(0).sqrt().mean().item()
    assert chroma > 5.0, chroma  # colored, not gray (a gray image has chroma ~0)


def test_trained_colorizer_follows_the_grayscale_input_and_its_untrained_init_does_not(comfy_host):
    """What only the training gives: with the luminance lock OFF (so the output is the model's own), the
    trained colorizer redraws the input scene, while its InstructPix2Pix init (the same teacher, image
    channels zero-initialised) ignores the image and draws some other scene.

    Metric: mean |L_out - L_gray| (Lab lightness, 0..100) of each of SAMPLES samples, median over them.
    Measured on this scene (10 steps, euler_ancestral, batch of 6): through this host at seed 42, trained
    7.0 vs init 23.7 (ratio 0.30); in-process at seeds 0 / 7 / 42, trained 6.6-10.3 vs init 23.0-24.2
    (ratio 0.27-0.46); a random tiny colorizer gives ~18. Threshold: trained median < 0.6 x the init's.
    Chroma error against the colour scene is not used: the world's colors are ambiguous from luminance
    (red, purple and blue differ by < 15 luma levels), so the trained model's plausible colors scored no
    better than a random tiny model's (ab error, lock on, 5 seeds: trained 14-110, random 52-55, init
    80-87; docs/proving_ground.md has the 100-scene PSNR/SSIM)."""
    _, gray = _truth_and_gray(comfy_host)
    lab_gray = _lab(gray[None])
    medians = {}
    for model in (WORLD_COLORIZER, WORLD_COLORIZER_INIT):
        prompt, colorize = _colorize_prompt(model)
        prompt["10"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": SAMPLES}}
        prompt[colorize]["inputs"].update(image=["10", 0], keep_luminance=False, seed=42)
        for node in [k for k, n in prompt.items() if n["class_type"] == "PaperNodes_ColorizationMetrics"]:
            del prompt[node]  # compares against the single reference image: not meant for a batch
        prompt["5"]["inputs"]["filename_prefix"] = f"PaperNodes/follow_{model}"
        out = _saved_images(comfy_host, comfy_host.run(prompt, timeout=900), "5")
        assert out.shape[0] == SAMPLES
        errors = (_lab(out)[:, 0] - lab_gray[:, 0]).abs().mean(dim=(1, 2))
        medians[model] = errors.median().item()
    trained, init = medians[WORLD_COLORIZER], medians[WORLD_COLORIZER_INIT]
    assert trained < 0.6 * init, medians
