"""The shared restricted unpickler (models/common/safe_pickle.py): arrays come back exactly in every
pickle protocol, nothing a pickle names outside numpy's array builders runs, non-plain dtypes are refused,
and a reader can extend or rename what it accepts."""

import io
import pickle

import numpy as np
import pytest
from papernodes.models.common.safe_pickle import RefusedPickleError, RestrictedUnpickler


def _load(data: bytes, cls=RestrictedUnpickler):
    return cls(io.BytesIO(data), "test.pkl").load()


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_arrays_and_scalars_round_trip_in_every_protocol(protocol):
    value = {
        "f64": np.linspace(-1, 1, 12).reshape(3, 4),
        "f32_fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "i64": np.arange(5),
        "u8": np.array([0, 255], dtype=np.uint8),
        "text": np.array(["ab", "c"]),
        "scalar": np.float32(2.5),
        "nested": [1, 2.0, ("x", b"\x00\xff"), None],
    }
    back = _load(pickle.dumps(value, protocol=protocol))
    for key in ("f64", "f32_fortran", "i64", "u8", "text"):
        assert back[key].dtype == value[key].dtype
        np.testing.assert_array_equal(back[key], value[key])
    assert back["scalar"] == np.float32(2.5) and back["scalar"].dtype == np.float32
    assert back["nested"] == value["nested"]


def test_python2_scalar_bytes_read_as_latin1_text():
    """A Python 2 pickle carries a numpy scalar's raw bytes as a str; read with latin-1 they come back."""
    raw = np.float64(-3.25).tobytes().decode("latin1")
    data = (
        b"cnumpy.core.multiarray\nscalar\n(cnumpy\ndtype\n(S'f8'\nI0\nI1\ntR(I3\nS'<'\nNNNI-1\nI-1\nI0\ntb"
        + b"S'"
        + raw.encode("unicode_escape").replace(b"'", b"\\'")
        + b"'\ntR."
    )
    assert _load(data) == -3.25


@pytest.mark.parametrize(
    "data",
    [
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        b"cos\nsystem\n(S'echo pwned'\ntR.",
        b"cposix\nsystem\n(S'echo pwned'\ntR.",
        b"ccollections\nOrderedDict\n)R.",
    ],
)
def test_other_globals_refused_before_anything_runs(data):
    with pytest.raises(RefusedPickleError, match="refused before anything ran"):
        _load(data)


def test_object_dtype_refused():
    with pytest.raises(RefusedPickleError, match="not a plain numeric or text dtype"):
        _load(pickle.dumps(np.array([{"a": 1}], dtype=object), protocol=2))


def test_persistent_ids_refused():
    buf = io.BytesIO()

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if isinstance(obj, str) else None

    _Pickler(buf, protocol=2).dump(["secret"])
    with pytest.raises(RefusedPickleError, match="persistent id"):
        _load(buf.getvalue())


def test_a_reader_extends_and_renames():
    class _Extended(RestrictedUnpickler):
        def allowed(self, module, name):
            return set if (module, name) == ("builtins", "set") else super().allowed(module, name)

        def refused(self, what):
            return ValueError(f"{self.source}: {what}")

    assert _load(pickle.dumps({1, 2}, protocol=4), _Extended) == {1, 2}
    with pytest.raises(ValueError, match=r"test.pkl: 'builtins.eval'"):
        _load(b"cbuiltins\neval\n(S'1+1'\ntR.", _Extended)
