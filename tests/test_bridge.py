"""The bridge reads patched weights the way the host exposes them (no ComfyUI needed for these tests).

ComfyUI 0.33+ with dynamic VRAM keeps a LoRA out of the module's weights and applies it in the forward
pass; its own checkpoint saving reads weights through `ModelPatcher.model_state_dict_for_saving`, whose
entries produce the patched weight on `.to()`. A bridge that copied `module.state_dict()` would drop the
LoRA silently. The stand-in patcher below behaves like that host: plain weights, patches only on `.to()`.
"""

from __future__ import annotations

import logging

import pytest
import torch
from papernodes.nodes import bridge, comfy_adapter


class LazyPatched(torch.nn.Parameter):
    """Like 0.33's LazyCastingParam: holds the unpatched tensor, returns the patched one from `.to()`."""

    def __new__(cls, tensor, patched):
        return super().__new__(cls, tensor, requires_grad=False)

    def __init__(self, tensor, patched):
        self.patched = patched

    def to(self, *args, **kwargs):
        return self.patched.clone()


class DynamicPatcher:
    """A MODEL whose LoRA delta lives outside the weights, as with 0.33's dynamic VRAM."""

    def __init__(self, model: torch.nn.Module, delta: dict[str, torch.Tensor]):
        self.model, self.delta = model, delta
        self.calls = []

    def model_state_dict_for_saving(self, module=None, prefix=""):
        self.calls.append(prefix)
        out = {}
        for k, v in module.state_dict().items():
            key = prefix + k
            out[k] = LazyPatched(v, v + self.delta[key]) if key in self.delta else v
        return out


def _model(seed=0):
    torch.manual_seed(seed)
    root = torch.nn.Module()
    root.diffusion_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    return root


def test_dynamic_host_weights_arrive_patched():
    root = _model()
    delta = {"diffusion_model.0.weight": torch.full((3, 4), 0.25)}
    patcher = DynamicPatcher(root, delta)
    sd = bridge._patched_state_dict(patcher, root.diffusion_model, "diffusion_model.")
    assert patcher.calls == ["diffusion_model."]
    live = root.diffusion_model.state_dict()
    torch.testing.assert_close(sd["0.weight"], live["0.weight"] + 0.25, rtol=0, atol=0)  # same float op
    assert torch.equal(sd["1.weight"], live["1.weight"])  # unpatched keys pass through unchanged
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in sd.values())
    assert not torch.equal(sd["0.weight"], live["0.weight"])  # a state_dict() copy would fail here
    # The host's own module is never written: its weights stay unpatched.
    assert torch.equal(root.diffusion_model[0].weight, _model().diffusion_model[0].weight)


def test_old_host_path_logs_once_when_comfy_is_missing(caplog):
    """0.3.75 patchers have no saver: the bridge asks ComfyUI to load (patch) the model. Without ComfyUI
    importable here, that guarded call fails, is logged once, and the live weights are returned."""
    comfy_adapter._reported.clear()
    root = _model(1)

    class OldPatcher:
        model = root

    with caplog.at_level(logging.WARNING, logger="PaperNodes"):
        a = bridge._patched_state_dict(OldPatcher(), root.diffusion_model, "diffusion_model.")
        b = bridge._patched_state_dict(OldPatcher(), root.diffusion_model, "diffusion_model.")
    warnings = [r for r in caplog.records if "patch application" in r.getMessage()]
    assert len(warnings) == 1 and "LoRAs on this model are not applied" in warnings[0].getMessage()
    for k, v in root.diffusion_model.state_dict().items():
        assert torch.equal(a[k], v) and torch.equal(b[k], v)


def test_errors_read_as_papernodes_types_in_the_ui():
    """ComfyUI's execution.full_type_name shows `module.qualname`; ours must not be a file path."""
    from papernodes.models.common import errors

    def full_type_name(klass):  # what ComfyUI 0.3.75 and 0.33 do
        return (
            klass.__qualname__
            if klass.__module__ == "builtins"
            else f"{klass.__module__}.{klass.__qualname__}"
        )

    assert full_type_name(errors.InputError) == "PaperNodes.InputError"
    assert full_type_name(errors.WeightsNotFoundError) == "PaperNodes.WeightsNotFoundError"

    class Later(errors.PaperNodesError):  # subclasses defined by methods get it too
        pass

    assert full_type_name(Later).startswith("PaperNodes.")
    assert isinstance(errors.InputError("x", "y"), ValueError)  # still catchable as before


class PlainPatcher:
    """A core MODEL as ComfyUI hands it over: live weights, and `patches` holding any LoRA."""

    def __init__(self, model: torch.nn.Module, patches: dict | None = None):
        self.model, self.patches = model, patches or {}


