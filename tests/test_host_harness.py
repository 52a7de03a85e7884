"""The headless host harness (scripts/comfy_host.py) against a real ComfyUI server.

These tests check the harness itself with core nodes only, so a failure here means the test infrastructure
is broken, not a node of the pack. The one exception is `test_pack_imports`: it reads the server log to
check our pack loaded, because ComfyUI keeps running (without our nodes) when a custom node fails to import.
"""

from __future__ import annotations

import json

import comfy_host as harness  # scripts/comfy_host.py; conftest puts scripts/ on sys.path
import pytest
from PIL import Image

host = pytest.mark.host


def empty_image_prompt(color: int, prefix: str, size: int = 8) -> dict:
    """Core-only prompt: EmptyImage -> SaveImage. The colour varies per test to defeat the classic cache."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


@host
def test_server_starts_and_lists_core_nodes(comfy_host):
    assert comfy_host.is_running()
    info = comfy_host.object_info()
    assert "LoadImage" in info
    assert "SaveImage" in info
    assert comfy_host.startup_seconds is not None and comfy_host.startup_seconds < 180


@host
def test_pack_imports(comfy_host):
    """ComfyUI prints '(IMPORT FAILED): <path>' for a custom node that raised on import; ours must not."""
    log = comfy_host.log_text()
    assert harness.PACK_NAME in log, "ComfyUI never tried to load the pack (is the symlink in custom_nodes/?)"
    assert not comfy_host.pack_import_failed(), "the pack failed to import in ComfyUI (traceback in log tail)"
    assert comfy_host.pack_node_names(), "the pack imported but registered no nodes"


@host
def test_core_prompt_writes_png(comfy_host):
    entry = comfy_host.run(empty_image_prompt(0xFF0000, "harness_red"), timeout=120)
    assert entry["status"]["status_str"] == "success"
    files = comfy_host.output_files(entry)
    assert len(files) == 1
    png = files[0]
    assert png.is_file(), png
    assert png.suffix == ".png"
    assert png.parent == comfy_host.base_dir / "output"
    with Image.open(png) as img:
        assert img.size == (8, 8)
        assert img.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


@host
def test_unknown_class_type_is_rejected_and_server_survives(comfy_host):
    bad = empty_image_prompt(0x00FF00, "harness_never")
    bad["3"] = {"class_type": "PaperNodesDoesNotExist", "inputs": {}}
    status, body = comfy_host.post_prompt(bad)
    assert status == 400
    # Both hosts report an unknown class_type in the top-level "error" (node_errors stays empty); the type
    # is "invalid_prompt" on 0.3.75 and "missing_node_type" on 0.33.
    assert body["error"]["type"] in ("invalid_prompt", "missing_node_type")
    error_text = json.dumps(body["error"])
    assert "PaperNodesDoesNotExist" in error_text and "3" in error_text

    with pytest.raises(harness.PromptRejected, match="PaperNodesDoesNotExist"):
        comfy_host.run(bad, timeout=60)

    entry = comfy_host.run(empty_image_prompt(0x00FF00, "harness_green"), timeout=120)
    assert all(p.is_file() for p in comfy_host.output_files(entry))


@host
def test_invalid_input_names_node_in_node_errors(comfy_host):
    """Validation errors of a known node land in node_errors keyed by node id; run() quotes them."""
    bad = empty_image_prompt(0x0000FF, "harness_never", size=0)  # width/height min is 1
    status, body = comfy_host.post_prompt(bad)
    assert status == 400
    assert "1" in body["node_errors"]
    assert body["node_errors"]["1"]["class_type"] == "EmptyImage"
    with pytest.raises(harness.PromptRejected) as info:
        comfy_host.run(bad, timeout=60)
    assert "EmptyImage" in str(info.value)
    assert "1" in info.value.node_errors


@host
def test_execution_error_is_raised_with_message(comfy_host):
    """A node raising at run time passes validation (HTTP 200) and shows up as status 'error' in history."""
    prompt = {
        "1": {
            "class_type": "RegexReplace",
            "inputs": {"string": "abc", "regex_pattern": "(", "replace": "x"},  # unbalanced group -> re.error
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    with pytest.raises(harness.ExecutionFailed) as info:
        comfy_host.run(prompt, timeout=120)
    err = info.value
    assert err.message.get("node_type") == "RegexReplace"
    assert "RegexReplace" in str(err)
    assert err.entry["status"]["status_str"] == "error"
    # and the server keeps serving
    comfy_host.run(empty_image_prompt(0x123456, "harness_after_error"), timeout=120)


def test_output_files_resolves_every_file_list(tmp_path):
    """Pure unit test (no server): any {filename, subfolder, type} list in any node output is resolved."""
    h = harness.ComfyHost(tmp_path / "comfy", tmp_path / "base")
    entry = {
        "outputs": {
            "5": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}], "text": ["hello"]},
            "6": {"gltf": [{"filename": "m.glb", "subfolder": "3d", "type": "output"}]},
            "7": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}], "animated": [False]},
        }
    }
    base = tmp_path / "base"
    assert h.output_files(entry) == [base / "output/a.png", base / "output/3d/m.glb", base / "temp/p.png"]


def test_rejection_message_names_nodes():
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {
            "4": {"class_type": "KSampler", "errors": [{"message": "Value too big", "details": "steps"}]}
        },
    }
    err = harness.PromptRejected(400, body)
    assert "node 4 (KSampler): Value too big - steps" in str(err)
    assert err.node_errors == body["node_errors"]
