"""The official release's small metadata pickles (`base_trans.pkl`, `dof_convert_dict.pkl`,
`subdivision_dict_xyz_new.pkl`), read through the shared restricted unpickler (common/safe_pickle.py:
numpy arrays only, nothing the pickle names ever runs) plus `collections.OrderedDict` (read as a dict);
whatever the pickle built is then checked to be plain data.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ...common.errors import InputError
from ...common.safe_pickle import RefusedPickleError, RestrictedUnpickler, plain_dtype

__all__ = ["RefusedPickleError", "load_plain_pickle", "loads_plain"]


def _ordered_dict(*args):
    if args:
        raise RefusedPickleError("OrderedDict with constructor arguments")
    return {}


class _PlainUnpickler(RestrictedUnpickler):
    """Numpy arrays (common/safe_pickle.py) plus `collections.OrderedDict`, read as a dict."""

    def allowed(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return _ordered_dict
        return super().allowed(module, name)


def _check_plain(value: Any, where: str) -> None:
    """Everything the pickle built must be plain data (numpy's `ndarray` class object itself excluded)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, where)
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif isinstance(value, np.ndarray):
        plain_dtype(value.dtype)
    elif not isinstance(value, str | bytes | bool | int | float | complex | np.generic) and value is not None:
        raise RefusedPickleError(f"{where} is a {type(value).__name__}, not plain data")


def loads_plain(data: bytes, source: str = "pickle") -> Any:
    """Unpickle bytes that may only hold plain data (see the module docstring)."""
    value = _PlainUnpickler(io.BytesIO(data), source).load()
    _check_plain(value, "the pickle")
    return value


def load_plain_pickle(path: str | Path, expected: str) -> Any:
    """Read a metadata pickle through the restricted unpickler. `expected` says what the file should hold
    (for the error message). Raises `InputError` naming the file for a missing, refused or broken pickle."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), f"an existing file ({expected})", "no such file")
    try:
        return loads_plain(path.read_bytes(), str(path))
    except RefusedPickleError as exc:
        raise InputError(str(path), f"a plain-data pickle ({expected})", f"refused: {exc}") from exc
    except Exception as exc:  # truncated, not a pickle, bad array state ...
        raise InputError(
            str(path), f"a readable pickle ({expected})", f"{type(exc).__name__}: {exc}"
        ) from exc
