"""Shared pose module (models/common/pose.py) and the Pose nodes: OpenPose-look renderer, POSE_KEYPOINT
parsing, retiming of keypoints and maps; the nodes keep their saved-workflow IDs under PaperNodes/Pose."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from papernodes.models.common import pose as P
from papernodes.models.common.errors import InputError

W, H = 128, 96


def _body(points: dict[int, tuple[float, float]]) -> list[float]:
    """COCO-18 flat list from {joint: (x, y)} in normalised coordinates; other joints missing (c=0)."""
    flat = [0.0] * 54
    for k, (x, y) in points.items():
        flat[3 * k : 3 * k + 3] = [x, y, 1.0]
    return flat


def _frame(body=None, **extra) -> dict:
    return {"people": [{"pose_keypoints_2d": body, **extra}], "canvas_width": 512, "canvas_height": 384}


def _px(img: torch.Tensor, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in torch.round(img[y, x] * 255))


SPREAD = {0: (0.5, 0.1), 1: (0.5, 0.3), 2: (0.3, 0.3), 8: (0.35, 0.8), 14: (0.1, 0.1), 17: (0.9, 0.9)}


def test_joint_centres_have_openpose_colours_and_background_is_black():
    img = P.render_openpose([_frame(_body(SPREAD))], W, H)[0]
    assert img.shape == (H, W, 3) and img.dtype == torch.float32
    for k, (x, y) in SPREAD.items():
        cx, cy = int(x * W), int(y * H)
        assert _px(img, cx, cy) == P.BODY_COLORS[k]
        # OpenCV's filled circle of radius 4: dx^2 + dy^2 <= 16
        assert _px(img, cx + 4, cy) == P.BODY_COLORS[k] or k in (1, 2)  # 1-2 limb may cover the edge
    assert P.BODY_COLORS[0] == (255, 0, 0)  # nose
    assert _px(img, 127, 50) == (0, 0, 0) and _px(img, 5, 60) == (0, 0, 0)
    vals = set(np.unique(np.round(img.numpy() * 255).astype(int)).tolist())
    assert vals <= {0, 51, 85, 102, 153, 170, 255}  # only palette values (full and 0.6-dimmed)


def test_limb_is_dimmed_ellipse_of_stick_width_4():
    # neck (1) and right shoulder (2) -> first limb, colour (255, 0, 0) at 60 %
    img = P.render_openpose([_frame(_body({1: (0.25, 0.5), 2: (0.75, 0.5)}))], W, H)[0]
    mx, my = 64, 48
    dim = tuple(int(c * 0.6) for c in P.BODY_COLORS[0])
    assert dim == (153, 0, 0)
    assert _px(img, mx, my) == dim
    assert _px(img, mx, my - 4) == dim and _px(img, mx, my + 4) == dim  # semi-minor axis = stickwidth 4
    assert _px(img, mx, my - 5) == (0, 0, 0) and _px(img, mx, my + 5) == (0, 0, 0)
    assert _px(img, 32, 48) == P.BODY_COLORS[1] and _px(img, 96, 48) == P.BODY_COLORS[2]  # joints on top
    # a diagonal limb: nose (0) -> left eye (15), limb (1, 16) colour index 15
    img2 = P.render_openpose([_frame(_body({0: (0.2, 0.2), 15: (0.8, 0.8)}))], W, H)[0]
    mid = (int((0.2 * W + 0.8 * W) / 2), int((0.2 * H + 0.8 * H) / 2))
    assert _px(img2, *mid) == tuple(int(c * 0.6) for c in P.BODY_COLORS[15])


def test_confidence_zero_is_not_drawn():
    pts = {1: (0.25, 0.5), 2: (0.75, 0.5)}
    flat = _body(pts)
    flat[3 * 2 + 2] = 0.0  # shoulder not detected: neither the joint nor the limb
    img = P.render_openpose([_frame(flat)], W, H)[0]
    assert _px(img, 32, 48) == P.BODY_COLORS[1]
    assert _px(img, 64, 48) == (0, 0, 0) and _px(img, 96, 48) == (0, 0, 0)
    assert int((img.sum(-1) > 0).sum()) == 49  # exactly one radius-4 disc
    empty = P.render_openpose([_frame(_body({}))], W, H)[0]
    assert float(empty.abs().sum()) == 0.0


def test_normalised_and_pixel_coordinates_render_the_same():
    norm = _body(SPREAD)
    pix = list(norm)
    for k in range(18):
        pix[3 * k] *= 512
        pix[3 * k + 1] *= 384
    a = P.render_openpose([_frame(norm)], W, H)
    b = P.render_openpose([_frame(pix)], W, H)
    assert torch.equal(a, b)
    parsed = P.parse_pose_keypoints([_frame(pix)])[0]
    assert np.allclose(parsed.people[0].body[:, :2], np.asarray(norm).reshape(18, 3)[:, :2], atol=1e-12)


def _hand(origin=(0.2, 0.2), missing=()) -> list[float]:
    flat = []
    for i in range(21):
        if i in missing:
            flat += [-1 / 512, -1 / 384, 1.0]  # how the preprocessors mark undetected points
        else:
            finger, joint = (i - 1) // 4, (i - 1) % 4
            x = origin[0] + (0 if i == 0 else 0.1 * (joint + 1))
            y = origin[1] + (0 if i == 0 else 0.12 * finger)
            flat += [x, y, 1.0]
    return flat


def test_hands_and_face_drawn_when_present():
    frame = _frame(
        _body({}), hand_left_keypoints_2d=_hand(missing=(20,)), face_keypoints_2d=[0.8, 0.8, 1.0] * 70
    )
    img = P.render_openpose([frame], W, H)[0]
    x1, y1 = int(0.3 * W), int(0.2 * H)  # first finger joint
    assert _px(img, x1, y1) == P.HAND_POINT_COLOR == (0, 0, 255)
    # edge 0 (wrist -> joint 1) has hue 0: red, between the two blue discs
    x0 = int(0.2 * W)
    xm = (x0 + x1) // 2
    assert abs(x1 - x0) >= 12 and _px(img, xm, y1) == P.HAND_EDGE_COLORS[0] == (255, 0, 0)
    assert P.HAND_EDGE_COLORS[10] == (0, 255, 255)
    # face: white dot radius 3
    fx, fy = int(0.8 * W), int(0.8 * H)
    assert _px(img, fx, fy) == (255, 255, 255) and _px(img, fx + 3, fy) == (255, 255, 255)
    assert _px(img, fx + 4, fy) == (0, 0, 0)
    # the missing point (20) and its edge are not drawn; flags switch parts off
    last = (int((0.2 + 0.4) * W), int((0.2 + 0.48) * H))
    assert _px(img, *last) == (0, 0, 0)
    no_hands = P.render_openpose([frame], W, H, draw_hands=False)[0]
    assert _px(no_hands, x1, y1) == (0, 0, 0) and _px(no_hands, fx, fy) == (255, 255, 255)
    no_face = P.render_openpose([frame], W, H, draw_face=False)[0]
    assert _px(no_face, fx, fy) == (0, 0, 0)


def test_body25_is_mapped_to_coco18():
    b25 = [0.0] * 75
    b25[3 * 9 : 3 * 9 + 3] = [0.4, 0.6, 1.0]  # BODY_25 right hip -> COCO 8
    b25[3 * 8 : 3 * 8 + 3] = [0.5, 0.6, 1.0]  # mid-hip: dropped
    person = P.parse_pose_keypoints([_frame(b25)])[0].people[0]
    assert person.body.shape == (18, 3)
    assert person.body[8].tolist() == [0.4, 0.6, 1.0] and float(person.body[:, 2].sum()) == 1.0


@pytest.mark.parametrize(
    "frames,match",
    [
        ("nope", "POSE_KEYPOINT"),
        ([{"people": "x"}], "frame 0: 'people'"),
        ([_frame(_body({})), _frame([0.1] * 30)], "frame 1, person 0, 'pose_keypoints_2d'"),
        ([_frame(_body({}), hand_left_keypoints_2d=[0.1] * 30)], "'hand_left_keypoints_2d' to hold 21"),
        ([{"people": [{"pose_keypoints_2d": [5.0, 5.0, 1.0] + [0.0] * 51}]}], "canvas_width"),
        ([_frame([float("nan")] * 54)], "finite"),
    ],
)
def test_parse_errors_name_frame_and_field(frames, match):
    with pytest.raises(InputError, match=match) as err:
        P.render_openpose(frames, W, H)
    assert "Input 'pose_keypoints'" in str(err.value)


# ------------------------------------------------------------------------------------------- retiming


def _seq(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [_frame(_body({k: tuple(rng.uniform(0.1, 0.9, 2)) for k in range(18)})) for _ in range(n)]


def test_retime_30_to_15_keeps_shared_timestamps_exactly():
    src = _seq(10)
    out = P.retime_keypoints(src, 30, dst_fps=15)
    assert len(out) == 5
    for j, fr in enumerate(out):
        assert fr["people"][0]["pose_keypoints_2d"] == src[2 * j]["people"][0]["pose_keypoints_2d"]
    assert len(P.retime_keypoints(_seq(24), 24, dst_fps=30)) == 30  # duration kept
    assert len(P.retime_keypoints(src, 30, num_frames=7)) == 7


def test_retime_midpoint_and_missing_propagation():
    a = _body({1: (0.2, 0.4), 2: (0.3, 0.5), 3: (0.9, 0.9)})
    b = _body({1: (0.4, 0.2), 2: (0.7, 0.1)})  # joint 3 missing here
    src = [_frame(a, hand_left_keypoints_2d=_hand()), _frame(b)]
    out = P.retime_keypoints(src, 10, dst_fps=20)
    assert len(out) == 4
    mid = np.asarray(out[1]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    ref = (np.asarray(a).reshape(18, 3) + np.asarray(b).reshape(18, 3)) / 2
    assert mid[1].tolist() == [ref[1, 0], ref[1, 1], 1.0] and mid[2].tolist() == [ref[2, 0], ref[2, 1], 1.0]
    assert mid[3].tolist() == [0.0, 0.0, 0.0]  # missing in one neighbour -> missing
    assert out[1]["people"][0]["hand_left_keypoints_2d"] is None  # hand only in frame 0
    assert out[0]["people"][0]["pose_keypoints_2d"] == a
    assert out[2]["people"][0]["pose_keypoints_2d"] == out[3]["people"][0]["pose_keypoints_2d"] == b  # hold
    quarter = P.retime_keypoints(src, 10, num_frames=4)  # positions 0, .5, 1, 1.5 -> same as above
    assert quarter == out


def test_retime_errors():
    with pytest.raises(InputError, match="exactly one"):
        P.retime_keypoints(_seq(2), 30)
    with pytest.raises(InputError, match="exactly one"):
        P.retime_keypoints(_seq(2), 30, dst_fps=15, num_frames=3)
    with pytest.raises(InputError, match="src_fps"):
        P.retime_keypoints(_seq(2), 0, dst_fps=15)


def test_resample_frames_nearest_and_linear():
    imgs = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 2, 2, 3).contiguous()

    def idx(t):
        return t[:, 0, 0, 0].tolist()

    assert idx(P.resample_frames(imgs, 5)) == [0, 2, 4, 6, 8]
    assert idx(P.resample_frames(imgs[:3], 6)) == [0, 0, 1, 1, 2, 2]  # 2x: each frame twice
    assert idx(P.resample_frames(imgs[:5], 4)) == [0, 1, 2, 4]  # positions 0, 1.25, 2.5, 3.75
    assert idx(P.resample_frames(imgs[:3], 6, mode="linear")) == [0, 0.5, 1, 1.5, 2, 2]
    assert torch.equal(P.resample_frames(imgs, 10), imgs)
    with pytest.raises(InputError, match="'nearest' or 'linear'"):
        P.resample_frames(imgs, 4, mode="cubic")


# ------------------------------------------------------------------- fidelity against the reference


def _reference_draw(person: P.PersonPose, w: int, h: int, cv2) -> np.ndarray:
    """controlnet_aux's drawing rules written with OpenCV (the look the ControlNets were trained on)."""
    canvas = np.zeros((h, w, 3), np.uint8)
    b = person.body
    for (k1, k2), color in zip(P.BODY_LIMBS, P.BODY_COLORS):
        if b[k1 - 1, 2] <= 0 or b[k2 - 1, 2] <= 0:
            continue
        xs, ys = b[[k1 - 1, k2 - 1], 0] * float(w), b[[k1 - 1, k2 - 1], 1] * float(h)
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        poly = cv2.ellipse2Poly((int(xs.mean()), int(ys.mean())), (int(length / 2), 4), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, poly, [int(float(c) * 0.6) for c in color])
    for k, color in enumerate(P.BODY_COLORS):
        if b[k, 2] > 0:
            cv2.circle(canvas, (int(b[k, 0] * w), int(b[k, 1] * h)), 4, color, thickness=-1)
    return canvas


