"""The IDX format of MNIST and Fashion-MNIST: read (raw or gzip) and write, checking every header field.

A file is: two zero bytes, a dtype code, the number of dimensions ``d``; ``d`` big-endian uint32 sizes;
then the values, big-endian, in C order. The sizes declare how many bytes follow, so they set the limits
of the read: a raw file must be exactly that long, and a gzip file is inflated no further than that (after
its header is read alone), so neither a lying header nor a compression bomb can cause a huge allocation.
A caller bounds the declared size too (``max_bytes``), since a header can declare any size.
"""

import errno
import gzip
import os
import zlib

import numpy as np

from freenet.errors import FreenetError
from freenet.tensor import Tensor
from freenet.validate import FileFormatError, decompress, fail, is_gzip, read_regular

_CODES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODE_OF = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _CODES.items()}
_MAX_HEADER = 4 + 4 * 255
MAX_BYTES = 1 << 30  # read_idx's default bound on the values of one file: 1 GiB
# Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes holds at most this much.
_GZIP_RATIO = 1100


def _header(head, path):
    """(header length, shape, dtype, declared bytes of values) from the first bytes of an IDX file."""
    if len(head) < 4:
        fail(path, f"truncated: {len(head)} bytes, shorter than the 4-byte magic number")
    if head[0] != 0 or head[1] != 0:
        fail(path, f"bad magic number 0x{bytes(head[:4]).hex()}: an IDX file starts with two zero bytes")
    code, ndim = head[2], head[3]
    if code not in _CODES:
        fail(path, f"unknown dtype code 0x{code:02x} (known: {', '.join(f'0x{c:02x}' for c in _CODES)})")
    if len(head) < 4 + 4 * ndim:
        fail(path, f"truncated header: {ndim} dimensions need {4 * ndim} bytes of sizes, found {len(head) - 4}")
    shape = tuple(int(d) for d in np.frombuffer(bytes(head[4:4 + 4 * ndim]), dtype=">u4"))
    dtype = _CODES[code]
    return 4 + 4 * ndim, shape, dtype, int(np.prod(shape, dtype=object)) * dtype.itemsize


def _describe(shape, dtype, declared):
    return f"shape {shape} of {dtype.newbyteorder('=').name} needs {declared} bytes of data"


def _parse(data, path):
    """The array in ``data``, the whole content of an IDX file, which must be exactly as long as it declares."""
    header, shape, dtype, declared = _header(data[:_MAX_HEADER], path)
    found = len(data) - header
    if found != declared:
        fail(path, f"{'truncated' if found < declared else 'trailing bytes'}: {_describe(shape, dtype, declared)} "
                   f"after the {header}-byte header, the file has {found}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # native order, and memory of its own


def _gzip_head(data, n, path):
    """The first ``n`` inflated bytes of gzip ``data`` (fewer if it holds fewer), inflating no more than that."""
    out = b""
    try:
        while len(out) < n and data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, n - len(out))
            if not inflater.eof:
                if len(out) < n:  # the input ended inside a member
                    fail(path, f"the gzip data is truncated ({len(out)} bytes inflated)")
                break
            data = inflater.unused_data
    except zlib.error as e:
        fail(path, f"corrupt gzip data ({e})")
    return out


def read_idx(path, max_bytes=MAX_BYTES):
    """The array in the IDX file at ``path`` (gzip-compressed or raw; detected from the content).

    Values come in the file's type (uint8 for MNIST) in native byte order. A file whose values take more
    than ``max_bytes``, or that is malformed in any way, raises a ``FileFormatError`` (a ``FreenetError``)
    naming the file and the problem; a missing file raises ``FileNotFoundError``.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, "no such IDX file", path)
    compressed_limit = max_bytes + max_bytes // 64 + (1 << 20)  # incompressible data grows a little in gzip
    data = read_regular(path, _MAX_HEADER + max(max_bytes, compressed_limit))
    if not is_gzip(data):
        if len(data) > _MAX_HEADER + max_bytes:
            fail(path, f"{len(data):,} bytes, more than the {max_bytes:,} bytes of values an IDX file may have here")
        return _parse(data, path)
    header, shape, dtype, declared = _header(_gzip_head(data, _MAX_HEADER, path), path)
    what = _describe(shape, dtype, declared)
    if declared > len(data) * _GZIP_RATIO:
        fail(path, f"{what}, more than a gzip file of {len(data)} bytes can hold")
    if declared > max_bytes:
        fail(path, f"{what}, more than the {max_bytes:,} bytes of values an IDX file may have here")
    try:
        raw = decompress(data, "gzip", header + declared, path)
    except FileFormatError:
        # Past the declared size: values follow the array (said as for a raw file), or the stream is bad.
        if len(_gzip_head(data, header + declared + 1, path)) > header + declared:
            fail(path, f"trailing bytes: {what} after the {header}-byte header, and more follow")
        raise
    return _parse(raw, path)


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
