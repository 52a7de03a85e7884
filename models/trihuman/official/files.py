"""Readers for the per-subject files of the official TriHuman release (`<Subject>_metadata/`), as described
in docs/trihuman_official_layout.md section 1. Written from that description; every reader raises
`InputError` naming the file, the line and what was expected.

- `ddc.obj`, `ddc_graph.obj` -> `read_obj` -> `OfficialMesh`: vertices in metres (the files are in mm),
  faces, per-corner UVs [F,3,2] (raw: no v flip), vertex colours, unique edges;
- `ddc.skin` -> `read_skin` -> `OfficialSkin`: bone names, dense weights [V, bones] (as written, not
  renormalised), each vertex's first-listed bone;
- `*.motion` -> `read_motion` (frame indices, DOFs [T, D]), `read_normalized_motion` (the 3-lines-per-frame
  variant as [T, 3, D]);
- `cameras.calibration` -> `read_calibration` (and `write_calibration`) -> `OfficialCameras`: K [C,3,3],
  world_to_camera [C,4,4] in metres, image sizes;
- `base_trans.pkl` -> `read_base_trans` ([3] float64); `dof_convert_dict.pkl` -> `read_body_dofs` (body DOF
  indices); `subdivision_dict_xyz_new.pkl` -> `read_subdivision` (per stage: faces, and for stages 1-2 the
  endpoint pair of each new vertex); `segmentation*.txt` -> `read_segmentation` (one label per vertex).

The pickles go through the restricted unpickler in `safe_pickle.py`. The skeleton (`ddc.skeleton`) has its
own module, `skeleton.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...common.errors import InputError
from .safe_pickle import load_plain_pickle

MM = 0.001  # the release's length unit (millimetres) in metres
F64 = torch.float64


def _read_lines(path: str | Path, what: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), f"an existing file ({what})", "no such file")
    try:
        return path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"a text file ({what})", f"undecodable bytes ({exc})") from exc


def _floats(tokens: Iterable[str], path, lineno: int, what: str) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError as exc:
        raise InputError(f"{path}, line {lineno}", what, f"'{exc}'") from exc
    if not all(np.isfinite(values)):
        raise InputError(f"{path}, line {lineno}", f"{what} (finite numbers)", "NaN or inf")
    return values


# --------------------------------------------------------------------------------------------------- OBJ


@dataclass(frozen=True)
class OfficialMesh:
    """A template (`ddc.obj`) or embedded graph (`ddc_graph.obj`)."""

    vertices: torch.Tensor  # [V, 3] float64, metres
    faces: torch.Tensor  # [F, 3] long, 0-based
    corner_uvs: torch.Tensor | None  # [F, 3, 2] float64 (u, v) per face corner, raw; None without `vt`
    colors: torch.Tensor | None  # [V, 3] float64 as written (0..1 in the release); None without colours
    source: str = ""

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def edges(self) -> torch.Tensor:
        """Unique undirected edges of the faces, [E, 2] long with i < j, sorted."""
        return edges_from_faces(self.faces)


def edges_from_faces(faces: torch.Tensor) -> torch.Tensor:
    f = faces.long()
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    e = torch.stack([e.min(1).values, e.max(1).values], 1)
    e = e[e[:, 0] != e[:, 1]]
    return torch.unique(e, dim=0)


def read_obj(path: str | Path, unit: float = MM) -> OfficialMesh:
    """An OBJ of the release: `v x y z [r g b]`, `vt u v`, triangles `f v[/vt][/vn]` (1-based). Positions
    are multiplied by `unit` (mm -> m by default). The official reader needs the colours on every `v`
    line; here they are optional but must be on all lines or on none. Other lines (vn, mtllib, usemtl,
    comments, groups) are ignored."""
    lines = _read_lines(path, "an OBJ mesh")
    verts, cols, uvs, faces, face_uv = [], [], [], [], []
    for n, line in enumerate(lines, 1):
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        kind = tok[0]
        if kind == "v":
            if len(tok) not in (4, 7):
                raise InputError(f"{path}, line {n}", "'v x y z' or 'v x y z r g b'", repr(line.strip()))
            vals = _floats(tok[1:], path, n, "vertex coordinates")
            verts.append(vals[:3])
            cols.append(vals[3:] if len(vals) == 6 else None)
        elif kind == "vt":
            if len(tok) < 3:
                raise InputError(f"{path}, line {n}", "'vt u v'", repr(line.strip()))
            uvs.append(_floats(tok[1:3], path, n, "texture coordinates"))
        elif kind == "f":
            if len(tok) != 4:
                raise InputError(f"{path}, line {n}", "a triangle 'f a b c'", f"{len(tok) - 1} corners")
            vi, ti = [], []
            for corner in tok[1:]:
                parts = corner.split("/")
                try:
                    vi.append(int(parts[0]) - 1)
                    ti.append(int(parts[1]) - 1 if len(parts) > 1 and parts[1] else None)
                except ValueError as exc:
                    raise InputError(
                        f"{path}, line {n}", "face corners 'v', 'v/vt' or 'v/vt/vn'", corner
                    ) from exc
            if any(t is None for t in ti) and any(t is not None for t in ti):
                raise InputError(
                    f"{path}, line {n}", "'v/vt' on every face corner or on none", repr(line.strip())
                )
            if min(vi) < 0 or any(t is not None and t < 0 for t in ti):
                raise InputError(f"{path}, line {n}", "positive 1-based face indices", repr(line.strip()))
            faces.append(vi)
            face_uv.append(ti)
    if not verts or not faces:
        raise InputError(
            str(path), "an OBJ mesh with vertices and triangles", f"{len(verts)} v, {len(faces)} f"
        )
    nv = len(verts)
    f = torch.tensor(faces, dtype=torch.long)
    if int(f.max()) >= nv:
        raise InputError(str(path), f"face indices <= {nv} (the vertex count)", str(int(f.max()) + 1))
    with_col = [c is not None for c in cols]
    if any(with_col) and not all(with_col):
        raise InputError(
            str(path), "colours 'r g b' on every 'v' line or on none", f"{sum(with_col)} of {nv}"
        )
    colors = torch.tensor(cols, dtype=F64) if all(with_col) else None
    with_uv = [all(t is not None for t in ti) for ti in face_uv]
    corner_uvs = None
    if any(with_uv):
        if not all(with_uv):
            raise InputError(
                str(path), "'v/vt' on every face corner or on none", f"{sum(with_uv)} of {len(faces)}"
            )
        t = torch.tensor(face_uv, dtype=torch.long)
        if not uvs or int(t.max()) >= len(uvs):
            raise InputError(
                str(path), f"texture indices <= {len(uvs)} (the vt count)", str(int(t.max()) + 1)
            )
        corner_uvs = torch.tensor(uvs, dtype=F64)[t]
    vertices = torch.tensor(verts, dtype=F64) * unit
    return OfficialMesh(vertices, f, corner_uvs, colors, str(path))


# --------------------------------------------------------------------------------------------------- skin


@dataclass(frozen=True)
class OfficialSkin:
    bone_names: tuple[str, ...]
    weights: torch.Tensor  # [V, B] float64, as written
    first_bone: torch.Tensor  # [V] long: each vertex's first-listed bone (the official DQS pivot)
    source: str = ""


def read_skin(path: str | Path, num_vertices: int | None = None) -> OfficialSkin:
    """`ddc.skin` ("Skeletool character skinning file V1.0"): a `bones:` line, the bone names on the next
    line, `vertex weights:`, then one line per vertex `vid bone w bone w ...` (bone = index into the
    names). Every vertex 0..V-1 must appear exactly once; V = `num_vertices` when given (the template)."""
    lines = _read_lines(path, "a Skeletool skinning file")
    body = [(n, ln.strip()) for n, ln in enumerate(lines, 1) if ln.strip()]
    if not body or not body[0][1].lower().startswith("skeletool character skinning file"):
        raise InputError(
            str(path), "a 'Skeletool character skinning file' header", repr(body[0][1] if body else "")
        )
    if len(body) < 4 or body[1][1].lower() != "bones:" or body[3][1].lower() != "vertex weights:":
        raise InputError(
            str(path), "'bones:', a line of bone names, then 'vertex weights:'", "another layout"
        )
    names = tuple(body[2][1].split())
    nb = len(names)
    rows: dict[int, list[tuple[int, float]]] = {}
    for n, ln in body[4:]:
        tok = ln.split()
        if len(tok) < 3 or len(tok) % 2 == 0:
            raise InputError(f"{path}, line {n}", "'vid bone weight [bone weight ...]'", repr(ln[:80]))
        try:
            vid = int(tok[0])
            pairs = [(int(tok[i]), float(tok[i + 1])) for i in range(1, len(tok), 2)]
        except ValueError as exc:
            raise InputError(
                f"{path}, line {n}", "integer vertex/bone ids and numeric weights", str(exc)
            ) from exc
        if vid in rows:
            raise InputError(f"{path}, line {n}", "each vertex listed once", f"vertex {vid} again")
        for b, w in pairs:
            if not 0 <= b < nb:
                raise InputError(f"{path}, line {n}", f"bone ids 0..{nb - 1}", str(b))
            if not (np.isfinite(w) and w >= 0):
                raise InputError(f"{path}, line {n}", "finite weights >= 0", str(w))
        rows[vid] = pairs
    nv = num_vertices if num_vertices is not None else len(rows)
    if sorted(rows) != list(range(nv)):
        missing = sorted(set(range(nv)) - set(rows))[:5]
        extra = sorted(set(rows) - set(range(nv)))[:5]
        raise InputError(
            str(path),
            f"weights for vertices 0..{nv - 1} (the template's)",
            f"missing {missing}, extra {extra}",
        )
    weights = torch.zeros(nv, nb, dtype=F64)
    first = torch.empty(nv, dtype=torch.long)
    for vid, pairs in rows.items():
        first[vid] = pairs[0][0]
        for b, w in pairs:
            weights[vid, b] += w
    zero = (weights.sum(1) <= 0).nonzero().flatten()
    if len(zero):
        raise InputError(
            str(path), "a positive total weight on every vertex", f"vertices {zero[:5].tolist()}"
        )
    return OfficialSkin(names, weights, first, str(path))


# --------------------------------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class OfficialMotion:
    frame_ids: torch.Tensor  # [T] long: the first column of each frame (line)
    dofs: torch.Tensor  # [T, D] float64, or [T, 3, D] for the normalised variant
    source: str = ""

    @property
    def num_dofs(self) -> int:
        return self.dofs.shape[-1]


def _motion_table(path, max_lines: int | None) -> tuple[np.ndarray, np.ndarray]:
    lines = _read_lines(path, "a Skeletool motion file")
    if not lines or not lines[0].strip().lower().startswith("skeletool motion file"):
        raise InputError(
            str(path), "a 'Skeletool Motion File V1.0' header", repr(lines[0][:60] if lines else "")
        )
    body = [(n, ln) for n, ln in enumerate(lines[1:], 2) if ln.strip()]
    if max_lines is not None:
        body = body[:max_lines]
    if not body:
        raise InputError(str(path), "at least one frame line 'index dof0 dof1 ...'", "no frames")
    counts = [len(ln.split()) for _, ln in body]
    width = counts[0]
    bad = next((i for i, c in enumerate(counts) if c != width), None)
    if width < 2 or bad is not None:
        n = body[bad][0] if bad is not None else body[0][0]
        raise InputError(
            f"{path}, line {n}",
            f"'index dof0 ... dof{width - 2}' on every line",
            f"{counts[bad or 0]} values",
        )
    try:
        table = np.array(" ".join(ln for _, ln in body).split(), dtype=np.float64).reshape(len(body), width)
    except ValueError as exc:
        raise InputError(str(path), "numbers only on the frame lines", str(exc)) from exc
    if not np.isfinite(table).all():
        raise InputError(str(path), "finite DOF values", "NaN or inf")
    return table[:, 0].astype(np.int64), table[:, 1:]


def read_motion(path: str | Path, max_frames: int | None = None) -> OfficialMotion:
    """A motion file ("Skeletool Motion File V1.0"): one line per frame, a frame index then D DOFs
    (`poseAngles.motion`; `ddc.motion` holds the rest pose as one frame). DOFs 0-2 are the root
    translation in metres (the skeleton's DOF weights of 1000 make them mm), the rest radians."""
    ids, dofs = _motion_table(path, max_frames)
    return OfficialMotion(torch.from_numpy(ids), torch.from_numpy(dofs), str(path))


def read_normalized_motion(path: str | Path, max_frames: int | None = None) -> OfficialMotion:
    """`poseAnglesRotationNormalized.motion`: three lines per frame (line 3f + k is row k of frame f), read
    as dofs [T, 3, D]; frame_ids holds the first line's index of each frame. What the three rows mean is
    not documented (our reading: variants of the frame's three-frame window, root-normalised)."""
    ids, dofs = _motion_table(path, None if max_frames is None else 3 * max_frames)
    if len(ids) % 3:
        raise InputError(
            str(path), "three lines per frame (a line count divisible by 3)", f"{len(ids)} lines"
        )
    d = dofs.shape[1]
    return OfficialMotion(
        torch.from_numpy(ids[::3].copy()), torch.from_numpy(dofs.reshape(-1, 3, d)), str(path)
    )


# --------------------------------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class OfficialCameras:
    names: tuple[str, ...]
    K: torch.Tensor  # [C, 3, 3] float64, pixels
    world_to_camera: torch.Tensor  # [C, 4, 4] float64, metres (x_cam = R x_world + t)
    sizes: torch.Tensor  # [C, 2] long (width, height)
    radial: torch.Tensor  # [C] float64: the file's radial distortion value (0 in the release; not applied)
    source: str = ""


_CAMERA_KEYS = ("name", "sensor", "size", "animated", "intrinsic", "extrinsic", "radial")


def read_calibration(path: str | Path, unit: float = MM) -> OfficialCameras:
    """`cameras.calibration` ("Skeletool Camera Calibration File V1.0"): per camera a block of keyword
    lines `name`, `sensor w h`, `size W H`, `animated 0`, `intrinsic` (4x4 row-major; K is its top-left
    3x3), `extrinsic` (4x4 row-major world(mm) -> camera(mm)), `radial k`. The extrinsic translation is
    multiplied by `unit` (mm -> m). Cameras in the OpenCV convention (z forward, y down): our reading of the
    official code, which decomposes K·E with OpenCV."""
    lines = _read_lines(path, "a Skeletool camera calibration file")
    if not lines or not lines[0].strip().lower().startswith("skeletool camera calibration file"):
        raise InputError(
            str(path),
            "a 'Skeletool Camera Calibration File V1.0' header",
            repr(lines[0][:60] if lines else ""),
        )
    blocks: list[dict[str, tuple[int, list[str]]]] = []
    for n, ln in enumerate(lines[1:], 2):
        tok = ln.split()
        if not tok:
            continue
        key = tok[0].lower()
        if key not in _CAMERA_KEYS:
            raise InputError(
                f"{path}, line {n}", f"one of the keywords {', '.join(_CAMERA_KEYS)}", repr(tok[0])
            )
        if key == "name":
            blocks.append({})
        elif not blocks:
            raise InputError(f"{path}, line {n}", "each camera block to start with 'name'", repr(tok[0]))
        blocks[-1][key] = (n, tok[1:])
    if not blocks:
        raise InputError(str(path), "at least one camera block", "none")
    names, Ks, Es, sizes, radial = [], [], [], [], []
    for i, b in enumerate(blocks):
        for key in ("intrinsic", "extrinsic", "size"):
            if key not in b:
                raise InputError(str(path), f"an '{key}' line in camera block {i} ({b['name'][1]})", "none")
        n, vals = b["intrinsic"]
        if len(vals) != 16:
            raise InputError(f"{path}, line {n}", "16 numbers (a 4x4 intrinsic matrix)", f"{len(vals)}")
        Ks.append(np.array(_floats(vals, path, n, "intrinsic matrix")).reshape(4, 4)[:3, :3])
        n, vals = b["extrinsic"]
        if len(vals) != 16:
            raise InputError(f"{path}, line {n}", "16 numbers (a 4x4 extrinsic matrix)", f"{len(vals)}")
        E = np.array(_floats(vals, path, n, "extrinsic matrix")).reshape(4, 4)
        R = E[:3, :3]
        if not (np.allclose(E[3], [0, 0, 0, 1]) and np.allclose(R @ R.T, np.eye(3), atol=1e-3)):
            raise InputError(
                f"{path}, line {n}",
                "a rigid world -> camera transform (rotation, translation, 0 0 0 1)",
                "another matrix",
            )
        E[:3, 3] *= unit
        Es.append(E)
        n, vals = b["size"]
        try:
            sizes.append([int(float(vals[0])), int(float(vals[1]))])
        except (ValueError, IndexError) as exc:
            raise InputError(f"{path}, line {n}", "'size width height'", repr(vals)) from exc
        names.append(" ".join(b["name"][1]))
        rv = b.get("radial", (0, ["0"]))[1]
        radial.append(float(rv[0]) if rv else 0.0)
    return OfficialCameras(
        tuple(names),
        torch.tensor(np.stack(Ks), dtype=F64),
        torch.tensor(np.stack(Es), dtype=F64),
        torch.tensor(sizes, dtype=torch.long),
        torch.tensor(radial, dtype=F64),
        str(path),
    )


def write_calibration(
    path: str | Path,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    sizes: torch.Tensor | list,
    names: list[str] | None = None,
    unit: float = MM,
) -> Path:
    """Write cameras (K [C,3,3] pixels, world_to_camera [C,4,4] in metres) as a Skeletool calibration file
    (translations divided by `unit`: metres -> mm). The inverse of `read_calibration`."""
    K = torch.as_tensor(K, dtype=F64)
    E = torch.as_tensor(world_to_camera, dtype=F64).clone()
    sz = torch.as_tensor(sizes).reshape(-1, 2)
    if (
        K.ndim != 3
        or tuple(K.shape[1:]) != (3, 3)
        or tuple(E.shape) != (K.shape[0], 4, 4)
        or len(sz) != len(K)
    ):
        raise InputError(
            "cameras",
            "K [C,3,3], world_to_camera [C,4,4] and sizes [C,2]",
            f"{list(K.shape)}, {list(E.shape)}",
        )
    E[:, :3, 3] /= unit
    out = ["Skeletool Camera Calibration File V1.0"]
    for c in range(len(K)):
        k4 = torch.eye(4, dtype=F64)
        k4[:3, :3] = K[c]
        out += [
            f"name          {names[c] if names else c}",
            "  sensor      10 10",
            f"  size        {int(sz[c, 0])} {int(sz[c, 1])}",
            "  animated    0",
            "  intrinsic   " + " ".join(repr(float(x)) for x in k4.flatten()),
            "  extrinsic   " + " ".join(repr(float(x)) for x in E[c].flatten()),
            "  radial      0",
        ]
    path = Path(path)
    path.write_text("\n".join(out) + "\n")
    return path


# --------------------------------------------------------------------------------------------------- pickles


def _as_array(value, path, key: str, what: str, kinds: str = "biuf") -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(str(path), f"'{key}': {what}", type(value).__name__) from exc
    if arr.dtype.kind not in kinds:
        raise InputError(str(path), f"'{key}': {what}", f"dtype {arr.dtype}")
    return arr


def _pickled_dict(path, key: str, what: str):
    data = load_plain_pickle(path, what)
    if not isinstance(data, dict) or key not in data:
        got = f"keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else type(data).__name__
        raise InputError(str(path), f"a dict with '{key}' ({what})", got)
    return data


def read_base_trans(path: str | Path) -> torch.Tensor:
    """`base_trans.pkl`: {'base_trans': 3 numbers}, the per-character offset subtracted from the root
    translation before the colour MLP (metres by its usage; unverified)."""
    data = _pickled_dict(path, "base_trans", "the character's base translation")
    arr = _as_array(data["base_trans"], path, "base_trans", "3 numbers").astype(np.float64).reshape(-1)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise InputError(str(path), "'base_trans': 3 finite numbers", f"shape {list(arr.shape)}")
    return torch.from_numpy(arr.copy())


def read_body_dofs(path: str | Path, num_dofs: int | None = None) -> torch.Tensor:
    """`dof_convert_dict.pkl`: {'body_dof_in_full_dof': list of DOF indices} (62 of 107 in the sample).
    The motion-code input needs the root translation first, so the list must start 0, 1, 2."""
    data = _pickled_dict(path, "body_dof_in_full_dof", "the body DOF indices")
    arr = _as_array(data["body_dof_in_full_dof"], path, "body_dof_in_full_dof", "integer DOF indices", "biu")
    arr = arr.astype(np.int64).reshape(-1)
    hi = num_dofs if num_dofs is not None else np.iinfo(np.int64).max
    if arr.size < 3 or len(set(arr.tolist())) != arr.size or arr.min() < 0 or arr.max() >= hi:
        raise InputError(str(path), f"distinct DOF indices in 0..{hi - 1}", str(arr.tolist()[:10]))
    if arr[:3].tolist() != [0, 1, 2]:
        raise InputError(
            str(path), "body DOFs starting with the root translation 0, 1, 2", str(arr[:3].tolist())
        )
    return torch.from_numpy(arr.copy())


def read_subdivision(path: str | Path, num_vertices: int | None = None) -> list[dict[str, torch.Tensor]]:
    """`subdivision_dict_xyz_new.pkl`: `stage_{0,1,2}_dict`, each with `faces` [F, 3]; stages 1 and 2 also
    `prev_to_cur_st` / `prev_to_cur_ed`: for each new vertex the two previous-stage vertices whose midpoint
    it is. Returns one dict of long tensors per stage. `num_vertices` (the template's) checks stage 0."""
    data = load_plain_pickle(path, "the template's subdivision stages")
    stages = []
    prev_count = None
    for s in range(3):
        key = f"stage_{s}_dict"
        if not isinstance(data, dict) or not isinstance(data.get(key), dict) or "faces" not in data[key]:
            raise InputError(str(path), f"'{key}' holding 'faces'", "missing")
        st = data[key]
        faces = _as_array(st["faces"], path, f"{key}.faces", "integer faces [F, 3]", "iu").astype(np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0:
            raise InputError(str(path), f"'{key}.faces': integer faces [F, 3]", f"shape {list(faces.shape)}")
        out = {"faces": torch.from_numpy(faces.copy())}
        if s > 0:
            pair = []
            for k in ("prev_to_cur_st", "prev_to_cur_ed"):
                if k not in st:
                    raise InputError(str(path), f"'{key}.{k}'", "missing")
                a = (
                    _as_array(st[k], path, f"{key}.{k}", "integer vertex ids", "iu")
                    .astype(np.int64)
                    .reshape(-1)
                )
                pair.append(a)
            if pair[0].shape != pair[1].shape:
                raise InputError(
                    str(path),
                    f"'{key}': prev_to_cur_st and _ed of one length",
                    f"{pair[0].size}, {pair[1].size}",
                )
            if prev_count is not None and pair[0].size and max(pair[0].max(), pair[1].max()) >= prev_count:
                raise InputError(
                    str(path),
                    f"'{key}' endpoints among the previous stage's {prev_count} vertices",
                    "larger ids",
                )
            out["prev_to_cur_st"], out["prev_to_cur_ed"] = (torch.from_numpy(a.copy()) for a in pair)
        count = int(faces.max()) + 1
        if s == 0 and num_vertices is not None and count > num_vertices:
            raise InputError(
                str(path),
                f"stage-0 faces on the template's {num_vertices} vertices",
                f"ids up to {count - 1}",
            )
        prev_count = num_vertices if (s == 0 and num_vertices is not None) else count
        stages.append(out)
    return stages


def read_segmentation(path: str | Path, num_vertices: int | None = None) -> torch.Tensor:
    """`segmentation.txt` / `segmentation_hand.txt`: one integer label per vertex (per line). For the hand
    file the notes read label 0 as "not hand"."""
    lines = _read_lines(path, "one integer label per vertex")
    try:
        labels = [int(float(ln)) for ln in (x.strip() for x in lines) if ln]
    except ValueError as exc:
        raise InputError(str(path), "one integer label per line", str(exc)) from exc
    if num_vertices is not None and len(labels) != num_vertices:
        raise InputError(str(path), f"{num_vertices} labels (one per template vertex)", str(len(labels)))
    return torch.tensor(labels, dtype=torch.long)
