"""MANO hands (Romero et al. 2017) for HandDiffuse, through `smplx`, from files the user obtained.

The pack ships no MANO data: MANO needs registration (mano.is.tue.mpg.de). The user puts MANO_RIGHT and
MANO_LEFT (`.pkl` as published, or `.npz` converted once) into ComfyUI's `models/mano/` folder.

- `convert_mano_pkl(src, dst)`: the published `.pkl` files hold chumpy objects and a scipy sparse matrix.
  They are read with a RESTRICTED unpickler that can only rebuild arrays: numpy's array / dtype / scalar
  reconstructors (wrapped: numeric dtypes only), inert stand-ins for the chumpy classes (they keep their
  state; `Ch` yields its array `x`, `Select` / `Reshape` / `transpose` are evaluated from it) and for
  scipy's csc/csr matrices (a dense array from data / indices / indptr / shape). chumpy and scipy are never
  imported and nothing else can be named by the pickle: any other global (os.system, builtins.eval, ...)
  raises `NotAManoModelError` before anything runs. The arrays go to an `.npz` that loads with
  `allow_pickle=False`; our loader only ever needs that `.npz`.
- `load_mano(path, side)` / `load_mano_hands(right, left)`: `smplx.MANO(use_pca=False,
  flat_hand_mean=True)` built from the arrays. flat_hand_mean=True because our rotations are relative to
  a FLAT rest hand (identity = the open hand); MANO's default adds `hands_mean`, a relaxed curl, to every
  pose. The pair loader applies the left-hand shapedirs fix smplx users apply (vchoutas/smplx#48,
  InterHand2.6M, DexYCB): the published left model carries the right model's shapedirs although its
  template is the right one mirrored in x, so when the left's shapedirs[:, 0, :] equal the right's, the
  left's x-component is negated.
- Joint maps: MANO's 16 joints (wrist, index1-3, middle1-3, little1-3, ring1-3, thumb1-3) plus five
  fingertip vertices (smplx's `VERTEX_IDS["mano"]`: thumb 744, index 320, middle 443, ring 554, little
  671) -> our 21-joint OpenPose order (`OPENPOSE_FROM_MANO`).
- `mano_forward(motion, hands)`: our rotations -> MANO pose parameters -> world vertices [T, 2, 778, 3]
  and joints [T, 2, 21, 3], MANO's wrist placed at our wrist.

Change of frame (ours <-> MANO). Our hand frame (docs/handdiffuse.md, interpretation 2): right hand
+x distal, +y towards the thumb, +z dorsal; the left hand is the right one mirrored through its xz-plane
(thumb towards -y, still +x distal and +z dorsal). MANO's axes are whatever its template uses, so we do
not hard-code them: each model's frame is MEASURED from its own rest joints with the same recipe we apply
to our open hand (`landmark_frame`: x = wrist -> middle MCP, y = the little -> index MCP direction made
orthogonal to x (negated for a left hand), z = x cross y). The constant rotation C = F_mano F_ours^T
maps our hand-frame coordinates to MANO's. As both conventions align every joint frame with the wrist
frame at rest, a finger rotation becomes C R C^T; the wrist's world rotation R_w becomes MANO's
global_orient R_w C^T, and transl = p_w - j0 (j0 MANO's shaped rest wrist), so MANO's wrist sits at ours.
The rotations are transferred, not the joint positions: MANO's bone lengths are its own.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # `python -m models.handdiffuse.mano SRC DST`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

import numpy as np
import torch
from torch import Tensor

from ..common.errors import InputError, WeightsFormatError
from ..common.safe_pickle import RestrictedUnpickler
from .hand import (
    FINGER_BASES,
    NUM_JOINTS,
    NUM_ROT,
    OPEN_HAND,
    PARENTS,
    ROT_JOINTS,
    SIDES,
    TIPS,
    HandSkeleton,
    side_index,
)
from .motion import HandMotion

MANO_FOLDER = "mano"  # ComfyUI models/mano/
MANO_PUBLISHED = "https://mano.is.tue.mpg.de (registration required)"
MANO_FILES = {"right": "MANO_RIGHT", "left": "MANO_LEFT"}

NUM_MANO_JOINTS = 16
NUM_VERTICES = 778
MANO_JOINT_NAMES = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)  # fmt: skip
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertices (smplx vertex_ids.py "mano"; manopth's demo uses 745/317/444/556/673, same places).
FINGERTIP_VERTICES = {"thumb": 744, "index": 320, "middle": 443, "ring": 554, "little": 671}

# our joint id (OpenPose order) of each MANO joint
OURS_FROM_MANO_JOINT = (0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3)
# our rotation index (hand.ROT_JOINTS order: wrist, thumb, index, middle, ring, little) of each MANO joint
ROT_FROM_MANO_JOINT = tuple(ROT_JOINTS.index(j) for j in OURS_FROM_MANO_JOINT)
# [21] index into cat(MANO joints [16], fingertip vertices [5] in FINGERTIP_VERTICES order): our order
_TIP_ROW = {4: 16, 8: 17, 12: 18, 16: 19, 20: 20}
OPENPOSE_FROM_MANO = tuple(
    _TIP_ROW[j] if j in _TIP_ROW else OURS_FROM_MANO_JOINT.index(j) for j in range(NUM_JOINTS)
)

REQUIRED_KEYS = (
    "v_template", "f", "J_regressor", "weights", "kintree_table", "posedirs", "shapedirs",
    "hands_components", "hands_mean",
)  # fmt: skip
OPTIONAL_KEYS = ("J", "hands_coeffs", "bs_style", "bs_type")
SHAPEDIRS_FIX_ATOL = 1e-6


class NotAManoModelError(WeightsFormatError):
    """A file given as a MANO model is not one (or asks the unpickler for something a MANO file never
    contains); names the file."""


# --------------------------------------------------------------------------- the restricted unpickler


class _Stand_in:  # noqa: N801  (a marker base, never instantiated by itself)
    pass


class _ChumpyObject(_Stand_in):
    """Stand-in for every chumpy class: keeps constructor arguments and pickled state, runs nothing."""

    chumpy_class = "Ch"
    args: tuple = ()  # NEWOBJ builds instances without __init__: class-level defaults, never mutated
    kwargs: dict = {}  # noqa: RUF012
    state: dict = {}  # noqa: RUF012

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"state": state}

    def value(self) -> np.ndarray | None:
        """The array this chumpy object evaluates to, for the classes a model file uses; else None."""
        s = self.state
        a = s.get("a")
        a = a.value() if isinstance(a, _ChumpyObject) else a
        name = self.chumpy_class
        if name == "Ch" or ("x" in s and a is None):
            x = s.get("x", self.args[0] if self.args else None)
            return _as_numeric(x.value() if isinstance(x, _ChumpyObject) else x)
        if a is None:
            return None
        a = _as_numeric(a)
        if a is None:
            return None
        if name == "Select":
            out = a.ravel()[np.asarray(s["idxs"], dtype=np.int64)]
            return out.reshape(s["preferred_shape"]) if s.get("preferred_shape") is not None else out
        if name == "Reshape":
            return a.reshape(s["newshape"])
        if name == "transpose":
            return np.ascontiguousarray(np.transpose(a, axes=s.get("axes")))
        return None


class _SparseMatrix(_Stand_in):
    """Stand-in for scipy.sparse csc/csr matrices: rebuilt as a dense array from its pickled state."""

    compressed = "csc"
    state: dict = {}  # noqa: RUF012

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}

    def value(self) -> np.ndarray:
        s = self.state
        shape = s.get("_shape", s.get("shape"))
        try:
            rows, cols = (int(n) for n in shape)
            data = np.asarray(s["data"], dtype=np.float64)
            indices = np.asarray(s["indices"], dtype=np.int64)
            indptr = np.asarray(s["indptr"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"sparse matrix without data/indices/indptr/shape ({exc})") from exc
        major = cols if self.compressed == "csc" else rows
        if len(indptr) != major + 1 or indptr[-1] != len(data) or len(indices) != len(data):
            raise ValueError("inconsistent sparse matrix arrays")
        dense = np.zeros((rows, cols), dtype=np.float64)
        counts = np.diff(indptr)
        if (counts < 0).any():
            raise ValueError("inconsistent sparse matrix arrays")
        major_idx = np.repeat(np.arange(major), counts)
        if self.compressed == "csc":
            np.add.at(dense, (indices, major_idx), data)
        else:
            np.add.at(dense, (major_idx, indices), data)
        return dense


class _CsrMatrix(_SparseMatrix):
    compressed = "csr"


class _PlainObject:
    """What `__builtin__.object` resolves to: only usable as the base argument of `_reconstructor`."""


def _chumpy_class(name: str) -> type:
    return type(f"chumpy_{name}", (_ChumpyObject,), {"chumpy_class": name})


def _reconstructor(cls, base, state):
    """`copy_reg._reconstructor` limited to our stand-ins (protocol 0/1 pickles of new-style objects)."""
    if not (isinstance(cls, type) and issubclass(cls, _Stand_in)) or base is not _PlainObject:
        raise pickle.UnpicklingError("copy_reg._reconstructor outside its pickle use")
    return cls()


_CHUMPY_MODULES = (
    "chumpy",
    "chumpy.ch",
    "chumpy.reordering",
    "chumpy.ch_ops",
    "chumpy.linalg",
    "chumpy.utils",
)
_SPARSE_CLASSES = {
    ("scipy.sparse.csc", "csc_matrix"): _SparseMatrix,
    ("scipy.sparse._csc", "csc_matrix"): _SparseMatrix,
    ("scipy.sparse.csr", "csr_matrix"): _CsrMatrix,
    ("scipy.sparse._csr", "csr_matrix"): _CsrMatrix,
}
_MODULE_ALIASES = {"copy_reg": "copyreg", "__builtin__": "builtins"}


class _ManoUnpickler(RestrictedUnpickler):
    """Numpy arrays (safe_pickle.ARRAY_GLOBALS) plus inert stand-ins for chumpy and scipy sparse classes."""

    def allowed(self, module: str, name: str):
        found = super().allowed(module, name)
        if found is not None:
            return found
        module = _MODULE_ALIASES.get(module, module)
        if module in _CHUMPY_MODULES and name.isidentifier():
            return _chumpy_class(name)
        if (module, name) in _SPARSE_CLASSES:
            return _SPARSE_CLASSES[(module, name)]
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        if module == "builtins" and name == "object":
            return _PlainObject
        if module == "builtins" and name in ("set", "frozenset"):
            return {"set": set, "frozenset": frozenset}[name]
        return None

    def refused(self, what: str) -> Exception:
        return NotAManoModelError(
            f"{self.source}: not a MANO model — the pickle asks for {what}, which a MANO file never "
            "contains; refused before anything ran (only numpy arrays, chumpy objects and scipy sparse "
            "matrices are read)"
        )


def _as_numeric(x: Any) -> np.ndarray | None:
    if isinstance(x, _ChumpyObject | _SparseMatrix):
        x = x.value()
    if x is None:
        return None
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):
        return None
    return arr if arr.dtype.kind in "biufc" else None


def _plain(value: Any) -> np.ndarray | None:
    """A pickled value as a plain numpy array (numbers or text), or None when it is something else."""
    if isinstance(value, str):
        return np.asarray(value)
    if isinstance(value, bytes):
        return np.asarray(value.decode("latin1"))
    return _as_numeric(value)


def _read_pkl(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            data = _ManoUnpickler(fh, str(path)).load()
    except NotAManoModelError:
        raise
    except Exception as exc:  # truncated, not a pickle, refused by a stand-in, bad arrays ...
        raise NotAManoModelError(f"{path}: not a MANO model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise NotAManoModelError(f"{path}: not a MANO model (the pickle holds a {type(data).__name__})")
    out = {}
    for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS):
        if key in data:
            try:
                arr = _plain(data[key])
            except (KeyError, TypeError, ValueError) as exc:
                raise NotAManoModelError(f"{path}: not a MANO model ('{key}': {exc})") from exc
            if arr is not None:
                out[key] = arr
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise NotAManoModelError(f"{path}: not a MANO model .npz ({type(exc).__name__}: {exc})") from exc


def validate_mano_arrays(arrays: dict[str, np.ndarray], source: str = "MANO model") -> dict[str, np.ndarray]:
    """Check the keys and shapes smplx.MANO needs; returns the arrays with float64 / int64 dtypes."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise NotAManoModelError(f"{source}: not a MANO model (missing {', '.join(missing)})")
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "biufc":
            arr = arr.astype(np.int64 if key in ("f", "kintree_table") else np.float64)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise NotAManoModelError(f"{source}: '{key}' holds NaN or inf")
        out[key] = arr
    nv = out["v_template"].shape[0]
    expected = {
        "v_template": (nv, 3),
        "f": (None, 3),
        "J_regressor": (NUM_MANO_JOINTS, nv),
        "weights": (nv, NUM_MANO_JOINTS),
        "kintree_table": (2, NUM_MANO_JOINTS),
        "posedirs": (nv, 3, 9 * (NUM_MANO_JOINTS - 1)),
        "shapedirs": (nv, 3, None),
        "hands_components": (45, 45),
        "hands_mean": (45,),
    }
    for key, want in expected.items():
        got = out[key].shape
        if (
            out[key].dtype.kind not in "iuf"
            or len(got) != len(want)
            or any(w is not None and g != w for g, w in zip(got, want, strict=True))
        ):
            raise NotAManoModelError(
                f"{source}: not a MANO model ('{key}' has shape {got} {out[key].dtype}, expected {want})"
            )
    faces = out["f"]
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise NotAManoModelError(f"{source}: face indices outside 0..{nv - 1}")
    parents = out["kintree_table"][0].copy()
    parents[0] = -1
    if tuple(int(p) for p in parents) != MANO_PARENTS:
        raise NotAManoModelError(f"{source}: kinematic tree {parents.tolist()} is not MANO's {MANO_PARENTS}")
    return out


