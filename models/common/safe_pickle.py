"""Restricted unpickling: rebuild plain numpy arrays from a pickle without running anything it names.

Plain `pickle.load` calls whatever the file names (any importable callable with any arguments). A
`RestrictedUnpickler` resolves only numpy's array / dtype / scalar reconstructors, each wrapped so that it
builds plain numeric or text dtypes only, and `_codecs.encode` in the one form pickles use for bytes.
Dicts, lists, tuples, numbers, strings and bytes need no globals at all. Any other global (os.system,
builtins.eval, a class of the writer's program, ...) and any persistent id are refused before anything
runs. A reader that must accept more (MANO's chumpy stand-ins, an OrderedDict) overrides `allowed` and
`refused`. Used by the MANO reader (handdiffuse) and the TriHuman release reader.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

PLAIN_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, text: never object or structured dtypes


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set, or hands a wrapper something it never builds."""


def plain_dtype(dt: np.dtype) -> np.dtype:
    """`dt` itself when it is a plain numeric or text dtype; else RefusedPickleError."""
    if dt.kind not in PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise RefusedPickleError(f"dtype {dt} is not a plain numeric or text dtype")
    return dt


class NdarrayName:
    """What `numpy.ndarray` resolves to: usable only as the first argument of `_reconstruct`."""


def _ndarray_reconstruct(subtype, shape, dtype):
    """`numpy.core.multiarray._reconstruct`: an empty ndarray whose state the pickle then sets."""
    if subtype is not NdarrayName or not isinstance(dtype, str | bytes):
        raise RefusedPickleError("array reconstruction of something other than numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, shape, plain_dtype(np.dtype(dtype)))


def _dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise RefusedPickleError("a dtype given by something other than a type string")
    return plain_dtype(np.dtype(spec, bool(align), bool(copy)))


def _scalar(dtype, data=None):
    """`numpy.core.multiarray.scalar`. Python 2 pickles (MANO's) carry the raw bytes as a str that the
    unpickler decoded as latin-1; encoding it back gives the bytes."""
    if not isinstance(dtype, np.dtype):
        raise RefusedPickleError("a numpy scalar of something other than a dtype")
    plain_dtype(dtype)
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RefusedPickleError("a numpy scalar without its raw bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buf, dtype, shape, order="C"):
    """`numpy.core.numeric._frombuffer`: how protocol-5 pickles carry an array's bytes."""
    arr = np.frombuffer(bytes(buf), dtype=plain_dtype(np.dtype(dtype)))
    return arr.reshape(shape, order=order).copy()


def _latin1(text, encoding="latin1"):
    """`_codecs.encode(str, 'latin1')`: how Python writes bytes into protocol 0-2 pickles."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickleError("_codecs.encode outside its pickle use")
    return text.encode("latin1")


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _ndarray_reconstruct for m in _NUMPY_CORE},
    **{(m, "scalar"): _scalar for m in _NUMPY_CORE},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMPY_CORE},
    ("numpy", "ndarray"): NdarrayName,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Reads `file` resolving only ARRAY_GLOBALS plus what a subclass's `allowed` adds; `source` names the
    file in messages. Strings of Python 2 pickles are read as latin-1 (bytes survive unchanged)."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self.source = source

    def allowed(self, module: str, name: str) -> Any | None:
        """The object `module.name` resolves to, or None to refuse it."""
        return ARRAY_GLOBALS.get((module, name))

    def refused(self, what: str) -> Exception:
        """The error raised for a refused global or persistent id (`what` says which)."""
        return RefusedPickleError(
            f"the pickle asks for {what}; only dicts, lists, tuples, numbers, strings and numpy arrays are "
            "read (refused before anything ran)"
        )

    def find_class(self, module: str, name: str):
        found = self.allowed(module, name)
        if found is None:
            raise self.refused(f"'{module}.{name}'")
        return found

    def persistent_load(self, pid):
        raise self.refused("a persistent id")
