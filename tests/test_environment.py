"""The environment files agree: requirements.lock pins every requirement within its range, and
pyproject.toml declares the same runtime dependencies as requirements.txt.

requirements*.txt hold the ranges users install from; requirements.lock is the pip freeze of the venv CI
builds from scratch (scripts/env.sh installs with -c requirements.lock). A range edited without relocking,
or a lock that drifted from the ranges, fails here instead of on a fresh machine.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK = REPO_ROOT / "requirements.lock"  # the vendored ComfyUI 0.3.75 host (and users' default)
LOCKS = [LOCK, REPO_ROOT / "requirements-comfyui-0.33.lock"]  # every host CI runs


def _requirements(path) -> list[Requirement]:
    """Requirement lines of a requirements/constraints file (comments and blank lines skipped)."""
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            reqs.append(Requirement(line))
    return reqs


def _lock(lock=LOCK) -> dict[str, Version]:
    pins = {}
    for req in _requirements(lock):
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", (
            f"requirements.lock: {req} is not a pin (name==x)"
        )
        name = canonicalize_name(req.name)
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(specs[0].version)
    return pins


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_lock_pins_every_requirement_within_its_range(lock):
    pins = _lock(lock)
    files = ["requirements.txt", "requirements-dev.txt", "scripts/constraints.txt"]
    for name in files:
        for req in _requirements(REPO_ROOT / name):
            key = canonicalize_name(req.name)
            assert key in pins, (
                f"{name}: {req.name} is not pinned in {lock.name} (relock: see scripts/env.sh)"
            )
            assert req.specifier.contains(pins[key], prereleases=True), (
                f"{name}: {req} but {lock.name} pins {req.name}=={pins[key]}"
            )


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_lock_does_not_pin_the_pack_itself(lock):
    pins = _lock(lock)
    assert "comfyui-papernodes" not in pins
    assert not any(re.match(r"^-e\b|@ file:", line) for line in lock.read_text().splitlines())


def test_pyproject_dependencies_equal_requirements_txt():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, project["dependencies"])
    }
    runtime = {
        canonicalize_name(r.name): str(r.specifier) for r in _requirements(REPO_ROOT / "requirements.txt")
    }
    assert declared == runtime


def test_env_script_installs_with_the_lock_and_rebuilds_when_it_changes():
    """The lock is passed to pip and is part of the venv's stamp (else a changed lock reuses a stale venv)."""
    script = (REPO_ROOT / "scripts" / "env.sh").read_text()
    start = script.index("stamp_src() {")
    assert '"$LOCK"' in script[start : script.index("\n}\n", start)]
    assert '-c "$LOCK"' in script
