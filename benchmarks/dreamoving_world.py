"""DreaMoving on the dance world: does the Video ControlNet follow the pose, and do its motion blocks steady
the video? Issue 20's targets, measured on held-out dance clips with the trained world models.

Rows (same seeds and sampler settings; 128 px, 16 frames, DDIM, CFG 4, ControlNet strength 1.5, one window):
- text only: the caption, no control - the floor of pose following (the person dances as it likes);
- image ControlNet: the pose ControlNet frame by frame (the Video ControlNet without its motion blocks);
- Video ControlNet: the same ControlNet with its trained motion blocks (DreaMoving Sec. 3.2);
- no clothes in prompt: the Video ControlNet with a prompt naming only the background - the floor of
  identity (the model picks clothes);
- Content Guider: the same prompt with the dancer's face and clothes crops as image prompts (Sec. 3.3,
  alpha_f = alpha_c = 1, the scale they were trained at);
- depth Video ControlNet: the full caption with the clip's depth maps (near = bright) through the world's
  depth Video ControlNet at --depth-scale, instead of the pose maps.
Two reference rows: the world's frames (the evaluator's ceiling) and the same frames encoded and decoded
by the model's VAE (the ceiling of any generator on this VAE). Measures per row
(`models/proving_ground/dance_eval.py`): PCK@0.1 of the keypoints the world's evaluator reads in the
generated frames against the control's keypoints; clothes accuracy (shirt and trousers as in the caption,
per frame; and each garment's colour alone); background flicker (mean |frame_t - frame_t-1| over pixels
that are background in both frames by the control's depth maps, 0..255); pose jitter (the figure's flicker:
mean |acceleration of the read keypoints - the control's|, pixels at 128 px). Targets: PCK >= 70 % with the
Video ControlNet; flicker of the Video ControlNet <= 0.8 x the image ControlNet's; clothes (identity) >= 80 %
with the Content Guider.

    python benchmarks/dreamoving_world.py [--clips 6] [--first-clip 0] [--steps 25] [--guidance 4]
        [--control-scale 1.5] [--depth-scale 1] [--rows R1,R2] [--merge] [--json F]
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
from papernodes.models.common.image_prompt import load_clip_vision, load_ip_adapter  # noqa: E402
from papernodes.models.dreamoving.content_guider import ContentGuider, ImagePrompt  # noqa: E402
from papernodes.models.dreamoving.pipeline import DreaMovingPipeline  # noqa: E402
from papernodes.models.dreamoving.video_controlnet import (  # noqa: E402
    ControlSpec,
    load_video_controlnet,
)
from papernodes.models.proving_ground import dance_eval as de  # noqa: E402
from papernodes.models.proving_ground import dance_reproduce as dr  # noqa: E402
from papernodes.models.proving_ground.dance_guider import content_caption  # noqa: E402
from papernodes.models.proving_ground.dance_world import make_clip  # noqa: E402

SEED, SPLIT, FRAMES, SIZE = 1, "heldout", 16, dr.IMAGE_SIZE
NEGATIVE = ""
CONTROL_SCALE = 1.5  # the world models' settings (with --guidance 4), chosen by a sweep on clips 0-5 and
GUIDANCE = 4.0  # checked on clips 6-17 (docs/dreamoving.md); the ControlNet was trained at scale 1
DEPTH_SCALE = 1.0  # the depth Video ControlNet's strength (docs/dreamoving.md)
ROWS = ("text only", "image ControlNet", "Video ControlNet", "no clothes in prompt", "Content Guider",
        "depth Video ControlNet")  # fmt: skip
GUIDED_ROWS = ("no clothes in prompt", "Content Guider")


def content_guider(guider_parts, clip) -> ContentGuider:
    """The dancer's face and clothes crops through the shipped encoder and adapters (scale 1)."""
    encoder, adapters = guider_parts
    crops = {"face": clip.face_crop, "clothes": clip.clothes_crop}
    prompts = {
        name: ImagePrompt.from_images(adapter, encoder, torch.from_numpy(crops[name])[None].float() / 255.0)
        for name, adapter in adapters.items()
    }
    return ContentGuider(**prompts)


