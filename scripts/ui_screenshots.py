"""Screenshot the pack's example workflows as a user sees them in the real ComfyUI frontend.

For every UI-format workflow in example_workflows/*.json (not the api/ subfolder) this opens the host's page
in headless Chromium at 1600x900, waits for the app, loads the workflow the way the templates browser does
(`app.loadGraphData(json, true, true, name)`), waits ~2 s and saves `<out>/<name>.png`. Then it queues the
colorize workflow, polls GET /history until that prompt finished, and saves `<out>/colorize_after_run.png`
(plus `colorize_metrics_node.png`, a close-up of the "Colorize: Image Metrics" node, and `report_widget.json`,
what that node's report widget holds), then does the same once more with the frontend's "Nodes 2.0" (Vue
nodes) switched on: `<colorize>_nodes2.png`, `colorize_after_run_nodes2.png`,
`colorize_metrics_node_nodes2.png`. It also tries to open the templates browser on the pack's category
(`templates_dialog.png`, best effort).

Logs written next to the screenshots:
  console.txt             browser console errors/warnings and page errors mentioning PaperNodes/papernodes_reports
  console_all.txt         every console error/warning and page error (context for the above)
  layout.json             per workflow as opened: zoom, whether it renders in low-quality (LOD) mode, node
                          overlaps, nodes partly outside the view or under the app's menus/minimap, titles that may not
                          fit their node
  extension_requests.txt  the requests the page made for /extensions/... files, with their HTTP status

Needs a running ComfyUI with the pack and the demo models, e.g. (from the pack's folder)

    ~/.cache/comfyui-papernodes/venv/bin/python scripts/comfy_host.py serve --port 8199 --base /tmp/shotbase

and a Python that has `playwright` (its own driver; no browser download: it launches Debian's chromium):

    python3.11 -m venv /tmp/pwvenv && /tmp/pwvenv/bin/pip install playwright && apt-get install -y chromium
    /tmp/pwvenv/bin/python scripts/ui_screenshots.py --url http://127.0.0.1:8199 --out /tmp/ui_shots/0.3.75

Stdlib + playwright only. Exit code 0 when every screenshot was taken and the colorize run finished, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "example_workflows"
PACK_NAME = "ComfyUI-PaperNodes"
VIEWPORT = {"width": 1600, "height": 900}
METRICS_TYPE = "PaperNodes_ColorizationMetrics"
CONSOLE_KEYS = ("papernodes", "papernodes_reports")  # matched case-insensitively
OFFLINE_NOISE = "violates the following Content Security Policy"
# Modal dialogs: PrimeVue's in frontend 1.32 (ComfyUI 0.3.75), role=dialog (reka-ui) in 1.49 (ComfyUI 0.33).
DIALOG = ".p-dialog:visible, [role=dialog]:visible"
DIALOG_CLOSE = (
    "button[aria-label='Close'], button[aria-label='Close dialog'], "
    ".p-dialog-close-button, .p-dialog-header-close"
)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these the browser's own background traffic makes connections fail on a closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def http_json(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


class ConsoleLog:
    """Collects console errors/warnings, page errors and the page's requests for extension files."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.requests: list[str] = []
        self.context = "startup"

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.entries.append(f"[{self.context}] pageerror: {exc}"))
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)

    def _on_console(self, msg) -> None:
        if msg.type not in ("error", "warning"):
            return
        loc = msg.location or {}
        where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
        self.entries.append(f"[{self.context}] console.{msg.type}: {msg.text}{where}")

    def _on_response(self, resp) -> None:
        if "/extensions/" in resp.url or "papernodes_reports" in resp.url.lower():
            self.requests.append(f"[{self.context}] {resp.status} {resp.url}")

    def _on_request_failed(self, req) -> None:
        if "/extensions/" in req.url or "papernodes_reports" in req.url.lower():
            self.requests.append(f"[{self.context}] FAILED {req.url}: {req.failure}")

    def write(self, out: Path) -> None:
        ours = [e for e in self.entries if any(k in e.lower() for k in CONSOLE_KEYS)]
        # The frontend asks the online node registry about every node type it shows; on an offline host the
        # page's CSP blocks that. Those lines only name our node types: kept, but apart from the real ones.
        registry = [e for e in ours if OFFLINE_NOISE in e]
        real = [e for e in ours if OFFLINE_NOISE not in e]
        lines = real or [
            "(no console errors/warnings mentioning PaperNodes"
            + (", other than the registry look-ups below)" if registry else ")")
        ]
        if registry:
            lines += [
                "",
                f"# {len(registry)} blocked look-ups of our node types in the online node registry "
                "(frontend behaviour on an offline host, harmless):",
                *dict.fromkeys(e.split("] ", 1)[-1] for e in registry),
            ]
        (out / "console.txt").write_text("\n".join(lines) + "\n")
        (out / "console_all.txt").write_text("\n".join(self.entries) + "\n" if self.entries else "(none)\n")
        (out / "extension_requests.txt").write_text("\n".join(dict.fromkeys(self.requests)) + "\n")


