"""Image prompts: IP-Adapter weights (SD1.5 plain / plus / plus-face / full-face) and their CLIP vision encoder.

IP-Adapter (Ye et al. 2023, arXiv 2308.06721) projects CLIP image features into extra cross-attention K/V
sets (decoupled cross-attention). Methods that prompt a U-Net with images (DreaMoving's Content Guider,
Sec. 3.3, wires one per face and clothes prompt in models/dreamoving/content_guider.py) run on the
IP-Adapter files users already have:

- `ip-adapter_sd15*.safetensors|.bin` (plain): `image_proj.proj` (CLIP image_embeds -> T*C) + `norm`;
- `ip-adapter-plus_sd15` / `ip-adapter-plus-face_sd15`: a perceiver Resampler over the penultimate CLIP
  hidden states (`image_proj.latents`, `proj_in`, `layers.N.0` attention, `layers.N.1` feed-forward, ...);
- `ip-adapter-full-face_sd15`: an MLP over all penultimate hidden-state tokens (`image_proj.proj.{0,2,3}`);
- each with `ip_adapter.{i}.to_k_ip|to_v_ip.weight` for i = 1, 3, 5, ...: IP-Adapter enumerates
  `unet.attn_processors` (attn1, attn2, attn1, ...) and gives weights to the cross-attention ones only.

`.safetensors` files hold flat `image_proj.*` / `ip_adapter.*` keys; `.bin` files a dict with the two
sub-dicts, read with `torch.load(weights_only=True)`. The projection modules below are our own code written
to the published key layout. plus and plus-face files have identical keys; the variant name then comes from
the file name (it only labels which CLIP crop the user should feed).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...kernels.processor import attention_modules, is_temporal_attention
from .errors import WeightsFormatError, WeightsNotFoundError
from .loading import PICKLE_SUFFIXES, SAFE_SUFFIXES, assign_weights, empty_parameters, load_state_dict

IP_ADAPTER_URL = "https://huggingface.co/h94/IP-Adapter (models/)"
CLIP_VISION_URL = "https://huggingface.co/h94/IP-Adapter (models/image_encoder/)"

# OpenAI CLIP normalisation, as CLIPImageProcessor applies it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The IP-Adapter repo's Resampler default: dim_head 64 (SD1.5 plus: heads 12 = 768 / 64). Head count is not
# recoverable from weights (to_q is [heads*dim_head, dim]); we assume this documented dim_head.
RESAMPLER_DIM_HEAD = 64


# ----------------------------------------------------------------------------------------------------------
# Projection modules (key names follow the IP-Adapter files, so state dicts load with strict=True)


class ImageProjection(nn.Module):
    """Plain IP-Adapter: one CLIP image embedding -> `num_tokens` context tokens (Linear, then LayerNorm)."""

    def __init__(self, image_embed_dim: int, cross_attention_dim: int, num_tokens: int = 4):
        super().__init__()
        self.num_tokens, self.cross_attention_dim = num_tokens, cross_attention_dim
        self.proj = nn.Linear(image_embed_dim, num_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, T, C]
        x = self.proj(embeds.to(self.proj.weight.dtype))
        return self.norm(x.reshape(embeds.shape[0], self.num_tokens, self.cross_attention_dim))


class MLPProjection(nn.Module):
    """Full-face IP-Adapter: every penultimate CLIP token -> one context token (Linear-GELU-Linear-LN)."""

    def __init__(self, image_embed_dim: int, cross_attention_dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(image_embed_dim, image_embed_dim),
            nn.GELU(),
            nn.Linear(image_embed_dim, cross_attention_dim),
            nn.LayerNorm(cross_attention_dim),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, C]
        return self.proj(hidden.to(self.proj[0].weight.dtype))


class PerceiverAttention(nn.Module):
    """Latent queries attend to [image tokens; latents] (Flamingo's perceiver resampler block)."""

    def __init__(self, dim: int, heads: int, dim_head: int = RESAMPLER_DIM_HEAD):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        b = latents.shape[0]
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        split = lambda t: t.view(b, -1, self.heads, self.dim_head).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        w = torch.softmax((q @ k.transpose(-1, -2)) * self.dim_head**-0.5, dim=-1, dtype=torch.float32)
        out = (w.to(v.dtype) @ v).transpose(1, 2).reshape(b, -1, self.heads * self.dim_head)
        return self.to_out(out)


def _feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class Resampler(nn.Module):
    """IP-Adapter plus: `num_queries` learned latents read the penultimate CLIP hidden states."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        num_queries: int,
        embedding_dim: int,
        output_dim: int,
        ff_mult: int = 4,
        dim_head: int = RESAMPLER_DIM_HEAD,
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, heads, dim_head), _feed_forward(dim, ff_mult)])
            for _ in range(depth)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, Q, C]
        latents = self.latents.repeat(hidden.shape[0], 1, 1)
        x = self.proj_in(hidden.to(self.proj_in.weight.dtype))
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


# ----------------------------------------------------------------------------------------------------------
# The adapter: projection + per-cross-attention-layer to_k_ip / to_v_ip


def cross_attention_layers(model: nn.Module) -> list[str]:
    """Processor names of the spatial cross-attention layers, in `unet.attn_processors` order (the order
    IP-Adapter numbers its `ip_adapter.{1,3,5,...}` entries in); temporal/motion layers are skipped."""
    names = []
    for name, module in attention_modules(model).items():
        is_cross = getattr(module, "is_cross_attention", name.endswith("attn2.processor"))
        if is_cross and not is_temporal_attention(name):
            names.append(name)
    return names


class IPAdapter(nn.Module):
    """One IP-Adapter file: `project(embeds)` -> image tokens; `to_k_ip[j]` / `to_v_ip[j]` for the j-th
    cross-attention layer of the U-Net (file index `layer_ids[j]`)."""

    def __init__(
        self,
        image_proj: nn.Module,
        variant: str,
        layer_ids: list[int],
        kv_shapes: list[tuple[int, int]],
        source: str = "",
    ):
        super().__init__()
        self.image_proj, self.variant, self.layer_ids, self.source = (
            image_proj,
            variant,
            list(layer_ids),
            source,
        )
        self.to_k_ip = nn.ModuleList(nn.Linear(c, o, bias=False) for o, c in kv_shapes)
        self.to_v_ip = nn.ModuleList(nn.Linear(c, o, bias=False) for o, c in kv_shapes)

    @property
    def uses_hidden_states(self) -> bool:
        """plain reads CLIP `image_embeds`; plus / plus-face / full-face read `hidden_states[-2]`."""
        return self.variant != "plain"

    @property
    def cross_attention_dim(self) -> int:
        return self.to_k_ip[0].in_features

    @torch.no_grad()
    def project(self, embeds: torch.Tensor) -> torch.Tensor:
        """CLIP features -> image-prompt tokens [B, T, cross_attention_dim] (on the adapter's device)."""
        return self.image_proj(embeds.to(self.to_k_ip[0].weight.device))

    def bind(self, model: nn.Module) -> dict[str, int]:
        """Processor name -> index into to_k_ip/to_v_ip, in the IP-Adapter order. A file made for another
        U-Net (different cross-attention count or widths) is refused here, naming the file."""
        layers = cross_attention_layers(model)
        name = Path(self.source).name or "IP-Adapter"
        if len(layers) != len(self.to_k_ip):
            raise WeightsFormatError(
                f"{name}: has K/V projections for {len(self.to_k_ip)} cross-attention layers, the U-Net has "
                f"{len(layers)}; this IP-Adapter was made for another base model (SD1.5 has 16)"
            )
        modules = attention_modules(model)
        for j, layer in enumerate(layers):
            attn = modules[layer]
            want = (attn.to_k.out_features, attn.to_k.in_features)
            got = tuple(self.to_k_ip[j].weight.shape)
            if got != want:
                raise WeightsFormatError(
                    f"{name}: ip_adapter.{self.layer_ids[j]}.to_k_ip is {list(got)}, the U-Net layer {layer} "
                    f"needs {list(want)}; this IP-Adapter was made for another base model"
                )
        return {layer: j for j, layer in enumerate(layers)}

    def original_state_dict(self) -> dict[str, torch.Tensor]:
        """The file layout: flat `image_proj.*` and `ip_adapter.{i}.to_k_ip.weight` keys."""
        sd = {f"image_proj.{k}": v for k, v in self.image_proj.state_dict().items()}
        for j, i in enumerate(self.layer_ids):
            sd[f"ip_adapter.{i}.to_k_ip.weight"] = self.to_k_ip[j].weight
            sd[f"ip_adapter.{i}.to_v_ip.weight"] = self.to_v_ip[j].weight
        return {k: v.detach().contiguous() for k, v in sd.items()}


def _split(sd: dict, source: str) -> tuple[dict, dict]:
    """(image_proj, ip_adapter) sub-dicts from either the nested (.bin) or the flat (.safetensors) form."""
    if isinstance(sd.get("image_proj"), dict) and isinstance(sd.get("ip_adapter"), dict):
        return dict(sd["image_proj"]), dict(sd["ip_adapter"])
    proj = {k[len("image_proj.") :]: v for k, v in sd.items() if k.startswith("image_proj.")}
    ip = {k[len("ip_adapter.") :]: v for k, v in sd.items() if k.startswith("ip_adapter.")}
    if not proj or not ip:
        raise WeightsFormatError(
            f"{source}: not an IP-Adapter file (expected 'image_proj.*' and 'ip_adapter.*' keys, found e.g. "
            f"{sorted(sd)[:3]})"
        )
    return proj, ip


def detect_variant(image_proj: dict, source: str = "") -> str:
    """'plain' | 'plus' | 'plus-face' | 'full-face' from the image-projection keys (+ the file name for
    plus vs plus-face, whose keys are identical)."""
    if "perceiver_resampler.proj_in.weight" in image_proj or (
        "norm.weight" in image_proj and "proj.0.weight" in image_proj
    ):
        raise WeightsFormatError(
            f"{source}: an IP-Adapter FaceID file; it needs InsightFace identity embeddings, which the "
            "pack does not compute. Use ip-adapter-plus-face_sd15 or ip-adapter_sd15."
        )
    if "proj.weight" in image_proj and "norm.weight" in image_proj:
        return "plain"
    if "proj.3.weight" in image_proj and "proj.0.weight" in image_proj:
        return "full-face"
    if "latents" in image_proj and "proj_in.weight" in image_proj:
        return "plus-face" if "face" in Path(source).name.lower() else "plus"
    raise WeightsFormatError(
        f"{source}: unknown IP-Adapter image projection (keys {sorted(image_proj)[:6]}); supported: "
        "plain (proj/norm), plus / plus-face (Resampler), full-face (MLP)"
    )


def _build_projection(variant: str, p: dict, cross_dim: int, source: str) -> nn.Module:
    try:
        if variant == "plain":
            embed_dim = p["proj.weight"].shape[1]
            return ImageProjection(embed_dim, cross_dim, p["proj.weight"].shape[0] // cross_dim)
        if variant == "full-face":
            return MLPProjection(p["proj.0.weight"].shape[1], p["proj.3.weight"].shape[0])
        depth = max(int(m.group(1)) for k in p if (m := re.match(r"layers\.(\d+)\.", k))) + 1
        dim = p["latents"].shape[2]
        inner = p["layers.0.0.to_q.weight"].shape[0]
        if inner % RESAMPLER_DIM_HEAD:
            raise WeightsFormatError(
                f"{source}: Resampler attention width {inner} is not a multiple of dim_head "
                f"{RESAMPLER_DIM_HEAD} (the IP-Adapter default); cannot infer its head count"
            )
        ff_mult = p["layers.0.1.1.weight"].shape[0] // dim
        return Resampler(
            dim=dim,
            depth=depth,
            heads=inner // RESAMPLER_DIM_HEAD,
            num_queries=p["latents"].shape[1],
            embedding_dim=p["proj_in.weight"].shape[1],
            output_dim=p["proj_out.weight"].shape[0],
            ff_mult=ff_mult,
        )
    except KeyError as exc:
        raise WeightsFormatError(
            f"{source}: IP-Adapter ({variant}) is missing key image_proj.{exc.args[0]}"
        ) from exc


def ip_adapter_from_state_dict(sd: dict, source: str = "IP-Adapter") -> IPAdapter:
    """Build an `IPAdapter` from a flat or nested IP-Adapter state dict (strict: every key must fit).

    Float32 tensors of `sd` become the adapter's weights without a copy."""
    proj_sd, ip_sd = _split(sd, source)
    variant = detect_variant(proj_sd, source)
    ids = sorted({int(m.group(1)) for k in ip_sd if (m := re.match(r"(\d+)\.to_k_ip\.weight$", k))})
    if not ids:
        raise WeightsFormatError(f"{source}: no 'ip_adapter.N.to_k_ip.weight' keys")
    for i in ids:
        if f"{i}.to_v_ip.weight" not in ip_sd:
            raise WeightsFormatError(f"{source}: 'ip_adapter.{i}.to_v_ip.weight' is missing")
    shapes = [tuple(ip_sd[f"{i}.to_k_ip.weight"].shape) for i in ids]
    cross_dim = shapes[0][1]
    with empty_parameters():  # no random initialisation: every weight comes from the file just below
        proj = _build_projection(variant, proj_sd, cross_dim, source)
        adapter = IPAdapter(proj, variant, ids, shapes, source=source)
    weights = {f"image_proj.{k}": v.float() for k, v in proj_sd.items()}
    for j, i in enumerate(ids):
        weights[f"to_k_ip.{j}.weight"] = ip_sd[f"{i}.to_k_ip.weight"].float()
        weights[f"to_v_ip.{j}.weight"] = ip_sd[f"{i}.to_v_ip.weight"].float()
    try:
        assign_weights(adapter, weights, f"IP-Adapter ({variant})", source)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsFormatError(f"{source}: IP-Adapter ({variant}) weights do not fit: {exc}") from exc
    return adapter.eval().requires_grad_(False)


def load_ip_adapter(path: str | os.PathLike) -> IPAdapter:
    """An IP-Adapter SD1.5 file (.safetensors flat, or .bin nested) -> `IPAdapter` (float32, CPU, eval)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(path.name, [str(path.parent)], IP_ADAPTER_URL)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        # load_state_dict would drop the nested sub-dicts of the .bin layout: read it here, equally safely.
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsFormatError(
                f"{path.name}: could not be read safely with torch.load(weights_only=True) ({exc})"
            ) from exc
        if not isinstance(sd, dict):
            raise WeightsFormatError(f"{path.name}: expected a dict, found {type(sd).__name__}")
    elif suffix in SAFE_SUFFIXES:
        sd = load_state_dict(path, torch.float32)
    else:
        raise WeightsFormatError(f"{path.name}: unsupported IP-Adapter format {suffix!r}")
    return ip_adapter_from_state_dict(sd, source=str(path))


def save_ip_adapter(adapter: IPAdapter, path: str | os.PathLike) -> None:
    """Write in the published layout: flat keys in .safetensors, the nested dict in .bin."""
    path = Path(path)
    sd = adapter.original_state_dict()
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        nested = {"image_proj": {}, "ip_adapter": {}}
        for k, v in sd.items():
            top, rest = k.split(".", 1)
            nested[top][rest] = v.clone()
        torch.save(nested, str(path))


# ----------------------------------------------------------------------------------------------------------
# CLIP vision encoder

# Head counts of the published CLIP vision towers (not recoverable from weights). ViT-H/14 (IP-Adapter SD1.5)
# and bigG are OpenCLIP models with exact GELU; OpenAI's ViT-L/14 and B use quick_gelu.
_KNOWN_VISION = {768: (12, "quick_gelu"), 1024: (16, "quick_gelu"), 1280: (16, "gelu"), 1664: (16, "gelu")}


def infer_clip_vision_config(sd: dict, source: str = "CLIP vision") -> dict:
    """CLIPVisionConfig kwargs from a `vision_model.*` + `visual_projection.weight` state dict."""
    try:
        patch = sd["vision_model.embeddings.patch_embedding.weight"]
        hidden = patch.shape[0]
        positions = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
        layer_ids = [
            int(m.group(1)) for k in sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))
        ]
        layers = max(layer_ids) + 1
        inter = sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
        proj = sd["visual_projection.weight"].shape[0]
    except KeyError as exc:
        raise WeightsFormatError(
            f"{source}: not a CLIP vision model in the transformers layout (missing {exc.args[0]}); expected "
            "'vision_model.*' and 'visual_projection.weight' keys"
        ) from exc
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise WeightsFormatError(f"{source}: {positions} position embeddings is not a square grid + CLS")
    # Unknown widths: head dim 64 (ViT convention), 16 for widths under 64 (the tiny test towers).
    heads, act = _KNOWN_VISION.get(hidden, (hidden // 64 if hidden >= 64 else max(1, hidden // 16), "gelu"))
    return dict(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        patch_size=patch.shape[-1],
        image_size=grid * patch.shape[-1],
        num_channels=patch.shape[1],
        projection_dim=proj,
        hidden_act=act,
        layer_norm_eps=1e-5,
    )


def load_clip_vision(path: str | os.PathLike):
    """CLIPVisionModelWithProjection from a folder (config.json + weights) or a single .safetensors file
    (config inferred from shapes). Never reaches a hub. float32, CPU, eval."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(path.name, [str(path.parent)], CLIP_VISION_URL)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WeightsFormatError(f"{path}: a CLIP vision folder needs config.json")
        cfg = json.loads((path / "config.json").read_text())
        if "vision_config" in cfg:  # a full CLIPConfig: the tower's config, with the top-level projection
            cfg = {**cfg["vision_config"], "projection_dim": cfg.get("projection_dim", 512)}
        model = CLIPVisionModelWithProjection.from_pretrained(
            str(path),
            config=CLIPVisionConfig(**{k: v for k, v in cfg.items() if k != "model_type"}),
            local_files_only=True,
        )
    else:
        sd = load_state_dict(path, torch.float32)
        if any(k.startswith("visual.") for k in sd):
            raise WeightsFormatError(
                f"{path.name}: an OpenCLIP-layout vision tower; convert it to the transformers layout "
                f"(the file IP-Adapter publishes is {CLIP_VISION_URL})"
            )
        with empty_parameters():  # no random initialisation; position_ids (a buffer) is computed
            model = CLIPVisionModelWithProjection(CLIPVisionConfig(**infer_clip_vision_config(sd, path.name)))
        sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
        assign_weights(model, sd, "CLIP vision", path.name)
    return model.float().eval().requires_grad_(False)


def preprocess_clip_images(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """IMAGE [B,H,W,3] in 0..1 -> CLIP pixel values [B,3,size,size]: CLIPImageProcessor's steps on floats
    (shortest side to `size` with antialiased bicubic, centre crop, OpenAI mean/std)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected IMAGE [B,H,W,3], got {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(size * long / short)  # transformers truncates the long side
    new_hw = (size, new_long) if h <= w else (new_long, size)
    if new_hw != (h, w):
        x = F.interpolate(x, size=new_hw, mode="bicubic", antialias=True, align_corners=False)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class ImageEmbeds:
    """CLIP features an adapter reads, for the image(s) and for the unconditional (CFG) branch."""

    cond: torch.Tensor
    uncond: torch.Tensor


@torch.no_grad()
def encode_images(clip_vision, images: torch.Tensor, adapter: IPAdapter) -> ImageEmbeds:
    """CLIP features for `adapter`. Unconditional branch as the IP-Adapter repo does it: plain uses an
    all-zero image embedding; hidden-state variants encode an all-zero pixel tensor (zeros after
    normalisation, i.e. a mean-coloured image)."""
    p = next(clip_vision.parameters())
    pixels = preprocess_clip_images(images, clip_vision.config.image_size).to(p.device, p.dtype)
    if adapter.uses_hidden_states:
        both = torch.cat([pixels, torch.zeros_like(pixels)])
        hidden = clip_vision(pixel_values=both, output_hidden_states=True).hidden_states[-2]
        cond, uncond = hidden.chunk(2)
        return ImageEmbeds(cond, uncond)
    embeds = clip_vision(pixel_values=pixels).image_embeds
    return ImageEmbeds(embeds, torch.zeros_like(embeds))


# ----------------------------------------------------------------------------------------------------------
# Tiny doubles in the real layouts (tests, demo)

TINY_CLIP_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
    projection_dim=24,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)


def build_tiny_clip_vision(seed: int = 0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_VISION)).eval().requires_grad_(False)


def save_clip_vision(model, path: str | os.PathLike, single_file: bool = False) -> None:
    """A folder (config.json + model.safetensors) or one .safetensors in the transformers key layout."""
    from safetensors.torch import save_file

    path = Path(path)
    if single_file:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        model.save_pretrained(str(path), safe_serialization=True)


def build_tiny_ip_adapter(
    unet: nn.Module,
    variant: str = "plain",
    clip_vision=None,
    seed: int = 0,
    num_tokens: int | None = None,
    depth: int = 2,
    heads: int = 2,
) -> IPAdapter:
    """A seeded IP-Adapter for `unet` in the real module layout (random, non-zero weights)."""
    clip_cfg = clip_vision.config if clip_vision is not None else None
    hidden = clip_cfg.hidden_size if clip_cfg else TINY_CLIP_VISION["hidden_size"]
    proj_dim = clip_cfg.projection_dim if clip_cfg else TINY_CLIP_VISION["projection_dim"]
    modules = attention_modules(unet)
    layers = cross_attention_layers(unet)
    cross = modules[layers[0]].to_k.in_features
    torch.manual_seed(seed)
    if variant == "plain":
        proj = ImageProjection(proj_dim, cross, num_tokens or 4)
    elif variant in ("plus", "plus-face"):
        proj = Resampler(cross, depth, heads, num_tokens or 16, hidden, cross)
    elif variant == "full-face":
        proj = MLPProjection(hidden, cross)
    else:
        raise ValueError(f"unknown IP-Adapter variant {variant!r}")
    shapes = [(modules[n].to_k.out_features, cross) for n in layers]
    adapter = IPAdapter(
        proj, variant, [2 * j + 1 for j in range(len(layers))], shapes, source=f"tiny-{variant}"
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return adapter.eval().requires_grad_(False)
