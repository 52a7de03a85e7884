"""Pinhole cameras (models/common/camera.py): rays land on their pixels, look-at centres its target, the
OpenCV axes (x right, y down, z forward), float64 round trips, batching, and errors naming the input."""

from __future__ import annotations

import math

import pytest
import torch
from papernodes.models.common import camera as C
from papernodes.models.common.errors import InputError

W, H = 40, 30


def _cameras(dtype=torch.float64):
    """Two cameras with different intrinsics (one skewed, off-centre) looking at different targets."""
    K = torch.stack(
        [
            C.intrinsics_from_fov(60.0, W, H, dtype=dtype),
            C.intrinsics(fx=35.0, fy=33.0, cx=19.0, cy=16.5, skew=0.7, dtype=dtype),
        ]
    )
    eye = torch.tensor([[0.3, 1.2, 4.0], [-3.0, 0.5, -1.0]], dtype=dtype)
    target = torch.tensor([[0.0, 0.8, 0.0], [0.2, 0.1, 0.4]], dtype=dtype)
    return K, C.look_at(eye, target), eye, target


def test_points_along_a_pixel_ray_project_onto_that_pixel():
    K, E, eye, _ = _cameras()
    origins, dirs = C.pixel_rays(K, E, H, W)
    assert origins.shape == dirs.shape == (2, H, W, 3)
    torch.testing.assert_close(origins, eye[:, None, None, :].expand(2, H, W, 3), rtol=0, atol=1e-14)
    torch.testing.assert_close(
        dirs.norm(dim=-1), torch.ones(2, H, W, dtype=torch.float64), rtol=0, atol=1e-14
    )
    centres = C.pixel_centers(H, W, torch.float64)
    for t in (0.5, 2.0, 7.25):
        points = (origins + t * dirs).reshape(2, -1, 3)
        uv, depth = C.project(points, K, E)
        torch.testing.assert_close(uv, centres.reshape(1, -1, 2).expand(2, -1, 2), rtol=0, atol=1e-11)
        assert bool((depth > 0).all())


def test_ray_pixels_in_float32_within_a_thousandth_of_a_pixel():
    K, E, _, _ = _cameras(torch.float32)
    origins, dirs = C.pixel_rays(K, E, H, W)
    uv, _ = C.project((origins + 3.0 * dirs).reshape(2, -1, 3), K, E)
    assert uv.dtype == torch.float32
    err = (uv - C.pixel_centers(H, W).reshape(1, -1, 2)).abs().max().item()
    assert err < 1e-3


