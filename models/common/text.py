"""Prompt encoding shared by the SD-family pipelines and trainers: the one place prompts become embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextModel:
    """A tokenizer and its CLIP text encoder: what `encode_prompts` reads (`SDComponents` carries both too)."""

    tokenizer: object
    text_encoder: torch.nn.Module


def tokenize_prompts(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids [N, L], padded and truncated to the tokenizer's length (77 for SD's CLIP)."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_prompts(components, prompts: Sequence[str], device) -> torch.Tensor:
    """CLIP last hidden states [N, L, C] (SD1.x/2.x conditioning) in the encoder's dtype, on its device.

    `components`: anything with `.tokenizer` and `.text_encoder` (`SDComponents`, `TextModel`); the token ids
    go to `device`, which must be where the text encoder is."""
    ids = tokenize_prompts(components.tokenizer, prompts)
    return components.text_encoder(ids.to(device))[0]
