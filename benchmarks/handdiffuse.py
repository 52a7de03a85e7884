"""HandDiffuse on the hand-motion world: recognisability, realism, control, interaction, speed — one run.

Rows (all on held-out world seeds; the generator trained on seed 0, the evaluator on seed 1):
- real world clips (seed 2): the evaluator's accuracy (target >= 95 %), the Fréchet motion distance
  (FMD, the evaluator's embedding) between two disjoint real sets (seed 2 vs 3) as the floor;
- generated from each label (`--per-label` clips of `--seconds` s, DDIM `--steps`, guidance `--guidance`),
  for the shipped model (interaction loss) and, when its file exists, the ablation without it:
  accuracy (target >= 80 %), FMD to the real set, diversity, jitter, penetration (mean / max depth,
  ratio of frames deeper than 1 mm), contact accuracy (a clip touches, gap < 5 mm, iff its action's
  world clips do);
- in-betweening: real clips' first, middle and last frames as whole-pose keyframes, label given:
  keyframe MPJPE (target <= 5 mm) and the in-betweens' accuracy (target >= 70 %);
- trajectory: a real clip's right-wrist and left-index-tip paths, every frame: mean error of each;
- speed: seconds to generate 1, 2, 4, 8, 16 s at 30 fps (target: 4 s in under 4 s).
`--separate-hands` turns on the sampler's separation of the hands (pipeline.generate) for the generated rows and speed.

    python benchmarks/handdiffuse.py [--per-label 20] [--json benchmarks/results/handdiffuse-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.models.handdiffuse import reproduce  # noqa: E402
from papernodes.models.handdiffuse.classifier import MotionEvaluator, diversity, frechet_distance  # noqa: E402
from papernodes.models.handdiffuse.control import Trajectory, trajectory_error  # noqa: E402
from papernodes.models.handdiffuse.metrics import hand_gap, jitter, keyframe_error, penetration_stats  # noqa: E402
from papernodes.models.handdiffuse.pipeline import Keyframes, load_model  # noqa: E402
from papernodes.models.handdiffuse.world import ACTIONS, make_clips  # noqa: E402

TOUCH = 5e-3  # metres of clearance that count as contact


def touches(joints: torch.Tensor) -> bool:
    return bool((hand_gap(joints) < TOUCH).any())


def motion_stats(motions, labels, evaluator, real_emb, touching) -> dict:
    joints = [m.global_joints() for m in motions]
    emb = evaluator.embeddings(motions)
    pen = [penetration_stats(j) for j in joints]
    return {
        "accuracy": evaluator.accuracy(motions, labels),
        "fmd": frechet_distance(emb, real_emb),
        "diversity": diversity(emb),
        "jitter_m_s2": float(torch.tensor([float(jitter(j, m.fps)) for j, m in zip(joints, motions)]).mean()),
        "penetration_mean_mm": 1e3 * sum(p["penetration_mean"] for p in pen) / len(pen),
        "penetration_max_mm": 1e3 * max(p["penetration_max"] for p in pen),
        "penetration_ratio": sum(p["penetration_ratio"] for p in pen) / len(pen),
        "contact_accuracy": sum(touches(j) == touching[lab] for j, lab in zip(joints, labels)) / len(labels),
        "per_action": per_action(joints, labels, pen, touching),
    }


def per_action(joints, labels, pen, touching) -> dict:
    """Where penetration and contact come from: per action, frames deeper than 1 mm, clips that touch, and
    whether the action's world clips touch (so contact there is right)."""
    out = {}
    for action in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == action]
        out[action] = {
            "should_touch": bool(touching[action]),
            "touching_clips": sum(touches(joints[i]) for i in idx) / len(idx),
            "penetration_ratio": sum(pen[i]["penetration_ratio"] for i in idx) / len(idx),
        }
    return out


def generated_rows(model, name, args, evaluator, real_emb, touching) -> dict:
    motions, labels = [], []
    for k, label in enumerate(ACTIONS):
        for i in range(args.per_label):
            m = model.generate(label, args.seconds, 30.0, seed=1000 * k + i, steps=args.steps,
                               guidance=args.guidance, separate_hands=args.separate_hands)  # fmt: skip
            motions.append(m)
            labels.append(label)
    row = motion_stats(motions, labels, evaluator, real_emb, touching)
    print(f"{name}: {row}", flush=True)
    return row


