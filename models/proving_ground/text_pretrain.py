"""Warm-start the world's CLIP text encoder on what its captions say, before it is trained with the U-Net.

Why: trained jointly from scratch, the text encoder of the first teacher (2000 steps) barely told the U-Net
which color word belongs to which object and which to the background (the teacher painted backgrounds in
an object's color; the U-Net's error with the true caption was only 9 % below a shuffled one at t = 500).
Real CLIP arrives pretrained on image-text pairs; ours gets a cheap text-only surrogate.

Our interpretation (no paper prescribes this): token tagging on the caption grammar. CLIP's text encoder is
causal, so the hidden state at a shape noun has seen its count and color words, and the state at the word
"background" has seen the background's color and texture. Linear heads read
    each shape noun        -> that group's color and shape
    the word "background"  -> the background's color and texture
    the end-of-text token  -> the total object count
and cross-entropy trains the encoder (about two minutes on 2 cores). The heads are discarded; the labels come
from parsing the caption text itself (`world.parse_caption`), so no image is involved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .world import COLOR_NAMES, PLURALS, SHAPES, TEXTURES, parse_caption


@dataclass
class TextPretrainSettings:
    steps: int = 200  # the tagging loss is below 0.01 after 150 steps
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0


def noun_token_ids(tokenizer) -> dict[tuple[int, ...], str]:
    """BPE token sequence -> shape for every singular and plural shape noun ("triangles" is two tokens)."""
    return {
        tuple(tokenizer(word, add_special_tokens=False).input_ids): shape
        for shape in SHAPES
        for word in (shape, PLURALS[shape])
    }


def _noun_ends(tokens: list[int], nouns: dict[tuple[int, ...], str]) -> list[int]:
    """Positions of the last token of each shape noun, in caption order (longest match first)."""
    ends, j = [], 0
    lengths = sorted({len(k) for k in nouns}, reverse=True)
    while j < len(tokens):
        hit = next((n for n in lengths if tuple(tokens[j : j + n]) in nouns), 0)
        if hit:
            ends.append(j + hit - 1)
        j += max(hit, 1)
    return ends


def token_targets(tokenizer, ids: torch.Tensor, captions: list[str]) -> dict[str, torch.Tensor]:
    """Per-token class targets ([n,77] each, -100 = no target) and per-caption count targets ([n])."""
    nouns = noun_token_ids(tokenizer)
    (background,) = tokenizer("background", add_special_tokens=False).input_ids
    n, length = ids.shape
    obj_color = torch.full((n, length), -100)
    obj_shape = torch.full((n, length), -100)
    bg_color = torch.full((n, length), -100)
    bg_texture = torch.full((n, length), -100)
    count = torch.zeros(n, dtype=torch.long)
    for i, text in enumerate(captions):
        parsed = parse_caption(text)
        tokens = ids[i].tolist()
        ends = _noun_ends(tokens, nouns)
        if len(ends) != len(parsed["groups"]):
            raise ValueError(f"found {len(ends)} shape nouns in {text!r}, expected {len(parsed['groups'])}")
        for j, (_, color, shape) in zip(ends, parsed["groups"]):
            obj_color[i, j], obj_shape[i, j] = COLOR_NAMES.index(color), SHAPES.index(shape)
        j = tokens.index(background)
        bg_color[i, j] = COLOR_NAMES.index(parsed["bg_color"])
        bg_texture[i, j] = TEXTURES.index(parsed["bg_texture"])
        count[i] = sum(g[0] for g in parsed["groups"]) - 1
    return {"obj_color": obj_color, "obj_shape": obj_shape, "bg_color": bg_color,
            "bg_texture": bg_texture, "count": count}  # fmt: skip


class TaggingHeads(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        sizes = {"obj_color": len(COLOR_NAMES), "obj_shape": len(SHAPES), "bg_color": len(COLOR_NAMES),
                 "bg_texture": len(TEXTURES), "count": 3}  # fmt: skip
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, v) for k, v in sizes.items()})

    def loss(self, hidden: torch.Tensor, eos: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        total = F.cross_entropy(self.heads["count"](hidden[torch.arange(len(hidden)), eos]), targets["count"])
        for k in ("obj_color", "obj_shape", "bg_color", "bg_texture"):
            total = total + F.cross_entropy(self.heads[k](hidden).flatten(0, 1), targets[k].flatten())
        return total


def pretrain_text_encoder(
    text_encoder, tokenizer, ids, captions, settings: TextPretrainSettings, progress=None
):
    """Train `text_encoder` in place on token tagging (module docstring); returns the final loss."""
    targets = token_targets(tokenizer, ids, captions)
    eos = ids.eq(tokenizer.eos_token_id).int().argmax(-1)  # the first end-of-text token
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    heads = TaggingHeads(text_encoder.config.hidden_size)
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-2)
    text_encoder.train()
    loss, t0 = torch.zeros(()), time.time()
    for step in range(settings.steps):
        idx = torch.from_numpy(rng.integers(0, len(ids), settings.batch_size))
        hidden = text_encoder(ids[idx])[0]
        loss = heads.loss(hidden, eos[idx], {k: v[idx] for k, v in targets.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if progress:
            progress("text pretrain", step + 1, settings.steps, float(loss.detach()), time.time() - t0)
    return float(loss.detach())
