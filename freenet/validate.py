"""Checks for everything freenet reads from a file, a pipe or a peer: one place, one kind of error.

A reader calls these before it uses a value: ``read_regular`` to get the bytes of a path (never a
FIFO, a folder or a device, never more than a limit), ``parse_json`` for JSON (nesting depth and
size bounded, no NaN/Infinity, no duplicate keys), ``expect``/``field`` to check a value's type and
range, and ``decompress`` to inflate gzip/xz/zlib data up to a limit derived from what the file
declares. Every failure is a ``FileFormatError`` (a ``FreenetError``) whose message starts with the
file's name and says what is wrong; the CLI prints it as ``freenet: error: FILE: ...``.

A checksum proves that a file is what was written, not that what was written is valid: a reader
validates the content too.
"""

import bz2
import json
import lzma
import math
import numbers
import os
import stat
import zlib

from freenet.errors import FreenetError

MAX_JSON_DEPTH = 64  # freenet writes at most a handful of levels; Python's parser recurses per level
MAX_TEXT_BYTES = 64 << 20  # a JSON record, an SGF file, a GTP line's worth of commands
MAX_PREVIEW = 60
XZ_MEMORY_LIMIT = 256 << 20  # xz -9 needs 65 MiB to decompress; freenet's own archives far less


class FileFormatError(FreenetError):
    """A file (or a peer's message) is not what it should be: the message names it and the problem."""


def preview(value):
    """A short text of a value for error messages."""
    text = repr(value)
    return text if len(text) <= MAX_PREVIEW else text[:MAX_PREVIEW - 3] + "..."


def fail(where, problem):
    raise FileFormatError(f"{where}: {problem}")


# -- files ---------------------------------------------------------------------------------------------

def check_regular(path, what="file"):
    """``path`` names an existing regular file (not a folder, FIFO, socket or device); returns its size."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        fail(path, f"no such {what}")
    except OSError as e:
        fail(path, f"cannot read ({e.strerror or e})")
    if stat.S_ISDIR(st.st_mode):
        fail(path, f"is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        fail(path, f"is not a regular {what} (a pipe, socket or device)")
    return st.st_size


def read_regular(path, limit, what="file"):
    """The bytes of the regular file ``path``, refused if it is larger than ``limit`` bytes."""
    size = check_regular(path, what)
    if size > limit:
        fail(path, f"{size:,} bytes, more than the {limit:,} a {what} may have")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        fail(path, f"cannot read ({e.strerror or e})")
    if len(data) > limit:
        fail(path, f"grew past {limit:,} bytes while being read")
    return data


def decompress(data, kind, limit, where):
    """``data`` inflated (``kind``: "gzip", "xz", "bz2" or "zlib"), refused past ``limit`` bytes or if corrupt."""
    makers = {"gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "zlib": zlib.decompressobj,
              # xz: a header may ask for a dictionary of gigabytes before any output exists
              "xz": lambda: lzma.LZMADecompressor(memlimit=XZ_MEMORY_LIMIT), "bz2": bz2.BZ2Decompressor}
    if kind not in makers:
        raise ValueError(f"decompress: unknown kind {kind!r}")
    out, pending = bytearray(), data
    try:
        while True:
            inflater = makers[kind]()
            if kind in ("gzip", "zlib"):
                chunk = inflater.decompress(pending, limit + 1 - len(out))
                while not inflater.eof and inflater.unconsumed_tail and len(out) + len(chunk) <= limit:
                    chunk += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out) - len(chunk))
            else:
                chunk = inflater.decompress(pending, max_length=limit + 1 - len(out))
            out += chunk
            if len(out) > limit:
                fail(where, f"inflates to more than {limit:,} bytes (a compression bomb or the wrong file)")
            if not inflater.eof:
                fail(where, f"the {kind} data is truncated")
            pending = inflater.unused_data
            if kind != "gzip" or not pending.strip(b"\0"):  # gzip files may hold several members
                return bytes(out)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, MemoryError) as e:
        if isinstance(e, FileFormatError):
            raise
        fail(where, f"corrupt {kind} data ({e})")


def is_gzip(data):
    return data[:2] == b"\x1f\x8b"


# -- JSON ---------------------------------------------------------------------------------------------

def json_depth(text):
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_duplicates(where):
    def pairs_hook(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                fail(where, f"the key {preview(k)} appears twice")
            out[k] = v
        return out
    return pairs_hook


def _no_constant(where):
    def hook(name):
        fail(where, f"{name} is not a number JSON allows")
    return hook


def parse_json(text, where, max_depth=MAX_JSON_DEPTH, max_bytes=MAX_TEXT_BYTES, allow_nonfinite=False):
    """JSON from ``text`` (str or UTF-8 bytes), with bounded size and nesting, no repeated keys, and no
    NaN/Infinity unless ``allow_nonfinite`` (freenet's own run state may record a diverged loss)."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            fail(where, f"{len(text):,} bytes of JSON, more than {max_bytes:,}")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            fail(where, f"not UTF-8 text ({e.reason} at byte {e.start})")
    if not isinstance(text, str):
        fail(where, f"expected JSON text, got {type(text).__name__}")
    if len(text) > max_bytes:
        fail(where, f"{len(text):,} characters of JSON, more than {max_bytes:,}")
    depth = json_depth(text)
    if depth > max_depth:
        fail(where, f"JSON nested {depth} deep, more than {max_depth}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates(where),
                          parse_constant=None if allow_nonfinite else _no_constant(where))
    except json.JSONDecodeError as e:
        fail(where, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})")
    except RecursionError:
        fail(where, "JSON nested too deep")
    except ValueError as e:  # an integer of thousands of digits (Python refuses to convert it)
        fail(where, f"not valid JSON ({e})")


# -- values -------------------------------------------------------------------------------------------

_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object",
          list: "a list"}


def expect(value, kind, where, lo=None, hi=None, optional=False):
    """``value`` if it is of ``kind`` (int, float, str, bool, dict, list; or a tuple of them) and, for
    numbers, finite and within [lo, hi]; otherwise a FileFormatError naming ``where``. Booleans are not
    numbers here; ``optional`` also lets None through."""
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = False
    for k in kinds:
        if k is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif k is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        elif k is list:
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, k) and (k is bool or not isinstance(value, bool))
        if ok:
            break
    if not ok:
        wanted = " or ".join(_KINDS.get(k, k.__name__) for k in kinds) + (" or null" if optional else "")
        fail(where, f"must be {wanted}, not {preview(value)}")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            fail(where, f"must be finite, not {value}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            fail(where, f"must be in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}], "
                        f"not {preview(value)}")
    return value


_MISSING = object()


def field(mapping, key, kind, where, lo=None, hi=None, default=_MISSING, optional=False):
    """``mapping[key]`` checked by ``expect`` (``where`` names the mapping); ``default`` if it is absent
    and a default is given, else an error saying the key is missing."""
    expect(mapping, dict, where)
    if key not in mapping:
        if default is not _MISSING:
            return default
        fail(where, f"has no {preview(key)}")
    return expect(mapping[key], kind, f"{where}: {key}", lo, hi, optional)
