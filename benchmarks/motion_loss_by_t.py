"""Held-out noise-prediction loss of the motion world's video model by timestep: the untrained (fresh)
motion module against trained motion files, on the same clips, noise and timesteps.

Why: a motion module that learned temporal structure should lower the loss where the layout of a clip is
decided (high noise); this shows at which timesteps a training run helped and where it hurt, which the
generated clips alone cannot say. Each motion file is applied on a fresh base (the world SD + a fresh module
on its own schedule), as `motion_reproduce` trains the base stage.

    python benchmarks/motion_loss_by_t.py --motion sliding [--clips 12] FILE [FILE ...]
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

from papernodes.models.common.animatediff import run_motion_unet  # noqa: E402
from papernodes.models.common.text import encode_prompts  # noqa: E402
from papernodes.models.common.training import make_noise_scheduler  # noqa: E402
from papernodes.models.motion_custom.data import ClipDataset  # noqa: E402
from papernodes.models.motion_custom.motion_file import load_motion, motions_applied  # noqa: E402
from papernodes.models.proving_ground import motion_reproduce as mr  # noqa: E402

TIMESTEPS = (100, 400, 700, 950)


def held_out_latents(model, motion: str, n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """VAE posterior means [n, C, F, h, w] (scaled) of `n` world clips of `motion`, and their captions."""
    ds = ClipDataset(mr.world_clips(n, seed, motions=(motion,)), mr.FRAMES, mr.SIZE, mr.SIZE, None)
    items = [ds[i] for i in range(n)]
    vae = model.vae
    with torch.no_grad():
        lat = [vae.encode(it["pixels"]).latent_dist.mean.permute(1, 0, 2, 3) for it in items]
    return torch.stack(lat) * vae.config.scaling_factor, [it["caption"] for it in items]


def loss_by_t(model, latents: torch.Tensor, captions: list[str], scheduler, seed: int) -> list[float]:
    """Mean eps MSE at each of TIMESTEPS with the model's motions applied (same noise for every model)."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    text = encode_prompts(model, captions, "cpu").float()
    out = []
    for t in TIMESTEPS:
        tt = torch.full((latents.shape[0],), t)
        with torch.no_grad(), motions_applied(model.unet, model.motions, check=False):
            pred = run_motion_unet(model.unet, scheduler.add_noise(latents, noise, tt), tt, text)
        out.append(round(float(((pred.float() - noise) ** 2).mean()), 5))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="motion files (.safetensors) trained on the fresh world base")
    p.add_argument("--motion", default="sliding", help="the world motion of the held-out clips")
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--seed", type=int, default=77, help="clip seed (training used 21 and 0)")
    p.add_argument("--json", help="write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fresh = mr.world_video_model()
    scheduler = make_noise_scheduler(fresh.scheduler_config)  # the trainer's own noising
    latents, captions = held_out_latents(fresh, args.motion, args.clips, args.seed)
    rows = {"untrained": loss_by_t(fresh, latents, captions, scheduler, args.seed)}
    for f in args.files:
        # with_motion shares the fresh U-Net; the motion is added only inside loss_by_t's motions_applied
        rows[f] = loss_by_t(fresh.with_motion(load_motion(f), 1.0), latents, captions, scheduler, args.seed)
    print(f"{'t':>50} " + " ".join(f"{t:>8}" for t in TIMESTEPS))
    for name, row in rows.items():
        print(f"{name[-50:]:>50} " + " ".join(f"{v:>8.4f}" for v in row))
    if args.json:
        Path(args.json).write_text(json.dumps({"motion": args.motion, "clips": args.clips, "seed": args.seed,
                                               "timesteps": TIMESTEPS, "loss": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
