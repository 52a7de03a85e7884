"""TriHuman in the real ComfyUI with the demo avatar (the shipped world avatar, 2.6 MB): both example
workflows (animated WEBP of the orbit render and the mask preview; GLB of the mesh and a render of the
same frame), a BVH in the input folder driving the avatar, and bad prompts (missing avatar file,
resolution 0, an .npz motion of another skeleton) answered with errors naming the input while the server
keeps serving."""

from __future__ import annotations

import json

import numpy as np
import pytest
from comfy_host import ExecutionFailed, PromptRejected
from conftest import REPO_ROOT
from papernodes.models.trihuman.demo import DEMO_AVATAR as AVATAR
from PIL import Image

pytestmark = pytest.mark.host

NODES = (
    "PaperNodes_TriHumanLoadAvatar",
    "PaperNodes_TriHumanLoadMotion",
    "PaperNodes_TriHumanOrbitCamera",
    "PaperNodes_TriHumanRender",
    "PaperNodes_TriHumanMesh",
    "PaperNodes_TriHumanTrain",
)
FIVE_JOINTS = "papernodes_test_five_joints.npz"
WORLD_BVH = "papernodes_test_world_walk.bvh"


def _api(name: str, frames: int = 6, size: int = 48) -> dict:
    """The API twin, smaller (the workflows' own sizes run in test_workflows.py)."""
    prompt = json.loads((REPO_ROOT / "example_workflows" / "api" / f"trihuman_{name}.json").read_text())
    for node in prompt.values():
        if node["class_type"] == "PaperNodes_TriHumanRender":
            node["inputs"].update(width=size, height=size, samples=8)
        if node["class_type"] == "PaperNodes_TriHumanLoadMotion" and name == "dance":
            node["inputs"]["frames"] = frames
    return prompt


def _files(comfy_host, entry: dict, node: str) -> list:
    return comfy_host.output_files({"outputs": {node: entry["outputs"][node]}})


@pytest.fixture(scope="module")
def motion_files(comfy_host):
    """Motion files in the running host's input folder (Load Motion lists it on every validation)."""
    from papernodes.models.trihuman import motion_io
    from papernodes.models.trihuman.world import PARENTS, REST_JOINTS

    folder = comfy_host.base_dir / "input"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / FIVE_JOINTS, poses=np.zeros((6, 5, 3)), translations=np.zeros((6, 3)), fps=25.0)
    motion_io.write_bvh(motion_io.world_motion("walk", 1, 4), folder / WORLD_BVH, REST_JOINTS, PARENTS)
    return folder


def test_nodes_are_registered_with_tooltips(comfy_host):
    info = comfy_host.object_info()
    for key in NODES:
        assert info[key]["category"] == "PaperNodes/TriHuman"
        for section in ("required", "optional"):
            for name, spec in info[key]["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{key}.{name} has no tooltip"
    assert AVATAR in info[NODES[0]]["input"]["required"]["avatar_name"][0]
    width = info["PaperNodes_TriHumanRender"]["input"]["required"]["width"][1]
    assert width["min"] == 16 and width["default"] == 128


def test_dance_workflow_writes_frames_and_the_mask(comfy_host):
    entry = comfy_host.run(_api("dance", frames=6), timeout=600)
    (webp,) = _files(comfy_host, entry, "5")
    with Image.open(webp) as im:
        assert im.n_frames == 6 and im.size == (48, 48)
    (mask,) = _files(comfy_host, entry, "7")
    with Image.open(mask) as im:
        assert im.n_frames == 6 and im.size == (48, 48)
        assert np.asarray(im.convert("L")).max() > 0  # the body covers some pixels


def test_mesh_workflow_writes_a_glb_and_a_view(comfy_host):
    import trimesh

    entry = comfy_host.run(_api("mesh"), timeout=600)
    (glb,) = _files(comfy_host, entry, "4")
    mesh = trimesh.load(glb, force="mesh", process=False)
    assert len(mesh.faces) > 10000 and np.isfinite(mesh.vertices).all()
    assert 1.4 < np.ptp(np.asarray(mesh.vertices)[:, 1]) < 2.0  # a standing person, metres
    (view,) = _files(comfy_host, entry, "7")
    with Image.open(view) as im:
        assert im.size == (48, 48)
    ours = sorted((comfy_host.base_dir / "output" / "mesh").glob("trihuman_avatar_*_.glb"))
    assert ours, "Avatar Mesh writes its own GLB for Preview3D"


def test_a_bvh_in_the_input_folder_drives_the_avatar(comfy_host, motion_files):
    prompt = _api("dance")
    prompt["2"]["inputs"].update(source="file", file=WORLD_BVH, frames=0)
    entry = comfy_host.run(prompt, timeout=600)
    (webp,) = _files(comfy_host, entry, "5")
    with Image.open(webp) as im:
        assert im.n_frames == 6  # the world motion's 4 frames and its 2 history frames, all rendered


def _missing_avatar(prompt):
    prompt["1"]["inputs"]["avatar_name"] = "no-such-avatar.safetensors"
    return PromptRejected, "avatar_name"


def _resolution_zero(prompt):
    prompt["4"]["inputs"]["width"] = 0
    return PromptRejected, "width"


def _other_skeleton(prompt):
    prompt["2"]["inputs"].update(source="file", file=FIVE_JOINTS, frames=0)
    return ExecutionFailed, "Input 'motion'"


@pytest.mark.parametrize(
    "change",
    [_missing_avatar, _resolution_zero, _other_skeleton],
    ids=["missing_avatar", "width_zero", "npz_joints"],
)
def test_bad_prompts_fail_with_clear_messages_and_the_server_keeps_serving(comfy_host, motion_files, change):
    prompt = _api("dance", frames=1, size=32)
    error, needle = change(prompt)
    with pytest.raises(error) as info:
        comfy_host.run(prompt, timeout=600)
    assert needle in str(info.value)
    if change is _other_skeleton:
        assert "17-joint" in str(info.value) and "[T, 5, 3]" in str(info.value)
    assert comfy_host.is_running()
    comfy_host.run(_api("dance", frames=1, size=32), timeout=600)  # still serving
