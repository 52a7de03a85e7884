"""Prompt encoding shared by the SD-family pipelines."""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_prompts(components, prompts: list[str], device) -> torch.Tensor:
    """CLIP last hidden states [N, 77, C] for prompts padded to the tokenizer's length (SD1.x conditioning)."""
    tok = components.tokenizer(
        prompts,
        padding="max_length",
        max_length=components.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return components.text_encoder(tok.input_ids.to(device))[0]
