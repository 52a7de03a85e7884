"""The image world of the proving ground: seeded, captioned 128x128 scenes of flat shapes on backgrounds.

A scene is 1 to 3 objects (shape, color, center, size, rotation) on a background (color, texture and the
texture's geometry). Everything the renderer needs is in the `Scene`, so `render(scene)` is a pure
function and a scene can be edited attribute by attribute (`edit_pair`) to give ground truth for editing.

Geometry and rendering
- Pixel (row i, column j) covers [j, j+1) x [i, i+1) in image coordinates (x right, y down).
- Anti-aliasing by supersampling: every pixel is sampled at SUPERSAMPLE x SUPERSAMPLE points; an object's
  coverage of a pixel is the fraction of its samples inside the shape (a multiple of 1/16), textures
  likewise. A pixel is `background * (1 - coverage) + color * coverage`, rounded to uint8.
- An object's `size` is the radius of the circle that contains the whole shape. Objects of one scene are
  placed so that these circles are at least `MIN_GAP` pixels apart and inside the image: objects never
  touch, so masks are disjoint and a shape or color edit changes no pixel outside the edited object's
  footprint. Changing an object's shape keeps its center, size and rotation, so it still fits.
- `objects[0]` is the main object: every other object's size is at most 1/MAIN_RATIO of its size, so it
  is also the largest in area whatever the shapes (areas per squared size range from 1.23 for the star
  to 2.54 for the circle). It is the object the attribute classifier reads and the one `edit_pair` edits
  by default.
- The grayscale image is BT.601 luma with PIL's integer rounding (identical to `Image.convert("L")`).

Colors and contrast
- Textured backgrounds mix the background color with a second tone (`second_tone`: 60% of the color, or
  the color lightened 35% toward white for black). An object color is allowed on a background only if its
  RGB distance to every mix of the two tones is at least MIN_CONTRAST (so never the same color).

Captions (grammar)
    caption    := groups " on " background
    groups     := group | group " and " group | group ", " group " and " group
    group      := ("a" | "an") color shape | ("two" | "three") color plural
    background := article [pattern " "] color " background" | article color " gradient background"
    pattern    := "striped" | "checkered" | "dotted"
Objects with the same shape and color form one group; groups are listed in order of first appearance,
so the main object's group comes first. `parse_caption` inverts `caption`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SIZE = 128
SUPERSAMPLE = 4
MIN_GAP = 3.0  # pixels between the bounding circles of two objects
EDGE_MARGIN = 2.0  # pixels between a bounding circle and the image border
MAIN_RATIO = 1.6  # the main object's size over any other object's size, at least (larger even in area)
MIN_CONTRAST = 80.0  # RGB distance between an object color and every tone of its background

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "ring": "rings",
    "cross": "crosses",
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (250, 140, 20),
    "yellow": (245, 215, 30),
    "green": (40, 165, 60),
    "cyan": (30, 200, 215),
    "blue": (35, 70, 215),
    "purple": (135, 50, 185),
    "pink": (250, 130, 195),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
TEXTURES: tuple[str, ...] = ("solid", "striped", "checkered", "dotted", "gradient")
COUNT_WORDS = {2: "two", 3: "three"}
EDIT_KINDS: tuple[str, ...] = ("color", "shape", "background", "texture")
SPLITS = {"train": 0x7A1E, "heldout": 0x4E1D}  # salts of the per-index seed streams

# Scene distributions (issue 19). "full": the whole grammar (1-3 objects in up to 3 groups). "focus": one
# group of one or two large objects, the distribution the small teacher learns within a few CPU hours
# (measured: real focus scenes keep their shape through the VAE far better than full ones, and the full
# grammar's teacher drew blobs); full-grammar captions stay as the held-out generalisation rows.
LAYOUTS: tuple[str, ...] = ("full", "focus")
# Palettes. "uniform": every contrasting color equally likely. "prior": each shape and each texture has a
# typical color (taken with probability PRIOR_STRENGTH when it contrasts), the kind of semantic prior real
# colorization relies on (sky blue, grass green); without one, colors of equal luma cannot be told apart.
PALETTES: tuple[str, ...] = ("uniform", "prior")
PRIOR_STRENGTH = 0.8
SHAPE_PRIOR_COLORS = {"circle": "yellow", "square": "blue", "triangle": "green", "star": "black",
                      "ring": "orange", "cross": "red"}  # fmt: skip
TEXTURE_PRIOR_COLORS = {"solid": "white", "striped": "purple", "checkered": "cyan", "dotted": "pink",
                        "gradient": "blue"}  # fmt: skip


# ----------------------------------------------------------------------------------------- scene types


@dataclass(frozen=True)
class WorldObject:
    shape: str
    color: str
    x: float  # center, pixels
    y: float
    size: float  # radius of the bounding circle, pixels
    rotation: float  # radians, in image coordinates (x right, y down: positive turns clockwise on screen)


@dataclass(frozen=True)
class Background:
    color: str
    texture: str
    period: float = 14.0  # pixels: stripe pair, checker cell, dot spacing
    angle: float = 0.0  # radians: direction of stripes / checker grid / dot grid / gradient
    phase: float = 0.0  # 0..1, offset of the pattern in periods


@dataclass(frozen=True)
class Scene:
    objects: tuple[WorldObject, ...]
    background: Background

    @property
    def main(self) -> WorldObject:
        return self.objects[0]

    def groups(self) -> list[tuple[int, str, str]]:
        """(count, color, shape) per group of identical objects, in order of first appearance."""
        order: list[tuple[str, str]] = []
        counts: dict[tuple[str, str], int] = {}
        for o in self.objects:
            key = (o.color, o.shape)
            if key not in counts:
                order.append(key)
                counts[key] = 0
            counts[key] += 1
        return [(counts[k], k[0], k[1]) for k in order]

    def labels(self) -> dict[str, str | int]:
        """The attribute classifier's targets: main object's shape and color, background, object count."""
        return {
            "shape": self.main.shape,
            "color": self.main.color,
            "bg_color": self.background.color,
            "bg_texture": self.background.texture,
            "count": len(self.objects),
        }

    def attributes(self) -> dict[str, Any]:
        """Everything about the scene as plain Python values (JSON-serialisable)."""
        return {
            **self.labels(),
            "objects": [dataclasses.asdict(o) for o in self.objects],
            "background": dataclasses.asdict(self.background),
            "groups": [list(g) for g in self.groups()],
        }


# ---------------------------------------------------------------------------------------------- colors


def second_tone(color: str) -> np.ndarray:
    """The other tone of a textured background of `color` (float RGB 0..255)."""
    c = np.asarray(COLORS[color], np.float64)
    return c + 0.35 * (255.0 - c) if c.mean() < 50 else 0.6 * c


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    t = float(np.clip(np.dot(p - a, d) / np.dot(d, d), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * d)))


def contrasts(object_color: str, background_color: str) -> bool:
    """True if `object_color` may stand on a background of `background_color` (any texture)."""
    if object_color == background_color:
        return False
    p = np.asarray(COLORS[object_color], np.float64)
    a = np.asarray(COLORS[background_color], np.float64)
    return _segment_distance(p, a, second_tone(background_color)) >= MIN_CONTRAST


def object_colors_for(background_color: str) -> list[str]:
    return [c for c in COLOR_NAMES if contrasts(c, background_color)]


# ------------------------------------------------------------------------------------------- rendering


def _sample_coords(x0: int, x1: int, y0: int, y1: int, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Supersample point coordinates for the output pixel block [y0:y1, x0:x1] of an image `scale` times
    SIZE: arrays [(y1-y0)*S, (x1-x0)*S] in world units (the 128 px canvas's pixels)."""
    s = SUPERSAMPLE
    offs = (np.arange(s, dtype=np.float32) + 0.5) / s
    xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + offs[None, :]).reshape(-1)
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + offs[None, :]).reshape(-1)
    if scale != 1:
        xs, ys = xs / np.float32(scale), ys / np.float32(scale)
    return np.meshgrid(xs, ys)


