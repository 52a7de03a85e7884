"""A ControlNet for U-Nets that diffusers' `ControlNetModel` cannot copy (DeepFloyd IF stage I's).

ControlNet (Zhang et al. 2023, Sec. 3.2): a trainable copy of the base U-Net's encoder (input convolution,
time/text embeddings, down blocks, middle block), the condition added after the input convolution through a
small network whose last layer is zero, and a zero 1x1 convolution on every skip and on the middle output.
`ControlNetModel.from_unet` builds that only for SD-family blocks; IF's U-Net has `SimpleCrossAttn` blocks, a
`UNetMidBlock2DSimpleCrossAttn`, scale-shift resnets and a text-pooled embedding, none of which it copies.

Here the copy IS the base's class: a `UNet2DConditionModel` from the same config and weights with its
decoder removed (no up blocks, no output head), so every embedding and block behaves exactly as the base's.
Its skips and middle output are read with forward hooks during its own forward pass.

Our interpretation: the condition embedding keeps the resolution when the condition is at the sample's
resolution (IF works in pixels: renders and views are both 64 px), four 3x3 convolutions 16-32-96-C as
ControlNet's E(.) without its stride-2 steps.
"""

from __future__ import annotations

import torch
from torch import nn

CONDITION_WIDTHS = (16, 32, 96)


class ConditionEmbedding(nn.Module):
    """Condition image [N, c, H, W] -> features [N, C, H, W]; zero at the start."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        layers, width = [], channels
        for nxt in CONDITION_WIDTHS:
            layers += [nn.Conv2d(width, nxt, 3, padding=1), nn.SiLU()]
            width = nxt
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(condition))


def skip_widths(config) -> list[int]:
    """Channel counts of the U-Net's encoder skips, in the order its forward collects them."""
    widths, out = [config["block_out_channels"][0]], config["block_out_channels"]
    for i, width in enumerate(out):
        widths += [width] * config["layers_per_block"]
        if i < len(out) - 1:
            widths.append(width)
    return widths


class EncoderControlNet(nn.Module):
    """forward(sample, t, text, condition) -> (skip residuals, middle residual), as ControlNetModel's."""

    def __init__(self, unet_config: dict, condition_channels: int = 3):
        """The encoder's weights are left unset (they come from the base in `from_unet`, or from the adapter
        file): it is built on the meta device, so the decoder of an IF-I-XL-size U-Net (4.3 B parameters in
        all) is never allocated just to be dropped."""
        super().__init__()
        from accelerate import init_empty_weights
        from diffusers import UNet2DConditionModel

        with init_empty_weights():
            encoder = UNet2DConditionModel.from_config(unet_config)
        _drop_decoder(encoder)
        self.encoder = encoder.to_empty(device="cpu")
        config = self.encoder.config
        self.condition = ConditionEmbedding(condition_channels, config.block_out_channels[0])
        self.skips = nn.ModuleList(nn.Conv2d(w, w, 1) for w in skip_widths(config))
        self.middle = nn.Conv2d(config.block_out_channels[-1], config.block_out_channels[-1], 1)
        for conv in (*self.skips, self.middle):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    @classmethod
    def from_unet(cls, unet: nn.Module, condition_channels: int = 3) -> EncoderControlNet:
        """The copy starts as the base's encoder, weight for weight (ControlNet's initialisation)."""
        net = cls(dict(unet.config), condition_channels)
        own = net.encoder.state_dict()
        net.encoder.load_state_dict({k: v for k, v in unet.state_dict().items() if k in own})
        return net

    @property
    def time_embedding(self) -> nn.Module:
        return self.encoder.time_embedding

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, return_dict=False):
        """`return_dict` is accepted for ControlNetModel's call signature; the result is always a tuple."""
        enc = self.encoder
        skips: list[torch.Tensor] = []
        middle: list[torch.Tensor] = []

        def after_conv_in(module, args, output):
            output = output + self.condition(controlnet_cond.to(output.dtype))
            skips.append(output)
            return output

        hooks = [enc.conv_in.register_forward_hook(after_conv_in)]
        hooks += [b.register_forward_hook(lambda m, a, out: skips.extend(out[1])) for b in enc.down_blocks]
        hooks.append(enc.mid_block.register_forward_hook(lambda m, a, out: middle.append(out)))
        try:
            enc(sample, timestep, encoder_hidden_states=encoder_hidden_states)
        finally:
            for hook in hooks:
                hook.remove()
        return [conv(s) for conv, s in zip(self.skips, skips, strict=True)], self.middle(middle[0])


def _drop_decoder(unet: nn.Module) -> None:
    """Keep the encoder only: the forward pass then ends at the middle block (the head becomes identity)."""
    unet.up_blocks = nn.ModuleList()
    unet.conv_norm_out = None
    unet.conv_act = None
    unet.conv_out = nn.Identity()
