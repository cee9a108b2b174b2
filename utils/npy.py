"""Read the field's pickled `.npy` files (gloss_dict.npy, <split>_info.npy, saved features) without running code.

`np.load(path, allow_pickle=True)` unpickles whatever the file says, and a crafted pickle runs any
code it names. These files travel between researchers (the original repository ships its gloss
dictionaries), so they are read here through an unpickler that builds only plain containers,
numbers, strings and numpy arrays and scalars; anything else is refused with the class it named.
Files written by numpy 1.x (`numpy.core`) and 2.x (`numpy._core`) both read.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from utils.errors import BadFileError

_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool", "complex",
             "bytes", "bytearray")
# What numpy's own pickles of arrays, dtypes and scalars name, under both package layouts.
_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype")} | {
    (f"numpy.{core}.{module}", name)
    for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
}
# Protocol-2 pickles (older numpy and Python) spell bytes as _codecs.encode(str, "latin1").
SAFE_GLOBALS = frozenset({("builtins", name) for name in _BUILTINS} | {("collections", "OrderedDict")}
                         | {("_codecs", "encode")} | _NUMPY)


class UnsafePickleError(BadFileError):
    """A pickled `.npy` that names a class or function outside the plain-data allow-list."""


class _PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only SAFE_GLOBALS."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise UnsafePickleError(f"it names {module}.{name}, which plain data never needs")
        if module.startswith("numpy.core."):  # numpy 1.x paths; numpy 2 keeps them only as deprecated shims
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def loads_plain(data: bytes) -> Any:
    """Unpickle `data` if it holds only plain data (containers, numbers, strings, numpy arrays)."""
    return _PlainDataUnpickler(io.BytesIO(data)).load()


def load_npy(path: str | os.PathLike) -> Any:
    """The array of an `.npy` file; an object array is unpickled by the plain-data unpickler only."""
    path = Path(path)
    with path.open("rb") as handle:
        version = npy_format.read_magic(handle)
        read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"{path}: unsupported .npy format version {version}")
        shape, _, dtype = read_header[version](handle)
        if not dtype.hasobject:
            handle.seek(0)
            return npy_format.read_array(handle, allow_pickle=False)
        try:
            array = loads_plain(handle.read())
        except UnsafePickleError as exc:
            raise UnsafePickleError(
                f"{path} was not loaded: {exc}. Files written by this project's and the original "
                f"preprocessing hold only dicts, lists, strings and numbers; rebuild it with the "
                f"preprocess/ script instead of using a copy from elsewhere") from exc
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ValueError(f"{path}: the pickled payload is not the {shape} array its header declares")
    return array


def load_npy_object(path: str | os.PathLike) -> Any:
    """The single object np.save stored in `path` (a dict for gloss_dict.npy and the info files)."""
    array = load_npy(path)
    return array.item() if array.shape == () else array