def test_unpatched_host_weights_are_shared_not_copied():
    """One copy in RAM: our tensors use the host's memory, as new tensor objects (moving either model
    gives its own parameters new data and leaves the other's as they are)."""
    root = _model(2)
    sd = bridge._patched_state_dict(PlainPatcher(root), root.diffusion_model, "diffusion_model.")
    for k, v in root.diffusion_model.state_dict().items():
        assert sd[k].data_ptr() == v.data_ptr(), k
    assert sd["0.weight"] is not root.diffusion_model[0].weight
    assert not isinstance(sd["0.weight"], torch.nn.Parameter)


def test_patched_or_other_precision_weights_are_copied():
    root = _model(3)
    live = root.diffusion_model.state_dict()
    lora = bridge._patched_state_dict(
        PlainPatcher(root, {"diffusion_model.0.weight": ["lora"]}), root.diffusion_model, "diffusion_model."
    )
    half = bridge._patched_state_dict(
        PlainPatcher(root), root.diffusion_model, "diffusion_model.", torch.bfloat16
    )
    for k, v in live.items():
        assert lora[k].data_ptr() != v.data_ptr() and half[k].data_ptr() != v.data_ptr(), k
        assert half[k].dtype == torch.bfloat16 and torch.equal(half[k], v.to(torch.bfloat16)), k


@pytest.mark.parametrize("clip_dtype", [torch.float32, torch.float16])
def test_bridged_components_share_the_hosts_tensors_and_leave_them_unchanged(clip_dtype):
    """The whole bridge on a host-shaped MODEL/CLIP/VAE (LDM layout, as ComfyUI keeps SD1.x): the U-Net
    and VAE weights are the host's memory; running our pipeline's modules does not change them. A
    float16 CLIP (ComfyUI's choice on the CPU) is shared too and computes in float32."""
    from papernodes.models.common import ldm_layout, text
    from papernodes.models.common.saving import ldm_state_dict
    from papernodes.models.common.tiny import build_tiny_components

    comps = build_tiny_components(seed=4)
    full = ldm_state_dict(comps)

    def holder(prefix: str) -> torch.nn.Module:
        dtype = clip_dtype if prefix == ldm_layout.CLIP_PREFIX else torch.float32
        part = {
            k[len(prefix) :]: v.to(dtype) if v.is_floating_point() else v.clone()
            for k, v in full.items()
            if k.startswith(prefix)
        }
        module = torch.nn.Module()
        for k, v in part.items():  # a module whose state_dict() is exactly `part`
            module.register_buffer(k.replace(".", "__"), v)
        module.state_dict = lambda: part  # the host's module view of these tensors
        return module

    unet_m, vae_m, clip_m = (
        holder(p) for p in (ldm_layout.UNET_PREFIX, ldm_layout.VAE_PREFIX, ldm_layout.CLIP_PREFIX)
    )
    model = PlainPatcher(torch.nn.Module())
    model.model.diffusion_model = unet_m
    clip_l = torch.nn.Module()
    clip_l.transformer = clip_m
    clip = type(
        "Clip",
        (),
        {"cond_stage_model": type("C", (), {"clip_l": clip_l})(), "patcher": PlainPatcher(torch.nn.Module())},
    )()
    vae = type("Vae", (), {"first_stage_model": vae_m})()
    before = {k: v.clone() for k, v in unet_m.state_dict().items()}
    ours = bridge.components_from_comfy(model, clip, vae)

    host_ptrs = {v.data_ptr() for m in (unet_m, vae_m) for v in m.state_dict().values()}
    ours_ptrs = [p.data_ptr() for m in (ours.unet, ours.vae) for p in m.parameters()]
    assert all(p in host_ptrs for p in ours_ptrs)
    x = torch.randn(1, 4, 8, 8)
    ours.unet(x, 10, torch.randn(1, 77, ours.unet.config.cross_attention_dim))
    for k, v in unet_m.state_dict().items():
        assert torch.equal(v, before[k]), k
    for a, b in zip(ours.unet.state_dict().values(), comps.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # and they are the model's numbers
    clip_ptrs = {v.data_ptr() for v in clip_m.state_dict().values()}
    assert {p.dtype for p in ours.text_encoder.parameters()} == {clip_dtype}
    assert all(p.data_ptr() in clip_ptrs for p in ours.text_encoder.parameters())
    got = text.encode_prompts(ours, ["a star"], "cpu")
    reference = build_tiny_components(seed=4).text_encoder
    for p in reference.parameters():
        p.data = p.data.to(clip_dtype).float()  # the host's numbers, in float32
    want = reference(text.tokenize_prompts(ours.tokenizer, ["a star"]))[0]
    assert got.dtype == torch.float32 and torch.allclose(got, want, rtol=0, atol=1e-6)
