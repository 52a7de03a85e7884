"""Our safetensors reader against the safetensors package: same tensors, named errors, pages let go."""

from __future__ import annotations

import ctypes
import json
import mmap
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from papernodes.models.common import prefault
from papernodes.models.common.errors import WeightsFormatError
from papernodes.models.common.loading import load_state_dict
from papernodes.models.common.safetensors_read import read_safetensors
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 2, 2, generator=g).bfloat16(),
        "f64": torch.randn(4, generator=g).double(),
        "i64": torch.arange(6).reshape(2, 3),
        "i8": torch.tensor([-3, 0, 5], dtype=torch.int8),
        "u8": torch.tensor([1, 2, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }


def test_same_tensors_and_metadata_as_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_tensors(), str(path), metadata={"lora_alpha": "8", "format": "pt"})
    ref = load_file(str(path))
    got, meta = read_safetensors(path)
    assert meta == {"lora_alpha": "8", "format": "pt"}
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and torch.equal(got[k], ref[k]), k  # the same bytes


def test_dtype_converts_floating_tensors_only(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_tensors(), str(path))
    ref = load_file(str(path))
    got, _ = read_safetensors(path, torch.float32)
    for k in ref:
        want = ref[k].float() if ref[k].is_floating_point() else ref[k]
        assert got[k].dtype == want.dtype and torch.equal(got[k], want), k
    assert load_state_dict(path, torch.float32).keys() == ref.keys()


def test_misaligned_tensor_is_read_right(tmp_path):
    """The format does not pad between tensors: a float16 after 3 bool bytes starts at an odd offset."""
    mask, half = torch.tensor([True, False, True]), torch.tensor([1.5, -2.0, 3.25], dtype=torch.float16)
    header = {
        "mask": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]},
        "half": {"dtype": "F16", "shape": [3], "data_offsets": [3, 9]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + mask.numpy().tobytes() + half.numpy().tobytes())
    got, _ = read_safetensors(path)
    assert torch.equal(got["mask"], mask) and torch.equal(got["half"], half)
    assert torch.equal(read_safetensors(path, torch.float32)[0]["half"], half.float())


def test_tensors_own_their_memory(tmp_path):
    """Rewriting the file in place must not change (or crash) tensors already read."""
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(1024)}, str(path))
    got, _ = read_safetensors(path)
    save_file({"w": torch.zeros(1024)}, str(path))
    assert torch.equal(got["w"], torch.ones(1024))
    got["w"].add_(1)  # writable, and writing does not touch the file
    assert torch.equal(load_file(str(path))["w"], torch.zeros(1024))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"abc", "shorter than"),
        (struct.pack("<Q", 10**12) + b"{}", "header size"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "unreadable header"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_not_a_safetensors_file_is_named(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsFormatError, match=f"bad.safetensors.*{message}"):
        read_safetensors(path)


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file({"a": torch.ones(10), "b": torch.ones(100)}, str(path))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(WeightsFormatError, match="tensor 'b' does not fit the file"):
        read_safetensors(path)


def test_unknown_dtype_is_named(tmp_path):
    raw = json.dumps({"x": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    path = tmp_path / "f4.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0")
    with pytest.raises(WeightsFormatError, match="tensor 'x' has a malformed header entry"):
        read_safetensors(path)


@pytest.mark.slow  # a subprocess, ~3 s
def test_peak_memory_is_the_result_not_result_plus_file(tmp_path):
    """Pages of the mapping are released tensor by tensor: reading a 96 MB file raises the process's peak
    RSS by about the result (96 MB), where keeping the mapping (safe_open) adds the file again."""
    path = tmp_path / "big.safetensors"
    save_file({f"t{i}": torch.randn(1024, 1024) for i in range(24)}, str(path))
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path[:0] = {sys.path!r}
        import papernodes_bootstrap
        papernodes_bootstrap.register()
        from papernodes.models.common.safetensors_read import read_safetensors
        from safetensors import safe_open
        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        before = hwm()
        if sys.argv[1] == "ours":
            t, _ = read_safetensors({str(path)!r})
        else:
            with safe_open({str(path)!r}, "pt") as f:
                t = {{k: f.get_tensor(k).clone() for k in f.keys()}}
        print(hwm() - before)
        """
    )
    rise = {
        row: float(subprocess.run([sys.executable, "-c", script, row], capture_output=True, text=True,
                                  check=True).stdout)
        for row in ("ours", "safe_open")
    }  # fmt: skip
    assert rise["ours"] < 96 * 1.25, rise
    assert rise["safe_open"] > 96 * 1.6, rise  # the effect this reader removes is real here


def _populate_works() -> bool:
    if not sys.platform.startswith("linux") or prefault._MADVISE is None:
        return False
    buf = mmap.mmap(-1, mmap.PAGESIZE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    ok = prefault._MADVISE(addr, mmap.PAGESIZE, prefault.MADV_POPULATE_WRITE) == 0
    return ok


_RESIDENCY_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    sys.path[:0] = {path!r}
    import papernodes_bootstrap
    papernodes_bootstrap.register()
    from papernodes.models.common import prefault
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    n = 16 * 1024 * 1024
    rise = {{}}
    before = rss(); plain = torch.empty(n); rise["plain"] = rss() - before
    before = rss(); plain.fill_(1.0); rise["plain_filled"] = rss() - before
    before = rss(); ours = prefault.empty((n,), torch.float32); rise["ours"] = rss() - before
    assert ours.shape == (n,) and ours.dtype == torch.float32
    print(json.dumps(rise))
    """
)


@pytest.mark.slow  # a subprocess, ~3 s
@pytest.mark.skipif(not _populate_works(), reason="MADV_POPULATE_WRITE needs Linux >= 5.14")
def test_prefaulted_tensor_is_resident_before_it_is_written():
    """prefault.empty maps its pages in one call: 64 MB count in RSS before a byte is written, where a
    plain torch.empty of the same size counts (almost) nothing until it is filled.

    Measured in a fresh interpreter: in a long test process the allocator may hand back memory that is
    already resident (CI saw a 0 MB rise once), which says nothing about prefault."""
    script = _RESIDENCY_SCRIPT.format(path=sys.path)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    rise = json.loads(out.stdout)
    assert rise["plain"] < 8, rise
    assert rise["plain_filled"] > 60, rise  # the measure sees 64 MB when pages are touched
    assert rise["ours"] > 60, rise
