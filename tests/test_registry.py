"""The Registry metadata in pyproject.toml is complete and well-formed (what `comfy node validate` reads).

comfy-cli's validate parses [project] and [tool.comfy]: OS and accelerator classifiers must come from its
fixed lists (otherwise it silently drops them), `requires-comfyui` must be a version specifier, and the
licence must be a file or a text. `comfy node validate` itself was run once by hand (see the issue note);
this test keeps the fields from rotting without needing comfy-cli in CI.
"""

from __future__ import annotations

import tomllib

from conftest import REPO_ROOT
from packaging.specifiers import SpecifierSet
from packaging.version import Version

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
VALID_OS = {"OS Independent", "Microsoft :: Windows", "POSIX :: Linux", "MacOS"}
VALID_ACCELERATORS = {
    "GPU :: NVIDIA CUDA",
    "GPU :: AMD ROCm",
    "GPU :: Intel Arc",
    "NPU :: Huawei Ascend",
    "GPU :: Apple Metal",
}


def test_tool_comfy_fields():
    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert comfy["Icon"].startswith("https://") and comfy["Icon"].endswith(".png")
    assert (REPO_ROOT / "docs" / "icon.png").is_file()  # what the Icon URL serves from the repository
    tested = SpecifierSet(comfy["requires-comfyui"])
    assert Version("0.3.75") in tested and Version("0.33.0") in tested  # both hosts CI runs


def test_project_fields():
    project = PYPROJECT["project"]
    assert (
        project["license"] == {"file": "LICENSE"}
        and "GNU GENERAL PUBLIC LICENSE" in (REPO_ROOT / "LICENSE").read_text()
    )
    assert Version(project["version"])
    os_values = [
        c.removeprefix("Operating System :: ") for c in project["classifiers"] if c.startswith("Operating")
    ]
    accel = [c.removeprefix("Environment :: ") for c in project["classifiers"] if c.startswith("Environment")]
    assert os_values and set(os_values) <= VALID_OS
    assert accel and set(accel) <= VALID_ACCELERATORS
    assert {"Repository", "Documentation", "Issues"} <= set(project["urls"])


def test_comfyignore_keeps_what_users_need():
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".comfyignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "models/",
        "nodes/",
        "kernels/",
        "web/",
        "example_workflows/",
        "__init__.py",
        "requirements.txt",
    ):
        assert not any(needed == pattern or needed.startswith(pattern) for pattern in ignored), needed
    assert "tests/" in ignored and "benchmarks/" in ignored
