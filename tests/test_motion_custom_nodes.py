"""Customizing Motion nodes (nodes/motion_custom.py) without ComfyUI: tiny models in the real formats in a fake
models tree; load both bases, train from a clips folder and from IMAGE frames, load/apply a motion, generate
(strength 0 = base exactly), and InputErrors naming the input."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from papernodes.models.common import tiny
from papernodes.models.common.animatediff import build_tiny_motion_adapter, save_motion_adapter_original
from papernodes.models.common.errors import InputError, WeightsFormatError
from papernodes.models.common.saving import save_diffusers_folder

torch.set_num_threads(1)
GEN = dict(prompt="a red square sks sliding", negative_prompt="", num_frames=4, width=32, height=32, steps=2,
           guidance=9.0, scheduler="dpmpp_2m", seed=1)  # fmt: skip


def _frames(n=6, colour=(220, 30, 30)):
    f = np.full((n, 32, 32, 3), 30, np.uint8)
    for i in range(n):
        f[i, 10:20, 3 + 3 * i : 11 + 3 * i] = colour
    return f


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy")
    save_diffusers_folder(tiny.build_tiny_components(0), root / "diffusers" / "tiny-sd")
    save_diffusers_folder(tiny.build_tiny_zeroscope(0), root / "diffusers" / "tiny-zeroscope")
    save_motion_adapter_original(build_tiny_motion_adapter(1, zero_out=False),
                                 root / "animatediff_models" / "mm-tiny.safetensors")  # fmt: skip
    from PIL import Image

    for name in ("a", "b"):
        clip = root / "input" / "clips" / name
        clip.mkdir(parents=True)
        for i, frame in enumerate(_frames()):
            Image.fromarray(frame).save(clip / f"{i:02d}.png")
    (root / "input" / "empty").mkdir()
    for sub in ("output", "motions", "checkpoints"):
        (root / sub).mkdir()
    return root


@pytest.fixture()
def nodes(tree, monkeypatch):
    kinds = ("diffusers", "animatediff_models", "motions", "checkpoints")
    folders = {k: [str(tree / k)] for k in kinds}
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: folders.get(kind, [])
    fake.get_filename_list = lambda kind: sorted(
        str(p.relative_to(tree / kind)) for p in (tree / kind).rglob("*") if p.is_file()
    ) if kind in folders else []  # fmt: skip
    fake.get_output_directory = lambda: str(tree / "output")
    fake.get_input_directory = lambda: str(tree / "input")
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    from papernodes.nodes import motion_custom

    return motion_custom


def _sd(nd):
    return nd.LoadVideoModel().load("diffusers/tiny-sd", "mm-tiny.safetensors")[0]


def test_every_input_has_a_tooltip(nodes):
    for cls in nodes.NODE_CLASS_MAPPINGS.values():
        for group in cls.INPUT_TYPES().values():
            for name, (_, opts) in group.items():
                assert opts.get("tooltip"), f"{cls.__name__}.{name}"
        assert cls.CATEGORY == "PaperNodes/MotionCustom"


def test_loads_both_bases_and_refuses_wrong_combinations(nodes):
    choices = nodes.LoadVideoModel.INPUT_TYPES()["required"]["model_name"][0]
    assert "diffusers/tiny-zeroscope" in choices and "diffusers/tiny-sd" in choices
    zs = nodes.LoadVideoModel().load("diffusers/tiny-zeroscope", "none")[0]
    assert zs.architecture == "zeroscope"
    assert _sd(nodes).architecture == "animatediff"
    with pytest.raises(InputError, match="motion_module_name"):
        nodes.LoadVideoModel().load("diffusers/tiny-sd", "none")
    with pytest.raises(InputError, match="motion_module_name"):
        nodes.LoadVideoModel().load("diffusers/tiny-zeroscope", "mm-tiny.safetensors")


@pytest.mark.slow  # trains twice
def test_train_apply_generate_round_trip(nodes, tree):
    model = _sd(nodes)
    train = nodes.TrainMotion()
    kw = dict(token="sks", steps=2, lr=1e-3, frames=4, width=32, height=32, prior_weight=0.5, timestep_law="high",
              trainable="paper", seed=0, resume=False)  # fmt: skip
    motion, preview, path = train.train(model, "clips", output_name="slide", **kw)["result"]
    assert path.endswith("slide.safetensors") and (tree / "motions" / "slide.safetensors").is_file()
    assert preview.shape == (4, 32, 32, 3) and motion.steps == 2
    # from IMAGE frames instead of a folder
    m2 = train.train(model, "", output_name="slide-frames", clips=torch.from_numpy(_frames()).float() / 255,
                     caption="a red square sliding", **kw)["result"][0]  # fmt: skip
    assert m2.deltas.keys() == motion.deltas.keys()
    loaded, token = nodes.LoadMotion().load("slide.safetensors")
    assert token == "sks"
    base = nodes.GenerateVideo().generate(model, **GEN)["result"][0]
    off = nodes.GenerateVideo().generate(nodes.ApplyMotion().apply(model, loaded, 0.0)[0], **GEN)["result"][0]
    on = nodes.GenerateVideo().generate(nodes.ApplyMotion().apply(model, loaded, 1.0)[0], **GEN)["result"]
    assert torch.equal(off, base) and (on[0] - base).abs().max() > 1e-4 and on[1] == ""
    note = nodes.GenerateVideo().generate(nodes.ApplyMotion().apply(model, loaded, 1.0)[0],
                                          **{**GEN, "prompt": "a red square"})["result"][1]  # fmt: skip
    assert "sks" in note
    with pytest.raises(InputError, match="output_name"):  # the run exists and resume is off
        train.train(model, "clips", output_name="slide", **kw)
    zs = nodes.LoadVideoModel().load("diffusers/tiny-zeroscope", "none")[0]
    with pytest.raises(WeightsFormatError, match="this model is zeroscope"):
        nodes.ApplyMotion().apply(zs, loaded, 1.0)


def test_clips_folder_must_be_inside_input_and_hold_clips(nodes):
    model = _sd(nodes)
    kw = dict(token="sks", output_name="x", steps=1, lr=1e-3, frames=4, width=32, height=32, prior_weight=0.5,
              timestep_law="high", trainable="paper", seed=0, resume=False)  # fmt: skip
    with pytest.raises(InputError, match="clips_folder"):
        nodes.TrainMotion().train(model, "../output", **kw)
    from papernodes.models.motion_custom.data import ClipsError

    with pytest.raises(ClipsError, match="holds no clips"):
        nodes.TrainMotion().train(model, "empty", **{**kw, "output_name": "y"})
    with pytest.raises(InputError, match="output_name"):
        nodes.TrainMotion().train(model, "clips", **{**kw, "output_name": "../evil"})
