"""The IDX format of MNIST and Fashion-MNIST: read (raw or gzip) and write, checking every header field.

A file is: two zero bytes, a dtype code, the number of dimensions ``d``; ``d`` big-endian uint32 sizes;
then the values, big-endian, in C order. The declared payload is checked against what the file can
hold before anything is allocated, so a hostile header cannot cause a huge allocation.
"""

import gzip
import os
import zlib

import numpy as np

from freenet.errors import FreenetError
from freenet.tensor import Tensor

_CODES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODE_OF = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _CODES.items()}
_CHUNK = 1 << 20
# Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes holds at most this much.
_GZIP_RATIO = 1100


def _read_upto(stream, n):
    """Up to ``n`` bytes from ``stream``, read in chunks so that a large ``n`` allocates nothing up front."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse(stream, path, raw_size=None, gzip_size=None):
    """Reads one IDX array from ``stream``, the raw file (of ``raw_size`` bytes) or its gzip view."""
    def fail(problem):
        raise FreenetError(f"read_idx: {path}: {problem}")

    magic = _read_upto(stream, 4)
    if len(magic) < 4:
        fail(f"truncated: {len(magic)} bytes, shorter than the 4-byte magic number")
    if magic[0] != 0 or magic[1] != 0:
        fail(f"bad magic number 0x{magic.hex()}: an IDX file starts with two zero bytes")
    code, ndim = magic[2], magic[3]
    if code not in _CODES:
        fail(f"unknown dtype code 0x{code:02x} (known: {', '.join(f'0x{c:02x}' for c in _CODES)})")
    raw_dims = _read_upto(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        fail(f"truncated header: {ndim} dimensions need {4 * ndim} bytes of sizes, found {len(raw_dims)}")
    shape = tuple(int(d) for d in np.frombuffer(bytes(raw_dims), dtype=">u4"))
    dtype = _CODES[code]
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    header = 4 + 4 * ndim
    what = f"shape {shape} of {dtype.newbyteorder('=').name} needs {declared} bytes of data"
    if raw_size is not None and raw_size - header != declared:
        fail(f"{'truncated' if raw_size - header < declared else 'trailing bytes'}: {what} after the "
             f"{header}-byte header, the file has {raw_size - header}")
    if gzip_size is not None and declared > gzip_size * _GZIP_RATIO:
        fail(f"{what}, more than a gzip file of {gzip_size} bytes can hold")
    payload = _read_upto(stream, declared)
    if len(payload) < declared:
        fail(f"truncated: {what} after the {header}-byte header, found {len(payload)}")
    if stream.read(1):
        fail(f"trailing bytes: {what} after the {header}-byte header, and more follow")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else array


def read_idx(path):
    """The array in the IDX file at ``path`` (gzip-compressed or raw; detected from the content).

    Values come in the file's type (uint8 for MNIST) in native byte order. A malformed file raises a
    ``FreenetError`` naming the file and the problem; a missing file raises ``FileNotFoundError``.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        is_gzip = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        if not is_gzip:
            return _parse(f, path, raw_size=size)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                return _parse(g, path, gzip_size=size)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise FreenetError(f"read_idx: {path}: corrupt gzip data: {e}") from None


def write_idx(path, array):
    """Writes ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file; gzip if ``path`` ends in .gz."""
    path = os.fspath(path)
    a = np.asarray(array._data if isinstance(array, Tensor) else array)
    key = a.dtype.newbyteorder("=") if a.dtype.itemsize > 1 else a.dtype
    if key not in _CODE_OF:
        raise FreenetError(f"write_idx: dtype {a.dtype} has no IDX code "
                           "(use uint8, int8, int16, int32, float32 or float64)")
    if a.ndim > 255 or any(d >= 2**32 for d in a.shape):
        raise FreenetError(f"write_idx: shape {a.shape} does not fit an IDX header")
    code = _CODE_OF[key]
    data = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes() \
        + a.astype(_CODES[code], copy=False).tobytes()
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
