"""Model-folder resolution: combo entries, files only inside ComfyUI's folders, helpful missing-file errors."""

from __future__ import annotations

import sys
import types

import pytest
from papernodes.models.common.errors import WeightsNotFoundError


@pytest.fixture()
def adapter(tmp_path, monkeypatch):
    folders = {k: [str(tmp_path / k)] for k in ("diffusers", "checkpoints", "loras")}
    for paths in folders.values():
        for p in paths:
            (tmp_path / p).mkdir(parents=True, exist_ok=True)
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: folders.get(kind, [])
    fake.get_filename_list = lambda kind: sorted(
        str(p.relative_to(tmp_path / kind)) for p in (tmp_path / kind).rglob("*") if p.is_file()
    )
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    from papernodes.nodes import comfy_adapter

    return comfy_adapter, tmp_path


def test_choices_list_diffusers_folders_and_checkpoint_files(adapter):
    ad, root = adapter
    assert ad.sd_model_choices("(none)") == ["(none)"]
    (root / "diffusers" / "my-model" / "unet").mkdir(parents=True)
    (root / "diffusers" / "my-model" / "unet" / "config.json").write_text("{}")
    (root / "checkpoints" / "sd15.safetensors").write_bytes(b"x")
    (root / "checkpoints" / "notes.txt").write_text("not a model")
    assert ad.sd_model_choices("(none)") == ["diffusers/my-model", "checkpoints/sd15.safetensors"]
    assert ad.resolve_sd_model("diffusers/my-model", "x") == (root / "diffusers" / "my-model").resolve()
    assert ad.resolve_sd_model("checkpoints/sd15.safetensors", "x").name == "sd15.safetensors"


def test_missing_file_error_names_file_folders_and_source(adapter):
    ad, root = adapter
    with pytest.raises(WeightsNotFoundError) as info:
        ad.resolve_sd_model("checkpoints/missing.safetensors", "annyorange/colorization-finetuned")
    msg = str(info.value)
    assert "missing.safetensors" in msg and str(root / "checkpoints") in msg
    assert "annyorange/colorization-finetuned" in msg


def test_paths_outside_the_model_folders_are_refused(adapter):
    ad, root = adapter
    (root / "secret.safetensors").write_bytes(b"x")
    for name in ("checkpoints/../secret.safetensors", f"checkpoints/{root}/secret.safetensors"):
        with pytest.raises(WeightsNotFoundError):
            ad.resolve_sd_model(name, "x")
    with pytest.raises(WeightsNotFoundError):
        ad.resolve_file("loras", "../secret.safetensors", "x")


def test_symlinked_models_load_but_names_cannot_leave_the_folder(adapter, tmp_path_factory):
    """A model folder may link to a shared store elsewhere: listed entries must resolve (issue: they were
    refused as 'not found'). Names that leave the folder by themselves ('..', absolute) stay refused."""
    ad, root = adapter
    store = tmp_path_factory.mktemp("shared_store")
    (store / "lora.safetensors").write_bytes(b"x")
    (store / "sd15").mkdir()
    (store / "sd15" / "model.safetensors").write_bytes(b"y")
    (store / "pipe" / "unet").mkdir(parents=True)
    (store / "pipe" / "unet" / "config.json").write_text("{}")
    (root / "loras" / "linked.safetensors").symlink_to(store / "lora.safetensors")
    (root / "checkpoints" / "shared").symlink_to(store / "sd15", target_is_directory=True)
    (root / "diffusers" / "linked-pipe").symlink_to(store / "pipe", target_is_directory=True)

    assert "linked.safetensors" in ad.file_choices("loras")
    assert ad.resolve_file("loras", "linked.safetensors", "x").read_bytes() == b"x"
    assert ad.resolve_sd_model("checkpoints/shared/model.safetensors", "x").read_bytes() == b"y"
    assert ad.resolve_sd_model("diffusers/linked-pipe", "x").resolve() == (store / "pipe").resolve()
    for name in ("../lora.safetensors", str(store / "lora.safetensors"), "shared/../../x.safetensors", ""):
        with pytest.raises(WeightsNotFoundError):
            ad.resolve_file("loras", name, "x")


def _age(root, seconds=120):
    """Date every directory under `root` back, as if the tree was last changed `seconds` ago."""
    import os
    import time

    past = time.time() - seconds
    for folder, _, _ in os.walk(root):
        os.utime(folder, (past, past))


