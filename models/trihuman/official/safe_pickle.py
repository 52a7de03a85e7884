"""A restricted unpickler for the official release's small metadata pickles (`base_trans.pkl`,
`dof_convert_dict.pkl`, `subdivision_dict_xyz_new.pkl`).

Plain `pickle.load` runs whatever the file names (any importable callable with any arguments). This reader
resolves only the globals numpy needs to rebuild arrays and scalars, each wrapped so that it accepts plain
numeric/text dtypes only, plus `collections.OrderedDict` (read as a dict). Dicts, lists, tuples, numbers,
strings and bytes need no globals at all. Any other global (os.system, builtins.eval, a class of the
writer's program, ...) is refused before anything runs, as are persistent ids.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...common.errors import InputError

_PLAIN_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, text: never object or structured dtypes


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set."""


def _plain_dtype(dt: np.dtype) -> np.dtype:
    if dt.kind not in _PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise RefusedPickleError(f"dtype {dt} is not a plain numeric or text dtype")
    return dt


class _NdarrayName:
    """What `numpy.ndarray` resolves to: usable only as the first argument of `_reconstruct`."""


def _ndarray_reconstruct(subtype, shape, dtype):
    """`numpy.core.multiarray._reconstruct`: an empty ndarray whose state the pickle then sets."""
    if subtype is not _NdarrayName or not isinstance(dtype, str | bytes):
        raise RefusedPickleError("array reconstruction of something other than numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(np.dtype(dtype)))


def _dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise RefusedPickleError("a dtype given by something other than a type string")
    return _plain_dtype(np.dtype(spec, bool(align), bool(copy)))


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype):
        raise RefusedPickleError("a numpy scalar of something other than a dtype")
    _plain_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RefusedPickleError("a numpy scalar without its raw bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buf, dtype, shape, order="C"):
    """`numpy.core.numeric._frombuffer`: how protocol-5 pickles carry an array's bytes."""
    arr = np.frombuffer(bytes(buf), dtype=_plain_dtype(np.dtype(dtype)))
    return arr.reshape(shape, order=order).copy()


def _latin1(text, encoding="latin1"):
    """`_codecs.encode(str, 'latin1')`: how Python writes bytes into protocol 0-2 pickles."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickleError("_codecs.encode outside its pickle use")
    return text.encode("latin1")


def _ordered_dict(*args):
    if args:
        raise RefusedPickleError("OrderedDict with constructor arguments")
    return {}


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
_ALLOWED = {
    **{(m, "_reconstruct"): _ndarray_reconstruct for m in _NUMPY_CORE},
    **{(m, "scalar"): _scalar for m in _NUMPY_CORE},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMPY_CORE},
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
    ("collections", "OrderedDict"): _ordered_dict,
}


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickleError(
                f"the pickle asks for '{module}.{name}'; only dicts, lists, tuples, numbers, strings and "
                "numpy arrays are read (refused before anything ran)"
            )
        return found

    def persistent_load(self, pid):
        raise RefusedPickleError("persistent ids in the pickle")


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
        _plain_dtype(value.dtype)
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
