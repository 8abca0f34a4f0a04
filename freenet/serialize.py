"""Saving and loading tensors, and checkpoints nesting them, in the safetensors format (never pickle),
with atomic writes.

>>> import os, tempfile, freenet as fn
>>> from freenet.serialize import save, load, load_metadata
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> save({"w": fn.ones(2, 3)}, path, metadata={"step": "10"})
>>> load(path)["w"].shape, load_metadata(path)
((2, 3), {'step': '10'})
>>> save({"model": {"w": fn.ones(2)}, "epoch": 3, "lrs": [0.1, 0.01]}, path)
>>> checkpoint = load(path)
>>> checkpoint["epoch"], checkpoint["lrs"], checkpoint["model"]["w"].shape
(3, [0.1, 0.01], (2,))

A file is: an 8-byte little-endian header length ``n``; ``n`` bytes of JSON mapping each tensor name
to its dtype, shape and [begin, end) byte offsets (and ``__metadata__`` to string pairs); the data.

A dict of str to tensors is saved as just that (and loads as a dict of tensors sorted by name). Any
other object, such as a PyTorch-style checkpoint ``{"model": ..., "optimizer": ..., "epoch": 3}``,
is saved as a tree: its tensors and arrays go in the data under their dotted paths (``model.w``),
and its structure goes in the metadata under ``freenet.tree`` as JSON, ``{"version": 1, "root":
node}``. A node is null, true/false, a number, a string (themselves), or an object with one key:
``{"dict": [[key, node], ...]}`` (keys str or int, in order), ``{"list": [...]}``, ``{"tuple":
[...]}``, ``{"tensor": name}``, ``{"ndarray": name}``, ``{"numpy_scalar": name}`` (a 0-d array read
back as a NumPy scalar), or ``{"float": "nan" | "inf" | "-inf"}``. Loading only reads data: it
never runs code, whatever the file says.

Loading checks a file as hostile input (``freenet.validate``): the path must be a regular file, the
header JSON is bounded in size and nesting, every entry's dtype, shape and offsets are checked
against each other and the file size, and float tensors holding NaN or infinity are refused unless
``allow_nonfinite=True`` (trained weights and checkpoints are finite; a NaN is a diverged run or a
damaged file). Every problem is a ``FileFormatError`` whose message starts with the file name.
"""

import hashlib
import json
import math
import os
import secrets
import stat
from collections.abc import Mapping

import numpy as np
import safetensors
import safetensors.numpy

from freenet.errors import FreenetError
from freenet.factory import from_numpy
from freenet.tensor import Tensor
from freenet.validate import FileFormatError, check_regular, parse_json

# freenet dtype <-> safetensors dtype name
_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64",
           np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
_ITEMSIZE = {name: dt.itemsize for dt, name in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_METADATA = "__metadata__"
_TREE = "freenet.tree"  # metadata key of a nested object's structure
_TREE_VERSION = 1
_MAX_DEPTH = 100  # containers nested deeper than this are refused, on saving and on loading
_MAX_HEADER_DEPTH = 8  # a valid header nests 3 deep ({name: {"shape": [...]}}); __metadata__ values are strings
_MAX_TREE_DEPTH = 3 * _MAX_DEPTH + 4  # a dict node is 3 JSON levels ({"dict": [[key, node]]}), plus the top
_MAX_NDIM = 64  # NumPy's own limit


class MissingFileError(FileFormatError, FileNotFoundError):
    """No file at the path: a FileFormatError like every other problem, and still the FileNotFoundError that
    callers written before ``freenet.validate`` catch."""


# -- saving -------------------------------------------------------------------------------------------

def _as_array(name, value):
    if isinstance(value, Tensor):
        value = value._data
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


def save(obj, path, metadata=None):
    """Writes ``obj`` to ``path`` in the safetensors format, atomically.

    ``obj`` is a dict of str to Tensors or ndarrays (a state dict), or any nesting of dicts (str or
    int keys), lists and tuples holding Tensors, ndarrays, NumPy scalars, ints, floats, bools, None
    and strings, as in a PyTorch checkpoint (see the module docstring for the format). Supported
    dtypes: float32, float64, int64, int32, uint8, bool. ``metadata`` is an optional dict of str ->
    str stored in the header (read it back with ``load_metadata``). The file loads with
    ``safetensors.numpy.load_file`` too (a nested object's tensors under their dotted paths).
    """
    atomic_write(path, to_bytes(obj, metadata))


def weights_sha256(state_dict):
    """SHA-256 of the weights alone: of the safetensors bytes of ``state_dict`` with no metadata.

    Two runs gave bit-identical weights exactly when these agree; it equals the SHA-256 of a file
    that ``save`` wrote without metadata.
    """
    return hashlib.sha256(to_bytes(state_dict)).hexdigest()


def _is_state_dict(obj):
    """A dict of str to tensors: saved flat, as before nesting existed."""
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, (Tensor, np.ndarray, np.generic)) for k, v in obj.items())