def open_app(page: Page, url: str, log: ConsoleLog, first: bool = False) -> None:
    """Load the page, wait for window.app with a graph and a canvas, give extensions time to register.

    On a fresh user dir the frontend opens the templates browser by itself (Comfy.TutorialCompleted is false);
    on the first load we wait for it and close it, as a user would, so it does not cover the graph.
    """
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_function(
        "() => window.app && window.app.graph && window.app.canvas && document.querySelector('canvas')",
        timeout=120_000,
    )
    try:
        page.wait_for_function(
            "() => (window.app.extensions || []).some((e) => e.name === 'PaperNodes.NodeReports')",
            timeout=15_000,
        )
    except PlaywrightError:
        log.entries.append(
            f"[{log.context}] note: extension PaperNodes.NodeReports not registered after 15 s"
        )
    if first:
        try:
            page.wait_for_selector(DIALOG, timeout=6000)
            page.wait_for_timeout(500)
        except PlaywrightError:
            pass
    page.wait_for_timeout(1000)
    close_dialogs(page)


def close_dialogs(page: Page) -> None:
    """Dismiss first-run dialogs (e.g. the templates browser a fresh user dir opens) so they hide nothing."""
    for _ in range(4):
        dialogs = page.locator(DIALOG)
        if not dialogs.count():
            return
        close = dialogs.last.locator(DIALOG_CLOSE)
        if close.count():
            close.first.click()
        else:
            page.keyboard.press("Escape")
        page.wait_for_timeout(500)


def load_workflow(page: Page, path: Path) -> None:
    data = json.loads(path.read_text())
    # Same call as the templates browser: clean graph, restore the saved view, workflow named after the file.
    page.evaluate(
        "async ([data, name]) => { await window.app.loadGraphData(data, true, true, name); }",
        [data, path.stem],
    )
    page.wait_for_timeout(2000)
    close_dialogs(page)


def node_box(page: Page, node_type: str) -> dict | None:
    """Screen rectangle (title bar included) of the first node of `node_type`, and its widgets."""
    return page.evaluate(
        """(type) => {
          const app = window.app;
          const node = app.graph._nodes.find((n) => n.type === type);
          if (!node) return null;
          const ds = app.canvas.ds;
          const rect = app.canvas.canvas.getBoundingClientRect();
          const title = (window.LiteGraph && window.LiteGraph.NODE_TITLE_HEIGHT) || 30;
          const x = rect.left + (node.pos[0] + ds.offset[0]) * ds.scale;
          const y = rect.top + (node.pos[1] - title + ds.offset[1]) * ds.scale;
          const widgets = (node.widgets || []).map((w) => ({
            name: w.name, type: w.type,
            value: w.element ? w.element.value : (typeof w.value === 'string' ? w.value : String(w.value)),
          }));
          return {id: node.id, title: node.title, pos: [...node.pos], size: [...node.size], scale: ds.scale,
                  x, y, width: node.size[0] * ds.scale, height: (node.size[1] + title) * ds.scale, widgets};
        }""",
        node_type,
    )


