"""Hostile model files: a model file's safetensors header, its provenance record, its source archive and
the commands that read them (load, load_metadata, read_record, inspect, reproduce) give a result or a
FreenetError naming the file, never a traceback, a hang or a huge allocation (the issue on hostile inputs).

Direct tests of each kind of file the mutation fuzzer found, then seeded mutations of a valid model file
that freenet writes itself (``fuzz.cases``; in-process, each case under a deadline), then a few runs of
the CLI in a child with time and memory limits (``fuzz.run_cli``).

``python tests/test_fuzz_model_files.py [N]`` prints, for N corpus cases, how each reader of whichever
freenet is imported fares (the corpus is made with what freenet had before the readers were checked).
"""

import base64
import contextlib
import hashlib
import io
import json
import lzma
import math
import os
import pathlib
import re
import signal
import struct
import sys
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import safetensors.numpy

import freenet as fn
from freenet import provenance, serialize
from freenet.cli import main
from freenet.commands import inspect as inspect_command
from freenet.errors import FreenetError
from freenet.recipes import go as go_recipe, mnist

sys.path.insert(0, os.path.dirname(__file__))
import fuzz  # noqa: E402  (tests/fuzz.py, also when this file runs as a script)

RECORD_KEY = provenance.RECORD_KEY
SOURCE_KEY = provenance.SOURCE_KEY
DIGEST_KEY = getattr(provenance, "DIGEST_KEY", "freenet.provenance.sha256")
SLOW = 10.0  # seconds one in-process case may take on a loaded 2-core machine (the files take milliseconds)
ESCAPE = "freenet_fuzz_escape.py"  # what archive members that try to leave the target folder are called


# -- the valid file, made by freenet ---------------------------------------------------------------------

