"""DreaMoving on the dance world: does the Video ControlNet follow the pose, and do its motion blocks steady
the video? Issue 20's targets, measured on held-out dance clips with the trained world models.

Rows (same seeds, prompts and sampler settings; 128 px, 16 frames, DDIM, CFG 7.5, one window):
- text only: the caption, no control - the floor of pose following (the person dances as it likes);
- image ControlNet: the pose ControlNet frame by frame (the Video ControlNet without its motion blocks);
- Video ControlNet: the same ControlNet with its trained motion blocks (DreaMoving Sec. 3.2).
Measures per row (`models/proving_ground/dance_eval.py`): PCK@0.1 of the keypoints the world's evaluator
reads in the generated frames against the control's keypoints; clothes accuracy (shirt and trousers as in
the caption, per frame); background flicker (mean |frame_t - frame_t-1| over pixels that are background in
both frames by the control's depth maps, 0..255). Targets: PCK >= 70 % with the Video ControlNet; flicker
of the Video ControlNet <= 0.8 x the image ControlNet's.

    python benchmarks/dreamoving_world.py [--clips 12] [--steps 25] [--threads 1] [--weights DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402

papernodes_bootstrap.register()
for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_key, "1")

from papernodes.models.common.animatediff import load_motion_adapter  # noqa: E402
from papernodes.models.dreamoving.pipeline import DreaMovingPipeline  # noqa: E402
from papernodes.models.dreamoving.video_controlnet import (  # noqa: E402
    ControlSpec,
    load_video_controlnet,
)
from papernodes.models.proving_ground import dance_eval as de  # noqa: E402
from papernodes.models.proving_ground import dance_reproduce as dr  # noqa: E402
from papernodes.models.proving_ground.dance_world import make_clip  # noqa: E402

SEED, SPLIT, FRAMES, SIZE = 1, "heldout", 16, dr.IMAGE_SIZE
NEGATIVE = ""
CONTROL_SCALE = 1.0  # the scale the world ControlNet was trained at (the trainer's default)
ROWS = ("text only", "image ControlNet", "Video ControlNet")


def generate(pipe, clip, row: str, vcn, steps: int, guidance: float, seed: int) -> np.ndarray:
    controls = []
    if row != "text only":
        net = vcn if row == "Video ControlNet" else vcn.without_motion()
        pose = torch.from_numpy(clip.pose).permute(0, 3, 1, 2).float() / 255.0
        controls = [ControlSpec(net, pose, scale=CONTROL_SCALE)]
    frames = pipe(clip.caption, NEGATIVE, num_frames=FRAMES, height=SIZE, width=SIZE, steps=steps,
                  guidance=guidance, seed=seed, controls=controls)  # fmt: skip
    return (frames.numpy() * 255).round().astype(np.uint8)


def measure(evaluator, clip, frames: np.ndarray) -> dict:
    read = de.read_frames(evaluator, frames)
    kp = clip.keypoints
    return {
        "pck": de.pck(read["keypoints"] * SIZE, kp[..., :2], kp[..., 2] > 0, 0.1),
        "clothes": de.clothes_match(read, clip.person.shirt, clip.person.trousers),
        "flicker": de.background_flicker(frames, clip.depth > 0),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", default=str(dr.SHIPPED))
    p.add_argument("--json", default=str(REPO_ROOT / "benchmarks" / "results" / "dreamoving-world-cpu.json"))
    p.add_argument("--save-frames", default=None, help="folder for a PNG strip per clip and row")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = Path(args.weights)
    comps = dr.dance_components(weights)
    pipe = DreaMovingPipeline(comps, load_motion_adapter(weights / dr.MOTION_MODULE_FILE))
    vcn = load_video_controlnet(weights / dr.POSE_VCN_DIR)
    evaluator = de.load_evaluator(weights / dr.EVALUATOR_FILE)
    clips = [make_clip(SEED, SPLIT, i, num_frames=FRAMES, size=SIZE) for i in range(args.clips)]
    rows: dict[str, list[dict]] = {r: [] for r in ROWS}
    t0 = time.time()
    for i, clip in enumerate(clips):
        strip = []
        for row in ROWS:
            frames = generate(pipe, clip, row, vcn, args.steps, args.guidance, seed=i)
            rows[row].append(measure(evaluator, clip, frames))
            strip.append(np.concatenate(list(frames[::4]), 1))
        truth = measure(evaluator, clip, clip.frames)
        rows.setdefault("world frames (ceiling)", []).append(truth)
        if args.save_frames:
            from PIL import Image

            Path(args.save_frames).mkdir(parents=True, exist_ok=True)
            top = np.concatenate(
                [np.concatenate(list(clip.pose[::4]), 1), np.concatenate(list(clip.frames[::4]), 1)]
            )
            Image.fromarray(np.concatenate([top, *strip])).save(Path(args.save_frames) / f"clip{i:02d}.png")
        print(f"[{time.time() - t0:5.0f} s] clip {i + 1}/{len(clips)}: " + ", ".join(
            f"{r}: PCK {rows[r][-1]['pck']:.2f}" for r in ROWS), flush=True)  # fmt: skip
    summary = {
        r: {k: float(np.mean([m[k] for m in v])) for k in ("pck", "clothes", "flicker")}
        for r, v in rows.items()
    }
    vc, ic = summary["Video ControlNet"], summary["image ControlNet"]
    targets = {
        "pck_video_controlnet>=0.70": vc["pck"] >= 0.70,
        "flicker_reduction>=0.20": ic["flicker"] > 0 and 1 - vc["flicker"] / ic["flicker"] >= 0.20,
    }
    report = {"clips": args.clips, "frames": FRAMES, "size": SIZE, "steps": args.steps, "guidance": args.guidance,
              "threads": args.threads, "weights": str(weights), "summary": summary, "targets": targets,
              "seconds": round(time.time() - t0, 1), "per_clip": rows}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'row':28s} {'PCK@0.1':>8s} {'clothes':>8s} {'flicker':>8s}")
    for r, s in summary.items():
        print(f"{r:28s} {s['pck']:8.3f} {s['clothes']:8.3f} {s['flicker']:8.2f}")
    print("targets:", targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
