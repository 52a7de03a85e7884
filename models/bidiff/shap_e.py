"""Shap-E (Jun & Nichol 2023, openai/shap-e, MIT) as a `Prior3D`: BiDiff's 3D prior (the paper starts its 3D
branch from a Shap-E sample and guides it with CFG 15).

Weights: the diffusers folder published at huggingface.co/openai/shap-e (MIT licence): `prior/`
(PriorTransformer), `text_encoder/` (CLIPTextModelWithProjection), `tokenizer/`, `scheduler/`
(HeunDiscreteScheduler), `shap_e_renderer/` (ShapERenderer), `model_index.json`. Read strictly offline.

Sampling is diffusers' `ShapEPipeline.__call__(..., output_type="latent")` step for step (same ops in the
same order, so the latents are bitwise equal; tests/test_bidiff_shap_e.py checks it), written out so that
progress is reported and cancellation is checked per step.

Decoding (`shape_from_latent`): the latent [num_embeddings, d_latent] is projected to the weights of the
renderer's NeRF/STF MLP (`renderer.params_proj`) and the MLP is evaluated in STF mode with those weights
through `torch.func.functional_call`: the shared renderer is never patched (diffusers' `decode_to_mesh`
copies the weights into `renderer.mlp` in place).

Facts read in diffusers 0.42 (`pipelines/shap_e/renderer.py`, `camera.py`):
- STF `signed_distance` = tanh(MLP output) is POSITIVE INSIDE: `MeshDecoder.forward` documents "negative
  values correspond to the outside of the shape", takes `field > 0` as the inside bit, and `decode_to_mesh`
  pads the grid with -1 "to close off all the models". Ours is negative inside: sdf = -signed_distance. It is
  a tanh-bounded field in (-1, 1), not a metric distance.
- STF `channels` = sigmoid(...) in (0, 1) and are sRGB: `decode_to_mesh` converts them with
  `_convert_srgb_to_linear` for vertex colours. Ours = channels (clamped to [0, 1]), no conversion.
- Shap-E's frame is z up: `create_pan_cameras` orbits in the xy plane with camera y axis ~ -z (image down
  = world -z) and the first view at -y looking +y (Blender's front view). diffusers' Shap-E docs rotate
  exported meshes by -90 degrees about x before writing GLB. We do the same: our (y-up, glTF) point
  (x, y, z) is Shap-E's (x, -z, y), i.e. Shap-E (x, y, z) -> ours (x, z, -y); the cube [-1, 1]^3 maps
  onto itself.
- Shap-E's field lives in the bounding box [-1, 1]^3 (`ShapERenderer.volume`). Outside it we return
  max(sdf at the nearest box point, 0) + the distance to the box, so every point outside the cube is
  outside the shape (as decode_to_mesh's -1 border does) and rays entering the cube see no surface early.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..common.errors import InputError, WeightsFormatError, WeightsNotFoundError
from .prior3d import BOUND, Prior3D, Shape3D, box_distance, check_prompt

PUBLISHED = "huggingface.co/openai/shap-e (diffusers folder, MIT licence)"
PARTS = {  # subfolder -> (its config files, any one suffices; needs a weights file)
    "prior": (("config.json",), True),
    "text_encoder": (("config.json",), True),
    "tokenizer": (("vocab.json", "tokenizer.json"), False),  # the hub's files / transformers 5's save
    "scheduler": (("scheduler_config.json",), False),
    "shap_e_renderer": (("config.json",), True),
}
WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
QUERY_CHUNK = 8192  # points per MLP evaluation (diffusers uses 4096 for meshes)


# ----------------------------------------------------------------------------------------------- frame


def to_shap_e_frame(points: torch.Tensor) -> torch.Tensor:
    """Our y-up points [..., 3] -> Shap-E's z-up frame: (x, y, z) -> (x, -z, y)."""
    x, y, z = points.unbind(-1)
    return torch.stack([x, -z, y], dim=-1)


def from_shap_e_frame(points: torch.Tensor) -> torch.Tensor:
    """Shap-E's z-up points [..., 3] -> our y-up frame: (x, y, z) -> (x, z, -y)."""
    x, y, z = points.unbind(-1)
    return torch.stack([x, z, -y], dim=-1)


# --------------------------------------------------------------------------------------------- loading


