"""freenet.validate: the checks every reader uses, on hostile input made here."""

import bz2
import gzip
import lzma
import math
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freenet import validate
from freenet.errors import FreenetError
from freenet.validate import FileFormatError


@pytest.mark.parametrize("kind,compress", [("gzip", gzip.compress), ("xz", lzma.compress), ("bz2", bz2.compress),
                                           ("zlib", zlib.compress)])
def test_decompress_inflates_refuses_bombs_and_reports_corruption(kind, compress):
    data = os.urandom(1000) * 3
    assert validate.decompress(compress(data), kind, len(data), "f") == data
    with pytest.raises(FileFormatError, match=r"f: inflates to more than 2,999 bytes"):
        validate.decompress(compress(data), kind, len(data) - 1, "f")
    with pytest.raises(FileFormatError, match="^f: "):
        validate.decompress(compress(data)[:-7], kind, len(data), "f")
    with pytest.raises(FileFormatError, match="^f: corrupt"):
        validate.decompress(b"\x1f\x8b\x08\x00garbage-garbage", kind, 100, "f")


def test_a_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"\0" * (64 << 20))
    with pytest.raises(FileFormatError, match="compression bomb"):
        validate.decompress(bomb, "gzip", 1 << 20, "bomb.gz")


def test_gzip_members_are_concatenated():
    assert validate.decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 10, "f") == b"abcd"


def test_json_limits():
    assert validate.parse_json(b'{"a": [1, {"b": "]]]]"}]}', "r") == {"a": [1, {"b": "]]]]"}]}
    with pytest.raises(FileFormatError, match="r: JSON nested 5000 deep, more than 64"):
        validate.parse_json("[" * 5000 + "]" * 5000, "r")
    for text, problem in (('{"a": 1, "a": 2}', "appears twice"), ('[Infinity]', "Infinity is not"),
                          ('{"a": ', "not valid JSON"), (b"\xff\xfe", "not UTF-8")):
        with pytest.raises(FileFormatError, match=problem):
            validate.parse_json(text, "r")
    assert math.isnan(validate.parse_json("[NaN]", "r", allow_nonfinite=True)[0])  # a run's diverged loss
    with pytest.raises(FileFormatError, match="JSON nested 100 deep"):
        validate.parse_json("[" * 100 + "]" * 100, "r", allow_nonfinite=True)
    with pytest.raises(FileFormatError, match="more than 10"):
        validate.parse_json("[" + "1," * 20 + "1]", "r", max_bytes=10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet='[]{}",:0123456789.-eEtruefalsn \\', max_size=200))
def test_parse_json_fails_only_cleanly(data):
    try:
        validate.parse_json(data, "r")
    except FileFormatError as e:
        assert str(e).startswith("r: ")


def test_expect_and_field():
    assert validate.field({"lr": 0.1}, "lr", float, "recipe", lo=0) == 0.1
    assert validate.field({}, "seed", int, "recipe", default=3) == 3
    cases = [({"lr": "x"}, "lr", float, {}, "recipe: lr: must be a number, not 'x'"),
             ({"lr": True}, "lr", float, {}, "must be a number, not True"),
             ({"seed": -1}, "seed", int, {"lo": 0}, r"must be in \[0, inf\], not -1"),
             ({"n": 2.5}, "n", int, {}, "must be an integer"),
             ({"x": float("nan")}, "x", float, {}, "must be finite"),
             ({}, "run", dict, {}, "recipe: has no 'run'"),
             ([], "run", dict, {}, "recipe: must be an object")]
    for mapping, key, kind, kw, message in cases:
        with pytest.raises(FileFormatError, match=message):
            validate.field(mapping, key, kind, "recipe", **kw)
    assert issubclass(FileFormatError, FreenetError)


def test_read_regular_refuses_folders_pipes_missing_and_large_files(tmp_path):
    (tmp_path / "f").write_bytes(b"12345")
    assert validate.read_regular(tmp_path / "f", 5) == b"12345"
    os.mkfifo(tmp_path / "pipe")
    for path, problem in ((tmp_path, "is a folder"), (tmp_path / "pipe", "not a regular file"),
                          (tmp_path / "none", "no such file"), (tmp_path / "f", "more than the 4")):
        with pytest.raises(FileFormatError, match=problem):
            validate.read_regular(path, 4 if path == tmp_path / "f" else 100)
