"""Hostile Go files: nets, Leela Zero weights, SGF records and games files are read or refused with a
FreenetError naming the file, never a traceback, a hang or a huge allocation (the issue on hostile inputs).

For each reader: direct tests of what a mutation fuzzer found, then a corpus of seeded mutations of a
valid file that freenet writes itself (``fuzz.cases``; in-process, each case timed), then a few runs of
the CLI in a child with time and memory limits (``fuzz.run_cli``).
"""

import gzip
import io
import json
import os
import re
import time
import zipfile

import fuzz
import numpy as np
import pytest

import freenet as fn
from freenet.errors import FreenetError
from freenet.go import lz_weights, net as go_net, selfplay
from freenet.go.lz_weights import export_lz, import_lz
from freenet.go.net import Evaluator, GoNet, NetConfig, load_net, new_net, save_net, state_shapes
from freenet.go.selfplay import SelfPlayConfig, games_cpu_seconds, load_games, play_games, save_games
from freenet.go.sgf import game_to_sgf, read_sgf
from freenet.validate import FileFormatError

SLOW = 5.0  # seconds one case may take in-process on a loaded 2-core machine (the tiny files take milliseconds)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (conftest.py)


# -- the valid files, made by freenet -------------------------------------------------------------------

def tiny_net(**options):
    return new_net(5, 1, 4, seed=0, **options)


def net_bytes(tmp, meta_text=None, **options):
    """A tiny net file; ``meta_text`` replaces its 'freenet.go' metadata (JSON text, may be hostile)."""
    path = os.path.join(tmp, "base.safetensors")
    net = tiny_net(**options)
    if meta_text is None:
        save_net(net, path)
    else:
        fn.save(net.state_dict(), path, metadata={"freenet.go": meta_text})
    with open(path, "rb") as f:
        return f.read()


def lz_text(tmp):
    path = os.path.join(tmp, "base.txt")
    export_lz(tiny_net(), path)
    with open(path, "rb") as f:
        return f.read()


def tiny_records(games=2, seed=1):
    ev = Evaluator(tiny_net(), symmetry_mode="random", rng=np.random.default_rng(seed))
    return play_games(ev, games, SelfPlayConfig(size=5, playouts=4, parallel=2, batch=4, resign=0.3), seed=seed)


def sgf_bytes(record):
    return game_to_sgf(5, 7.5, record.moves, "B+R", "black", "white", "a comment")


