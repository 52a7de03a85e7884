"""The bridge reads patched weights the way the host exposes them (no ComfyUI needed for these tests).

ComfyUI 0.33+ with dynamic VRAM keeps a LoRA out of the module's weights and applies it in the forward
pass; its own checkpoint saving reads weights through `ModelPatcher.model_state_dict_for_saving`, whose
entries produce the patched weight on `.to()`. A bridge that copied `module.state_dict()` would drop the
LoRA silently. The stand-in patcher below behaves like that host: plain weights, patches only on `.to()`.
"""

from __future__ import annotations

import logging

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
