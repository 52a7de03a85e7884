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


# A text encoder whose weights are stored in half precision but must compute in another dtype carries that
# dtype in this attribute (`store_for_compute`); `encode_prompts` then runs it on upcast copies.
COMPUTE_DTYPE_ATTR = "papernodes_compute_dtype"
HALF = (torch.float16, torch.bfloat16)


def store_for_compute(text_encoder: torch.nn.Module, compute: torch.dtype) -> bool:
    """Keep a half-precision text encoder's weights as they are and have it compute in `compute`.

    ComfyUI's choice on the CPU (comfy.model_management.text_encoder_dtype: the CLIP weights in float16,
    cast per layer at run time): a float16 file's CLIP-L is then never converted at load (123M parameters,
    ~0.25 s and 0.25 GB on an SD1.5 load) and the upcast in `encode_prompts` is exact, so the embeddings
    equal those of a float32 copy bit for bit. Returns whether the encoder was marked (False: its weights
    are not all in half precision, or `compute` is half precision itself: the caller casts as usual)."""
    params = list(text_encoder.parameters())
    if compute in HALF or not params or any(p.dtype not in HALF for p in params):
        return False
    setattr(text_encoder, COMPUTE_DTYPE_ATTR, compute)
    return True


def compute_dtype(text_encoder: torch.nn.Module) -> torch.dtype:
    """The dtype `encode_prompts` returns for this encoder."""
    marked = getattr(text_encoder, COMPUTE_DTYPE_ATTR, None)
    return marked if marked is not None else next(text_encoder.parameters()).dtype


def run_text_encoder(text_encoder: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Last hidden states of `text_encoder` for token ids, computed in its `compute_dtype`."""
    compute = compute_dtype(text_encoder)
    upcast = {
        name: t.to(compute)
        for name, t in (*text_encoder.named_parameters(), *text_encoder.named_buffers())
        if t.is_floating_point() and t.dtype != compute
    }
    if not upcast:
        return text_encoder(ids)[0]
    # the stored weights stay as they are; the call sees float copies (freed when it returns)
    return torch.func.functional_call(text_encoder, upcast, (ids,))[0]


@torch.no_grad()
def encode_prompts(components, prompts: Sequence[str], device) -> torch.Tensor:
    """CLIP last hidden states [N, L, C] (SD1.x/2.x conditioning) in the encoder's compute dtype (its
    weights' dtype unless `store_for_compute` marked it), on its device.

    `components`: anything with `.tokenizer` and `.text_encoder` (`SDComponents`, `TextModel`); the token ids
    go to `device`, which must be where the text encoder is. Components whose text encoder is not CLIP (IF's
    T5, which needs its padding masked) bring their own `encode_text(prompts, device)`, used instead."""
    own = getattr(components, "encode_text", None)
    if own is not None:
        return own(list(prompts), device)
    ids = tokenize_prompts(components.tokenizer, prompts)
    return run_text_encoder(components.text_encoder, ids.to(device))
