"""Errors that tell the user what to do next."""

from __future__ import annotations


class PaperNodesError(Exception):
    """Base class: the message is meant for the person running the workflow.

    ComfyUI shows an error's type as `<module>.<qualname>`; inside a custom-node folder the module is a
    file path ("…/custom_nodes/ComfyUI-PaperNodes.models.common.errors"), so every error of the pack
    reports its module as "PaperNodes" and reads `PaperNodes.InputError`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = ERROR_MODULE


ERROR_MODULE = "PaperNodes"
PaperNodesError.__module__ = ERROR_MODULE


class WeightsNotFoundError(PaperNodesError, FileNotFoundError):
    """A weights file or folder is missing: names the file, the folders searched and where to get it."""

    def __init__(self, name: str, searched: list[str], published: str = ""):
        self.name, self.searched, self.published = name, list(searched), published
        where = "; ".join(self.searched) if self.searched else "(no folders configured)"
        msg = f"Model file '{name}' was not found. Searched: {where}."
        if published:
            msg += f" Official weights: {published}."
        super().__init__(msg)


class WeightsFormatError(PaperNodesError, ValueError):
    """A weights file exists but is not in a format or architecture we can read."""


class InputError(PaperNodesError, ValueError):
    """A node input is unusable: the message names the input and what was expected."""

    def __init__(self, input_name: str, expected: str, got: str = ""):
        msg = f"Input '{input_name}': expected {expected}"
        if got:
            msg += f", got {got}"
        super().__init__(msg)
