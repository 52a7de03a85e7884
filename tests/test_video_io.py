"""Video frame I/O (models/common/video_io.py): PyAV write -> read round trip (lossy codec, stated
tolerance), random access in any order, frame rate, and errors naming the file or the argument."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from papernodes.models.common import video_io as V
from papernodes.models.common.errors import InputError

pytest.importorskip("av")

N, H, W = 6, 32, 48


def _frames() -> np.ndarray:
    """Flat grey levels per frame with one coloured block (mpeg4 at qscale 2 keeps flat areas within ~6
    levels: yuv420p chroma subsampling and the codec's quantisation)."""
    frames = np.zeros((N, H, W, 3), np.uint8)
    for k in range(N):
        frames[k] = 20 + 40 * k
        frames[k, 8:24, 8:24] = (200, 30, 90)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    V.write_video(path, _frames(), fps=12)
    return path


def test_info_fps_and_all_frames(clip):
    assert V.video_info(clip) == (N, W, H)
    assert V.video_fps(clip) == 12.0
    frames = V.read_video_frames(clip)
    assert frames.dtype == np.uint8 and frames.shape == (N, H, W, 3)
    # Lossy codec: flat regions away from the block's edges stay within 8 levels of what was written,
    # and the whole clip within 4 levels on average (measured: 7 and 3.0).
    err = np.abs(frames.astype(int) - _frames().astype(int))
    assert err[:, 2:6, 30:44].max() <= 8 and err[:, 12:20, 12:20].max() <= 8
    assert err.mean() < 4.0


def test_random_access_in_any_order_with_repeats(clip):
    every = V.read_video_frames(clip)
    picked = V.read_video_frames(clip, [4, 1, 4, np.int64(0)])
    assert np.array_equal(picked, every[[4, 1, 4, 0]])  # same decoder, same frames: bit-identical


def test_image_floats_and_fractional_fps(tmp_path):
    images = torch.from_numpy(_frames()).float() / 255.0
    path = V.write_video(tmp_path / "f.mp4", images, fps=Fraction(30000, 1001))
    assert V.video_fps(path) == pytest.approx(30000 / 1001, rel=1e-9)
    back = V.read_video_frames(path, [2])
    assert np.abs(back[0, 2:6, 30:44].astype(int) - (20 + 40 * 2)).max() <= 8


def test_errors_name_the_file_or_argument(clip, tmp_path):
    with pytest.raises(V.VideoFileError, match=r"missing\.mp4: cannot be opened as a video"):
        V.video_info(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(V.VideoFileError, match=r"broken\.mp4"):
        V.read_video_frames(broken, [0])
    with pytest.raises(
        V.VideoFileError, match=rf"clip\.mp4: frame {N} requested but the video decodes to only {N}"
    ):
        V.read_video_frames(clip, [0, N])
    for bad in ([], [-1], [1.5], [True]):
        with pytest.raises(InputError, match="Input 'indices'"):
            V.read_video_frames(clip, bad)
    with pytest.raises(InputError, match="Input 'frames': expected an even width and height"):
        V.write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 48, 3), np.uint8), fps=8)
    with pytest.raises(InputError, match="Input 'frames'"):
        V.write_video(tmp_path / "gray.mp4", np.zeros((2, 32, 48), np.uint8), fps=8)
    with pytest.raises(InputError, match="Input 'fps'"):
        V.write_video(tmp_path / "zero.mp4", _frames(), fps=0)
