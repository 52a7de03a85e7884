// Shows the text a PaperNodes node reports ({"ui": {"text": [...]}}) on the node itself, the way core
// "Preview Any" shows its value: a read-only text box that is not saved with the workflow.
// The box is sized to the report: long lines wrap at the node's width (the node is not widened, so it keeps
// its place in the workflow's layout) and the node grows in height until every row shows, without scrolling.
// Checked in ComfyUI 0.3.75 (frontend 1.32) and 0.33 (frontend 1.49) with scripts/ui_screenshots.py.
import { app } from "../../scripts/app.js";

const REPORT_NODES = new Set(["PaperNodes_ColorizationMetrics", "PaperNodes_SwiftBrushDistill"]);
const WIDGET_NAME = "report";
const FONT_PX = 11;
const LINE_PX = 15; // line-height of the box
const CHAR_PX = 6.7; // width of one monospace character at FONT_PX
const PAD_PX = 12; // box padding + border, top and bottom together
const SIDE_PX = 40; // node margins + box padding left and right
const MIN_NODE_WIDTH = 360;

// Rows the text takes in a box on a node `nodeWidth` wide (monospace, wrapping at the box edge).
function rowCount(text, nodeWidth) {
  const perRow = Math.max(20, Math.floor((nodeWidth - SIDE_PX) / CHAR_PX));
  return text.split("\n").reduce((rows, line) => rows + Math.max(1, Math.ceil(line.length / perRow)), 0);
}

function reportWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (existing) return existing;
  const area = document.createElement("textarea");
  area.readOnly = true;
  area.style.cssText =
    `width:100%;box-sizing:border-box;font:${FONT_PX}px/${LINE_PX}px monospace;padding:4px;` +
    "white-space:pre-wrap;overflow-wrap:anywhere;overflow:auto;resize:none;";
  // A widget type of our own, not "textarea": "Nodes 2.0" (Vue nodes) draws a widget typed "textarea" or
  // "customtext" with its own Vue textarea, fed from a value store this DOM widget never writes, so the report
  // stayed empty there. For a type it does not know, it mounts this element itself.
  const widget = node.addDOMWidget(WIDGET_NAME, "papernodes_report", area, {
    serialize: false,
    getValue: () => area.value,
    setValue: (value) => {
      area.value = value;
    },
    // The frontend lays the node out from these: room for every line of the report.
    getMinHeight: () => rowCount(area.value, node.size[0]) * LINE_PX + PAD_PX,
    getMaxHeight: () => rowCount(area.value, node.size[0]) * LINE_PX + PAD_PX + 40,
  });
  widget.serialize = false;
  return widget;
}

app.registerExtension({
  name: "PaperNodes.NodeReports",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!REPORT_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      if (!text) return;
      const widget = reportWidget(this);
      widget.value = text;
      const width = Math.max(this.size[0], MIN_NODE_WIDTH);
      this.size[0] = width; // computeSize below measures the wrapped rows at this width
      // The canvas renderer sizes the box from getMinHeight; "Nodes 2.0" (Vue nodes) from the box's own rows.
      widget.element.rows = rowCount(text, width);
      const [, minHeight] = this.computeSize();
      this.setSize([width, Math.max(this.size[1], minHeight)]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
