"""ComfyUI MODEL / CLIP / VAE (as core CheckpointLoaderSimple makes them) -> diffusers modules.

ComfyUI keeps SD1.x models in the original LDM layout, so the bridge only re-prefixes their state dicts
and hands them to the same reader as single-file checkpoints (models/common/loading.py). Weights are
copied, patched with any LoRA the MODEL/CLIP carry, so the host's objects are left untouched.
"""

from __future__ import annotations

import torch

from ..models.common import ldm_layout
from ..models.common.errors import InputError
from ..models.common.loading import SDComponents, components_from_ldm
from .comfy_adapter import host_call_failed


def _patched_state_dict(patcher, module: torch.nn.Module, prefix: str) -> dict:
    """`module`'s weights with the patcher's patches (e.g. LoRA) applied, copied to CPU float32.

    `prefix` is the module's path inside `patcher.model` ("diffusion_model.", "clip_l.transformer.").
    ComfyUI 0.33+ may keep patches out of the weights and apply them in the forward pass (dynamic VRAM);
    its own checkpoint saving reads them through `model_state_dict_for_saving`, whose entries yield the
    patched weight on `.to()`. Older hosts (0.3.75) write patches into the live weights on load.
    """
    saver = getattr(patcher, "model_state_dict_for_saving", None)
    if saver is not None:
        return {k: v.to("cpu").detach().to(torch.float32).clone() for k, v in saver(module, prefix).items()}
    try:
        import comfy.model_management as mm

        mm.load_models_gpu([patcher])  # applies the patches into the live weights
    except Exception as exc:
        host_call_failed(
            "ComfyUI patch application (load_models_gpu): LoRAs on this model are not applied", exc
        )
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in module.state_dict().items()}


def components_from_comfy(model, clip, vae) -> SDComponents:
    """Convert core MODEL/CLIP/VAE of the SD1.x family (incl. InstructPix2Pix) to SDComponents."""
    try:
        diffusion_model = model.model.diffusion_model
    except AttributeError as exc:
        raise InputError("model", "a MODEL from a core checkpoint loader", type(model).__name__) from exc
    sd: dict = {}
    for k, v in _patched_state_dict(model, diffusion_model, "diffusion_model.").items():
        sd[ldm_layout.UNET_PREFIX + k] = v

    cond = getattr(clip, "cond_stage_model", None)
    clip_l = getattr(cond, "clip_l", None)
    if clip_l is None:
        raise InputError("clip", "an SD1.x CLIP (CLIP-L text encoder)", type(cond).__name__)
    patcher = clip.load_model() if hasattr(clip, "load_model") else clip.patcher
    for k, v in _patched_state_dict(patcher, clip_l.transformer, "clip_l.transformer.").items():
        if k.startswith("text_model."):  # ComfyUI also keeps text_projection, which SD1.x never uses
            sd[ldm_layout.CLIP_PREFIX + k] = v

    first_stage = getattr(vae, "first_stage_model", None)
    if first_stage is None:
        raise InputError("vae", "a VAE from a core loader", type(vae).__name__)
    for k, v in first_stage.state_dict().items():
        sd[ldm_layout.VAE_PREFIX + k] = v.detach().to("cpu", torch.float32).clone()
    return components_from_ldm(sd, source="ComfyUI MODEL/CLIP/VAE")


def checkpoint_inputs(model_tooltip: str) -> dict:
    """INPUT_TYPES of a node that takes core Load Checkpoint's MODEL/CLIP/VAE."""
    return {
        "required": {
            "model": ("MODEL", {"tooltip": model_tooltip}),
            "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP (SD1.x text encoder)."}),
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE."}),
        }
    }
