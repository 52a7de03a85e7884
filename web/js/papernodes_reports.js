// Shows the text a PaperNodes node reports ({"ui": {"text": [...]}}) on the node itself, the way core
// "Preview Any" shows its value: a read-only text box that is not saved with the workflow.
import { app } from "../../scripts/app.js";

const REPORT_NODES = new Set(["PaperNodes_ColorizationMetrics", "PaperNodes_SwiftBrushDistill"]);
const WIDGET_NAME = "report";

function reportWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (existing) return existing;
  const area = document.createElement("textarea");
  area.readOnly = true;
  area.rows = 4;
  area.style.cssText = "width:100%;font:11px monospace;resize:vertical;";
  const widget = node.addDOMWidget(WIDGET_NAME, "textarea", area, {
    serialize: false,
    getValue: () => area.value,
    setValue: (value) => {
      area.value = value;
    },
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
      widget.element.value = text;
      const [, minHeight] = this.computeSize();
      this.setSize([Math.max(this.size[0], 360), Math.max(this.size[1], minHeight)]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
