"""BiDiff's 2D branch on an SD1.5-architecture model (what users have): cross-view attention, view embeddings
and a ControlNet for the 3D branch's renders, added to a frozen latent-diffusion U-Net.

The paper's 2D branch is DeepFloyd IF stage I with cross-view attention in its deeper down blocks, view
embeddings and a ControlNet that takes the 3D renders (Sec. 3.2; multiview.py has the world-size pixel
model). On SD1.5 the same three parts are an adapter beside the user's U-Net, which stays untouched:

- Cross-view attention: after the self-attention (`attn1`) of every transformer block in the deeper down
  blocks (every `CrossAttnDownBlock2D` but the first, at the highest resolution; the only one if there is
  one), a new attention over the tokens of ALL views of a sample. Its query/key/value start as copies of
  the block's own self-attention, so it begins as SD's self-attention applied across views; its output
  projection starts at zero, so the adapted model equals the base exactly until it is trained.
- View embeddings: one learnt vector per view, added to the timestep embedding of the U-Net and the
  ControlNet (zero at the start).
- ControlNet: `diffusers.ControlNetModel.from_unet` (a copy of the U-Net's encoder, zero convolutions
  out), conditioned on the 3D branch's RGB renders in [0, 1] at the views' pixel size.

Our interpretation (the release does not show its IF code): the separate zero-initialised joint-view
attention beside SD's own (MVDream replaces the self-attention by a joint one and fine-tunes all of it);
a ControlNet per view without cross-view attention (the renders it reads are consistent already).

`attached(unet)` installs the adapter with forward hooks and removes them on exit, whatever happens inside,
so a U-Net shared with other nodes is never left patched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ...kernels import ops
from ..common.errors import InputError


@dataclass
class SDBranchConfig:
    views: int = 4
    size: int = 256  # pixel size of each view (the renders'); latents are size / 8
    layers: list[str] = field(
        default_factory=list
    )  # module names of the attn1 layers that get cross-view attention
    widths: list[int] = field(default_factory=list)  # their channel counts
    heads: list[int] = field(default_factory=list)  # their head counts
    controlnet: dict = field(default_factory=dict)  # the ControlNet's diffusers config
    base: dict = field(default_factory=dict)  # what the base U-Net must be (`base_signature`)


def base_signature(unet: nn.Module) -> dict:
    """The base U-Net's architecture fields the adapter depends on (checked when it is attached)."""
    c = unet.config
    return {
        "block_out_channels": list(c.block_out_channels),
        "down_block_types": list(c.down_block_types),
        "cross_attention_dim": int(c.cross_attention_dim),
        "in_channels": int(c.in_channels),
        "layers_per_block": int(c.layers_per_block),
    }


def cross_view_layers(unet: nn.Module) -> list[str]:
    """Names of the self-attention modules of the deeper down blocks (see the module docstring)."""
    blocks = [i for i, kind in enumerate(unet.config.down_block_types) if kind.startswith("CrossAttn")]
    if not blocks:
        raise InputError(
            "model", "a U-Net with cross-attention down blocks (SD1.5 architecture)", "none found"
        )
    deeper = blocks[1:] or blocks
    return [
        name
        for name, module in unet.named_modules()
        if name.endswith(".attn1") and any(name.startswith(f"down_blocks.{i}.") for i in deeper)
        and hasattr(module, "to_q")
    ]  # fmt: skip


class CrossViewAttention(nn.Module):
    """Joint attention over the tokens of all views of a sample: [B * V, L, C] -> [B * V, L, C]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width, bias=False) for _ in range(3))
        self.to_out = nn.Linear(width, width)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def init_from(self, attn: nn.Module) -> None:
        """Start from the block's own self-attention projections (the output stays zero)."""
        with torch.no_grad():
            for name in ("to_q", "to_k", "to_v"):
                getattr(self, name).weight.copy_(getattr(attn, name).weight)

    def forward(self, hidden: torch.Tensor, views: int) -> torch.Tensor:
        n, length, width = hidden.shape
        if n % views:
            raise InputError("views", f"a divisor of the batch of {n} view images", str(views))
        joint = hidden.reshape(n // views, views * length, width)
        split = lambda t: t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.to_q(joint)), split(self.to_k(joint)), split(self.to_v(joint))
        out = ops.attention(q, k, v, scale=q.shape[-1] ** -0.5)
        out = out.transpose(1, 2).reshape(joint.shape)
        return self.to_out(out).reshape(n, length, width)


