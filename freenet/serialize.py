"""Saving and loading named tensors in the safetensors format (never pickle), with atomic writes.

>>> import os, tempfile, freenet as fn
>>> from freenet.serialize import save, load, load_metadata
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> save({"w": fn.ones(2, 3)}, path, metadata={"step": "10"})
>>> load(path)["w"].shape, load_metadata(path)
((2, 3), {'step': '10'})

A file is: an 8-byte little-endian header length ``n``; ``n`` bytes of JSON mapping each tensor name
to its dtype, shape and [begin, end) byte offsets (and ``__metadata__`` to string pairs); the data.
"""

import hashlib
import json
import os
import secrets
from collections.abc import Mapping

import numpy as np
import safetensors
import safetensors.numpy

from freenet.errors import FreenetError
from freenet.factory import from_numpy
from freenet.tensor import Tensor

# freenet dtype <-> safetensors dtype name
_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64",
           np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
_ITEMSIZE = {name: dt.itemsize for dt, name in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_METADATA = "__metadata__"


# -- saving -------------------------------------------------------------------------------------------

def _as_array(name, value):
    if isinstance(value, Tensor):
        value = value.data
    if not isinstance(value, (np.ndarray, np.generic)):
        raise FreenetError(f"save: '{name}' is a {type(value).__name__}, not a Tensor or ndarray")
    a = np.asarray(value)
    native = a.dtype.newbyteorder("=") if a.dtype.byteorder in "<>" else a.dtype
    if native not in _DTYPES:
        raise FreenetError(f"save: '{name}' has dtype {a.dtype}; supported: "
                           f"{', '.join(dt.name for dt in _DTYPES)}")
    # safetensors copies nbytes from the data pointer, so the array must be C-contiguous little-endian.
    return np.require(a, dtype=native.newbyteorder("<"), requirements=["C"])


def _check_metadata(metadata, op):
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise FreenetError(f"{op}: metadata must be a dict of str to str, got {type(metadata).__name__}")
    bad = [(k, v) for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        k, v = bad[0]
        raise FreenetError(f"{op}: metadata must map str to str, got {k!r}: {type(v).__name__} {v!r:.60}")
    return dict(metadata)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data):
    """Writes ``data`` (bytes) to ``path`` so that ``path`` holds either the old file or all of the new one.

    The bytes go to a temporary file in the same folder, which is flushed, fsynced and renamed over
    ``path`` with ``os.replace``; then the folder is fsynced so the rename itself survives a crash. On
    any failure the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def save(state_dict, path, metadata=None):
    """Writes ``state_dict`` (str -> Tensor or ndarray) to ``path`` in the safetensors format, atomically.

    Supported dtypes: float32, float64, int64, int32, uint8, bool. ``metadata`` is an optional dict of
    str -> str stored in the header (read it back with ``load_metadata``). The file loads with
    ``safetensors.numpy.load_file`` too.
    """
    atomic_write(path, to_bytes(state_dict, metadata))


def weights_sha256(state_dict):
    """SHA-256 of the weights alone: of the safetensors bytes of ``state_dict`` with no metadata.

    Two runs gave bit-identical weights exactly when these agree; it equals the SHA-256 of a file
    that ``save`` wrote without metadata.
    """
    return hashlib.sha256(to_bytes(state_dict)).hexdigest()


def to_bytes(state_dict, metadata=None):
    """The safetensors bytes ``save`` writes (str -> Tensor or ndarray, optional str -> str metadata)."""
    metadata = _check_metadata(metadata, "save")
    if not isinstance(state_dict, Mapping):
        raise FreenetError(f"save: state_dict must be a dict of str to tensors, got {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise FreenetError(f"save: tensor names must be str, got {type(name).__name__} {name!r}")
        if name == _METADATA:
            raise FreenetError(f"save: the name '{_METADATA}' is reserved by the safetensors format")
        arrays[name] = _as_array(name, value)
    try:
        return safetensors.numpy.save(arrays, metadata=metadata)
    except Exception as e:  # safetensors raises its own error types
        raise FreenetError(f"save: safetensors could not serialize: {e}") from None


# -- loading ------------------------------------------------------------------------------------------

def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise FreenetError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _read_header(f, path, size):
    """The parsed JSON header (validated against the file size) and the data length after it."""
    def fail(problem):
        raise FreenetError(f"load: {path}: {problem}")

    if size < 8:
        fail(f"truncated: {size} bytes, too short for the 8-byte header length")
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8:
        fail(f"header length {n} is larger than the rest of the file ({size - 8} bytes): truncated or not safetensors")
    if n > _MAX_HEADER:
        fail(f"header length {n} exceeds the {_MAX_HEADER}-byte limit")
    raw = f.read(n)
    if len(raw) != n:
        fail("file changed while reading")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError and FreenetError are ValueErrors
        fail(f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail(f"header is JSON {type(header).__name__}, not an object")
    data_len = size - 8 - n
    for name, entry in header.items():
        if name == _METADATA:
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                fail(f"{_METADATA} must map str to str")
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            fail(f"tensor '{name}': entry must have dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ITEMSIZE:
            fail(f"tensor '{name}' has unsupported dtype {dtype!r} (freenet reads {', '.join(_ITEMSIZE)})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            fail(f"tensor '{name}' has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            fail(f"tensor '{name}' has invalid data_offsets {offsets!r}")
        if offsets[1] > data_len:
            fail(f"tensor '{name}' has data_offsets {offsets} out of range: the data section has {data_len} bytes")
        need = int(np.prod(shape, dtype=object)) * _ITEMSIZE[dtype]
        if offsets[1] - offsets[0] != need:
            fail(f"tensor '{name}': shape {shape} of {dtype} needs {need} bytes, data_offsets {offsets} "
                 f"span {offsets[1] - offsets[0]}")
    return header


def _open(path):
    path = os.fspath(path)
    f = open(path, "rb")
    return path, f, os.fstat(f.fileno()).st_size


def load_metadata(path):
    """The metadata dict (str -> str) stored by ``save`` at ``path``; {} if none. Reads only the header."""
    path, f, size = _open(path)
    with f:
        return dict(_read_header(f, path, size).get(_METADATA) or {})


def load(path):
    """The tensors saved at ``path``: a dict name -> Tensor (sorted by name), each with its own writable memory.

    The file is checked before and while parsing; a truncated or corrupt file, an oversized header,
    out-of-range offsets or an unsupported dtype raise ``FreenetError`` naming the file and the problem
    (a missing file raises ``FileNotFoundError``). Use ``load_metadata`` for the metadata.
    """
    path, f, size = _open(path)
    with f:
        header = _read_header(f, path, size)
        f.seek(0)
        data = f.read()
    if len(data) != size:
        raise FreenetError(f"load: {path}: file changed while reading")
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # safetensors' SafetensorError, or anything else it raises on bad input
        raise FreenetError(f"load: {path}: not a valid safetensors file: {e}") from None
    names = [k for k in header if k != _METADATA]
    if sorted(arrays) != sorted(names):
        raise FreenetError(f"load: {path}: safetensors read tensors {sorted(arrays)}, header lists {sorted(names)}")
    out = {}
    for name in sorted(arrays):
        a = arrays[name]
        a = a.astype(a.dtype.newbyteorder("="), copy=False) if a.dtype.byteorder in "<>" else a
        out[name] = from_numpy(np.require(a, requirements=["C", "A", "W"]))
    return out
