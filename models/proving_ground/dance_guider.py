"""The dance world's Content Guider parts (issue 20): a small CLIP-architecture image encoder, the content
samples the guider stage trains on, and the caption without clothes that makes the image prompts matter.

Encoder. DreaMoving's Content Guider reads face and clothes images through CLIP vision + IP-Adapters
(Sec. 3.3). No CLIP corpus exists here, so the encoder is a transformers `CLIPVisionModelWithProjection`
(the layout of the `image_encoder` users download: one .safetensors in the transformers key layout,
config inferred from the shapes on load) trained on the world's crops with a supervised objective: linear
heads on its projected embedding (`image_embeds`) name what a crop shows - skin tone and hair colour for a
face crop, shirt and trouser colours and patterns for a clothes crop (one encoder for both, as CLIP is
shared by DreaMoving's two prompts). The heads are dropped after training; the adapters read
`image_embeds` (IP-Adapter's plain variant). Our interpretation, listed in docs/dreamoving.md.

Content samples. Each is one frame of a training clip, its face and clothes crops (from the clip's
reference pose, as a user crops a reference photo) and a caption that names only the background
("a person dancing on a dotted green background"): clothes and face must come from the image prompts.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.image_prompt import preprocess_clip_images, save_clip_vision
from .dance_world import CLOTH_PATTERNS, SKIN_TONES, DanceClip, make_clip
from .world import COLOR_NAMES, background_phrase

# hidden 128 -> 2 heads of 64 and GELU: what `infer_clip_vision_config` infers for this width, so the
# single file loads back into exactly this model. 64 px crops, 8 px patches (64 tokens + CLS).
ENCODER = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=2,
               image_size=64, patch_size=8, projection_dim=128, hidden_act="gelu", layer_norm_eps=1e-5)  # fmt: skip
FACE_HEADS = {"skin": tuple(SKIN_TONES), "hair": COLOR_NAMES}
CLOTHES_HEADS = {"shirt": COLOR_NAMES, "shirt_pattern": CLOTH_PATTERNS, "trousers": COLOR_NAMES,
                 "trousers_pattern": CLOTH_PATTERNS}  # fmt: skip
HEADS = {**FACE_HEADS, **CLOTHES_HEADS}


def content_caption(clip: DanceClip) -> str:
    """The caption the guider stage trains on and the benchmark prompts with: the background only."""
    return f"a person dancing on {background_phrase(clip.background)}"


def crop_pool(clips: int, seed: int, split: str = "train") -> dict:
    """Face and clothes crops uint8 [2N, 64, 64, 3] (faces first) and per-head labels (-1: not shown)."""
    faces, clothes, labels = [], [], {k: [] for k in HEADS}
    for i in range(clips):
        clip = make_clip(seed, split, i, num_frames=1)
        faces.append(clip.face_crop)
        clothes.append(clip.clothes_crop)
        p = clip.person
        for k, names in HEADS.items():
            labels[k].append(names.index(getattr(p, k)))
    # a face crop shows skin and hair; a clothes crop shirt and trousers (hands and neck aside)
    hidden = [-1] * clips
    out = {k: torch.tensor((v if k in FACE_HEADS else hidden) + (v if k in CLOTHES_HEADS else hidden))
           for k, v in labels.items()}  # fmt: skip
    return {"images": np.concatenate([np.stack(faces), np.stack(clothes)]), "labels": out}


def _pixels(images: np.ndarray) -> torch.Tensor:
    return preprocess_clip_images(torch.from_numpy(images).float() / 255.0, ENCODER["image_size"])


def new_encoder(seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**ENCODER))


def train_encoder(
    clips: int = 2000, steps: int = 800, batch_size: int = 64, lr: float = 5e-4, seed: int = 11, progress=None
) -> tuple[nn.Module, nn.Module, dict]:
    """The encoder trained on `clips` people's crops (train split, world seed `seed`): (encoder, the
    attribute heads (for `probe_accuracy`), settings)."""
    pool = crop_pool(clips, seed)
    x_all, labels = _pixels(pool["images"]), pool["labels"]
    encoder = new_encoder(seed).train()
    width = ENCODER["projection_dim"]
    heads = nn.ModuleDict({k: nn.Linear(width, len(v)) for k, v in HEADS.items()})
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        x = x_all[idx]
        flip = torch.rand(batch_size, generator=g) < 0.5  # people face either way; labels do not change
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        emb = encoder(pixel_values=x).image_embeds
        loss = sum(F.cross_entropy(h(emb), labels[k][idx], ignore_index=-1) for k, h in heads.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if progress:
            progress("dance CLIP vision", step + 1, steps, float(loss.detach()), time.time() - t0)
    settings = {"clips": clips, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                "seconds": round(time.time() - t0, 1)}  # fmt: skip
    return encoder.eval().requires_grad_(False), heads.eval().requires_grad_(False), settings


def fit_probe(encoder, clips: int = 400, seed: int = 11, steps: int = 300) -> nn.Module:
    """Linear heads fitted on a frozen encoder's embeddings of train-split crops (full batch, Adam): reads
    what a shipped encoder (whose training heads are not shipped) carries."""
    pool = crop_pool(clips, seed)
    with torch.no_grad():
        emb = encoder(pixel_values=_pixels(pool["images"])).image_embeds
    torch.manual_seed(seed)
    heads = nn.ModuleDict({k: nn.Linear(emb.shape[-1], len(v)) for k, v in HEADS.items()})
    opt = torch.optim.Adam(heads.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = sum(F.cross_entropy(h(emb), pool["labels"][k], ignore_index=-1) for k, h in heads.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return heads.eval().requires_grad_(False)


@torch.no_grad()
def probe_accuracy(encoder, heads: nn.Module, clips: int = 300, seed: int = 1) -> dict[str, float]:
    """Held-out accuracy of each head on crops of unseen people (the embedding carries the attribute)."""
    pool = crop_pool(clips, seed, "heldout")
    emb = encoder(pixel_values=_pixels(pool["images"])).image_embeds
    out = {}
    for k, h in heads.items():
        y = pool["labels"][k]
        shown = y >= 0
        out[f"{k}_accuracy"] = float((h(emb[shown]).argmax(-1) == y[shown]).float().mean())
    return out


def save_encoder(encoder, path: str | Path) -> Path:
    """One fp16 .safetensors in the transformers key layout (read back with `image_prompt.load_clip_vision`,
    as the Content Guider loader and ComfyUI read it)."""
    import copy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_clip_vision(copy.deepcopy(encoder).half(), path, single_file=True)
    return path


def write_content_samples(folder: Path, n: int, seed: int, size: int, frames: int = 8) -> Path:
    """`<name>.png` (one frame at `size`), `.face.png`, `.clothes.png` (64 px crops) and `.txt`
    (`content_caption`): the guider trainer's sibling layout. The frame is a seeded random one of the clip."""
    from PIL import Image

    done = folder / ".complete"
    if done.is_file() and done.read_text() == f"{n} {seed} {size}":
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        clip = make_clip(seed, "train", i, num_frames=frames, size=size)
        stem = folder / f"dance{i:05d}"
        Image.fromarray(clip.frames[int(rng.integers(frames))]).save(f"{stem}.png")
        Image.fromarray(clip.face_crop).save(f"{stem}.face.png")
        Image.fromarray(clip.clothes_crop).save(f"{stem}.clothes.png")
        Path(f"{stem}.txt").write_text(content_caption(clip))
    done.write_text(f"{n} {seed} {size}")
    return folder
