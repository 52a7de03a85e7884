"""The dance world's Content Guider parts (models/proving_ground/dance_guider.py): the CLIP-layout encoder
round-trips through the loader users' files go through, the crops carry the labels they show, the
captions leave the clothes to the image prompts, and the samples are in the trainer's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from papernodes.models.common.image_prompt import infer_clip_vision_config, load_clip_vision
from papernodes.models.common.loading import load_state_dict
from papernodes.models.dreamoving.train_data import ContentDataset, scan_content_samples
from papernodes.models.proving_ground import dance_guider as dg
from papernodes.models.proving_ground import dance_reproduce as dr
from papernodes.models.proving_ground.dance_world import make_clip, parse_dance_caption

torch.set_num_threads(1)


def test_the_single_file_loads_back_as_the_same_encoder(tmp_path):
    """The config is inferred from shapes on load (heads and activation cannot be read from weights):
    ENCODER is chosen so the inference gives it back, and the fp16 file computes what the model does."""
    encoder = dg.new_encoder(seed=0).eval()
    path = dg.save_encoder(encoder, tmp_path / "enc.safetensors")
    inferred = infer_clip_vision_config(load_state_dict(path), path.name)
    assert {k: inferred[k] for k in dg.ENCODER} == dg.ENCODER
    loaded = load_clip_vision(path)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = encoder.half().float()(pixel_values=x).image_embeds  # the weights as the file stores them
        got = loaded(pixel_values=x).image_embeds
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # separately built modules: float tolerance
    assert next(encoder.parameters()).dtype == torch.float32  # saving does not change the caller's model


def test_crops_are_labelled_with_what_they_show():
    pool = dg.crop_pool(3, seed=0)
    assert pool["images"].shape == (6, 64, 64, 3)
    clips = [make_clip(0, "train", i, num_frames=1) for i in range(3)]
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(pool["images"][i], clip.face_crop)
        np.testing.assert_array_equal(pool["images"][3 + i], clip.clothes_crop)
        for k, names in dg.HEADS.items():
            face, clothes = int(pool["labels"][k][i]), int(pool["labels"][k][3 + i])
            truth = names.index(getattr(clip.person, k))
            assert (face, clothes) == ((truth, -1) if k in dg.FACE_HEADS else (-1, truth))


def test_content_caption_names_the_background_only():
    clip = make_clip(0, "train", 5, num_frames=1)
    text = dg.content_caption(clip)
    full = parse_dance_caption(clip.caption)
    assert text.endswith(full["background"]) and text.startswith("a person dancing on ")
    for word in ("shirt", "trousers", clip.person.shirt, clip.person.trousers):
        assert word not in text.replace(full["background"], "")


def test_content_samples_are_in_the_guider_trainers_layout(tmp_path):
    folder = dg.write_content_samples(tmp_path / "content", 3, seed=4, size=64, frames=4)
    samples = scan_content_samples(folder)
    assert len(samples) == 3
    data = ContentDataset(folder, 64, dg.ENCODER["image_size"])
    item = data[1]
    clip = make_clip(4, "train", 1, num_frames=4, size=64)
    assert item["caption"] == dg.content_caption(clip)
    frame = (item["pixels"].permute(1, 2, 0).numpy() + 1) * 127.5
    # the sample's frame is one of its clip's frames
    assert min(np.abs(frame - f.astype(np.float32)).max() for f in clip.frames) < 1.0
    # written once: a second call with the same arguments does not rewrite
    stamp = (folder / "dance00000.png").stat().st_mtime_ns
    dg.write_content_samples(tmp_path / "content", 3, seed=4, size=64, frames=4)
    assert (folder / "dance00000.png").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_shipped_encoder_reads_unseen_peoples_crops():
    """The shipped encoder's embedding names skin, hair and clothes of held-out people (linear probe
    heads are not shipped, so the probe is refit here on train-split crops)."""
    path = dr.SHIPPED / dr.CLIP_VISION_FILE
    if not path.is_file():
        pytest.skip("the dance CLIP vision encoder is not trained yet (dance_reproduce --stages guider)")
    encoder = load_clip_vision(path)
    heads = dg.fit_probe(encoder, clips=400, seed=11)
    report = dg.probe_accuracy(encoder, heads, clips=150)
    assert min(report.values()) >= 0.8, report


def test_the_pose_workflow_prompts_the_demo_dancers_background():
    """The example workflow's prompt is static text: it must name the held-out demo clip's background."""
    import make_workflows
    from papernodes.models.proving_ground import dance_demo

    assert make_workflows.WORLD_DANCE_PROMPT == dance_demo.demo_prompt()


@pytest.mark.slow
def test_trained_demo_files_load_as_the_workflow_loads_them(tmp_path):
    """The main job's dance-world files (write_dance_world_demo, trained) load through the loaders the
    workflow's nodes call, and fit together (adapters on the U-Net, motion module's schedule kept)."""
    from papernodes.models.common.animatediff import load_motion_adapter, motion_schedule
    from papernodes.models.common.image_prompt import load_clip_vision, load_ip_adapter
    from papernodes.models.common.loading import load_diffusers_folder
    from papernodes.models.dreamoving.pipeline import DreaMovingPipeline
    from papernodes.models.dreamoving.video_controlnet import load_video_controlnet
    from papernodes.models.proving_ground import dance_demo

    if not dance_demo.trained_shipped():
        pytest.skip("the dance world's models are not all trained yet")
    paths = dance_demo.write_dance_world_demo(tmp_path, trained=True)
    comps = load_diffusers_folder(paths["dance_model"])
    pipe = DreaMovingPipeline(comps, load_motion_adapter(paths["dance_motion"]))
    assert motion_schedule(pipe.unet) == {"beta_schedule": "scaled_linear"}
    assert pipe.scheduler("ddim").config.beta_schedule == "scaled_linear"
    for key in ("dance_controlnet", "dance_depth_controlnet"):
        vcn = load_video_controlnet(paths[key])
        assert vcn.motion_modules is not None
    encoder = load_clip_vision(paths["dance_clip_vision"])
    for key in ("dance_face_adapter", "dance_clothes_adapter"):
        load_ip_adapter(paths[key]).bind(comps.unet)
    assert encoder.config.image_size == 64
    clip = dance_demo.demo_clip()
    assert len(json.loads(paths["dance_pose"].read_text())) == dance_demo.DEMO_FRAMES == len(clip.frames)


def test_control_clips_carry_pose_and_depth_in_the_trainers_layout(tmp_path):
    """`dance_reproduce.write_control_clips`: the trainer reads the same clip's pose (rendered from the JSON)
    and its depth maps (`.depth` suffix); the depth frames are the world's maps as grey images, exactly."""
    from papernodes.models.dreamoving.train_data import ControlClipDataset

    folder = dr.write_control_clips(tmp_path / "clips", n=1, seed=5, frames=4, size=64)
    clip = make_clip(5, "train", 0, num_frames=4, size=64)
    pose = ControlClipDataset(folder, frames=4, stride=1, resolution=64)[0]
    depth = ControlClipDataset(folder, frames=4, stride=1, resolution=64, control_suffix=dr.DEPTH_SUFFIX)[0]
    assert pose["caption"] == depth["caption"] == clip.caption
    want = torch.from_numpy(dr.depth_image(clip.depth)).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(depth["control"], want, rtol=0, atol=0)  # PNG is lossless: the same bytes
    assert (depth["control"][:, 0] == depth["control"][:, 2]).all()  # grey, as a depth preprocessor gives
    torch.testing.assert_close(pose["control"], torch.from_numpy(clip.pose).permute(0, 3, 1, 2) / 255.0)
    near, far = clip.depth.max(), clip.depth[clip.depth > 0].min()
    assert near > far > 0  # layers: the near arm is brighter than the far one; background stays 0
    assert dr.depth_image(np.array([0.0, far, near]))[..., 0].tolist() == [
        0,
        round(far * 255),
        round(near * 255),
    ]


def test_depth_workflow_input_is_the_demo_dance_as_depth_maps(tmp_path):
    """The depth workflow's animated input holds the pose workflow's dance (first DEPTH_FRAMES frames) as
    the world's depth maps, losslessly, at the world's 8 fps; both ControlNet folders are written."""
    from papernodes.models.proving_ground import dance_demo
    from PIL import Image, ImageSequence

    paths = dance_demo.write_dance_world_demo(tmp_path, trained=False)
    clip = dance_demo.demo_clip()
    with Image.open(paths["dance_depth"]) as im:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
        assert im.info["duration"] == 125
    assert len(frames) == dance_demo.DEPTH_FRAMES
    np.testing.assert_array_equal(np.stack(frames), dr.depth_image(clip.depth[: dance_demo.DEPTH_FRAMES]))
    for key in ("dance_controlnet", "dance_depth_controlnet"):
        assert (paths[key] / "config.json").is_file()
