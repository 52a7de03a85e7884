"""Proving ground, dance world (models/proving_ground/dance_world.py): determinism, the skeleton's
invariants (keypoints inside, constant bone lengths, feet near the ground), pose maps identical to the
pack's OpenPose renderer, the person painted where the skeleton is, depth layer order, face and clothes
crops, captions and colours."""

from __future__ import annotations

import numpy as np
import pytest
from papernodes.models.common import pose as P
from papernodes.models.proving_ground import dance_world as D
from papernodes.models.proving_ground import world as W

SEED = 7


@pytest.fixture(scope="module")
def clips() -> list[D.DanceClip]:
    """One clip of each move (index i shows MOVES[i % 5])."""
    return D.make_clips(SEED, len(D.MOVES))


def _close(img: np.ndarray, rgb, tol: int = 2) -> np.ndarray:
    return (np.abs(img.astype(int) - np.asarray(rgb, int)) <= tol).all(-1)


def test_deterministic_by_seed_split_and_index(clips):
    again = D.make_clip(SEED, "train", 3)
    first = clips[3]
    for name in ("frames", "pose", "depth", "parts", "keypoints", "reference", "face_crop", "clothes_crop"):
        assert getattr(again, name).tobytes() == getattr(first, name).tobytes(), name
    assert again.caption == first.caption and again.spec == first.spec
    assert again.pose_keypoint == first.pose_keypoint
    n, s = D.DEFAULT_FRAMES, D.DEFAULT_SIZE
    assert first.frames.shape == (n, s, s, 3) and first.frames.dtype == np.uint8
    assert first.pose.shape == (n, s, s, 3) and first.pose.dtype == np.uint8
    assert first.depth.shape == (n, s, s) and first.depth.dtype == np.float32
    assert first.keypoints.shape == (n, 18, 3) and first.keypoints.dtype == np.float32
    c = D.CROP_SIZE
    assert first.face_crop.shape == first.clothes_crop.shape == (c, c, 3)
    assert [clip.move for clip in clips] == list(D.MOVES)  # balanced by index
    specs = [D.clip_spec(SEED, "train", i) for i in range(6)]
    assert len({repr(s) for s in specs}) == 6
    assert all(D.clip_spec(SEED + 1, "train", i) != specs[i] for i in range(6))
    assert all(D.clip_spec(SEED, "heldout", i) != specs[i] for i in range(6))
    assert not np.array_equal(clips[0].frames, clips[1].frames)
    small = D.make_clip(SEED, "heldout", 2, num_frames=5, size=32, crop_size=24)
    assert small.frames.shape == (5, 32, 32, 3) and small.face_crop.shape == (24, 24, 3)
    # consecutive frames differ: the person dances
    assert all(not np.array_equal(clips[0].frames[k], clips[0].frames[k + 1]) for k in range(n - 1))


def test_skeleton_invariants_over_many_clips():
    for i in range(40):
        size = (64, 128)[i % 2]
        spec = D.clip_spec(SEED, "train", i, size=size)
        sk = D.skeleton(spec)
        kp = sk.keypoints
        assert (kp >= D.EDGE).all() and (kp <= size - D.EDGE).all(), spec.dance.move
        for name, a, b in D.BONES:  # forward kinematics: bone lengths constant over the clip
            length = np.linalg.norm(kp[:, a] - kp[:, b], axis=-1)
            assert np.ptp(length) < 1e-6 * spec.h, (name, spec.dance.move)
        h = spec.h
        for bone, length in (("r_upper_arm", D.UPPER_ARM), ("l_forearm", D.FOREARM), ("r_shin", D.SHIN)):
            _, a, b = next(x for x in D.BONES if x[0] == bone)
            assert np.allclose(np.linalg.norm(kp[:, a] - kp[:, b], axis=-1), length * h)
        ankles_y = kp[:, [10, 13], 1]
        sole = spec.ground_y - D.SOLE * h
        assert (ankles_y <= sole + 1e-6).all() and (ankles_y >= sole - 0.07 * h).all()  # feet near the ground
        # only the side steps lift the feet; the other moves keep both feet on the ground
        if spec.dance.move != "step":
            assert np.allclose(ankles_y, sole)
        # the far ear is hidden, the near one visible (yaw > 0: the right side is near)
        near_ear, far_ear = (16, 17) if spec.dance.yaw > 0 else (17, 16)
        assert sk.visible[near_ear] and not sk.visible[far_ear] and sk.visible.sum() == 17
        # the person's right is on the image left (facing the camera, turned < 90 degrees)
        assert (kp[:, 2, 0] < kp[:, 5, 0]).all() and (kp[:, 8, 0] < kp[:, 11, 0]).all()