LAYOUT_JS = """() => {
  const app = window.app, ds = app.canvas.ds;
  const rect = app.canvas.canvas.getBoundingClientRect();
  const title = (window.LiteGraph && window.LiteGraph.NODE_TITLE_HEIGHT) || 30;
  const boxes = app.graph._nodes.map((n) => ({id: n.id, type: n.type, title: n.title,
      x: n.pos[0], y: n.pos[1] - title, w: n.size[0], h: n.size[1] + title}));
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    const ox = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
    const oy = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
    if (ox > 0 && oy > 0) overlaps.push(`${a.title} [${a.id}] x ${b.title} [${b.id}]: ${Math.round(ox)}x${Math.round(oy)}`);
  }
  const toScreen = (x, y) => [rect.left + (x + ds.offset[0]) * ds.scale, rect.top + (y + ds.offset[1]) * ds.scale];
  const outside = boxes.filter((b) => {
    const [x0, y0] = toScreen(b.x, b.y), [x1, y1] = toScreen(b.x + b.w, b.y + b.h);
    return x0 < rect.left || y0 < rect.top || x1 > rect.right || y1 > rect.bottom;
  }).map((b) => `${b.title} [${b.id}]`);
  // Parts of nodes hidden by the app's own chrome (menus, tabs, banners, minimap): sample each node's corners,
  // edge midpoints and title; a point counts as covered when the element there is neither the canvas nor a
  // node's DOM widget.
  const covered = [];
  for (const b of boxes) {
    const pts = [];
    for (const fx of [0, 0.5, 1]) for (const fy of [0, 0.5, 1]) pts.push([b.x + fx * b.w, b.y + fy * b.h]);
    pts.push([b.x + 0.3 * b.w, b.y + title / 2]);
    const hits = new Set();
    for (const [gx, gy] of pts) {
      const [sx, sy] = toScreen(gx, gy);
      if (sx < 0 || sy < 0 || sx >= innerWidth || sy >= innerHeight) continue;
      const el = document.elementFromPoint(Math.min(sx, innerWidth - 1), Math.min(sy, innerHeight - 1));
      if (!el || el === app.canvas.canvas || el.closest('.dom-widget')) continue;
      const named = el.closest('[class]');
      hits.add((named && named.className && String(named.className).split(' ')[0]) || el.tagName.toLowerCase());
    }
    if (hits.size) covered.push(`${b.title} [${b.id}] under: ${[...hits].join(', ')}`);
  }
  const titleWidth = (n) => { const c = app.canvas.ctx; c.save(); c.font = app.canvas.title_text_font || '14px Arial';
      const w = c.measureText(n.title).width; c.restore(); return w; };
  const cut = app.graph._nodes.filter((n) => titleWidth(n) + 2 * title > n.size[0]).map((n) => `${n.title} [${n.id}]`);
  return {scale: ds.scale, offset: [...ds.offset], canvas: [rect.left, rect.top, rect.width, rect.height],
          low_quality: app.canvas.low_quality ?? null, nodes: boxes.length, overlaps,
          partly_outside_view: outside, covered_by_ui: covered, titles_maybe_cut: cut};
}"""


def layout(page: Page) -> dict:
    """Node overlaps (graph units, title bars included), nodes partly off-screen, low-quality (LOD) rendering."""
    return page.evaluate(LAYOUT_JS)


def center_on(page: Page, node_type: str, scale: float = 1.0) -> None:
    """Pan/zoom the canvas so the node sits in the middle of the view (away from minimap and menus)."""
    page.evaluate(
        """([type, scale]) => {
          const app = window.app, node = app.graph._nodes.find((n) => n.type === type);
          if (!node) return;
          const ds = app.canvas.ds, rect = app.canvas.canvas.getBoundingClientRect();
          ds.scale = scale;
          ds.offset[0] = rect.width / 2 / scale - (node.pos[0] + node.size[0] / 2);
          ds.offset[1] = rect.height / 2 / scale - (node.pos[1] + node.size[1] / 2);
          app.canvas.setDirty(true, true);
        }""",
        [node_type, scale],
    )
    page.wait_for_timeout(800)


def screenshot_clip(page: Page, box: dict, path: Path, margin: int = 24) -> None:
    x = max(0, box["x"] - margin)
    y = max(0, box["y"] - margin)
    w = min(VIEWPORT["width"] - x, box["width"] + 2 * margin)
    h = min(VIEWPORT["height"] - y, box["height"] + 2 * margin)
    if w > 10 and h > 10:
        page.screenshot(path=str(path), clip={"x": x, "y": y, "width": w, "height": h})