def to_bytes(obj, metadata=None):
    """The safetensors bytes ``save`` writes for ``obj``, with optional str -> str ``metadata``."""
    metadata = _check_metadata(metadata, "save")
    if metadata is not None and _TREE in metadata:
        raise FreenetError(f"save: the metadata key '{_TREE}' is reserved for the structure of nested objects")
    if _is_state_dict(obj):
        arrays = {}
        for name, value in obj.items():
            if name == _METADATA:
                raise FreenetError(f"save: the name '{_METADATA}' is reserved by the safetensors format")
            arrays[name] = _as_array(name, value)
    else:
        encoder = _TreeEncoder()
        root = encoder.encode(obj, [], 0)
        try:
            tree = json.dumps({"version": _TREE_VERSION, "root": root}, allow_nan=False, separators=(",", ":"))
        except ValueError as e:  # an int too long for str(): Python refuses over 4300 digits
            raise FreenetError(f"save: cannot write the structure as JSON: {e}") from None
        if len(tree) > _MAX_HEADER // 2:
            raise FreenetError(f"save: the structure takes {len(tree)} bytes of JSON, over the "
                               f"{_MAX_HEADER // 2}-byte limit: store long lists of numbers as arrays")
        arrays, metadata = encoder.arrays, {**(metadata or {}), _TREE: tree}
    try:
        return safetensors.numpy.save(arrays, metadata=metadata)
    except Exception as e:  # safetensors raises its own error types
        raise FreenetError(f"save: safetensors could not serialize: {e}") from None


def _where(parts):
    """A readable path to a node, as Python would index it: obj['optimizer']['state'][0]."""
    return "obj" + "".join(f"[{p!r}]" for p in parts)


class _TreeEncoder:
    """Turns a nested object into tree nodes (module docstring), collecting its arrays in ``arrays``."""

    def __init__(self):
        self.arrays = {}  # tensor name in the file -> ndarray
        self.names = {}  # id of a Tensor or array -> (its name, it): one met twice is stored once (kept
        # alive here, so that its id is not reused by an object a custom Mapping makes on the fly)
        self.open = set()  # ids of the containers being encoded: one met again contains itself

    def _array(self, tag, value, parts):
        if id(value) in self.names:
            return {tag: self.names[id(value)][0]}
        base = ".".join(str(p) for p in parts) or "root"
        name, n = base, 1
        while name in self.arrays or name == _METADATA:  # a key with a dot in it can repeat a path
            n += 1
            name = f"{base}#{n}"
        self.arrays[name] = _as_array(base, value)
        self.names[id(value)] = name, value
        return {tag: name}

    def encode(self, value, parts, depth):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, Tensor):
            return self._array("tensor", value, parts)
        if isinstance(value, np.ndarray):
            return self._array("ndarray", value, parts)
        if isinstance(value, np.generic):  # before int and float: np.float64 is a float
            return self._array("numpy_scalar", value, parts)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else {"float": str(float(value))}
        if not isinstance(value, (Mapping, list, tuple)):
            raise FreenetError(f"save: {_where(parts)} has type {type(value).__name__}; freenet.save stores dicts, "
                               "lists, tuples, Tensors, ndarrays, numbers, bools, None and strings")
        if depth >= _MAX_DEPTH:
            raise FreenetError(f"save: {_where(parts)}: containers nested more than {_MAX_DEPTH} deep")
        if id(value) in self.open:
            raise FreenetError(f"save: {_where(parts)} contains itself")
        self.open.add(id(value))
        if isinstance(value, Mapping):
            pairs = []
            for k, v in value.items():
                if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, int, np.integer)):
                    raise FreenetError(f"save: {_where(parts)} has a key {k!r} of type {type(k).__name__}; "
                                       "keys must be str or int")
                k = k if isinstance(k, str) else int(k)
                pairs.append([k, self.encode(v, parts + [k], depth + 1)])
            node = {"dict": pairs}
        else:  # a namedtuple or a list subclass becomes a plain tuple or list
            node = {"tuple" if isinstance(value, tuple) else "list":
                    [self.encode(v, parts + [i], depth + 1) for i, v in enumerate(value)]}
        self.open.discard(id(value))
        return node


# -- loading ------------------------------------------------------------------------------------------

