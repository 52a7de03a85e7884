"""pytest configuration shared by all tests of the pack.

- Forces the Hugging Face stack offline: tests must never reach a hub (CI has no network, and a silent
  download would hide a missing local file).
- Registers the checkout as the importable package `papernodes` WITHOUT running its root __init__.py
  (that one imports the ComfyUI node modules, which need `comfy` on sys.path). Tests then import
  `papernodes.models...` / `papernodes.nodes...` and relative imports inside the pack work.
- Provides the session fixture `comfy_host`: a real ComfyUI 0.3.75 server with this checkout installed
  (scripts/comfy_host.py), started once per session because startup costs ~10 s and ~1 GB RAM.
- Markers: `slow`, `host` (needs the real server; added automatically to every test that uses
  comfy_host; under CI=true a missing ComfyUI fails these tests instead of skipping), `gpu` (skipped
  without CUDA).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import pytest

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[_key] = _value

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_NAME = "papernodes"

for _path in (REPO_ROOT / "scripts", TESTS_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

_comfy_host = importlib.import_module("comfy_host")  # scripts/comfy_host.py, on sys.path just above

log = logging.getLogger(__name__)


def _register_package() -> None:
    """Make `import papernodes.x.y` resolve inside the checkout without executing the root __init__.py
    (scripts/papernodes_bootstrap.py: the bootstrap the command-line entry points share)."""
    importlib.import_module("papernodes_bootstrap").register(REPO_ROOT, PACKAGE_NAME)


_register_package()


def pytest_configure(config: pytest.Config) -> None:
    # Also in pyproject.toml; repeated so the markers exist when pytest runs with another config file.
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "host: needs the real ComfyUI server (session fixture comfy_host)")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped when torch.cuda.is_available() is False")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the host marker added here must count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the comfy_host fixture (also through another fixture) `host`, so
    `-m "not host"` never starts the server; skip `gpu` tests on CPU-only machines (torch is imported
    only if such tests were collected)."""
    for item in items:
        if "comfy_host" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("host"):
            item.add_marker(pytest.mark.host)
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


def _place_test_models(base_dir: Path) -> None:
    """Call tests/helpers_models.py:place_test_models(base_dir) when it exists; otherwise place nothing."""
    if not (TESTS_DIR / "helpers_models.py").is_file():
        log.warning("tests/helpers_models.py missing: the host starts without test models")
        return
    place = getattr(importlib.import_module("helpers_models"), "place_test_models", None)
    if place is None:
        log.warning("helpers_models.place_test_models missing: the host starts without test models")
        return
    place(base_dir)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


@pytest.fixture(scope="session")
def comfy_host(tmp_path_factory: pytest.TempPathFactory):
    """A running ComfyUI server with this checkout in custom_nodes/ and the tiny test models in models/.

    Without a ComfyUI the host tests skip on a developer's machine, but FAIL under CI (`CI=true` or
    `CI=1`): a CI run that silently skipped the whole host tier would report green without testing it."""
    try:
        comfyui_dir = _comfy_host.find_comfyui()
    except _comfy_host.ComfyError as err:
        reason = f"no ComfyUI to host the pack: {err}"
        if _in_ci():
            pytest.fail(f"{reason} (CI={os.environ.get('CI')}: the host tier must run in CI)", pytrace=False)
        pytest.skip(reason)
    base_dir = tmp_path_factory.mktemp("comfy_base")
    host = _comfy_host.ComfyHost(comfyui_dir, base_dir, REPO_ROOT)
    host.prepare_base_dir()  # models/ must exist before the hook writes into it
    _place_test_models(base_dir)
    host.start(timeout=180)
    try:
        yield host
    finally:
        host.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the server log tail to failing tests that used the host: the cause is usually only there."""
    outcome = yield
    report = outcome.get_result()
    host = getattr(item, "funcargs", {}).get("comfy_host")
    if report.failed and host is not None:
        report.sections.append(("ComfyUI log tail", host.log_tail(80)))
