"""ComfyUI MODEL / CLIP / VAE (as core CheckpointLoaderSimple makes them) -> diffusers modules.

ComfyUI keeps SD1.x models in the original LDM layout, so the bridge only re-prefixes their state dicts
and hands them to the same reader as single-file checkpoints (models/common/loading.py). Weights the host
holds unpatched in the requested precision are shared (one copy in RAM); patched (LoRA) or differently
typed ones are copied with the patches applied. The host's objects are never written.
"""

from __future__ import annotations

import torch

from ..models.common import ldm_layout
from ..models.common.errors import InputError
from ..models.common.loading import SDComponents, components_from_ldm
from ..models.common.text import HALF
from .comfy_adapter import host_call_failed
from .comfy_memory import dtype_input


def _patched_state_dict(
    patcher, module: torch.nn.Module, prefix: str, dtype: torch.dtype = torch.float32
) -> dict:
    """`module`'s weights with the patcher's patches (e.g. LoRA) applied, on the CPU in `dtype`.

    `prefix` is the module's path inside `patcher.model` ("diffusion_model.", "clip_l.transformer.").
    Unpatched weights already on the CPU in `dtype` are shared, not copied (`_shared`). Otherwise:
    ComfyUI 0.33+ may keep patches out of the weights and apply them in the forward pass (dynamic VRAM);
    its own checkpoint saving reads them through `model_state_dict_for_saving`, whose entries yield the
    patched weight on `.to()`. Older hosts (0.3.75) write patches into the live weights on load.
    """
    if not getattr(patcher, "patches", True):  # no LoRA or other weight patch: the live weights are the model
        shared = _shared(module.state_dict(), dtype)
        if shared is not None:
            return shared
    saver = getattr(patcher, "model_state_dict_for_saving", None)
    if saver is not None:
        return _copied({k: v.to("cpu") for k, v in saver(module, prefix).items()}, dtype)
    try:
        import comfy.model_management as mm

        mm.load_models_gpu([patcher])  # applies the patches into the live weights
    except Exception as exc:
        host_call_failed(
            "ComfyUI patch application (load_models_gpu): LoRAs on this model are not applied", exc
        )
    return _copied(module.state_dict(), dtype)


def _copied(state_dict: dict, dtype: torch.dtype) -> dict:
    """Copies on the CPU, floating tensors in `dtype` (the host's tensors are never handed out)."""
    return {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).clone()
        for k, v in state_dict.items()
    }


def _shared(state_dict: dict, dtype: torch.dtype) -> dict | None:
    """The host's tensors themselves (same memory, new tensor objects) when every floating one is a plain
    CPU tensor in `dtype`; else None. Safe because neither side writes weights in place: ComfyUI patches
    by replacing a parameter (its default) and moves a model by giving its parameters new data, which
    leaves our tensor objects as they are; our pipelines copy before changing weights (LoRA fusing,
    training)."""
    out = {}
    for k, v in state_dict.items():
        plain = type(v) in (torch.Tensor, torch.nn.Parameter) and v.device.type == "cpu"
        if not plain or (v.is_floating_point() and v.dtype != dtype):
            return None
        out[k] = v.detach()
    return out


def _text_encoder_dtype(module: torch.nn.Module, dtype: torch.dtype) -> torch.dtype:
    """ComfyUI keeps CLIP's weights in half precision on the CPU and so do our loaders when computing in
    float32 (models/common/text.py `store_for_compute`): the host's half-precision weights are then taken
    as they are (shared when unpatched) instead of upcast into a float32 copy."""
    dtypes = {v.dtype for v in module.state_dict().values() if v.is_floating_point()}
    if dtype == torch.float32 and len(dtypes) == 1 and dtypes <= set(HALF):
        return dtypes.pop()
    return dtype


def components_from_comfy(model, clip, vae, dtype: torch.dtype = torch.float32) -> SDComponents:
    """Convert core MODEL/CLIP/VAE of the SD1.x family (incl. InstructPix2Pix) to SDComponents in `dtype`,
    sharing the host's weights where they are unpatched and already in `dtype` (no second copy in RAM);
    a half-precision CLIP stays in half precision and computes in float32 (`_text_encoder_dtype`)."""
    try:
        diffusion_model = model.model.diffusion_model
    except AttributeError as exc:
        raise InputError("model", "a MODEL from a core checkpoint loader", type(model).__name__) from exc
    sd: dict = {}
    for k, v in _patched_state_dict(model, diffusion_model, "diffusion_model.", dtype).items():
        sd[ldm_layout.UNET_PREFIX + k] = v

    cond = getattr(clip, "cond_stage_model", None)
    clip_l = getattr(cond, "clip_l", None)
    if clip_l is None:
        raise InputError("clip", "an SD1.x CLIP (CLIP-L text encoder)", type(cond).__name__)
    patcher = clip.load_model() if hasattr(clip, "load_model") else clip.patcher
    clip_dtype = _text_encoder_dtype(clip_l.transformer, dtype)
    for k, v in _patched_state_dict(patcher, clip_l.transformer, "clip_l.transformer.", clip_dtype).items():
        if k.startswith("text_model."):  # ComfyUI also keeps text_projection, which SD1.x never uses
            sd[ldm_layout.CLIP_PREFIX + k] = v

    first_stage = getattr(vae, "first_stage_model", None)
    if first_stage is None:
        raise InputError("vae", "a VAE from a core loader", type(vae).__name__)
    vae_sd = first_stage.state_dict()
    for k, v in (_shared(vae_sd, dtype) or _copied(vae_sd, dtype)).items():
        sd[ldm_layout.VAE_PREFIX + k] = v
    return components_from_ldm(sd, source="ComfyUI MODEL/CLIP/VAE", dtype=dtype)


def checkpoint_inputs(model_tooltip: str) -> dict:
    """INPUT_TYPES of a node that takes core Load Checkpoint's MODEL/CLIP/VAE."""
    return {
        "required": {
            "model": ("MODEL", {"tooltip": model_tooltip}),
            "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP (SD1.x text encoder)."}),
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE."}),
        },
        "optional": {"dtype": dtype_input()},
    }
