"""A whole official subject from files in the release's layout (models/trihuman/official/subject): a toy
character written as the release's text files, pickles and synthetic checkpoints, loaded in one call and
rendered from a calibrated camera; missing files and bad indices give errors naming the input."""

from __future__ import annotations

import pytest
import torch
from helpers_trihuman_official import write_subject
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.official import subject as S

torch.set_num_threads(1)


def test_subject_loads_and_renders_a_frame(tmp_path):
    meta, ckpt = write_subject(tmp_path)
    subject = S.load_official_subject(meta, ckpt, texture_size=32)
    assert (
        subject.name == "Toy"
        and subject.rig.graph.num_nodes == 5
        and subject.body_dofs.tolist() == [0, 1, 2, 3]
    )
    motion = S.load_subject_motion(meta, "test")
    assert motion.dofs.shape == (3, 4) and motion.normalized.shape == (3, 3, 4)
    out = S.render_subject_frame(subject, motion, frame=2, camera=0, scale=0.5)
    assert out.image.shape == (24, 32, 3) and out.mask.any() and not out.mask.all()
    assert (out.image >= 0).all() and (out.image <= 1).all() and (out.image[~out.mask] == 0).all()
    # the same frame at full size casts rays on the same part of the image
    full = S.render_subject_frame(subject, motion, frame=2, camera=0, scale=1.0)
    assert abs(full.mask.float().mean() - out.mask.float().mean()) < 0.1


def test_subject_mesh_keeps_the_stage_one_faces_and_the_hand(tmp_path):
    meta, ckpt = write_subject(tmp_path)
    subject = S.load_official_subject(meta, ckpt, texture_size=32)
    motion = S.load_subject_motion(meta)
    verts, faces = S.subject_frame_mesh(subject, motion, 2)
    stage = subject.subdivision[1]
    assert torch.equal(faces, stage["faces"]) and verts.shape == (len(stage["prev_to_cur_st"]), 3)
    assert torch.isfinite(verts).all()
    # vertex 0 is the toy's only hand vertex: it stays where frame t's posed template puts it (metres)
    posed = S.official_planes(subject.networks, subject.rig, subject.uv_map, motion.dofs, motion.normalized,
                              subject.body_dofs, 2).posed_mm  # fmt: skip
    torch.testing.assert_close(verts[0], posed[0, 0] / 1000.0, rtol=0, atol=1e-6)  # float32 networks: 1 um
    assert subject.hand_keep.tolist().count(0.0) == 1


def test_subject_errors_name_the_input(tmp_path):
    meta, ckpt = write_subject(tmp_path)
    (meta / "ddc.skin").unlink()
    with pytest.raises(InputError, match="metadata folder.*ddc.skin"):
        S.load_official_subject(meta, ckpt)
    (tmp_path / "b").mkdir()
    meta2, ckpt2 = write_subject(tmp_path / "b")
    subject = S.load_official_subject(meta2, ckpt2, texture_size=32)
    motion = S.load_subject_motion(meta2)
    with pytest.raises(InputError, match="camera"):
        S.render_subject_frame(subject, motion, frame=0, camera=3)
    with pytest.raises(InputError, match="frame"):
        S.render_subject_frame(subject, motion, frame=9, camera=0)
    with pytest.raises(InputError, match="split"):
        S.load_subject_motion(meta2, "val")
