"""The loaders' `dtype` input, end to end through the nodes (no ComfyUI: a fake model folder).

Half precision must give the same pictures as float32 up to its rounding, with every weight really in the
chosen precision; mixed precisions in one DreaMoving run are refused by name."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from papernodes.models.common import saving, tiny
from papernodes.models.common.errors import InputError


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    roots = {k: [str(tmp_path / k)] for k in ("diffusers", "checkpoints", "loras", "diffusion_models")}
    for k in roots:
        (tmp_path / k).mkdir()
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: roots.get(kind, [])
    fake.get_filename_list = lambda kind: []
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    saving.save_diffusers_folder(
        tiny.build_tiny_components(seed=0, in_channels=8), tmp_path / "diffusers" / "ip2p"
    )
    saving.save_diffusers_folder(tiny.build_tiny_components(seed=1), tmp_path / "diffusers" / "sd")
    return tmp_path


def _defaults(node) -> dict:
    """Every widget at its default (combos: the first entry), as a fresh node in the UI."""
    out = {}
    for name, spec in node.INPUT_TYPES()["required"].items():
        kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list):
            out[name] = opts.get("default", kind[0])
        elif "default" in opts:
            out[name] = opts["default"]
    return out


def _dtypes(modules) -> set:
    return {p.dtype for m in modules for p in m.parameters()}


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_colorize_in_half_precision_matches_float32(folders, dtype):
    from papernodes.nodes import colorize

    image = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    outs = {}
    for choice in ("auto", dtype):
        (pipe,) = colorize.LoadColorizer().load("diffusers/ip2p", choice)
        want = torch.float32 if choice == "auto" else colorize.model_dtype(choice)
        assert _dtypes(pipe.components.modules()) == {want}
        kw = _defaults(colorize.Colorize) | {"steps": 3, "keep_luminance": False}
        (outs[choice],) = colorize.Colorize().colorize(
            pipe, image, **{k: v for k, v in kw.items() if k != "image"}
        )
    assert outs[dtype].dtype == torch.float32 and torch.isfinite(outs[dtype]).all()
    assert outs["auto"].std() > 0.05  # a real picture, not a constant both precisions would agree on
    err = (outs[dtype] - outs["auto"]).abs()
    assert err.mean() < 0.02 and err.max() < 0.2  # half-precision rounding, not a different picture


def test_swiftbrush_student_in_bf16(folders):
    from papernodes.nodes import swiftbrush

    outs = {}
    for choice in ("fp32", "bf16"):
        (student,) = swiftbrush.LoadStudent().load("diffusers/sd", swiftbrush.NO_UNET, choice)
        outs[choice], _ = swiftbrush.Generate().generate(student, "a red circle", 3, 1, 32, 32)
    assert outs["fp32"].std() > 0.05
    err = (outs["bf16"] - outs["fp32"]).abs()
    assert err.mean() < 0.02 and err.max() < 0.2


def test_dreamoving_refuses_mixed_precision_by_name():
    from papernodes.nodes import dreamoving

    with pytest.raises(InputError, match="dtype"):
        dreamoving._check_one_precision([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).to(torch.bfloat16)])
    dreamoving._check_one_precision([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])  # one precision: fine