def generate(
    pipe,
    clip,
    row: str,
    vcn,
    guider_parts,
    steps: int,
    guidance: float,
    seed: int,
    control_scale: float = CONTROL_SCALE,
    depth_vcn=None,
    depth_scale: float = DEPTH_SCALE,
) -> np.ndarray:
    controls, guider = [], None
    if row == "depth Video ControlNet":
        depth = torch.from_numpy(dr.depth_image(clip.depth)).permute(0, 3, 1, 2).float() / 255.0
        controls = [ControlSpec(depth_vcn, depth, scale=depth_scale)]
    elif row != "text only":
        net = vcn.without_motion() if row == "image ControlNet" else vcn
        pose = torch.from_numpy(clip.pose).permute(0, 3, 1, 2).float() / 255.0
        controls = [ControlSpec(net, pose, scale=control_scale)]
    prompt = content_caption(clip) if row in GUIDED_ROWS else clip.caption
    if row == "Content Guider":
        guider = content_guider(guider_parts, clip)
    frames = pipe(prompt, NEGATIVE, num_frames=FRAMES, height=SIZE, width=SIZE, steps=steps,
                  guidance=guidance, seed=seed, controls=controls, guider=guider)  # fmt: skip
    return (frames.numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def vae_round_trip(vae, frames: np.ndarray) -> np.ndarray:
    """The world's frames encoded and decoded by the model's VAE: the best any generator of it can draw."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    return ((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)


def measure(evaluator, clip, frames: np.ndarray) -> dict:
    read = de.read_frames(evaluator, frames)
    kp = clip.keypoints
    return {
        "pck": de.pck(read["keypoints"] * SIZE, kp[..., :2], kp[..., 2] > 0, 0.1),
        "clothes": de.clothes_match(read, clip.person.shirt, clip.person.trousers),
        "shirt": float(np.mean([c == clip.person.shirt for c in read["shirt"]])),
        "trousers": float(np.mean([c == clip.person.trousers for c in read["trousers"]])),
        "shirt_pattern": float(np.mean([c == clip.person.shirt_pattern for c in read["shirt_pattern"]])),
        "trousers_pattern": float(
            np.mean([c == clip.person.trousers_pattern for c in read["trousers_pattern"]])
        ),
        "flicker": de.background_flicker(frames, clip.depth > 0),
        "jitter": de.pose_jitter(read["keypoints"] * SIZE, kp[..., :2], kp[..., 2] > 0),
    }


# Settings a results file may lack because it was measured before the option existed: their value then.
SETTING_DEFAULTS = {"first_clip": 0}
# Settings of one row only (the depth row's strength): a file measured without that row is compatible with any
# value, and a merged file keeps the value its row was measured with.
ROW_SETTINGS = ("depth_scale",)


def merge_base(p: argparse.ArgumentParser, args, settings: dict) -> dict | None:
    """The results file --merge adds to, if its settings are these (ROW_SETTINGS it lacks are compatible)."""
    if not Path(args.json).is_file():
        return None
    before = json.loads(Path(args.json).read_text())
    for key, value in settings.items():
        old = before.get(key, value if key in ROW_SETTINGS else SETTING_DEFAULTS.get(key))
        if old != value:
            p.error(f"--merge: {args.json} was measured with {key} = {old}, this run has {value}")
    return before


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument(
        "--first-clip", type=int, default=0, help="held-out clip index to start from (its seed too)"
    )
    p.add_argument("--rows", default=",".join(ROWS), help="comma list of rows to run (default: all)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=GUIDANCE, help="classifier-free guidance")
    p.add_argument("--control-scale", type=float, default=CONTROL_SCALE, help="the ControlNet's strength")
    p.add_argument(
        "--depth-scale", type=float, default=DEPTH_SCALE, help="the depth Video ControlNet's strength"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", default=str(dr.SHIPPED))
    p.add_argument("--json", default=str(REPO_ROOT / "benchmarks" / "results" / "dreamoving-world-cpu.json"))
    p.add_argument("--save-frames", default=None, help="folder for a PNG strip per clip and row")
    p.add_argument("--merge", action="store_true",
                   help="add these rows to the rows already in --json (same clips and settings)")  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = Path(args.weights)
    comps = dr.dance_components(weights)
    pipe = DreaMovingPipeline(comps, load_motion_adapter(weights / dr.MOTION_MODULE_FILE))
    vcn = load_video_controlnet(weights / dr.POSE_VCN_DIR)
    evaluator = de.load_evaluator(weights / dr.EVALUATOR_FILE)
    first = args.first_clip
    clips = [make_clip(SEED, SPLIT, first + i, num_frames=FRAMES, size=SIZE) for i in range(args.clips)]
    run_rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := [r for r in run_rows if r not in ROWS]:
        p.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    depth_vcn = None
    if "depth Video ControlNet" in run_rows:
        depth_vcn = load_video_controlnet(weights / dr.DEPTH_VCN_DIR)
    guider_parts = None
    if "Content Guider" in run_rows:
        guider_parts = (
            load_clip_vision(weights / dr.CLIP_VISION_FILE),
            {name: load_ip_adapter(weights / file) for name, file in dr.GUIDER_FILES.items()},
        )
    settings = {
        "clips": args.clips,
        "first_clip": args.first_clip,
        "frames": FRAMES,
        "size": SIZE,
        "steps": args.steps,
        "guidance": args.guidance,
        "control_scale": args.control_scale,
    }
    if depth_vcn is not None:
        settings["depth_scale"] = args.depth_scale
    before = merge_base(p, args, settings) if args.merge else None  # checked before any generating
    rows: dict[str, list[dict]] = {r: [] for r in run_rows}
    t0 = time.time()
    for i, clip in enumerate(clips):
        strip = []
        for row in run_rows:
            frames = generate(pipe, clip, row, vcn, guider_parts, args.steps, args.guidance, seed=first + i,
                              control_scale=args.control_scale, depth_vcn=depth_vcn,
                              depth_scale=args.depth_scale)  # fmt: skip
            rows[row].append(measure(evaluator, clip, frames))
            strip.append(np.concatenate(list(frames[::4]), 1))
        truth = measure(evaluator, clip, clip.frames)
        rows.setdefault("world frames (ceiling)", []).append(truth)
        through_vae = measure(evaluator, clip, vae_round_trip(comps.vae, clip.frames))
        rows.setdefault("world frames through the VAE", []).append(through_vae)
        if args.save_frames:
            from PIL import Image

            Path(args.save_frames).mkdir(parents=True, exist_ok=True)
            top = np.concatenate(
                [np.concatenate(list(clip.pose[::4]), 1), np.concatenate(list(clip.frames[::4]), 1)]
            )
            Image.fromarray(np.concatenate([top, *strip])).save(Path(args.save_frames) / f"clip{i:02d}.png")
        print(f"[{time.time() - t0:5.0f} s] clip {i + 1}/{len(clips)}: " + ", ".join(
            f"{r}: PCK {rows[r][-1]['pck']:.2f}" for r in run_rows), flush=True)  # fmt: skip
    seconds = round(time.time() - t0, 1)
    if before is not None:
        for key in ROW_SETTINGS:  # a row's setting stays with its row
            if key in before:
                settings.setdefault(key, before[key])
        rows = {**before["per_clip"], **rows}
        seconds += before["seconds"]
    keys = ("pck", "clothes", "shirt", "trousers", "shirt_pattern", "trousers_pattern", "flicker", "jitter")
    summary = {
        r: {k: float(np.mean([m[k] for m in v])) if all(k in m for m in v) else None for k in keys}
        for r, v in rows.items()
    }  # fmt: skip (rows merged from an older run may lack a measure)
    targets = {}
    if {"Video ControlNet", "image ControlNet"} <= summary.keys():
        vc, ic = summary["Video ControlNet"], summary["image ControlNet"]
        targets["pck_video_controlnet>=0.70"] = vc["pck"] >= 0.70
        targets["flicker_reduction>=0.20"] = ic["flicker"] > 0 and 1 - vc["flicker"] / ic["flicker"] >= 0.20
    if "Content Guider" in summary:
        targets["clothes_content_guider>=0.80"] = summary["Content Guider"]["clothes"] >= 0.80
    report = {**settings, "threads": args.threads, "weights": str(weights), "summary": summary, "targets": targets,
              "seconds": seconds, "per_clip": rows}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'row':30s}" + "".join(f"{k:>9s}" for k in keys))
    for r, s in summary.items():
        print(f"{r:30s}" + "".join("        -" if s[k] is None else f"{s[k]:9.3f}" for k in keys))
    print("targets:", targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
