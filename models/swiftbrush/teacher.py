"""The frozen teacher and the LoRA teacher of SwiftBrush, sharing ONE U-Net.

A peft LoRA adapter (rank 64, alpha 108, on every attention layer's to_q and to_v) is injected into the
teacher's U-Net. With the adapter disabled, peft's LoRA layers call the wrapped base layer and nothing
else, so the model computes exactly what the original teacher computed; with it enabled it is the LoRA
teacher. Only the LoRA parameters ever require gradients; the base weights are frozen (and may be cast
to a half dtype for memory), the LoRA weights stay float32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

LORA_RANK = 64
LORA_ALPHA = 108
LORA_TARGETS = ("to_q", "to_v")
ADAPTER = "swiftbrush_lora"


class LoraTeacher:
    """`with t.lora(False): unet(...)` is the frozen teacher, `with t.lora(True): unet(...)` the LoRA one."""

    def __init__(
        self,
        unet: torch.nn.Module,
        rank: int = LORA_RANK,
        alpha: float = LORA_ALPHA,
        targets: Sequence[str] = LORA_TARGETS,
    ):
        from peft import LoraConfig

        unet.requires_grad_(False)
        config = LoraConfig(
            r=int(rank),
            lora_alpha=alpha,
            target_modules=list(targets),
            lora_dropout=0.0,
            init_lora_weights=True,
        )  # lora_B = 0: the LoRA teacher starts as the teacher
        unet.add_adapter(config, adapter_name=ADAPTER)
        self.unet = unet
        self.named_params = [(n, p) for n, p in unet.named_parameters() if f".{ADAPTER}." in n]
        if not self.named_params:
            raise ValueError(f"no attention projections named {list(targets)} found for the LoRA teacher")
        for n, p in unet.named_parameters():
            is_lora = f".{ADAPTER}." in n
            if is_lora and p.dtype != torch.float32:
                p.data = p.data.float()
            p.requires_grad_(is_lora)
        self._enabled = True
        self.set_lora(False)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self.named_params]

    def base_named_params(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return ((n, p) for n, p in self.unet.named_parameters() if f".{ADAPTER}." not in n)

    def set_lora(self, enabled: bool) -> None:
        if enabled != self._enabled:
            (self.unet.enable_adapters if enabled else self.unet.disable_adapters)()
            self._enabled = enabled
            for p in self.params:  # peft flips requires_grad with the adapter; ours stay trainable
                p.requires_grad_(True)

    @property
    def lora_enabled(self) -> bool:
        return self._enabled

    @contextmanager
    def lora(self, enabled: bool):
        """Run with the adapter on (LoRA teacher) or off (frozen teacher); restores the previous state."""
        before = self._enabled
        self.set_lora(enabled)
        try:
            yield self.unet
        finally:
            self.set_lora(before)

    # ----- checkpointing (safetensors, written and read by the trainer) --------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.named_params}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        names = {n for n, _ in self.named_params}
        if set(state) != names:
            raise ValueError(
                f"LoRA teacher state does not match (missing {sorted(names - set(state))[:3]}, "
                f"unexpected {sorted(set(state) - names)[:3]})"
            )
        with torch.no_grad():
            for n, p in self.named_params:
                p.copy_(state[n])