def test_body_matches_opencv_reference_pixel_for_pixel():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for _ in range(6):
        body = np.c_[rng.uniform(0.05, 0.95, (18, 2)), (rng.uniform(size=18) > 0.15).astype(float)]
        frame = P.parse_pose_keypoints([_frame(body.ravel().tolist())])[0]
        ours = P.render_pose_frame(frame, 320, 256)
        assert np.array_equal(ours, _reference_draw(frame.people[0], 320, 256, cv2))


# ------------------------------------------------------------------------------------------------ nodes

POSE_NODE_IDS = (  # the IDs saved workflows use; they predate the Pose category and must not change
    "PaperNodes_DreaMovingLoadPoseKeypoints",
    "PaperNodes_DreaMovingRenderPose",
    "PaperNodes_DreaMovingRetimePose",
)


@pytest.fixture()
def pose_nodes(tmp_path, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("folder_paths")
    fake.get_input_directory = lambda: str(tmp_path / "input")
    (tmp_path / "input").mkdir()
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    from papernodes.nodes import pose as pose_nodes

    return pose_nodes, tmp_path / "input"


def test_old_pose_node_ids_are_registered_under_the_pose_category():
    from papernodes import nodes
    from papernodes.nodes import pose as pose_nodes

    for key in POSE_NODE_IDS:
        cls = nodes.NODE_CLASS_MAPPINGS[key]
        assert cls is pose_nodes.NODE_CLASS_MAPPINGS[key]
        assert cls.CATEGORY == "PaperNodes/Pose"
        assert nodes.NODE_DISPLAY_NAME_MAPPINGS[key].startswith("Pose: ")
    assert (
        nodes.NODE_DISPLAY_NAME_MAPPINGS["PaperNodes_DreaMovingLoadPoseKeypoints"]
        == "Pose: Load Keypoints (JSON)"
    )
    dreamoving = [
        k
        for k in nodes.NODE_CLASS_MAPPINGS
        if k.startswith("PaperNodes_DreaMoving") and k not in POSE_NODE_IDS
    ]
    assert "PaperNodes_DreaMovingGenerate" in dreamoving and "PaperNodes_DreaMovingLoadModel" in dreamoving
    assert {nodes.NODE_CLASS_MAPPINGS[k].CATEGORY for k in dreamoving} == {"PaperNodes/DreaMoving"}


def test_example_workflows_use_the_kept_pose_ids():
    from conftest import REPO_ROOT

    used = set()
    for path in (REPO_ROOT / "example_workflows" / "api").glob("dreamoving_*.json"):
        used |= {n["class_type"] for n in json.loads(path.read_text()).values()}
    assert {"PaperNodes_DreaMovingLoadPoseKeypoints", "PaperNodes_DreaMovingRenderPose"} <= used
    assert "PaperNodes_DreaMovingRetimePose" in used


def test_load_render_retime_nodes(pose_nodes):
    mod, input_dir = pose_nodes
    frames = _seq(4)
    (input_dir / "dance").mkdir()
    (input_dir / "dance" / "seq.json").write_text(json.dumps(frames))
    assert "dance/seq.json" in mod.LoadPoseKeypoints.INPUT_TYPES()["required"]["json_file"][0]
    (loaded,) = mod.LoadPoseKeypoints().load("dance/seq.json")
    assert loaded == frames
    (images,) = mod.RenderOpenPose().render(loaded, W, H, True, True, True)
    assert torch.equal(images, P.render_openpose(frames, W, H))
    out_pose, out_images = mod.RetimePose().retime(
        30.0, 15.0, 0, "nearest", pose_keypoint=loaded, images=images
    )
    assert out_pose == P.retime_keypoints(frames, 30.0, dst_fps=15.0)
    assert torch.equal(out_images, images[[0, 2]])
    out_pose, out_images = mod.RetimePose().retime(30.0, 15.0, 3, "linear", images=images)
    assert out_pose is None and torch.equal(out_images, P.resample_frames(images, 3, "linear"))


def test_pose_node_errors_name_the_input(pose_nodes):
    mod, input_dir = pose_nodes
    (input_dir.parent / "outside.json").write_text("[]")
    with pytest.raises(InputError, match="Input 'json_file'"):
        mod.LoadPoseKeypoints().load("../outside.json")
    (input_dir / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="Input 'json_file': expected valid JSON"):
        mod.LoadPoseKeypoints().load("bad.json")
    (input_dir / "odd.json").write_text(json.dumps([{"people": [{"pose_keypoints_2d": [0.5, 0.5]}]}]))
    with pytest.raises(InputError, match="Input 'pose_keypoints'.*frame 0, person 0"):
        mod.LoadPoseKeypoints().load("odd.json")
    with pytest.raises(InputError, match="Input 'pose_keypoint/images'"):
        mod.RetimePose().retime(30.0, 15.0, 0, "nearest")
