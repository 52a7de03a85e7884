"""Customizing Motion in the real ComfyUI: both example workflows (apply a motion file; train one from clips
in input/), bad inputs answered with errors naming the input, and the server still serving afterwards."""

from __future__ import annotations

import json
import shutil

import pytest
from comfy_host import ExecutionFailed, PromptRejected
from conftest import REPO_ROOT
from papernodes.models.demo_assets import DEMO_MOTION
from PIL import Image

pytestmark = pytest.mark.host

NODES = (
    "PaperNodes_MotionCustomLoadVideoModel",
    "PaperNodes_MotionCustomFromCheckpoint",
    "PaperNodes_MotionCustomLoadMotion",
    "PaperNodes_MotionCustomApplyMotion",
    "PaperNodes_MotionCustomTrainMotion",
    "PaperNodes_MotionCustomGenerateVideo",
)


def _api(name: str) -> dict:
    """The example workflow on the test host's tiny models: few steps, small frames."""
    prompt = json.loads((REPO_ROOT / "example_workflows" / "api" / f"motioncustom_{name}.json").read_text())
    for node in prompt.values():
        if node["class_type"] == "PaperNodes_MotionCustomGenerateVideo":
            node["inputs"].update(steps=2, width=64, height=64, num_frames=4)
        if node["class_type"] == "PaperNodes_MotionCustomTrainMotion":
            node["inputs"].update(steps=2, width=64, height=64, frames=4)
    return prompt


def test_nodes_are_registered_with_tooltips(comfy_host):
    info = comfy_host.object_info()
    for key in NODES:
        assert info[key]["category"] == "PaperNodes/MotionCustom"
        for section in ("required", "optional"):
            for name, spec in info[key]["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{key}.{name} has no tooltip"
    assert DEMO_MOTION in info[NODES[2]]["input"]["required"]["motion_name"][0]


def test_apply_workflow_writes_both_videos(comfy_host):
    entry = comfy_host.run(_api("apply"), timeout=600)
    for node in ("5", "7"):
        webp = comfy_host.output_files({"outputs": {node: entry["outputs"][node]}})
        assert len(webp) == 1
        with Image.open(webp[0]) as im:
            assert im.n_frames == 4 and im.size == (64, 64)


def test_train_workflow_writes_a_motion_file_and_runs_again(comfy_host):
    prompt = _api("train")
    prompt["2"]["inputs"]["output_name"] = "host-test-motion"
    comfy_host.run(prompt, timeout=600)
    assert (comfy_host.base_dir / "models" / "motions" / "host-test-motion.safetensors").is_file()
    comfy_host.run(prompt, timeout=600)  # resume on: a second run continues (here: already done), no error


def _clips(comfy_host, name: str):
    folder = comfy_host.base_dir / "input" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _empty_clips(prompt, host):
    _clips(host, "host_empty_clips")
    prompt["2"]["inputs"]["clips_folder"] = "host_empty_clips"
    return ExecutionFailed, "holds no clips"


def _outside_input(prompt, host):
    prompt["2"]["inputs"]["clips_folder"] = "../models"
    return ExecutionFailed, "clips_folder"


def _broken_video(prompt, host):
    (_clips(host, "host_broken_clips") / "broken.mp4").write_bytes(b"not a video")
    prompt["2"]["inputs"]["clips_folder"] = "host_broken_clips"
    return ExecutionFailed, "broken.mp4"


def _clips_too_short(prompt, host):
    prompt["2"]["inputs"]["frames"] = 16  # the demo clips have 8
    return ExecutionFailed, "shorter than the 16 frames"


def _token_two_words(prompt, host):
    prompt["2"]["inputs"]["token"] = "two words"
    return ExecutionFailed, "token"


def _frames_zero(prompt, host):
    # ComfyUI still runs the outputs whose inputs are valid (Train Motion is one): use the apply workflow,
    # both of whose outputs depend on a bad generation
    prompt.clear()
    prompt.update(_api("apply"))
    for node in ("4", "6"):
        prompt[node]["inputs"]["num_frames"] = 0
    return PromptRejected, "num_frames"


@pytest.mark.parametrize(
    "change", [_empty_clips, _outside_input, _broken_video, _clips_too_short, _token_two_words, _frames_zero],
    ids=["empty_clips_folder", "folder_outside_input", "unreadable_video", "clips_too_short", "token", "frames"],
)  # fmt: skip
def test_bad_inputs_fail_with_clear_messages_and_the_server_keeps_serving(comfy_host, change):
    prompt = _api("train")
    prompt["2"]["inputs"]["output_name"] = f"host-bad-{change.__name__.strip('_')}"
    error, needle = change(prompt, comfy_host)
    with pytest.raises(error) as info:
        comfy_host.run(prompt, timeout=600)
    assert needle in str(info.value)
    assert comfy_host.is_running()
    comfy_host.run(_api("apply"), timeout=600)  # still serving


def test_prompt_without_the_token_warns_instead_of_failing(comfy_host):
    prompt = _api("apply")
    prompt["4"]["inputs"]["prompt"] = "a red square orbiting on a dotted blue background"
    entry = comfy_host.run(prompt, timeout=600)
    assert "sks" in " ".join(entry["outputs"]["4"]["text"])


def test_motion_file_for_another_base_is_refused_by_name(comfy_host):
    from papernodes.models.common import tiny
    from papernodes.models.common.animatediff import build_tiny_motion_adapter
    from papernodes.models.motion_custom.demo import write_seeded_motion
    from papernodes.models.motion_custom.pipeline import animatediff_model

    other = animatediff_model(tiny.build_tiny_components(seed=11), build_tiny_motion_adapter(seed=12))
    write_seeded_motion(other, comfy_host.base_dir / "models" / "motions" / "host-other-base.safetensors")
    prompt = _api("apply")
    prompt["2"]["inputs"]["motion_name"] = "host-other-base.safetensors"
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(prompt, timeout=600)
    assert "different base model" in str(info.value)
    assert comfy_host.is_running()
