"""Self-describing weight files: one `.safetensors` whose metadata holds the model's JSON config under a key,
so a single file in a model folder is a complete model (the pack's own small models use it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import WeightsFormatError


def save_with_config(
    module: torch.nn.Module, path: str | Path, key: str, config: dict, dtype: torch.dtype
) -> Path:
    """The module's state dict (in `dtype`, on the CPU) with `config` as JSON under metadata `key`."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={key: json.dumps(config)})
    return path


def load_with_config(path: str | Path, key: str, what: str, hint: str) -> tuple[dict, dict]:
    """(state dict in float32, config) of a file written by `save_with_config`; a missing file, an unreadable
    one, or one without `key` (another model's file) raise errors that say `what` was expected and `hint`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file '{path}' not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsFormatError(f"'{path.name}' is not a readable .safetensors file ({exc})") from None
    if key not in meta:
        raise WeightsFormatError(f"'{path.name}' is not a {what} (no '{key}' metadata); {hint}")
    return {k: v.float() for k, v in state.items()}, json.loads(meta[key])
