"""An example workflow on the trained proving-ground models, in the real ComfyUI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO_ROOT
from helpers_models import WORLD_COLORIZER, WORLD_IMAGE
from PIL import Image

pytestmark = pytest.mark.host


def test_colorize_workflow_runs_on_the_trained_colorizer(comfy_host):
    """The shipped proving-ground colorizer through the real host: it loads from models/diffusers, adds
    color, and the luminance lock keeps the input's lightness. (Its accuracy is measured, not asserted:
    benchmarks/proving_ground.py, README table.)"""
    import kornia.color as kc
    import torch

    prompt = json.loads((REPO_ROOT / "example_workflows" / "colorize_api.json").read_text())
    prompt["1"]["inputs"]["image"] = WORLD_IMAGE
    loaders = [k for k, n in prompt.items() if n["class_type"] == "PaperNodes_LoadColorizer"]
    assert loaders, "the colorize workflow has no loader"
    prompt[loaders[0]]["inputs"]["model_name"] = f"diffusers/{WORLD_COLORIZER}"
    colorize = next(k for k, n in prompt.items() if n["class_type"] == "PaperNodes_Colorize")
    prompt[colorize]["inputs"]["steps"] = 10
    entry = comfy_host.run(prompt, timeout=600)
    saved = comfy_host.output_files({"outputs": {"5": entry["outputs"]["5"]}})
    out = np.asarray(Image.open(saved[0]).convert("RGB")).astype(np.float32) / 255
    truth = np.asarray(Image.open(comfy_host.base_dir / "input" / WORLD_IMAGE).convert("RGB"))
    assert out.shape == truth.shape
    lab_out = kc.rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1)[None])
    gray = truth.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    lab_in = kc.rgb_to_lab(torch.from_numpy(np.repeat(gray[..., None], 3, 2)).permute(2, 0, 1)[None])
    assert (lab_out[0, 0] - lab_in[0, 0]).abs().mean() < 1.0  # L in 0..100: the lock keeps lightness
    chroma = lab_out[0, 1:].pow(2).sum(0).sqrt().mean().item()
    assert chroma > 5.0, chroma  # colored, not gray (a gray image has chroma ~0)
