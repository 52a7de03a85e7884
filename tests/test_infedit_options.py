"""InfEdit: blend resolution chosen from the U-Net, and the official code's three choices as options
(replaced words take the source word's map, pads mapped by position, words in both blend lists)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from diffusers import UNet2DConditionModel
from papernodes.models.common import tiny
from papernodes.models.common.errors import InputError
from papernodes.models.common.loading import SDComponents
from papernodes.models.infedit.align import align_sequences, swap_replaced_words, token_alignment
from papernodes.models.infedit.blend import blend_factor, local_blend
from papernodes.models.infedit.pipeline import InfEditPipeline, InfEditSettings
from papernodes.models.proving_ground.zoo import WORLD_UNET

torch.set_num_threads(1)

SD15_BLOCKS = dict(
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    mid_block_type="UNetMidBlock2DCrossAttn",
)


@pytest.fixture(scope="module")
def pipe():
    return InfEditPipeline(tiny.build_tiny_components(seed=0))


def _image(seed=0, h=32, w=48):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


# ----- blend resolution ---------------------------------------------------------------------------------


def test_blend_factor_from_the_unet_config():
    assert blend_factor(SimpleNamespace(**SD15_BLOCKS)) == 4  # SD1.5: the 16x16 layers at 64x64 latents
    world = SimpleNamespace(**{**WORLD_UNET, "mid_block_type": "UNetMidBlock2DCrossAttn"})
    assert blend_factor(world) == 2  # not the 4x4 bottleneck
    mid_only = SimpleNamespace(
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        mid_block_type="UNetMidBlock2DCrossAttn",
    )
    assert blend_factor(mid_only) == 4
    with pytest.raises(ValueError, match="no cross-attention"):
        blend_factor(SimpleNamespace(**{**vars(mid_only), "mid_block_type": None}))


def test_world_unet_blends_at_8x8_and_the_maps_match_the_layer():
    """The proving-ground U-Net (16x16 latents): latent / 4 was its single 4x4 mid-block map (issue 19)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        **{**WORLD_UNET, "block_out_channels": (32, 32, 32), "cross_attention_dim": 48}
    )
    comps = tiny.build_tiny_components(seed=0)
    world = InfEditPipeline(
        SDComponents(unet, comps.vae, comps.text_encoder, comps.tokenizer, comps.scheduler_config)
    )
    assert world._blend_resolution((16, 16)) == (8, 8)
    assert world._blend_resolution((16, 24)) == (8, 12)
    # the maps collected for local blend really come from the layers of that size
    s = InfEditSettings(steps=3, target_blend_words="dog")
    seen = []
    from papernodes.models.infedit import control

    collect = control.CrossAttentionControl._collect
    try:
        control.CrossAttentionControl._collect = lambda self, call, p: (
            seen.append(call.resolution) or collect(self, call, p)
        )
        world(_image(0, 128, 128), "a cat", ["a dog"], s)
    finally:
        control.CrossAttentionControl._collect = collect
    assert seen and set(seen) == {(8, 8)}


# ----- replaced words: the source word's map (P2P word swap) ---------------------------------------------


def _naive_swap(pairs, n_src, src_states, tgt_states):
    """Reference: every gap, every (target, source) pair scored, the best one mapped."""
    out = list(pairs)
    anchors = [(-1, -1)] + [(j, i) for j, i in enumerate(pairs) if i is not None] + [(len(pairs), n_src)]
    for (j0, i0), (j1, i1) in itertools.pairwise(anchors):
        cands = [
            (float(torch.cosine_similarity(tgt_states[t], src_states[s], dim=0)), t, s)
            for t in range(j0 + 1, j1)
            for s in range(i0 + 1, i1)
        ]
        if cands:
            _, t, s = max(cands, key=lambda c: c[0])
            out[t] = s
    return out