def inbetween_row(model, real, evaluator, args) -> dict:
    errs, motions, labels = [], [], []
    for m in real[: args.inbetweens]:
        feats = m.to_features()
        t = m.num_frames
        frames = [0, t // 2, t - 1]
        keys = Keyframes(frames, feats[frames], torch.ones(3, 2, feats.shape[-1], dtype=torch.bool), t)
        out = model.generate(m.label, t / m.fps, m.fps, seed=7, steps=args.steps, guidance=args.guidance,
                             keyframes=keys)  # fmt: skip
        mask = torch.zeros(t, dtype=torch.bool)
        mask[frames] = True
        errs.append(float(keyframe_error(out.global_joints(), m.global_joints(), mask)))
        motions.append(out)
        labels.append(m.label)
    row = {"keyframe_mpjpe_mm": 1e3 * sum(errs) / len(errs), "accuracy": evaluator.accuracy(motions, labels)}
    print(f"in-betweening: {row}", flush=True)
    return row


def trajectory_row(model, real, args) -> dict:
    wrist, tip = [], []
    for m in real[: args.trajectories]:
        g = m.global_joints()
        t = m.num_frames
        traj = Trajectory([(0, 0), (1, 8)], g[:, [0, 1], [0, 8]], torch.ones(t, 2, dtype=torch.bool), t)
        out = model.generate(m.label, t / m.fps, m.fps, seed=11, steps=args.steps, guidance=args.guidance,
                             trajectory=traj)  # fmt: skip
        og = out.global_joints()
        wrist.append(trajectory_error(og, Trajectory([(0, 0)], traj.positions[:, :1], traj.known[:, :1], t)))
        tip.append(trajectory_error(og, Trajectory([(1, 8)], traj.positions[:, 1:], traj.known[:, 1:], t)))
    row = {
        "right_wrist_error_mm": 1e3 * sum(wrist) / len(wrist),
        "left_index_tip_error_mm": 1e3 * sum(tip) / len(tip),
    }
    print(f"trajectory: {row}", flush=True)
    return row


def speed_rows(model, args) -> dict:
    rows = {}
    model.generate("clap", 1.0, 30.0, seed=0, steps=args.steps, guidance=args.guidance)  # warm-up
    for seconds in (1, 2, 4, 8, 16):
        t0 = time.perf_counter()
        model.generate("clap", float(seconds), 30.0, seed=0, steps=args.steps, guidance=args.guidance,
                       separate_hands=args.separate_hands)  # fmt: skip
        rows[f"{seconds}s"] = round(time.perf_counter() - t0, 3)
    print(f"speed (s to generate): {rows}", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = reproduce.WEIGHTS
    p.add_argument("--model", default=str(weights / reproduce.GENERATOR_FILE))
    default_ablation = REPO_ROOT / ".work/handdiffuse-reproduce/ablation-no-interaction-loss/final"
    p.add_argument("--ablation", default=str(default_ablation / "handdiffuse.safetensors"))
    p.add_argument("--evaluator", default=str(weights / reproduce.EVALUATOR_FILE))
    p.add_argument("--real", type=int, default=140, help="held-out real clips per set")
    p.add_argument("--per-label", type=int, default=20)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--inbetweens", type=int, default=70)
    p.add_argument("--trajectories", type=int, default=21)
    p.add_argument(
        "--separate-hands",
        action="store_true",
        help="the sampler moves each x̂0 out of interpenetration (generated clips and speed)",
    )
    p.add_argument(
        "--generated-only",
        action="store_true",
        help="only the real and generated rows (no in-betweening, trajectory or speed rows)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(REPO_ROOT / "benchmarks/results/handdiffuse-cpu.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    evaluator = MotionEvaluator.load(args.evaluator)
    real, real_b = make_clips(2, args.real), make_clips(3, args.real)
    real_emb = evaluator.embeddings(real)
    touching = {a: None for a in ACTIONS}
    for a in ACTIONS:
        clips = [m for m in real if m.label == a]
        touching[a] = sum(touches(m.global_joints()) for m in clips) * 2 > len(clips)
    results: dict = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "touching": touching}
    results["real"] = motion_stats(real_b, [m.label for m in real_b], evaluator, real_emb, touching)
    print(f"real (seed 3 vs seed 2): {results['real']}", flush=True)
    model = load_model(args.model)
    results["generated"] = generated_rows(
        model, "generated (interaction loss)", args, evaluator, real_emb, touching
    )
    if Path(args.ablation).is_file():
        ablation = load_model(args.ablation)
        results["generated_no_interaction_loss"] = generated_rows(
            ablation, "generated (no interaction loss)", args, evaluator, real_emb, touching
        )
    elif Path(args.json).is_file():  # the ablation model is a 36-min training: keep its recorded row
        before = json.loads(Path(args.json).read_text())
        same = (
            before["settings"]["seconds"] == args.seconds
            and before["settings"].get("separate_hands", False) == args.separate_hands
        )
        if "generated_no_interaction_loss" in before and same:
            results["generated_no_interaction_loss"] = {
                **before["generated_no_interaction_loss"],
                "recorded": True,
            }
            print(f"ablation file {args.ablation} absent: its recorded row kept", flush=True)
    if not args.generated_only:
        results["inbetween"] = inbetween_row(model, real, evaluator, args)
        results["trajectory"] = trajectory_row(model, real, args)
        results["speed_seconds"] = speed_rows(model, args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