class SDMultiViewAdapter(nn.Module):
    """The trainable parts of the SD 2D branch; the base U-Net is passed in, never owned."""

    def __init__(self, config: SDBranchConfig):
        super().__init__()
        from diffusers import ControlNetModel

        if config.views < 1:
            raise InputError("views", "at least 1", str(config.views))
        self.config = config
        self.xview = nn.ModuleList(
            CrossViewAttention(w, h) for w, h in zip(config.widths, config.heads, strict=True)
        )
        temb = config.controlnet.get("block_out_channels", [320])[0] * 4  # diffusers: 4 x the first width
        self.view = nn.Parameter(torch.zeros(config.views, temb))
        self.controlnet = ControlNetModel.from_config(config.controlnet)

    @classmethod
    def from_unet(cls, unet: nn.Module, views: int = 4, size: int = 256) -> SDMultiViewAdapter:
        """A fresh adapter for `unet`: cross-view attention from its own self-attention, ControlNet from its
        encoder (ControlNet's initialisation), view embeddings and every output zero."""
        from diffusers import ControlNetModel

        modules = dict(unet.named_modules())
        layers = cross_view_layers(unet)
        controlnet = ControlNetModel.from_unet(unet, conditioning_channels=3)
        config = SDBranchConfig(
            views=views,
            size=size,
            layers=layers,
            widths=[modules[n].to_q.in_features for n in layers],
            heads=[modules[n].heads for n in layers],
            controlnet=dict(controlnet.config),
            base=base_signature(unet),
        )
        adapter = cls(config)
        adapter.controlnet.load_state_dict(controlnet.state_dict())
        for xview, name in zip(adapter.xview, layers, strict=True):
            xview.init_from(modules[name])
        param = next(unet.parameters())
        return adapter.to(device=param.device, dtype=param.dtype)

    def check_base(self, unet: nn.Module) -> None:
        found = base_signature(unet)
        if found != self.config.base:
            diff = {k: (self.config.base.get(k), v) for k, v in found.items() if self.config.base.get(k) != v}
            raise InputError(
                "model",
                "the U-Net architecture this BiDiff adapter was trained for (SD1.5 family)",
                "; ".join(f"{k}: expected {a}, got {b}" for k, (a, b) in diff.items()),
            )

    @contextmanager
    def attached(self, unet: nn.Module) -> Iterator[None]:
        """Cross-view attention after each chosen `attn1` and view embeddings in both time embeddings; the
        hooks are removed on exit, also on errors and cancels."""
        self.check_base(unet)
        modules = dict(unet.named_modules())
        handles = []
        try:
            for xview, name in zip(self.xview, self.config.layers, strict=True):
                handles.append(
                    modules[name].register_forward_hook(
                        _cross_view_hook(xview, self.config.views), with_kwargs=True
                    )
                )
            for model in (unet, self.controlnet):
                handles.append(model.time_embedding.register_forward_hook(_view_hook(self.view)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def predict(
        self,
        unet: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        control: torch.Tensor | None = None,
        control_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The base's prediction for latents x [B, V, C, h, w] at timesteps t [B] with text states [B, L, D];
        `control` [B, V, 3, H, W] in [0, 1] enters through the ControlNet, scaled per sample by
        `control_scale` [B] (0 = the "no 3D consistency" branch of decoupled guidance)."""
        b, v = x.shape[:2]
        if v != self.config.views:
            raise InputError("views", f"{self.config.views} views (the adapter's)", str(v))
        flat = x.reshape(b * v, *x.shape[2:])
        steps = t.reshape(-1).expand(b).repeat_interleave(v)
        context = text.repeat_interleave(v, 0)
        extra = {}
        with self.attached(unet):
            if control is not None:
                hint = control.reshape(b * v, *control.shape[2:]).to(flat.dtype)
                down, mid = self.controlnet(flat, steps, encoder_hidden_states=context, controlnet_cond=hint,
                                            return_dict=False)  # fmt: skip
                scale = torch.ones(b) if control_scale is None else control_scale
                s = scale.to(flat).repeat_interleave(v).reshape(-1, 1, 1, 1)
                extra = {
                    "down_block_additional_residuals": [d * s for d in down],
                    "mid_block_additional_residual": mid * s,
                }
            out = unet(flat, steps, encoder_hidden_states=context, **extra).sample
        return out.reshape(b, v, *out.shape[1:])


def _cross_view_hook(xview: CrossViewAttention, views: int):
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        return output + xview(hidden, views)

    return hook


def _view_hook(view: torch.Tensor):
    def hook(module, args, output):
        return output + view.to(output.dtype).repeat(output.shape[0] // view.shape[0], 1)

    return hook