def test_swap_matches_a_naive_reference():
    g = torch.Generator().manual_seed(0)
    cases = [
        ([0, 1, 2, 3], [0, 9, 2, 3]),  # one word swapped
        ([0, 1, 2, 3, 4], [0, 7, 8, 3, 4]),  # two words for two: one pair per gap (official)
        ([0, 1, 2], [0, 7, 1, 2]),  # insertion: no source word in the gap, stays new
        ([0, 5, 1, 2], [0, 7, 8, 9, 2]),  # gap of 3 target tokens against 2 source tokens
        ([0, 1, 2, 3], [0, 1, 2, 3]),  # identical
    ]
    for src, tgt in cases:
        for _ in range(5):
            s_states, t_states = torch.randn(len(src), 6, generator=g), torch.randn(len(tgt), 6, generator=g)
            pairs = align_sequences(src, tgt)
            got = swap_replaced_words(pairs, len(src), s_states, t_states)
            assert got == _naive_swap(pairs, len(src), s_states, t_states)
            assert all(got[j] == i for j, i in enumerate(pairs) if i is not None)  # anchors untouched
    pairs = align_sequences([0, 1, 2], [0, 7, 1, 2])
    assert swap_replaced_words(pairs, 3, torch.randn(3, 4), torch.randn(4, 4)) == [0, None, 1, 2]


def test_swap_gives_the_replaced_word_the_source_words_column(pipe):
    tok, enc = pipe.components.tokenizer, pipe.components.text_encoder
    src, tgt = "a black star and a red cross", "a green star and a red cross"
    s_ids, t_ids = tok(src).input_ids, tok(tgt).input_ids
    with torch.no_grad():
        states = enc(torch.tensor([s_ids + [0] * (77 - len(s_ids)), t_ids + [0] * (77 - len(t_ids))]))[0]
    new = token_alignment(s_ids, t_ids)
    swap = token_alignment(s_ids, t_ids, replaced_words="swap", src_states=states[0], tgt_states=states[1])
    assert new.alphas[2] == 0 and swap.alphas[2] == 1 and swap.mapper[2] == 2  # "green" <- "black"
    same = [j for j in range(77) if j != 2]
    assert torch.equal(new.mapper[same], swap.mapper[same]) and torch.equal(
        new.alphas[same], swap.alphas[same]
    )
    with pytest.raises(ValueError, match="text-encoder states"):
        token_alignment(s_ids, t_ids, replaced_words="swap")


# ----- padding ------------------------------------------------------------------------------------------


def test_pad_mappings():
    src, tgt = [49406, 1, 2, 3, 49407], [49406, 1, 9, 2, 3, 49407]  # target one token longer
    pads, pos = token_alignment(src, tgt), token_alignment(src, tgt, pad_mapping="position")
    n = len(tgt)
    assert pads.mapper[n:].tolist() == [len(src) + k for k in range(77 - n)]  # k-th pad -> k-th pad
    assert pos.mapper[n:].tolist() == list(range(n, 77))  # column j -> column j
    assert (pads.alphas[n:] == 1).all() and (pos.alphas[n:] == 1).all()
    assert torch.equal(pads.mapper[:n], pos.mapper[:n]) and torch.equal(pads.alphas, pos.alphas)
    eq = [49406, 1, 2, 3, 49407], [49406, 1, 8, 3, 49407]  # equal lengths: the two rules agree
    assert torch.equal(token_alignment(*eq).mapper, token_alignment(*eq, pad_mapping="position").mapper)


# ----- words in both blend lists ------------------------------------------------------------------------


def test_local_blend_shared_mask_matches_a_per_pixel_reference():
    g = torch.Generator().manual_seed(0)
    x_t, x_m, x_s = (torch.randn(1, 4, 5, 5, generator=g) for _ in range(3))
    m_e, m_s, m_sh = (torch.rand(5, 5, generator=g) > 0.5 for _ in range(3))
    out = local_blend(x_t, x_m, x_s, m_e, m_s, m_sh)
    for r, c in itertools.product(range(5), range(5)):
        want = x_m if m_sh[r, c] else x_s if m_s[r, c] else x_t if m_e[r, c] else x_m
        assert torch.equal(out[..., r, c], want[..., r, c])
    assert torch.equal(local_blend(x_t, x_m, x_s, m_e, m_s, None), local_blend(x_t, x_m, x_s, m_e, m_s))