def read_mano_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The model arrays of a MANO `.pkl` (restricted unpickler) or `.npz` (allow_pickle=False)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("mano", "a MANO_RIGHT / MANO_LEFT .pkl or .npz file", f"{path} (no such file)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    arrays = _read_npz(path) if head.startswith(b"PK") else _read_pkl(path)
    return validate_mano_arrays(arrays, str(path))


def convert_mano_pkl(src: str | os.PathLike, dst_npz: str | os.PathLike) -> Path:
    """Published MANO `.pkl` (or an existing `.npz`) -> `.npz` that loads with allow_pickle=False.

    Writes v_template, f, J_regressor (dense), weights, kintree_table, posedirs, shapedirs,
    hands_components, hands_mean (float64 / int64) and, when present, J, hands_coeffs, bs_style, bs_type."""
    arrays = read_mano_arrays(src)
    dst = Path(dst_npz)
    dst.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, dst)
    return dst


# ------------------------------------------------------------------------------------------ loading


class _Struct:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def load_mano(
    path: str | os.PathLike | dict, side: str, dtype: torch.dtype = torch.float32, num_betas: int = 10
):
    """A `smplx.MANO` (use_pca=False, flat_hand_mean=True, 45 axis-angle hand-pose numbers) from a MANO
    `.npz` / `.pkl` (or the arrays of `read_mano_arrays`). No left-hand shapedirs fix here: that needs
    the right model (`load_mano_hands`, `fix_left_shapedirs`)."""
    import smplx

    side_index(side)
    arrays = path if isinstance(path, dict) else read_mano_arrays(path)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 shape coefficients
        model = smplx.MANO(
            model_path=str(path) if not isinstance(path, dict) else "",
            data_struct=_Struct(**arrays),
            is_rhand=side == "right",
            use_pca=False,
            flat_hand_mean=True,
            num_betas=num_betas,
            dtype=dtype,
            batch_size=1,
        )
    return model.requires_grad_(False)


