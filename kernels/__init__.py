"""Attention kernels and the one diffusers processor every method plugs its hooks into.

Ops (`ops.py`) route to a backend (`dispatch.py`): `torch` (the exact reference, `reference.py`) or
`triton` (GPU kernels, `triton_attention.py`). `processor.py` installs a hookable processor on a model
and restores the original ones on exit, whatever happens.
"""

from .dispatch import ENV_VAR, select_backend, use_backend
from .ops import (
    attention,
    attention_with_probs,
    attention_with_supplied_probs,
    multi_context_attention,
    temporal_attention,
)
from .reference import Context, fold_frames, sinusoidal_positions, unfold_frames

__all__ = [
    "ENV_VAR",
    "Context",
    "attention",
    "attention_with_probs",
    "attention_with_supplied_probs",
    "fold_frames",
    "multi_context_attention",
    "select_backend",
    "sinusoidal_positions",
    "temporal_attention",
    "unfold_frames",
    "use_backend",
]
