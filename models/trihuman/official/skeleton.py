"""The release's skeleton (`ddc.skeleton`, "Skeletool Skeleton Definition V1.0") and its forward kinematics
in pure torch (the official code evaluates it with a CUDA extension).

File layout (whitespace-separated; our reading of the format and of the sample character):
- `joints: J`, then J lines `name type parent ox oy oz ax ay az scale`; type `revolute` or `prismatic`;
  a parent that names no joint (`none`) makes a root; offsets in the file's unit (mm).
- `markers: M`, then M marker lines (kept as their count only: inference does not use them).
- `scaling joints: S`, then S lines (skipped; the sample has none).
- `dofs: D`, then per DOF `name k`, a limit line (`nolimits` or `limits lo hi`) and k lines `joint weight`.
  A trailing `textureEntries: 0` (or anything after the DOFs) is ignored.

Kinematics (as the official skeleton computes it): joint j's parameter is θ_j = Σ_d W[j, d]·dof_d. Its
local transform is a translation by offset_j·scale_j followed by either a rotation by θ_j about its unit
axis (revolute) or a translation θ_j·axis (prismatic). Global transforms compose parent · local from the
roots down. The root translation DOFs carry weight 1000 in the release, so DOFs in metres give joint
positions in mm. DOF limits are read but not applied (the official forward pass does not clamp either).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...common.errors import InputError

F64 = torch.float64


@dataclass(frozen=True)
class SkeletoolSkeleton:
    joint_names: tuple[str, ...]
    revolute: torch.Tensor  # [J] bool (False: prismatic)
    parents: torch.Tensor  # [J] long, -1 for a root
    offsets: torch.Tensor  # [J, 3] float64, file units (mm), before the scale
    axes: torch.Tensor  # [J, 3] float64, unit
    scales: torch.Tensor  # [J] float64
    dof_names: tuple[str, ...]
    dof_weights: torch.Tensor  # [J, D] float64: θ = W @ dofs
    dof_limits: torch.Tensor  # [D, 2] float64, (-inf, inf) for `nolimits`
    order: torch.Tensor  # [J] long: parents before children
    num_markers: int = 0
    source: str = ""

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_dofs(self) -> int:
        return len(self.dof_names)

    def joint_values(self, dofs: torch.Tensor) -> torch.Tensor:
        """DOFs [..., D] -> per-joint parameters θ [..., J] (angles in radians or lengths)."""
        dofs = torch.as_tensor(dofs)
        if dofs.shape[-1:] != (self.num_dofs,):
            raise InputError(
                "dofs", f"[..., {self.num_dofs}] (this skeleton's DOF count)", f"shape {list(dofs.shape)}"
            )
        w = self.dof_weights.to(dofs.device, dofs.dtype if dofs.is_floating_point() else F64)
        return dofs.to(w.dtype) @ w.T

    def local_transforms(self, dofs: torch.Tensor) -> torch.Tensor:
        """[..., J, 4, 4]: T(offset·scale) · (R(axis, θ) for revolute | T(θ·axis) for prismatic)."""
        theta = self.joint_values(dofs)
        dt, dev = theta.dtype, theta.device
        axes, rev = self.axes.to(dev, dt), self.revolute.to(dev)
        rot = _axis_angle(axes, torch.where(rev, theta, torch.zeros_like(theta)))
        shift = torch.where(rev[:, None], torch.zeros_like(axes), axes) * theta[..., None]
        local = torch.zeros(*theta.shape, 4, 4, dtype=dt, device=dev)
        local[..., :3, :3] = rot
        base = (self.offsets * self.scales[:, None]).to(dev, dt)
        local[..., :3, 3] = base + shift  # T(base) · [R | shift] = [R | base + shift]
        local[..., 3, 3] = 1
        return local

    def forward_kinematics(self, dofs: torch.Tensor, unit: float = 1.0) -> torch.Tensor:
        """DOFs [..., D] -> global joint transforms [..., J, 4, 4] (world <- joint). Translations are in the
        file's unit times `unit` (pass 0.001 for metres from the release's mm)."""
        local = self.local_transforms(dofs)
        out = [None] * self.num_joints
        parents = self.parents.tolist()
        for j in self.order.tolist():
            p = parents[j]
            out[j] = local[..., j, :, :] if p < 0 else out[p] @ local[..., j, :, :]
        glob = torch.stack(out, -3)
        if unit != 1.0:
            glob = glob.clone()
            glob[..., :3, 3] *= unit
        return glob

    def joint_positions(self, dofs: torch.Tensor, unit: float = 1.0) -> torch.Tensor:
        return self.forward_kinematics(dofs, unit)[..., :3, 3]

    def skin_joint_indices(self, bone_names) -> torch.Tensor:
        """The joint each `.skin` bone follows: the LAST joint in file order (the root excluded) whose name
        before its first '_' equals the bone name (e.g. bone `LeftArm` -> joint `LeftArm_ry`, the last of
        LeftArm_tx/_rz/_rx/_ry, whose transform holds all of them); the rule of the official character."""
        prefixes = [n.split("_")[0] for n in self.joint_names]
        out = []
        for name in bone_names:
            hit = next((j for j in range(self.num_joints - 1, 0, -1) if prefixes[j] == name), None)
            if hit is None:
                raise InputError(
                    "skin bones",
                    f"a joint named '{name}' or '{name}_...' in {self.source or 'the skeleton'}",
                    "none",
                )
            out.append(hit)
        return torch.tensor(out, dtype=torch.long)


def _axis_angle(axes: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues: unit axes [J, 3], angles [..., J] -> rotations [..., J, 3, 3]."""
    x, y, z = axes.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    s, c = torch.sin(theta)[..., None, None], torch.cos(theta)[..., None, None]
    eye = torch.eye(3, dtype=axes.dtype, device=axes.device)
    return eye + s * k + (1 - c) * (k @ k)