def _box_mean(samples: np.ndarray) -> np.ndarray:
    """[H*S, W*S] samples -> [H, W] per-pixel means."""
    s = SUPERSAMPLE
    h, w = samples.shape[0] // s, samples.shape[1] // s
    return samples.reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float32)


def _polygon(n_vertices: int, radii: list[float], start: float) -> np.ndarray:
    angles = start + np.arange(n_vertices) * (2 * math.pi / n_vertices)
    r = np.resize(np.asarray(radii, np.float64), n_vertices)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], 1)


_STAR = _polygon(10, [1.0, 0.42], -math.pi / 2)  # 5 points, the first pointing up


def _inside_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    inside = np.zeros(u.shape, bool)
    for k in range(len(poly)):
        x1, y1 = poly[k]
        x2, y2 = poly[(k + 1) % len(poly)]
        crosses = (y1 > v) != (y2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x2 - x1) * (v - y1) / (y2 - y1) + x1
        inside ^= crosses & (u < x_at)
    return inside


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the object's frame, unit = bounding radius (every shape fits in the unit disc)."""
    if shape == "circle":
        return u * u + v * v <= 0.9**2
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 0.95**2) & (r2 >= 0.55**2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.68
    if shape == "triangle":  # equilateral, circumradius 1, a vertex up (inradius 0.5)
        ok = np.ones(u.shape, bool)
        for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
            ok &= u * math.cos(a) + v * math.sin(a) <= 0.5
        return ok
    if shape == "star":
        return _inside_polygon(u, v, _STAR)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.28) & (av <= 0.92)) | ((av <= 0.28) & (au <= 0.92))
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _object_box(o: WorldObject, scale: int = 1) -> tuple[int, int, int, int]:
    """The output pixels (of an image `scale` times SIZE) that the object's bounding circle can touch."""
    n = SIZE * scale
    x0 = max(0, int(math.floor((o.x - o.size) * scale)) - 1)
    x1 = min(n, int(math.ceil((o.x + o.size) * scale)) + 1)
    y0 = max(0, int(math.floor((o.y - o.size) * scale)) - 1)
    y1 = min(n, int(math.ceil((o.y + o.size) * scale)) + 1)
    return x0, x1, y0, y1