def fix_left_shapedirs(left, right, atol: float = SHAPEDIRS_FIX_ATOL) -> bool:
    """The published left MANO model carries the right model's shapedirs (vchoutas/smplx#48): when the
    left's x-component equals the right's within `atol`, negate it (in place). Returns whether it did."""
    lx, rx = left.shapedirs[:, 0, :], right.shapedirs[:, 0, :]
    if lx.shape != rx.shape or not torch.allclose(lx, rx, rtol=0.0, atol=atol):
        return False
    with torch.no_grad():
        left.shapedirs[:, 0, :] *= -1
    return True


def landmark_frame(joints: Tensor, side: str) -> Tensor:
    """[3, 3] rotation whose columns are the hand's (distal, thumb-side, dorsal) axes, measured from rest
    joints in OUR order [21, 3] (or MANO's 16 joints mapped to those rows): x = wrist -> middle MCP,
    y = little MCP -> index MCP made orthogonal to x (negated for a left hand), z = x cross y."""
    x = joints[9] - joints[0]
    x = x / x.norm()
    r = joints[5] - joints[17]
    y = r - (r @ x) * x
    y = y / y.norm()
    if side_index(side):
        y = -y
    return torch.stack([x, y, torch.linalg.cross(x, y)], -1)


def _mano_rest_as_ours(joints16: Tensor) -> Tensor:
    """MANO joints [16, 3] placed into the rows of our order that `landmark_frame` reads."""
    out = torch.zeros(NUM_JOINTS, 3, dtype=joints16.dtype)
    out[list(OURS_FROM_MANO_JOINT)] = joints16
    return out


