"""Colorization end to end in the real ComfyUI: registration, example workflow, API errors, recovery."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from comfy_host import ExecutionFailed, PromptRejected
from conftest import REPO_ROOT
from PIL import Image

pytestmark = pytest.mark.host

WORKFLOWS = REPO_ROOT / "example_workflows" / "api"


def _api(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def test_every_pack_node_is_registered(comfy_host):
    from papernodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    info = comfy_host.object_info()
    for key in NODE_CLASS_MAPPINGS:
        assert key in info, f"{key} missing from /object_info"
        assert info[key]["display_name"] == NODE_DISPLAY_NAME_MAPPINGS[key]
        assert info[key]["category"].startswith("PaperNodes/")
        for name, spec in info[key]["input"]["required"].items():
            assert spec[1].get("tooltip") if len(spec) > 1 else False, f"{key}.{name} has no tooltip"
    assert "IMPORT FAILED" not in comfy_host.log_text()


def test_loader_lists_demo_models(comfy_host):
    choices = comfy_host.object_info()["PaperNodes_LoadColorizer"]["input"]["required"]["model_name"][0]
    assert "diffusers/papernodes-demo-colorizer" in choices
    assert "checkpoints/papernodes-demo-colorizer.safetensors" in choices


def _run_colorize(comfy_host, changes: dict | None = None):
    prompt = _api("colorize")
    for (node, key), value in (changes or {}).items():
        prompt[node]["inputs"][key] = value
    entry = comfy_host.run(prompt, timeout=600)
    saved = comfy_host.output_files({"outputs": {"5": entry["outputs"]["5"]}})  # node 5 saves the colors
    assert len(saved) == 1, entry["outputs"]
    return entry, np.asarray(Image.open(saved[0])).astype(np.float64)


def test_colorize_workflow_runs_and_writes_images(comfy_host):
    import kornia.color as kc
    import torch

    entry, colorized = _run_colorize(comfy_host)
    src = np.asarray(Image.open(comfy_host.base_dir / "input" / "papernodes_demo_color.png")).astype(
        np.float64
    )
    assert colorized.shape == src.shape
    gray_file = [f for f in comfy_host.output_files(entry) if "grayscale" in f.name][-1]
    gray = np.asarray(Image.open(gray_file)).astype(np.float64)

    def lab(a):
        return kc.rgb_to_lab(torch.from_numpy(a / 255).permute(2, 0, 1)[None].float())[0]

    # keep_luminance is on: the output's Lab lightness is the grayscale input's, up to 8-bit rounding.
    assert (lab(colorized)[0] - lab(gray)[0]).abs().max() < 1.0
    assert lab(colorized)[1:].abs().mean() > 0.5  # and it does carry color
    report = entry["outputs"]["7"]["text"][0]
    assert "PSNR" in report and "SSIM" in report


def test_single_file_checkpoint_gives_same_colors_as_diffusers_folder(comfy_host):
    """Same tiny model written both ways (the file in fp16): the workflow's outputs agree."""
    _, a = _run_colorize(comfy_host, {("4", "seed"): 5})
    _, b = _run_colorize(
        comfy_host,
        {("4", "seed"): 5, ("3", "model_name"): "checkpoints/papernodes-demo-colorizer.safetensors"},
    )
    assert np.abs(a - b).max() <= 3  # fp16 storage of the single file, then 8-bit PNG


def test_same_seed_reproduces_through_the_api(comfy_host):
    _, a = _run_colorize(comfy_host, {("4", "seed"): 9, ("5", "filename_prefix"): "PaperNodes/seed_a"})
    _, b = _run_colorize(comfy_host, {("4", "seed"): 9, ("5", "filename_prefix"): "PaperNodes/seed_b"})
    assert np.array_equal(a, b)


def test_unknown_model_file_is_rejected_and_server_keeps_serving(comfy_host):
    prompt = _api("colorize")
    prompt["3"]["inputs"]["model_name"] = "diffusers/does-not-exist"
    # ComfyUI still runs the outputs that do not depend on a bad node (answering 200 with node_errors);
    # without the grayscale SaveImage every output depends on the loader, so the whole prompt is refused.
    del prompt["6"]
    status, body = comfy_host.post_prompt(prompt)
    assert status == 400
    errors = body["node_errors"]["3"]["errors"]
    assert any("model_name" in json.dumps(e) for e in errors)
    _run_colorize(comfy_host, {("4", "seed"): 123})  # next prompt runs normally


def test_missing_image_input_is_rejected(comfy_host):
    prompt = _api("colorize")
    del prompt["4"]["inputs"]["image"]
    del prompt["6"]  # keep no output that could still run (see above)
    with pytest.raises(PromptRejected) as info:
        comfy_host.run(prompt)
    assert "4" in info.value.node_errors and "image" in json.dumps(info.value.node_errors["4"])


def test_metrics_with_mismatched_batches_fail_with_a_clear_message(comfy_host):
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 3, "color": 100},
        },
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 200},
        },
        "3": {
            "class_type": "PaperNodes_ColorizationMetrics",
            "inputs": {"image": ["1", 0], "reference": ["2", 0]},
        },
    }
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(prompt)
    assert "Input 'reference'" in str(info.value) and "batch of 1 or 3" in str(info.value)
    ok = copy.deepcopy(prompt)
    ok["2"]["inputs"]["batch_size"] = 1
    entry = comfy_host.run(ok)
    assert "PSNR" in entry["outputs"]["3"]["text"][0]


def test_cancel_stops_colorize_mid_run_and_server_recovers(comfy_host):
    """POST /interrupt during a long run ends it within a step; the next prompt runs normally."""
    import time

    prompt = _api("colorize")
    prompt["4"]["inputs"].update(steps=1000, seed=777)
    status, body = comfy_host.post_prompt(prompt)
    assert status == 200
    time.sleep(3.0)  # the loader is cached: sampling is under way by now
    t0 = time.monotonic()
    assert comfy_host.request("POST", "/interrupt")[0] == 200
    entry = comfy_host.wait(body["prompt_id"], timeout=120)
    assert time.monotonic() - t0 < 30
    messages = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in messages, messages
    assert "5" not in entry.get("outputs", {})  # nothing saved from the cancelled run
    _run_colorize(comfy_host, {("4", "seed"): 778})
