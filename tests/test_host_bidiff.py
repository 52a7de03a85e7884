"""BiDiff in the real ComfyUI: the example workflow (world 3D prior -> mesh -> core Save GLB, orbit views),
Shap-E through Load Shap-E (a tiny Shap-E-architecture folder written into the host's models/diffusers),
bad inputs answered with errors naming the input, and the server still serving afterwards."""

from __future__ import annotations

import json
import shutil

import pytest
from comfy_host import ExecutionFailed, PromptRejected
from conftest import REPO_ROOT
from papernodes.models.bidiff.demo import DEMO_PRIOR
from papernodes.models.handdiffuse.demo import DEMO_HANDS
from PIL import Image

pytestmark = pytest.mark.host

NODES = (
    "PaperNodes_BiDiffLoadShapE",
    "PaperNodes_BiDiffLoadPrior",
    "PaperNodes_BiDiffSamplePrior",
    "PaperNodes_BiDiffMesh",
    "PaperNodes_BiDiffRenderViews",
    "PaperNodes_BiDiffLoadModel",
    "PaperNodes_BiDiffGenerate",
)
SHAP_E, BROKEN = "papernodes-test-shap-e", "papernodes-test-shap-e-no-prior"


def _api() -> dict:
    prompt = json.loads((REPO_ROOT / "example_workflows" / "api" / "bidiff_prior.json").read_text())
    prompt["2"]["inputs"]["steps"] = 3  # the demo prior in the test host is a tiny random one
    prompt["3"]["inputs"]["resolution"] = 16
    prompt["5"]["inputs"].update(views=4, size=32, samples=16)
    return prompt


@pytest.fixture(scope="module")
def shap_e_folders(comfy_host):
    """A tiny Shap-E folder and a copy without its prior/, written into the running host's models/diffusers
    (Load Shap-E scans the folder on every validation)."""
    from helpers_bidiff import write_tiny_shap_e

    root = comfy_host.base_dir / "models" / "diffusers"
    good = write_tiny_shap_e(root / SHAP_E)
    broken = root / BROKEN
    if not broken.exists():
        shutil.copytree(good, broken)
        shutil.rmtree(broken / "prior")
    return good


def test_nodes_are_registered_with_tooltips(comfy_host):
    info = comfy_host.object_info()
    for key in NODES:
        assert info[key]["category"] == "PaperNodes/BiDiff"
        for section in ("required", "optional"):
            for name, spec in info[key]["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{key}.{name} has no tooltip"
    assert DEMO_PRIOR in info[NODES[1]]["input"]["required"]["model_name"][0]


def test_prior_workflow_writes_a_glb_and_the_views(comfy_host):
    import trimesh

    entry = comfy_host.run(_api(), timeout=600)
    glbs = comfy_host.output_files({"outputs": {"4": entry["outputs"]["4"]}})
    assert len(glbs) == 1
    mesh = trimesh.load(glbs[0], force="mesh")
    assert len(mesh.vertices) > 0 and abs(mesh.vertices).max() <= 1.0 + 1e-5  # inside the prior's cube
    views = comfy_host.output_files({"outputs": {"6": entry["outputs"]["6"]}})
    assert len(views) == 4
    with Image.open(views[0]) as im:
        assert im.size == (32, 32)


def test_shap_e_folder_loads_and_samples_a_mesh(comfy_host, shap_e_folders):
    import trimesh

    info = comfy_host.object_info()["PaperNodes_BiDiffLoadShapE"]["input"]["required"]["model_name"][0]
    assert SHAP_E in info
    prompt = _api()
    prompt["1"] = {"class_type": "PaperNodes_BiDiffLoadShapE", "inputs": {"model_name": SHAP_E}}
    prompt["2"]["inputs"].update(steps=2, guidance=0.0)  # 0: Shap-E's own 15
    entry = comfy_host.run(prompt, timeout=600)
    glbs = comfy_host.output_files({"outputs": {"4": entry["outputs"]["4"]}})
    assert len(glbs) == 1 and trimesh.load(glbs[0], force="mesh") is not None


def _empty_prompt(prompt):
    prompt["2"]["inputs"]["prompt"] = "   "
    return ExecutionFailed, "prompt"


def _generate_api() -> dict:
    prompt = json.loads((REPO_ROOT / "example_workflows" / "api" / "bidiff_generate.json").read_text())
    prompt["3"]["inputs"]["steps"] = 4  # the demo models in the test host are tiny random ones
    prompt["4"]["inputs"]["resolution"] = 16
    prompt["8"]["inputs"]["steps"] = 2
    prompt["9"]["inputs"].update(size=32, samples=16)
    return prompt


def test_generate_workflow_writes_a_glb_views_and_renders(comfy_host):
    entry = comfy_host.run(_generate_api(), timeout=600)
    assert len(comfy_host.output_files({"outputs": {"5": entry["outputs"]["5"]}})) == 1
    for node, size in (("6", 16), ("7", 16), ("10", 32)):
        files = comfy_host.output_files({"outputs": {node: entry["outputs"][node]}})
        assert len(files) == 4  # one image per view
        with Image.open(files[0]) as im:
            assert im.size == (size, size)


def test_generate_with_a_prior_file_as_the_model_says_what_to_load(comfy_host):
    prompt = _generate_api()
    prompt["2"]["inputs"]["model_name"] = DEMO_PRIOR
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(prompt, timeout=600)
    assert "not a BiDiff model" in str(info.value) and "train_bidiff" in str(info.value)
    assert comfy_host.is_running()


def _shap_e_without_prior(prompt):
    prompt["1"] = {"class_type": "PaperNodes_BiDiffLoadShapE", "inputs": {"model_name": BROKEN}}
    return ExecutionFailed, "prior"


def _mesh_resolution_too_large(prompt):
    prompt["3"]["inputs"]["resolution"] = 4096
    del prompt["5"], prompt["6"]  # ComfyUI runs the outputs that validate: keep only the mesh's
    return PromptRejected, "resolution"


def _prior_outside_folder(prompt):
    prompt["1"]["inputs"]["model_name"] = f"../handdiffuse/{DEMO_HANDS}"
    return PromptRejected, "model_name"


@pytest.mark.parametrize(
    "change", [_empty_prompt, _shap_e_without_prior, _mesh_resolution_too_large, _prior_outside_folder],
    ids=["empty_prompt", "shap_e_without_prior", "mesh_resolution_too_large", "prior_outside_folder"],
)  # fmt: skip
def test_bad_inputs_fail_with_clear_messages_and_the_server_keeps_serving(comfy_host, shap_e_folders, change):
    prompt = _api()
    error, needle = change(prompt)
    with pytest.raises(error) as info:
        comfy_host.run(prompt, timeout=600)
    assert needle in str(info.value)
    assert comfy_host.is_running()
    comfy_host.run(_api(), timeout=600)  # still serving
