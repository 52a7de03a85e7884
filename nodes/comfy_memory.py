"""Our torch modules under ComfyUI's model management, as its own MODEL/CLIP/VAE are.

Each module gets one `comfy.model_patcher.ModelPatcher`. `on_device(modules)` asks ComfyUI to load them
(`load_models_gpu`): it evicts other models when VRAM is short, keeps ours on the GPU between runs while
they fit, and moves them back to RAM when something else needs the space; ComfyUI's "Unload models" and
`POST /free` reach them too. Without ComfyUI (unit tests, scripts) the modules are moved directly and
returned to the CPU after the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .comfy_adapter import host_call_failed

_PATCHER_ATTR = "_papernodes_patcher"
HOST_API_ERRORS = (ImportError, AttributeError, TypeError)  # what a moved or renamed internal raises


class _Holder(torch.nn.Module):
    """What the patcher manages: a plain module holding ours.

    ModelPatcher writes `.device` and bookkeeping attributes onto the module it manages, and diffusers' and
    transformers' models have a read-only `device` property."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module


class _PatcherRef:
    """Keeps a module's patcher alive as long as the module. A copy of the module (deepcopy: LoRA fusing,
    training) is a different model and starts without one."""

    def __init__(self, patcher=None):
        self.patcher = patcher

    def __deepcopy__(self, memo):
        return _PatcherRef()


def patcher_for(module: torch.nn.Module):
    """The module's ModelPatcher, made on first use (load device: ComfyUI's; offload device: its unet's)."""
    ref = module.__dict__.get(_PATCHER_ATTR)
    if ref is None or ref.patcher is None:
        import comfy.model_management as mm
        import comfy.model_patcher

        patcher = comfy.model_patcher.ModelPatcher(
            _Holder(module), load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
        )
        ref = _PatcherRef(patcher)
        module.__dict__[_PATCHER_ATTR] = ref  # not a Module/Parameter: kept out of state_dict and .to()
    return ref.patcher


def torch_device() -> torch.device:
    try:
        import comfy.model_management as mm

        return mm.get_torch_device()
    except HOST_API_ERRORS as exc:
        host_call_failed("ComfyUI device selection (comfy.model_management.get_torch_device)", exc)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_managed(modules: list[torch.nn.Module]) -> bool:
    """Have ComfyUI load `modules` on its device; False when its model management is unavailable."""
    try:
        import comfy.model_management as mm

        mm.load_models_gpu([patcher_for(m) for m in modules])
        return True
    except HOST_API_ERRORS as exc:
        host_call_failed("ComfyUI model management (ModelPatcher, load_models_gpu)", exc)
        return False


@contextmanager
def on_device(modules: list[torch.nn.Module]) -> Iterator[torch.device]:
    """Run a block with `modules` on ComfyUI's device.

    Under ComfyUI the modules stay there afterwards, managed like core models (evicted when others need
    the memory). Without it they are moved for the block and back to the CPU after, also on Cancel."""
    device = torch_device()
    if load_managed(modules):
        yield device
        return
    for m in modules:
        m.to(device)
    try:
        yield device
    finally:
        for m in modules:
            m.to("cpu")


def unload_all(device: torch.device) -> None:
    """Before training: let ComfyUI move every model it manages (ours included) off the GPU."""
    if device.type == "cpu":
        return
    try:
        import comfy.model_management as mm

        mm.unload_all_models()
        mm.soft_empty_cache()
    except HOST_API_ERRORS as exc:
        host_call_failed("ComfyUI model unloading before training", exc)


def model_dtype(choice: str) -> torch.dtype:
    """A loader's `dtype` input: "auto" is ComfyUI's choice for a diffusion model on its device (fp16 or
    bf16 on GPUs, fp32 on the CPU); otherwise the named precision."""
    if choice in DTYPES:
        return DTYPES[choice]
    if choice != "auto":
        from ..models.common.errors import InputError

        raise InputError("dtype", f"one of auto, {', '.join(DTYPES)}", choice)
    try:
        import comfy.model_management as mm

        dtype = mm.unet_dtype()
    except HOST_API_ERRORS as exc:
        host_call_failed("ComfyUI precision choice (comfy.model_management.unet_dtype)", exc)
        return torch.float32
    return dtype if dtype in DTYPES.values() else torch.float32  # fp8 storage etc.: compute in fp32


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_input() -> tuple:
    """The `dtype` combo every loader has."""
    return (
        ["auto", *DTYPES],
        {
            "default": "auto",
            "tooltip": "Precision of the model's weights and computation. auto: ComfyUI's choice for the "
            "device (fp16 or bf16 on GPUs, fp32 on the CPU). fp16/bf16 halve the memory.",
        },
    )
