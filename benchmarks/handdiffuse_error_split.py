"""Which part of a HandDiffuse model's prediction carries the hands through each other?

Held-out world clips (seed 2; `--clips` per action, their first 60 frames) are noised to each of
`--timesteps` and denoised once (x̂0 = model(x_t, t, label)). Penetration depends only on how the hands
relate, so the local features split into four parts that can move one hand against the other: the left
wrist's rotation and position in the right wrist's frame (motion.py), and each hand's finger angles (the
right wrist's world pose moves both hands together: the control row, which never changes a depth). For
every frame the prediction carries deeper than 1 mm (the data: never), the script reports

- "fixed": the share still deeper than 1 mm when that ONE part is replaced by the truth (what fixing it fixes),
- "alone": the share of all frames deeper than 1 mm when the truth gets only that part from the prediction,
- the sizes of the errors on those frames (left wrist rotation in degrees, position and fingertips in mm);

and, for the same model's feature standardisation, what the feature loss charges per m² of summed squared
joint displacement for a 1 cm move of the left wrist, a 3° turn of it and 3° at finger joints
(`feature_charges`; 350 held-out frames).

    python benchmarks/handdiffuse_error_split.py [--model FILE] [--json benchmarks/results/handdiffuse-error-split.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.models.handdiffuse import reproduce  # noqa: E402
from papernodes.models.handdiffuse.hand import TIPS  # noqa: E402
from papernodes.models.handdiffuse.metrics import penetration_depth  # noqa: E402
from papernodes.models.handdiffuse.pipeline import features_to_joints, load_model  # noqa: E402
from papernodes.models.handdiffuse.rotations import axis_angle_to_matrix, matrix_to_6d, sixd_to_matrix  # noqa: E402
from papernodes.models.handdiffuse.sampler import q_sample  # noqa: E402
from papernodes.models.handdiffuse.world import ACTIONS, make_clip  # noqa: E402

DEEP = 1e-3  # metres: the benchmark's "frames > 1 mm"
WINDOW = 60
PARTS = {  # name -> (hand, feature slice) pieces of the local features [.., 2, 99]
    "right wrist, world (control)": [(0, slice(0, 6)), (0, slice(96, 99))],
    "left wrist rotation, relative": [(1, slice(0, 6))],
    "left wrist position, relative": [(1, slice(96, 99))],
    "right fingers": [(0, slice(6, 96))],
    "left fingers": [(1, slice(6, 96))],
}
ACTIONS_MEASURED = ("clap", "rub", "interlock", "tap_fingertips", "point_palm")  # the touching ones


def with_parts(base: torch.Tensor, donor: torch.Tensor, parts) -> torch.Tensor:
    out = base.clone()
    for hand, sl in parts:
        out[..., hand, sl] = donor[..., hand, sl]
    return out


def depth(features: torch.Tensor) -> torch.Tensor:
    return penetration_depth(features_to_joints(features.double(), 1.0))


def rotation_error_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ra, rb = sixd_to_matrix(a), sixd_to_matrix(b)
    cos = ((ra.transpose(-1, -2) @ rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.arccos(cos.clamp(-1, 1)).rad2deg()


def split(model, label: str, clips: int, t: int) -> dict:
    index = ACTIONS.index(label)
    motions = [make_clip(2, 7 * k + index) for k in range(clips)]
    x = torch.stack([m.to_features()[:WINDOW] for m in motions])
    z0 = model.to_model(x)
    steps = torch.full((clips,), t)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t))
    with torch.no_grad():
        zp = model.denoiser(q_sample(z0, steps, noise, model.alphas_cumprod), steps,
                            torch.full((clips,), model.config.labels.index(label)))  # fmt: skip
    pred, gt = model.from_model(zp), model.from_model(z0)
    deep = depth(pred) > DEEP
    row = {
        "frames": deep.numel(),
        "deep": float(deep.float().mean()),
        "deep_truth": float((depth(gt) > DEEP).float().mean()),
    }
    if not deep.any():
        return row
    row["fixed"], row["alone"] = {}, {}
    for name, parts in PARTS.items():
        row["fixed"][name] = float((depth(with_parts(pred, gt, parts))[deep] > DEEP).float().mean())
        row["alone"][name] = float((depth(with_parts(gt, pred, parts)) > DEEP).float().mean())
    tips = (features_to_joints(pred, 1.0) - features_to_joints(gt, 1.0))[..., list(TIPS), :].norm(dim=-1)
    row["errors_on_deep_frames"] = {
        "left wrist rotation (deg)": float(rotation_error_deg(pred[..., 1, :6], gt[..., 1, :6])[deep].mean()),
        "left wrist position (mm)": float(
            1e3 * (pred[..., 1, 96:] - gt[..., 1, 96:]).norm(dim=-1)[deep].mean()
        ),
        "fingertips (mm)": float(1e3 * tips.mean((-1, -2))[deep].mean()),
        "depth (mm)": float(1e3 * depth(pred)[deep].mean()),
    }
    return row


def feature_charges(model) -> dict[str, float]:
    """Feature-loss cost (squared standardised entries, summed) / summed squared joint displacement [m^2] of
    small moves of the left hand, averaged over held-out frames: how the v-loss weighs each kind of error
    against how far it moves the joints."""
    x = torch.cat([make_clip(2, i).to_features()[::10] for i in range(35)]).double()
    z0, j0 = model.to_model(x.float()).double(), features_to_joints(x, 1.0)
    direction = torch.randn(x.shape[0], 3, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    turn = axis_angle_to_matrix(
        torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype), torch.tensor(3.0).deg2rad().to(x)
    )
    moves = {"left wrist position, 1 cm": (slice(96, 99), None)}
    moves |= {"left wrist rotation, 3°": (slice(0, 6), turn)}
    moves |= {f"left finger rotation {r}, 3°": (slice(6 * r, 6 * r + 6), turn) for r in (1, 2, 3)}
    out = {}
    for name, (sl, rotation) in moves.items():
        moved = x.clone()
        if rotation is None:
            moved[:, 1, sl] += 0.01 * direction / direction.norm(dim=-1, keepdim=True)
        else:
            moved[:, 1, sl] = matrix_to_6d(sixd_to_matrix(x[:, 1, sl]) @ rotation)
        feature = (model.to_model(moved.float()).double() - z0).square().sum((-1, -2)).mean()
        joints = (features_to_joints(moved, 1.0) - j0).square().sum((-1, -2, -3)).mean()
        out[name] = float(feature / joints)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(reproduce.WEIGHTS / "handdiffuse-world.safetensors"))
    ap.add_argument("--clips", type=int, default=12, help="held-out clips per action")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[20, 100, 199])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    out = {"model": Path(args.model).name, "clips_per_action": args.clips, "rows": {}}
    for label in ACTIONS_MEASURED:
        for t in args.timesteps:
            row = out["rows"][f"{label} t={t}"] = split(model, label, args.clips, t)
            fixed = ", ".join(f"{k.split(',')[0]} {100 * v:.0f} %" for k, v in row.get("fixed", {}).items())
            print(
                f"{label:15s} t={t:3d}: {100 * row['deep']:5.1f} % of frames > 1 mm; still deep with the truth's {fixed}"
            )
    out["feature_charge_per_m2"] = feature_charges(model)
    for name, charge in out["feature_charge_per_m2"].items():
        print(f"feature loss per m^2 of squared joint displacement, {name}: {charge:,.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
