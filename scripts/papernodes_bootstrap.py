"""Import the pack as the package `papernodes` outside ComfyUI: the one bootstrap of every entry point.

Why: inside ComfyUI the checkout is imported as a package (its folder name), so `models/` reaches
`kernels/` with `from ...kernels import ...`. A command line started in the checkout has no such package:
`python -m models.colorize.train` makes `models` the top-level package (relative imports cannot climb above
it), and `python benchmarks/x.py` has no package at all. The cure is to register the checkout as a package
named `papernodes` WITHOUT running its root `__init__.py` (that one loads the ComfyUI nodes, which need
`comfy`), then import modules as `papernodes.models...`.

Who uses it, and how they reach this file (stdlib only, so it runs before torch or ComfyUI is importable):
- trainers and other `python -m models.<x>.<y>` commands: their first lines put scripts/ on sys.path and call
  `run_in_pack(__spec__.name)`, which runs the same module again inside `papernodes` and exits;
- benchmarks/*.py: put scripts/ on sys.path, `register()`, then `from papernodes.models... import ...`;
- scripts/comfy_host.py (a sibling) and tests/conftest.py (puts scripts/ on sys.path): `register()`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from pathlib import Path
from typing import NoReturn

PACKAGE = "papernodes"
REPO_ROOT = Path(__file__).resolve().parents[1]


def register(root: Path = REPO_ROOT, name: str = PACKAGE) -> types.ModuleType:
    """Make `import papernodes.x.y` resolve inside `root` without executing `root/__init__.py`.

    Idempotent: an already registered package is returned unchanged (whichever checkout it points at)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    package = types.ModuleType(name)
    package.__spec__, package.__path__, package.__package__ = spec, [str(root)], name
    sys.modules[name] = package
    return package


def in_pack(module_name: str) -> str:
    """'models.colorize.train' -> 'papernodes.models.colorize.train' (registering the package first)."""
    register()
    return module_name if module_name.startswith(PACKAGE + ".") else f"{PACKAGE}.{module_name}"


def run_in_pack(module_name: str, argv: list[str] | None = None) -> NoReturn:
    """Import `module_name` inside `papernodes` and exit with its `main(argv)`'s return code.

    Called from an entry module's `if __name__ == "__main__":` block before its pack-relative imports, so the
    module's code runs once, as `papernodes.<module_name>`."""
    module = importlib.import_module(in_pack(module_name))
    sys.exit(module.main(argv))
