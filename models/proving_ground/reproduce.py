"""One command that reproduces every shipped proving-ground model from seeds.

    python -m models.proving_ground.reproduce                  # all stages, into models/proving_ground/weights
    python -m models.proving_ground.reproduce --stages lcm     # one stage (needs the earlier ones' outputs)

Stages, in order: vae -> teacher (CLIP text encoder + U-Net, jointly) -> colorize (our colorization
fine-tuning command) -> lcm (latent-consistency distillation) -> swiftbrush (our SwiftBrush trainer, text
prompts only) -> decoder (a decoder-only phase on the VAE: the latent space, and so every model above, is
unchanged; it came last in the models' history). Each stage writes float16 safetensors + diffusers
configs; later stages read earlier outputs from the weights folder, exactly as users would load them.
Run from the repo root in the pack's venv.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

if (
    __name__ == "__main__"
):  # `python -m models.proving_ground.reproduce`: run inside the pack (the shared bootstrap)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import add_stages, chosen_stages, report_user_errors
from ..common.text import encode_prompts
from . import zoo

log = logging.getLogger("proving_ground.reproduce")
STAGES = ("vae", "teacher", "colorize", "lcm", "swiftbrush", "decoder")


def _progress(every: int = 50):
    def report(stage: str, step: int, total: int, loss: float, elapsed: float) -> None:
        if step % every == 0 or step == total:
            log.info("%s %d/%d loss %.4f  %.0f s", stage, step, total, loss, elapsed)

    return report


def _run_trainer(main, argv: list[str]) -> None:
    """A trainer's command line inside this run; its error (already reported in one line) stops the run."""
    code = main(argv)
    if code:
        raise SystemExit(code)


def _save_fp16(module: torch.nn.Module, folder: Path) -> None:
    """float16 safetensors (half the bytes; the loaders cast back to float32). The config keeps no
    `_name_or_path` (the training machine's path of the module's source folder). Old files are unlinked
    first: assembled pipelines hard-link the shipped files, and writing through a link would change them."""
    for name in ("config.json", "*.safetensors"):  # what save_pretrained writes
        for old in Path(folder).glob(name):
            old.unlink()
    module.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    module.to(torch.float32)
    config = Path(folder) / "config.json"
    data = json.loads(config.read_text())
    if data.pop("_name_or_path", None) is not None:
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def stage_vae(weights: Path, cache: Path, quick: bool, start_phase: int = 0) -> None:
    from diffusers import AutoencoderKL

    from .train_base import VAEPhase, VAESettings, train_vae

    settings = VAESettings(
        phases=(VAEPhase(20, 64, 2, 1e-4, True), VAEPhase(5, 128, 1, 1e-4, False)), images=64
    )
    settings = settings if quick else VAESettings()
    init = None
    if start_phase:  # continue from the weights the earlier phases wrote
        init = AutoencoderKL.from_pretrained(zoo.base_dir(weights) / "vae", torch_dtype=torch.float32)
    vae = train_vae(settings, cache_dir=cache, progress=_progress(), init=init, start_phase=start_phase)
    _save_fp16(vae, zoo.base_dir(weights) / "vae")


def stage_decoder(weights: Path, cache: Path, quick: bool) -> None:
    """The VAE's decoder trained further on whole scenes (`train_base.DecoderSettings`); encoder kept."""
    from diffusers import AutoencoderKL

    from .train_base import DecoderSettings, train_decoder

    settings = (
        DecoderSettings(steps=4, batch_size=2, images=16, noisy_steps=2) if quick else DecoderSettings()
    )
    folder = zoo.base_dir(weights) / "vae"
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)
    _save_fp16(train_decoder(vae, settings, cache_dir=cache, progress=_progress()), folder)


