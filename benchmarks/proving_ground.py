"""Measured effects of the image methods on the proving-ground models (issue "Proving ground", section 4).

    python benchmarks/proving_ground.py                       # every section, default sizes
    python benchmarks/proving_ground.py --sections teacher,swiftbrush --samples 200

Sections (each compares our path with its baseline on the same models, same prompts, same seeds):
- teacher:    world-FID and prompt accuracy of the text-to-image teacher, 25 DDIM steps with CFG.
- swiftbrush: the one-step student vs the teacher at 25 steps and the teacher forced to 1 step.
- infedit:    edit accuracy, PSNR outside the edited object vs the ground-truth target scene, and time,
              on world edit pairs; against DDIM inversion + Prompt-to-Prompt on the teacher. Rows `ours`
              (our first choices), `official` (the official code's three choices), or one official
              choice on top of ours (`swap`, `position`, `edit_then_layout`); `--infedit-blend words`
              adds blend words (see `blend_words`).
- colorize:   PSNR/SSIM against ground truth: trained colorizer with and without luminance lock, and the
              untrained InstructPix2Pix init (the teacher with the zero-initialised 8-channel conv_in).
- binding:    the teacher's colour binding: the first group's colour on held-out captions with one group vs
              two groups of different colours, and how often it takes the other group's colour instead.
- diagnose:   VAE PSNR, the teacher's clean-latent error by timestep and its caption sensitivity (the
              numbers behind the README's explanation of the missed targets).
World-FID compares generated images with the same number of held-out scenes (classifier features).
Results go to benchmarks/results/proving_ground-cpu.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false"}.items():  # fmt: skip
    os.environ[_key] = _value  # local files only (as the tests run)
sys.path.insert(0, str(REPO / "scripts"))
import papernodes_bootstrap  # noqa: E402  (the one bootstrap: the checkout as the package `papernodes`)

papernodes_bootstrap.register()
from papernodes.models.colorize.metrics import image_metrics  # noqa: E402
from papernodes.models.colorize.pipeline import ColorizePipeline, ColorizeSettings  # noqa: E402
from papernodes.models.colorize.train import expand_conv_in_for_ip2p  # noqa: E402
from papernodes.models.common.loading import SDComponents, load_components  # noqa: E402
from papernodes.models.common.schedulers import make_scheduler, scheduler_of_class  # noqa: E402
from papernodes.models.infedit.pipeline import OFFICIAL_CHOICES, PRESETS, InfEditPipeline  # noqa: E402
from papernodes.models.proving_ground import classifier as pg_classifier  # noqa: E402
from papernodes.models.proving_ground import zoo  # noqa: E402
from papernodes.models.proving_ground.train_base import scaled_linear_alphas_cumprod, tokenize  # noqa: E402
from papernodes.models.proving_ground.world import (  # noqa: E402
    SHAPES,
    WorldDataset,
    caption,
    edit_pair,
    grayscale,
    object_coverage,
    render,
    sample_scene,
    scene_rng,
)
from papernodes.models.swiftbrush.sampler import SwiftBrushPipeline  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from infedit import ddim_inversion_p2p  # noqa: E402
from swiftbrush import teacher_pipeline  # noqa: E402

SECTIONS = ("teacher", "swiftbrush", "infedit", "colorize", "binding", "diagnose")
WEIGHTS = zoo.WEIGHTS_DIR  # --weights overrides
HELDOUT_SEED = 7  # held-out scenes for prompts, references and edits (the classifier's eval seed is 0)


def heldout(n: int, start: int = 0, layout: str = "full", palette: str = "uniform"):
    """Held-out scenes start..start+n of a layout and palette: (scenes, uint8 images, captions)."""
    ds = WorldDataset(start + n, seed=HELDOUT_SEED, split="heldout", layout=layout, palette=palette)
    scenes = [ds.scene(i) for i in range(start, start + n)]
    return scenes, np.stack([render(s) for s in scenes]), [caption(s) for s in scenes]


def derived(kind: str, base: SDComponents, scheduler_config: dict | None = None) -> SDComponents:
    """The base pipeline with the `kind` U-Net of the zoo (colorize, lcm, swiftbrush)."""
    unet = _unet(zoo.derived_unet_dir(kind, WEIGHTS))
    return SDComponents(unet, base.vae, base.text_encoder, base.tokenizer,
                        scheduler_config or base.scheduler_config, source=f"world {kind}")  # fmt: skip


def to_image(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float().div(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def score(images: np.ndarray, captions: list[str], reference: np.ndarray, clf) -> dict:
    report = pg_classifier.caption_report(images, captions, clf)
    return {
        "world_fid": round(pg_classifier.world_fid(images, reference, clf), 2),
        "prompt_accuracy": round(report["prompt_accuracy"], 4),
        "attribute_accuracy": {k: round(v, 4) for k, v in report["attribute_accuracy"].items()},
    }


def teacher_images(
    comps: SDComponents, captions: list[str], steps: int, guidance: float, batch: int = 25, scheduler=None
):
    """25-image batches, image i seeded with i. DDIM with SD1.5's settings unless `scheduler` is given:
    diffusers' own DDIM defaults (clip_sample=True) clip the predicted clean latent to [-1, 1], which wrecks
    unit-variance latents (the diagnose section measures it)."""
    pipe = teacher_pipeline(comps)
    pipe.scheduler = scheduler or make_scheduler("ddim", comps.scheduler_config)
    out = []
    for i in range(0, len(captions), batch):
        g = [torch.Generator().manual_seed(i + k) for k in range(len(captions[i : i + batch]))]
        r = pipe(captions[i : i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=g,
                 height=128, width=128, output_type="np")  # fmt: skip
        out.append((r.images * 255).round().astype(np.uint8))
    return np.concatenate(out)


# The teacher's rows: captions of its training distribution ("focus" scenes, the target row) and
# of the full grammar (held-out generalisation). SwiftBrush distils and is measured on the focus captions.
LAYOUT_NAMES = {"focus": "focus captions (training distribution)", "full": "full-grammar captions"}


def teacher_key(args, layout: str = "focus") -> str:
    return f"teacher, 25 DDIM steps, CFG {args.guidance:.1f}, {LAYOUT_NAMES[layout]}"


def section_teacher(args, clf, results):
    comps = load_components(zoo.base_dir(WEIGHTS))
    for layout, name in LAYOUT_NAMES.items():
        _, reference, captions = heldout(args.samples, layout=layout)
        t0 = time.perf_counter()
        imgs = teacher_images(comps, captions, 25, args.guidance)
        row = score(imgs, captions, reference, clf)
        row["seconds_per_image"] = round((time.perf_counter() - t0) / len(captions), 4)
        results[teacher_key(args, layout)] = row
        _, other, other_captions = heldout(args.samples, start=args.samples, layout=layout)
        real = score(other, other_captions, reference, clf)  # real scenes vs real scenes
        results[f"held-out scenes (reference floor), {name}"] = real
        with torch.no_grad():  # what the generators can reach at best: real scenes through the VAE
            x = to_image(other).permute(0, 3, 1, 2) * 2 - 1
            rec = torch.cat([comps.vae.decode(comps.vae.encode(x[i : i + 50]).latent_dist.mode()).sample
                             for i in range(0, len(x), 50)])  # fmt: skip
        vae_rows = to_uint8((rec.permute(0, 2, 3, 1) + 1) / 2)
        results[f"held-out scenes through the VAE (decoder ceiling), {name}"] = score(
            vae_rows, other_captions, reference, clf
        )


def section_swiftbrush(args, clf, results):
    _, reference, captions = heldout(args.samples, layout="focus")
    base = load_components(zoo.base_dir(WEIGHTS))
    # The 25-step teacher row is the teacher section's (same prompts and seeds): run that section first.
    t0 = time.perf_counter()
    one = teacher_images(base, captions, 1, args.guidance)
    results["teacher forced to 1 step"] = score(one, captions, reference, clf)
    results["teacher forced to 1 step"]["seconds_per_image"] = round(
        (time.perf_counter() - t0) / len(captions), 4
    )
    pipe = SwiftBrushPipeline(derived("swiftbrush", base))
    t0 = time.perf_counter()
    imgs = []
    for i, c in enumerate(captions):
        imgs.append(to_uint8(pipe(c, seed=i, height=128, width=128).images))
    row = score(np.concatenate(imgs), captions, reference, clf)
    row["seconds_per_image"] = round((time.perf_counter() - t0) / len(captions), 4)
    results["SwiftBrush student, 1 step"] = row


def _unet(folder: Path):
    from diffusers import UNet2DConditionModel

    return (
        UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).eval().requires_grad_(False)
    )


def edit_pairs(n: int, start: int = 0):
    """World edit pairs start..start+n, cycling color / shape / background edits of the main object or
    background (pair i is the same whatever the range, so runs over split ranges add up)."""
    kinds = ("color", "shape", "background")
    pairs = []
    for i in range(start, start + n):
        rng = scene_rng(HELDOUT_SEED + 1, "heldout", i)
        scene = sample_scene(rng)
        edited, src, tgt, index = edit_pair(scene, rng, kinds[i % 3])
        keep = np.ones((128, 128), bool)
        if index is not None:  # outside the edited object, in both scenes
            keep &= object_coverage(scene)[index] < 0.01
            keep &= object_coverage(edited)[index] < 0.01
        else:  # background edits: the objects must stay
            keep = object_coverage(scene).max(axis=0) > 0.99
        pairs.append((kinds[i % 3], render(scene), render(edited), src, tgt, edited, keep))
    return pairs


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask] / 255.0
    mse = max(float((d**2).mean()), 1e-10)
    return 10 * np.log10(1.0 / mse)


def _edit_scores(outputs, pairs, clf) -> dict:
    preds = pg_classifier.classify(np.stack(outputs), clf)
    hits, psnrs, by_kind = [], [], {}
    for k, (kind, _, target_img, _, _, edited, keep) in enumerate(pairs):
        want = edited.labels()
        field = {"color": "color", "shape": "shape", "background": "bg_color"}[kind]
        hits.append(preds[field][k] == want[field])
        by_kind.setdefault(kind, []).append(hits[-1])
        psnrs.append(masked_psnr(outputs[k], target_img, keep))
    return {
        "edit_accuracy": round(float(np.mean(hits)), 4),
        "psnr_outside_edit": round(float(np.mean(psnrs)), 2),
        # the edit accuracy of each kind of edit (color / shape / background: one pair in three each)
        "edit_accuracy_by_kind": {kind: round(float(np.mean(h)), 4) for kind, h in by_kind.items()},
    }


OUR_CHOICES = dict(replaced_words="new", pad_mapping="pads", shared_blend_words="keep_source")
INFEDIT_ROWS = {
    "ours": OUR_CHOICES,
    "official": OFFICIAL_CHOICES,
    "swap": {**OUR_CHOICES, "replaced_words": "swap"},
    "position": {**OUR_CHOICES, "pad_mapping": "position"},
    "edit_then_layout": {**OUR_CHOICES, "shared_blend_words": "edit_then_layout"},
}


def blend_words(kind: str, src: str, tgt: str) -> tuple[str, str]:
    """(source, target) blend words of a world edit, as the official handbook advises.

    Object color edit "black star" -> "green star": target "green star", source "star" (a word in both
    lists: edit the star, keep its layout). Shape edit: target = the new shape word. Background edit:
    source = the objects' shape nouns (keep them). ("", "") when the captions differ in length.
    """
    a, b = [w.strip(",") for w in src.split()], [w.strip(",") for w in tgt.split()]
    if len(a) != len(b):
        return "", ""
    changed = [k for k in range(len(b)) if a[k] != b[k]]
    nouns = [w for w in a if any(w in (s, s + "s", s + "es") for s in SHAPES)]
    if kind == "background":
        return " ".join(dict.fromkeys(nouns)), ""
    if kind == "color" and changed and changed[-1] + 1 < len(b):
        noun = b[changed[-1] + 1]
        return noun, " ".join([b[k] for k in changed] + [noun])
    return "", " ".join(b[k] for k in changed)


def section_infedit(args, clf, results):
    pairs = edit_pairs(args.edits, args.edit_start)
    base = load_components(zoo.base_dir(WEIGHTS))
    rows = [r.strip() for r in args.infedit_rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in INFEDIT_ROWS and r != "baseline"]
    if unknown:
        raise SystemExit(f"unknown --infedit-rows {unknown}; known: {', '.join(INFEDIT_ROWS)}, baseline")
    ours = [r for r in rows if r in INFEDIT_ROWS]
    if ours:
        sched = json.loads((zoo.derived_unet_dir("lcm", WEIGHTS) / "scheduler_config.json").read_text())
        pipe = InfEditPipeline(derived("lcm", base, sched))
        for name in ours:
            _infedit_ours(pipe, name, args.infedit_blend, pairs, clf, results)
    if "baseline" in rows:
        _infedit_baseline(base, pairs, args.guidance, clf, results)


def _infedit_ours(pipe, name, blend, pairs, clf, results):
    settings = dataclasses.replace(PRESETS["interactive"], **INFEDIT_ROWS[name])
    outs, t0 = [], time.perf_counter()
    for kind, src_img, _, src, tgt, _, _ in pairs:
        words = blend_words(kind, src, tgt) if blend == "words" else ("", "")
        s = dataclasses.replace(settings, source_blend_words=words[0], target_blend_words=words[1])
        r = pipe(to_image(src_img)[None], src, [tgt], s)
        outs.append(to_uint8(r.edited)[0])
    row = _edit_scores(outs, pairs, clf)
    row["seconds_per_edit"] = round((time.perf_counter() - t0) / len(pairs), 3)
    key = "InfEdit (LCM student, 15 steps)"  # the first row's name, kept for earlier results
    if (name, blend) != ("ours", "none"):
        key += f" [{name} choices, blend words: {blend}]"
    results[key] = row


def _infedit_baseline(base, pairs, guidance, clf, results):
    outs, t0 = [], time.perf_counter()
    for _, src_img, _, src, tgt, _, _ in pairs:
        with torch.no_grad():
            _, lat = ddim_inversion_p2p(base, to_image(src_img)[None], src, tgt, steps=50, guidance=guidance)
            img = base.vae.decode(lat[1:] / base.vae.config.scaling_factor).sample
        outs.append(to_uint8((img.permute(0, 2, 3, 1) + 1) / 2)[0])
    row = _edit_scores(outs, pairs, clf)
    row["seconds_per_edit"] = round((time.perf_counter() - t0) / len(pairs), 3)
    results["DDIM inversion 50 + Prompt-to-Prompt 50 (teacher)"] = row


def section_colorize(args, clf, results):
    """Held-out scenes with the world's color priors (the colorizer's training palette)."""
    _, reference, _ = heldout(args.colorize_images, palette="prior")
    images = to_image(reference)
    gray = to_image(np.stack([grayscale(r) for r in reference]))  # the colorizers' input, as an answer
    m = image_metrics(gray, images)
    results["grey input (no colorization)"] = {
        "psnr": round(m["mean_psnr"], 2),
        "ssim": round(m["mean_ssim"], 4),
    }
    base = load_components(zoo.base_dir(WEIGHTS))
    trained = derived("colorize", base)
    init_unet = expand_conv_in_for_ip2p(_unet(zoo.base_dir(WEIGHTS) / "unet"))
    untrained = SDComponents(init_unet, base.vae, base.text_encoder, base.tokenizer, base.scheduler_config)
    rows = {
        "trained colorizer, luminance lock": (trained, True),
        "trained colorizer, no lock": (trained, False),
        "untrained InstructPix2Pix init, luminance lock": (untrained, True),
        "untrained InstructPix2Pix init, no lock": (untrained, False),
    }
    for name, (comps, lock) in rows.items():
        settings = ColorizeSettings(steps=args.colorize_steps, keep_luminance=lock, seed=0)
        pipe, outs, t0 = ColorizePipeline(comps), [], time.perf_counter()
        for i in range(0, len(images), 10):
            outs.append(pipe(images[i : i + 10], settings))
        m = image_metrics(torch.cat(outs), images)
        results[name] = {
            "psnr": round(m["mean_psnr"], 2),
            "ssim": round(m["mean_ssim"], 4),
            "seconds_per_image": round((time.perf_counter() - t0) / len(images), 3),
        }


def binding_captions(n: int) -> dict[int, tuple[list[str], list[tuple[str, str | None]]]]:
    """Number of groups (1, 2) -> the first n held-out full-grammar captions with that many groups (two of
    different colours) and each caption's (first group's, other group's or None) colours."""
    ds = WorldDataset(20 * n, seed=HELDOUT_SEED, split="heldout")
    kinds: dict[int, tuple[list, list]] = {1: ([], []), 2: ([], [])}
    for i in range(20 * n):
        scene = ds.scene(i)
        groups = scene.groups()
        colors = (groups[0][1], groups[1][1] if len(groups) > 1 else None)
        if len(groups) in kinds and len(kinds[len(groups)][0]) < n and colors[0] != colors[1]:
            kinds[len(groups)][0].append(caption(scene))
            kinds[len(groups)][1].append(colors)
    return kinds


