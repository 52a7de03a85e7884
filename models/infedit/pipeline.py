"""InfEdit: inversion-free natural-language image editing (Xu et al. 2023, arXiv 2312.04965).

Per step, ONE batched U-Net call evaluates the source, every target and every layout branch (x2 for
classifier-free guidance); DDCM (`ddcm.py`) updates each target against the source, Unified Attention
Control (`control.py`) runs inside the U-Net through the pack's attention processor, and local blend
(`blend.py`) keeps unedited regions. Several target prompts for one image share the source branch:
with eta = 1 the source latent is a fresh noising of z0 that no target influences, so the shared run
equals separate runs (up to the float rounding of a larger batch); with eta < 1 each target runs on
its own (the source then follows it).

Defaults (paper / official demo, "interactive"): 15 LCM steps, source guidance 1, target guidance 2,
cross replace 0.7, self replace 0.3, thresh_e = thresh_m = 0.6, eta 1. Three choices where the official
code differs from our first reading are options (`replaced_words`, `pad_mapping` in `align.py`,
`shared_blend_words` in `blend.py`); the defaults are the ones that measured better (docs/infedit.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...kernels.processor import HookState, attention_hooks
from ..common.errors import InputError
from ..common.image import check_image_batch, fit_to_multiple, restore_size
from ..common.loading import SDComponents
from ..common.schedulers import scheduler_of_class
from ..common.text import encode_prompts
from .align import PAD_MAPPINGS, REPLACED_WORDS, token_alignment, word_token_positions
from .blend import SHARED_BLEND_WORDS, blend_factor, local_blend, target_threshold, word_mask
from .control import BranchLayout, CrossAttentionControl, SelfAttentionControl
from .ddcm import ddcm_step, lcm_timesteps

ProgressFn = Callable[[int, int], None]


@dataclass
class InfEditSettings:
    steps: int = 15
    source_guidance: float = 1.0
    target_guidance: float = 2.0
    cross_replace: float = 0.7
    self_replace: float = 0.3
    thresh_e: float = 0.6
    thresh_m: float = 0.6
    eta: float = 1.0
    seed: int = 0
    source_blend_words: str = ""
    target_blend_words: str = ""
    resize_mode: str = "pad"
    replaced_words: str = "new"  # "new" | "swap" (official): see align.py
    pad_mapping: str = "pads"  # "pads" | "position" (official): see align.py
    shared_blend_words: str = "keep_source"  # "keep_source" | "edit_then_layout" (official): see blend.py
    skip_unused_rows: bool = True  # an exact shortcut (`_step_layout`); False runs every row, as a check


OFFICIAL_CHOICES = dict(replaced_words="swap", pad_mapping="position", shared_blend_words="edit_then_layout")
CHOICES = {
    "replaced_words": REPLACED_WORDS,
    "pad_mapping": PAD_MAPPINGS,
    "shared_blend_words": SHARED_BLEND_WORDS,
}

PRESETS = {
    "interactive": InfEditSettings(),
    "benchmark": InfEditSettings(steps=12, target_guidance=2.3, self_replace=0.7, thresh_e=0.55),
}


@dataclass
class InfEditResult:
    edited: torch.Tensor  # [B * N, H, W, 3]: for each image, each target
    masks: torch.Tensor  # [B * N, H, W]: local-blend target-word mask (1 where the edit may act)
    reconstruction: torch.Tensor  # [B, H, W, 3]: the source through the VAE (decode of z0)
    latents: torch.Tensor  # [B * N, 4, h, w]: the targets' final clean latents
    z0: torch.Tensor  # [B, 4, h, w]
    unet_evaluations: int = 0


class InfEditPipeline:
    def __init__(self, components: SDComponents):
        if components.unet.config.in_channels != components.vae.config.latent_channels:
            raise InputError(
                "model",
                "a text-to-image (LCM) model whose U-Net takes the VAE latent",
                f"a U-Net with {components.unet.config.in_channels} input channels",
            )
        self.components = components

    # ----- inputs ----------------------------------------------------------------------------------------
    def _token_ids(self, prompt: str, name: str) -> list[int]:
        if not prompt or not prompt.strip():
            raise InputError(name, "a non-empty prompt")
        ids = self.components.tokenizer(prompt).input_ids
        limit = self.components.tokenizer.model_max_length
        if len(ids) > limit:
            raise InputError(name, f"a prompt of at most {limit - 2} tokens", f"{len(ids) - 2} tokens")
        return ids

    def _positions(self, prompt: str, words: str, name: str) -> list[int] | None:
        if not words.strip():
            return None
        try:
            return word_token_positions(self.components.tokenizer, prompt, words)
        except ValueError as exc:
            raise InputError(name, "words that occur in their prompt", str(exc)) from exc

    def _blend_resolution(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """Map size of the layers local blend reads (`blend.blend_factor`: 16x16 on SD1.5 at 512 px)."""
        f = blend_factor(self.components.unet.config)
        return -(-latent_hw[0] // f), -(-latent_hw[1] // f)  # ceil: diffusers' stride-2 convs round up

    def _blend_positions(self, source_prompt, target_prompt, source_words, target_words, s):
        """(source positions, target positions, shared positions) of one target's blend words.

        With shared_blend_words="edit_then_layout" words in both lists leave the source mask and get a
        mask of their own (their target positions)."""
        src_pos = self._positions(source_prompt, source_words, "source_blend_words")
        tgt_pos = self._positions(target_prompt, target_words, "target_blend_words")
        if s.shared_blend_words == "keep_source" or src_pos is None or tgt_pos is None:
            return src_pos, tgt_pos, None
        split = lambda w: w.replace(",", " ").split()  # noqa: E731
        shared = [w for w in split(source_words) if w in set(split(target_words))]
        if not shared:
            return src_pos, tgt_pos, None
        rest = " ".join(w for w in split(source_words) if w not in shared)
        return (
            self._positions(source_prompt, rest, "source_blend_words"),
            tgt_pos,
            self._positions(target_prompt, " ".join(shared), "target_blend_words"),
        )

    # ----- run -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        source_prompt: str,
        target_prompts: list[str],
        settings: InfEditSettings,
        device="cpu",
        dtype=torch.float32,
        progress: ProgressFn | None = None,
        target_blend_words: list[str] | None = None,
    ) -> InfEditResult:
        """Edit each image with each target prompt. `target_blend_words` gives per-target blend words
        (an edit list); by default every target uses `settings.target_blend_words`."""
        images = check_image_batch(images, "image")
        if settings.steps < 1:
            raise InputError("steps", "at least 1", str(settings.steps))
        for name, allowed in CHOICES.items():
            if getattr(settings, name) not in allowed:
                raise InputError(name, " or ".join(map(repr, allowed)), repr(getattr(settings, name)))
        if not target_prompts:
            raise InputError("target_prompt", "at least one target prompt")
        device = torch.device(device)
        src_ids = self._token_ids(source_prompt, "source_prompt")
        tgt_ids = [self._token_ids(p, "target_prompt") for p in target_prompts]
        words = target_blend_words or [settings.target_blend_words] * len(target_prompts)
        if len(words) != len(target_prompts):
            raise InputError(
                "target_blend_words", f"{len(target_prompts)} entries, one per target prompt", str(len(words))
            )
        positions = [
            self._blend_positions(source_prompt, p, settings.source_blend_words, w, settings)
            for p, w in zip(target_prompts, words)
        ]

        x, fit = fit_to_multiple(images, self.components.pixel_multiple, settings.resize_mode)
        groups = (
            [list(range(len(target_prompts)))]
            if settings.eta == 1.0
            else [[i] for i in range(len(target_prompts))]
        )
        total = images.shape[0] * len(groups) * settings.steps
        done = [0]

        def tick():
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        edited, masks, latents, z0s, recon = [], [], [], [], []
        evals = 0
        vae = self.components.vae
        for b in range(images.shape[0]):
            z0 = (
                vae.encode((x[b : b + 1] * 2 - 1).to(device, dtype)).latent_dist.mode()
                * vae.config.scaling_factor
            )
            z0s.append(z0)
            recon.append(vae.decode(z0 / vae.config.scaling_factor).sample)
            per_target: dict[int, tuple] = {}
            for group in groups:
                out = self._edit_one(
                    z0,
                    source_prompt,
                    [target_prompts[i] for i in group],
                    src_ids,
                    [tgt_ids[i] for i in group],
                    [positions[i] for i in group],
                    settings,
                    device,
                    dtype,
                    tick,
                    seed=settings.seed + b,
                )
                evals += out["evals"]
                for j, i in enumerate(group):
                    per_target[i] = (out["x0"][j], out["masks"][j])
            for i in range(len(target_prompts)):
                lat, mask = per_target[i]
                latents.append(lat)
                masks.append(mask)
                edited.append(vae.decode(lat / vae.config.scaling_factor).sample)

        to_image = lambda t: restore_size(((t.float() + 1) / 2).clamp(0, 1).cpu(), fit)  # noqa: E731
        edited_img = to_image(torch.cat(edited))
        recon_img = to_image(torch.cat(recon))
        mask_img = torch.stack([m.float() for m in masks])[:, None]
        mask_img = torch.nn.functional.interpolate(mask_img.cpu(), size=x.shape[-2:], mode="nearest")
        mask_img = restore_size(mask_img, fit)[..., 0]
        return InfEditResult(edited_img, mask_img, recon_img, torch.cat(latents), torch.cat(z0s), evals)

    def _edit_one(
        self,
        z0,
        source_prompt,
        targets,
        src_ids,
        tgt_ids,
        positions,
        s: InfEditSettings,
        device,
        dtype,
        tick,
        seed: int,
    ) -> dict:
        n = len(targets)
        cfg = not (s.source_guidance == 1.0 and s.target_guidance == 1.0)
        layout = BranchLayout(n, cfg)  # every branch in both halves; `_step_layout` trims it per step
        cond = encode_prompts(self.components, [source_prompt, *targets, *([source_prompt] * n)], device).to(
            dtype
        )
        alignments = [
            token_alignment(
                src_ids,
                ids,
                cond.shape[1],
                s.replaced_words,
                s.pad_mapping,
                src_states=cond[0],
                tgt_states=cond[1 + j],
            )
            for j, ids in enumerate(tgt_ids)
        ]
        latent_hw = tuple(z0.shape[-2:])
        blend_res = self._blend_resolution(latent_hw)
        want_blend = any(p is not None for pos in positions for p in pos)
        cross = CrossAttentionControl(
            layout,
            [a.mapper for a in alignments],
            [a.alphas for a in alignments],
            s.cross_replace,
            blend_res,
            collect_maps=want_blend,
        )
        self_control = SelfAttentionControl(layout, s.self_replace)
        hooks = [self_control, cross]
        uncond = encode_prompts(self.components, [""], device).to(dtype) if cfg else None
        guidance = torch.tensor(
            [s.source_guidance] + [s.target_guidance] * n + [s.source_guidance] * n,
            dtype=dtype,
            device=device,
        )

        scheduler = self._scheduler()
        timesteps, alpha_t, alpha_prev = lcm_timesteps(scheduler, s.steps, device)
        gen = torch.Generator("cpu").manual_seed(int(seed))
        noise0 = torch.randn(z0.shape, generator=gen, dtype=torch.float32).to(device, dtype)
        a0 = float(alpha_t[0])
        x_s = a0**0.5 * z0 + (1 - a0) ** 0.5 * noise0
        x_t = [x_s.clone() for _ in range(n)]
        x_m = [x_s.clone() for _ in range(n)]
        pred = [z0] * n
        mask_e = [torch.ones(latent_hw, dtype=torch.bool, device=device)] * n
        state = HookState(num_steps=len(timesteps), latent_hw=latent_hw)
        evals = 0
        with attention_hooks(self.components.unet, hooks, state):
            for i, t in enumerate(timesteps):
                state.step = i
                step_layout = self._step_layout(layout, s, self_control.reads_source(state.progress))
                self_control.layout = cross.layout = step_layout
                branch = torch.cat([x_s, *x_t, *x_m])
                rows = step_layout.uncond_branches
                model_in = torch.cat([branch[rows], branch]) if cfg else branch
                text = torch.cat([uncond.expand(len(rows), -1, -1), cond]) if cfg else cond
                eps = self.components.unet(
                    scheduler.scale_model_input(model_in, t), t, encoder_hidden_states=text
                ).sample
                evals += 1
                if cfg:
                    unc, eps = eps[: len(rows)], eps[len(rows) :]
                    g = guidance[rows].view(-1, 1, 1, 1)
                    eps[rows] = unc + g * (eps[rows] - unc)
                eps_s, eps_t, eps_m = eps[:1], eps[1 : 1 + n], eps[1 + n :]
                noise = torch.randn(z0.shape, generator=gen, dtype=torch.float32).to(device, dtype)
                a_t, a_p = alpha_t[i], alpha_prev[i]
                new_t, new_m, x_s_next = [], [], None
                for j in range(n):
                    out_t = ddcm_step(x_s, x_t[j], eps_s, eps_t[j : j + 1], z0, a_t, a_p, noise, s.eta)
                    out_m = ddcm_step(x_s, x_m[j], eps_s, eps_m[j : j + 1], z0, a_t, a_p, noise, s.eta)
                    new_t.append(out_t.x_target)
                    new_m.append(out_m.x_target)
                    pred[j] = out_t.pred_x0
                    x_s_next = out_m.x_source if x_s_next is None else x_s_next
                last = i == len(timesteps) - 1
                if want_blend and i > 0 and not last:
                    final = i == len(timesteps) - 2  # the last blend (the last step returns x0)
                    new_t, mask_e = self._blend(
                        cross, new_t, new_m, x_s_next, positions, float(a_t), s, blend_res, latent_hw, final
                    )
                x_s, x_t, x_m = x_s_next, new_t, new_m
                tick()
        return {"x0": pred, "masks": mask_e, "evals": evals}

    @staticmethod
    def _step_layout(layout: BranchLayout, s: InfEditSettings, source_read: bool) -> BranchLayout:
        """Leave out the unconditional rows whose outputs nothing uses this step (an exact shortcut).

        With source guidance 1 the source and layout branches take their conditional output as it is;
        the targets' unconditional rows still read the source's queries and keys while the self-attention
        control says so (`source_read`: p < self_replace). At the paper's defaults (15 steps, self replace
        0.3) that is 64 rows of U-Net work instead of 90.
        """
        if not layout.cfg or not s.skip_unused_rows or s.source_guidance != 1.0:
            return layout
        return BranchLayout(layout.num_targets, True, uncond_source=source_read, uncond_layouts=False)

    def _blend(self, cross, x_t, x_m, x_s, positions, alpha_t, s, blend_res, latent_hw, final):
        maps = cross.maps
        out, masks = [], []
        for j, (xt, xm) in enumerate(zip(x_t, x_m)):
            src_pos, tgt_pos, shared_pos = positions[j]
            mask_src = mask_tgt = mask_shared = None
            if src_pos is not None and maps.source is not None:
                mask_src = word_mask(maps.source, src_pos, blend_res, latent_hw, s.thresh_m)
            if tgt_pos is not None and len(maps.targets) > j:
                mask_tgt = word_mask(
                    maps.targets[j], tgt_pos, blend_res, latent_hw, target_threshold(alpha_t, s.thresh_e)
                )
            if final and shared_pos is not None and len(maps.targets) > j:
                mask_shared = word_mask(maps.targets[j], shared_pos, blend_res, latent_hw, s.thresh_e)
            out.append(local_blend(xt, xm, x_s, mask_tgt, mask_src, mask_shared))
            masks.append(
                mask_tgt
                if mask_tgt is not None
                else torch.ones(latent_hw, dtype=torch.bool, device=xt.device)
            )
        return out, masks

    def _scheduler(self):
        """LCM scheduler on the model's schedule, 50 original steps (InfEdit Sec. 5.1)."""
        original = self.components.scheduler_config.get("original_inference_steps", 50)
        return scheduler_of_class(
            "LCMScheduler",
            self.components.scheduler_config,
            original_inference_steps=original,
            timestep_spacing="leading",
        )
