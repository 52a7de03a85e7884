"""Triangle meshes in and out: core MESH tensors, trimesh objects, GLB and OBJ files, Preview3D files.

The 3D methods (HandDiffuse's hand meshes, TriHuman's avatars, BiDiff's shapes) hand meshes to ComfyUI as
core `MESH` and as GLB files for core `Preview3D` / `SaveGLB`; this module is the one place that knows
those formats.

- Core MESH (comfy_api `MESH`, ComfyUI 0.3.75): `vertices` float [B, N, 3] and `faces` long [B, M, 3],
  built with `torch.stack`, so every mesh of a batch has the same N and M (no padding); `SaveGLB` writes
  item i as its own GLB. `to_core_mesh` returns the two tensors (the node wraps them in core's class:
  models/ never imports ComfyUI); `from_core_mesh` reads core's object or the tensors.
- Meshes between functions are `trimesh.Trimesh`, built with `process=False` so vertex order and count
  are kept exactly (no merging, no dropping of unused vertices).
- Vertex colours are float RGBA in 0..1 at the API ([N, 3] input is taken as opaque RGB) and 8-bit in
  files, as glTF viewers read them; values k / 255 survive a round trip exactly.
- GLB stores vertices as float32 and faces as uint32, like core `save_glb`, in the file's own (y-up)
  axes: nothing is transformed. OBJ is written here with 9 significant digits, the float32 round-trip
  precision (trimesh's exporter rounds to 8 decimals), and colours as OBJ's `v x y z r g b` extension
  (no alpha); it is read back through trimesh.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError, PaperNodesError

MESH_SUFFIXES = (".glb", ".obj")
PREVIEW_SUBFOLDER = "mesh"  # core SaveGLB's default "mesh/ComfyUI" prefix writes here too


class MeshFileError(PaperNodesError, ValueError):
    """A mesh file cannot be read as a triangle mesh; names the file."""


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_mesh(
    vertices: Any, faces: Any, vertex_colors: Any = None, name: str = "mesh"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate one mesh -> (vertices float32 [N, 3], faces int64 [M, 3], colours uint8 [N, 4] or None).

    Errors are InputError naming `name` and the part that is wrong (shape, dtype, index range, finiteness).
    """
    v = _numpy(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(name, "vertices of shape [N, 3]", f"vertices of shape {list(v.shape)}")
    if not np.issubdtype(v.dtype, np.floating) and not np.issubdtype(v.dtype, np.integer):
        raise InputError(name, "numeric vertices", f"vertices of dtype {v.dtype}")
    v = v.astype(np.float32)
    if not np.isfinite(v).all():
        raise InputError(name, "finite vertex coordinates", "NaN or inf")
    f = _numpy(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(name, "triangle faces of shape [M, 3]", f"faces of shape {list(f.shape)}")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise InputError(name, "integer face indices", f"faces of dtype {f.dtype}")
    f = f.astype(np.int64)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        bad = int(f.min()) if f.min() < 0 else int(f.max())
        raise InputError(name, f"face indices in 0..{len(v) - 1} ({len(v)} vertices)", f"index {bad}")
    colors = None if vertex_colors is None else _colors_uint8(vertex_colors, len(v), name)
    return v, f, colors


def _colors_uint8(colors: Any, count: int, name: str) -> np.ndarray:
    c = _numpy(colors)
    if c.ndim != 2 or c.shape[0] != count or c.shape[1] not in (3, 4):
        raise InputError(
            name, f"vertex colours of shape [{count}, 3] or [{count}, 4]", f"shape {list(c.shape)}"
        )
    if c.dtype == np.uint8:
        out = c
    elif np.issubdtype(c.dtype, np.floating):
        if not np.isfinite(c).all() or c.min() < 0.0 or c.max() > 1.0:
            raise InputError(name, "vertex colours in 0..1", f"range {c.min()}..{c.max()}")
        out = np.rint(c.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise InputError(name, "vertex colours as floats in 0..1 or uint8", f"dtype {c.dtype}")
    if out.shape[1] == 3:
        out = np.concatenate([out, np.full((count, 1), 255, np.uint8)], axis=1)
    return np.ascontiguousarray(out)


def to_trimesh(vertices: Any, faces: Any, vertex_colors: Any = None, name: str = "mesh"):
    """A validated `trimesh.Trimesh` (process=False: vertex order and count kept)."""
    import trimesh

    v, f, c = check_mesh(vertices, faces, vertex_colors, name)
    return trimesh.Trimesh(vertices=v, faces=f, vertex_colors=c, process=False)


def from_trimesh(mesh) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(vertices float32 [N, 3], faces int64 [M, 3], RGBA colours float32 [N, 4] in 0..1 or None)."""
    vertices = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32).copy())
    faces = torch.from_numpy(np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3).copy())
    colors = None
    visual = getattr(mesh, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        rgba = np.asarray(visual.vertex_colors, dtype=np.uint8)
        colors = torch.from_numpy(rgba.astype(np.float32) / 255.0)
    return vertices, faces, colors


# ---------------------------------------------------------------------------------------------- core MESH


def to_core_mesh(meshes: Any, name: str = "mesh") -> tuple[torch.Tensor, torch.Tensor]:
    """One trimesh or a list -> core MESH tensors (vertices float32 [B, N, 3], faces int64 [B, M, 3]).

    Core stacks a batch without padding, so all meshes must have equal vertex and face counts.
    """
    items = [meshes] if hasattr(meshes, "vertices") and hasattr(meshes, "faces") else list(meshes)
    if not items:
        raise InputError(name, "at least one mesh")
    parts = [from_trimesh(m)[:2] for m in items]
    counts = {(len(v), len(f)) for v, f in parts}
    if len(counts) > 1:
        raise InputError(
            name,
            "meshes with equal vertex and face counts (core MESH stacks a batch without padding; "
            "pass them one per batch)",
            f"(vertices, faces) counts {sorted(counts)}",
        )
    return torch.stack([v for v, _ in parts]), torch.stack([f for _, f in parts])


def from_core_mesh(mesh: Any, faces: Any = None, name: str = "mesh") -> list:
    """Core MESH (an object with `.vertices` / `.faces`) or tensors [B, N, 3] / [N, 3] -> list of trimesh."""
    if faces is None:
        if not (hasattr(mesh, "vertices") and hasattr(mesh, "faces")):
            raise InputError(name, "a MESH (vertices [B, N, 3], faces [B, M, 3])", type(mesh).__name__)
        vertices, faces = mesh.vertices, mesh.faces
    else:
        vertices = mesh
    v, f = _numpy(vertices), _numpy(faces)
    if v.ndim == 2 and f.ndim == 2:
        v, f = v[None], f[None]
    if v.ndim != 3 or f.ndim != 3 or len(v) != len(f):
        raise InputError(
            name,
            "vertices [B, N, 3] and faces [B, M, 3] with the same batch size B",
            f"vertices {list(v.shape)}, faces {list(f.shape)}",
        )
    return [to_trimesh(v[i], f[i], name=name if len(v) == 1 else f"{name}[{i}]") for i in range(len(v))]


# ------------------------------------------------------------------------------------------------- files


def _arrays(mesh, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A trimesh's arrays through `check_mesh`, so a bad mesh fails before anything is written."""
    if not (hasattr(mesh, "vertices") and hasattr(mesh, "faces")):
        raise InputError(name, "a trimesh.Trimesh", type(mesh).__name__)
    visual = getattr(mesh, "visual", None)
    colors = visual.vertex_colors if getattr(visual, "kind", None) == "vertex" else None
    return check_mesh(mesh.vertices, mesh.faces, colors, name)


def glb_bytes(mesh, name: str = "mesh") -> bytes:
    """The mesh as one binary glTF (positions float32, indices uint32, COLOR_0 when it has colours)."""
    import trimesh

    v, f, c = _arrays(mesh, name)
    return trimesh.Trimesh(vertices=v, faces=f, vertex_colors=c, process=False).export(file_type="glb")


def write_glb(mesh, path: str | os.PathLike, name: str = "mesh") -> Path:
    data = glb_bytes(mesh, name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def obj_text(mesh, name: str = "mesh") -> str:
    """Wavefront OBJ: `v x y z [r g b]` with 9 significant digits (exact for float32), 1-based `f a b c`."""
    v, f, c = _arrays(mesh, name)
    buf = io.StringIO()
    buf.write("# ComfyUI-PaperNodes mesh\n")
    rows = v.astype(np.float64)
    fmt = "v %.9g %.9g %.9g"
    if c is not None:
        rows = np.concatenate([rows, c[:, :3].astype(np.float64) / 255.0], axis=1)
        fmt += " %.9g %.9g %.9g"
    np.savetxt(buf, rows, fmt=fmt)
    np.savetxt(buf, f + 1, fmt="f %d %d %d")
    return buf.getvalue()


def write_obj(mesh, path: str | os.PathLike, name: str = "mesh") -> Path:
    text = obj_text(mesh, name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_mesh(mesh, path: str | os.PathLike, name: str = "mesh") -> Path:
    """GLB or OBJ by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".glb":
        return write_glb(mesh, path, name)
    if suffix == ".obj":
        return write_obj(mesh, path, name)
    raise InputError("path", f"a file name ending in {' or '.join(MESH_SUFFIXES)}", repr(str(path)))


def read_mesh(path: str | os.PathLike):
    """A triangle mesh from .glb/.gltf/.obj/.ply/.stl (all geometry of a scene merged, node transforms
    applied), vertex order kept. Raises MeshFileError naming the file."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise MeshFileError(f"{path}: no such file")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False, maintain_order=True)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise MeshFileError(f"{path}: cannot be read as a mesh ({type(exc).__name__}: {exc})") from exc
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshFileError(f"{path}: holds no triangle mesh (found {type(mesh).__name__})")
    return mesh


# ---------------------------------------------------------------------------------------------- Preview3D


def save_preview_glb(
    mesh, output_dir: str | os.PathLike, prefix: str = "PaperNodes", subfolder: str = PREVIEW_SUBFOLDER
) -> str:
    """Write `<output_dir>/<subfolder>/<prefix>_00001_.glb` (next free number) and return the path
    relative to `output_dir` with forward slashes: the `model_file` value core `Preview3D` loads from
    ComfyUI's output folder (the node passes folder_paths.get_output_directory())."""
    for label, value in (("prefix", prefix), ("subfolder", subfolder)):
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or (label == "prefix" and len(parts) != 1):
            raise InputError(label, "a plain name inside the output folder", repr(value))
    folder = Path(output_dir) / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    data = glb_bytes(mesh)
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)_\.glb$")
    taken = [int(m[1]) for p in folder.iterdir() if (m := pattern.match(p.name))]
    counter = max(taken, default=0) + 1
    while True:  # 'x' mode: two runs writing at once never share a file
        name = f"{prefix}_{counter:05d}_.glb"
        try:
            with open(folder / name, "xb") as fh:
                fh.write(data)
            break
        except FileExistsError:
            counter += 1
    return Path(subfolder, name).as_posix()
