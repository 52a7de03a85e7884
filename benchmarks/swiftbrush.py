"""SwiftBrush one-step student vs the teacher's own 25-step classifier-free-guided sampler, in one run.

Same model (the student's own weights serve as "teacher" unless --teacher is given), same size, same
prompts. Per image: wall time end to end (text encoding, U-Net, VAE decode) and U-Net sample evaluations
(rows through the U-Net, counted by a hook: the student must make exactly 1, the teacher 2 x 25 = 50).
Teacher sampler: diffusers' StableDiffusionPipeline with the model's own scheduler class, 25 steps,
guidance 7.5 (its defaults besides the step count).

    python benchmarks/swiftbrush.py [--model STUDENT] [--teacher TEACHER] [--size 64] [--json PATH]

Without --model it uses the pack's tiny seeded model at 64x64 (plumbing-scale numbers: on the tiny model
the VAE decode and text encoder are a large share of the time, so the ratio is lower than on SD).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()

from papernodes.models.common import loading, tiny  # noqa: E402
from papernodes.models.common.schedulers import scheduler_of_class  # noqa: E402
from papernodes.models.swiftbrush.sampler import SwiftBrushPipeline  # noqa: E402

PROMPTS = [
    "a photograph of a red fox in the snow",
    "a watercolor painting of a lighthouse at dusk",
    "a bowl of ramen on a wooden table",
    "an astronaut riding a horse on the moon",
]


class RowCounter:
    """Counts U-Net calls and rows (sample evaluations) and the time spent inside the U-Net, by hooks."""

    def __init__(self, unet):
        self.reset()
        self.handles = [
            unet.register_forward_pre_hook(self._pre, with_kwargs=True),
            unet.register_forward_hook(self._post),
        ]

    def _pre(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.calls += 1
        self.rows += sample.shape[0]
        _sync(sample.device)
        self._t0 = time.perf_counter()

    def _post(self, module, args, output):
        _sync(next(module.parameters()).device)
        self.seconds += time.perf_counter() - self._t0

    def reset(self):
        self.calls = self.rows = 0
        self.seconds = 0.0

    def remove(self):
        for h in self.handles:
            h.remove()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def teacher_pipeline(comps):
    from diffusers import StableDiffusionPipeline

    cfg = comps.scheduler_config
    scheduler = scheduler_of_class(cfg.get("_class_name", "DDIMScheduler"), cfg)
    pipe = StableDiffusionPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=comps.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_per_image(run, prompts, repeats, counter) -> dict:
    run(prompts[0], 0)  # warm-up (allocations, lazy init)
    counter.reset()
    times = []
    for r in range(repeats):
        for i, p in enumerate(prompts):
            t0 = time.perf_counter()
            run(p, 1000 * r + i)
            times.append(time.perf_counter() - t0)
    n = len(times)
    return {
        "seconds_per_image": statistics.mean(times),
        "seconds_min": min(times),
        "images": n,
        "unet_seconds_per_image": counter.seconds / n,
        "unet_calls_per_image": counter.calls / n,
        "unet_evaluations_per_image": counter.rows / n,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default=None, help="student: diffusers folder or single file (default: tiny model)"
    )
    p.add_argument("--teacher", default=None, help="teacher (default: the same weights as --model)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 gives stable numbers on a shared 2-core machine; 0: torch's default)",
    )
    p.add_argument("--json", default=None, help="default benchmarks/results/swiftbrush-<device>.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    student = loading.load_components(args.model) if args.model else tiny.build_tiny_components(seed=2)
    teacher = loading.load_components(args.teacher) if args.teacher else student
    for m in {id(x): x for x in student.modules() + teacher.modules()}.values():
        m.to(device)

    sb = SwiftBrushPipeline(student)
    sd = teacher_pipeline(teacher)
    rows = {}
    counter = RowCounter(student.unet)
    rows["SwiftBrush student (1 step)"] = time_per_image(
        lambda prompt, seed: sb(prompt, seed=seed, height=args.size, width=args.size, device=device),
        PROMPTS,
        args.repeats,
        counter,
    )
    counter.remove()
    counter = RowCounter(teacher.unet)

    def run_teacher(prompt, seed):
        gen = torch.Generator("cpu").manual_seed(seed)
        return sd(
            prompt,
            height=args.size,
            width=args.size,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=gen,
            output_type="np",
        ).images

    rows[f"teacher ({args.steps} steps, CFG {args.guidance})"] = time_per_image(
        run_teacher, PROMPTS, args.repeats, counter
    )
    counter.remove()

    (s_name, s), (t_name, t) = rows.items()
    speedup = t["seconds_per_image"] / s["seconds_per_image"]
    unet_speedup = t["unet_seconds_per_image"] / s["unet_seconds_per_image"]
    result = {
        "model": args.model or "tiny",
        "teacher": args.teacher or args.model or "tiny",
        "size": args.size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "prompts": PROMPTS,
        "rows": rows,
        "speedup_wall_time": speedup,
        "speedup_unet_time": unet_speedup,
        "unet_evaluation_ratio": t["unet_evaluations_per_image"] / s["unet_evaluations_per_image"],
    }
    print(f"{'method':38s} {'U-Net evals/img':>16s} {'s/img':>9s} {'min s':>9s} {'U-Net s/img':>12s}")
    for name, r in rows.items():
        print(
            f"{name:38s} {r['unet_evaluations_per_image']:16.1f} {r['seconds_per_image']:9.4f} "
            f"{r['seconds_min']:9.4f} {r['unet_seconds_per_image']:12.4f}"
        )
    print(
        f"student: {speedup:.1f}x less wall time per image ({unet_speedup:.1f}x less U-Net time), "
        f"{result['unet_evaluation_ratio']:.0f}x fewer U-Net evaluations"
    )
    out = (
        Path(args.json)
        if args.json
        else REPO_ROOT / "benchmarks" / "results" / f"swiftbrush-{device.type}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
