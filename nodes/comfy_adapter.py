"""The only place that knows ComfyUI internals: model folders, progress, interrupt (devices and memory:
comfy_memory.py).

Every import of a `comfy` module is guarded, so the pack degrades to plain torch behaviour where an
internal moved (HOST.md lists what changed between 0.3.75 and 0.33).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..models.common.errors import InputError, WeightsNotFoundError

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


def register_model_folders(*names: str) -> None:
    """Make model folders known to ComfyUI (models/<name>) unless a pack or the user already did.

    Another pack (AnimateDiff-Evolved, IPAdapter_plus) may own the name; then our default folder is added
    to theirs, so both packs see the same files."""
    try:
        import folder_paths
    except ImportError:
        return
    models_dir = getattr(folder_paths, "models_dir", None)
    if models_dir is None or not hasattr(folder_paths, "folder_names_and_paths"):
        return  # a stand-in module (tests) or a very old ComfyUI: nothing to register
    for name in names:
        default = os.path.join(models_dir, name)
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = ([default], set(folder_paths.supported_pt_extensions))
        elif default not in folder_paths.folder_names_and_paths[name][0]:
            folder_paths.add_model_folder_path(name, default)


def model_folders(kind: str) -> list[str]:
    try:
        return list(_folder_paths().get_folder_paths(kind))
    except Exception as exc:
        host_call_failed(f"ComfyUI model folders ({kind})", exc)
        return []


def _diffusers_folders() -> list[str]:
    """Relative names of diffusers pipeline folders (those holding unet/config.json) in models/diffusers."""
    return model_dirs_with("diffusers", "unet/config.json")


# ----------------------------------------------------------------------------------------------------
# Folder scans for the dropdowns. ComfyUI builds every node's choices on each /object_info request (each
# page load or refresh), and a recursive scan of a large model folder costs far more than checking that
# nothing changed. A scan is cached per (folder, marker) with the mtime of EVERY directory it visited: a
# directory's mtime changes whenever an entry is added, removed or renamed in it, so nothing can appear
# or vanish at any depth without one of them changing (the immediate subfolders alone would miss a
# config.json copied into an existing model/unet/ folder, e.g. by a download in progress). Checking costs
# one stat per directory, without listing any (measured: 0.2-0.3 ms against 2.3-3 ms for the scan of 6
# pipeline folders, 49 directories); files' contents are not looked at, only names matter.
# A scan is trusted only once the newest mtime it saw is older than the coarsest timestamp resolution in
# use (FAT: 2 s): a change in the same clock tick as the scan leaves the mtime as it was, so until then
# the next call scans again.

MTIME_RESOLUTION_NS = 2_000_000_000


@dataclass
class _Scan:
    mtimes: dict[str, int | None]  # every directory visited -> st_mtime_ns (None: the folder was absent)
    found: list[str]
    trusted: bool


_SCANS: dict[tuple[str, str], _Scan] = {}


def model_dirs_with(kind: str, marker: str) -> list[str]:
    """Relative names (posix, any depth; "." is the folder itself) of the directories inside ComfyUI's
    `kind` folders that hold the file `marker` (e.g. "unet/config.json"). Cached, see above."""
    found: set[str] = set()
    for root in model_folders(kind):
        found.update(_scan_cached(os.path.abspath(root), marker))
    return sorted(found)


def _scan_cached(root: str, marker: str) -> list[str]:
    entry = _SCANS.get((root, marker))
    if entry is not None and entry.trusted and _unchanged(entry.mtimes):
        return entry.found
    started = time.time_ns()
    mtimes, found = _scan_tree(root, marker)
    newest = max((m for m in mtimes.values() if m is not None), default=0)
    _SCANS[(root, marker)] = _Scan(mtimes, found, trusted=started - newest > MTIME_RESOLUTION_NS)
    return found


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _unchanged(mtimes: dict[str, int | None]) -> bool:
    return all(_mtime(path) == mtime for path, mtime in mtimes.items())


def _scan_tree(root: str, marker: str) -> tuple[dict[str, int | None], list[str]]:
    """Walk every directory under `root` (following symlinked folders, each real folder once): their
    mtimes and the relative names of those holding `marker`."""
    mtimes: dict[str, int | None] = {root: _mtime(root)}
    found: list[str] = []
    if mtimes[root] is None or not os.path.isdir(root):
        return mtimes, found
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:  # a symlink cycle, or two links to one store
            continue
        seen.add((st.st_dev, st.st_ino))
        mtimes[folder] = st.st_mtime_ns
        if os.path.isfile(os.path.join(folder, marker)):
            found.append(Path(os.path.relpath(folder, root)).as_posix())
        try:
            with os.scandir(folder) as entries:
                stack.extend(e.path for e in entries if e.is_dir())
        except OSError:  # unreadable: its mtime is recorded, a permission change shows up there too
            continue
    return mtimes, sorted(found)


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


def interrupt_requested() -> bool:
    """Whether the user pressed Cancel (ComfyUI's interrupt flag, left set): a `should_stop` for loops in
    models/ that stop cleanly (a trainer saving, a renderer between ray chunks). False outside ComfyUI."""
    try:
        import comfy.model_management as mm

        return bool(mm.processing_interrupted())
    except Exception as exc:
        host_call_failed("ComfyUI interrupt flag (Cancel)", exc)
        return False


def raise_if_interrupted() -> None:
    """Raise ComfyUI's own interrupt exception (and clear the flag) if Cancel was pressed."""
    try:
        import comfy.model_management as mm
    except Exception as exc:
        host_call_failed("ComfyUI interrupt flag (Cancel)", exc)
        return
    mm.throw_exception_if_processing_interrupted()


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


class _PlainMesh:
    """Stand-in for core MESH where the host has none (the attributes SaveGLB reads)."""

    def __init__(self, vertices, faces, vertex_colors=None):
        self.vertices, self.faces, self.vertex_colors = vertices, faces, vertex_colors


def core_mesh(vertices, faces, vertex_colors=None):
    """Core ComfyUI's MESH (comfy_api.latest.Types.MESH: vertices [B, N, 3], faces [B, M, 3]) so that core
    SaveGLB / Preview3D take our meshes; vertex colours where the host's MESH has them (0.33)."""
    try:
        from comfy_api.latest import Types

        mesh_type = Types.MESH
    except Exception as exc:
        host_call_failed("core MESH type (comfy_api.latest.Types.MESH)", exc)
        return _PlainMesh(vertices, faces, vertex_colors)
    try:
        return mesh_type(vertices, faces, vertex_colors=vertex_colors)
    except TypeError:  # 0.3.75: MESH(vertices, faces) only
        return mesh_type(vertices, faces)


def input_dir() -> Path | None:
    """ComfyUI's input folder, or None outside ComfyUI (reported once through host_call_failed)."""
    try:
        import folder_paths

        return Path(folder_paths.get_input_directory())
    except Exception as exc:
        host_call_failed("ComfyUI input folder", exc)
        return None


def input_subfolder(name: str, input_name: str, what: str) -> Path:
    """A folder inside ComfyUI's input directory (uploaded or copied there); never one outside it."""
    root = input_dir()
    path = path_inside(root, (name or "").strip()) if root is not None else None
    if path is None or not path.is_dir():
        raise InputError(
            input_name, f"a folder inside ComfyUI's input directory ({root}) holding {what}", repr(name)
        )
    return path


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a plain file name: no path, never '.' or '..'


def training_run_folder(method: str, output_name: str, resume: bool) -> tuple[str, Path]:
    """(the checked output name, ComfyUI's output/<method>/<name>: the run's checkpoints). The name must be a
    plain file name; an existing run folder needs `resume`."""
    import folder_paths

    name = (output_name or "").strip()
    if not RUN_NAME.match(name):
        raise InputError("output_name", "a file name (letters, digits, '.', '_', '-')", repr(output_name))
    out = Path(folder_paths.get_output_directory()) / method / name
    if out.exists() and not resume:
        raise InputError("output_name", "a new name, or 'resume' on to continue that run", f"{out} exists")
    return name, out


class TrainingFollow:
    """The callbacks a training node gives the shared trainer (`models/common/training.py`): ComfyUI's
    progress bar; Cancel, which lets the trainer stop after saving a checkpoint and is re-raised by
    `finish`; and the previews it sends, kept on the CPU."""

    def __init__(self, steps: int):
        self._report = progress_callback(steps)
        self.cancelled: list[BaseException] = []
        self.previews: list = []

    def progress(self, step: int, total: int, metrics=None) -> None:
        try:
            self._report(step, total)
        except BaseException as exc:  # ComfyUI's interrupt: stop after saving, then re-raise
            self.cancelled.append(exc)

    def should_stop(self) -> bool:
        return bool(self.cancelled) or interrupt_requested()

    def preview(self, step: int, images) -> None:
        self.previews.append(images.detach().float().cpu())

    def finish(self) -> None:
        """Re-raise the Cancel that stopped the run (after the caller kept what was saved)."""
        if self.cancelled:
            raise self.cancelled[0]
