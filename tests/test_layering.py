"""The pack's layering, enforced by parsing every module's imports (no imports are executed).

Layers, bottom to top (DESIGN.md "Layers"):
- `kernels/`: attention ops and the hookable processor; imports nothing of the pack but itself.
- `models/common/`: shared pieces; may import `kernels/`, never a method or anything above.
- `models/<method>/`: one research method; may import `models/common/` and `kernels/`, never another method.
- `models/proving_ground/`, `models/demo_assets.py`: know every method (the world, the demo); above the methods.
- `nodes/`: ComfyUI adapters; may import everything below. The root `__init__.py` imports `nodes/`.
Plus: nothing under `models/` or `kernels/` imports ComfyUI, and no module imports a private (`_name`) from
another package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_DIRS = ("models", "kernels", "nodes")

# Top-level modules a ComfyUI install puts on sys.path (the pack's own `nodes` is always imported relatively).
COMFY_MODULES = {
    "comfy",
    "comfy_api",
    "comfy_extras",
    "comfy_execution",
    "folder_paths",
    "server",
    "execution",
    "latent_preview",
    "node_helpers",
    "nodes",
    "app",
}
# Packages under models/ that sit above the methods (they know every method).
ABOVE_METHODS = {"proving_ground", "demo_assets"}


@dataclass(frozen=True)
class Import:
    module: str  # importing module, dotted from the repo root, e.g. "models.dreamoving.train"
    target: str  # imported module, dotted; pack modules from the repo root, others as written
    names: tuple[str, ...]  # names taken with `from target import ...` (empty for `import target`)
    internal: bool  # target is inside the pack
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def pack_files(root: Path) -> list[Path]:
    files = [root / "__init__.py"] if (root / "__init__.py").is_file() else []
    for top in PACK_DIRS:
        files += sorted((root / top).rglob("*.py")) if (root / top).is_dir() else []
    return files


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import statement in the file, with relative imports resolved against the pack root."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, (), False, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level == 0:
                found.append(Import(name, node.module or "", names, False, node.lineno))
                continue
            if node.level - 1 > len(package):
                raise AssertionError(f"{path}:{node.lineno}: relative import climbs above the pack root")
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
            if not node.module:  # `from . import x` imports submodules or names of the package
                for alias in node.names:
                    found.append(Import(name, f"{target}.{alias.name}".strip("."), (), True, node.lineno))
            else:
                found.append(Import(name, target, names, True, node.lineno))
    return found


def layer_of(module: str) -> tuple[str, str]:
    """(layer, package) of a pack module: layer in kernels/common/method/above/nodes/root."""
    parts = module.split(".")
    if not module:
        return "root", ""
    if parts[0] in ("kernels", "nodes"):
        return parts[0], parts[0]
    if parts[0] == "models":
        if len(parts) == 1:
            return "models", "models"
        sub = parts[1]
        if sub == "common":
            return "common", "models.common"
        if sub in ABOVE_METHODS:
            return "above", f"models.{sub}"
        return "method", f"models.{sub}"
    return "root", ""


ALLOWED = {  # importing layer -> layers it may import
    "kernels": {"kernels"},
    "common": {"kernels", "common"},
    "method": {"kernels", "common", "method"},  # "method" only its own package: checked separately
    "above": {"kernels", "common", "method", "above", "models"},
    "models": {"kernels", "common", "models"},
    "nodes": {"kernels", "common", "method", "above", "models", "nodes"},
    "root": {"nodes", "root"},
}


def violations(root: Path) -> list[str]:
    found = []
    for path in pack_files(root):
        for imp in imports_of(path, root):
            where = f"{path.relative_to(root)}:{imp.line}"
            src_layer, src_pkg = layer_of(imp.module)
            if not imp.internal:
                top = imp.target.split(".")[0]
                if src_layer != "nodes" and src_layer != "root" and top in COMFY_MODULES:
                    found.append(f"{where}: {src_layer} code imports ComfyUI module {imp.target!r}")
                continue
            dst_layer, dst_pkg = layer_of(imp.target)
            if dst_layer not in ALLOWED[src_layer]:
                found.append(f"{where}: {src_layer} ({imp.module}) imports {dst_layer} ({imp.target})")
            elif src_layer == "method" and dst_layer == "method" and dst_pkg != src_pkg:
                found.append(f"{where}: method {src_pkg} imports another method {dst_pkg} ({imp.target})")
            private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
            if private and dst_pkg != src_pkg:
                found.append(
                    f"{where}: imports private {', '.join(private)} from {imp.target} (another package)"
                )
            if imp.target.split(".")[-1].startswith("_") and not imp.target.endswith("__init__"):
                if dst_pkg != src_pkg and not imp.target.split(".")[-1].startswith("__"):
                    found.append(f"{where}: imports private module {imp.target} (another package)")
    return found


def test_the_pack_keeps_its_layers():
    found = violations(REPO_ROOT)
    assert not found, "layering violations:\n" + "\n".join(found)


def test_every_pack_module_is_checked():
    """The walk really covers the pack: every method package and the three top-level folders."""
    names = {module_name(p, REPO_ROOT) for p in pack_files(REPO_ROOT)}
    for expected in (
        "kernels.processor",
        "models.common.loading",
        "models.infedit.pipeline",
        "nodes.infedit",
        "",
    ):
        assert expected in names


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    "rel, text, expected",
    [
        ("models/common/a.py", "from ..alpha.x import f\n", "common (models.common.a) imports method"),
        ("models/alpha/x.py", "from ..beta.y import g\n", "method models.alpha imports another method"),
        (
            "models/alpha/x.py",
            "import comfy.model_management\n",
            "imports ComfyUI module 'comfy.model_management'",
        ),
        ("kernels/k.py", "import folder_paths\n", "imports ComfyUI module 'folder_paths'"),
        ("models/alpha/x.py", "from ...kernels.processor import _hidden\n", "imports private _hidden"),
        ("kernels/k.py", "from ..models.common import a\n", "kernels (kernels.k) imports common"),
        (
            "models/alpha/x.py",
            "from ..proving_ground import world\n",
            "method (models.alpha.x) imports above",
        ),
        (
            "models/common/a.py",
            "def f():\n    from ...nodes import n\n",
            "common (models.common.a) imports nodes",
        ),
    ],
)
def test_each_rule_fires_on_a_violating_tree(tmp_path, rel, text, expected):
    """Each rule catches its violation (also inside a function body) in a small synthetic pack."""
    _write(tmp_path, "__init__.py", "")
    _write(tmp_path, "models/common/__init__.py", "")
    _write(tmp_path, "models/beta/y.py", "def g():\n    return 1\n")
    _write(tmp_path, rel, text)
    found = violations(tmp_path)
    assert any(expected in line for line in found), found


def test_allowed_imports_pass_on_a_synthetic_tree(tmp_path):
    _write(tmp_path, "__init__.py", "from .nodes import x\n")
    _write(tmp_path, "nodes/x.py", "import folder_paths\nfrom ..models.alpha.p import run\n")
    _write(
        tmp_path,
        "models/alpha/p.py",
        "from ..common.a import f\nfrom ...kernels.k import op\nfrom .q import _own\n",
    )
    _write(tmp_path, "models/alpha/q.py", "_own = 1\n")
    _write(tmp_path, "models/common/a.py", "from ...kernels.k import op\n")
    _write(tmp_path, "models/proving_ground/r.py", "from ..alpha.p import run\n")
    _write(tmp_path, "kernels/k.py", "from .ops import op\n")
    assert violations(tmp_path) == []