def test_blend_positions_split_the_shared_words(pipe):
    src, tgt = "a red star and a cross", "a blue star and a cross"
    keep = InfEditSettings()
    layout = InfEditSettings(shared_blend_words="edit_then_layout")
    tok = pipe.components.tokenizer
    star_s = tok(src).input_ids.index(tok("star", add_special_tokens=False).input_ids[0])
    cross_s = tok(src).input_ids.index(tok("cross", add_special_tokens=False).input_ids[0])
    assert pipe._blend_positions(src, tgt, "star cross", "blue star", keep) == (
        [star_s, cross_s],
        [2, 3],
        None,
    )
    assert pipe._blend_positions(src, tgt, "star cross", "blue star", layout) == ([cross_s], [2, 3], [3])
    assert pipe._blend_positions(src, tgt, "star", "blue star", layout) == (None, [2, 3], [3])
    assert pipe._blend_positions(src, tgt, "cross", "blue star", layout) == ([cross_s], [2, 3], None)


def test_shared_rule_acts_only_on_shared_words(pipe):
    base = dict(steps=4, seed=3, target_blend_words="blue star")
    run = lambda **kw: pipe(
        _image(4), "a red star and a cross", ["a blue star and a cross"], InfEditSettings(**base, **kw)
    )  # noqa: E731
    # no word in both lists: the two rules are the same computation
    a = run(source_blend_words="cross").edited
    b = run(source_blend_words="cross", shared_blend_words="edit_then_layout").edited
    assert torch.equal(a, b)
    # "star" in both: keep_source lets the source mask undo the edit there, edit_then_layout does not
    c = run(source_blend_words="star").edited
    d = run(source_blend_words="star", shared_blend_words="edit_then_layout").edited
    assert (c - d).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["replaced_words", "pad_mapping", "shared_blend_words"])
def test_bad_choice_names_the_input(pipe, name):
    with pytest.raises(InputError, match=f"Input '{name}'"):
        pipe(_image(), "a cat", ["a dog"], InfEditSettings(steps=1, **{name: "bogus"}))


def test_official_choices_run_and_reconstruct(pipe):
    """Target = source, equal guidance: z0 exactly, whatever the choices."""
    from papernodes.models.infedit.pipeline import OFFICIAL_CHOICES

    s = InfEditSettings(steps=3, source_guidance=1.5, target_guidance=1.5, source_blend_words="star",
                        target_blend_words="star", **OFFICIAL_CHOICES)  # fmt: skip
    r = pipe(_image(5), "a red star on stripes", ["a red star on stripes"], s)
    torch.testing.assert_close(r.latents, r.z0, atol=1e-5, rtol=0)


def test_edit_nodes_offer_the_choices_and_pass_them_on(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "folder_paths", types.ModuleType("folder_paths"))
    from papernodes.models.infedit.pipeline import CHOICES
    from papernodes.nodes import infedit as nodes

    for node in (nodes.EditImage, nodes.EditList):
        optional = node.INPUT_TYPES()["optional"]
        assert {k: tuple(v[0]) for k, v in optional.items()} == CHOICES
        assert all(v[1]["default"] == getattr(InfEditSettings(), k) for k, v in optional.items())
    fields = dict(steps=3, source_guidance=1.0, target_guidance=2.0, cross_replace=0.7, self_replace=0.3,
                  thresh_e=0.6, thresh_m=0.6, eta=1.0, seed=0, resize_mode="pad")  # fmt: skip
    official = dict(replaced_words="swap", pad_mapping="position", shared_blend_words="edit_then_layout")
    s = nodes._settings({**fields, **official}, "star", "green star")
    assert (s.replaced_words, s.pad_mapping, s.shared_blend_words) == tuple(official.values())
    assert (s.source_blend_words, s.target_blend_words) == ("star", "green star")
    d = nodes._settings(fields, "", "")  # an API prompt written before the choices existed
    assert (d.replaced_words, d.pad_mapping, d.shared_blend_words) == (
        InfEditSettings().replaced_words,
        InfEditSettings().pad_mapping,
        InfEditSettings().shared_blend_words,
    )