def tar_xz(entries, compress=True):
    """A tar.xz of (name, kind, content) entries, kind "file", "dir", "symlink", "hardlink", "fifo" or "chr"."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            if kind == "file":
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            info.linkname = content.decode() if kind in ("symlink", "hardlink") else ""
            tar.addfile(info)
    raw = buffer.getvalue()
    return lzma.compress(raw) if compress else raw


SOURCE = [("freenet/__init__.py", "file", b'"""freenet"""\n'), ("freenet/tensor.py", "file", b"x = 1\n" * 40),
          ("freenet/kernels/conv.py", "file", b"def conv():\n    pass\n"), ("script/train.py", "file", b"print(1)\n")]


def weights():
    return {"w": fn.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) / 7), "b": fn.tensor(np.ones(3, np.float32)),
            "steps": fn.tensor(np.array([3], np.int64))}


def model_bytes(folder):
    """A model file as ``freenet train`` writes one: tiny weights, a full record, an embedded archive."""
    recipe = mnist.Recipe(epochs=1, max_steps=1, seed=3)
    state = weights()
    record = provenance.make_record(
        recipe="mnist", params=recipe.as_dict(), architecture={"recipe": "mnist", "description": mnist.ARCHITECTURE},
        data=mnist.data_identity(recipe), metrics={"test_accuracy": 0.5, "history": [{"epoch": 1, "loss": 0.25}]},
        license="MIT", state_dict=state, command=["freenet", "train", "mnist", "--epochs", "1"])
    path = os.path.join(folder, "base.safetensors")
    provenance.save_model(path, state, record, tar_xz(SOURCE))
    with open(path, "rb") as f:
        return f.read()


# -- editing a file's bytes (without freenet, so that the same corpus runs on any version of it) -----------

def split(blob):
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header, data, text=None):
    text = (text if text is not None else json.dumps(header)).encode("utf-8", "surrogatepass")
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text + data


def sha256_text(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def with_record(blob, edit=None, text=None, seal=True, metadata=None):
    """``blob`` with its record changed by ``edit(record)`` (or replaced by ``text``), resealed unless
    ``seal`` is False; ``metadata(meta)`` may change the rest of the metadata first."""
    header, data = split(blob)
    meta = header["__metadata__"]
    if metadata:
        metadata(meta)
    if text is None:
        record = json.loads(meta[RECORD_KEY])
        edit(record)
        text = json.dumps(record, sort_keys=True)
    meta[RECORD_KEY] = text
    if seal:
        meta[DIGEST_KEY] = sha256_text(text)
    return join(header, data)


def with_archive(blob, archive, fix_hash=True, seal=True):
    """``blob`` with ``archive`` (bytes, or a str put in as it is) as its embedded source archive."""
    text = archive if isinstance(archive, str) else base64.b64encode(archive).decode()

    def edit(record):
        if fix_hash and not isinstance(archive, str):
            record["source_archive_sha256"] = hashlib.sha256(archive).hexdigest()
    return with_record(blob, edit, seal=seal, metadata=lambda m: m.__setitem__(SOURCE_KEY, text))


def with_entry(blob, name, key, value):
    header, data = split(blob)
    header[name][key] = value
    return join(header, data)


def set_path(obj, path, value):
    """``obj[path[0]][path[1]]... = value`` as far as the containers are dicts (a shorter path otherwise)."""
    for key in path[:-1]:
        if not isinstance(obj.get(key), dict):
            break
        obj = obj[key]
    else:
        obj[path[-1]] = value
        return
    obj[key] = value


def with_nonfinite(blob, value=math.nan, fix_hashes=True):
    """``blob`` with one float of the tensor 'w' made NaN or infinite (and the record's hash of the weights
    made to match, so that only the value itself is wrong)."""
    header, data = split(blob)
    begin = header["w"]["data_offsets"][0]
    data = data[:begin] + struct.pack("<f", value) + data[begin + 4:]
    if not fix_hashes:
        return join(header, data)
    arrays = safetensors.numpy.load(join({k: v for k, v in header.items() if k != "__metadata__"}, data))
    digest = hashlib.sha256(safetensors.numpy.save(arrays)).hexdigest()
    return with_record(join(header, data), lambda r: r.__setitem__("weights_sha256", digest))


def lying_size_tar():
    """A tar.xz whose first member says it holds a gigabyte."""
    raw = bytearray(tar_xz([("a.py", "file", b"x = 1\n")], compress=False))
    raw[124:136] = b"%011o\0" % (1 << 30)
    raw[148:156] = b"        "
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    return lzma.compress(bytes(raw))


def big_dictionary_xz(payload):
    """An xz stream whose header asks for a 4 GiB dictionary (it decodes with little, but allocates it first)."""
    data = bytearray(lzma.compress(payload))
    size = (data[12] + 1) * 4
    block = data[12:12 + size]
    block[block.index(b"\x21\x01", 2) + 2] = 40  # the LZMA2 dictionary size code: 4 GiB - 1
    struct.pack_into("<I", block, size - 4, zlib.crc32(bytes(block[:size - 4])))
    data[12:12 + size] = block
    return bytes(data)


# -- what a hostile file holds ---------------------------------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000
HUGE_INT = "9" * 5000
HOSTILE_VALUES = ["x", "", [1], [], 3, -1, 0, 2.5, 1e308, None, True, {}, {"a": [1]}, 10 ** 30, "3", "0" * 64,
                  ["F32"], "DEEP", "HUGE_INT", "NAN", "1e999"]
RECORD_PATHS = [("recipe",), ("recipe", "name"), ("recipe", "params"), ("recipe", "command"), ("code",),
                ("code", "git"), ("code", "git", "commit"), ("code", "freenet_source_files"), ("data",),
                ("data", "files"), ("data", "license"), ("data", "files", "images-idx3-ubyte.gz"), ("data", "name"),
                ("environment",), ("environment", "cpu"), ("environment", "cpu", "name"), ("environment", "numpy"),
                ("metrics",), ("metrics", "history"), ("metrics", "test_accuracy"), ("architecture",),
                ("architecture", "description"), ("license",), ("weights_sha256",), ("source_archive_sha256",),
                ("reproducibility",), ("reproducibility", "class"), ("reproducibility", "cpu"), ("format",)]
PARAMS = ["epochs", "batch_size", "lr", "momentum", "weight_decay", "seed", "max_shift", "shards", "max_steps", "data",
          "evil"]
PARAM_VALUES = ["x", "3", -1, -3, 0, 2.5, None, [1], True, 10 ** 30, 1e308, "", "/"]


RAW = {"DEEP": DEEP, "HUGE_INT": HUGE_INT, "NAN": "NaN", "1e999": "1e999"}  # JSON that json.dumps cannot write


def is_raw(value):
    return isinstance(value, str) and value in RAW


def hostile_record(blob, rng):
    header, _ = split(blob)
    record = json.loads(header["__metadata__"][RECORD_KEY])
    kind = rng.integers(4)
    if kind == 0:  # a field of the wrong type or value
        value = HOSTILE_VALUES[rng.integers(len(HOSTILE_VALUES))]
        set_path(record, RECORD_PATHS[rng.integers(len(RECORD_PATHS))], "@@" if is_raw(value) else value)
        text = json.dumps(record, sort_keys=True).replace('"@@"', RAW[value] if is_raw(value) else '"@@"')
    elif kind == 1:  # a field missing
        path = RECORD_PATHS[rng.integers(len(RECORD_PATHS))]
        parent = record
        for key in path[:-1]:
            parent = parent[key] if isinstance(parent.get(key), dict) else {}
        parent.pop(path[-1], None)
        text = json.dumps(record, sort_keys=True)
    elif kind == 2:  # a recipe parameter of the wrong type or range
        record["recipe"]["params"][PARAMS[rng.integers(len(PARAMS))]] = PARAM_VALUES[rng.integers(len(PARAM_VALUES))]
        text = json.dumps(record, sort_keys=True)
    else:  # not a record at all
        text = [DEEP, "{" * 100000, "[1, 2]", "null", '"x"', HUGE_INT, "{not json", '{"a": 1, "a": 2}', "",
                '{"recipe": NaN}', "\ud800"][rng.integers(11)]
    return with_record(blob, text=text, seal=rng.random() < 0.8)


ARCHIVES = {
    "empty-name": [("", "file", b"x\n")], "dot": [(".", "file", b"x\n")], "dot-slash": [("./a.py", "file", b"x\n")],
    "long-name": [("a" * 300, "file", b"x\n")], "long-part": [("d/" + "b" * 300 + ".py", "file", b"x\n")],
    "long-path": [("/".join(["d" * 200] * 6), "file", b"x\n")], "double-slash": [("a//b.py", "file", b"x\n")],
    "trailing-slash": [("a/", "file", b"x\n")], "file-then-folder": [("x", "file", b"1"), ("x/y.py", "file", b"2")],
    "folder-then-file": [("x/y.py", "file", b"1"), ("x", "file", b"2")],
    "twice": [("a", "file", b"1"), ("a", "file", b"2")],
    "dotdot": [("../" + ESCAPE, "file", b"x\n")], "deep-dotdot": [("a/../../" + ESCAPE, "file", b"x\n")],
    "absolute": [("/tmp/" + ESCAPE, "file", b"x\n")], "backslash": [("..\\..\\" + ESCAPE, "file", b"x\n")],
    "drive": [("C:" + ESCAPE, "file", b"x\n")], "symlink": [("link", "symlink", b"/etc/passwd")],
    "hardlink": [("link", "hardlink", b"/etc/passwd")], "folder": [("d", "dir", b"")], "fifo": [("p", "fifo", b"")],
    "device": [("c", "chr", b"")],
    "link-then-file": [("d", "symlink", b"/tmp"), ("d/" + ESCAPE, "file", b"x\n")],
}
BROKEN_ARCHIVES = {
    "garbage": b"\xfd7zXZ\x00garbage", "not-xz": b"hello", "empty": b"", "truncated": tar_xz(SOURCE)[:-30],
    "xz-of-garbage": lzma.compress(b"not a tar" * 100), "xz-of-nothing": lzma.compress(b""),
    "lying-size": lying_size_tar(),
}
ODD_ARCHIVES = {  # read, or refused, depending on the machine: never a traceback
    "big-dictionary": big_dictionary_xz(tar_xz(SOURCE, compress=False)),  # refused where memory is limited
    "two-streams": tar_xz(SOURCE) + b"\0" * 7 + b"junk",  # what follows the xz stream is not read
    "raw-byte-name": tar_xz(SOURCE + [("bad\udcff.py", "file", b"x\n")]),  # a name that is not UTF-8
}


def hostile_archive(blob, rng):
    names = list(ARCHIVES) + list(BROKEN_ARCHIVES) + list(ODD_ARCHIVES) + ["not-base64"]
    name = names[rng.integers(len(names))]
    if name == "not-base64":
        return with_archive(blob, ["%%%", "QUJD=", "\u00e9t\u00e9", "A" * 5][rng.integers(4)])
    odd = {**BROKEN_ARCHIVES, **ODD_ARCHIVES}
    archive = odd[name] if name in odd else tar_xz(SOURCE[:int(rng.integers(4))] + ARCHIVES[name])
    return with_archive(blob, archive, fix_hash=rng.random() < 0.85)


TENSOR_VALUES = {"dtype": [["F32"], 5, None, "F16", "f32", "", {"F32": 1}, "BOOL"],
                 "shape": ["2", [2.0], [-1], [True, 3], [1] * 65, [0, 2 ** 70], [2 ** 62, 2 ** 62], [10 ** 30], None,
                           {}, [6], [3, 2], [0]],
                 "data_offsets": [[0, "8"], [0], [8, 0], [0, 2 ** 70], [-4, 20], [0, 8, 16], None, "0,8", [0.0, 24.0],
                                  [1, 25], [True, 24]]}


def hostile_header(blob, rng):
    header, data = split(blob)
    kind = rng.integers(4)
    if kind == 0:  # a tensor entry of the wrong type or range
        key = list(TENSOR_VALUES)[rng.integers(3)]
        values = TENSOR_VALUES[key]
        header[["w", "b", "steps"][rng.integers(3)]][key] = values[rng.integers(len(values))]
        return join(header, data)
    if kind == 1:  # the metadata not str -> str, or a nested structure that is not one
        meta = header["__metadata__"]
        change = rng.integers(4)
        if change == 0:
            header["__metadata__"] = [[k, v] for k, v in meta.items()]
        elif change == 1:
            meta[RECORD_KEY] = json.loads(meta[RECORD_KEY])
        elif change == 2:
            meta["freenet.tree"] = ['{"version": 1, "root": ' + DEEP + "}", '{"version": 1, "root": {"tensor": "w"}}',
                                    "{", '{"version": 1, "root": ' + HUGE_INT + "}"][rng.integers(4)]
        else:
            header["__metadata__"] = "x"
        return join(header, data)
    if kind == 2:  # deep nesting or another JSON value as the whole header
        return join(header, data, ["[" * 100000 + "]" * 100000, "{" * 2000, "[]", "null", '{"w": ' + DEEP + "}",
                                   '{"a": 1, "a": 1}', "\udcff", HUGE_INT][rng.integers(8)])
    return join(header, data, json.dumps(header) + " " * int(rng.integers(1, 9)))  # still valid: padding


def mutate_bytes(data, rng, hot=None):
    """Bit flips, a truncation, inserted or deleted bytes, or a number changed; ``hot`` (start, end) is where
    they land most of the time (the header)."""
    data = bytearray(data)

    def pos():
        if hot and rng.random() < 0.7:
            return int(rng.integers(hot[0], hot[1]))
        return int(rng.integers(0, len(data)))

    kind = rng.integers(5)
    if kind == 0:
        for _ in range(rng.integers(1, 9)):
            data[pos()] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del data[pos():]
    elif kind == 2:
        i = pos()
        data[i:i] = [b"[", b"{", b'"', b"\\", b"\xff", b"0", b"-", b"NaN", b"[" * 3000, b"\x00" * 5][rng.integers(10)]
    elif kind == 3:
        i = pos()
        del data[i:i + int(rng.integers(1, 64))]
    else:
        numbers = [m.span() for m in re.finditer(rb"\d+", bytes(data[:hot[1] if hot else len(data)]))]
        if numbers:
            a, b = numbers[rng.integers(len(numbers))]
            data[a:b] = [b"9" * 30, b"18446744073709551615", b"1e999", b"-7", b"0", b"4294967296"][rng.integers(6)]
    return bytes(data)


def corpus(base, n, seed=0):
    """(name, file bytes): ``n`` seeded mutations of the valid model file ``base``."""
    header_end = 8 + int.from_bytes(base[:8], "little")
    makers = [("bytes", lambda rng: mutate_bytes(base, rng)),
              ("header-bytes", lambda rng: mutate_bytes(base, rng, hot=(0, header_end))),
              ("record", lambda rng: hostile_record(base, rng)),
              ("archive", lambda rng: hostile_archive(base, rng)),
              ("header", lambda rng: hostile_header(base, rng)),
              ("nonfinite", lambda rng: with_nonfinite(base, [math.nan, math.inf, -math.inf][rng.integers(3)],
                                                       fix_hashes=bool(rng.integers(2)))),
              ("changed", lambda rng: with_record(base, lambda r: r["recipe"]["params"].update(lr=0.3), seal=False))]
    weights_of_kind = [3, 5, 8, 6, 5, 1, 1]
    order = [k for k, w in enumerate(weights_of_kind) for _ in range(w)]
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        name, make = makers[order[i % len(order)]]
        yield f"{name}-{i}", make(rng)


# -- running the readers on a file ----------------------------------------------------------------------------

class Hang(BaseException):
    """A reader ran past its deadline (a BaseException, so that no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def deadline(seconds):
    def expired(signum, frame):
        raise Hang(f"over {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_CODE = []  # provenance.code_identity(), computed once


@contextlib.contextmanager
def no_training():
    """``reproduce`` without the retraining: the stand-in for ``train`` reports other weights (exit 1)."""
    saved = [(provenance, "code_identity", provenance.code_identity), (mnist, "train", mnist.train),
             (go_recipe, "train", go_recipe.train)]
    _CODE[:] = _CODE or [provenance.code_identity()]
    provenance.code_identity = lambda script=None: _CODE[0]
    mnist.train = go_recipe.train = lambda *a, **k: type("Result", (), {"sha256": "0" * 64})()
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def read_with_serialize(path):
    serialize.load(path)
    serialize.load_metadata(path)


def read_the_record(path):
    record = provenance.read_record(path)
    provenance.classify(record, True)
    provenance.expected_here(record, provenance.this_machine())


def run_inspect(path):
    report = inspect_command.inspect_file(path)
    inspect_command._readable(report)  # what ``freenet inspect`` prints, and what --json prints
    json.dumps(report, indent=2, sort_keys=True)


def run_reproduce(path):
    err = io.StringIO()
    with no_training(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        main(["reproduce", path, "--quiet"])  # a FreenetError is printed and becomes the exit status
    if "freenet: error:" in err.getvalue():
        raise FreenetError(err.getvalue())


def extract_into(folder):
    def read(path):
        archive = provenance.read_archive(path)
        if archive is not None:
            provenance.extract_archive(archive, os.path.join(folder, "target"))
    return read


def outcome(read, path):
    """("ok" | "clean" | "traceback" | "hang" | "memory", the exception or None) of ``read(path)``."""
    try:
        with deadline(SLOW):
            read(path)
        return "ok", None
    except FreenetError as e:
        return "clean", e
    except Hang as e:
        return "hang", e
    except MemoryError as e:
        return "memory", e
    except Exception as e:  # noqa: BLE001  (what the fuzzer is for)
        return "traceback", e


def listing(folder):
    """Every file and folder under ``folder``, relative to it."""
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, dirs, names in os.walk(folder)
                  for n in dirs + names)


def run_corpus(folder, base, n, seed=0):
    """Every reader on ``n`` corpus files: counts per reader and outcome, and the failures."""
    counts = {reader: dict.fromkeys(("ok", "clean", "traceback", "hang", "memory"), 0) for reader in READERS}
    failures = []
    for name, data in corpus(base, n, seed):
        case = os.path.join(folder, name)
        os.makedirs(case)
        path = os.path.join(case, "model.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        for reader, make in READERS.items():
            result, error = outcome(make(case), path)
            counts[reader][result] += 1
            if result == "clean" and reader in NAME_THE_FILE and path not in str(error):
                failures.append((name, reader, "the error does not name the file", str(error)[:300]))
            elif result not in ("ok", "clean"):
                failures.append((name, reader, result, repr(error)[:300]))
        outside = [p for p in listing(case) if p != "model.safetensors" and not p.startswith("target")]
        if outside or os.path.exists("/tmp/" + ESCAPE) or os.path.exists(os.path.join(folder, ESCAPE)):
            failures.append((name, "source archive", "wrote outside the target folder", str(outside)))
    return counts, failures


READERS = {"safetensors load": lambda case: read_with_serialize, "provenance record": lambda case: read_the_record,
           "inspect": lambda case: run_inspect, "reproduce": lambda case: run_reproduce,
           "source archive": extract_into}
NAME_THE_FILE = ("safetensors load", "provenance record", "inspect")  # the others may name a data folder instead


# -- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return model_bytes(str(tmp_path_factory.mktemp("base")))


def write(path, data):
    path.write_bytes(data)
    return str(path)


def expect_clean(path, problem, readers=("record", "inspect", "reproduce")):
    """Each of ``readers`` refuses ``path`` with a FileFormatError whose message starts with the file name
    and matches ``problem``."""
    from freenet.validate import FileFormatError
    pattern = f"^{re.escape(str(path))}: .*{problem}"
    calls = {"load": serialize.load, "metadata": serialize.load_metadata, "record": provenance.read_record,
             "inspect": inspect_command.inspect_file}
    for reader in readers:
        if reader == "reproduce":
            with pytest.raises(FileFormatError, match=pattern):
                run_reproduce_raising(path)
        else:
            with pytest.raises(FileFormatError, match=pattern):
                calls[reader](path)


def run_reproduce_raising(path):
    """``freenet reproduce``'s run on ``path``, with its FreenetError raised rather than printed."""
    from freenet.commands import reproduce
    args = type("Args", (), {"file": str(path), "data": None, "threads": None, "quiet": True})()
    with no_training(), contextlib.redirect_stdout(io.StringIO()):
        return reproduce.run(args)


# -- 1. the record's shape ----------------------------------------------------------------------------------------

@pytest.mark.fuzz
@pytest.mark.parametrize("key", ["recipe", "code", "data", "metrics", "environment", "architecture", "license"])
@pytest.mark.parametrize("value", ["text", ["a", "list"], 42, None, "missing"])
def test_a_record_section_of_the_wrong_shape_is_a_clean_error(base, tmp_path, key, value):
    if key == "license" and value == "text":
        value = {"an": "object"}
    path = write(tmp_path / "m.safetensors",
                 with_record(base, lambda r: r.pop(key) if value == "missing" else r.__setitem__(key, value)))
    expect_clean(path, f"the provenance record: has no '{key}'" if value == "missing"
                 else f"the provenance record: {key}: must be")
    assert main(["inspect", path]) != 0


@pytest.mark.fuzz
@pytest.mark.parametrize("field_path, value, problem", [
    (("recipe", "params"), "lr=0.1", "recipe: params: must be an object"),
    (("recipe", "name"), ["mnist"], "recipe: name: must be a string"),
    (("recipe", "command"), "freenet train", "recipe: command: must be a list"),
    (("data", "license"), ["MIT"], "data: license: must be a string"),
    (("data", "files"), ["a.gz"], "data: files: must be an object"),
    (("data", "files", "images-idx3-ubyte.gz"), 7, "data: files: images-idx3-ubyte.gz: must be a string"),
    (("code", "git"), "abc", "code: git: must be an object"),
    (("code", "git"), {"commit": 12, "dirty": False}, "code: git: commit: must be a string"),
    (("environment", "cpu"), "EPYC", "environment: cpu: must be an object"),
    (("environment", "freenet_threads"), -2, r"environment: freenet_threads: must be in \[0"),
    (("architecture", "description"), {"a": 1}, "architecture: description: must be a string"),
    (("weights_sha256",), "0" * 63, "weights_sha256: must be a SHA-256"),
    (("weights_sha256",), None, "weights_sha256: must be a string"),
    (("source_archive_sha256",), 5, "source_archive_sha256: must be a string"),
    (("format",), "1", "format: must be an integer"),
])
def test_a_record_field_of_the_wrong_type_names_the_field(base, tmp_path, field_path, value, problem):
    path = write(tmp_path / "m.safetensors", with_record(base, lambda r: set_path(r, field_path, value)))
    expect_clean(path, "the provenance record: " + problem)


@pytest.mark.fuzz
@pytest.mark.parametrize("text, problem", [
    ("[1, 2]", "is a JSON array, not an object"), ("{not json", "not valid JSON"), (DEEP, "JSON nested 5000 deep"),
    ('{"recipe": {}, "recipe": {}}', "appears twice"), ('{"license": NaN}', "NaN is not a number JSON allows"),
    ('{"format": ' + HUGE_INT + "}", "not valid JSON"), ("\ud800", "not valid JSON")], ids=lambda v: v[:20])
def test_a_record_that_is_not_json_or_too_deep_is_a_clean_error(base, tmp_path, text, problem):
    path = write(tmp_path / "m.safetensors", with_record(base, text=text))
    expect_clean(path, "the provenance record: .*" + re.escape(problem))


def test_the_valid_file_reads_everywhere(base, tmp_path, capsys):
    path = write(tmp_path / "m.safetensors", base)
    record = provenance.read_record(path)
    assert provenance.classify(record, True)[0] == "Free Model"
    assert main(["inspect", path]) == 0
    assert "  record       matches its digest" in capsys.readouterr().out
    assert main(["inspect", path, "--extract-source", str(tmp_path / "src")]) == 0
    assert listing(tmp_path / "src") == sorted({"freenet", "freenet/kernels", "script"} | {n for n, _, _ in SOURCE})
    assert (tmp_path / "src" / "freenet" / "tensor.py").read_bytes() == SOURCE[1][2]


# -- 2. the safetensors header -----------------------------------------------------------------------------------

@pytest.mark.fuzz
@pytest.mark.parametrize("key, value, problem", [
    ("dtype", ["F32"], r"tensor 'w' has unsupported dtype \['F32'\]"), ("dtype", 5, "unsupported dtype 5"),
    ("dtype", {"F32": 1}, "unsupported dtype"), ("dtype", None, "unsupported dtype None"),
    ("shape", "6", "invalid shape '6'"), ("shape", [2.0, 3], "invalid shape"), ("shape", [-2, -3], "invalid shape"),
    ("shape", [True, 6], "invalid shape"), ("shape", [1] * 65, "invalid shape"),
    ("shape", [0, 2 ** 70], "too large for any array"), ("shape", [2 ** 40, 2 ** 40], "too large for any array"),
    ("shape", [3, 3], "needs 36 bytes"), ("data_offsets", [0, "24"], "invalid data_offsets"),
    ("data_offsets", [0], "invalid data_offsets"), ("data_offsets", [24, 0], "invalid data_offsets"),
    ("data_offsets", [0, 2 ** 70], "out of range"), ("data_offsets", [-4, 20], "invalid data_offsets"),
    ("data_offsets", [0.0, 24.0], "invalid data_offsets"), ("data_offsets", None, "invalid data_offsets")])
def test_header_entries_are_checked(base, tmp_path, key, value, problem):
    path = write(tmp_path / "m.safetensors", with_entry(base, "w", key, value))
    expect_clean(path, problem, readers=("load", "metadata", "record", "inspect", "reproduce"))


@pytest.mark.fuzz
@pytest.mark.parametrize("text, problem", [
    ("[" * 100000 + "]" * 100000, "header: JSON nested 100000 deep"), ('{"w": ' + DEEP + "}", "nested 5001 deep"),
    ('{"__metadata__": {"a": "1", "a": "2"}}', "appears twice"), ("[1, 2]", "header is JSON list"),
    ("\udcff", "header: not UTF-8"), (HUGE_INT, "header: not valid JSON")], ids=lambda v: v[:20])
def test_header_json_that_is_hostile_is_a_clean_error(base, tmp_path, text, problem):
    _, data = split(base)
    path = write(tmp_path / "m.safetensors", join({}, data, text))
    expect_clean(path, problem, readers=("load", "metadata", "record", "inspect", "reproduce"))


@pytest.mark.fuzz
def test_a_nested_structure_too_deep_to_parse_is_a_clean_error(tmp_path):
    tree = '{"version": 1, "root": ' + DEEP + "}"
    path = write(tmp_path / "t.safetensors", join({"__metadata__": {"freenet.tree": tree}}, b""))
    expect_clean(path, "freenet.tree.*JSON nested", readers=("load",))
    fn.save({"a": [[[1.0]]], "b": math.inf}, tmp_path / "ok.safetensors")  # deep enough for any checkpoint
    assert fn.load(tmp_path / "ok.safetensors") == {"a": [[[1.0]]], "b": math.inf}


# -- 3. the source archive ----------------------------------------------------------------------------------------

@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(ARCHIVES) + sorted(BROKEN_ARCHIVES))
def test_archives_with_anything_but_plain_files_are_refused_and_write_nothing(base, tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = BROKEN_ARCHIVES[name] if name in BROKEN_ARCHIVES else tar_xz(SOURCE + ARCHIVES[name])
    path = write(tmp_path / "m.safetensors", with_archive(base, archive))
    target = tmp_path / "out" / "target"
    expect_clean(path, "the embedded source archive: ", readers=("inspect", "reproduce"))
    from freenet.validate import FileFormatError
    with pytest.raises(FileFormatError, match="^source archive: "):
        provenance.extract_archive(archive, str(target))
    assert main(["inspect", path, "--extract-source", str(target)]) != 0
    assert listing(tmp_path) == ["m.safetensors"]  # checked before anything is written, nothing outside
    assert not os.path.exists("/tmp/" + ESCAPE)


@pytest.mark.fuzz
def test_archive_bombs_and_too_many_files_are_refused(base, tmp_path, monkeypatch):
    from freenet.validate import FileFormatError
    monkeypatch.setattr(provenance, "MAX_ARCHIVE_TAR", 100_000)
    bomb = lzma.compress(tar_xz([("zeros", "file", bytes(10 ** 6))], compress=False), preset=0)
    assert len(bomb) < 10_000
    with pytest.raises(FileFormatError, match="inflates to more than 100,000 bytes"):
        provenance.archive_members(bomb)
    monkeypatch.setattr(provenance, "MAX_ARCHIVE_FILES", 3)
    with pytest.raises(FileFormatError, match="4 entries is more than the 3 allowed"):
        provenance.archive_members(tar_xz(SOURCE))
    monkeypatch.setattr(provenance, "MAX_ARCHIVE_BYTES", 100)
    with pytest.raises(FileFormatError, match="unpacks to more than 100 bytes"):
        provenance.archive_members(tar_xz([("a", "file", bytes(80)), ("b", "file", bytes(80))]))


@pytest.mark.fuzz
def test_extraction_never_follows_links_out_of_the_target(base, tmp_path):
    from freenet.validate import FileFormatError
    (tmp_path / "outside").mkdir()
    target = tmp_path / "target"
    (target / "freenet").mkdir(parents=True)
    (target / "script").symlink_to(tmp_path / "outside")  # a link left in the target folder
    with pytest.raises(FileFormatError, match="would escape the target folder"):
        provenance.extract_archive(tar_xz(SOURCE), str(target))
    assert listing(tmp_path / "outside") == []
    (target / "script").unlink()
    (target / "script").write_bytes(b"a file where the archive has a folder")
    with pytest.raises(FileFormatError, match="cannot unpack the source archive there"):
        provenance.extract_archive(tar_xz(SOURCE), str(target))
    with pytest.raises(FileFormatError, match="cannot unpack"):
        provenance.extract_archive(tar_xz(SOURCE), str(target / "script"))  # the target is a file


# -- 4. recipe parameters --------------------------------------------------------------------------------------------

@pytest.mark.fuzz
@pytest.mark.parametrize("change, problem", [
    ({"lr": "x"}, "lr: must be a number"), ({"seed": -1}, r"seed: must be in \[0"),
    ({"max_shift": -3}, r"max_shift: must be in \[0, 28\]"), ({"max_shift": 10 ** 6}, "max_shift"),
    ({"shards": 0}, r"shards: must be in \[1"), ({"epochs": "3"}, "epochs: must be an integer"),
    ({"batch_size": 2.5}, "batch_size: must be an integer"), ({"momentum": -0.5}, "momentum"),
    ({"max_steps": 0}, "max_steps"), ({"weight_decay": "0.1"}, "weight_decay: must be a number"),
    ({"data": 5}, "data: must be a string")])
def test_mnist_recipe_parameters_are_checked_when_the_recipe_is_made(base, tmp_path, change, problem, capsys):
    from freenet.validate import FileFormatError
    with pytest.raises(FileFormatError, match="^mnist recipe: " + problem):
        mnist.Recipe(**change)
    path = write(tmp_path / "m.safetensors", with_record(base, lambda r: r["recipe"]["params"].update(change)))
    expect_clean(path, "mnist recipe: " + problem, readers=("reproduce",))
    assert main(["reproduce", path, "--quiet"]) != 0
    assert "freenet: error:" in capsys.readouterr().err
    with pytest.raises(FileFormatError, match="^mnist recipe: lr: must be finite"):
        mnist.Recipe(lr=math.inf)


@pytest.mark.fuzz
@pytest.mark.parametrize("change, problem", [
    ({"generations": "3"}, "generations: must be an integer"), ({"generations": -1}, "generations"),
    ({"kind": "evil"}, "kind: must be 'selfplay' or 'supervised'"), ({"kind": "supervised"}, "data: must be a string"),
    ({"config": "[1]"}, "config: must be an object"), ({"config": '{"lr": "x"}'}, "config: lr: must be a number"),
    ({"config": '{"size": 99}'}, r"config: size: must be in \[5, 19\]"), ({"config": DEEP}, "config: JSON nested"),
    ({"config": '{"selfplay": {"playouts": -1}}'}, "config: selfplay: playouts"),
    ({"config": '{"evil": 1}'}, "config: has an unknown setting 'evil'"), ({"config": 7}, "config: must be a string"),
    ({"config": '{"seed": ' + HUGE_INT + "}"}, "config: not valid JSON"), ({"data_license": 3}, "data_license")],
    ids=lambda v: str(v)[:30])
def test_go_recipe_parameters_are_checked_when_the_recipe_is_made(change, problem):
    from freenet.validate import FileFormatError
    with pytest.raises(FileFormatError, match="^go recipe: " + problem):
        go_recipe.Recipe(**change)
    assert go_recipe.Recipe(generations=0).generations == 0  # a run stopped before its first generation


# -- 5. paths that are not files -------------------------------------------------------------------------------------

@pytest.mark.fuzz
def test_paths_that_are_not_model_files(tmp_path, capsys):
    from freenet.validate import FileFormatError
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    for path, problem in ((tmp_path / "nope.safetensors", "no such"), (tmp_path, "is a folder"),
                          (fifo, "not a regular")):
        with deadline(SLOW):
            for read in (serialize.load, serialize.load_metadata, provenance.read_record, inspect_command.inspect_file,
                         run_reproduce_raising):
                with pytest.raises(FileFormatError, match=f"^{re.escape(str(path))}: .*{problem}"):
                    read(path)
            for command in ("inspect", "reproduce"):
                assert main([command, str(path)]) != 0
                assert capsys.readouterr().err.startswith(f"freenet: error: {path}: ")
    with pytest.raises(FileNotFoundError):  # what callers written before freenet.validate catch
        serialize.load(tmp_path / "nope.safetensors")


# -- 6. the record's digest -----------------------------------------------------------------------------------------

@pytest.mark.fuzz
def test_a_changed_record_is_reported_by_inspect_and_refused_by_reproduce(base, tmp_path, capsys):
    header, _ = split(base)
    assert header["__metadata__"][DIGEST_KEY] == sha256_text(header["__metadata__"][RECORD_KEY])
    changed = write(tmp_path / "changed.safetensors",
                    with_record(base, lambda r: r["recipe"]["params"].update(lr=0.3), seal=False))
    assert main(["inspect", changed]) == 1
    out = capsys.readouterr().out
    assert "  record       DOES NOT match its digest: the record was changed after it was written" in out
    assert "weights      3 tensors" in out and "(matches the record)" in out  # the rest is still shown
    assert main(["inspect", changed, "--json"]) == 1
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert checks["record_digest"] == "changed" and checks["record_unchanged"] is False
    assert main(["reproduce", changed, "--quiet"]) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and "does not match its digest" in captured.err and "refusing to retrain" in captured.err
    forged = write(tmp_path / "forged.safetensors", with_record(base, lambda r: r.update(license="MIT"), seal=False,
                                                                metadata=lambda m: m.update({DIGEST_KEY: "x"})))
    assert main(["inspect", forged]) == 1 and "DOES NOT match its digest" in capsys.readouterr().out


@pytest.mark.fuzz
def test_a_file_from_before_the_digest_reads_as_an_older_file(base, tmp_path, capsys):
    header, data = split(base)
    del header["__metadata__"][DIGEST_KEY]
    older = write(tmp_path / "older.safetensors", join(header, data))
    assert provenance.read_record_and_status(older)[1] == provenance.RECORD_UNSEALED == "no digest (older file)"
    assert main(["inspect", older]) == 0
    assert "  record       no digest (older file)" in capsys.readouterr().out
    shipped = os.path.join(os.path.dirname(__file__), "..", "docs", "go-match", "net-9x9-6x64-gnugo5.safetensors")
    assert provenance.read_record_and_status(shipped)[1] == provenance.RECORD_UNSEALED
    with no_training():
        assert main(["reproduce", older, "--quiet"]) == 1  # the stand-in trains other weights
    assert "; the record has no digest (older file)" in capsys.readouterr().out


def test_seal_record_makes_a_deliberate_change_verify(base, tmp_path):
    header, data = split(base)
    meta = header["__metadata__"]
    meta[RECORD_KEY] = meta[RECORD_KEY].replace('"license": "MIT"', '"license": "GPL-3.0-or-later"')
    provenance.seal_record(meta)
    path = write(tmp_path / "m.safetensors", join(header, data))
    record, status = provenance.read_record_and_status(path)
    assert status == provenance.RECORD_VERIFIED and record["license"] == "GPL-3.0-or-later"


# -- 7. non-finite weights ----------------------------------------------------------------------------------------

@pytest.mark.fuzz
@pytest.mark.parametrize("value, word", [(math.nan, "NaN"), (math.inf, "infinity"), (-math.inf, "infinity")])
def test_non_finite_weights_are_refused_unless_asked(base, tmp_path, value, word, capsys):
    from freenet.validate import FileFormatError
    path = write(tmp_path / "m.safetensors", with_nonfinite(base, value))
    for read in (serialize.load, fn.load, inspect_command.inspect_file, run_reproduce_raising):
        with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: tensor 'w' holds {word}"):
            read(path)
    w = fn.load(path, allow_nonfinite=True)["w"]
    assert w.numpy().flat[0] == value or (math.isnan(value) and math.isnan(w.numpy().flat[0]))
    assert main(["inspect", path]) != 0 and "tensor 'w' holds" in capsys.readouterr().err
    tree = tmp_path / "tree.safetensors"
    fn.save({"model": {"w": np.array([1.0, value])}, "best": value}, tree)
    with pytest.raises(FileFormatError, match="tensor 'model.w' holds"):
        fn.load(tree)
    assert math.isnan(fn.load(tree, allow_nonfinite=True)["model"]["w"][1]) == math.isnan(value)
    fn.save({"w": np.ones(2), "best": value, "ints": np.array([-1, 2 ** 40])}, tree)  # floats in the structure load
    assert fn.load(tree)["best"] == value or math.isnan(value)


# -- 8. the mutation fuzz -----------------------------------------------------------------------------------------

@pytest.mark.fuzz
def test_mutated_model_files_read_or_fail_cleanly(base, tmp_path):
    n = fuzz.cases(70)
    counts, failures = run_corpus(str(tmp_path), base, n)
    assert not failures, "\n".join(map(str, failures[:20]))
    for reader, seen in counts.items():
        assert seen["ok"] + seen["clean"] == n, (reader, seen)
    assert counts["inspect"]["clean"] > n // 2 and counts["inspect"]["ok"] > 0  # hostile, and some files still read


def cli_cases(base, folder):
    """(arguments, the outcome to expect) for ``fuzz.run_cli``: a handful normally, more in the long mode. An
    ``--extract-source`` goes to FOLDER/out."""
    folder, target = str(folder), os.path.join(str(folder), "out")
    fifo = os.path.join(folder, "fifo.safetensors")
    os.mkfifo(fifo)

    def file(name, data):
        return write(pathlib.Path(folder, name), data)

    def extract(name, data):
        return ["inspect", "--extract-source", target, file(name, data)]

    def archive(name, entries):
        return extract(name, with_archive(base, tar_xz(entries)))

    def params(**change):
        return lambda r: r["recipe"]["params"].update(change)

    changed = file("changed.safetensors", with_record(base, params(lr=0.3), seal=False))
    cases = [
        (["inspect", fifo], "clean"), (["inspect", folder], "clean"),
        (["inspect", file("dtype.safetensors", with_entry(base, "w", "dtype", ["F32"]))], "clean"),
        (archive("empty.safetensors", ARCHIVES["empty-name"]), "clean"),
        (archive("clash.safetensors", ARCHIVES["file-then-folder"]), "clean"),
        (["reproduce", changed], "clean"), (["inspect", changed], "changed"),
        (["reproduce", file("lr.safetensors", with_record(base, params(lr="x")))], "clean"),
        (extract("valid.safetensors", base), "ok"),
    ]
    more = [
        (["inspect", os.path.join(folder, "nonexistent.safetensors")], "clean"), (["reproduce", fifo], "clean"),
        (["inspect", file("deep.safetensors", join({}, split(base)[1], "[" * 100000))], "clean"),
        (["inspect", file("record.safetensors", with_record(base, lambda r: r.update(data="MNIST")))], "clean"),
        (["reproduce", file("metrics.safetensors", with_record(base, lambda r: r.update(metrics=[1])))], "clean"),
        (archive("dot.safetensors", ARCHIVES["dot"]), "clean"),
        (archive("long.safetensors", ARCHIVES["long-name"]), "clean"),
        (archive("escape.safetensors", ARCHIVES["dotdot"]), "clean"),
        (extract("xz.safetensors", with_archive(base, BROKEN_ARCHIVES["garbage"])), "clean"),
        (["inspect", file("dict.safetensors", with_archive(base, ODD_ARCHIVES["big-dictionary"]))], "ok or clean"),
        (["reproduce", file("nan.safetensors", with_nonfinite(base))], "clean"),
    ]
    more += [(extract(f"{name}.safetensors", data), "ok or clean") for name, data in corpus(base, 40, seed=1)]
    return cases + more[:fuzz.cases(0, len(more))]


@pytest.mark.fuzz
def test_the_cli_on_hostile_files_in_a_limited_child(base, tmp_path):
    work, cwd = tmp_path / "files", tmp_path / "cwd"
    work.mkdir()
    cwd.mkdir()
    cases = cli_cases(base, work)
    before = set(listing(tmp_path))

    def run(case):
        return fuzz.run_cli(case[0], cwd=str(cwd))

    with ThreadPoolExecutor(2) as pool:  # the children mostly start up: two at a time halves the wait
        results = list(pool.map(run, cases))
    for (args, expected), (result, code, out, err) in zip(cases, results):
        if expected == "changed" or (expected == "ok or clean" and b"DOES NOT match" in out):
            # inspect's report of a changed record or changed weights: exit status 1, no error, no traceback
            assert code == 1 and "Traceback" not in err and err == "", (args, code, err)
            assert expected != "changed" or b"  record       DOES NOT match its digest: the record was changed" in out
            continue
        assert result in ("ok", "clean") and result in expected, (args, result, code, err)
        if result == "clean":
            assert err.startswith(f"freenet: error: {args[-1]}: "), (args, err)
    written = set(listing(tmp_path)) - before
    assert all(p.startswith(os.path.join("files", "out")) for p in written), sorted(written)
    assert os.path.isfile(work / "out" / "freenet" / "tensor.py")  # the valid file's program, where it was asked
    assert not os.path.exists("/tmp/" + ESCAPE) and listing(cwd) == []


# -- the table of outcomes, for a version of freenet (python tests/test_fuzz_model_files.py [N]) -----------------

if __name__ == "__main__":
    import tempfile
    n = int(sys.argv[1]) if len(sys.argv) > 1 else fuzz.cases(70)
    with tempfile.TemporaryDirectory() as folder:
        counts, failures = run_corpus(folder, model_bytes(folder), n)
    print(f"{n} cases, freenet from {os.path.dirname(fn.__file__)}")
    print("| reader | cases | accepted | clean rejections | tracebacks | hangs | memory blow-ups |")
    print("|---|---|---|---|---|---|---|")
    for reader, seen in counts.items():
        print(f"| {reader} | {n} | {seen['ok']} | {seen['clean']} | {seen['traceback']} | {seen['hang']} | "
              f"{seen['memory']} |")
    kinds = {}
    for name, reader, problem, detail in failures:
        key = (reader, problem, re.sub(r"\d+", "N", detail.split("(")[0])[:60])
        kinds.setdefault(key, []).append(name)
    print(f"{len(kinds)} distinct failures:")
    for (reader, problem, detail), names in sorted(kinds.items()):
        print(f"  {reader}: {problem}: {detail} ({len(names)}x, e.g. {names[0]})")
