"""ComfyUI's model management sees, evicts and frees our models as it does its own (nodes/comfy_memory.py).

Runs tests/comfy_memory_check.py against the host tier's ComfyUI (0.3.75, or 0.33 with
PAPERNODES_HOST=0.33) in a subprocess: ComfyUI's modules choose a device and parse flags on import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, TESTS_DIR

pytestmark = [pytest.mark.host]


@pytest.fixture(scope="module")
def observed() -> dict:
    import comfy_host

    try:
        comfy_dir = comfy_host.find_comfyui()
    except comfy_host.ComfyError as err:
        pytest.skip(f"no ComfyUI: {err}")
    done = subprocess.run(
        [sys.executable, str(TESTS_DIR / "comfy_memory_check.py"), str(comfy_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_run_hands_our_modules_to_comfyui_with_their_size(observed):
    assert observed["loaded_are_ours"] and observed["managed_count"] == 2
    counted, params = observed["memory_counted"]
    assert counted == params  # the memory manager plans with our real size


def test_later_runs_reuse_the_loaded_model(observed):
    assert observed["managed_count_second_run"] == 2 and observed["same_patcher"]
    assert observed["same_output"]


def test_comfyui_can_evict_and_reload_ours(observed):
    assert observed["managed_after_evict"] == 0  # free_memory for another model unloaded ours
    assert observed["runs_after_evict"] and observed["managed_after_reload"] == 1
    assert observed["managed_after_unload_all"] == 0


def test_copies_are_separate_models_and_nothing_is_kept_alive(observed):
    assert observed["copy_has_own_patcher"]
    assert observed["module_freed"] and observed["managed_after_free"] == 0


def test_auto_precision_is_comfyuis_choice_and_no_host_call_failed(observed):
    assert observed["auto_dtype"] == "torch.float32"  # the host tier runs --cpu: fp32, as ComfyUI's own
    assert observed["host_warnings"] == []