def section_binding(args, clf, results):
    """Why a colour edit next to another object can miss (the demo's black -> green star beside a red cross):
    attribute leakage between the caption's groups, measured on the teacher that every image model here
    distils or fine-tunes."""
    comps = load_components(zoo.base_dir(WEIGHTS))
    n = args.binding_captions
    for groups, (captions, colors) in binding_captions(n).items():
        imgs = teacher_images(comps, captions, 25, args.guidance)
        predicted = pg_classifier.classify(imgs, clf)["color"]
        shares = [
            round(float(np.mean([p == c[j] for p, c in zip(predicted, colors)])), 4) for j in range(groups)
        ]
        row = {"captions": len(captions), "first_group_color": shares[0]}
        if groups == 2:
            row["other_group_color"] = shares[1]
        results[
            f"teacher, 25 DDIM steps, CFG {args.guidance:.1f}, {groups} group{'s' if groups > 1 else ''}"
        ] = row


@torch.no_grad()
def section_diagnose(args, clf, results):
    """The numbers behind the README's "why": VAE reconstruction PSNR, the teacher's clean-latent error by
    timestep, and how much the true caption lowers its noise error against shuffled captions (t = 500)."""
    _, images, captions = heldout(16)
    comps = load_components(zoo.base_dir(WEIGHTS))
    x = to_image(images).permute(0, 3, 1, 2) * 2 - 1
    rec = comps.vae.decode(comps.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    results["VAE PSNR on 16 held-out scenes (dB)"] = round(
        10 * np.log10(4 / float((rec - x).pow(2).mean())), 2
    )
    z0 = comps.vae.encode(x).latent_dist.mode() * comps.vae.config.scaling_factor
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    ac = scaled_linear_alphas_cumprod()
    embed = lambda texts: comps.text_encoder(tokenize(comps.tokenizer, texts))[0]  # noqa: E731
    true, shuffled = embed(captions), embed(captions[1:] + captions[:1])
    results["latent variance (predicting the mean scores this)"] = round(float(z0.var()), 3)
    for t in (300, 600, 900, 999):
        a = ac[t]
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        eps = comps.unet(zt, torch.full((16,), t), true).sample
        x0 = (zt - (1 - a).sqrt() * eps) / a.sqrt()
        results[f"teacher x0 MSE at t={t}"] = round(float((x0 - z0).pow(2).mean()), 4)
    a = ac[500]
    zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
    err = [
        float((comps.unet(zt, torch.full((16,), 500), e).sample - noise).pow(2).mean())
        for e in (true, shuffled)
    ]
    results["teacher eps MSE, true / shuffled captions (t=500)"] = round(err[0] / err[1], 3)
    # The sampler bug that hid the teacher's colors: DDIM with diffusers' defaults (clip_sample=True).
    clipping = scheduler_of_class("DDIMScheduler", comps.scheduler_config)
    assert clipping.config.clip_sample
    for name, sched in (
        ("diffusers' DDIM defaults (clip_sample)", clipping),
        ("SD1.5's DDIM settings", None),
    ):
        imgs = teacher_images(comps, captions, 25, args.guidance, scheduler=sched)
        bg = pg_classifier.attribute_accuracy(imgs, captions, clf)["bg_color"]
        results[f"teacher background color accuracy, 16 captions, {name}"] = round(bg, 4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--samples", type=int, default=500, help="generated images per text-to-image row")
    p.add_argument("--edits", type=int, default=200, help="edit pairs for InfEdit and its baseline")
    p.add_argument(
        "--edit-start", type=int, default=0, help="first edit pair (to split runs; rows are means)"
    )
    p.add_argument(
        "--infedit-rows",
        default="ours,baseline",
        help=f"comma list of {', '.join(INFEDIT_ROWS)}, baseline (to split runs)",
    )
    p.add_argument(
        "--infedit-blend",
        default="none",
        choices=("none", "words"),
        help="InfEdit rows without blend words, or with the words of `blend_words`",
    )
    p.add_argument("--colorize-images", type=int, default=100)
    p.add_argument("--binding-captions", type=int, default=80, help="captions per row of the binding section")
    p.add_argument("--colorize-steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0, help="CFG of the teacher rows and the baseline")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "proving_ground-cpu.json"))
    p.add_argument("--weights", default=str(zoo.WEIGHTS_DIR), help="folder of the proving-ground models")
    args = p.parse_args(argv)
    global WEIGHTS
    WEIGHTS = Path(args.weights)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clf = pg_classifier.load_classifier()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for section in [s.strip() for s in args.sections.split(",") if s.strip()]:
        if section not in SECTIONS:
            p.error(f"unknown section {section!r}; known: {', '.join(SECTIONS)}")
        t0 = time.perf_counter()
        rows: dict = {}
        if section == "swiftbrush" and teacher_key(args) in results.get("teacher", {}):
            rows[teacher_key(args)] = results["teacher"][teacher_key(args)]  # same prompts and seeds
        globals()[f"section_{section}"](args, clf, rows)
        results[section] = rows
        results.setdefault("_meta", {})[section] = {"seconds": round(time.perf_counter() - t0, 1),
                                                    "args": vars(args)}  # fmt: skip
        print(f"== {section} ({time.perf_counter() - t0:.0f} s)")
        for k, v in rows.items():
            print(f"  {k}: {v}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