def test_pose_maps_are_the_pack_renderer_of_the_keypoints(clips):
    for clip in clips:
        size = clip.spec.size
        parsed = P.parse_pose_keypoints(clip.pose_keypoint)
        for k, frame in enumerate(parsed):
            assert np.array_equal(P.render_pose_frame(frame, size, size), clip.pose[k])
            body = frame.people[0].body
            vis = clip.keypoints[k, :, 2] > 0
            assert np.allclose(body[vis, :2] * size, clip.keypoints[k, vis, :2], atol=1e-4)
            assert (body[~vis] == 0).all()
        # the same maps from the keypoint array, through the IMAGE path the nodes use
        frames = [
            {
                "people": [
                    {"pose_keypoints_2d": [float(v) for v in np.where(kp[:, 2:] > 0, kp, 0.0).reshape(-1)]}
                ],
                "canvas_width": size,
                "canvas_height": size,
            }
            for kp in clip.keypoints.astype(np.float64)
        ]
        image = P.render_openpose(frames, size, size)
        assert np.array_equal((image.numpy() * 255).round().astype(np.uint8), clip.pose)
        assert clip.pose.any(-1).mean() > 0.05  # something was drawn


def test_person_is_painted_where_the_skeleton_is(clips):
    for clip in clips:
        spec = clip.spec
        size = spec.size
        X, Y = D._grid((0.0, 0.0, float(size)), size)
        bg = np.clip(np.rint(D._box_mean(D._background_samples(spec.background, X, Y, size), size)), 0, 255)
        for k in range(spec.frames):
            kp = clip.keypoints[k]
            for j in np.nonzero(kp[:, 2] > 0)[0]:
                x, y = int(kp[j, 0]), int(kp[j, 1])
                assert clip.depth[k, y, x] > 0, (spec.dance.move, k, j)  # part of its pixel is body
            empty = clip.depth[k] == 0
            assert np.array_equal(clip.frames[k][empty], bg[empty].astype(np.uint8))  # background untouched
            assert (clip.parts[k] > 0).mean() > 0.08  # a person, not a speck
            assert not clip.depth[k, [0, -1]].any() and not clip.depth[k, :, [0, -1]].any()  # never cut off
            d = clip.depth[k][clip.depth[k] > 0]
            assert d.max() <= 1.0 + 1e-6


def test_background_is_the_image_world_background():
    rng = np.random.default_rng(0)
    X, Y = D._grid((0.0, 0.0, float(W.SIZE)), W.SIZE)
    for texture in W.TEXTURES:
        bg = W.Background(
            W.COLOR_NAMES[int(rng.integers(10))],
            texture,
            float(rng.uniform(10, 18)),
            0.7,
            float(rng.random()),
        )
        ours = D._box_mean(D._background_samples(bg, X, Y, W.SIZE), W.SIZE)
        assert np.allclose(ours, W.render_background(bg), atol=1e-3), texture


def test_depth_layer_order_near_arm_over_torso_over_far_arm():
    near_arm, torso, far_arm = (D.LAYERS.index(n) for n in ("near arm", "torso", "far arm"))
    front_pixels = behind_pixels = 0
    for i in range(3):
        clip = D.make_clip(SEED, "train", i, num_frames=8, move="swing")
        sk = D.skeleton(clip.spec)
        for k in range(clip.spec.frames):
            cov = D.part_coverage(clip.spec, sk, k)
            front = (cov[near_arm] == 1) & (cov[torso] == 1)
            assert np.allclose(clip.depth[k][front], D.LAYER_DEPTH[near_arm])
            assert (clip.parts[k][front] == near_arm + 1).all()
            behind = (cov[far_arm] == 1) & (cov[torso] == 1)
            assert (clip.parts[k][behind] >= torso + 1).all() and (
                clip.depth[k][behind] >= D.LAYER_DEPTH[torso]
            ).all()
            front_pixels += int(front.sum())
            behind_pixels += int(behind.sum())
            # where the topmost layer touching a pixel covers all of it, that layer is the pixel's depth
            touching = cov > 0
            top = len(D.LAYERS) - 1 - np.argmax(touching[::-1], axis=0)
            full = touching.any(0) & (np.take_along_axis(cov, top[None], 0)[0] == 1)
            assert np.allclose(clip.depth[k][full], np.asarray(D.LAYER_DEPTH)[top[full]])
            assert (clip.parts[k][full] == top[full] + 1).all()
            assert (clip.depth[k][~touching.any(0)] == 0).all()
    assert front_pixels > 20 and behind_pixels > 0  # the swing crosses the near arm over the torso
    assert D.LAYER_DEPTH[near_arm] == 1.0 and all(np.diff(D.LAYER_DEPTH) > 0)