@dataclass
class ManoHands:
    """The two MANO models and the constant frame changes that drive them from our rotations."""

    right: Any  # smplx.MANO
    left: Any
    left_shapedirs_fixed: bool = False
    skeleton: HandSkeleton = OPEN_HAND

    def model(self, side: str):
        return (self.right, self.left)[side_index(side)]

    @property
    def faces(self) -> tuple[Tensor, Tensor]:
        """Triangle indices (long) of the right and left meshes."""
        return tuple(m.faces_tensor.long() for m in (self.right, self.left))

    @property
    def num_betas(self) -> int:
        return int(self.right.num_betas)

    def rest_joints(self, side: str, betas: Tensor | None = None) -> Tensor:
        """MANO's 16 rest joints [B, 16, 3] (float64) of the shaped template (betas [B, n] or None)."""
        m = self.model(side)
        with torch.no_grad():
            v = m.v_template.double()[None]
            if betas is not None:
                b = betas.double().reshape(-1, betas.shape[-1])
                v = v + torch.einsum("bl,mkl->bmk", b, m.shapedirs.double()[..., : b.shape[-1]])
            return torch.einsum("bik,ji->bjk", v, m.J_regressor.double())

    def frame_change(self, side: str) -> Tensor:
        """C [3, 3] (float64): our hand-frame coordinates -> MANO coordinates (module docstring)."""
        ours = landmark_frame(self.skeleton.rest_positions(side).double(), side)
        mano = landmark_frame(_mano_rest_as_ours(self.rest_joints(side)[0]), side)
        return mano @ ours.T


