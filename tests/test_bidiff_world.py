"""The BiDiff 3D world (models/bidiff/world.py): exact SDFs (unit gradient, analytic volumes, signs at known
points), captions from the drawn attributes, colours and stripes, reproducible scenes."""

from __future__ import annotations

import math

import pytest
import torch
from papernodes.models.bidiff import world as W

VOLUMES = {  # analytic volumes of the primitives at size s (world.primitive_sdf's proportions)
    "sphere": lambda s: 4 / 3 * math.pi * s**3,
    "cube": lambda s: (1.6 * s) ** 3,
    "cylinder": lambda s: math.pi * (0.7 * s) ** 2 * 2 * s,
    "cone": lambda s: math.pi * (0.9 * s) ** 2 * 2 * s / 3,
    "torus": lambda s: 2 * math.pi**2 * (0.7 * s) * (0.3 * s) ** 2,
    "capsule": lambda s: math.pi * (0.5 * s) ** 2 * s + 4 / 3 * math.pi * (0.5 * s) ** 3,
}


@pytest.mark.parametrize("shape", W.SHAPES)
def test_sdf_is_a_distance_with_the_right_volume(shape):
    g = torch.Generator().manual_seed(0)
    p = (torch.rand(200_000, 3, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    o = W.Primitive(shape, "red", size=0.6, yaw=0.7)
    d = W.primitive_sdf(o, p)
    (grad,) = torch.autograd.grad(d.sum(), p)
    # an exact SDF has |grad| = 1 almost everywhere (Eikonal)
    assert (grad.norm(dim=-1) - 1).abs().quantile(0.99) < 1e-6
    volume = (d < 0).double().mean().item() * 8
    assert volume == pytest.approx(VOLUMES[shape](0.6), rel=0.03)


def test_sdf_values_at_known_points():
    p = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    sphere = W.primitive_sdf(W.Primitive("sphere", "red", size=0.5), p)
    assert torch.allclose(sphere, torch.tensor([-0.5, 0.5, 0.5], dtype=torch.float64))
    cube = W.primitive_sdf(W.Primitive("cube", "red", size=0.5), p)  # half-extent 0.4
    assert torch.allclose(cube, torch.tensor([-0.4, 0.6, 0.6], dtype=torch.float64))
    cone = W.primitive_sdf(W.Primitive("cone", "red", size=0.5), p)  # apex at y = 0.5
    assert cone[2].item() == pytest.approx(0.5)
    torus = W.primitive_sdf(W.Primitive("torus", "red", size=0.5), p)  # the centre is the hole
    assert torus[0].item() == pytest.approx(0.35 - 0.15)


def test_yaw_and_position_move_the_shape():
    o = W.Primitive("cube", "red", size=0.5, yaw=math.pi / 4, center=(0.3, 0.0, 0.0))
    corner = torch.tensor([[0.3 + 0.4 * math.sqrt(2) - 1e-3, 0.0, 0.0]], dtype=torch.float64)
    assert W.primitive_sdf(o, corner).item() < 0  # the rotated corner reaches sqrt(2) * 0.4 along x


def test_captions_name_the_drawn_attributes_and_scenes_repeat():
    for i in range(30):
        scene = W.make_scene(3, i, max_objects=2)
        assert scene == W.make_scene(3, i, max_objects=2)
        words = scene.caption.split()
        for o in scene.objects:
            assert o.shape in words and o.color in words
            assert ("striped" in words) == any(x.texture == "striped" for x in scene.objects)
        assert set(words) <= set(W.world_vocabulary())
    assert W.make_scene(0, 5).caption.startswith(("a ", "an "))
    assert len({W.make_scene(0, i).caption for i in range(60)}) > 30


def test_colour_is_the_nearest_objects_texture():
    scene = W.Scene((W.Primitive("sphere", "red", size=0.3, center=(-0.5, 0, 0)),
                     W.Primitive("cube", "blue", "striped", size=0.3, center=(0.5, 0, 0))))  # fmt: skip
    p = torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.05, 0.0], [0.5, 0.3, 0.0]])
    col = scene.color(p)
    assert torch.allclose(col[0], torch.tensor(W.COLORS["red"]))
    assert torch.allclose(col[1], torch.tensor(W.COLORS["blue"]))  # y in [0, 0.25): coloured band
    assert torch.allclose(col[2], torch.tensor(W.WHITE))  # y in [0.25, 0.5): white band
    assert scene.sdf(p)[0].item() == pytest.approx(-0.3)