@pytest.fixture()
def counted_scans(adapter, monkeypatch):
    ad, root = adapter
    monkeypatch.setattr(ad, "_SCANS", {})
    calls = []
    real = ad._scan_tree
    monkeypatch.setattr(ad, "_scan_tree", lambda folder, marker: calls.append(folder) or real(folder, marker))
    return ad, root, calls


def test_folder_scans_are_cached_until_a_folder_changes_at_any_depth(counted_scans):
    ad, root, calls = counted_scans
    base = root / "diffusers"
    (base / "group" / "a" / "unet").mkdir(parents=True)
    (base / "group" / "a" / "unet" / "config.json").write_text("{}")
    (base / "group" / "b" / "unet").mkdir(parents=True)  # a download in progress: no config.json yet
    _age(base)
    assert ad.sd_model_choices("(none)") == ["diffusers/group/a"]
    assert len(calls) == 1
    assert ad.sd_model_choices("(none)") == ["diffusers/group/a"]
    assert len(calls) == 1  # nothing changed: no rescan

    # Deep inside an existing folder: neither diffusers/ nor its immediate subfolder changes its mtime.
    (base / "group" / "b" / "unet" / "config.json").write_text("{}")
    assert ad.sd_model_choices("(none)") == ["diffusers/group/a", "diffusers/group/b"]
    assert len(calls) == 2
    # A brand-new model folder appears too.
    (base / "c" / "unet").mkdir(parents=True)
    (base / "c" / "unet" / "config.json").write_text("{}")
    assert ad.sd_model_choices("(none)") == ["diffusers/c", "diffusers/group/a", "diffusers/group/b"]
    # ... and one removed disappears.
    (base / "group" / "a" / "unet" / "config.json").unlink()
    assert ad.sd_model_choices("(none)") == ["diffusers/c", "diffusers/group/b"]
    _age(base)
    ad.sd_model_choices("(none)")
    n = len(calls)
    assert ad.sd_model_choices("(none)") == ["diffusers/c", "diffusers/group/b"] and len(calls) == n


def test_fresh_changes_are_rescanned_until_older_than_the_mtime_resolution(counted_scans):
    """A change within the same mtime tick as a scan would not change the mtime again: such a scan is not
    trusted, the next call scans again."""
    ad, root, calls = counted_scans
    (root / "diffusers" / "m" / "unet").mkdir(parents=True)
    (root / "diffusers" / "m" / "unet" / "config.json").write_text("{}")
    ad.sd_model_choices("(none)")
    ad.sd_model_choices("(none)")
    assert len(calls) == 2  # just written: mtimes within MTIME_RESOLUTION_NS of the scan


def test_dreamoving_config_folders_share_the_cached_scan(counted_scans, monkeypatch):
    ad, root, calls = counted_scans
    from papernodes.nodes import dreamoving_loaders

    controlnet = root / "controlnet"
    monkeypatch.setattr(ad, "model_folders", lambda kind: [str(root / kind)])
    (controlnet / "pose" / "nested").mkdir(parents=True)
    (controlnet / "pose" / "config.json").write_text("{}")
    (controlnet / "config.json").write_text("{}")  # the folder itself is not an entry
    _age(controlnet)
    assert dreamoving_loaders._folders_with_config("controlnet") == ["pose"]
    assert dreamoving_loaders._folders_with_config("controlnet") == ["pose"]
    assert len(calls) == 1
    (controlnet / "pose" / "nested" / "config.json").write_text("{}")
    assert dreamoving_loaders._folders_with_config("controlnet") == ["pose", "pose/nested"]
    assert len(calls) == 2


def test_symlinked_model_folders_are_listed_and_cycles_end(counted_scans, tmp_path_factory):
    ad, root, calls = counted_scans
    store = tmp_path_factory.mktemp("store")
    (store / "pipe" / "unet").mkdir(parents=True)
    (store / "pipe" / "unet" / "config.json").write_text("{}")
    (root / "diffusers" / "linked").symlink_to(store / "pipe", target_is_directory=True)
    (store / "pipe" / "loop").symlink_to(root / "diffusers", target_is_directory=True)  # a cycle
    assert ad.sd_model_choices("(none)") == ["diffusers/linked"]
    assert ad.resolve_sd_model("diffusers/linked", "x").resolve() == (store / "pipe").resolve()
