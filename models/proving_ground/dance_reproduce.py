"""Reproduce the dance world's models (DreaMoving's proving ground), resumable stage by stage.

    python -m models.proving_ground.dance_reproduce [--stages image] [--quick] [--threads 1]

- `evaluator`: the pose/clothes evaluator (`dance_eval.DanceEvaluator`) trained on 4 800 train-split
  frames at 64 px; held-out PCK and clothes accuracy on frames rendered at 128 px go into its JSON.
- `image`: the world's SD1.5-architecture image model of people: the image world's teacher U-Net
  (`world_sd/unet`) fine-tuned on single dance-world frames at 128 px with their captions, the world's
  VAE and CLIP text encoder frozen and shared (so only a U-Net ships: `world_dance/unet`, fp16). Same
  recipe as the teacher's last phases (epsilon prediction on SD's schedule, Min-SNR 5, offset noise 0.2,
  10 % caption dropout, EMA weights). Frames come from many short clips (2 frames each, random dance
  phase per clip), so poses, people and backgrounds vary more than frames of a few long clips would.
- `motion`: a fresh AnimateDiff motion module (original layout) trained on 16-frame dance clips with the
  dance image model frozen, on that model's own (scaled-linear) betas, recorded in the file's header.
- `controlnet`: a pose ControlNet from the dance U-Net on single frames, then the Video ControlNet's
  motion blocks on 16-frame clips with the motion module in the U-Net (`dreamoving.train --stage
  controlnet`, clips written in its documented layout); ships as one Video ControlNet folder.
- `depth`: the same two phases with the clips' depth maps (`<name>.depth/` frames beside each video,
  `--control-suffix .depth`); ships as a second Video ControlNet folder.
- `guider`: a small CLIP-vision-architecture encoder trained on the world's face/clothes crops
  (`dance_guider.py`), then the face and clothes IP-Adapters (`dreamoving.train --stage guider`) on
  frames whose captions name only the background.

Rendered data is cached under --cache; shipped files go to weights/world_dance.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

if __name__ == "__main__":  # `python -m models.proving_ground.dance_reproduce`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import add_stages, chosen_stages, report_user_errors
from . import zoo
from .dance_world import make_clip
from .reproduce import _progress, _save_fp16
from .train_base import TeacherSettings, train_teacher

log = logging.getLogger("proving_ground.dance_reproduce")
SHIPPED = zoo.WEIGHTS_DIR / "world_dance"
STAGES = ("evaluator", "image", "motion", "controlnet", "depth", "guider")
EVALUATOR_FILE = "dance_evaluator.safetensors"
MOTION_MODULE_FILE = "mm_dance_v1.safetensors"  # AnimateDiff original layout, fp16
MOTION_CLIPS, MOTION_FRAMES, MOTION_SEED = 600, 16, 2  # 16 frames: AnimateDiff's training length
# AnimateDiff's recipe for a motion module on a frozen image model: temporal layers only, uniform timesteps,
# captions as written (no token), lr 1e-4 (AnimateDiff v2's), batch 1.
MOTION_ARGS = dict(trainable="temporal", token="", timestep_law="uniform", lr=1e-4, max_steps=1200,
                   prior_weight=0.0)  # fmt: skip
EVAL_CLIPS, EVAL_FRAMES, EVAL_SEED = 100, 4, 1  # held-out split, frames rendered at 128 px
IMAGE_SIZE = 128  # the world teacher's resolution (16x16 latents)
IMAGE_CLIPS, IMAGE_FRAMES, IMAGE_SEED = 3000, 2, 0  # dance-world train split, seed 0: 6 000 frames
IMAGE_SETTINGS = TeacherSettings(
    steps=1500, batch_size=32, lr=1e-4, images=IMAGE_CLIPS * IMAGE_FRAMES, offset_noise=0.2,
    text_pretrain=None, seed=5,
)  # fmt: skip


def dance_frames(
    clips: int, frames: int, seed: int, size: int, cache: Path | None = None, split: str = "train"
) -> tuple[np.ndarray, list[str]]:
    """uint8 frames [clips * frames, size, size, 3] and their captions (each clip's caption per frame),
    rendered once and cached as .npz."""
    path = None if cache is None else Path(cache) / f"dance-{split}-{seed}-{clips}x{frames}-{size}.npz"
    if path is not None and path.is_file():
        data = np.load(path)
        return data["images"], [str(c) for c in data["captions"]]
    images, captions = [], []
    for i in range(clips):
        clip = make_clip(seed, split, i, num_frames=frames, size=size)
        images.append(clip.frames)
        captions += [clip.caption] * frames
    images = np.concatenate(images)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=images, captions=np.array(captions))
    return images, captions


def evaluate_evaluator(
    model, clips: int = EVAL_CLIPS, frames: int = EVAL_FRAMES, seed: int = EVAL_SEED
) -> dict:
    """Held-out accuracy of the evaluator on frames rendered at 128 px (as generated frames are)."""
    from .dance_eval import HEADS, pck, read_frames

    size = IMAGE_SIZE
    data = [make_clip(seed, "heldout", i, num_frames=frames, size=size) for i in range(clips)]
    images = np.concatenate([c.frames for c in data])
    read = read_frames(model, images)
    kps = np.concatenate([c.keypoints for c in data])
    report = {"frames": len(images), "size": size}
    for alpha in (0.05, 0.1):
        report[f"pck@{alpha}"] = pck(read["keypoints"] * size, kps[..., :2], kps[..., 2] > 0, alpha)
    for head in HEADS:
        truth = [getattr(c.person, head) for c in data for _ in range(frames)]
        report[f"{head}_accuracy"] = float(np.mean([a == b for a, b in zip(read[head], truth)]))
    return report


def stage_evaluator(shipped: Path, cache: Path, quick: bool) -> None:
    from .dance_eval import save_evaluator, train_evaluator

    kw = dict(clips=10, frames=2, steps=4, batch_size=4) if quick else {}
    model, settings = train_evaluator(progress=_progress(), **kw)
    report = evaluate_evaluator(model, clips=3 if quick else EVAL_CLIPS)
    log.info("evaluator held-out: %s", report)
    save_evaluator(model, shipped / EVALUATOR_FILE, {"training": settings, "heldout": report})
    (shipped / "dance_evaluator.json").write_text(
        json.dumps({"training": settings, "heldout": report}, indent=2) + "\n"
    )


def stage_image(shipped: Path, cache: Path, quick: bool) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    base = zoo.base_dir()
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).eval().requires_grad_(False)
    text = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32)
    settings, clips = (replace(IMAGE_SETTINGS, steps=4, batch_size=2, images=8), 4) if quick else (
        IMAGE_SETTINGS, IMAGE_CLIPS)  # fmt: skip
    data = dance_frames(clips, IMAGE_FRAMES, IMAGE_SEED, IMAGE_SIZE, None if quick else cache)
    _, unet = train_teacher(
        vae, settings, progress=_progress(), init=(text, unet), data=data, train_text=False
    )
    _save_fp16(unet, shipped / "unet")


def dance_components(shipped: Path = SHIPPED):
    """The world SD (VAE, text encoder, tokenizer, scheduler) with the dance U-Net: the dance image model."""
    from diffusers import UNet2DConditionModel

    from ..common.loading import load_model_fresh

    comps = load_model_fresh(zoo.base_dir())
    comps.unet = UNet2DConditionModel.from_pretrained(shipped / "unet", torch_dtype=torch.float32).eval()
    return comps


def stage_motion(shipped: Path, cache: Path, quick: bool) -> None:
    """A fresh AnimateDiff motion module (AnimateDiff's init) for the dance U-Net, trained on dance clips."""
    from ..common.animatediff import save_motion_adapter_original
    from ..motion_custom.data import clips_from_frames
    from ..motion_custom.motion_file import load_motion, motions_applied
    from ..motion_custom.pipeline import animatediff_model
    from ..motion_custom.train import TrainConfig, train
    from .motion_reproduce import fresh_adapter

    comps = dance_components(shipped)
    # Trained and sampled on the dance image model's own schedule (scaled-linear betas), recorded in the
    # file's header: on AnimateDiff's linear betas this small image model's frames fell apart (issue 20).
    adapter = fresh_adapter(comps.unet, comps.scheduler_config["beta_schedule"])
    n = 3 if quick else MOTION_CLIPS
    clips = [make_clip(MOTION_SEED, "train", i, num_frames=MOTION_FRAMES, size=IMAGE_SIZE) for i in range(n)]
    sources = clips_from_frames([c.frames for c in clips], [c.caption for c in clips])
    cfg = TrainConfig(out=str(cache / "motion"), frames=MOTION_FRAMES, height=IMAGE_SIZE, width=IMAGE_SIZE,
                      save_every=200, keep_checkpoints=1, resume="auto", cpu=True, **MOTION_ARGS)  # fmt: skip
    if quick:
        cfg.max_steps, cfg.save_every, cfg.resume, cfg.frames = 2, 0, None, 4
        cfg.out = str(cache / "motion-quick")
    model = animatediff_model(comps, adapter)
    run = train(cfg, base=model, clips=sources)
    with motions_applied(model.unet, [(load_motion(run), 1.0)]):
        state = {k: v.detach().clone() for k, v in model.unet.state_dict().items() if ".motion_modules." in k}
    missing = adapter.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys and all("pos_embed" in k for k in missing.missing_keys), missing
    shipped.mkdir(parents=True, exist_ok=True)
    save_motion_adapter_original(adapter.half(), shipped / MOTION_MODULE_FILE)


POSE_VCN_DIR = "video_controlnet_openpose"  # the Video ControlNet folder (our trainer's format), fp16
DEPTH_VCN_DIR = "video_controlnet_depth"  # the same for the depth maps (`depth` stage)
DEPTH_SUFFIX = ".depth"  # <name>.depth/00000.png ...: the trainer's control_suffix for the depth maps
CN_CLIPS, CN_SEED = 400, 3  # 16-frame clips at 128 px on disk in the trainer's documented layout
# Phase 1 trains the image ControlNet on single frames (a fresh ControlNet copied from the dance U-Net, as
# ControlNet does, Zhang et al. 2023 Sec. 3; half of the captions dropped, their Sec. 3.3, so the control
# alone must carry the pose). Phase 2 trains only the Video ControlNet's motion blocks (zero init: the
# image ControlNet exactly at the start) on 16-frame clips with the trained motion module in the U-Net.
CN_IMAGE = dict(
    frames=1, stride=1, batch_size=8, max_steps=1500, lr=1e-4, text_dropout=0.5, train_controlnet=True
)
CN_MOTION = dict(frames=16, stride=1, batch_size=1, max_steps=600, lr=1e-4, text_dropout=0.1)


def dance_model_folder(shipped: Path, dest: Path) -> Path:
    """A diffusers SD folder: the world SD with the dance U-Net (what `--model` of the trainers reads)."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(zoo.base_dir(), dest, copy_function=zoo._link_or_copy)
    shutil.rmtree(dest / "unet")
    shutil.copytree(shipped / "unet", dest / "unet", copy_function=zoo._link_or_copy)
    return dest


def depth_image(depth: np.ndarray) -> np.ndarray:
    """A world depth map (float 0..1, nearer = brighter) as the grey RGB uint8 image a depth preprocessor
    (MiDaS in ComfyUI's and controlnet_aux's nodes) gives: [..., H, W] -> [..., H, W, 3]."""
    grey = np.round(np.clip(depth, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def write_control_clips(folder: Path, n: int, seed: int, frames: int = 16, size: int = IMAGE_SIZE) -> Path:
    """Dance clips as <name>.mp4 + <name>.txt + <name>.pose.json (POSE_KEYPOINT: the trainer renders the
    maps with the pack's OpenPose renderer, identical to the world's) + <name>.depth/00000.png ... (the depth
    maps as images) - the layout users train on."""
    from PIL import Image

    from ..common.video_io import write_video
    from .dance_world import FPS

    done = folder / ".complete"
    marker = f"{n} pose+depth"
    if done.is_file() and done.read_text() == marker:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clip = make_clip(seed, "train", i, num_frames=frames, size=size)
        write_video(folder / f"dance{i:04d}.mp4", clip.frames, FPS)
        (folder / f"dance{i:04d}.txt").write_text(clip.caption)
        (folder / f"dance{i:04d}.pose.json").write_text(json.dumps(clip.pose_keypoint))
        depth_dir = folder / f"dance{i:04d}{DEPTH_SUFFIX}"
        depth_dir.mkdir(exist_ok=True)
        for k, image in enumerate(depth_image(clip.depth)):
            Image.fromarray(image).save(depth_dir / f"{k:05d}.png")
    done.write_text(marker)
    return folder


def stage_controlnet(shipped: Path, cache: Path, quick: bool) -> None:
    _train_video_controlnet(shipped, cache, quick, "pose", "", POSE_VCN_DIR)


def stage_depth(shipped: Path, cache: Path, quick: bool) -> None:
    _train_video_controlnet(shipped, cache, quick, "depth", DEPTH_SUFFIX, DEPTH_VCN_DIR)


def _train_video_controlnet(
    shipped: Path, cache: Path, quick: bool, kind: str, suffix: str, out_dir: str
) -> None:
    """Phase 1 (image ControlNet on single frames) then phase 2 (motion blocks on clips) for one control."""
    from diffusers import ControlNetModel

    from ..common.animatediff import save_motion_adapter_original
    from ..dreamoving.train import TrainConfig, train
    from ..dreamoving.video_controlnet import load_video_controlnet, save_video_controlnet
    from .motion_reproduce import fresh_adapter

    cache.mkdir(parents=True, exist_ok=True)
    model = dance_model_folder(shipped, cache / "dance_sd")
    comps = dance_components(shipped)
    n = 2 if quick else CN_CLIPS
    data = write_control_clips(cache / ("control-clips-quick" if quick else "control-clips"), n, CN_SEED)
    init = cache / "controlnet-init"
    if not (init / "config.json").is_file():
        torch.manual_seed(CN_SEED)
        ControlNetModel.from_unet(comps.unet).save_pretrained(init, safe_serialization=True)
    # The single-frame phase runs the U-Net through an identity motion module: it carries the image model's
    # schedule, or the ControlNet would learn on AnimateDiff's linear betas and be sampled on scaled-linear ones.
    identity = fresh_adapter(comps.unet, comps.scheduler_config["beta_schedule"])
    identity = save_motion_adapter_original(identity, cache / "mm_identity.safetensors")
    common = dict(stage="controlnet", model=str(model), data=str(data), resolution=IMAGE_SIZE, cpu=True,
                  control_suffix=suffix, save_every=250, keep_checkpoints=1, resume="auto")  # fmt: skip
    phases = [
        (f"{kind}-image", CN_IMAGE, init, identity),
        (f"{kind}-video", CN_MOTION, None, shipped / MOTION_MODULE_FILE),
    ]
    previous = None
    for name, args, start, motion in phases:
        cfg = TrainConfig(out=str(cache / name), controlnet=str(start or previous), motion_module=str(motion),
                          **common, **args)  # fmt: skip
        if quick:
            cfg.max_steps, cfg.save_every, cfg.resume, cfg.frames, cfg.batch_size = (
                2,
                0,
                None,
                min(cfg.frames, 4),
                1,
            )
            cfg.out = str(cache / f"{name}-quick")
        previous = train(cfg).final / "video_controlnet"
    # Only the Video ControlNet folder ships (its image ControlNet is `without_motion()`): a second copy of
    # the ControlNet as a single file would not fit the world's 40 MB budget.
    save_video_controlnet(load_video_controlnet(previous).half(), shipped / out_dir)


CLIP_VISION_FILE = "clip_vision_dance.safetensors"  # transformers layout, fp16 (dance_guider.py)
GUIDER_FILES = {
    "face": "ip_adapter_dance_face.safetensors",
    "clothes": "ip_adapter_dance_clothes.safetensors",
}
GUIDER_CLIPS, GUIDER_SEED = 3000, 4  # one frame per clip, with the clip's reference crops
# IP-Adapter's recipe (Ye et al. 2023, Sec. 4.1.2: AdamW lr 1e-4, weight decay 0.01, 5 % text / image /
# both dropped) on the plain variant with 4 tokens (the encoder is trained on image_embeds); frozen dance
# U-Net frame by frame at 128 px.
GUIDER_ARGS = dict(adapter_variant="plain", num_tokens=4, batch_size=8, max_steps=1000, lr=1e-4)


def stage_guider(shipped: Path, cache: Path, quick: bool) -> None:
    """The dance CLIP vision encoder (once), then the face and clothes IP-Adapters on content samples."""
    from ..common.image_prompt import save_ip_adapter
    from ..dreamoving.train import TrainConfig, train
    from . import dance_guider as dg

    cache.mkdir(parents=True, exist_ok=True)
    encoder_file = shipped / CLIP_VISION_FILE
    if quick or not encoder_file.is_file():  # trained once; the adapters are trained on its features
        kw = dict(clips=8, steps=2, batch_size=4) if quick else {}
        encoder, heads, settings = dg.train_encoder(progress=_progress(), **kw)
        report = dg.probe_accuracy(encoder, heads, clips=4 if quick else 300)
        log.info("dance CLIP vision held-out: %s", report)
        dg.save_encoder(encoder, encoder_file)
        (shipped / CLIP_VISION_FILE).with_suffix(".json").write_text(
            json.dumps({"training": settings, "heldout": report}, indent=2) + "\n"
        )
    n = 4 if quick else GUIDER_CLIPS
    data = dg.write_content_samples(cache / f"content-{n}", n, GUIDER_SEED, IMAGE_SIZE)
    cfg = TrainConfig(stage="guider", model=str(dance_model_folder(shipped, cache / "dance_sd")), data=str(data),
                      out=str(cache / ("guider-quick" if quick else "guider")), clip_vision=str(encoder_file),
                      resolution=IMAGE_SIZE, cpu=True, save_every=250, keep_checkpoints=1, resume="auto",
                      **GUIDER_ARGS)  # fmt: skip
    if quick:
        cfg.max_steps, cfg.save_every, cfg.resume, cfg.batch_size = 2, 0, None, 2
    adapters = train(cfg).modules
    for name, file in GUIDER_FILES.items():
        save_ip_adapter(adapters[name].half(), shipped / file)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stages(p, STAGES)
    p.add_argument("--weights", default=str(SHIPPED), help="output folder (default: the shipped one)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "comfyui-papernodes" / "dance_world"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="a few steps per stage: checks the plumbing only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    stages = chosen_stages(p, args.stages, STAGES)
    return report_user_errors(lambda: _run(stages, Path(args.weights), Path(args.cache), args.quick))


def _run(stages: list[str], shipped: Path, cache: Path, quick: bool) -> None:
    record = shipped / "training_times.json"
    times = {}
    for stage in (s for s in STAGES if s in stages):
        t0 = time.time()
        log.info("stage %s ...", stage)
        globals()[f"stage_{stage}"](shipped, cache, quick)
        times[stage] = round(time.time() - t0, 1)
        log.info("stage %s done in %.0f s", stage, times[stage])
    if not quick:  # read again: stages run side by side in other processes may have written meanwhile
        record.parent.mkdir(parents=True, exist_ok=True)
        now = json.loads(record.read_text()) if record.is_file() else {}
        record.write_text(json.dumps({**now, **times}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
