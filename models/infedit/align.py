"""Token alignment between the source and target prompts (InfEdit Sec. 4.2, after Prompt-to-Prompt).

A global (Needleman-Wunsch) alignment of the two token sequences with match +1, mismatch -1, gap 0:
tokens of the target that align to an identical source token are "aligned" (alpha 1: they take the
source's cross-attention map); every other target token is "new" (alpha 0: it keeps its own map).
With gap 0 a swapped word costs less as delete + insert than as a mismatch, so replaced, inserted and
reordered words are all new tokens, as in Prompt-to-Prompt's refinement mapper.

Two choices differ in the official InfEdit code and are options here (measured on the proving ground,
docs/infedit.md):
- `replaced_words`: "new" keeps replaced words as new tokens; "swap" gives, in each gap between aligned
  anchors that has tokens on both sides, the most similar (target, source) pair (cosine of the text
  encoder's states) alpha 1, so e.g. "green" takes the map of the "black" it replaces (P2P word swap).
- `pad_mapping`: "pads" maps the k-th target pad to the source's k-th pad; "position" maps target column
  j to source column j (they differ only when the prompts' token counts differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MATCH, MISMATCH, GAP = 1, -1, 0


@dataclass
class TokenAlignment:
    mapper: torch.Tensor  # [77] long: source column for each target column
    alphas: torch.Tensor  # [77] float: 1 = aligned (take the source map), 0 = new token


def align_sequences(src: list[int], tgt: list[int]) -> list[int | None]:
    """For each target position, the index of the aligned identical source token, or None."""
    n, m = len(src), len(tgt)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        score[i][0] = i * GAP
    for j in range(1, m + 1):
        score[0][j] = j * GAP
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = score[i - 1][j - 1] + (MATCH if src[i - 1] == tgt[j - 1] else MISMATCH)
            score[i][j] = max(diag, score[i - 1][j] + GAP, score[i][j - 1] + GAP)
    result: list[int | None] = [None] * m
    i, j = n, m
    while i > 0 and j > 0:  # traceback, preferring matches so equal tokens pair up
        if src[i - 1] == tgt[j - 1] and score[i][j] == score[i - 1][j - 1] + MATCH:
            result[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif score[i][j] == score[i][j - 1] + GAP:
            j -= 1
        elif score[i][j] == score[i - 1][j] + GAP:
            i -= 1
        else:  # mismatch on the diagonal
            i, j = i - 1, j - 1
    return result


REPLACED_WORDS = ("new", "swap")
PAD_MAPPINGS = ("pads", "position")


def swap_replaced_words(
    pairs: list[int | None], n_src: int, src_states: torch.Tensor, tgt_states: torch.Tensor
) -> list[int | None]:
    """Pair one replaced word per gap with the source word it replaces (most similar text states).

    A gap is a maximal run of unaligned target tokens; its source side is the source tokens strictly
    between the anchors' source positions. Gaps with no source token (pure insertions) stay new.
    """
    out = list(pairs)
    j = 0
    while j < len(pairs):
        if pairs[j] is not None:
            j += 1
            continue
        start = j
        while j < len(pairs) and pairs[j] is None:
            j += 1
        lo = pairs[start - 1] + 1 if start > 0 else 0
        hi = pairs[j] if j < len(pairs) else n_src
        if lo >= hi:
            continue
        t = torch.nn.functional.normalize(tgt_states[start:j].float(), dim=-1)
        s = torch.nn.functional.normalize(src_states[lo:hi].float(), dim=-1)
        best = int((t @ s.T).argmax())
        out[start + best // (hi - lo)] = lo + best % (hi - lo)
    return out


def token_alignment(
    src_ids: list[int],
    tgt_ids: list[int],
    length: int = 77,
    replaced_words: str = "new",
    pad_mapping: str = "pads",
    src_states: torch.Tensor | None = None,
    tgt_states: torch.Tensor | None = None,
) -> TokenAlignment:
    """Alignment over full (BOS ... EOS) token id lists, extended to the padded `length`.

    `src_states` / `tgt_states` ([length, C] text-encoder states) are needed for replaced_words="swap".
    """
    if replaced_words not in REPLACED_WORDS:
        raise ValueError(f"replaced_words must be one of {REPLACED_WORDS}, got {replaced_words!r}")
    if pad_mapping not in PAD_MAPPINGS:
        raise ValueError(f"pad_mapping must be one of {PAD_MAPPINGS}, got {pad_mapping!r}")
    pairs = align_sequences(src_ids, tgt_ids)
    if replaced_words == "swap":
        if src_states is None or tgt_states is None:
            raise ValueError('replaced_words="swap" needs the text-encoder states of both prompts')
        pairs = swap_replaced_words(pairs, len(src_ids), src_states, tgt_states)
    mapper = torch.zeros(length, dtype=torch.long)
    alphas = torch.zeros(length)
    for j, i in enumerate(pairs):
        if i is not None:
            mapper[j], alphas[j] = i, 1.0
        else:
            mapper[j] = min(j, length - 1)
    for j in range(len(tgt_ids), length):  # padding (alpha 1)
        k = j if pad_mapping == "position" else len(src_ids) + j - len(tgt_ids)
        mapper[j], alphas[j] = min(k, length - 1), 1.0
    return TokenAlignment(mapper, alphas)


def word_token_positions(tokenizer, prompt: str, words: str) -> list[int]:
    """Token positions (in the padded sequence, BOS = 0) of each word of `words` inside `prompt`.

    Raises ValueError naming the word when it is not in the prompt.
    """
    ids = tokenizer(prompt).input_ids
    positions: list[int] = []
    for word in words.replace(",", " ").split():
        word_ids = tokenizer(word, add_special_tokens=False).input_ids
        found = [p for p in range(1, len(ids) - len(word_ids) + 1) if ids[p : p + len(word_ids)] == word_ids]
        if not found:
            raise ValueError(f"blend word {word!r} does not occur in the prompt {prompt!r}")
        for p in found:
            positions.extend(range(p, p + len(word_ids)))
    return sorted(set(positions))
