"""Customizing Motion on the motion world: transfer of the customised motion, appearance, prior, ablations,
and the trainer's cost against full fine-tuning — one run.

The world base (motion_reproduce.py: the world SD model + a motion module trained on every motion but
"orbiting") and the motion files that taught "orbiting" from six clips of a yellow star, bound to "sks":
- transfer: held-out prompts with subjects other than the yellow star ("a red square sks orbiting on ..."),
  generated (DPM-Solver++ 2M, `--steps`, guidance 9, 8 frames, 128 px, seed = prompt index): fraction the
  motion classifier calls "orbiting" (and that moved at all); the base gets the same prompts without the
  token (target: paper variant >= 70 %, base near 0 %);
- appearance: the world attribute classifier on the first frame: object colour and shape right (target:
  within 10 points of the base on the same prompts);
- prior: base-motion prompts without the token, motion accuracy with the motion file applied against the
  base (target: drop <= 10 points);
- variants: the paper's set with prior and the high-noise timestep law; full U-Net without prior; uniform
  timesteps (same steps and clips);
- trainer (`--trainer`): step time and peak RSS of the paper's set against the whole U-Net, each in its own
  process (RSS high-water mark), side by side.

    python benchmarks/motion_custom.py [--per-cell 12] [--variants base,paper,full-no-prior,uniform-t]
        [--trainer] [--json benchmarks/results/motion_custom-cpu.json] [--strips FOLDER]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.models.motion_custom.motion_file import load_motion  # noqa: E402
from papernodes.models.motion_custom.pipeline import generate  # noqa: E402
from papernodes.models.proving_ground import motion_reproduce as mr  # noqa: E402
from papernodes.models.proving_ground.classifier import classify, load_classifier  # noqa: E402
from papernodes.models.proving_ground.motion_world import (  # noqa: E402
    MotionWorldDataset,
    caption_with_token,
    classify_motion,
    load_motion_classifier,
)

CACHE = REPO_ROOT / ".work" / "motion-reproduce"
VARIANTS = {  # motion file per variant; "paper" is the shipped one, in the folder given by --shipped
    "base": None,
    "paper": Path(mr.CUSTOM_FILE),
    **{name: CACHE / f"ablation-{name}" / "final" / "motion.safetensors" for name in mr.ABLATIONS},
}
MOVED = 0.02  # mean |frame - first frame| (0..1) below which a clip counts as not moving
TRANSFER_SEED, PRIOR_SEED = 7, 8


def prompts(per_cell: int) -> tuple[list[str], list[str], list[str]]:
    """Transfer captions (held-out motion, subjects other than the customisation's), prior captions and their
    motions (base motions), all from the held-out split."""
    ds = MotionWorldDataset(4 * per_cell, TRANSFER_SEED, "heldout", mr.FRAMES, motions=(mr.HELD_OUT,))
    transfer = [it["caption"] for it in (ds[i] for i in range(len(ds)))
                if (it["attributes"]["color"], it["attributes"]["shape"]) != mr.CUSTOM_SUBJECT][:per_cell]  # fmt: skip
    pd = MotionWorldDataset(per_cell, PRIOR_SEED, "heldout", mr.FRAMES, motions=mr.BASE_MOTIONS)
    items = [pd[i] for i in range(per_cell)]
    return transfer, [it["caption"] for it in items], [it["motion"] for it in items]


def clips_for(model, captions: list[str], steps: int) -> np.ndarray:
    out = []
    for i, text in enumerate(captions):
        frames = generate(
            model, text, num_frames=mr.FRAMES, height=mr.SIZE, width=mr.SIZE, steps=steps, seed=i
        )
        out.append((frames.numpy() * 255).round().astype(np.uint8))
    return np.stack(out)


def save_strips(clips: np.ndarray, captions: list[str], path: Path, rows: int = 4) -> None:
    """The first `rows` clips as one PNG (a row per clip, frames left to right) and their captions beside it."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate([np.concatenate(list(clip), axis=1) for clip in clips[:rows]], axis=0)
    Image.fromarray(grid).save(path)
    path.with_suffix(".txt").write_text("\n".join(captions[:rows]) + "\n")


def moved(clips: np.ndarray) -> np.ndarray:
    x = clips.astype(np.float32) / 255
    return np.abs(x - x[:, :1]).mean(axis=(1, 2, 3, 4)) > MOVED


def appearance(clips: np.ndarray, captions: list[str], attr) -> dict[str, float]:
    from papernodes.models.proving_ground.motion_world import parse_motion_caption

    pred = classify(clips[:, 0], attr)
    truth = [parse_motion_caption(c) for c in captions]
    return {k: float(np.mean([p == t[k] for p, t in zip(pred[k], truth)])) for k in ("color", "shape")}


def evaluate_variant(
    name: str, per_cell: int, steps: int, shipped: Path = mr.SHIPPED, strips: Path | None = None
) -> dict:
    model = mr.world_base(shipped)
    path = VARIANTS[name]
    if path is not None:
        path = shipped / path  # relative: in the shipped folder; absolute (the ablations' runs) unchanged
        if not Path(path).is_file():
            return {"missing": str(path)}
        model = model.with_motion(load_motion(path), 1.0)
    transfer, prior, prior_motions = prompts(per_cell)
    if name != "base":
        transfer = [caption_with_token(c, "sks") for c in transfer]
    motion_clf, attr = load_motion_classifier(), load_classifier()
    t0 = time.perf_counter()
    tc = clips_for(model, transfer, steps)
    pc = clips_for(model, prior, steps)
    seconds = (time.perf_counter() - t0) / (len(transfer) + len(prior))
    tpred, ppred = classify_motion(tc, motion_clf), classify_motion(pc, motion_clf)
    if strips is not None:
        save_strips(tc, transfer, strips / f"{name}-transfer.png")
        save_strips(pc, prior, strips / f"{name}-prior.png")
    tmoved = moved(tc)
    return {
        "transfer_prompts": transfer[:3],
        "transfer_motion_acc": float(np.mean([p == mr.HELD_OUT for p in tpred])),
        "transfer_motion_acc_moving": float(np.mean([p == mr.HELD_OUT and m for p, m in zip(tpred, tmoved)])),
        "transfer_predictions": {str(k): int(v) for k, v in zip(*np.unique(tpred, return_counts=True))},
        "transfer_appearance": appearance(tc, transfer, attr),
        "prior_motion_acc": float(np.mean([p == m for p, m in zip(ppred, prior_motions)])),
        "prior_confusions": [f"{m} -> {p}" for p, m in zip(ppred, prior_motions)],
        "prior_moved": float(np.mean(moved(pc))),
        "prior_appearance": appearance(pc, prior, attr),
        "seconds_per_clip": seconds,
        "n_per_cell": per_cell,
    }


def trainer_child(which: str, steps: int) -> dict:
    """Step time and peak RSS of `steps` training steps with trainable set `which` (run in its own process)."""
    import tempfile

    from papernodes.models.motion_custom.train import TrainConfig, train

    torch.set_num_threads(1)
    clips = mr.world_clips(
        mr.CUSTOM_CLIPS, mr.CUSTOM_SEED, motions=(mr.HELD_OUT,), subjects=[mr.CUSTOM_SUBJECT]
    )
    times: list[float] = []
    last = [time.perf_counter()]

    def progress(step, total, metrics):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(out=out, frames=mr.FRAMES, height=mr.SIZE, width=mr.SIZE, trainable=which, max_steps=steps,
                          lr=1e-4, save_every=0, cpu=True, prior_weight=0.0)  # fmt: skip
        train(cfg, progress=progress, base=mr.world_base(), clips=clips)
    return {"trainable": which, "step_s": float(np.median(times[1:])),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-cell", type=int, default=12, help="prompts per transfer / prior cell")
    p.add_argument("--steps", type=int, default=15, help="sampling steps (paper: 50; 15 keeps the run short)")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    p.add_argument(
        "--trainer", action="store_true", help="also measure the trainer: paper set vs whole U-Net"
    )
    p.add_argument("--trainer-steps", type=int, default=6)
    p.add_argument("--trainer-child", help=argparse.SUPPRESS)
    p.add_argument("--shipped", default=str(mr.SHIPPED), help="folder of the world base's motion module")
    p.add_argument("--json", default=str(REPO_ROOT / "benchmarks" / "results" / "motion_custom-cpu.json"))
    p.add_argument("--strips", help="folder for PNG strips of each variant's first clips (to look at)")
    args = p.parse_args(argv)
    if args.trainer_child:
        print(json.dumps(trainer_child(args.trainer_child, args.trainer_steps)))
        return 0
    torch.set_num_threads(1)
    results: dict = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        strips = Path(args.strips) if args.strips else None
        results[name] = evaluate_variant(name, args.per_cell, args.steps, Path(args.shipped), strips)
        print(name, json.dumps(results[name]), flush=True)
    trainer = {}
    if args.trainer:
        for which in ("paper", "full"):
            cmd = [
                sys.executable,
                __file__,
                "--trainer-child",
                which,
                "--trainer-steps",
                str(args.trainer_steps),
            ]
            out = (
                subprocess.run(cmd, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            trainer[which] = json.loads(out)
        trainer["step_time_ratio_full_over_paper"] = trainer["full"]["step_s"] / trainer["paper"]["step_s"]
        trainer["rss_ratio_full_over_paper"] = (
            trainer["full"]["peak_rss_mb"] / trainer["paper"]["peak_rss_mb"]
        )
        print("trainer", json.dumps(trainer), flush=True)
    path = Path(args.json)
    merged = json.loads(path.read_text()) if path.is_file() else {}  # stages run side by side: re-read, merge
    merged.setdefault("variants", {}).update(results)
    if trainer:
        merged["trainer"] = trainer
    merged["settings"] = {"per_cell": args.per_cell, "steps": args.steps, "frames": mr.FRAMES, "size": mr.SIZE,
                          "quiet_machine": False}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