def _has_weights(folder: Path) -> bool:
    return any(next(folder.glob(g), None) is not None for g in WEIGHT_GLOBS)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def check_shap_e_folder(folder: str | os.PathLike) -> Path:
    """Raise a clear error unless `folder` is a text-to-3D Shap-E diffusers folder; returns it as a Path.

    A missing folder is a WeightsNotFoundError; a folder of another model (SD, Shap-E's image variant) or one
    missing parts is a WeightsFormatError naming the folder, what is missing and where the weights are."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise WeightsNotFoundError(folder.name or str(folder), [str(folder.parent)], PUBLISHED)
    index = _read_json(folder / "model_index.json")
    kind = index.get("_class_name", "")
    if kind == "ShapEImg2ImgPipeline" or (
        (folder / "image_encoder").is_dir() and not (folder / "text_encoder").is_dir()
    ):
        raise WeightsFormatError(
            f"{folder}: this is Shap-E's image-conditioned variant (shap-e-img2img); the 3D prior needs the "
            f"text-conditioned model, published at {PUBLISHED}"
        )
    missing = []
    for sub, (configs, weighted) in PARTS.items():
        if not (folder / sub).is_dir():
            missing.append(f"{sub}/")
        elif not any((folder / sub / c).is_file() for c in configs):
            missing.append(f"{sub}/{' or '.join(configs)}")
        elif weighted and not _has_weights(folder / sub):
            missing.append(f"{sub}/ weights (*.safetensors)")
    if missing:
        what = f" (model_index.json names {kind})" if kind and kind != "ShapEPipeline" else ""
        raise WeightsFormatError(
            f"{folder} is not a Shap-E diffusers folder{what}: missing {', '.join(missing)}. "
            f"The official weights are published at {PUBLISHED}"
        )
    expected = {"prior": "PriorTransformer", "shap_e_renderer": "ShapERenderer"}
    for sub, cls in expected.items():
        found = _read_json(folder / sub / "config.json").get("_class_name")
        if found != cls:
            raise WeightsFormatError(
                f"{folder}: {sub}/config.json describes {found!r}, expected {cls} (Shap-E's layout, "
                f"published at {PUBLISHED})"
            )
    archs = _read_json(folder / "text_encoder" / "config.json").get("architectures") or []
    if archs and "CLIPTextModelWithProjection" not in archs:
        raise WeightsFormatError(
            f"{folder}: text_encoder/ is {archs[0]}, expected CLIPTextModelWithProjection (Shap-E's text "
            f"encoder, published at {PUBLISHED})"
        )
    return folder


def _load_part(folder: Path, sub: str, loader: Callable[[], object]):
    try:
        return loader()
    except Exception as exc:  # corrupt or mismatched files: say which part and where the weights are
        raise WeightsFormatError(
            f"{folder / sub}: could not be loaded ({exc}). Official weights: {PUBLISHED}"
        ) from exc


def load_shap_e(
    folder: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> ShapEPrior:
    """A `ShapEPrior` from a Shap-E diffusers folder, read offline (local_files_only), in eval mode."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    folder = check_shap_e_folder(folder)
    kw = dict(local_files_only=True, torch_dtype=dtype)
    prior = _load_part(folder, "prior", lambda: PriorTransformer.from_pretrained(folder / "prior", **kw))
    renderer = _load_part(
        folder, "shap_e_renderer", lambda: ShapERenderer.from_pretrained(folder / "shap_e_renderer", **kw)
    )

    def text_encoder_loader():
        model, info = CLIPTextModelWithProjection.from_pretrained(
            folder / "text_encoder", output_loading_info=True, **kw
        )
        if info.get("missing_keys"):
            raise ValueError(f"weights missing for {sorted(info['missing_keys'])[:5]}")
        return model

    text_encoder = _load_part(folder, "text_encoder", text_encoder_loader)
    tokenizer = _load_part(
        folder,
        "tokenizer",
        lambda: CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
    )
    scheduler_config = _load_part(
        folder,
        "scheduler",
        lambda: HeunDiscreteScheduler.load_config(folder / "scheduler", local_files_only=True),
    )
    return ShapEPrior(
        prior, text_encoder, tokenizer, scheduler_config, renderer, device=device, source=str(folder)
    )


# -------------------------------------------------------------------------------------------- sampling