class _Cursor:
    def __init__(self, path: Path, lines: list[str]):
        self.path = path
        self.items = [(n, ln.split()) for n, ln in enumerate(lines, 1) if ln.strip()]
        self.i = 0

    def next(self, what: str) -> tuple[int, list[str]]:
        if self.i >= len(self.items):
            raise InputError(str(self.path), what, "the end of the file")
        self.i += 1
        return self.items[self.i - 1]

    def count(self, key: str) -> int:
        n, tok = self.next(f"'{key}: N'")
        head = " ".join(tok[:-1]).lower()
        if head != f"{key}:":
            raise InputError(f"{self.path}, line {n}", f"'{key}: N'", repr(" ".join(tok)))
        try:
            value = int(tok[-1])
        except ValueError as exc:
            raise InputError(f"{self.path}, line {n}", f"'{key}: N' with an integer N", tok[-1]) from exc
        if value < 0:
            raise InputError(f"{self.path}, line {n}", f"'{key}: N' with N >= 0", tok[-1])
        return value

    def fail(self, n: int, expected: str, got) -> InputError:
        return InputError(f"{self.path}, line {n}", expected, repr(got))


def read_skeleton(path: str | Path) -> SkeletoolSkeleton:
    """Parse a Skeletool skeleton file (V1.0); see the module docstring for the layout."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "an existing file (a Skeletool skeleton)", "no such file")
    cur = _Cursor(path, path.read_text(encoding="utf-8", errors="replace").splitlines())
    n, tok = cur.next("a header")
    header = " ".join(tok)
    if not header.lower().startswith("skeletool skeleton definition") or not tok[-1].lstrip("vV").startswith(
        "1."
    ):
        raise cur.fail(n, "a 'Skeletool Skeleton Definition V1.0' header", header)
    nj = cur.count("joints")
    names, types, parent_names, offs, axes, scales = [], [], [], [], [], []
    for _ in range(nj):
        n, tok = cur.next("a joint line")
        if len(tok) != 10:
            raise cur.fail(n, "'name type parent ox oy oz ax ay az scale'", " ".join(tok))
        if tok[1] not in ("revolute", "prismatic"):
            raise cur.fail(n, "a joint type 'revolute' or 'prismatic'", tok[1])
        try:
            vals = [float(t) for t in tok[3:]]
        except ValueError as exc:
            raise cur.fail(n, "numeric offset, axis and scale", " ".join(tok[3:])) from exc
        if tok[0] in names:
            raise cur.fail(n, "unique joint names", tok[0])
        names.append(tok[0])
        types.append(tok[1])
        parent_names.append(tok[2])
        offs.append(vals[:3])
        axes.append(vals[3:6])
        scales.append(vals[6])
    axes_t = torch.tensor(axes, dtype=F64).reshape(-1, 3)
    norms = axes_t.norm(dim=-1, keepdim=True)
    if nj and bool((norms < 1e-12).any()):
        bad = names[int((norms[:, 0] < 1e-12).nonzero()[0])]
        raise InputError(str(path), "a non-zero axis on every joint", f"joint '{bad}'")
    index = {name: j for j, name in enumerate(names)}
    parents = [index.get(p, -1) for p in parent_names]
    order = _topological_order(parents, names, path)

    num_markers = cur.count("markers")
    for _ in range(num_markers):
        cur.next("a marker line")
    for _ in range(cur.count("scaling joints")):
        cur.next("a scaling-joint line")

    nd = cur.count("dofs")
    weights = torch.zeros(nj, nd, dtype=F64)
    limits = torch.empty(nd, 2, dtype=F64)
    limits[:, 0], limits[:, 1] = -float("inf"), float("inf")
    dof_names = []
    for d in range(nd):
        n, tok = cur.next("a DOF line 'name k'")
        try:
            k = int(tok[1]) if len(tok) == 2 else -1
        except ValueError:
            k = -1
        if k < 0:
            raise cur.fail(n, "a DOF line 'name k' (k joints follow)", " ".join(tok))
        dof_names.append(tok[0])
        n, tok = cur.next("'nolimits' or 'limits lo hi'")
        if tok[0] == "limits" and len(tok) == 3:
            try:
                limits[d, 0], limits[d, 1] = float(tok[1]), float(tok[2])
            except ValueError as exc:
                raise cur.fail(n, "'limits lo hi' with numbers", " ".join(tok)) from exc
        elif tok != ["nolimits"]:
            raise cur.fail(n, "'nolimits' or 'limits lo hi'", " ".join(tok))
        for _ in range(k):
            n, tok = cur.next("a DOF joint line 'joint weight'")
            if len(tok) != 2 or tok[0] not in index:
                raise cur.fail(n, "'joint weight' naming a joint of the skeleton", " ".join(tok))
            try:
                weights[index[tok[0]], d] += float(tok[1])
            except ValueError as exc:
                raise cur.fail(n, "a numeric DOF weight", tok[1]) from exc
    return SkeletoolSkeleton(
        joint_names=tuple(names),
        revolute=torch.tensor([t == "revolute" for t in types], dtype=torch.bool),
        parents=torch.tensor(parents, dtype=torch.long),
        offsets=torch.tensor(offs, dtype=F64).reshape(-1, 3),
        axes=axes_t / norms,
        scales=torch.tensor(scales, dtype=F64),
        dof_names=tuple(dof_names),
        dof_weights=weights,
        dof_limits=limits,
        order=torch.tensor(order, dtype=torch.long),
        num_markers=num_markers,
        source=str(path),
    )


def _topological_order(parents: list[int], names: list[str], path) -> list[int]:
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parents):
        children.setdefault(p, []).append(j)
    order, stack = [], list(reversed(children.get(-1, [])))
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(children.get(j, [])))
    if len(order) != len(parents):
        stuck = sorted(set(range(len(parents))) - set(order))[:5]
        raise InputError(
            str(path),
            "a joint tree (every joint reaches a root)",
            f"a cycle through {[names[j] for j in stuck]}",
        )
    return order


def write_skeleton(path: str | Path, skeleton: SkeletoolSkeleton) -> Path:
    """Write `skeleton` as a Skeletool skeleton file; the inverse of `read_skeleton` (markers are written as
    none: the reader keeps only their count). Offsets, axes, scales, limits and weights keep every digit."""
    names = skeleton.joint_names
    out = ["Skeletool Skeleton Definition V1.0", f"joints: {skeleton.num_joints}"]
    for j, name in enumerate(names):
        p = int(skeleton.parents[j])
        kind = "revolute" if bool(skeleton.revolute[j]) else "prismatic"
        nums = [*skeleton.offsets[j].tolist(), *skeleton.axes[j].tolist(), float(skeleton.scales[j])]
        out.append(f"  {name} {kind} {names[p] if p >= 0 else 'none'} " + " ".join(map(repr, nums)))
    out += ["markers: 0", "scaling joints: 0", f"dofs: {skeleton.num_dofs}"]
    for d, dof in enumerate(skeleton.dof_names):
        joints = skeleton.dof_weights[:, d].nonzero()[:, 0].tolist()
        lo, hi = skeleton.dof_limits[d].tolist()
        out += [
            f"  {dof} {len(joints)}",
            "      nolimits" if (lo, hi) == (-float("inf"), float("inf")) else f"      limits {lo!r} {hi!r}",
        ]
        out += [f"      {names[j]} {float(skeleton.dof_weights[j, d])!r}" for j in joints]
    out.append("textureEntries: 0")
    path = Path(path)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def root_arm_skeleton(arm_offset_mm: tuple[float, float, float]) -> SkeletoolSkeleton:
    """The smallest skeleton of the release's kind, for synthetic subjects (tests, benchmarks): a root
    translated by three prismatic DOFs of weight 1000 (DOFs in metres, positions in mm, as the release) and
    one revolute arm joint about y at `arm_offset_mm` from the root, bent by the DOF `bend` (radians)."""
    return SkeletoolSkeleton(
        joint_names=("Root_tx", "Root_ty", "Root_tz", "Arm_ry"),
        revolute=torch.tensor([False, False, False, True]),
        parents=torch.tensor([-1, 0, 1, 2]),
        offsets=torch.tensor([[0.0, 0.0, 0.0]] * 3 + [list(arm_offset_mm)], dtype=F64),
        axes=torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 0]], dtype=F64),
        scales=torch.ones(4, dtype=F64),
        dof_names=("tx", "ty", "tz", "bend"),
        dof_weights=torch.diag(torch.tensor([1000.0, 1000.0, 1000.0, 1.0], dtype=F64)),
        dof_limits=torch.tensor([[-float("inf"), float("inf")]] * 4, dtype=F64),
        order=torch.arange(4),
    )