def _json(text, where, max_depth):
    """``validate.parse_json``, with an integer too long for Python's ``int()`` (over 4,300 digits: a plain
    ValueError from the json module) reported like any other bad JSON."""
    try:
        return parse_json(text, where, max_depth=max_depth, max_bytes=_MAX_HEADER)
    except FileFormatError:
        raise
    except ValueError as e:
        raise FileFormatError(f"{where}: not valid JSON ({e})") from None


def _check_entry(name, entry, data_len, fail):
    """One tensor's header entry: dtype a name freenet reads, shape non-negative ints, offsets in range and
    spanning exactly dtype x shape bytes. The types are checked first: a list where a string belongs
    must be an error message, not a TypeError."""
    where = f"tensor {_preview(name)}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        fail(f"{where}: entry must have dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
        fail(f"{where} has unsupported dtype {_preview(dtype)} (freenet reads {', '.join(_ITEMSIZE)})")
    if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
            or not all(type(d) is int and d >= 0 for d in shape)):
        fail(f"{where} has an invalid shape {_preview(shape)} (at most {_MAX_NDIM} non-negative integers)")
    # NumPy refuses an array whose dimensions (zeros counted as ones) multiply past 2**63 bytes, even empty.
    if math.prod(max(d, 1) for d in shape) * _ITEMSIZE[dtype] >= 2 ** 63:
        fail(f"{where} has a shape {_preview(shape)} too large for any array")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        fail(f"{where} has invalid data_offsets {_preview(offsets)}")
    if offsets[1] > data_len:
        fail(f"{where} has data_offsets {offsets} out of range: the data section has {data_len} bytes")
    need = math.prod(shape) * _ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != need:
        fail(f"{where}: shape {shape} of {dtype} needs {need} bytes, data_offsets {offsets} "
             f"span {offsets[1] - offsets[0]}")


def _read_header(f, path, size):
    """The parsed JSON header (validated against the file size) and the data length after it."""
    def fail(problem):
        raise FileFormatError(f"{path}: {problem}")

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
    header = _json(raw, f"{path}: header", _MAX_HEADER_DEPTH)
    if not isinstance(header, dict):
        fail(f"header is JSON {type(header).__name__}, not an object")
    data_len = size - 8 - n
    for name, entry in header.items():
        if name == _METADATA:
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                fail(f"{_METADATA} must map str to str")
            continue
        _check_entry(name, entry, data_len, fail)
    return header