def games_arrays(records, tmp):
    path = os.path.join(tmp, "base.npz")
    save_games(path, records, cpu_seconds=1.5)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def npz_bytes(arrays, compressed=True, lies=None):
    """An .npz of ``arrays``; ``lies`` maps a name to a shape that its .npy header claims instead of the real one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            a = np.asarray(a)
            member = io.BytesIO()
            header = np.lib.format.header_data_from_array_1_0(a)
            if lies and name in lies:
                header["shape"] = lies[name]
            np.lib.format.write_array_header_1_0(member, header)
            member.write(a.tobytes())
            z.writestr(f"{name}.npy", member.getvalue())
    return buf.getvalue()


# -- mutations ------------------------------------------------------------------------------------------

TOKENS = [b"0", b"-1", b"1e999", b"-1e999", b"Infinity", b"NaN", b"nan", b"inf", b"1e9", b"99999999999999999999",
          b"1.5", b"\xff\xfe", b"\x00", b"[", b"]", b"(", b")", b";", b"{", b"}", b'"', b"\\", b"\n", b" ", b"",
          b"null", b"true", b"[]", b"{}"]


def mutate_bytes(data, rng, hot=None):
    """One seeded mutation of ``data``: bit flips, a truncation, inserted, deleted or repeated bytes, or a
    number made huge; ``hot`` (start, end) is where flips and insertions land most of the time (a header)."""
    data = bytearray(data)

    def pos():
        if hot and rng.random() < 0.7:
            return int(rng.integers(hot[0], max(hot[0] + 1, min(hot[1], len(data) + 1))))
        return int(rng.integers(0, len(data) + 1))

    kind = rng.integers(7)
    if kind == 0 and data:
        for _ in range(rng.integers(1, 9)):
            i = min(pos(), len(data) - 1)
            data[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del data[pos():]
    elif kind == 2:
        i = pos()
        data[i:i] = rng.integers(0, 256, rng.integers(1, 17)).astype(np.uint8).tobytes()
    elif kind == 3:
        i = pos()
        data[i:i] = TOKENS[rng.integers(len(TOKENS))]
    elif kind == 4:
        i = pos()
        del data[i:i + int(rng.integers(1, 200))]
    elif kind == 5:  # a chunk repeated: long lines, deep nesting, many nodes
        i = pos()
        chunk = bytes(data[i:i + int(rng.integers(1, 65))]) or b"("
        data[i:i] = chunk * int(rng.integers(2, 20000))
    else:
        numbers = [m.span() for m in re.finditer(rb"\d+", bytes(data))]
        if numbers:
            a, b = numbers[rng.integers(len(numbers))]
            data[a:b] = [b"9" * 30, b"1000000", b"1e999", b"-7", b"0", b"100000"][rng.integers(6)]
    return bytes(data)


HOSTILE_VALUES = [None, True, False, "9", "", 9.5, 1e9, -1, 0, 1000000, 100000, 10 ** 30, [], {}, [9], {"a": 1},
                  "Infinity", "NaN", "deep", "digits"]
RAW_VALUES = {"Infinity": "Infinity", "NaN": "NaN", "deep": "[" * 5000 + "]" * 5000, "digits": "9" * 5000}


def hostile_json(info, rng):
    """``info`` (a dict) as JSON text with one value swapped for a hostile one, a key dropped or added,
    or the whole thing replaced."""
    info = dict(info)
    keys = list(info) + ["format", "size", "blocks", "filters", "value_hidden", "extra"]
    key = keys[rng.integers(len(keys))]
    choice = rng.integers(len(HOSTILE_VALUES) + 2)
    if choice == len(HOSTILE_VALUES):
        info.pop(key, None)
    elif choice == len(HOSTILE_VALUES) + 1:
        return ["[1, 2]", "null", "9", '"x"', "{" * 100000, "[" * 5000 + "]" * 5000, "", "{,}"][rng.integers(8)]
    else:
        value = HOSTILE_VALUES[choice]
        if isinstance(value, str) and value in RAW_VALUES:  # JSON that json.dumps does not write
            info[key] = "@@"
            return json.dumps(info).replace('"@@"', RAW_VALUES[value])
        info[key] = value
    return json.dumps(info)


def net_corpus(tmp, n, seed=0):
    """(name, file bytes): tiny nets with hostile metadata or mutated bytes (mostly in the header)."""
    base = net_bytes(tmp)
    header_end = 8 + int.from_bytes(base[:8], "little")
    info = json.loads(fn.load_metadata(os.path.join(tmp, "base.safetensors"))["freenet.go"])
    options = {"ownership": True, "score": True, "pooling": True}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        if i % 2:
            yield f"meta-{i}", net_bytes(tmp, hostile_json(info, rng), **(options if i % 4 == 1 else {}))
        else:
            yield f"bytes-{i}", mutate_bytes(base, rng, hot=(0, header_end))


def lz_mutate_lines(text, rng):
    lines = text.split(b"\n")
    i = int(rng.integers(len(lines)))
    kind = rng.integers(7)
    if kind == 0:  # a number that is not one, or not finite, or too large for float32
        tokens = lines[i].split() or [b""]
        tokens[rng.integers(len(tokens))] = [b"nan", b"inf", b"-Infinity", b"1e999", b"1e39", b"x", b"0x10",
                                             b"1_0", b"--1"][rng.integers(9)]
        lines[i] = b" ".join(tokens)
    elif kind == 1:  # a line many times as long (the number of filters, the value head's width, ...)
        lines[i] = b" ".join([lines[i]] * int(rng.integers(2, 300)))
    elif kind == 2:
        del lines[i]
    elif kind == 3:
        lines[i:i] = [lines[i]] * int(rng.integers(1, 17))
    elif kind == 4:
        j = int(rng.integers(len(lines)))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 5:
        lines[0] = [b"2", b"", b"1 1", b"-1", b"1e999"][rng.integers(5)]
    else:  # the input biases: 20,000 numbers give 20,000 filters
        lines[2] = b" ".join([b"0.5"] * 20000)
    return b"\n".join(lines)


def lz_corpus(tmp, n, seed=0):
    """(name, file bytes): mutated Leela Zero text, plain or gzipped, and mutated gzip streams."""
    text = lz_text(tmp)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        data = lz_mutate_lines(text, rng) if i % 3 else mutate_bytes(text, rng)
        if i % 5 == 4:
            data = gzip.compress(data, mtime=0)
            if rng.random() < 0.5:
                data = mutate_bytes(data, rng)
        yield f"case-{i}", data


SGF_INSERTS = [b"HA[abc]", b"HA[]", b"HA[1.5]", b"HA[2]", b"CA[rot13]", b"CA[zlib]", b"CA[klingon]", b"CA[\xff]",
               b"SZ[99]", b"SZ[x]", b"SZ[4]", b"KM[inf]", b"KM[nan]", b"KM[1e999]", b"RE[\xff\xfe]", b"AB[aa]",
               b"AE[cc]", b"B[zz]", b"W[]", b"B[abc]", b"B[a]", b"MN[-1]", b"[", b"]", b"\\", b"(", b")", b";", b"B",
               b"FF[9]", b"GM[2]", b"ABC[x]", b"C[\\", b"PL[W]"]


def sgf_mutate(data, rng):
    points = [m.start() for m in re.finditer(rb";", data)] or [0]
    at = points[0 if rng.random() < 0.5 else rng.integers(len(points))] + 1  # the root's properties half the time
    kind = rng.integers(3)
    if kind == 0:
        insert = SGF_INSERTS[rng.integers(len(SGF_INSERTS))]
    elif kind == 1:  # nested variations, or a long sequence of nodes
        k = int(rng.integers(1, 12000))
        insert = [b"(;B[]" * k + b")" * k, b"(;" * k, b";" * k, b"(;B[aa])" * k][rng.integers(4)]
    else:
        return mutate_bytes(data, rng)
    return data[:at] + insert + data[at:]


def sgf_corpus(records, n, seed=0):
    bases = [sgf_bytes(r) for r in records]
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        yield f"case-{i}.sgf", sgf_mutate(bases[i % len(bases)], rng)


def games_mutate(arrays, rng):
    """The arrays of a games file with one replaced, dropped, added, or lied about in its .npy header."""
    arrays = dict(arrays)
    name = list(arrays)[rng.integers(len(arrays))]
    a = np.asarray(arrays[name])
    kind = rng.integers(9)
    lies = None
    if kind == 0:
        del arrays[name]
    elif kind == 1:  # another dtype
        dtype = [np.float64, np.int8, np.int64, np.bool_, np.uint16, "U4", np.complex64][rng.integers(7)]
        arrays[name] = np.zeros(a.shape, dtype) if a.dtype.kind == "U" else a.astype(dtype)
    elif kind == 2:  # another shape
        arrays[name] = [a.reshape(-1), a.reshape(1, -1), a.reshape(-1)[:max(a.size - 1, 0)], np.zeros(0, a.dtype),
                        np.concatenate([a.reshape(-1), a.reshape(-1)]), np.zeros((2, 3, 4), a.dtype)][rng.integers(6)]
    elif kind == 3 and a.size and a.dtype.kind in "iuf":  # an out-of-range value
        b = a.copy().reshape(-1)
        if a.dtype.kind == "f":
            value = [np.nan, np.inf, -60000.0][rng.integers(3)]
        else:
            info = np.iinfo(a.dtype)
            value = int(np.clip([-1, 1000, 32767, -32768, 127, 26, 3][rng.integers(7)], info.min, info.max))
        b[rng.integers(b.size)] = value
        arrays[name] = b.reshape(a.shape)
    elif kind == 4:  # the header claims a huge shape
        lies = {name: [(10 ** 12,), (2 ** 31, 2 ** 31), (10 ** 6, 10 ** 6), (0,), (3,) * 3][rng.integers(5)]}
    elif kind == 5:
        arrays[["size", "offsets", "format", "komi"][rng.integers(4)]] = [
            np.int64(1000), np.int64(-5), np.int64(4), np.array([0, 5, 3]), np.array(["freenet.go.games/9"]),
            np.array("freenet.go.games/1"), np.float64(np.inf), np.array(b"bytes"), np.int64(2 ** 40)][rng.integers(9)]
    elif kind == 6:  # offsets out of order or past the moves
        off = np.asarray(arrays["offsets"]).copy()
        off[rng.integers(len(off))] = [-1, 10 ** 9, 0, off[-1] + 1][rng.integers(4)]
        arrays["offsets"] = off
    elif kind == 7:
        arrays[f"extra{rng.integers(3)}"] = np.zeros(3)
    else:
        return mutate_bytes(npz_bytes(arrays), rng)
    return npz_bytes(arrays, compressed=bool(rng.integers(2)), lies=lies)


def games_corpus(arrays, n, seed=0):
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        yield f"case-{i}.npz", games_mutate(arrays, rng) if i % 4 else mutate_bytes(npz_bytes(arrays, False), rng)


# -- running a corpus -------------------------------------------------------------------------------------

def run_case(read, path):
    """``read(path)``: "ok" or "clean" (a FreenetError naming the file), timed; anything else propagates."""
    start = time.perf_counter()
    try:
        read(path)
        outcome = "ok"
    except FreenetError as e:
        assert os.path.basename(str(path)) in str(e), (path, str(e))
        outcome = "clean"
    took = time.perf_counter() - start
    assert took < SLOW, f"{path}: {took:.1f} s"
    return outcome


def run_corpus(tmp, corpus, read):
    outcomes = {"ok": 0, "clean": 0}
    for name, data in corpus:
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        outcomes[run_case(read, path)] += 1
        os.remove(path)
    return outcomes


def read_sgf_file(path):
    with open(path, "rb") as f:
        return read_sgf(f.read(), path)


def read_games_file(path):
    load_games(path)
    games_cpu_seconds(path)


@pytest.fixture(scope="module")
def records():
    return tiny_records()


# -- Go nets ---------------------------------------------------------------------------------------------

def write(path, data):
    path.write_bytes(data)
    return str(path)


def test_state_shapes_are_the_nets_own():
    for options in ({}, {"ownership": True}, {"score": True, "pooling": True}):
        for blocks in (0, 1, 4):
            net = GoNet(NetConfig(5, blocks, 3, 7, **options))
            want = {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
            assert state_shapes(net.config) == want


@pytest.mark.fuzz
@pytest.mark.parametrize("change,problem", [
    ({"blocks": 1000000}, "blocks"), ({"filters": 100000}, "filters"), ({"value_hidden": 1e9}, "value_hidden"),
    ({"value_hidden": 10 ** 9}, "value_hidden"), ({"size": 99}, "size"), ({"size": "9"}, "size"),
    ({"blocks": -1}, "blocks"), ({"ownership": "yes"}, "ownership"), ({"format": "freenet.go.net/9"}, "format"),
    ({"size": None}, "size"), ({"filters": [4]}, "filters")])
def test_net_metadata_is_checked(tmp_path, change, problem):
    info = {"format": go_net.FORMAT, "size": 5, "blocks": 1, "filters": 4, "value_hidden": 64, **change}
    path = write(tmp_path / "hostile.safetensors", net_bytes(str(tmp_path), json.dumps(info)))
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: .*{problem}"):
        load_net(path)


@pytest.mark.fuzz
@pytest.mark.parametrize("text", ['{"size": 5, "blocks": Infinity, "filters": 4}', "[1, 2]", "{" * 100000,
                                  '{"size": 5, "blocks": ' + "9" * 5000 + "}",
                                  '{"size": 5, "size": 5}', "not json", '{"blocks": 1, "filters": 4}'])
def test_net_metadata_that_is_not_a_config(tmp_path, text):
    path = write(tmp_path / "hostile.safetensors", net_bytes(str(tmp_path), text))
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: "):
        load_net(path)


@pytest.mark.fuzz
def test_net_metadata_that_lies_about_the_tensors_builds_nothing(tmp_path, monkeypatch):
    lies = []
    for change in ({"blocks": 128, "filters": 1024}, {"filters": 8}, {"value_hidden": 4096}, {"size": 19},
                   {"ownership": True}):
        info = {"format": go_net.FORMAT, "size": 5, "blocks": 1, "filters": 4, "value_hidden": 64, **change}
        lies.append(net_bytes(str(tmp_path), json.dumps(info)))
    good = write(tmp_path / "good.safetensors", net_bytes(str(tmp_path)))
    built = []
    monkeypatch.setattr(go_net, "GoNet", lambda *a, **k: built.append(a) or GoNet(*a, **k))
    for data in lies:
        path = write(tmp_path / "lying.safetensors", data)
        start = time.perf_counter()
        with pytest.raises(FileFormatError, match="lying.safetensors: the tensors do not match"):
            load_net(path)
        assert time.perf_counter() - start < 1 and not built
    assert load_net(good).config.filters == 4 and built


@pytest.mark.fuzz
def test_net_files_that_are_not_files(tmp_path):
    with pytest.raises(FileFormatError, match="is a folder"):
        load_net(str(tmp_path))
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(FileFormatError, match="not a regular"):
        load_net(str(fifo))


@pytest.mark.fuzz
def test_net_mutations_load_or_fail_cleanly(tmp_path):
    outcomes = run_corpus(str(tmp_path), net_corpus(str(tmp_path), fuzz.cases(160)), load_net)
    assert outcomes["clean"] > 0 and outcomes["ok"] > 0, outcomes


# -- Leela Zero weights ------------------------------------------------------------------------------------

def lz_lines(tmp):
    return lz_text(tmp).decode().split("\n")


@pytest.mark.fuzz
@pytest.mark.parametrize("index,numbers,problem", [
    (2, 20000, "20000 filters"), (1, 20000, "line 2"), (24, 20000, "value head of 20000"), (26, 20000, "line 27"),
    (3, 5, "line 4"), (18, 362 * 10, "policy fc biases")])  # a 1-block net: line 19 the policy biases, 25 value
def test_lz_long_lines_allocate_nothing(tmp_path, index, numbers, problem):
    lines = lz_lines(str(tmp_path))
    lines[index] = " ".join(["0.25"] * numbers)
    path = write(tmp_path / "long.txt", "\n".join(lines).encode())
    start = time.perf_counter()
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: .*{problem}"):
        import_lz(path)
    assert time.perf_counter() - start < 2


@pytest.mark.fuzz
@pytest.mark.parametrize("value", ["Infinity", "-inf", "nan", "NaN", "1e999", "1e39"])
def test_lz_numbers_must_be_finite_float32(tmp_path, value):
    lines = lz_lines(str(tmp_path))
    lines[5] = " ".join([value] + lines[5].split()[1:])
    path = write(tmp_path / "w.txt", "\n".join(lines).encode())
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: line 6 .*(finite|float32)"):
        import_lz(path)


@pytest.mark.fuzz
def test_lz_too_many_blocks_is_refused_before_parsing(tmp_path):
    lines = lz_lines(str(tmp_path))
    block = lines[5:13]
    lines[5:13] = block * 129
    path = write(tmp_path / "deep.txt", "\n".join(lines).encode())
    with pytest.raises(FileFormatError, match="129 residual blocks"):
        import_lz(path)


@pytest.mark.fuzz
def test_lz_corrupt_gzip_and_bombs(tmp_path, monkeypatch):
    text = lz_text(str(tmp_path))
    good = write(tmp_path / "good.txt.gz", gzip.compress(text))
    assert import_lz(good).config.filters == 4
    corrupt = bytearray(gzip.compress(text))
    corrupt[len(corrupt) // 2] ^= 0xFF
    path = write(tmp_path / "corrupt.gz", bytes(corrupt))
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: "):
        import_lz(path)
    path = write(tmp_path / "truncated.gz", gzip.compress(text)[:-20])
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: "):
        import_lz(path)
    # a bomb of gzip members, each 1 MiB of text; the limit made small so that the test inflates little
    monkeypatch.setattr(lz_weights, "MAX_TEXT_BYTES", 4 << 20)
    path = write(tmp_path / "bomb.gz", gzip.compress(b"0 " * (1 << 19)) * 64)
    with pytest.raises(FileFormatError, match="bomb.gz: inflates to more than"):
        import_lz(path)


def test_lz_text_limit_holds_a_40x256_net():
    numbers = 40 * 2 * (256 * 256 * 9 + 3 * 256) + 256 * 18 * 9 + 362 * 722 + 361 * 256 + 2000
    assert numbers * len("-1.23456789e-05 ") < lz_weights.MAX_TEXT_BYTES  # export_lz's longest number


@pytest.mark.fuzz
def test_lz_mutations_import_or_fail_cleanly(tmp_path):
    outcomes = run_corpus(str(tmp_path), lz_corpus(str(tmp_path), fuzz.cases(160)), import_lz)
    assert outcomes["clean"] > 0, outcomes


# -- SGF ---------------------------------------------------------------------------------------------------

@pytest.mark.fuzz
@pytest.mark.parametrize("prop", [b"HA[abc]", b"HA[]", b"HA[1.5]", b"HA[3]", b"AB[aa]", b"SZ[x]", b"SZ[26]"])
def test_sgf_bad_root_properties(records, prop):
    data = sgf_bytes(records[0]).replace(b"(;", b"(;" + prop, 1)
    with pytest.raises(FileFormatError, match="^game.sgf: "):
        read_sgf(data, "game.sgf")


@pytest.mark.fuzz
def test_sgf_unknown_charsets_fall_back_to_utf8(records):
    want = read_sgf(sgf_bytes(records[0]), "game.sgf")
    for charset in (b"rot13", b"zlib", b"hex", b"klingon", b"\xff"):
        data = re.sub(rb"CA\[[^]]*\]", b"CA[" + charset + b"]", sgf_bytes(records[0]))
        assert read_sgf(data, "game.sgf") == want


@pytest.mark.fuzz
@pytest.mark.parametrize("shape", ["nested", "open", "long", "wide", "huge"])
def test_sgf_size_and_nesting_are_bounded(shape):
    body = {"nested": b"(;B[]" * 100000 + b")" * 100000, "open": b"(;" * 100000, "long": b";B[]" * 300000,
            "wide": b"(;B[aa])" * 300000, "huge": b"C[" + b"x" * (20 << 20) + b"]"}[shape]
    start = time.perf_counter()
    with pytest.raises(FileFormatError, match="^big.sgf: "):
        read_sgf(b"(;SZ[9]" + body + b")", "big.sgf")
    assert time.perf_counter() - start < 2


def test_sgf_contract_is_kept(records):
    data = sgf_bytes(records[0])
    size, komi, moves, winner = read_sgf(data, "game.sgf")
    assert (size, komi, moves, winner) == (5, 7.5, records[0].moves, 1)
    assert read_sgf(data.decode("utf-8")) == (size, komi, moves, winner)
    varied = b"(;SZ[5]KM[0.5](;B[aa];W[bb](;B[cc])(;B[dd]))(;B[ee]))"
    assert read_sgf(varied)[2] == [(1, 20), (2, 16), (1, 12)]  # the main line: first variations


@pytest.mark.fuzz
def test_sgf_mutations_read_or_fail_cleanly(tmp_path, records):
    outcomes = run_corpus(str(tmp_path), sgf_corpus(records, fuzz.cases(160)), read_sgf_file)
    assert outcomes["clean"] > 0 and outcomes["ok"] > 0, outcomes


# -- games files -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arrays(records, tmp_path_factory):
    return games_arrays(records, str(tmp_path_factory.mktemp("games")))


def hostile_games(tmp_path, arrays, lies=None, compressed=True, **changes):
    return write(tmp_path / "hostile.npz", npz_bytes({**arrays, **changes}, compressed, lies))


@pytest.mark.fuzz
@pytest.mark.parametrize("case", ["offsets-order", "offsets-past", "offsets-2d", "move-off-board", "size",
                                  "policy-shape", "lie-huge", "lie-small", "strings", "missing", "pickle",
                                  "npy", "komi"])
def test_games_files_are_checked(tmp_path, arrays, case):
    off, moves = arrays["offsets"], arrays["moves"]
    changes, lies = {}, None
    if case == "offsets-order":
        changes["offsets"] = np.array([0, off[2], off[1]])
    elif case == "offsets-past":
        changes["offsets"] = np.array([0, off[1], 10 ** 9])
    elif case == "offsets-2d":
        changes["offsets"] = off.reshape(1, -1)
    elif case == "move-off-board":
        changes["moves"] = np.where(np.arange(len(moves)) == 1, 26, moves).astype(moves.dtype)
    elif case == "size":
        changes["size"] = np.int64(1000)
    elif case == "policy-shape":
        changes["policy"] = arrays["policy"][:, :-1]
    elif case == "lie-huge":
        lies = {"policy": (10 ** 12, 26)}
    elif case == "lie-small":
        lies = {"moves": (2,)}
    elif case == "strings":
        changes["moves"] = moves.astype("U3")
    elif case == "komi":
        changes["komi"] = np.float64(np.inf)
    if case == "missing":
        path = write(tmp_path / "hostile.npz", npz_bytes({k: v for k, v in arrays.items() if k != "winner"}))
    elif case == "pickle":
        path = str(tmp_path / "hostile.npz")
        with open(path, "wb") as f:
            np.savez(f, **{**arrays, "moves": np.array([object()] * len(moves))})
    elif case == "npy":
        path = str(tmp_path / "hostile.npz")
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)})
    else:
        path = hostile_games(tmp_path, arrays, lies, **changes)
    with pytest.raises(FileFormatError, match=f"^{re.escape(path)}: "):
        load_games(path)


@pytest.mark.fuzz
def test_games_bombs_and_non_files(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(selfplay, "MAX_GAMES_BYTES", 1 << 20)
    n = 50000  # one game of 50,000 positions: 2.6 MB of arrays, consistent, in a small file
    big = {**arrays, "offsets": np.array([0, n]), "moves": np.zeros(n, np.int16), "colours": np.ones(n, np.int8),
           "policy": np.zeros((n, 26), np.float16), "full": np.zeros(n, bool), "values": np.zeros(n, np.float16),
           "winner": np.ones(1, np.int8), "score": np.ones(1, np.float32), "ownership": np.zeros((1, 25), np.int8),
           "owned": np.zeros(1, bool)}
    path = write(tmp_path / "bomb.npz", npz_bytes(big))
    assert os.path.getsize(path) < 200000
    with pytest.raises(FileFormatError, match="bomb.npz: .*more than"):
        load_games(path)
    with pytest.raises(FileFormatError, match="is a folder"):
        load_games(str(tmp_path))
    with pytest.raises(FileFormatError, match="no such"):
        load_games(str(tmp_path / "missing.npz"))


def test_games_files_still_round_trip(tmp_path, records, arrays):
    path = write(tmp_path / "games.npz", npz_bytes(arrays))
    again = load_games(path)
    assert [r.moves for r in again] == [r.moves for r in records] and games_cpu_seconds(path) == 1.5
    from_bytes = load_games(io.BytesIO(npz_bytes(arrays)))  # selfplay_shards hands parts over as bytes
    assert [r.moves for r in from_bytes] == [r.moves for r in records]
    old = {k: v for k, v in arrays.items() if k in ("size", "komi", "moves", "colours", "policy", "offsets",
                                                      "winner", "score")}
    old["format"] = np.array("freenet.go.games/1")
    assert [r.moves for r in load_games(write(tmp_path / "old.npz", npz_bytes(old)))] == [r.moves for r in records]


@pytest.mark.fuzz
def test_games_mutations_load_or_fail_cleanly(tmp_path, arrays):
    outcomes = run_corpus(str(tmp_path), games_corpus(arrays, fuzz.cases(160)), read_games_file)
    assert outcomes["clean"] > 0 and outcomes["ok"] > 0, outcomes


# -- the CLI, in a limited child ------------------------------------------------------------------------------

def assert_clean(args, allowed=("ok", "clean")):
    outcome, code, out, err = fuzz.run_cli(args)
    assert outcome in allowed, (args, outcome, err[-2000:])
    return err


@pytest.mark.fuzz
def test_cli_reads_hostile_nets_and_weights_cleanly(tmp_path):
    tmp = str(tmp_path)
    info = {"format": go_net.FORMAT, "size": 5, "blocks": 1000000, "filters": 4, "value_hidden": 64}
    err = assert_clean(["go", "export-lz", write(tmp_path / "net.safetensors", net_bytes(tmp, json.dumps(info))),
                        f"{tmp}/out.txt"], ("clean",))
    assert "blocks" in err
    lines = lz_text(tmp).split(b"\n")
    lines[2] = b" ".join([b"0.5"] * 20000)
    bomb = gzip.compress(b"0 " * (1 << 19), compresslevel=9) * 3000  # 3 MB inflating to 3 GB
    for name, data in (("long.txt", b"\n".join(lines)), ("bomb.gz", bomb)):
        assert "freenet: error:" in assert_clean(["go", "import-lz", write(tmp_path / name, data), f"{tmp}/x"],
                                                 ("clean",))


@pytest.mark.fuzz
def test_cli_reads_hostile_sgf_and_games_files_cleanly(tmp_path, records, arrays):
    sgf_dir = tmp_path / "sgf"
    sgf_dir.mkdir()
    base = sgf_bytes(records[0])
    for i, insert in enumerate((b"HA[abc]", b"CA[rot13]HA[]", b"(;" * 100000, b"HA[1.5]")):
        write(sgf_dir / f"g{i}.sgf", base.replace(b"(;", b"(;" + insert, 1))
    tiny = ["--size", "5", "--blocks", "0", "--filters", "2", "--generations", "1", "--steps", "1", "--batch-size",
            "2", "--quiet", "--no-source"]
    err = assert_clean(["go", "train", "--dir", str(tmp_path / "sup"), "--sgf", str(sgf_dir), *tiny], ("clean",))
    assert "no usable" in err
    run = tmp_path / "run"
    (run / "games").mkdir(parents=True)
    write(run / "games" / "gen-0001.npz", npz_bytes(arrays, lies={"policy": (10 ** 12, 26)}))
    err = assert_clean(["go", "train", "--dir", str(run), "--games", "2", "--playouts", "2", *tiny], ("clean",))
    assert "gen-0001.npz" in err
