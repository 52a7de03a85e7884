"""Proving ground: the image world (determinism, captions, masks, edit pairs, splits) and its evaluators
(Fréchet distance, the shipped attribute classifier, world-FID, prompt accuracy)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from papernodes.models.proving_ground import classifier as C
from papernodes.models.proving_ground import world as W
from PIL import Image

torch.set_num_threads(1)

B, Obj = W.Background, W.WorldObject
# sha256 of the first 50 train captions of seed 11, as drawn before layouts and palettes were added
DEFAULT_CAPTIONS_DIGEST = "4d3cfa8d1fa83a1e"


def _scenes(n: int, seed: int = 11, split: str = "train") -> list[W.Scene]:
    ds = W.WorldDataset(n, seed, split)
    return [ds.scene(i) for i in range(n)]


@pytest.fixture(scope="module")
def scenes() -> list[W.Scene]:
    return _scenes(300)


@pytest.fixture(scope="module")
def shipped():
    report = json.loads(C.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    return C.load_classifier(), report


@pytest.fixture(scope="module")
def heldout():
    """The first 2*TEST_SCENES held-out scenes of the evaluation seed, and their renders."""
    n = 2 * C.TEST_SCENES
    ds = W.WorldDataset(n, C.EVAL_SEED, "heldout")
    sc = [ds.scene(i) for i in range(n)]
    return sc, np.stack([W.render(s) for s in sc])


# ------------------------------------------------------------------------------------------- world


def test_deterministic_by_seed_and_index():
    a, b = W.WorldDataset(6, 3, "train"), W.WorldDataset(6, 3, "train")
    for i in (0, 5, 2):  # any order: an item depends only on (seed, split, index)
        x, y = a[i], b[i]
        assert x["image"].tobytes() == y["image"].tobytes()
        assert x["caption"] == y["caption"] and x["attributes"] == y["attributes"]
        assert x["masks"].tobytes() == y["masks"].tobytes() and x["gray"].tobytes() == y["gray"].tobytes()
    s1 = W.sample_scene(np.random.default_rng(5))
    assert W.render(s1).tobytes() == W.render(W.sample_scene(np.random.default_rng(5))).tobytes()
    other = W.WorldDataset(6, 4, "train")
    assert all(a[i]["image"].tobytes() != other[i]["image"].tobytes() for i in range(6))
    item = a[0]
    assert item["image"].shape == (128, 128, 3) and item["image"].dtype == np.uint8
    assert item["masks"].dtype == bool and item["masks"].shape == (len(item["scene"].objects), 128, 128)


def test_caption_grammar_examples():
    def obj(shape, color, x, y=64.0, size=14.0):
        return Obj(shape, color, x, y, size, 0.3)

    star = obj("star", "red", 40, size=20)
    cases = [
        (W.Scene((star,), B("blue", "striped")), "a red star on a striped blue background"),
        (
            W.Scene((obj("circle", "green", 30, size=18), obj("circle", "green", 90)), B("white", "solid")),
            "two green circles on a white background",
        ),
        (
            W.Scene((star, obj("ring", "blue", 95)), B("yellow", "checkered")),
            "a red star and a blue ring on a checkered yellow background",
        ),
        (
            W.Scene(
                (obj("square", "orange", 25, size=18), obj("ring", "pink", 70), obj("ring", "pink", 105)),
                B("orange", "gradient"),
            ),
            "an orange square and two pink rings on an orange gradient background",
        ),
        (
            W.Scene(
                (obj("cross", "black", 25, size=18), obj("triangle", "cyan", 65), obj("star", "white", 105)),
                B("purple", "dotted"),
            ),
            "a black cross, a cyan triangle and a white star on a dotted purple background",
        ),
    ]
    for scene, text in cases:
        assert W.caption(scene) == text
        parsed = W.parse_caption(text)
        assert parsed["groups"] == scene.groups()
        assert (parsed["bg_color"], parsed["bg_texture"]) == (
            scene.background.color,
            scene.background.texture,
        )
    with pytest.raises(ValueError):
        W.parse_caption("a red dragon on a blue background")


def test_captions_parse_back_to_attributes(scenes):
    kinds = set()
    for s in scenes:
        text = W.caption(s)
        labels = W.caption_labels(text)
        assert labels["groups"] == s.groups()
        for k, v in s.labels().items():
            assert labels[k] == v, (k, text)
        kinds.add((s.background.texture, len(s.objects), len(s.groups())))
    # the sample covers every texture and every object / group structure
    assert {k[0] for k in kinds} == set(W.TEXTURES)
    assert {(k[1], k[2]) for k in kinds} == {(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3)}
    assert {s.main.shape for s in scenes} == set(W.SHAPES) and {s.main.color for s in scenes} == set(W.COLORS)


def test_scene_layout_invariants(scenes):
    for s in scenes:
        assert 1 <= len(s.objects) <= 3
        for i, o in enumerate(s.objects):
            assert W.contrasts(o.color, s.background.color) and o.color != s.background.color
            assert W.EDGE_MARGIN <= o.x - o.size and o.x + o.size <= W.SIZE - W.EDGE_MARGIN
            assert W.EDGE_MARGIN <= o.y - o.size and o.y + o.size <= W.SIZE - W.EDGE_MARGIN
            if i:
                assert o.size * W.MAIN_RATIO <= s.main.size + 1e-9
            for p in s.objects[:i]:
                assert math.hypot(o.x - p.x, o.y - p.y) >= o.size + p.size + W.MIN_GAP - 1e-9


def test_default_layout_and_palette_draw_the_scenes_drawn_before_they_existed():
    """Held-out sets, the demo scene and the recorded evaluations depend on these exact draws."""
    first = [W.caption(s) for s in _scenes(4, seed=7, split="heldout")]
    assert first == [
        W.caption(W.sample_scene(W.scene_rng(7, "heldout", i), "full", "uniform")) for i in range(4)
    ]
    digest = hashlib.sha256("|".join(W.caption(s) for s in _scenes(50)).encode()).hexdigest()[:16]
    assert digest == DEFAULT_CAPTIONS_DIGEST


def test_focus_layout_is_one_group_of_one_or_two_large_objects():
    ds = W.WorldDataset(300, 11, "train", layout="focus")
    scenes = [ds.scene(i) for i in range(300)]
    counts = [len(s.objects) for s in scenes]
    assert set(counts) == {1, 2} and 0.6 < counts.count(1) / 300 < 0.8
    assert all(len(s.groups()) == 1 for s in scenes)  # "a red star", "two red stars"
    assert min(s.main.size for s in scenes) >= 22.0 * 0.9**3  # placement may shrink a pair a little
    assert np.mean([s.main.size for s in scenes]) > 1.3 * np.mean([s.main.size for s in _scenes(300)])
    for s in scenes:  # the full grammar's invariants hold
        assert all(W.contrasts(o.color, s.background.color) for o in s.objects)
        assert all(
            W.EDGE_MARGIN <= o.x - o.size and o.x + o.size <= W.SIZE - W.EDGE_MARGIN for o in s.objects
        )
    with pytest.raises(ValueError, match="layout"):
        W.WorldDataset(3, 0, layout="tiny")
    with pytest.raises(ValueError, match="palette"):
        W.sample_scene(np.random.default_rng(0), palette="vivid")


def test_prior_palette_makes_color_predictable_from_shape_and_texture():
    """With the prior, the best guess of a color from the shape (or the texture) alone is right most of the
    time; with the uniform palette it is near chance. That is what makes colorization learnable."""

    def best_guess_accuracy(pairs):
        by_key: dict = {}
        for key, color in pairs:
            by_key.setdefault(key, []).append(color)
        return sum(max(v.count(c) for c in set(v)) for v in by_key.values()) / len(pairs)

    for palette, lo, hi in (("prior", 0.7, 1.0), ("uniform", 0.0, 0.3)):
        ds = W.WorldDataset(400, 5, "train", palette=palette)
        scenes = [ds.scene(i) for i in range(400)]
        objects = best_guess_accuracy([(o.shape, o.color) for s in scenes for o in s.objects])
        backgrounds = best_guess_accuracy([(s.background.texture, s.background.color) for s in scenes])
        assert lo < objects < hi and lo < backgrounds < hi, (palette, objects, backgrounds)
    prior = [W.WorldDataset(400, 5, "train", palette="prior").scene(i) for i in range(400)]
    typical = np.mean([o.color == W.SHAPE_PRIOR_COLORS[o.shape] for s in prior for o in s.objects])
    assert 0.65 < typical < W.PRIOR_STRENGTH + 0.1  # taken at PRIOR_STRENGTH when it contrasts


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_masks_cover_the_object_pixels(scenes):
    for s in scenes[:40]:
        cov = W.object_coverage(s)
        img = W.render(s, cov).astype(np.float64)
        bg = np.rint(W.render_background(s.background))
        masks = W.object_masks(s)
        assert np.array_equal(masks, cov >= 0.5)
        assert masks.sum(0).max() <= 1 and cov.astype(bool).sum(0).max() <= 1  # disjoint footprints
        none = cov.sum(0) == 0
        assert np.array_equal(img[none], bg[none])  # untouched pixels are pure background
        for o, c, m in zip(s.objects, cov, masks):
            col = np.asarray(W.COLORS[o.color], np.float64)
            assert (c == 1).any() and np.array_equal(img[c == 1], np.broadcast_to(col, img[c == 1].shape))
            # each pixel is background + c * (color - background): in the mask it is at least as close to
            # the object's color as to the background, outside at least as close to the background (up to
            # uint8 rounding, which moves each distance by at most sqrt(3)/2)
            d_obj = np.linalg.norm(img - col, axis=-1)
            d_bg = np.linalg.norm(img - W.render_background(s.background), axis=-1)
            assert (d_obj[m] <= d_bg[m] + math.sqrt(3)).all()
            near = (c > 0) & ~m
            assert (d_bg[near] <= d_obj[near] + math.sqrt(3)).all()
            if o.shape == "circle":
                assert abs(m.sum() / (math.pi * (0.9 * o.size) ** 2) - 1) < 0.06


def test_a_larger_scale_renders_the_same_scene_on_finer_pixels(scenes, monkeypatch):
    """Scale 2 samples pixel p at world (p + (k + 0.5) / 4) / 2: exactly the 8 x 8 supersampling points of
    world pixel p // 2. So its 2 x 2 block means are the scale-1 image rendered with 8 x 8 samples (float
    sums in another order: 1e-5), and the textures and objects stay where the scene puts them."""

    def blocks(x):
        return x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, *x.shape[2:]).mean(axis=(1, 3))

    picked = [s for s in scenes[:60] if s.background.texture != "solid"][:6]
    picked += [dataclasses.replace(picked[0], background=B("blue", "gradient", angle=0.7))]
    fine = [(W.object_coverage(s, scale=2), W.render_background(s.background, scale=2)) for s in picked]
    assert fine[0][0].shape[1:] == (256, 256) and fine[0][1].shape == (256, 256, 3)
    monkeypatch.setattr(W, "SUPERSAMPLE", 8)
    for s, (cov2, bg2) in zip(picked, fine):
        cov1 = W.object_coverage(s)
        assert np.abs(blocks(cov2.transpose(1, 2, 0)) - cov1.transpose(1, 2, 0)).max() < 1e-5
        # textures: the same 8 x 8 points; the gradient is read at pixel centres and is linear between them
        assert np.abs(blocks(bg2) - W.render_background(s.background)).max() < 1e-3
    monkeypatch.undo()
    img = W.render(picked[0], scale=2)
    assert img.dtype == np.uint8 and img.shape == (256, 256, 3)
    assert np.array_equal(W.render(picked[0], scale=1), W.render(picked[0]))
    with pytest.raises(ValueError, match="scale"):
        W.render(picked[0], scale=0)


def test_grayscale_is_bt601():
    img = W.render(_scenes(1, seed=2)[0])
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for x in (img, noise):
        g = W.grayscale(x)
        assert g.shape == x.shape and g.dtype == np.uint8
        assert (g[..., 0] == g[..., 1]).all() and (g[..., 0] == g[..., 2]).all()
        assert np.array_equal(g[..., 0], np.asarray(Image.fromarray(x).convert("L")))
        y = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(g[..., 0] - y).max() <= 0.5 + 1e-9


def _words_changed(a: str, b: str) -> int:
    """Number of differing words between two same-length captions, not counting "a" <-> "an"."""
    wa, wb = a.split(), b.split()
    if len(wa) != len(wb):
        return -1
    return sum(x != y and {x, y} != {"a", "an"} for x, y in zip(wa, wb))


def _differing_fields(a, b) -> set[str]:
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


@pytest.mark.parametrize("kind", W.EDIT_KINDS)
@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_edit_pairs_change_exactly_one_attribute(scenes, kind):
    rng = np.random.default_rng(7)
    one_word = 0
    for s in scenes[:60]:
        e, src, tgt, idx = W.edit_pair(s, rng, kind)
        assert src == W.caption(s) and tgt == W.caption(e) and src != tgt
        assert len(e.objects) == len(s.objects)
        src_img, e_img = W.render(s), W.render(e)
        cov_s, cov_e = W.object_coverage(s), W.object_coverage(e)
        if kind in ("color", "shape"):
            assert idx == 0 and e.background == s.background
            changed = [i for i, (a, b) in enumerate(zip(s.objects, e.objects)) if a != b]
            assert changed == [0] and _differing_fields(s.objects[0], e.objects[0]) == {kind}
            assert W.contrasts(e.objects[0].color, e.background.color)
            # every pixel outside both footprints of the edited object is byte-identical
            outside = (cov_s[idx] == 0) & (cov_e[idx] == 0)
            assert np.array_equal(src_img[outside], e_img[outside])
            assert not np.array_equal(src_img, e_img)
            if kind == "color":
                assert np.array_equal(cov_s, cov_e)
            if len(e.groups()) == len(s.groups()):  # the object did not join or leave a group
                one_word += _words_changed(src, tgt) == 1
        else:
            assert idx is None and e.objects == s.objects
            assert _differing_fields(s.background, e.background) == {
                "color" if kind == "background" else "texture"
            }
            assert all(W.contrasts(o.color, e.background.color) for o in e.objects)
            inside = (cov_s == 1).any(0)  # fully covered object pixels do not change
            assert np.array_equal(src_img[inside], e_img[inside]) and np.array_equal(cov_s, cov_e)
            if kind == "background":
                assert _words_changed(src, tgt) == 1
    if kind in ("color", "shape"):
        assert one_word >= 50  # word-swap captions for nearly all pairs
    with pytest.raises(ValueError):
        W.edit_pair(scenes[0], rng, "size")


@pytest.mark.slow  # ~3 s
def test_heldout_split_is_disjoint_from_train():
    n = 300
    train, held = W.WorldDataset(n, 0, "train"), W.WorldDataset(n, 0, "heldout")
    digest = lambda ds: {hashlib.sha1(ds[i]["image"].tobytes()).hexdigest() for i in range(n)}  # noqa: E731
    a, b = digest(train), digest(held)
    assert len(a) == n and len(b) == n and not a & b
    assert {repr(train.scene(i)) for i in range(50)}.isdisjoint({repr(held.scene(i)) for i in range(50)})
    with pytest.raises(ValueError):
        W.WorldDataset(3, 0, "validation")


# -------------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_closed_form_on_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    sd_a, sd_b = rng.uniform(0.2, 3, d), rng.uniform(0.2, 3, d)
    closed = np.sum((mu_a - mu_b) ** 2) + np.sum((sd_a - sd_b) ** 2)  # diagonal Gaussians
    got = C.frechet_distance_from_stats(mu_a, np.diag(sd_a**2), mu_b, np.diag(sd_b**2))
    assert got == pytest.approx(closed, rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # the same rotation of both: non-diagonal, same distance
    rot = C.frechet_distance_from_stats(
        q @ mu_a, q @ np.diag(sd_a**2) @ q.T, q @ mu_b, q @ np.diag(sd_b**2) @ q.T
    )
    assert rot == pytest.approx(closed, rel=1e-9)
    a = rng.normal(size=(d, d))
    b = rng.normal(size=(d, d))
    ca, cb = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)  # general case: tr sqrt(ca cb) via eigvals
    tr_sqrt = np.sqrt(np.linalg.eigvals(ca @ cb).real.clip(0)).sum()
    general = np.sum((mu_a - mu_b) ** 2) + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt
    assert C.frechet_distance_from_stats(mu_a, ca, mu_b, cb) == pytest.approx(general, rel=1e-8)


def test_frechet_distance_on_feature_sets():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert C.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
    shift = rng.normal(size=8)
    assert C.frechet_distance(f, f + shift) == pytest.approx(np.sum(shift**2), rel=1e-8)
    mu = f.mean(0)
    s = 0.5  # scaling about the mean scales the covariance by s^2: distance (1 - s)^2 tr(cov)
    expected = (1 - s) ** 2 * np.trace(np.cov(f, rowvar=False))
    assert C.frechet_distance(f, mu + s * (f - mu)) == pytest.approx(expected, rel=1e-8)


# ------------------------------------------------------------------------------ shipped classifier


def test_shipped_classifier_files(shipped):
    model, report = shipped
    assert C.DEFAULT_WEIGHTS.stat().st_size < 5 * 2**20
    assert set(report["heldout_accuracy"]) == set(C.HEADS) | {"all"}
    assert model.config == report["config"]


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_shipped_classifier_reaches_its_recorded_heldout_accuracy(shipped, heldout):
    model, report = shipped
    sc, imgs = heldout
    t = C.TEST_SCENES
    acc = C.head_accuracy(imgs[:t], sc[:t], model)
    first, overall = report[f"heldout_accuracy_first{t}"], report["heldout_accuracy"]
    for head in C.HEADS:
        assert acc[head] >= first[head] - 0.01, (head, acc, first)
        assert acc[head] >= overall[head] - 0.04, (head, acc, overall)


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_world_fid_small_within_world_large_against_noise(shipped, heldout):
    model, report = shipped
    _, imgs = heldout
    t = C.TEST_SCENES
    feats = C.extract_features(imgs, model)
    same = C.frechet_distance(feats[:t], feats[t:])
    noise = C.uniform_noise_images(t)
    vs_noise = C.world_fid(imgs[:t], noise, model)
    recorded = report["world_fid"]
    assert same == pytest.approx(recorded[f"heldout_{t}_vs_heldout_{t}"], rel=1e-3, abs=1e-3)
    assert vs_noise == pytest.approx(recorded[f"heldout_{t}_vs_uniform_noise_{t}"], rel=1e-3)
    assert vs_noise > 20 * same


def test_prompt_accuracy_reads_the_caption(shipped, heldout):
    model, _ = shipped
    sc, imgs = heldout
    sc, imgs = sc[:100], imgs[:100]
    assert C.prompt_accuracy(imgs, sc, model) >= 0.9  # renders against their own captions
    # ComfyUI IMAGE floats at another size give the same answer
    floats = torch.from_numpy(imgs[:20]).float().div(255)
    big = torch.nn.functional.interpolate(floats.permute(0, 3, 1, 2), scale_factor=2, mode="nearest")
    acc_small, hits_small = C.prompt_accuracy(floats, sc[:20], model, return_details=True)
    texts = [W.caption(s) for s in sc[:20]]
    acc_big, hits_big = C.prompt_accuracy(big.permute(0, 2, 3, 1), texts, model, return_details=True)
    assert sum(a == b for a, b in zip(hits_small, hits_big)) >= 18
    # against the captions of color edits and background edits the renders fail
    rng = np.random.default_rng(3)
    single = [i for i, s in enumerate(sc) if len(s.objects) == 1]
    for kind in ("color", "background"):
        targets = [W.edit_pair(sc[i], rng, kind)[2] for i in single]
        assert C.prompt_accuracy(imgs[single], targets, model) <= 0.1
    with pytest.raises(ValueError):
        C.prompt_accuracy(imgs[:3], sc[:2], model)


def test_attribute_accuracy_names_the_part_that_is_wrong(shipped, heldout):
    model, _ = shipped
    sc, imgs = heldout
    sc, imgs = sc[:100], imgs[:100]
    own = C.attribute_accuracy(imgs, sc, model)
    assert min(own.values()) >= 0.9, own
    rng = np.random.default_rng(4)
    single = [i for i, s in enumerate(sc) if len(s.objects) == 1]
    recolored_bg = [W.edit_pair(sc[i], rng, "background")[2] for i in single]
    wrong_bg = C.attribute_accuracy(imgs[single], recolored_bg, model)
    assert wrong_bg["bg_color"] <= 0.1 and wrong_bg["color"] >= 0.9 and wrong_bg["shape"] >= 0.9, wrong_bg
    reshaped = [W.edit_pair(sc[i], rng, "shape")[2] for i in single]
    wrong_shape = C.attribute_accuracy(imgs[single], reshaped, model)
    assert wrong_shape["shape"] <= 0.15 and wrong_shape["bg_color"] >= 0.9, wrong_shape