def load_mano_hands(
    right: str | os.PathLike, left: str | os.PathLike, dtype: torch.dtype = torch.float32
) -> ManoHands:
    """Both MANO models, with the left-hand shapedirs fix applied when the left file needs it."""
    r, lm = load_mano(right, "right", dtype), load_mano(left, "left", dtype)
    fixed = fix_left_shapedirs(lm, r)
    return ManoHands(r, lm, fixed)


# ------------------------------------------------------------------------------- driving MANO


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> axis-angle [..., 3] (angle in [0, pi]), via the quaternion
    (Shepperd's branch choice: stable near pi and near identity)."""
    m00, m01, m02 = rot[..., 0, 0], rot[..., 0, 1], rot[..., 0, 2]
    m10, m11, m12 = rot[..., 1, 0], rot[..., 1, 1], rot[..., 1, 2]
    m20, m21, m22 = rot[..., 2, 0], rot[..., 2, 1], rot[..., 2, 2]
    t = m00 + m11 + m22
    diag = torch.stack([1 + t, 1 + 2 * m00 - t, 1 + 2 * m11 - t, 1 + 2 * m22 - t], -1)
    # row k = 4 q_k (w, x, y, z) for k = w, x, y, z; the row of the largest |q_k| is the stable one
    cand = torch.stack(
        [
            torch.stack([diag[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, diag[..., 1], m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, diag[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, diag[..., 3]], -1),
        ],
        -2,
    )
    best = diag.argmax(-1)
    q = cand.gather(-2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0: angle in [0, pi]
    s = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    scale = torch.where(s > 1e-8, angle / s.clamp_min(1e-30), 2.0 / q[..., :1].clamp_min(1e-30))
    return q[..., 1:] * scale


def _world_rotations(motion: HandMotion | Tensor, wrist: Tensor | None) -> tuple[Tensor, Tensor]:
    if isinstance(motion, HandMotion):
        rot = motion.rotations().double()
        wr, wp = motion.world_wrists()
        rot = torch.cat([wr.double()[:, :, None], rot[:, :, 1:]], 2)
        return rot, wp.double()
    if not isinstance(motion, Tensor) or motion.dim() != 5 or tuple(motion.shape[1:]) != (2, NUM_ROT, 3, 3):
        got = tuple(motion.shape) if isinstance(motion, Tensor) else type(motion).__name__
        raise InputError("motion", "a HAND_MOTION or rotations [T, 2, 16, 3, 3] (world wrists)", str(got))
    if wrist is None or tuple(wrist.shape) != (motion.shape[0], 2, 3):
        raise InputError("wrist", f"world wrist positions [{motion.shape[0]}, 2, 3]", repr(wrist))
    return motion.double(), wrist.double()


def mano_pose_parameters(
    motion: HandMotion | Tensor, hands: ManoHands, wrist: Tensor | None = None, betas: Tensor | None = None
) -> dict[str, dict[str, Tensor]]:
    """Our rotations -> per side {global_orient [T, 3], hand_pose [T, 45], transl [T, 3], betas [T, n]}
    (float64 axis-angle in MANO's joint order) for `smplx.MANO.forward`.

    `motion` is a HAND_MOTION, or rotations [T, 2, 16, 3, 3] in our order whose wrist entries are WORLD
    rotations (as `HandMotion.from_world` takes) with `wrist` [T, 2, 3] world positions."""
    rot, wp = _world_rotations(motion, wrist)
    frames = rot.shape[0]
    b = torch.zeros(1, hands.num_betas, dtype=torch.float64) if betas is None else betas.double()
    b = b.reshape(-1, b.shape[-1]).expand(frames, -1)
    out = {}
    for h, side in enumerate(SIDES):
        c = hands.frame_change(side)
        fingers = rot[:, h, list(ROT_FROM_MANO_JOINT[1:])]  # [T, 15, 3, 3] in MANO order
        fingers = c @ fingers @ c.T
        glob = rot[:, h, 0] @ c.T
        j0 = hands.rest_joints(side, b)[:, 0] if betas is not None else hands.rest_joints(side)[0, 0]
        out[side] = {
            "global_orient": matrix_to_axis_angle(glob),
            "hand_pose": matrix_to_axis_angle(fingers).reshape(frames, 45),
            "transl": wp[:, h] - j0,
            "betas": b,
        }
    return out


def mano_forward(
    motion: HandMotion | Tensor,
    hands: ManoHands,
    wrist: Tensor | None = None,
    betas: Tensor | None = None,
    chunk: int = 256,
) -> tuple[Tensor, Tensor]:
    """Our motion -> MANO world vertices [T, 2, V, 3] and joints [T, 2, 21, 3] (OpenPose order: MANO's
    16 joints + the fingertip vertices), float32, both hands placed with MANO's wrist at our wrist."""
    params = mano_pose_parameters(motion, hands, wrist, betas)
    verts, joints = [], []
    for side in SIDES:
        model, p = hands.model(side), params[side]
        dt = model.shapedirs.dtype
        vs, js = [], []
        frames = p["transl"].shape[0]
        with torch.no_grad():
            for s in range(0, frames, chunk):
                sl = slice(s, s + chunk)
                res = model(**{k: v[sl].to(dt) for k, v in p.items()})
                vs.append(res.vertices)
                js.append(res.joints[:, :NUM_MANO_JOINTS])
        v, j = torch.cat(vs), torch.cat(js)
        tips = v[:, list(FINGERTIP_VERTICES.values())]
        verts.append(v)
        joints.append(torch.cat([j, tips], 1)[:, list(OPENPOSE_FROM_MANO)])
    return torch.stack(verts, 1).float(), torch.stack(joints, 1).float()


def mano_vertices(
    motion: HandMotion | Tensor, hands: ManoHands, wrist: Tensor | None = None, betas: Tensor | None = None
) -> Tensor:
    """World vertices [T, 2, V, 3] of the two MANO hands driven by our motion (see `mano_forward`)."""
    return mano_forward(motion, hands, wrist, betas)[0]


def mano_joints_to_openpose(joints16: Tensor, vertices: Tensor) -> Tensor:
    """MANO joints [..., 16, 3] and vertices [..., V, 3] -> our 21 joints [..., 21, 3]."""
    tips = vertices[..., list(FINGERTIP_VERTICES.values()), :]
    return torch.cat([joints16, tips], -2)[..., list(OPENPOSE_FROM_MANO), :]


# --------------------------------------------------------------------- a MANO-structured stand-in


def synthetic_mano_arrays(side: str = "right", seed: int = 0) -> dict[str, np.ndarray]:
    """A MANO-STRUCTURED model that is not MANO's data (tests and demos; MANO files need registration):
    MANO's array names and shapes (778 vertices, 1538 faces, 16 joints, 135 pose and 10 shape blend
    shapes, 45 PCA components), built around our open hand: an 8-sided tube of 4 rings per bone, a
    palm slab, a cap vertex at each fingertip placed at MANO's fingertip vertex ids, rigid skinning
    (the ring at a joint shared half with the parent), J_regressor = mean of the rings at a joint (so the
    regressed joints are our rest joints), small random pose blend shapes that only touch the vertices
    of the joint's own finger (none on the tips) and random shape blend shapes.

    Axes imitate a template whose frame differs from ours (distal -x, thumb +z, dorsal +y, wrist near
    (0.095, 0.006, 0.006)); the left model is the right one mirrored in x with the SAME shapedirs
    (reproducing the published files' bug) and reversed face winding."""
    side_index(side)
    rng = np.random.default_rng(seed)
    rest = OPEN_HAND.rest_positions("right").numpy()  # [21, 3], our right-hand frame
    axes = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]).T  # columns: where our x, y, z go
    wrist_at = np.array([0.095, 0.006, 0.006])
    ours_to_mano_joint = {j: m for m, j in enumerate(OURS_FROM_MANO_JOINT)}
    finger_of_joint = {j: (j - 1) // 4 for j in range(1, NUM_JOINTS)}
    n_sides, n_rings = 8, 4
    ang = np.arange(n_sides) * 2 * math.pi / n_sides
    verts: list[np.ndarray] = []
    skin: list[dict[int, float]] = []  # MANO joint -> weight, per vertex
    finger: list[int] = []  # finger index 0..4 (thumb..little) or -1 (palm)
    faces: list[tuple[int, int, int]] = []
    ring_at_joint: dict[int, list[int]] = {}
    for child in range(1, NUM_JOINTS):
        parent = PARENTS[child]
        a, b = rest[parent], rest[child]
        d = (b - a) / np.linalg.norm(b - a)
        helper = np.array([0, 0, 1.0]) if abs(d[2]) < 0.9 else np.array([0, 1.0, 0])
        u = np.cross(d, helper)
        u /= np.linalg.norm(u)
        w = np.cross(d, u)
        radius = 0.009 if parent else 0.011
        first = len(verts)
        mover = ours_to_mano_joint[parent]  # the joint whose rotation moves this bone
        up = ours_to_mano_joint[PARENTS[parent]] if parent else 0
        for k in range(n_rings):
            centre = a + (b - a) * k / (n_rings - 1)
            ring_r = radius * (0.8 if parent in FINGER_BASES or child in TIPS else 1.0)
            for phi in ang:
                verts.append(centre + ring_r * (math.cos(phi) * u + math.sin(phi) * w))
                skin.append({mover: 0.5, up: 0.5} if (k == 0 and parent) else {mover: 1.0})
                finger.append(finger_of_joint[child])
            if k == 0:
                ring_at_joint.setdefault(parent, []).extend(range(len(verts) - n_sides, len(verts)))
        for k in range(n_rings - 1):
            for i in range(n_sides):
                p0, p1 = first + k * n_sides + i, first + k * n_sides + (i + 1) % n_sides
                faces += [(p0, p1, p0 + n_sides), (p1, p1 + n_sides, p0 + n_sides)]
        if child in TIPS:
            tip = len(verts)
            verts.append(b.copy())
            skin.append({mover: 1.0})
            finger.append(finger_of_joint[child])
            last = first + (n_rings - 1) * n_sides
            faces += [(last + i, last + (i + 1) % n_sides, tip) for i in range(n_sides)]
    # palm slab: two 8 x 8 sheets (dorsal, palmar) between the wrist and the knuckles
    corners = [rest[0] + np.array([0, 0.025, 0]), rest[0] + np.array([0, -0.03, 0]), rest[5], rest[17]]
    for dz in (0.01, -0.012):
        first = len(verts)
        for i in range(8):
            for j in range(8):
                s, t = i / 7, j / 7
                base = (1 - s) * ((1 - t) * corners[0] + t * corners[1]) + s * (
                    (1 - t) * corners[2] + t * corners[3]
                )
                verts.append(base + np.array([0, 0, dz]))
                skin.append({0: 1.0})
                finger.append(-1)
        for i in range(7):
            for j in range(7):
                p = first + i * 8 + j
                tri = [(p, p + 8, p + 1), (p + 1, p + 8, p + 9)]
                faces += tri if dz > 0 else [(x, z, y) for x, y, z in tri]
    while len(verts) < NUM_VERTICES:  # fill-in vertices at the wrist (used by filler faces)
        verts.append(rest[0] + rng.normal(scale=0.004, size=3))
        skin.append({0: 1.0})
        finger.append(-1)
    base_faces = list(faces)
    while len(faces) < 1538:  # MANO's face count: repeat faces (harmless for drawing and export)
        faces.append(base_faces[len(faces) % len(base_faces)])
    verts_arr = np.asarray(verts)
    # move the fingertip cap vertices to MANO's fingertip ids
    n = NUM_VERTICES
    tip_rows = [int(np.argmin(np.linalg.norm(verts_arr - rest[t], axis=1))) for t in TIPS]
    mano_ids = [FINGERTIP_VERTICES[f] for f in ("thumb", "index", "middle", "ring", "little")]
    order = [None] * n
    for row, mid in zip(tip_rows, mano_ids, strict=True):
        order[mid] = row
    rest_rows = iter(r for r in range(n) if r not in tip_rows)
    order = [o if o is not None else next(rest_rows) for o in order]  # new index -> old row
    new_of_old = np.empty(n, dtype=np.int64)
    new_of_old[np.asarray(order)] = np.arange(n)
    v_ours = verts_arr[order]
    v_template = v_ours @ axes.T + wrist_at
    weights = np.zeros((n, NUM_MANO_JOINTS))
    for old, sk in enumerate(skin):
        for j, wgt in sk.items():
            weights[new_of_old[old], j] += wgt
    fingers = np.asarray(finger)[order]
    f = new_of_old[np.asarray(faces)]
    j_reg = np.zeros((NUM_MANO_JOINTS, n))
    for joint, rows in ring_at_joint.items():
        j_reg[ours_to_mano_joint[joint], new_of_old[rows]] = 1.0 / len(rows)
    posedirs = np.zeros((n, 3, 135))
    is_tip = np.zeros(n, bool)
    is_tip[mano_ids] = True
    for m in range(1, NUM_MANO_JOINTS):
        fi = finger_of_joint[OURS_FROM_MANO_JOINT[m]]
        rows = np.nonzero((fingers == fi) & ~is_tip)[0]
        posedirs[rows, :, (m - 1) * 9 : m * 9] = rng.normal(scale=2e-3, size=(len(rows), 3, 9))
    shapedirs = rng.normal(scale=2e-3, size=(n, 3, 10))
    comps = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    kintree = np.array([[4294967295, *MANO_PARENTS[1:]], list(range(NUM_MANO_JOINTS))], dtype=np.int64)
    arrays = {
        "v_template": v_template,
        "f": f,
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": kintree,
        "posedirs": posedirs,
        "shapedirs": shapedirs,
        "hands_components": comps,
        "hands_mean": rng.normal(scale=0.1, size=45),
    }
    if side == "left":
        mirror = np.array([-1.0, 1.0, 1.0])
        arrays["v_template"] = arrays["v_template"] * mirror
        arrays["posedirs"] = arrays["posedirs"] * mirror[None, :, None]
        arrays["f"] = arrays["f"][:, ::-1].copy()
    return arrays


def main(argv: list[str] | None = None) -> int:
    """`python -m models.handdiffuse.mano MANO_RIGHT.pkl [MANO_RIGHT.npz]`: convert one published file
    (default output: the same name with .npz). Prints the written path; a bad file is one error line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or args[0] in ("-h", "--help"):
        print("usage: python -m models.handdiffuse.mano SRC.pkl [DST.npz]", file=sys.stderr)
        return 2
    src = Path(args[0])
    dst = Path(args[1]) if len(args) == 2 else src.with_suffix(".npz")
    try:
        print(convert_mano_pkl(src, dst))
    except (NotAManoModelError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
