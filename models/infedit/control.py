"""Unified Attention Control (InfEdit Sec. 4) as hooks on the pack's one attention processor.

Batch layout of every U-Net call, per classifier-free-guidance half (uncond first, then cond):
    [source, target_1 .. target_N, layout_1 .. layout_N]
Layout ("mutual") branch i runs on the source prompt and gives target i its layout. The unconditional
half may leave out the source and the layouts (`BranchLayout.uncond_source / uncond_layouts`): with
source guidance 1 their unconditional outputs are never used, and no other row reads the layouts; the
source row is read by the targets' self-attention only while p < self_replace. Leaving out a row nobody
reads changes no other row.

Self-attention (all layers, both halves), with p = step progress in (0, 1]:
    p <  self_replace: target_i = softmax(Q_s K_s^T) V_ti;  layout_i = Attn(Q_s, K_s, V_s)
    p >= self_replace: target_i = its own attention;       layout_i = Attn(Q_ti, K_s, V_s)  (mutual)
Cross-attention (conditional half only): while p <= cross_replace, target_i's maps become the source's,
mapped through the token alignment (aligned tokens alpha 1, new tokens keep their own, alpha 0). The
layout branches' cross-attention is never modified.
Maps for local blend are accumulated at the blend resolution: the source's own (for source words) and,
for target words, alpha * (layout map, aligned) + (1 - alpha) * (target's own map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...kernels.processor import AttentionHook, AttnCall


@dataclass(frozen=True)
class HalfRows:
    """Batch rows of one CFG half: the source's (None when left out), each target's, each layout's."""

    source: int | None
    targets: list[int]
    layouts: list[int]


@dataclass
class BranchLayout:
    num_targets: int
    cfg: bool
    uncond_source: bool = True  # the unconditional half carries the source row
    uncond_layouts: bool = True  # ... and the layout rows

    @property
    def items(self) -> int:
        """Branches: the source, each target, each layout (the conditional half's rows)."""
        return 1 + 2 * self.num_targets

    @property
    def uncond_branches(self) -> list[int]:
        """Branch index (0 source, 1.. targets, then layouts) of each unconditional row, in row order."""
        if not self.cfg:
            return []
        n = self.num_targets
        return (
            ([0] if self.uncond_source else [])
            + list(range(1, 1 + n))
            + (list(range(1 + n, 1 + 2 * n)) if self.uncond_layouts else [])
        )

    @property
    def cond_offset(self) -> int:
        return len(self.uncond_branches)

    def halves(self) -> list[HalfRows]:
        """Row indices of each CFG half, unconditional first."""
        cond = self._half(self.cond_offset, list(range(self.items)))
        if not self.cfg:
            return [cond]
        return [self._half(0, self.uncond_branches), cond]

    def _half(self, offset: int, branches: list[int]) -> HalfRows:
        row = {b: offset + r for r, b in enumerate(branches)}
        n = self.num_targets
        return HalfRows(
            source=row.get(0),
            targets=[row[self.target(i)] for i in range(n)],
            layouts=[row[self.layout(i)] for i in range(n) if self.layout(i) in row],
        )

    def target(self, i: int) -> int:
        return 1 + i

    def layout(self, i: int) -> int:
        return 1 + self.num_targets + i


class SelfAttentionControl(AttentionHook):
    def __init__(self, layout: BranchLayout, self_replace: float):
        self.layout, self.self_replace = layout, self_replace

    def reads_source(self, progress: float) -> bool:
        """Whether the targets take the source's queries and keys at this step progress (p < self_replace)."""
        return progress < self.self_replace

    def modify_qkv(self, call: AttnCall) -> None:
        if call.is_cross or call.is_temporal:
            return
        early = self.reads_source(call.state.progress)
        q_idx = list(range(call.q.shape[0]))
        k_idx, v_idx = list(q_idx), list(q_idx)
        for half in self.layout.halves():
            src = half.source
            if src is None and (early or half.layouts):
                raise ValueError("the source row was left out of a CFG half whose rows read it")
            for t in half.targets:
                if early:
                    q_idx[t], k_idx[t] = src, src
            for t, m in zip(half.targets, half.layouts):
                q_idx[m] = src if early else t
                k_idx[m], v_idx[m] = src, src
        call.q, call.k, call.v = call.q[q_idx], call.k[k_idx], call.v[v_idx]


@dataclass
class BlendMaps:
    """Cross-attention maps at the blend resolution, summed over layers and steps."""

    resolution: tuple[int, int] | None = None
    source: torch.Tensor | None = None  # [Lq, 77]
    targets: list[torch.Tensor] = field(default_factory=list)  # per target [Lq, 77]
    layers_seen: int = 0


class CrossAttentionControl(AttentionHook):
    def __init__(
        self,
        layout: BranchLayout,
        mappers: list[torch.Tensor],
        alphas: list[torch.Tensor],
        cross_replace: float,
        blend_resolution: tuple[int, int] | None,
        collect_maps: bool,
    ):
        self.layout, self.mappers, self.alphas = layout, mappers, alphas
        self.cross_replace = cross_replace
        self.blend_resolution = blend_resolution
        self.collect_maps = collect_maps
        self.maps = BlendMaps(resolution=blend_resolution)

    def _per_head_probs(self, call: AttnCall, item: int) -> torch.Tensor:
        q, k = call.q[item : item + 1].float(), call.k[item : item + 1].float()
        return torch.softmax(q @ k.transpose(-1, -2) * call.scale, dim=-1)  # [1, H, Lq, Lk]

    def supplied_probs(self, call: AttnCall):
        if not call.is_cross:
            return None
        lay = self.layout
        c0 = lay.cond_offset
        replace = call.state.progress <= self.cross_replace
        collect = self.collect_maps and call.resolution == self.blend_resolution
        if not (replace or collect):
            return None
        p_src = self._per_head_probs(call, c0)
        if collect:
            self._collect(call, p_src)
        if not replace:
            return None
        b, h, lq, lk = call.q.shape[0], p_src.shape[1], call.q.shape[2], call.k.shape[2]
        probs = torch.zeros(b, h, lq, lk, dtype=p_src.dtype, device=p_src.device)
        weights = torch.zeros(b, lk, dtype=p_src.dtype, device=p_src.device)
        for i in range(lay.num_targets):
            row = c0 + lay.target(i)
            probs[row] = p_src[0][..., self.mappers[i].to(p_src.device)]
            weights[row] = self.alphas[i].to(p_src.device)
        return probs, weights

    def _collect(self, call: AttnCall, p_src: torch.Tensor) -> None:
        lay, c0 = self.layout, self.layout.cond_offset
        m = self.maps
        src = p_src[0].mean(0)
        m.source = src if m.source is None else m.source + src
        for i in range(lay.num_targets):
            own = self._per_head_probs(call, c0 + lay.target(i))[0].mean(0)
            layout = self._per_head_probs(call, c0 + lay.layout(i))[0].mean(0)
            alpha = self.alphas[i].to(own.device)
            mixed = alpha * layout[:, self.mappers[i].to(own.device)] + (1 - alpha) * own
            if len(m.targets) <= i:
                m.targets.append(mixed)
            else:
                m.targets[i] = m.targets[i] + mixed
        m.layers_seen += 1