def test_look_at_puts_the_target_at_the_image_centre_with_opencv_axes():
    K = C.intrinsics_from_fov(50.0, W, H, dtype=torch.float64)
    eye, target = (1.0, 2.0, 5.0), (0.5, 0.25, -0.5)
    E = C.look_at(torch.tensor(eye, dtype=torch.float64), target)
    R = E[:3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.linalg.det(R).item() == pytest.approx(1.0, abs=1e-14)
    torch.testing.assert_close(C.camera_center(E), torch.tensor(eye, dtype=torch.float64), rtol=0, atol=1e-14)
    tgt = torch.tensor([target], dtype=torch.float64)
    uv, depth = C.project(tgt, K, E)
    torch.testing.assert_close(uv, torch.tensor([[W / 2, H / 2]], dtype=torch.float64), rtol=0, atol=1e-12)
    dist = math.dist(eye, target)
    assert depth.item() == pytest.approx(dist, abs=1e-13)
    # World +y (the default up) appears above the centre (v smaller), and x-right stays right-handed:
    # the camera's x axis is (forward x up) in world terms.
    above, _ = C.project(tgt + torch.tensor([[0.0, 0.1, 0.0]], dtype=torch.float64), K, E)
    assert above[0, 1] < H / 2
    forward = (torch.tensor(target) - torch.tensor(eye)).double()
    right_dir = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    right, _ = C.project(tgt + 0.1 * right_dir / right_dir.norm(), K, E)
    assert right[0, 0] > W / 2
    torch.testing.assert_close(right[0, 1], torch.tensor(H / 2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_float64_round_trip_project_unproject_and_invert():
    K, E, _, _ = _cameras()
    g = torch.Generator().manual_seed(0)
    points = torch.randn(2, 100, 3, generator=g, dtype=torch.float64) * 0.5
    uv, depth = C.project(points, K, E)
    assert uv.dtype == depth.dtype == torch.float64
    back = C.unproject(uv, depth, K, E)
    torch.testing.assert_close(back, points, rtol=0, atol=1e-13)
    torch.testing.assert_close(C.invert_rigid(C.invert_rigid(E)), E, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        C.invert_rigid(E) @ E, torch.eye(4, dtype=torch.float64).expand(2, 4, 4), rtol=0, atol=1e-15
    )


def test_batched_projection_equals_one_camera_at_a_time():
    K, E, _, _ = _cameras()
    points = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    uv, depth = C.project(points, K, E)
    for b in range(2):
        uv_b, depth_b = C.project(points[b], K[b], E[b])
        torch.testing.assert_close(uv[b], uv_b, rtol=0, atol=1e-12)
        torch.testing.assert_close(depth[b], depth_b, rtol=0, atol=1e-14)
    # One point set seen by both cameras broadcasts over the camera dimension.
    uv_shared, _ = C.project(points[0], K, E)
    torch.testing.assert_close(uv_shared[1], C.project(points[0], K[1], E[1])[0], rtol=0, atol=1e-12)


def test_fov_intrinsics_values():
    K = C.intrinsics_from_fov(90.0, 200, 100, dtype=torch.float64)
    want = torch.tensor([[100.0, 0.0, 100.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(K, want, rtol=0, atol=1e-12)
    # A point 45 degrees off axis lands on the image's right edge.
    uv, _ = C.project(
        torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64), K, torch.eye(4, dtype=torch.float64)
    )
    torch.testing.assert_close(uv, torch.tensor([[200.0, 50.0]], dtype=torch.float64), rtol=0, atol=1e-12)
    Kv = C.intrinsics_from_fov(torch.tensor([60.0, 90.0], dtype=torch.float64), 64, 48, axis="vertical")
    assert Kv.shape == (2, 3, 3)
    assert Kv[1, 1, 1].item() == pytest.approx(24.0, abs=1e-12)
    h, v = C.fov_from_intrinsics(Kv, 64, 48)
    torch.testing.assert_close(v, torch.tensor([60.0, 90.0], dtype=torch.float64), rtol=0, atol=1e-12)
    assert h[1].item() == pytest.approx(math.degrees(2 * math.atan(32 / 24)), abs=1e-12)


def test_opencv_to_opengl_looks_down_minus_z_and_is_its_own_inverse():
    _, E, _, target = _cameras()
    gl = C.opencv_to_opengl(E)
    cam = C.transform_points(gl, target[:, None, :])[:, 0]
    torch.testing.assert_close(cam[:, :2], torch.zeros(2, 2, dtype=torch.float64), rtol=0, atol=1e-14)
    assert bool((cam[:, 2] < 0).all())
    assert torch.equal(C.opencv_to_opengl(gl), E)


def test_orbit_eye_positions():
    assert C.orbit_eye(2.0, 0.0, 0.0) == pytest.approx((0.0, 0.0, 2.0))
    assert C.orbit_eye(2.0, 90.0, 0.0) == pytest.approx((2.0, 0.0, 0.0))
    assert C.orbit_eye(1.0, 0.0, 90.0, target=(1.0, 1.0, 1.0)) == pytest.approx((1.0, 2.0, 1.0))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: C.project(torch.zeros(4, 3), torch.eye(4), torch.eye(4)), "intrinsics"),
        (lambda: C.project(torch.zeros(4, 2), torch.eye(3), torch.eye(4)), "points"),
        (lambda: C.project(torch.zeros(4, 3), torch.eye(3), torch.eye(3)), "extrinsics"),
        (lambda: C.look_at((0.0, 0.0, 0.0), (0.0, 3.0, 0.0)), "up"),
        (lambda: C.look_at((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)), "target"),
        (lambda: C.look_at((0.0, 0.0), (0.0, 0.0, 1.0)), "eye"),
        (lambda: C.intrinsics_from_fov(180.0, 8, 8), "fov_degrees"),
        (lambda: C.intrinsics_from_fov(60.0, 0, 8), "width"),
        (lambda: C.pixel_rays(torch.eye(3), torch.eye(4), 8, 0), "width"),
        (lambda: C.project(torch.zeros(4, 3, dtype=torch.long), torch.eye(3), torch.eye(4)), "points"),
    ],
)
def test_errors_name_the_input(call, name):
    with pytest.raises(InputError, match=f"Input '{name}'"):
        call()


def test_orbit_rig_cameras_look_at_the_origin_from_the_radius_evenly_in_azimuth():
    views, radius, elevation = 6, 2.5, 30.0
    K, E = C.orbit_rig(views, radius=radius, elevation_degrees=elevation, fov_degrees=40.0, width=W, height=H,
                       azimuth_start=15.0, dtype=torch.float64)  # fmt: skip
    assert K.shape == (views, 3, 3) and E.shape == (views, 4, 4) and K.dtype == E.dtype == torch.float64
    torch.testing.assert_close(K, C.intrinsics_from_fov(40.0, W, H, dtype=torch.float64).expand(views, 3, 3))
    centres = C.camera_center(E)
    torch.testing.assert_close(centres.norm(dim=-1), torch.full((views,), radius, dtype=torch.float64))
    torch.testing.assert_close(centres[:, 1], torch.full((views,), radius * math.sin(math.radians(elevation)),
                                                         dtype=torch.float64))  # fmt: skip
    # azimuth 0 looks from +z, 90 from +x (orbit_eye): evenly spaced from azimuth_start
    azimuth = torch.rad2deg(torch.atan2(centres[:, 0], centres[:, 2]))
    want = torch.tensor([15.0 + 360.0 * i / views for i in range(views)], dtype=torch.float64)
    torch.testing.assert_close(torch.remainder(azimuth - want + 180.0, 360.0) - 180.0,
                               torch.zeros(views, dtype=torch.float64), rtol=0, atol=1e-9)  # fmt: skip
    uv, depth = C.project(torch.zeros(views, 1, 3, dtype=torch.float64), K, E)
    torch.testing.assert_close(uv[:, 0], torch.tensor([W / 2, H / 2], dtype=torch.float64).expand(views, 2))
    torch.testing.assert_close(depth[:, 0], torch.full((views,), radius, dtype=torch.float64))
    above, _ = C.project(torch.tensor([[0.0, 0.1, 0.0]], dtype=torch.float64).expand(views, 1, 3), K, E)
    assert bool((above[:, 0, 1] < H / 2).all())  # world up is image up in every view
    with pytest.raises(InputError, match="Input 'views'"):
        C.orbit_rig(0)
    with pytest.raises(InputError, match="Input 'radius'"):
        C.orbit_rig(2, radius=0.0)
