"""Every example workflow is valid for the live server: known nodes, typed links, widgets = API twin; it runs."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.host

WORKFLOW_DIR = REPO_ROOT / "example_workflows"
UI_FILES = sorted(p for p in WORKFLOW_DIR.glob("*.json") if not p.name.endswith("_api.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _inputs_in_order(info: dict) -> list[tuple[str, list]]:
    order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
    return [(name, info["input"][s][name]) for s in ("required", "optional") for name in order.get(s, [])]


def _is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def _widget_names(info: dict) -> list[str]:
    """The UI's widget slots: widget inputs in order, plus upload buttons and seed control values."""
    names = []
    for name, spec in _inputs_in_order(info):
        if not _is_widget(spec):
            continue
        opts = spec[1] if len(spec) > 1 else {}
        names.append(name)
        if opts.get("image_upload"):
            names.append("<upload>")
        if spec[0] == "INT" and (name in ("seed", "noise_seed") or opts.get("control_after_generate")):
            names.append("<control_after_generate>")
    return names


def test_there_is_a_workflow_per_shipped_method():
    assert [p.stem for p in UI_FILES] == [
        "colorize",
        "dreamoving_depth",
        "dreamoving_pose",
        "infedit",
        "swiftbrush",
    ]
    for ui in UI_FILES:
        assert (WORKFLOW_DIR / f"{ui.stem}_api.json").is_file(), f"{ui.name} has no API twin"


def test_generated_files_are_up_to_date():
    import make_workflows

    for name, build in make_workflows.WORKFLOWS.items():
        nodes = build()
        assert json.loads((WORKFLOW_DIR / f"{name}.json").read_text()) == make_workflows.ui_format(nodes)
        assert json.loads((WORKFLOW_DIR / f"{name}_api.json").read_text()) == make_workflows.api_format(nodes)


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_matches_server_and_api_twin(comfy_host, ui_path):
    info = comfy_host.object_info()
    ui = json.loads(ui_path.read_text())
    api = json.loads((WORKFLOW_DIR / f"{ui_path.stem}_api.json").read_text())
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert set(map(str, nodes)) == set(api)
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        assert src in nodes and dst in nodes, f"link {link_id} points at a missing node"
        src_info, dst_info = info[nodes[src]["type"]], info[nodes[dst]["type"]]
        assert src_info["output"][src_slot] == typ, f"link {link_id}: output type"
        dst_input = nodes[dst]["inputs"][dst_slot]
        assert dst_input["link"] == link_id
        expected = dict(_inputs_in_order(dst_info))[dst_input["name"]][0]
        assert expected == typ or expected == "*", f"link {link_id}: {dst_input['name']} wants {expected}"
        assert api[str(dst)]["inputs"][dst_input["name"]] == [str(src), src_slot]
    for node_id, node in nodes.items():
        assert node["type"] in info, f"unknown node type {node['type']}"
        node_info = info[node["type"]]
        names = _widget_names(node_info)
        values = node["widgets_values"]
        assert len(values) == len(names), f"{node['type']}: widgets {names} vs values {values}"
        api_inputs = api[str(node_id)]["inputs"]
        for name, value in zip(names, values):
            if not name.startswith("<"):
                assert api_inputs[name] == value, (
                    f"{node['type']}.{name}: UI {value!r} vs API {api_inputs[name]!r}"
                )
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for name in node_info["input"]["required"]:
            assert name in linked or name in api_inputs, f"{node['type']} misses required input {name}"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: p.stem)
def test_api_twin_runs(comfy_host, ui_path):
    api = json.loads((WORKFLOW_DIR / f"{ui_path.stem}_api.json").read_text())
    entry = comfy_host.run(api, timeout=900)
    assert comfy_host.output_files(entry), "the workflow wrote no files"


def test_templates_are_served(comfy_host):
    status, listing = comfy_host.request("GET", "/api/workflow_templates")
    assert status == 200
    names = [n for names in listing.values() for n in names] if isinstance(listing, dict) else listing
    assert "colorize" in names