def _check_scale(scale: int) -> int:
    if not isinstance(scale, int | np.integer) or scale < 1:
        raise ValueError(f"scale must be a whole number >= 1 (the image is scale x {SIZE} px), got {scale!r}")
    return int(scale)


def object_coverage(scene: Scene, scale: int = 1) -> np.ndarray:
    """float32 [n, 128 s, 128 s] (s = `scale`): the fraction of each pixel's samples inside each object (0..1,
    steps of 1/16). The scene is the same at every scale: its coordinates are the 128 px canvas's."""
    scale = _check_scale(scale)
    cov = np.zeros((len(scene.objects), SIZE * scale, SIZE * scale), np.float32)
    for i, o in enumerate(scene.objects):
        x0, x1, y0, y1 = _object_box(o, scale)
        X, Y = _sample_coords(x0, x1, y0, y1, scale)
        c, s = math.cos(o.rotation), math.sin(o.rotation)
        dx, dy = (X - o.x) / o.size, (Y - o.y) / o.size
        u, v = c * dx + s * dy, -s * dx + c * dy
        cov[i, y0:y1, x0:x1] = _box_mean(_inside(o.shape, u, v).astype(np.float32))
    return cov


def object_masks(scene: Scene) -> np.ndarray:
    """bool [n, 128, 128]: pixels at least half covered by each object (disjoint between objects)."""
    return object_coverage(scene) >= 0.5


