"""BiDiff's 2D branch on a user's text-to-image U-Net: cross-view attention, view embeddings and a ControlNet
for the 3D branch's renders, added to a frozen SD1.5-architecture (latent) or DeepFloyd IF stage I (pixel)
U-Net.

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
  out), conditioned on the 3D branch's RGB renders in [0, 1] at the views' pixel size. IF's blocks are not
  ones ControlNetModel can copy, so IF gets encoder_controlnet.py's copy of its own encoder.

IF stage I (the paper's 2D prior): its deeper down blocks are `SimpleCrossAttnDownBlock2D`, whose one
attention module does self- and text attention together on [N, C, H, W] maps (its own group norm first);
the cross-view attention follows each of those modules in the same way, on the module's normalised tokens,
with the module's biased Q/K/V copied. IF predicts a variance beside the noise; the adapter returns the
noise channels only (BiDiff samples with DDIM, which needs no variance).

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
from .encoder_controlnet import EncoderControlNet


@dataclass
class SDBranchConfig:
    views: int = 4
    size: int = 256  # pixel size of each view (the renders'); latents are size / 8
    layers: list[str] = field(
        default_factory=list
    )  # module names of the attn1 layers that get cross-view attention
    widths: list[int] = field(default_factory=list)  # their channel counts
    heads: list[int] = field(default_factory=list)  # their head counts
    controlnet: dict = field(default_factory=dict)  # the ControlNet's diffusers config (or the U-Net's)
    base: dict = field(default_factory=dict)  # what the base U-Net must be (`base_signature`)
    controlnet_kind: str = "diffusers"  # "diffusers": ControlNetModel; "encoder": EncoderControlNet (IF)
    qkv_bias: bool = False  # the cross-view Q/K/V have biases (IF's attention has them, SD's has not)
    time_dim: int = 0  # width of the time embedding (0: 4 x the first block width, diffusers' default)


def base_signature(unet: nn.Module) -> dict:
    """The base U-Net's architecture fields the adapter depends on (checked when it is attached)."""
    c = unet.config
    return {
        "block_out_channels": list(c.block_out_channels),
        "down_block_types": list(c.down_block_types),
        "cross_attention_dim": int(c.cross_attention_dim),
        "in_channels": int(c.in_channels),
        "layers_per_block": int(c.layers_per_block),
        "out_channels": int(c.out_channels),
    }


def is_sd_family(unet: nn.Module) -> bool:
    """Blocks `ControlNetModel.from_unet` copies: SD1.x/2.x's (IF's are not)."""
    c = unet.config
    return c.mid_block_type == "UNetMidBlock2DCrossAttn" and all(
        kind in ("CrossAttnDownBlock2D", "DownBlock2D") for kind in c.down_block_types
    )


def cross_view_layers(unet: nn.Module) -> list[str]:
    """Names of the self-attention modules of the deeper down blocks (see the module docstring): SD's
    transformer `attn1`s, IF's `attentions.j` (self- and text attention in one module)."""
    kinds = unet.config.down_block_types
    blocks = [i for i, kind in enumerate(kinds) if kind.startswith(("CrossAttn", "SimpleCrossAttn"))]
    if not blocks:
        raise InputError(
            "model",
            "a U-Net with cross-attention down blocks (SD1.5 or IF stage I architecture)",
            "none found",
        )
    names = []
    for i in blocks[1:] or blocks:
        prefix = f"down_blocks.{i}."
        simple = kinds[i].startswith("SimpleCrossAttn")
        for name, module in unet.named_modules():
            if not name.startswith(prefix) or not hasattr(module, "to_q"):
                continue
            if (simple and name.count(".") == 3 and ".attentions." in name) or name.endswith(".attn1"):
                names.append(name)
    return names


class CrossViewAttention(nn.Module):
    """Joint attention over the tokens of all views of a sample: [B * V, L, C] -> [B * V, L, C]."""

    def __init__(self, width: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width, bias=bias) for _ in range(3))
        self.to_out = nn.Linear(width, width)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def init_from(self, attn: nn.Module) -> None:
        """Start from the block's own self-attention projections (the output stays zero)."""
        with torch.no_grad():
            for name in ("to_q", "to_k", "to_v"):
                mine, theirs = getattr(self, name), getattr(attn, name)
                mine.weight.copy_(theirs.weight)
                if mine.bias is not None:
                    mine.bias.copy_(theirs.bias)

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
            CrossViewAttention(w, h, config.qkv_bias)
            for w, h in zip(config.widths, config.heads, strict=True)
        )
        temb = config.time_dim or config.controlnet.get("block_out_channels", [320])[0] * 4
        self.view = nn.Parameter(torch.zeros(config.views, temb))
        if config.controlnet_kind == "encoder":
            self.controlnet = EncoderControlNet(config.controlnet)
        else:
            self.controlnet = ControlNetModel.from_config(config.controlnet)

    @classmethod
    def from_unet(cls, unet: nn.Module, views: int = 4, size: int = 256) -> SDMultiViewAdapter:
        """A fresh adapter for `unet`: cross-view attention from its own self-attention, ControlNet from its
        encoder (ControlNet's initialisation), view embeddings and every output zero."""
        from diffusers import ControlNetModel

        modules = dict(unet.named_modules())
        layers = cross_view_layers(unet)
        if is_sd_family(unet):
            controlnet, kind = ControlNetModel.from_unet(unet, conditioning_channels=3), "diffusers"
        else:
            controlnet, kind = EncoderControlNet.from_unet(unet), "encoder"
        config = SDBranchConfig(
            views=views,
            size=size,
            layers=layers,
            widths=[modules[n].to_q.in_features for n in layers],
            heads=[modules[n].heads for n in layers],
            controlnet=dict(controlnet.config) if kind == "diffusers" else dict(unet.config),
            base=base_signature(unet),
            controlnet_kind=kind,
            qkv_bias=modules[layers[0]].to_q.bias is not None,
            time_dim=unet.time_embedding.linear_2.out_features,
        )
        adapter = cls(config)
        adapter.controlnet.load_state_dict(controlnet.state_dict())
        for xview, name in zip(adapter.xview, layers, strict=True):
            xview.init_from(modules[name])
        param = next(unet.parameters())
        return adapter.to(device=param.device, dtype=param.dtype)

    def check_base(self, unet: nn.Module) -> None:
        found = base_signature(unet)
        # keys an older adapter file does not record are not checked
        diff = {k: (v, found.get(k)) for k, v in self.config.base.items() if found.get(k) != v}
        if diff:
            raise InputError(
                "model",
                "the U-Net architecture this BiDiff adapter was trained for",
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
        # IF also predicts a variance (channels after the image's): the noise channels only
        return out[:, : x.shape[2]].reshape(b, v, x.shape[2], *out.shape[2:])


def _cross_view_hook(xview: CrossViewAttention, views: int):
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.dim() == 3:  # SD: attn1 reads the block's normalised tokens [N, L, C]
            return output + xview(hidden, views)
        n, c, h, w = hidden.shape  # IF: the module normalises [N, C, H, W] maps itself; so do we
        tokens = module.group_norm(hidden.reshape(n, c, h * w)).transpose(1, 2)
        return output + xview(tokens, views).transpose(1, 2).reshape(n, c, h, w)

    return hook


def _view_hook(view: torch.Tensor):
    def hook(module, args, output):
        return output + view.to(output.dtype).repeat(output.shape[0] // view.shape[0], 1)

    return hook
