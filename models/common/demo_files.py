"""Where the main job's demo models come from: a shipped world model, or a tiny stand-in for the test host."""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Callable
from pathlib import Path


def place_demo_file(
    dest: str | Path, shipped: str | Path | None, trained: bool, write_stand_in: Callable[[Path], object]
) -> Path:
    """Put the demo's model file at `dest`: a copy of `shipped` when `trained` and it exists (re-copied when
    the bytes differ: a retrained model usually keeps its size), else `write_stand_in(dest)` once."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if trained and shipped is not None and Path(shipped).is_file():
        if not dest.is_file() or not filecmp.cmp(dest, shipped, shallow=False):
            shutil.copyfile(shipped, dest)
    elif not dest.is_file():
        write_stand_in(dest)
    return dest
