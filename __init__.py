"""ComfyUI-PaperNodes: late-2023 research methods as ComfyUI nodes (classic dict API)."""

if __package__:  # ComfyUI (and the tests' `papernodes` alias) import this folder as a package
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # pytest imports this file as a bare module when the checkout's folder name is not a Python identifier
    # (e.g. "ComfyUI-PaperNodes"); there is no package to import from then, and nothing needs the nodes.
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}

# Front-end extension: shows node reports (e.g. the metrics) on the node in the graph editor.
WEB_DIRECTORY = "./web/js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