class ShapEPrior(Prior3D):
    """Shap-E's text-to-latent diffusion plus its STF decoder, handing out `Shape3D`s (y up, sdf < 0
    inside)."""

    name = "shap-e"
    default_guidance = 15.0  # BiDiff's 3D CFG (also Shap-E's own notebooks and diffusers' example)
    default_steps = 64  # Shap-E's notebooks (karras_steps=64) and diffusers' Shap-E example

    def __init__(
        self,
        prior: torch.nn.Module,
        text_encoder: torch.nn.Module,
        tokenizer,
        scheduler_config: dict,
        renderer: torch.nn.Module,
        device: torch.device | str = "cpu",
        source: str = "",
    ):
        self.device = torch.device(device)
        self.prior = prior.eval().requires_grad_(False).to(self.device)
        self.text_encoder = text_encoder.eval().requires_grad_(False).to(self.device)
        self.renderer = renderer.eval().requires_grad_(False).to(self.device)
        self.tokenizer = tokenizer
        # ShapEPipeline._encode_prompt sets this before every call ("YiYi Notes": Shap-E pads with id 0);
        # the tokenizer is ours alone, so once is enough.
        self.tokenizer.pad_token_id = 0
        self.scheduler_config = dict(scheduler_config)
        self.source = source
        self._check_consistent()

    def _check_consistent(self) -> None:
        pc, rc = self.prior.config, self.renderer.config
        vectors = sum(int(s[0]) for s in rc.param_shapes)
        problems = []
        if rc.d_latent != pc.embedding_dim:
            problems.append(f"renderer d_latent {rc.d_latent} != prior embedding_dim {pc.embedding_dim}")
        if vectors != pc.num_embeddings:
            problems.append(f"renderer param rows {vectors} != prior num_embeddings {pc.num_embeddings}")
        proj = getattr(self.text_encoder.config, "projection_dim", None)
        if pc.embedding_proj_dim is not None and proj != pc.embedding_proj_dim:
            problems.append(f"text projection {proj} != prior embedding_proj_dim {pc.embedding_proj_dim}")
        if problems:
            raise WeightsFormatError(
                f"{self.source or 'Shap-E'}: parts do not fit together: {'; '.join(problems)}"
            )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.prior.parameters()).dtype

    def encode_prompt(self, prompt: str, count: int, guidance: bool) -> torch.Tensor:
        """ShapEPipeline._encode_prompt: CLIP text_embeds, unit-normalised, zeros for the unconditional half
        (first), everything scaled by sqrt(dim)."""
        tok = self.tokenizer
        ids = tok(
            prompt,
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        embeds = self.text_encoder(ids.input_ids.to(self.device)).text_embeds
        embeds = embeds.repeat_interleave(count, dim=0)
        embeds = embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)
        if guidance:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        return math.sqrt(embeds.shape[1]) * embeds

    @torch.no_grad()
    def sample_latents(
        self,
        prompt: str,
        *,
        seed: int = 0,
        count: int = 1,
        guidance: float | None = None,
        steps: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """Latents [count, num_embeddings, embedding_dim], equal to ShapEPipeline's `output_type="latent"`
        with `generator=torch.Generator().manual_seed(seed)`. `progress(k, steps)` after each of the `steps`
        Heun steps (a Heun step is two network evaluations, the last one a single Euler evaluation);
        `should_stop()` is polled before every evaluation and raises InterruptedError when it returns True.
        Real Shap-E: 2 * steps - 1 evaluations of the prior on [2 * count, 1024, 1024] latents with CFG."""
        from diffusers import HeunDiscreteScheduler
        from diffusers.utils.torch_utils import randn_tensor

        prompt = check_prompt(prompt)
        guidance = self.default_guidance if guidance is None else float(guidance)
        steps = self.default_steps if steps is None else int(steps)
        if steps < 1:
            raise InputError("steps", "at least 1", str(steps))
        if count < 1:
            raise InputError("count", "at least 1", str(count))
        cfg = guidance > 1.0  # the pipeline's rule
        embeds = self.encode_prompt(prompt, count, cfg)

        sched = HeunDiscreteScheduler.from_config(self.scheduler_config)  # fresh state per call
        sched.set_timesteps(steps, device=self.device)
        timesteps = sched.timesteps
        n, d = self.prior.config.num_embeddings, self.prior.config.embedding_dim
        gen = torch.Generator().manual_seed(int(seed))
        latents = randn_tensor((count, n * d), generator=gen, device=self.device, dtype=embeds.dtype)
        latents = (latents * sched.init_noise_sigma).reshape(count, n, d)

        done = 0
        for i, t in enumerate(timesteps):
            if should_stop is not None and should_stop():
                raise InterruptedError("Shap-E sampling was cancelled")
            model_input = torch.cat([latents] * 2) if cfg else latents
            scaled = sched.scale_model_input(model_input, t)
            pred = self.prior(scaled, timestep=t, proj_embedding=embeds).predicted_image_embedding
            pred, _ = pred.split(scaled.shape[2], dim=2)  # drop the predicted variance
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            latents = sched.step(pred, timestep=t, sample=latents).prev_sample
            # a Heun step ends when the scheduler is back in its first-order state; the last is Euler only
            if progress is not None and (sched.state_in_first_order or i == len(timesteps) - 1):
                done += 1
                progress(done, steps)
        return latents

    def sample(
        self,
        prompt: str,
        *,
        seed: int = 0,
        count: int = 1,
        guidance: float | None = None,
        steps: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Shape3D]:
        latents = self.sample_latents(
            prompt,
            seed=seed,
            count=count,
            guidance=guidance,
            steps=steps,
            progress=progress,
            should_stop=should_stop,
        )
        prompt = prompt.strip()
        return [shape_from_latent(self.renderer, latent, prompt, source=self.name) for latent in latents]


# -------------------------------------------------------------------------------------------- decoding


def mlp_parameters(renderer: torch.nn.Module, latent: torch.Tensor) -> dict[str, torch.Tensor]:
    """The renderer MLP's weights a latent [num_embeddings, d_latent] (or [1, ...]) stands for, as a dict of
    `renderer.mlp` parameter names (what decode_to_mesh copies into `renderer.mlp`, without copying)."""
    if latent.ndim == 2:
        latent = latent[None]
    if latent.ndim != 3 or latent.shape[0] != 1:
        raise InputError(
            "latent", "one Shap-E latent [num_embeddings, d_latent]", f"shape {list(latent.shape)}"
        )
    own = dict(renderer.mlp.named_parameters())
    with torch.no_grad():
        ref = next(renderer.params_proj.parameters())
        projected = renderer.params_proj(latent.to(ref.device, ref.dtype))
    params = {}
    for key, value in projected.items():  # "nerstf.mlp.0.weight" -> "mlp.0.weight"
        name = key[len("nerstf.") :] if key.startswith("nerstf.") else None
        if name in own:
            params[name] = value[0].detach()
    return params


def query_stf(
    renderer: torch.nn.Module, params: dict[str, torch.Tensor], points: torch.Tensor, chunk: int = QUERY_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shap-E's STF fields at points [N, 3] in SHAP-E's frame: (signed_distance [N], positive inside;
    channels [N, 3], sRGB), from `renderer.mlp` run with `params` (the renderer is not modified)."""
    from torch.func import functional_call

    mlp = renderer.mlp
    ref = next(mlp.parameters())
    sds, chs = [], []
    for start in range(0, points.shape[0], chunk):
        batch = points[start : start + chunk].to(ref.device, ref.dtype)[None]
        out = functional_call(
            mlp,
            params,
            args=(),
            kwargs=dict(position=batch, direction=None, ts=None, nerf_level="fine", rendering_mode="stf"),
        )
        sds.append(out.signed_distance[0, :, 0])
        chs.append(out.channels[0])
    if not sds:
        return points.new_zeros(0), points.new_zeros(0, 3)
    return torch.cat(sds), torch.cat(chs)


def shape_from_latent(
    renderer: torch.nn.Module,
    latent: torch.Tensor,
    prompt: str = "",
    source: str = "shap-e",
    chunk: int = QUERY_CHUNK,
) -> Shape3D:
    """A `Shape3D` (our frame: y up, sdf negative inside, colour sRGB in [0, 1]) from one Shap-E latent.

    The fields evaluate `renderer.mlp` with the latent's weights via functional_call, in chunks of `chunk`
    points; gradients flow to the points only when the caller asks for them (points.requires_grad)."""
    params = mlp_parameters(renderer, latent)

    def fields(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = p.reshape(-1, 3)
        inside = flat.clamp(-BOUND, BOUND)  # the field is defined in Shap-E's bounding box [-1, 1]^3
        with torch.set_grad_enabled(torch.is_grad_enabled() and p.requires_grad):
            sd, ch = query_stf(renderer, params, to_shap_e_frame(inside), chunk)
        return sd.to(p.device, p.dtype), ch.to(p.device, p.dtype), box_distance(flat, BOUND)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        sd, _, out = fields(p)
        ours = -sd  # Shap-E: positive inside; ours: negative inside
        return torch.where(out > 0, ours.clamp_min(0) + out, ours).reshape(p.shape[:-1])

    def color(p: torch.Tensor) -> torch.Tensor:
        _, ch, _ = fields(p)
        return ch.clamp(0, 1).reshape(*p.shape[:-1], 3)

    info = {
        "latent": latent.detach(),
        "sdf": "tanh-bounded (not metric)",
        "frame": "y up (Shap-E z up rotated)",
    }
    return Shape3D(sdf, color, prompt, source, info)
