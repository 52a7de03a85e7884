"""Our modules under a real ComfyUI's model management, checked in-process (nodes/comfy_memory.py).

Run by tests/test_host_memory.py in a subprocess (ComfyUI's modules parse flags and pick a device on
import; the pytest process must not import them): `python tests/comfy_memory_check.py <ComfyUI dir>`.
Prints one JSON object with the observations; the test asserts on them.
"""

from __future__ import annotations

import copy
import gc
import json
import sys
import weakref
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _setup(comfy_dir: str) -> None:
    sys.path.insert(0, comfy_dir)
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # the host tier runs ComfyUI with --cpu
    import papernodes_bootstrap

    papernodes_bootstrap.register()


def _managed(mm) -> list:
    """Our modules among ComfyUI's loaded models (a patcher's model is our _Holder)."""
    out = []
    for loaded in mm.current_loaded_models:
        model = loaded.model.model if loaded.model is not None else None
        if model is not None and type(model).__name__ == "_Holder":
            out.append(model.module)
    return out


def main(comfy_dir: str) -> dict:
    _setup(comfy_dir)
    import comfy.model_management as mm
    import torch
    from papernodes.models.common.tiny import build_tiny_components
    from papernodes.nodes import comfy_memory

    torch.set_num_threads(1)
    comps = build_tiny_components(seed=0)
    unet, vae = comps.unet, comps.vae
    param_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    obs: dict = {}

    x = torch.randn(1, 4, 8, 8)
    context = torch.randn(1, 77, unet.config.cross_attention_dim)
    with comfy_memory.on_device([unet, vae]) as device:
        ref = unet(x.to(device), 10, context.to(device)).sample
    managed = _managed(mm)
    obs["loaded_are_ours"] = {id(m) for m in managed} == {id(unet), id(vae)}
    obs["managed_count"] = len(managed)
    entry = next(lm for lm in mm.current_loaded_models if lm.model.model.module is unet)
    obs["memory_counted"] = [int(entry.model_memory()), int(param_bytes)]

    with comfy_memory.on_device([unet, vae]):  # a second run: the same patchers, no second entry
        again = unet(x, 10, context).sample
    obs["managed_count_second_run"] = len(_managed(mm))
    obs["same_patcher"] = comfy_memory.patcher_for(unet) is entry.model
    obs["same_output"] = bool(torch.equal(ref, again))

    mm.free_memory(1 << 60, torch.device("cpu"))  # another model wants all memory: ComfyUI evicts ours
    obs["managed_after_evict"] = len(_managed(mm))
    with comfy_memory.on_device([unet]):
        obs["runs_after_evict"] = bool(torch.equal(unet(x, 10, context).sample, ref))
    obs["managed_after_reload"] = len(_managed(mm))
    mm.unload_all_models()  # "Unload models" in the UI, POST /free
    obs["managed_after_unload_all"] = len(_managed(mm))

    clone = copy.deepcopy(unet)  # e.g. a LoRA fused into a copy: a different model with its own patcher
    obs["copy_has_own_patcher"] = comfy_memory.patcher_for(clone) is not comfy_memory.patcher_for(unet)

    with comfy_memory.on_device([unet]):
        pass
    gone = weakref.ref(unet)
    del unet, clone, entry, comps, managed
    gc.collect()
    mm.cleanup_models()
    obs["module_freed"] = gone() is None  # ComfyUI holds our model only weakly, as its own
    obs["managed_after_free"] = len(_managed(mm))

    obs["auto_dtype"] = str(comfy_memory.model_dtype("auto"))
    obs["host_warnings"] = sorted(comfy_memory.host_call_failed.__globals__["_reported"])
    return obs


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
