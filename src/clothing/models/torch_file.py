"""Read a legacy (non-zip) ``torch.save`` state_dict with NumPy and the standard library.

The EfficientNet-Lite ImageNet weights ship as such files. Depending on torch (hundreds of
MB) to read one dict of float arrays would be a poor trade, and the format is small:

1. four pickles: a magic number, the protocol version, system info, then the state_dict,
   whose tensors point at storages by key (pickle's persistent IDs);
2. a pickle listing the storage keys in file order;
3. each storage: its element count (int64, little-endian), then its raw bytes.

Only the few globals a state_dict needs are let through the unpickler, so a file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clothing.errors import PipelineError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    key: str
    dtype: type
    size: int
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple, strides: tuple, *_: object) -> _Tensor:
    return _Tensor(storage, offset, tuple(shape), tuple(strides))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) in {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}:
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"a state_dict does not need {module}.{name}")

    def persistent_load(self, pid: tuple) -> _Storage:
        kind, dtype, key, _location, size, *_view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        return self.storages.setdefault(key, _Storage(key, dtype, size))


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy ``torch.save`` file, by name, as NumPy arrays in torch's layout."""
    try:
        with open(path, "rb") as file:
            return _read(file)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as error:
        raise PipelineError(f"{path}: not a readable torch state_dict ({error or 'truncated'})") from None
    except OSError as error:
        raise PipelineError(f"{path}: cannot read: {error.strerror or error}") from None


def _read(file: io.BufferedIOBase) -> dict[str, np.ndarray]:
    if _StateDictUnpickler(file).load() != LEGACY_MAGIC:
        raise ValueError("no legacy torch magic number; a zip-format file needs torch.load")
    for _ in range(2):  # protocol version, system info: plain data
        _StateDictUnpickler(file).load()
    unpickler = _StateDictUnpickler(file)
    state = unpickler.load()
    keys = _StateDictUnpickler(file).load()
    for key in keys:
        storage = unpickler.storages[key]
        count = int.from_bytes(_exactly(file, 8), "little")
        if count != storage.size:
            raise ValueError(f"storage {key} holds {count} elements, its tensor says {storage.size}")
        storage.data = np.frombuffer(_exactly(file, count * np.dtype(storage.dtype).itemsize), storage.dtype)
    if file.read(1):
        raise ValueError("bytes after the last storage")
    return {name: _materialise(name, tensor) for name, tensor in state.items()}


def _exactly(file: io.BufferedIOBase, size: int) -> bytes:
    """``size`` bytes, checked against what the file has left before any memory is asked for."""
    left = os.fstat(file.fileno()).st_size - file.tell()
    if size > left:
        raise EOFError(f"file truncated: wanted {size} bytes, {left} left")
    data = file.read(size)
    if len(data) != size:
        raise EOFError(f"file truncated: wanted {size} bytes, got {len(data)}")
    return data


def _materialise(name: str, tensor: _Tensor) -> np.ndarray:
    storage = tensor.storage
    if storage.data is None:
        raise ValueError(f"{name}: its storage is missing from the file")
    if min((tensor.offset, *tensor.shape, *tensor.strides), default=0) < 0:
        raise ValueError(
            f"{name}: a negative offset, size or stride ({tensor.offset}, {tensor.shape}, {tensor.strides})"
        )
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.strides, strict=True))
    if all(tensor.shape) and last >= storage.size:
        raise ValueError(f"{name}: shape {tensor.shape} runs past its storage of {storage.size}")
    itemsize = storage.data.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.data[tensor.offset :], tensor.shape, [s * itemsize for s in tensor.strides], writeable=False
    )
    return np.array(view)
