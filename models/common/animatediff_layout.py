"""AnimateDiff motion-module key layouts: original (guoyww/AnimateDiff `mm_sd_v15*.ckpt`) <-> diffusers.

Both layouts hold the same tensors; only names differ. Per motion module (`<block>.motion_modules.<j>`):

    original                                                diffusers (MotionAdapter)
    temporal_transformer.{norm,proj_in,proj_out}.*          {norm,proj_in,proj_out}.*
    ....transformer_blocks.<k>.attention_blocks.0.*         transformer_blocks.<k>.attn1.*
    ....transformer_blocks.<k>.attention_blocks.1.*         transformer_blocks.<k>.attn2.*
    ....transformer_blocks.<k>.attention_blocks.<a>.pos_encoder.pe   transformer_blocks.<k>.pos_embed.pe
    ....transformer_blocks.<k>.norms.{0,1}.*                transformer_blocks.<k>.{norm1,norm2}.*
    ....transformer_blocks.<k>.ff_norm.*                    transformer_blocks.<k>.norm3.*
    ....transformer_blocks.<k>.ff.net.{0.proj,2}.*          (same)

The original file keeps one sinusoidal table per attention block (both equal); diffusers keeps one per
transformer block and adds it before both attentions, which is the same computation.
The MotionAdapter config is not stored in original files: it is inferred here from tensor shapes.
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch

from .errors import WeightsFormatError

# AnimateDiff's motion modules use 8 heads and 32 norm groups (AnimateDiff, Sec. 4.2 / its configs);
# neither is visible in tensor shapes, so they are the defaults of the inferred config.
ANIMATEDIFF_HEADS = 8
ANIMATEDIFF_NORM_GROUPS = 32

_MODULE = re.compile(
    r"^(?P<block>down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.(?P<j>\d+)\.(?P<rest>.+)$"
)
_ORIG_INNER = re.compile(
    r"^transformer_blocks\.(?P<k>\d+)\.(?P<name>attention_blocks\.\d+|norms\.\d+|ff_norm)\.(?P<tail>.+)$"
)
_DIFF_INNER = re.compile(
    r"^transformer_blocks\.(?P<k>\d+)\.(?P<name>attn[12]|norm[123]|pos_embed)\.(?P<tail>.+)$"
)
_ORIG_TO_DIFF = {
    "attention_blocks.0": "attn1",
    "attention_blocks.1": "attn2",
    "norms.0": "norm1",
    "norms.1": "norm2",
    "ff_norm": "norm3",
}
_DIFF_TO_ORIG = {v: k for k, v in _ORIG_TO_DIFF.items()}
TEMPORAL = "temporal_transformer."
EXAMPLE_ORIGINAL_KEY = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
EXAMPLE_DIFFUSERS_KEY = "down_blocks.0.motion_modules.0.proj_in.weight"


def detect_layout(sd: dict[str, torch.Tensor]) -> str:
    """'original', 'diffusers' or 'unknown' (neither layout's motion-module keys are present)."""
    modules = [m for k in sd if (m := _MODULE.match(k))]
    if not modules:
        return "unknown"
    if any(m["rest"].startswith(TEMPORAL) for m in modules):
        return "original"
    return "diffusers"


def original_to_diffusers(
    sd: dict[str, torch.Tensor], source: str = "motion module"
) -> dict[str, torch.Tensor]:
    """Rename original AnimateDiff keys to MotionAdapter keys (diffusers-layout keys pass through)."""
    out: dict[str, torch.Tensor] = {}
    pes: dict[str, list[tuple[str, torch.Tensor]]] = defaultdict(list)
    for key, value in sd.items():
        m = _MODULE.match(key)
        if m is None or not m["rest"].startswith(TEMPORAL):
            out[key] = value  # conv_in (PIA) or already diffusers layout; strict loading judges the rest
            continue
        prefix = f"{m['block']}.motion_modules.{m['j']}."
        rest = m["rest"][len(TEMPORAL) :]
        inner = _ORIG_INNER.match(rest)
        if inner is None:
            out[prefix + rest] = value
        elif inner["tail"] == "pos_encoder.pe":
            pes[f"{prefix}transformer_blocks.{inner['k']}.pos_embed.pe"].append((key, value))
        elif inner["name"] in _ORIG_TO_DIFF:
            out[f"{prefix}transformer_blocks.{inner['k']}.{_ORIG_TO_DIFF[inner['name']]}.{inner['tail']}"] = (
                value
            )
        else:
            raise WeightsFormatError(f"{source}: unexpected motion-module key {key!r}")
    for new_key, tables in pes.items():
        first_key, first = tables[0]
        for other_key, other in tables[1:]:
            same = other.shape == first.shape and (first.is_meta or torch.equal(other, first))
            if not same:
                raise WeightsFormatError(
                    f"{source}: positional tables {first_key!r} and {other_key!r} differ; the diffusers "
                    "motion module shares one table between its two temporal attentions"
                )
        out[new_key] = first
    return out


def diffusers_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `original_to_diffusers`: the key layout of guoyww/AnimateDiff's motion-module files."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _MODULE.match(key)
        if m is None:
            out[key] = value
            continue
        prefix = f"{m['block']}.motion_modules.{m['j']}.{TEMPORAL}"
        inner = _DIFF_INNER.match(m["rest"])
        if inner is None:
            out[prefix + m["rest"]] = value
        elif inner["name"] == "pos_embed":  # one table per attention block in the original layout
            for a in (0, 1):  # own copies: safetensors refuses tensors that share memory
                pe = value if a == 0 else value.clone()
                out[f"{prefix}transformer_blocks.{inner['k']}.attention_blocks.{a}.pos_encoder.pe"] = pe
        else:
            out[f"{prefix}transformer_blocks.{inner['k']}.{_DIFF_TO_ORIG[inner['name']]}.{inner['tail']}"] = (
                value
            )
    return out


def _one_or_tuple(values: list[int]) -> int | tuple[int, ...]:
    return values[0] if len(set(values)) == 1 else tuple(values)


def infer_motion_config(sd: dict[str, torch.Tensor], source: str = "motion module") -> dict:
    """MotionAdapter config from diffusers-layout tensor shapes (channels, layer counts, pe length)."""
    channels: dict[str, int] = {}
    modules: dict[str, set[int]] = defaultdict(set)
    layers: dict[tuple[str, int], set[int]] = defaultdict(set)
    pe_len: set[int] = set()
    for key, value in sd.items():
        m = _MODULE.match(key)
        if m is None:
            continue
        block, j, rest = m["block"], int(m["j"]), m["rest"]
        modules[block].add(j)
        if rest == "norm.weight":
            channels[block] = int(value.shape[0])
        if (inner := _DIFF_INNER.match(rest)) or rest.startswith("transformer_blocks."):
            layers[(block, j)].add(int(rest.split(".")[1]))
            if inner is not None and inner["name"] == "pos_embed":
                pe_len.add(int(value.shape[1]))
    n_down = len([b for b in modules if b.startswith("down_blocks.")])
    downs = [f"down_blocks.{i}" for i in range(n_down)]
    ups = [f"up_blocks.{i}" for i in range(n_down)]
    missing = [b for b in downs + ups if b not in channels]
    if n_down == 0 or missing:
        raise WeightsFormatError(
            f"{source}: incomplete motion module, no 'norm.weight' for blocks {missing or ['down_blocks.0']}; "
            f"expected down_blocks.0..N-1 and up_blocks.0..N-1 motion modules (keys like {EXAMPLE_ORIGINAL_KEY!r})"
        )
    if len(pe_len) > 1:
        raise WeightsFormatError(f"{source}: positional tables of different lengths {sorted(pe_len)}")
    block_out = [channels[b] for b in downs]
    if [channels[b] for b in ups] != block_out[::-1]:
        raise WeightsFormatError(
            f"{source}: up-block channels {[channels[b] for b in ups]} do not mirror {block_out}"
        )
    per_block = [len(modules[b]) for b in downs]
    if [len(modules[b]) for b in ups] != [n + 1 for n in per_block[::-1]]:
        raise WeightsFormatError(
            f"{source}: up blocks must hold one motion module more than their down block "
            f"(down {per_block}, up {[len(modules[b]) for b in ups]})"
        )

    def depth(block: str) -> int:
        counts = {len(layers[(block, j)]) for j in modules[block]}
        if len(counts) != 1:
            raise WeightsFormatError(f"{source}: {block} motion modules differ in depth {sorted(counts)}")
        return counts.pop()

    cfg = dict(
        block_out_channels=tuple(block_out),
        motion_layers_per_block=_one_or_tuple(per_block),
        motion_transformer_layers_per_block=_one_or_tuple([depth(b) for b in downs]),
        motion_num_attention_heads=ANIMATEDIFF_HEADS,
        motion_norm_num_groups=ANIMATEDIFF_NORM_GROUPS,
        motion_max_seq_length=pe_len.pop() if pe_len else 32,
        use_motion_mid_block="mid_block" in modules,
        conv_in_channels=int(sd["conv_in.weight"].shape[1]) if "conv_in.weight" in sd else None,
    )
    if cfg["use_motion_mid_block"]:
        cfg["motion_mid_block_layers_per_block"] = len(modules["mid_block"])
        cfg["motion_transformer_layers_per_mid_block"] = depth("mid_block")
    return cfg