def _texture_fraction(bg: Background, scale: int = 1) -> np.ndarray:
    """float32 [128 s, 128 s]: per pixel, the share of the second tone."""
    n = SIZE * scale
    if bg.texture == "solid":
        return np.zeros((n, n), np.float32)
    c, s = math.cos(bg.angle), math.sin(bg.angle)
    if bg.texture == "gradient":
        centres = (np.arange(n, dtype=np.float32) + 0.5) / np.float32(scale)  # world units
        X, Y = np.meshgrid(centres, centres)
        t = c * (X - SIZE / 2) + s * (Y - SIZE / 2)
        half = (abs(c) + abs(s)) * SIZE / 2  # extent of the projection over the image
        return np.clip((t / half + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    X, Y = _sample_coords(0, n, 0, n, scale)
    u = (c * X + s * Y) / bg.period + bg.phase
    v = (-s * X + c * Y) / bg.period + bg.phase
    return _box_mean(pattern_on(bg.texture, u, v).astype(np.float32))


def pattern_on(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where a periodic texture shows its second tone, at lattice coordinates (u, v) (one period per unit):
    stripes, a checkerboard, or dots of radius 1/4 at the cell centres."""
    if texture == "striped":
        return (u - np.floor(u)) < 0.5
    if texture == "checkered":
        return ((np.floor(u) + np.floor(v)) % 2) == 1
    if texture == "dotted":
        du, dv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        return du * du + dv * dv <= 0.25**2
    raise ValueError(f"unknown texture {texture!r}; known: {', '.join(TEXTURES)}")


def render_background(bg: Background, scale: int = 1) -> np.ndarray:
    """float32 [128 s, 128 s, 3] in 0..255 (unrounded): the background alone."""
    t = _texture_fraction(bg, _check_scale(scale))[..., None]
    a = np.asarray(COLORS[bg.color], np.float32)
    b = second_tone(bg.color).astype(np.float32)
    return a * (1.0 - t) + b * t


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def render(scene: Scene, coverage: np.ndarray | None = None, scale: int = 1) -> np.ndarray:
    """uint8 [128 s, 128 s, 3] RGB image of the scene at `scale` s (pass `coverage` if already computed, at
    the same scale). Scale 2 is the 256 px world (32x32 latents; issue 19: the VAE keeps shapes better)."""
    img = render_background(scene.background, scale)
    cov = object_coverage(scene, scale) if coverage is None else coverage
    for o, c in zip(scene.objects, cov):
        c = c[..., None]
        img = img * (1.0 - c) + np.asarray(COLORS[o.color], np.float32) * c
    return _to_uint8(img)


def grayscale(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB [..., 3], replicated to 3 channels, uint8 (PIL's "L" rounding)."""
    rgb = np.asarray(image).astype(np.int64)
    y = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000
    return np.repeat(y.astype(np.uint8)[..., None], 3, axis=-1)


# -------------------------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _group_phrase(count: int, color: str, shape: str) -> str:
    if count == 1:
        return f"{_article(color)} {color} {shape}"
    return f"{COUNT_WORDS[count]} {color} {PLURALS[shape]}"


def background_phrase(bg: Background) -> str:
    if bg.texture == "solid":
        words = f"{bg.color} background"
    elif bg.texture == "gradient":
        words = f"{bg.color} gradient background"
    else:
        words = f"{bg.texture} {bg.color} background"
    return f"{_article(words)} {words}"


def caption(scene: Scene) -> str:
    """The scene's caption from the grammar in this module's docstring."""
    parts = [_group_phrase(*g) for g in scene.groups()]
    groups = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{groups} on {background_phrase(scene.background)}"


_PLURAL_TO_SHAPE = {p: s for s, p in PLURALS.items()}
_WORD_TO_COUNT = {"a": 1, "an": 1, "two": 2, "three": 3}


def parse_caption(text: str) -> dict[str, Any]:
    """Inverse of `caption`: {"groups": [(count, color, shape), ...], "bg_color", "bg_texture"}."""
    text = text.strip().lower()
    if " on " not in text:
        raise ValueError(f"not a world caption (no ' on '): {text!r}")
    groups_text, bg_text = text.rsplit(" on ", 1)
    bg_words = bg_text.split()
    if len(bg_words) < 3 or bg_words[0] not in ("a", "an") or bg_words[-1] != "background":
        raise ValueError(f"not a world background phrase: {bg_text!r}")
    mid = bg_words[1:-1]
    if len(mid) == 1:
        texture, bg_color = "solid", mid[0]
    elif len(mid) == 2 and mid[1] == "gradient":
        texture, bg_color = "gradient", mid[0]
    elif len(mid) == 2 and mid[0] in ("striped", "checkered", "dotted"):
        texture, bg_color = mid
    else:
        raise ValueError(f"not a world background phrase: {bg_text!r}")
    if bg_color not in COLORS:
        raise ValueError(f"unknown background color {bg_color!r}")
    phrases = [p.strip() for chunk in groups_text.split(" and ") for p in chunk.split(",")]
    groups = []
    for p in phrases:
        words = p.split()
        if len(words) != 3 or words[0] not in _WORD_TO_COUNT or words[1] not in COLORS:
            raise ValueError(f"not a world object phrase: {p!r}")
        count = _WORD_TO_COUNT[words[0]]
        shape = words[2] if count == 1 else _PLURAL_TO_SHAPE.get(words[2], "")
        if shape not in SHAPES:
            raise ValueError(f"not a world object phrase: {p!r}")
        groups.append((count, words[1], shape))
    return {"groups": groups, "bg_color": bg_color, "bg_texture": texture}


def caption_labels(text: str) -> dict[str, Any]:
    """What a caption says about the classifier's heads: main group's shape/color, background, count."""
    parsed = parse_caption(text)
    count, color, shape = parsed["groups"][0]
    return {
        "shape": shape,
        "color": color,
        "bg_color": parsed["bg_color"],
        "bg_texture": parsed["bg_texture"],
        "count": sum(g[0] for g in parsed["groups"]),
        "groups": parsed["groups"],
    }


# -------------------------------------------------------------------------------------------- sampling


def _pick(rng: np.random.Generator, options) -> Any:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _group_sizes(rng: np.random.Generator) -> list[int]:
    n = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    if n == 1:
        return [1]
    if n == 2:
        return [2] if rng.random() < 0.4 else [1, 1]
    r = rng.random()
    return [3] if r < 0.25 else ([2, 1] if r < 0.45 else ([1, 2] if r < 0.6 else [1, 1, 1]))


def _focus_group_sizes(rng: np.random.Generator) -> list[int]:
    return [1] if rng.random() < 0.7 else [2]


def _sizes(rng: np.random.Generator, n: int, shrink: float, layout: str = "full") -> list[float]:
    table = {1: (16.0, 30.0), 2: (16.0, 26.0), 3: (15.0, 23.0)}
    if layout == "focus":
        table = {1: (24.0, 34.0), 2: (22.0, 28.0)}
    main = table[n]
    r0 = rng.uniform(*main) * shrink
    hi = r0 / MAIN_RATIO
    return [r0] + [rng.uniform(min(8.0, hi), hi) for _ in range(n - 1)]


def _place(rng: np.random.Generator, sizes: list[float]) -> list[tuple[float, float]] | None:
    centers: list[tuple[float, float]] = []
    for r in sizes:
        lo, hi = r + EDGE_MARGIN, SIZE - r - EDGE_MARGIN
        for _ in range(200):
            x, y = rng.uniform(lo, hi), rng.uniform(lo, hi)
            if all(
                math.hypot(x - cx, y - cy) >= r + sizes[k] + MIN_GAP for k, (cx, cy) in enumerate(centers)
            ):
                centers.append((x, y))
                break
        else:
            return None
    return centers


def _with_prior(rng: np.random.Generator, typical: str, options, palette: str) -> str:
    """`typical` with probability PRIOR_STRENGTH under the prior palette (if allowed), else any option.
    Both draws always happen, so a scene's other attributes do not depend on which branch was taken."""
    options = list(options)
    take, other = rng.random(), _pick(rng, options)
    return typical if palette == "prior" and take < PRIOR_STRENGTH and typical in options else other


def sample_background(
    rng: np.random.Generator, color: str | None = None, palette: str = "uniform"
) -> Background:
    if palette == "uniform":  # the original draw order: color, then texture
        color = _pick(rng, COLOR_NAMES) if color is None else color
        texture = _pick(rng, TEXTURES)
    else:  # the texture first: it decides the typical color
        texture = _pick(rng, TEXTURES)
        color = (
            _with_prior(rng, TEXTURE_PRIOR_COLORS[texture], COLOR_NAMES, palette) if color is None else color
        )
    period = float(rng.uniform(10.0, 18.0))
    angle = float(rng.uniform(0.0, math.pi)) if texture != "gradient" else float(rng.uniform(0, 2 * math.pi))
    return Background(color=color, texture=texture, period=period, angle=angle, phase=float(rng.random()))


def sample_scene(rng: np.random.Generator, layout: str = "full", palette: str = "uniform") -> Scene:
    """A random scene of `layout` and `palette` (see LAYOUTS, PALETTES; deterministic given the generator's
    state). The defaults draw exactly the scenes this function drew before layouts and palettes existed."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if palette not in PALETTES:
        raise ValueError(f"unknown palette {palette!r}; known: {', '.join(PALETTES)}")
    bg = sample_background(rng, palette=palette)
    group_sizes = _group_sizes(rng) if layout == "full" else _focus_group_sizes(rng)
    colors = object_colors_for(bg.color)
    kinds: list[tuple[str, str]] = []
    while len(kinds) < len(group_sizes):
        if palette == "uniform":
            kind = (_pick(rng, colors), _pick(rng, SHAPES))
        else:
            shape = _pick(rng, SHAPES)
            kind = (_with_prior(rng, SHAPE_PRIOR_COLORS[shape], colors, palette), shape)
        if kind not in kinds:
            kinds.append(kind)
    n = sum(group_sizes)
    shrink = 1.0
    while True:
        sizes = _sizes(rng, n, shrink, layout)
        centers = _place(rng, sizes)
        if centers is not None:
            break
        shrink *= 0.9
    objects = []
    k = 0
    for (color, shape), count in zip(kinds, group_sizes):
        for _ in range(count):
            x, y = centers[k]
            rot = float(rng.uniform(0.0, 2 * math.pi))
            objects.append(WorldObject(shape, color, float(x), float(y), float(sizes[k]), rot))
            k += 1
    return Scene(objects=tuple(objects), background=bg)


# ----------------------------------------------------------------------------------------------- edits


def edit_pair(
    scene: Scene, rng: np.random.Generator, kind: str, object_index: int = 0
) -> tuple[Scene, str, str, int | None]:
    """The same scene with one attribute changed: (edited_scene, source_caption, target_caption, index).

    kind "color" / "shape": object `object_index` (default the main object, which the classifier reads)
        gets another color (contrasting with the background) / shape; center, size, rotation are kept.
        New values that would merge the object into another group are avoided when any other value
        exists, so captions differ in one word whenever the edited object is alone in its group.
    kind "background": the background color changes (texture and its geometry kept), to a color on which
        every object color still contrasts. kind "texture": the background texture changes.
    `index` is the edited object's index, None for background and texture edits.
    """
    if kind not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; known: {', '.join(EDIT_KINDS)}")
    bg = scene.background
    if kind in ("color", "shape"):
        obj = scene.objects[object_index]
        others = {(o.color, o.shape) for i, o in enumerate(scene.objects) if i != object_index}
        if kind == "color":
            options = [c for c in object_colors_for(bg.color) if c != obj.color]
            fresh = [c for c in options if (c, obj.shape) not in others]
            new_obj = dataclasses.replace(obj, color=_pick(rng, fresh or options))
        else:
            options = [s for s in SHAPES if s != obj.shape]
            fresh = [s for s in options if (obj.color, s) not in others]
            new_obj = dataclasses.replace(obj, shape=_pick(rng, fresh or options))
        objects = list(scene.objects)
        objects[object_index] = new_obj
        edited = Scene(objects=tuple(objects), background=bg)
        index: int | None = object_index
    elif kind == "background":
        used = {o.color for o in scene.objects}
        options = [c for c in COLOR_NAMES if c != bg.color and all(contrasts(u, c) for u in used)]
        if not options:
            raise ValueError(f"no background color contrasts with all of {sorted(used)}")
        edited = Scene(objects=scene.objects, background=dataclasses.replace(bg, color=_pick(rng, options)))
        index = None
    else:
        new_texture = _pick(rng, [t for t in TEXTURES if t != bg.texture])
        edited = Scene(objects=scene.objects, background=dataclasses.replace(bg, texture=new_texture))
        index = None
    return edited, caption(scene), caption(edited), index


# --------------------------------------------------------------------------------------------- dataset


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene `index` of `split`: one independent stream per (seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))


class WorldDataset:
    """`n` scenes of one split, reproducible by index: item i depends only on (seed, split, i).

    Items are dicts: image (uint8 [128,128,3]), gray (uint8 [128,128,3]), caption, masks (bool [n,128,128]),
    attributes (`Scene.attributes()`), labels (`Scene.labels()`), scene. The train and heldout splits use
    different salts in their seed sequences, so their streams are independent.
    """

    def __init__(
        self, n: int, seed: int = 0, split: str = "train", layout: str = "full", palette: str = "uniform"
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        if layout not in LAYOUTS or palette not in PALETTES:
            raise ValueError(
                f"layout {layout!r} / palette {palette!r}: expected one of {LAYOUTS} / {PALETTES}"
            )
        self.n, self.seed, self.split = int(n), int(seed), split
        self.layout, self.palette = layout, palette

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return sample_scene(scene_rng(self.seed, self.split, index), self.layout, self.palette)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        cov = object_coverage(scene)
        image = render(scene, cov)
        return {
            "image": image,
            "gray": grayscale(image),
            "caption": caption(scene),
            "masks": cov >= 0.5,
            "attributes": scene.attributes(),
            "labels": scene.labels(),
            "scene": scene,
        }

    def images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """uint8 [m,128,128,3] images of items start..stop (rendering only)."""
        stop = self.n if stop is None else stop
        return np.stack([render(self.scene(i)) for i in range(start, stop)])
