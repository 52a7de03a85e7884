"""World evaluators for 3D shapes (models/bidiff/metrics.py): the exact scenes and their 16^3 grids are
recognised as their captions say; a shape of another kind is not; the caption fit of the exact shape is
near 1 and drops for a wrong shape."""

from __future__ import annotations

from papernodes.models.bidiff import grid_prior as G
from papernodes.models.bidiff import metrics as M
from papernodes.models.bidiff.world import Primitive, Scene, make_scene


def test_world_scenes_and_their_grids_are_recognised():
    for i in range(12):
        scene = make_scene(1, i)
        o = scene.objects[0]
        for shape in (scene.shape3d(), G.grid_to_shape(G.scene_grid(scene.sdf, scene.color, 16), G.TRUNC)):
            r = M.evaluate(shape, o.shape, resolution=24)
            assert (r.shape, r.color, r.texture) == (o.shape, o.color, o.texture), (i, scene.caption, r)
            assert r.caption_iou > 0.75


def test_a_wrong_shape_scores_low_on_the_caption():
    cube = Scene((Primitive("cube", "green", size=0.6),)).shape3d()
    r = M.evaluate(cube, "torus", resolution=24)
    assert r.shape == "cube" and r.color == "green" and r.texture == "plain"
    assert r.caption_iou < 0.3 and r.ious["cube"] > 0.9


def test_texture_purity_is_high_for_exact_stripes_and_low_for_smeared_ones():
    from papernodes.models.bidiff.prior3d import Shape3D

    scene = Scene((Primitive("cube", "red", texture="striped", size=0.7),))
    exact = scene.shape3d()
    sharp = M.evaluate(exact, "cube", resolution=24).purity
    grid = M.evaluate(G.grid_to_shape(G.scene_grid(scene.sdf, scene.color, 16), G.TRUNC), "cube", 24).purity
    half = lambda p: 0.5 * exact.color(p) + 0.25  # noqa: E731  every colour halfway to grey: all blended
    smeared = M.evaluate(Shape3D(exact.sdf, half), "cube", resolution=24).purity
    assert sharp > 0.95 and sharp > grid and smeared < 0.05, (sharp, grid, smeared)
