"""Read a legacy (pre-zip) PyTorch ``state_dict`` file into NumPy arrays, without torch.

``torch.save`` before PyTorch 1.6 wrote one file as a sequence of pickles followed by raw bytes:

    magic number, protocol version, system info    three small pickles (ints and a dict)
    the state dict                                 a pickle whose tensors point at "storages"
                                                   through persistent ids
    the storage keys                               a pickle: the order the storages follow in
    for each storage: int64 element count, bytes   little-endian raw data

Unpickling runs code named inside the file, so a file from elsewhere could run anything. The
reader here is restricted the way ``torch.load(weights_only=True)`` is: its unpickler resolves
only the four names that rebuilding a dict of tensors needs (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the storage type names), each mapped to a harmless
stand-in defined here; any other name ends the read with an error. Tensor views are checked to
lie inside their storage before they are taken.

This module knows the file format; not what the tensors mean (see :mod:`rnncap.vision.efficientnet`).
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from typing import NamedTuple

import numpy as np

__all__ = ["TorchFileError", "read_state_dict"]

MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py's MAGIC_NUMBER
PROTOCOL = 1001

# The storage classes a state dict of float weights (and BN's step counters) uses.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"), "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"), "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}


class TorchFileError(ValueError):
    """The file is not a legacy torch state dict, or asks for something a state dict never needs."""


class _StorageType(NamedTuple):
    dtype: np.dtype


class _Storage:
    """A storage's dtype and element count from the pickle; its data is filled in later."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, numel, None


class _TensorRef(NamedTuple):
    """What ``_rebuild_tensor_v2`` was called with: a strided view of a storage."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise TorchFileError("a tensor is built from something that is not a storage")
    if backward_hooks:
        raise TorchFileError("a tensor carries backward hooks (code), which a state dict never has")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self.path = path
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise TorchFileError(f"{self.path}: refuses to load '{module}.{name}' "
                             f"(only tensors in a dict are allowed)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchFileError(f"{self.path}: unexpected persistent id {str(pid)[:80]!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise TorchFileError(f"{self.path}: unsupported storage reference for key {key!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def _materialise(ref: _TensorRef, name: str, path: str) -> np.ndarray:
    st = ref.storage
    if any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise TorchFileError(f"{path}: tensor {name!r} has a negative size, stride or offset")
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=st.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= st.numel:
        raise TorchFileError(f"{path}: tensor {name!r} reaches element {last} of a storage of {st.numel}")
    item = st.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(st.data[ref.offset:], shape=ref.size,
                                           strides=tuple(s * item for s in ref.stride),
                                           writeable=False)
    return np.array(view, dtype=st.dtype.newbyteorder("="))  # an owned, native-order copy


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of a legacy torch ``state_dict`` file, by name, as NumPy arrays.

    Args:
        path: the ``.pth`` file.

    Returns:
        dict name -> array, in the file's order, with the tensors' dtypes (float32 stays float32).

    Raises:
        FileNotFoundError: no such file.
        TorchFileError: not a legacy torch file, truncated, or it names anything beyond tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        try:
            if pickle.load(f) != MAGIC:
                raise TorchFileError(f"{path}: not a legacy torch file (wrong magic number)")
            if pickle.load(f) != PROTOCOL:
                raise TorchFileError(f"{path}: unsupported torch file protocol version")
            info = pickle.load(f)
            if not isinstance(info, dict) or not info.get("little_endian", False):
                raise TorchFileError(f"{path}: only little-endian torch files are supported")
            unpickler = _RestrictedUnpickler(f, path)
            result = unpickler.load()
            keys = pickle.load(f)
        except TorchFileError:
            raise
        except Exception as e:  # a truncated or garbled pickle raises many kinds
            raise TorchFileError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from None
        if not isinstance(result, dict) or not isinstance(keys, list):
            raise TorchFileError(f"{path}: does not hold a state dict")
        for key in keys:
            st = unpickler.storages.get(key)
            if st is None or st.data is not None:
                raise TorchFileError(f"{path}: storage {key!r} is unknown or repeated")
            head = f.read(8)
            if len(head) != 8 or struct.unpack("<q", head)[0] != st.numel:
                raise TorchFileError(f"{path}: storage {key!r} has a wrong element count (truncated?)")
            raw = f.read(st.numel * st.dtype.itemsize)
            if len(raw) != st.numel * st.dtype.itemsize:
                raise TorchFileError(f"{path}: truncated inside storage {key!r}")
            st.data = np.frombuffer(raw, dtype=st.dtype)
        if f.read(1):
            raise TorchFileError(f"{path}: unexpected bytes after the last storage")
    missing = [k for k, st in unpickler.storages.items() if st.data is None]
    if missing:
        raise TorchFileError(f"{path}: {len(missing)} storages have no data")
    out = {}
    for name, ref in result.items():
        if not isinstance(name, str) or not isinstance(ref, _TensorRef):
            raise TorchFileError(f"{path}: entry {name!r} is not a named tensor")
        out[name] = _materialise(ref, name, path)
    return out