def stage_teacher(weights: Path, cache: Path, quick: bool, start_phase: int = 0) -> None:
    """TEACHER_PHASES in order; each saves the folder, so a run can resume at a phase from the saved one."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from ..common.loading import SDComponents, load_tokenizer, shipped_scheduler_config
    from ..common.saving import save_diffusers_folder
    from .text_pretrain import TextPretrainSettings
    from .train_base import TEACHER_PHASES, train_teacher

    base = zoo.base_dir(weights)
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).eval().requires_grad_(False)
    phases = TEACHER_PHASES
    if quick:
        tiny_text = TextPretrainSettings(steps=2, batch_size=8)
        phases = tuple(
            replace(p, steps=20, images=64, batch_size=4, text_pretrain=p.text_pretrain and tiny_text)
            for p in phases
        )
    init = None
    if start_phase:
        init = (CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32),
                UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32))  # fmt: skip
    for k, settings in enumerate(phases):
        if k < start_phase:
            continue
        text_encoder, unet = train_teacher(vae, settings, cache_dir=cache, progress=_progress(), init=init)
        comps = SDComponents(
            unet, vae, text_encoder, load_tokenizer(), shipped_scheduler_config(), source="world"
        )
        for m in (unet, vae, text_encoder):
            m.to(torch.float16)
        save_diffusers_folder(comps, base)
        for m in (unet, vae, text_encoder):
            m.to(torch.float32)
        init = (text_encoder, unet)


def _export_unet(unet_folder: Path, dest: Path) -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(unet_folder, torch_dtype=torch.float32)
    _save_fp16(unet, dest)


def stage_colorize(weights: Path, cache: Path, quick: bool) -> None:
    """Our colorization fine-tuning command on world scenes (InstructPix2Pix init from the teacher)."""
    from PIL import Image

    from ..colorize import train as colorize_train
    from .train_base import world_images

    # Scenes with the world's color priors (world.PALETTES, issue 19): from luminance alone red, purple and
    # blue are nearly equal, so only a prior (each shape and texture has a typical color) makes color learnable.
    n = 64 if quick else 3000
    images, _ = world_images(n, seed=2, cache_dir=cache, palette="prior")
    data = cache / f"colorize-data-prior-{n}"
    if not (data / f"{n - 1:05d}.png").is_file():
        data.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            Image.fromarray(im).save(data / f"{i:05d}.png")
    out = cache / ("colorize-run-quick" if quick else "colorize-run")
    # 600 steps at 1e-4 left the colors near random (first shipped colorizer); 1500 steps at 2e-4 learnt no color
    # from the uniform palette (-0.54 dB vs the init); with the prior palette 1000 steps gave +2.83 dB over the
    # init but stayed 0.3 dB under the grey input (it had learnt the shapes' typical colors, not yet the
    # textures'); 3000 steps (issue 19). Resumable: checkpoints every 500 steps.
    steps = 4 if quick else 3000
    argv = [
        "--model", str(zoo.base_dir(weights)), "--data", str(data), "--out", str(out),
        "--resolution", "128", "--lr", "2e-4", "--batch-size", "8", "--grad-accum", "1",
        "--max-steps", str(steps), "--warmup-steps", "50", "--ema-decay", "0.995", "--seed", "0",
        "--save-every", "0" if quick else "500", "--random-flip", "--resume", "auto",
    ]  # fmt: skip
    _run_trainer(colorize_train.main, argv)
    _export_unet(out / "final" / "unet", zoo.derived_unet_dir("colorize", weights))


def stage_lcm(weights: Path, cache: Path, quick: bool) -> None:
    from ..common.loading import load_components
    from .train_base import (
        TEACHER_PHASES,
        PosteriorLatents,
        scaled_linear_alphas_cumprod,
        teacher_scenes,
        to_pixels,
    )
    from .train_lcm import LCMSettings, distill_lcm

    comps = load_components(zoo.base_dir(weights))
    # The teacher's last phase's training scenes (seed 1); their posteriors are encoded again here (~3 min on
    # 2 cores): a stage reads only the shipped weights, never another stage's in-memory state.
    final = TEACHER_PHASES[-1]
    images, captions = teacher_scenes(replace(final, images=64) if quick else final, cache)
    latents_fn = PosteriorLatents(comps.vae, to_pixels(images))

    def encode_text(texts: list[str]) -> torch.Tensor:
        return encode_prompts(comps, texts, "cpu")

    settings = LCMSettings(steps=3, batch_size=2) if quick else LCMSettings()
    student = distill_lcm(
        comps.unet, encode_text, latents_fn, captions, settings, scaled_linear_alphas_cumprod(), _progress()
    )
    dest = zoo.derived_unet_dir("lcm", weights)
    _save_fp16(student, dest)
    sched = dict(comps.scheduler_config)
    sched.update(
        _class_name="LCMScheduler", original_inference_steps=settings.solver_steps, timestep_scaling=10.0
    )
    zoo.write_fresh(dest / "scheduler_config.json", json.dumps(sched, indent=2))  # never through a hard link


def stage_swiftbrush(weights: Path, cache: Path, quick: bool) -> None:
    """Our SwiftBrush trainer: variational score distillation from the teacher, captions only, no images."""
    from ..swiftbrush import train as swiftbrush_train
    from .train_base import TEACHER_PHASES, teacher_captions

    final = TEACHER_PHASES[-1]  # the teacher's last distribution, another seed
    captions = teacher_captions(replace(final, images=64) if quick else final, seed=3)
    prompts = cache / "swiftbrush-prompts.txt"
    prompts.write_text("\n".join(sorted(set(captions))) + "\n")
    out = cache / ("swiftbrush-run-quick" if quick else "swiftbrush-run")
    # 300 steps until 2026-12-06; world-FID 2 024 -> 1 565 at 2 100 (docs/proving_ground.md). Since
    # 2026-12-07 the student's EMA is on (the paper's; it was off, a leftover of the 300-step schedule) and
    # guidance is 2, not the paper's 4.5 (SD at 512 px): world-FID 1 304 -> 1 030 (EMA) -> 746 (and guidance 2)
    # at 2 100 steps, measured at three snapshots each (docs/proving_ground.md)
    steps = 3 if quick else 2100
    argv = [
        "--teacher", str(zoo.base_dir(weights)), "--prompts", str(prompts), "--out", str(out),
        "--resolution", "128", "--batch-size", "8", "--max-steps", str(steps),
        "--student-lr", "2e-5", "--lora-lr", "1e-3", "--guidance", "2", "--lora-rank", "16",
        "--lora-alpha", "16", "--ema-decay", "0.999", "--save-every", "0", "--preview-every", "0",
        "--seed", "0", "--cpu",
    ]  # fmt: skip
    _run_trainer(swiftbrush_train.main, argv)
    _export_unet(out / "final" / "unet", zoo.derived_unet_dir("swiftbrush", weights))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stages(p, STAGES)
    p.add_argument("--weights", default=str(zoo.WEIGHTS_DIR), help="output folder (default: the shipped one)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "comfyui-papernodes" / "proving_ground"))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--vae-start-phase", type=int, default=0, help="resume the VAE at this phase (from saved weights)"
    )
    p.add_argument(
        "--teacher-start-phase",
        type=int,
        default=0,
        help="resume the teacher at this phase (from saved weights)",
    )
    p.add_argument("--quick", action="store_true", help="a few steps per stage: checks the plumbing only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    stages = chosen_stages(p, args.stages, STAGES)
    return report_user_errors(lambda: _run_stages(stages, args))


def _run_stages(stages: list[str], args: argparse.Namespace) -> None:
    weights, cache = Path(args.weights), Path(args.cache)
    record = weights / "training_times.json"
    old = json.loads(record.read_text()) if record.is_file() and not args.quick else {}
    start_phase = {"vae": args.vae_start_phase, "teacher": args.teacher_start_phase}
    times = {}
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.time()
        log.info("stage %s ...", stage)
        extra = {"start_phase": start_phase[stage]} if stage in start_phase else {}
        globals()[f"stage_{stage}"](weights, cache, args.quick, **extra)
        times[stage] = round(time.time() - t0, 1)
        log.info("stage %s done in %.0f s", stage, times[stage])
        if start_phase.get(stage):
            # resumed: the earlier phases' time is the recorded one
            times[stage] = round(times[stage] + old.get(stage, 0.0), 1)
    # read again: stages run side by side in other processes may have written meanwhile
    now = json.loads(record.read_text()) if record.is_file() and not args.quick else {}
    record.write_text(json.dumps({**now, **times}, indent=2))
