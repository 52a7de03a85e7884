"""Every example workflow is valid for the live server: known nodes, typed links, widgets = API twin; it runs."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT

# Tests that take the comfy_host fixture are marked `host` by conftest.py; the file checks run in the fast tier.

WORKFLOW_DIR = REPO_ROOT / "example_workflows"
API_DIR = WORKFLOW_DIR / "api"
UI_FILES = sorted(WORKFLOW_DIR.glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_NODES = {
    "Note",
    "MarkdownNote",
}  # drawn by the frontend only; not in /object_info, not in API prompts


def _workflows():
    import make_workflows

    return make_workflows, {f"{wf.title}.json": wf for wf in make_workflows.WORKFLOWS}


def _api_twin(ui_path):
    _, by_file = _workflows()
    return json.loads((API_DIR / f"{by_file[ui_path.name].slug}.json").read_text())


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
    mw, by_file = _workflows()
    assert sorted(wf.slug for wf in mw.WORKFLOWS) == [
        "bidiff_generate",
        "bidiff_prior",
        "colorize",
        "dreamoving_depth",
        "dreamoving_pose",
        "handdiffuse_clap",
        "handdiffuse_inbetween",
        "handdiffuse_trajectory",
        "infedit",
        "motioncustom_apply",
        "motioncustom_train",
        "swiftbrush",
        "trihuman_dance",
        "trihuman_mesh",
    ]
    assert [p.name for p in UI_FILES] == sorted(by_file), "the template folder holds only the UI workflows"
    for wf in mw.WORKFLOWS:
        assert (API_DIR / f"{wf.slug}.json").is_file(), f"{wf.title} has no API twin"
        thumb = WORKFLOW_DIR / f"{wf.title}.jpg"
        assert thumb.is_file(), (
            f"{wf.title} has no thumbnail (python scripts/make_thumbnails.py after the main job)"
        )
        from PIL import Image

        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.height >= 128 and im.width >= 128


def test_generated_files_are_up_to_date():
    mw, _ = _workflows()
    for wf in mw.WORKFLOWS:
        nodes = wf.build()
        assert json.loads((WORKFLOW_DIR / f"{wf.title}.json").read_text()) == mw.ui_format(nodes, wf.note)
        assert json.loads((API_DIR / f"{wf.slug}.json").read_text()) == mw.api_format(nodes)


def _boxes(ui: dict, title_h: int) -> dict[int, tuple[float, float, float, float]]:
    """Each node's drawn rectangle (x0, y0, x1, y1), title bar included (drawn above pos)."""
    return {
        n["id"]: (n["pos"][0], n["pos"][1] - title_h, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        for n in ui["nodes"]
    }


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: p.stem)
def test_layout_opens_readable(ui_path):
    """No two nodes overlap, no title is wider than its node, and the saved view shows the whole graph
    right of the sidebar and below the top bar (scale ≤ 1)."""
    mw, by_file = _workflows()
    ui = json.loads(ui_path.read_text())
    boxes = _boxes(ui, mw.TITLE_H)
    ids = sorted(boxes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
            overlap = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
            assert not overlap, f"nodes {a} and {b} overlap"
    for n in ui["nodes"]:
        title = n.get("title") or mw.DISPLAY.get(n["type"], n["type"])
        assert mw.title_width(title) + 20 <= n["size"][0], f"title {title!r} is cut"
    ds = ui["extra"]["ds"]
    scale, (ox, oy) = ds["scale"], ds["offset"]
    assert mw.MIN_SCALE <= scale <= 1, "below 0.57 the frontend draws blank boxes (no titles, no text)"
    x0 = min(b[0] for b in boxes.values())
    y0 = min(b[1] for b in boxes.values())
    x1 = max(b[2] for b in boxes.values())
    y1 = max(b[3] for b in boxes.values())
    # Screen pixels of a 1600x900 window; the top 140 px hold the menu, tabs and banners (seen on both hosts).
    assert (x0 + ox) * scale >= 100 and (y0 + oy) * scale >= 140, "graph starts under the sidebar or top bar"
    assert (x1 + ox) * scale <= 1600 and (y1 + oy) * scale <= 900, "graph does not fit a 1600x900 window"
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and "models/" in notes[0]["widgets_values"][0], "a Note says where models go"
    assert by_file[ui_path.name].note == notes[0]["widgets_values"][0]


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: p.stem)
def test_links_do_not_run_behind_nodes(ui_path):
    """The editor draws links below the nodes: a link through a node is hidden there and seems to end at the
    wrong node. Each link's curve (sampled as the frontend draws it) stays clear of every node's rectangle."""
    mw, _ = _workflows()
    ui = json.loads(ui_path.read_text())
    curves = mw.link_curves(ui)
    assert len(curves) == len(ui["links"]) and all(len(c) > 32 for c in curves.values())
    names = {
        n["id"]: f"#{n['id']} {n.get('title') or mw.DISPLAY.get(n['type'], n['type'])}" for n in ui["nodes"]
    }
    ends = {link[0]: (link[1], link[3]) for link in ui["links"]}
    hidden = [
        f"link {names[ends[link][0]]} -> {names[ends[link][1]]} runs behind {names[node]}"
        for link, node in mw.links_behind_nodes(ui)
    ]
    assert not hidden, "; ".join(hidden)


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_matches_server_and_api_twin(comfy_host, ui_path):
    info = comfy_host.object_info()
    ui = json.loads(ui_path.read_text())
    api = _api_twin(ui_path)
    nodes = {n["id"]: n for n in ui["nodes"] if n["type"] not in VIRTUAL_NODES}
    mw, _ = _workflows()
    for node in nodes.values():  # titles the server gives (core names differ between versions) fit the node
        title = (
            node.get("title") or info[node["type"]]["display_name"] or node["type"]
        )  # V3 nodes may have none
        assert mw.title_width(title) + 20 <= node["size"][0], f"title {title!r} is cut"
    assert set(map(str, nodes)) == set(api)
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        assert src in nodes and dst in nodes, f"link {link_id} points at a missing node"
        src_info, dst_info = info[nodes[src]["type"]], info[nodes[dst]["type"]]
        assert src_info["output"][src_slot] == typ, f"link {link_id}: output type"
        dst_input = nodes[dst]["inputs"][dst_slot]
        assert dst_input["link"] == link_id
        expected = dict(_inputs_in_order(dst_info))[dst_input["name"]][0]
        # a comma list is a union (LiteGraph splits it: 0.33's Save 3D Model takes MESH or 3D files)
        wants = f"link {link_id}: {dst_input['name']} wants {expected}"
        assert typ in expected.split(",") or expected == "*", wants
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
    entry = comfy_host.run(_api_twin(ui_path), timeout=900)
    assert comfy_host.output_files(entry), "the workflow wrote no files"


def test_templates_are_served(comfy_host):
    """The templates browser lists the UI workflows by title (not the API twins) and finds each thumbnail."""
    from urllib.parse import quote

    mw, _ = _workflows()
    status, listing = comfy_host.request("GET", "/api/workflow_templates")
    assert status == 200
    ours = {k: v for k, v in listing.items() if "PaperNodes" in k}
    assert len(ours) == 1, listing
    ((module, names),) = ours.items()
    assert sorted(names) == sorted(wf.title for wf in mw.WORKFLOWS)
    for wf in mw.WORKFLOWS:
        status, _ = comfy_host.request(
            "GET", f"/api/workflow_templates/{quote(module)}/{quote(wf.title)}.jpg"
        )
        assert status == 200, f"thumbnail of {wf.title}"
