"""The only place that knows ComfyUI internals: model folders, progress, interrupt, devices.

Every import of a `comfy` module is guarded, so the pack degrades to plain torch behaviour where an
internal moved (HOST.md lists what changed between 0.3.75 and 0.33).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ..models.common.errors import WeightsNotFoundError

log = logging.getLogger("PaperNodes")
_reported: set[str] = set()

DIFFUSERS_PREFIX = "diffusers/"
CHECKPOINTS_PREFIX = "checkpoints/"
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def host_call_failed(what: str, exc: BaseException) -> None:
    """Log, once per `what`, that a guarded ComfyUI call failed and what the pack does instead.

    The guards keep the pack running when a ComfyUI internal moves; without this line a user would lose
    progress bars, Cancel or LoRAs silently."""
    if what in _reported:
        return
    _reported.add(what)
    log.warning("[PaperNodes] %s unavailable (%s: %s); continuing without it", what, type(exc).__name__, exc)


def _folder_paths():
    import folder_paths  # ComfyUI's module; present whenever the pack runs inside ComfyUI

    return folder_paths


def model_folders(kind: str) -> list[str]:
    try:
        return list(_folder_paths().get_folder_paths(kind))
    except Exception as exc:
        host_call_failed(f"ComfyUI model folders ({kind})", exc)
        return []


def _diffusers_folders() -> list[str]:
    """Relative names of diffusers pipeline folders (those holding unet/config.json) in models/diffusers."""
    found = []
    for root in model_folders("diffusers"):
        base = Path(root)
        if not base.is_dir():
            continue
        for config in sorted(base.glob("**/unet/config.json")):
            found.append(config.parent.parent.relative_to(base).as_posix())
    return sorted(set(found))


def _checkpoint_files() -> list[str]:
    try:
        names = _folder_paths().get_filename_list("checkpoints")
    except Exception as exc:
        host_call_failed("ComfyUI file list (checkpoints)", exc)
        return []
    return sorted(n for n in names if n.lower().endswith(WEIGHT_SUFFIXES))


def sd_model_choices(placeholder: str) -> list[str]:
    """Combo entries for an SD-family loader: `diffusers/<folder>` and `checkpoints/<file>`."""
    choices = [DIFFUSERS_PREFIX + n for n in _diffusers_folders()]
    choices += [CHECKPOINTS_PREFIX + n for n in _checkpoint_files()]
    return choices or [placeholder]


def sd_model_input(placeholder: str, tooltip: str) -> tuple:
    """The `model_name` combo input of an SD-family loader."""
    return (sd_model_choices(placeholder), {"tooltip": tooltip})


def resolve_sd_model(choice: str, published: str) -> Path:
    """Map a combo entry to a path inside ComfyUI's model folders, never outside them."""
    if choice.startswith(DIFFUSERS_PREFIX):
        kind, name = "diffusers", choice[len(DIFFUSERS_PREFIX) :]
    elif choice.startswith(CHECKPOINTS_PREFIX):
        kind, name = "checkpoints", choice[len(CHECKPOINTS_PREFIX) :]
    else:
        kind, name = "", choice
    kinds = [kind] if kind else ["diffusers", "checkpoints"]
    searched = [f for k in kinds for f in model_folders(k)]
    for root in searched:
        candidate = path_inside(root, name)
        if candidate is not None and (candidate.is_file() or (candidate / "unet" / "config.json").is_file()):
            return candidate
    raise WeightsNotFoundError(name or choice, searched, published)


def path_inside(root: str | Path, name: str) -> Path | None:
    """`root/name` if `name` stays inside `root` as written, else None.

    The check is on the name, not on the resolved path: a file or folder in the model folder may be a
    symlink to a shared model store (a common way to share models between installs), and the dropdown
    lists it, so it must load. What is refused is a name that leaves the folder by itself: an absolute
    path, a drive, or a `..` component."""
    rel = Path(name)
    if not name or rel.is_absolute() or rel.drive or ".." in rel.parts:
        return None
    return Path(root) / rel


def progress_callback(total: int):
    """A `progress(step, total)` function that drives ComfyUI's progress bar and honours Cancel."""
    try:
        import comfy.model_management as mm
        import comfy.utils

        bar = comfy.utils.ProgressBar(total)
    except Exception as exc:
        host_call_failed("ComfyUI progress bar and Cancel", exc)
        return lambda step, n: None

    def report(step: int, n: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(step, n)

    mm.throw_exception_if_processing_interrupted()
    return report


def torch_device() -> torch.device:
    try:
        import comfy.model_management as mm

        return mm.get_torch_device()
    except Exception as exc:
        host_call_failed("ComfyUI device selection (comfy.model_management.get_torch_device)", exc)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def prepare_modules(modules: list[torch.nn.Module], device: torch.device) -> None:
    """Let ComfyUI free VRAM for our modules, then move them. Weights and dtypes are not changed."""
    if device.type != "cpu":
        try:
            import comfy.model_management as mm

            need = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
            mm.free_memory(int(need * 1.5), device)
        except Exception as exc:
            host_call_failed("ComfyUI memory manager (free_memory)", exc)
    for m in modules:
        m.to(device)


@contextmanager
def on_device(modules: list[torch.nn.Module]) -> Iterator[torch.device]:
    """Run a block with `modules` on ComfyUI's device; they go back to the CPU afterwards, also on Cancel."""
    device = torch_device()
    prepare_modules(modules, device)
    try:
        yield device
    finally:
        offload_modules(modules)


def offload_modules(modules: list[torch.nn.Module]) -> None:
    """Return modules to the CPU after a run unless the user keeps models on the GPU."""
    if os.environ.get("PAPERNODES_KEEP_ON_DEVICE") == "1":
        return
    for m in modules:
        m.to("cpu")
    try:
        import comfy.model_management as mm

        mm.soft_empty_cache()
    except Exception as exc:
        host_call_failed("ComfyUI cache release (soft_empty_cache)", exc)


def file_choices(kind: str, none_label: str | None = None) -> list[str]:
    """Weight files ComfyUI lists for a model folder kind (e.g. "loras"), optionally led by a 'none' entry."""
    try:
        names = sorted(
            n for n in _folder_paths().get_filename_list(kind) if n.lower().endswith(WEIGHT_SUFFIXES)
        )
    except Exception as exc:
        host_call_failed(f"ComfyUI file list ({kind})", exc)
        names = []
    return ([none_label] if none_label else []) + names


def resolve_file(kind: str, name: str, published: str) -> Path:
    """A file inside one of ComfyUI's `kind` folders; never a path outside them."""
    searched = model_folders(kind)
    for root in searched:
        candidate = path_inside(root, name)
        if candidate is not None and candidate.is_file():
            return candidate
    raise WeightsNotFoundError(name, searched, published)
