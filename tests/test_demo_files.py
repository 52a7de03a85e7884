"""The main job's demo model files: shipped copies refreshed by content, stand-ins written once."""

from __future__ import annotations

from papernodes.models.common.demo_files import place_demo_file


def test_a_retrained_file_of_the_same_size_is_copied_again(tmp_path):
    shipped, dest = tmp_path / "shipped.bin", tmp_path / "demo" / "model.bin"
    shipped.write_bytes(b"old weights")
    place_demo_file(dest, shipped, True, lambda d: d.write_bytes(b"stand-in"))
    assert dest.read_bytes() == b"old weights"
    shipped.write_bytes(b"new weights")  # same size, other bytes
    place_demo_file(dest, shipped, True, lambda d: d.write_bytes(b"stand-in"))
    assert dest.read_bytes() == b"new weights"


def test_stand_in_when_untrained_or_nothing_shipped_and_written_once(tmp_path):
    calls = []

    def write(d):
        calls.append(d)
        d.write_bytes(b"stand-in")

    shipped = tmp_path / "shipped.bin"
    shipped.write_bytes(b"weights")
    dest = place_demo_file(tmp_path / "a" / "m.bin", shipped, False, write)
    assert dest.read_bytes() == b"stand-in"
    place_demo_file(dest, shipped, False, write)
    assert len(calls) == 1  # kept, not rewritten
    other = place_demo_file(tmp_path / "b" / "m.bin", tmp_path / "missing.bin", True, write)
    assert other.read_bytes() == b"stand-in" and len(calls) == 2