def run_colorize(page: Page, url: str, out: Path, timeout: float, suffix: str = "") -> bool:
    """Queue the loaded workflow, wait for its history entry, screenshot the graph and the metrics node."""
    before = set(http_json(f"{url}/history"))
    page.evaluate("async () => { await window.app.queuePrompt(0); }")
    deadline = time.monotonic() + timeout
    entry = None
    while time.monotonic() < deadline:
        new = {k: v for k, v in http_json(f"{url}/history").items() if k not in before}
        done = [
            v
            for v in new.values()
            if (v.get("status") or {}).get("completed") is not None
            or (v.get("status") or {}).get("status_str") in ("success", "error")
        ]
        if done:
            entry = done[0]
            break
        time.sleep(1)
    if entry is None:
        print(f"colorize{suffix}: no finished history entry within {timeout:.0f} s", file=sys.stderr)
        return False
    status = entry.get("status") or {}
    print(f"colorize{suffix}: finished, status={status.get('status_str')}")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(out / f"colorize_after_run{suffix}.png"))
    after = layout(page)
    center_on(page, METRICS_TYPE)
    box = node_box(page, METRICS_TYPE)
    report = {"status": status.get("status_str"), "node": box, "layout_after_run": after}
    (out / f"report_widget{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    if box:
        screenshot_clip(page, box, out / f"colorize_metrics_node{suffix}.png", margin=60)
    return status.get("status_str") == "success"


def run_nodes2(page: Page, url: str, out: Path, log: ConsoleLog, path: Path, timeout: float) -> bool:
    """Run the colorize workflow again with the frontend's "Nodes 2.0" (Vue nodes, Comfy.VueNodes.Enabled) on,
    which renders widgets differently; the setting is switched back off afterwards."""
    setting = "async (on) => { await window.app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on); }"
    try:
        page.evaluate(setting, True)
    except PlaywrightError as exc:
        print(f"Nodes 2.0: cannot switch it on ({exc.message.splitlines()[0]}); skipped", file=sys.stderr)
        return True
    try:
        open_app(page, url, log)
        load_workflow(page, path)
        page.screenshot(path=str(out / f"{path.stem}_nodes2.png"))
        return run_colorize(page, url, out, timeout, suffix="_nodes2")
    finally:
        page.evaluate(setting, False)


def templates_dialog(page: Page, out: Path) -> None:
    """Best effort: open the templates browser, pick the pack's category, screenshot it."""
    try:
        page.evaluate(
            "async () => { await window.app.extensionManager.command.execute('Comfy.BrowseTemplates'); }"
        )
        page.wait_for_selector(DIALOG, timeout=10_000)
        page.wait_for_timeout(1500)
        category = page.locator(DIALOG).last.get_by_text(PACK_NAME, exact=False).first
        if category.count():
            category.click()
            page.wait_for_timeout(2500)
        page.screenshot(path=str(out / "templates_dialog.png"))
        close_dialogs(page)
    except PlaywrightError as exc:
        print(f"templates dialog: not captured ({exc.message.splitlines()[0]})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8199", help="ComfyUI host URL")
    parser.add_argument("--out", required=True, help="folder receiving the PNGs and logs")
    parser.add_argument("--workflows", default=str(WORKFLOWS), help="folder of UI-format workflows")
    parser.add_argument("--colorize", default="Colorization", help="file-name prefix of the workflow to run")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the colorize run")
    parser.add_argument("--no-run", action="store_true", help="only screenshot the workflows as opened")
    parser.add_argument(
        "--no-nodes2", action="store_true", help="skip the second run with Nodes 2.0 (Vue nodes)"
    )
    args = parser.parse_args(argv)

    url = args.url.rstrip("/")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(args.workflows).glob("*.json"))
    if not paths:
        print(f"no workflows in {args.workflows}", file=sys.stderr)
        return 1
    ok = True
    log = ConsoleLog()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            log.attach(page)
            layouts = {}
            for i, path in enumerate(paths):
                log.context = path.stem
                open_app(page, url, log, first=(i == 0))
                load_workflow(page, path)
                shot = out / f"{path.stem}.png"
                page.screenshot(path=str(shot))
                layouts[path.stem] = layout(page)
                print(f"wrote {shot}")
            (out / "layout.json").write_text(json.dumps(layouts, indent=2) + "\n")
            colorize = [p for p in paths if p.name.startswith(args.colorize)]
            if not args.no_run:
                if not colorize:
                    print(f"no workflow named {args.colorize}*", file=sys.stderr)
                    ok = False
                else:
                    log.context = "colorize run"
                    open_app(page, url, log)
                    load_workflow(page, colorize[0])
                    ok = run_colorize(page, url, out, args.timeout) and ok
                    if not args.no_nodes2:
                        log.context = "colorize run, Nodes 2.0"
                        ok = run_nodes2(page, url, out, log, colorize[0], args.timeout) and ok
            log.context = "templates dialog"
            templates_dialog(page, out)
        finally:
            log.write(out)
            browser.close()
    print(f"logs: {out / 'console.txt'}, {out / 'console_all.txt'}, {out / 'extension_requests.txt'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