def test_crops_contain_the_face_and_the_clothes(clips):
    for clip in clips:
        p = clip.person
        face, clothes = clip.face_crop, clip.clothes_crop
        n = face.shape[0] * face.shape[1]
        assert _close(face, p.skin_rgb).sum() > 0.15 * n  # the face fills the face crop
        assert _close(face, W.COLORS[p.hair]).sum() > 0.02 * n  # with its hair: the identity mark
        assert _close(face, p.eye_rgb).sum() > 0  # and eyes
        for color, pattern in ((p.shirt, p.shirt_pattern), (p.trousers, p.trousers_pattern)):
            main = _close(clothes, W.COLORS[color]).sum()
            second = _close(clothes, W.second_tone(color).round()).sum()
            assert main > 0.02 * n and main + second > 0.06 * n, (p, color, main, second)
            if pattern != "solid":
                assert second > 0.01 * n, (p, color, second)
        # the boxes are where the reference skeleton's head and body are
        kp = clip.reference_keypoints
        x0, y0, side = clip.face_box
        assert x0 < kp[0, 0] < x0 + side and y0 < kp[0, 1] < y0 + side  # nose
        x0, y0, side = clip.clothes_box
        for j in (1, 2, 5, 8, 11, 10, 13):  # neck, shoulders, hips, ankles
            assert x0 < kp[j, 0] < x0 + side and y0 < kp[j, 1] < y0 + side


def test_caption_round_trip_and_grammar():
    person = D.Person("tan", "black", "red", "striped", "blue", "solid")
    bg = W.Background("green", "dotted")
    text = D.dance_caption(person, bg)
    # garment patterns in words of their own; "dotted" stays the background's word (the image world's)
    assert text == "a person in a red stripy shirt and blue trousers dancing on a dotted green background"
    person2 = D.Person("light", "red", "orange", "solid", "white", "checkered")
    text2 = D.dance_caption(person2, W.Background("black", "gradient"))
    assert (
        text2 == "a person in an orange shirt and white plaid trousers dancing on a black gradient background"
    )
    for i in range(60):
        spec = D.clip_spec(SEED, "heldout", i)
        parsed = D.parse_dance_caption(spec.caption())
        a = spec.attributes()
        for key in ("shirt", "shirt_pattern", "trousers", "trousers_pattern", "bg_color", "bg_texture"):
            assert parsed[key] == a[key]
    for bad in (
        "a person in a red shirt dancing on a green background",
        "a person in an red shirt and blue trousers dancing on a green background",
        "a person in a mauve shirt and blue trousers dancing on a green background",
        "a red star bouncing on a striped blue background",
        "a person in a red striped shirt and blue trousers dancing on a green background",  # background word
    ):
        with pytest.raises(ValueError):
            D.parse_dance_caption(bad)


def test_colours_contrast_with_the_background():
    seen_patterns = set()
    for i in range(150):
        spec = D.clip_spec(SEED, "train", i)
        p, bg = spec.person, spec.background
        assert W.contrasts(p.shirt, bg.color) and W.contrasts(p.trousers, bg.color)
        assert p.shirt != p.trousers
        assert np.linalg.norm(np.subtract(W.COLORS[p.hair], p.skin_rgb)) >= W.MIN_CONTRAST
        if any(D._rgb_contrasts(rgb, bg.color) for rgb in D.SKIN_TONES.values()):
            assert D._rgb_contrasts(p.skin_rgb, bg.color)
        assert D.BODY_SCALE[0] <= spec.scale <= D.BODY_SCALE[1]
        seen_patterns |= {p.shirt_pattern, p.trousers_pattern}
    assert seen_patterns == set(D.CLOTH_PATTERNS)