def _open(path):
    """(path as str, the open file, its size): a regular file only, so that a folder or a FIFO is an error
    rather than an IsADirectoryError or a read that waits forever."""
    path = os.fspath(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file") from None
    except ValueError:  # a NUL in the name
        raise FileFormatError(f"{path!r}: not a valid file name") from None
    except OSError:
        pass  # check_regular says what is wrong
    check_regular(path)
    # O_NONBLOCK: if a FIFO replaced the file since the check, opening it must not wait for a writer.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise FileFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise FileFormatError(f"{path}: is not a regular file")
    return path, f, st.st_size


def load_metadata(path):
    """The metadata dict (str -> str) stored by ``save`` at ``path``; {} if none. Reads only the header."""
    path, f, size = _open(path)
    with f:
        metadata = dict(_read_header(f, path, size).get(_METADATA) or {})
    metadata.pop(_TREE, None)
    return metadata


def _check_finite(path, name, a):
    """Refuses a float array holding NaN or infinity. min and max propagate NaN and meet any infinity, and
    need no array-sized temporary as ``isfinite(a).all()`` would."""
    if a.size and a.dtype.kind == "f" and not (math.isfinite(a.min()) and math.isfinite(a.max())):
        bad = "NaN" if np.isnan(a).any() else "infinity"
        raise FileFormatError(f"{path}: tensor '{name}' holds {bad} (a diverged run or a damaged file); "
                              "pass allow_nonfinite=True to load it anyway")


def load(path, map_location=None, weights_only=None, *, allow_nonfinite=False):
    """The object saved at ``path``: for a dict of tensors, a dict name -> Tensor (sorted by name); for
    anything else, the object rebuilt (dicts as plain dicts, in their order). Every Tensor and ndarray
    has its own writable memory (one saved twice comes back as one object); tensors do not require grad.

    The file is checked before and while parsing; a truncated or corrupt file, an oversized header,
    out-of-range offsets, an unsupported dtype or a malformed structure raise ``FileFormatError`` (a
    ``FreenetError``) naming the file and the problem; so does a missing file (as ``MissingFileError``,
    also a ``FileNotFoundError``), a folder or a FIFO. A float tensor holding NaN or infinity is refused
    too, naming the tensor, unless ``allow_nonfinite=True`` (float values elsewhere in a nested object,
    such as ``best = inf``, are structure and always load). Use ``load_metadata`` for the metadata.
    ``map_location`` and ``weights_only`` are there for PyTorch scripts and change nothing: freenet's
    tensors live on the CPU, and loading never runs code.
    """
    path, f, size = _open(path)
    with f:
        header = _read_header(f, path, size)
        f.seek(0)
        data = f.read(size + 1)
    if len(data) != size:
        raise FileFormatError(f"{path}: file changed while reading")
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # safetensors' SafetensorError, or anything else it raises on bad input
        raise FileFormatError(f"{path}: not a valid safetensors file: {e}") from None
    names = [k for k in header if k != _METADATA]
    if sorted(arrays) != sorted(names):
        raise FileFormatError(f"{path}: safetensors read tensors {sorted(arrays)}, header lists {sorted(names)}")
    for name, a in arrays.items():
        a = a.astype(a.dtype.newbyteorder("="), copy=False) if a.dtype.byteorder in "<>" else a
        arrays[name] = np.require(a, requirements=["C", "A", "W"])
        if not allow_nonfinite:
            _check_finite(path, name, arrays[name])
    tree = (header.get(_METADATA) or {}).get(_TREE)
    if tree is None:
        return {name: from_numpy(arrays[name]) for name in sorted(arrays)}
    return _TreeDecoder(path, arrays).decode_file(tree)


class _TreeDecoder:
    """Rebuilds a nested object from the tree JSON in a file's metadata (module docstring), checking
    every node; a problem raises FileFormatError saying where in the object it is."""

    def __init__(self, path, arrays):
        self.path, self.arrays = path, arrays
        self.made = {}  # (tag, tensor name) -> the object: a name met twice gives the same object

    def fail(self, problem, parts=None):
        where = "" if parts is None else f" at {_where(parts)}"
        raise FileFormatError(f"{self.path}: the nested structure ('{_TREE}' in the metadata) {problem}{where}")

    def decode_file(self, tree):
        top = _json(tree, f"{self.path}: the nested structure ('{_TREE}' in the metadata)", _MAX_TREE_DEPTH)
        if not isinstance(top, dict) or set(top) != {"version", "root"}:
            self.fail('must be a JSON object {"version": ..., "root": ...}')
        if type(top["version"]) is not int or top["version"] != _TREE_VERSION:
            self.fail(f"has version {top['version']!r}; this freenet reads version {_TREE_VERSION} "
                      "(a newer freenet wrote it?)")
        obj = self.decode(top["root"], [], 0)
        unused = sorted(set(self.arrays) - {name for _, name in self.made})
        if unused:
            self.fail(f"does not mention the tensors {unused[:5]}" + (" ..." if len(unused) > 5 else ""))
        return obj

    def decode(self, node, parts, depth):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or len(node) != 1:
            self.fail(f"has a malformed node {_preview(node)}", parts)
        (tag, value), = node.items()
        if tag in ("tensor", "ndarray", "numpy_scalar"):
            return self._array(tag, value, parts)
        if tag == "float":
            if value not in ("nan", "inf", "-inf"):
                self.fail(f"has a float node {_preview(value)}, not 'nan', 'inf' or '-inf'", parts)
            return float(value)
        if tag not in ("dict", "list", "tuple"):
            self.fail(f"has a node of unknown kind {_preview(tag)}", parts)
        if not isinstance(value, list):
            self.fail(f"has a {tag} node whose content is not a JSON list", parts)
        if depth >= _MAX_DEPTH:
            self.fail(f"nests containers more than {_MAX_DEPTH} deep", parts)
        if tag == "list":
            return [self.decode(v, parts + [i], depth + 1) for i, v in enumerate(value)]
        if tag == "tuple":
            return tuple(self.decode(v, parts + [i], depth + 1) for i, v in enumerate(value))
        out = {}
        for pair in value:
            if (not isinstance(pair, list) or len(pair) != 2 or isinstance(pair[0], bool)
                    or not isinstance(pair[0], (str, int))):
                self.fail(f"has a dict entry {_preview(pair)}, not a [key, value] pair with a str or int key", parts)
            key, v = pair
            if key in out:
                self.fail(f"repeats the dict key {key!r}", parts)
            out[key] = self.decode(v, parts + [key], depth + 1)
        return out

    def _array(self, tag, name, parts):
        if not isinstance(name, str) or name not in self.arrays:
            self.fail(f"refers to a tensor {_preview(name)} that the file does not hold", parts)
        if (tag, name) not in self.made:
            a = self.arrays[name]
            if tag == "numpy_scalar" and a.ndim != 0:
                self.fail(f"has a NumPy scalar '{name}' of shape {a.shape}", parts)
            self.made[tag, name] = from_numpy(a) if tag == "tensor" else a[()] if tag == "numpy_scalar" else a
        return self.made[tag, name]


def _preview(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
