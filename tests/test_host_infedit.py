"""InfEdit in the real ComfyUI: the workflow, the LCM-LoRA path, the edit list, and clear API errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from comfy_host import ExecutionFailed
from conftest import REPO_ROOT
from PIL import Image

pytestmark = pytest.mark.host


def _api() -> dict:
    return json.loads((REPO_ROOT / "example_workflows" / "api" / "infedit.json").read_text())


def _saved(comfy_host, entry, node: str) -> list[np.ndarray]:
    files = comfy_host.output_files({"outputs": {node: entry["outputs"][node]}})
    return [np.asarray(Image.open(f)).astype(np.int16) for f in files]


def test_infedit_workflow_writes_edit_mask_and_reconstruction(comfy_host):
    prompt = _api()
    prompt["3"]["inputs"]["seed"] = 11
    entry = comfy_host.run(prompt, timeout=900)
    edited, mask, recon = (
        _saved(comfy_host, entry, "4"),
        _saved(comfy_host, entry, "6"),
        _saved(comfy_host, entry, "7"),
    )
    src = np.asarray(Image.open(comfy_host.base_dir / "input" / "papernodes_demo_color.png"))
    assert edited[0].shape == recon[0].shape == src.shape and mask[0].shape[:2] == src.shape[:2]


def test_same_prompts_reconstruct_through_the_api(comfy_host):
    """Target = source with equal guidance: the edit equals the source reconstruction (8-bit rounding)."""
    prompt = _api()
    inputs = prompt["3"]["inputs"]
    inputs.update(
        target_prompt=inputs["source_prompt"],
        target_blend_words="",
        target_guidance=1.0,
        source_guidance=1.0,
        steps=4,
        seed=3,
    )
    entry = comfy_host.run(prompt, timeout=900)
    edited, recon = _saved(comfy_host, entry, "4")[0], _saved(comfy_host, entry, "7")[0]
    assert np.abs(edited - recon).max() <= 1


def test_lcm_lora_is_fused_into_a_copy(comfy_host):
    base = _api()
    base["3"]["inputs"].update(steps=3, seed=21)
    base["4"]["inputs"]["filename_prefix"] = "PaperNodes/lora_off"
    plain = _saved(comfy_host, comfy_host.run(base, timeout=900), "4")[0]
    with_lora = json.loads(json.dumps(base))
    with_lora["2"]["inputs"]["lcm_lora"] = "papernodes-demo-lcm-lora.safetensors"
    with_lora["4"]["inputs"]["filename_prefix"] = "PaperNodes/lora_on"
    fused = _saved(comfy_host, comfy_host.run(with_lora, timeout=900), "4")[0]
    assert np.abs(fused - plain).max() > 0  # the LoRA changes the model...
    base["4"]["inputs"]["filename_prefix"] = "PaperNodes/lora_off_again"
    base["3"]["inputs"]["seed"] = 21
    base["2"]["inputs"]["lora_strength"] = 1.0001  # new loader run, same cached base model
    base["2"]["inputs"]["lcm_lora"] = "none"
    again = _saved(comfy_host, comfy_host.run(base, timeout=900), "4")[0]
    assert np.array_equal(again, plain)  # ...but never the cached base model


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"source_prompt": ""}, "Input 'source_prompt'"),
        ({"target_prompt": "word " * 90}, "at most 75 tokens"),
        ({"target_blend_words": "giraffe"}, "Input 'target_blend_words'"),
    ],
)
def test_bad_inputs_fail_with_clear_messages(comfy_host, change, expected):
    prompt = _api()
    prompt["3"]["inputs"].update(steps=2, **change)
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(prompt, timeout=300)
    assert expected in str(info.value)


def test_zero_steps_is_rejected_by_validation(comfy_host):
    prompt = _api()
    prompt["3"]["inputs"]["steps"] = 0
    del prompt["6"], prompt["5"]  # every remaining output depends on the edit node
    status, body = comfy_host.post_prompt(prompt)
    assert status == 400 and "steps" in json.dumps(body["node_errors"]["3"])


def test_edit_list_runs_several_targets_in_one_node(comfy_host):
    prompt = {
        "img": {"class_type": "LoadImage", "inputs": {"image": "papernodes_demo_color.png"}},
        "lcm": {
            "class_type": "PaperNodes_InfEditLoadLCM",
            "inputs": {
                "model_name": "diffusers/papernodes-demo-lcm",
                "lcm_lora": "none",
                "lora_strength": 1.0,
            },
        },
        "edit": {
            "class_type": "PaperNodes_InfEditEditList",
            "inputs": {
                "infedit_pipe": ["lcm", 0],
                "image": ["img", 0],
                "source_prompt": "a red circle on blue stripes",
                "edits": "a yellow circle on blue stripes | yellow\na red square on blue stripes | square",
                "source_blend_words": "",
                "steps": 2,
                "source_guidance": 1.0,
                "target_guidance": 2.0,
                "cross_replace": 0.7,
                "self_replace": 0.3,
                "thresh_e": 0.6,
                "thresh_m": 0.6,
                "eta": 1.0,
                "seed": 0,
                "resize_mode": "pad",
            },
        },
        "save": {
            "class_type": "SaveImage",
            "inputs": {"images": ["edit", 0], "filename_prefix": "PaperNodes/list"},
        },
    }
    entry = comfy_host.run(prompt, timeout=900)
    assert len(entry["outputs"]["save"]["images"]) == 2
