"""freenet.serialize: safetensors round trips, metadata, atomic writes, and clear errors on bad files."""

import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import freenet as fn
from freenet import serialize
from freenet.serialize import load, load_metadata, save

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s != "__metadata__")


@given(data=st.data(), count=st.integers(0, 4))
def test_round_trip_all_dtypes_and_shapes(tmp_path_factory, data, count):
    state = {}
    for _ in range(count):
        dtype = data.draw(st.sampled_from(DTYPES))
        shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        state[data.draw(names)] = data.draw(hnp.arrays(dtype, shape))
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    save(state, path)
    got = load(path, allow_nonfinite=True)  # hypothesis's floats include NaN and infinity
    assert list(got) == sorted(state)
    for k, a in state.items():
        t = got[k]
        assert isinstance(t, fn.Tensor) and t.dtype == a.dtype and t.shape == a.shape
        assert t._data.flags.writeable and t._data.flags.c_contiguous
        np.testing.assert_array_equal(t._data, a)
    plain = safetensors.numpy.load_file(str(path))  # readable by safetensors itself
    assert sorted(plain) == sorted(state)
    for k, a in state.items():
        np.testing.assert_array_equal(plain[k], a)
        assert plain[k].dtype == a.dtype and plain[k].shape == a.shape


def test_zero_d_empty_tensors_and_layouts(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    state = {"scalar": np.array(2.5, np.float32), "flag": np.array(True), "empty": np.zeros((0, 3), np.int32),
             "none": np.zeros((2, 0), np.uint8), "t": base.T, "strided": base[::2, ::3],
             "big_endian": np.arange(5, dtype=">i8"), "tensor": fn.ones(2, 2, requires_grad=True),
             "npscalar": np.int64(7)}
    path = tmp_path / "m.safetensors"
    save(state, path)
    got = load(path)
    assert got["scalar"].shape == () and got["scalar"].item() == 2.5 and got["flag"].item() is True
    assert got["empty"].shape == (0, 3) and got["none"].shape == (2, 0)
    np.testing.assert_array_equal(got["t"]._data, base.T)
    np.testing.assert_array_equal(got["strided"]._data, base[::2, ::3])
    assert got["big_endian"].dtype == np.int64 and got["big_endian"].tolist() == [0, 1, 2, 3, 4]
    assert got["tensor"].dtype == np.float32 and not got["tensor"].requires_grad
    assert got["npscalar"].shape == () and got["npscalar"].item() == 7
    got["scalar"]._data[...] = 1  # loaded tensors own writable memory


def test_metadata_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    meta = {"step": "120", "note": "é ✓", "json": json.dumps({"lr": 0.1})}
    save({"w": np.ones(3, np.float32)}, path, metadata=meta)
    assert load_metadata(path) == meta
    assert safetensors.safe_open(str(path), framework="np").metadata() == meta
    save({"w": np.ones(3, np.float32)}, path)
    assert load_metadata(path) == {}


@pytest.mark.parametrize("metadata, problem", [
    ({"step": 3}, "str to str"), ({1: "a"}, "str to str"), (["a"], "dict of str to str"), ("x", "dict")])
def test_bad_metadata(tmp_path, metadata, problem):
    with pytest.raises(fn.FreenetError, match=problem):
        save({"w": np.ones(1)}, tmp_path / "m", metadata=metadata)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("state, problem", [
    ({"w": [1.0, object()]}, r"obj\['w'\]\[1\] has type object"),  # lists, int keys: see test_serialize_nested
    ({"w": np.ones(2, np.float16)}, "'w' has dtype float16"),
    ({"w": np.ones(2, np.complex64)}, "complex64"),
    ({3.5: np.ones(2)}, "keys must be str or int"),
    ({"__metadata__": np.ones(2)}, "reserved"),
    ([("w", np.ones(2, np.float16))], "'0.1' has dtype float16"),
])
def test_bad_state_dicts(tmp_path, state, problem):
    with pytest.raises(fn.FreenetError, match=problem):
        save(state, tmp_path / "m")
    assert not os.listdir(tmp_path)


def test_save_is_atomic_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save({"w": np.zeros(4, np.float32)}, path, metadata={"v": "old"})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save({"w": np.ones(1000, np.float32)}, path, metadata={"v": "new"})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"], "no temporary file is left behind"
    monkeypatch.undo()
    save({"w": np.ones(2, np.float32)}, path, metadata={"v": "new"})
    assert load_metadata(path) == {"v": "new"} and load(path)["w"].tolist() == [1.0, 1.0]
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save({"w": np.zeros(4, np.float32)}, path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        save({"w": np.ones(4, np.float32)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]


def test_new_file_gets_ordinary_permissions(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"w": np.zeros(1)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# -- corrupt files ------------------------------------------------------------------------------------------

def raw_file(header, data=b""):
    head = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(head)) + head + data


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
CORRUPT = [
    (b"", "truncated: 0 bytes"),
    (b"\x05\x00\x00", "truncated: 3 bytes"),
    (struct.pack("<Q", 1000) + b"{}", "header length 1000 is larger than the rest of the file"),
    (struct.pack("<Q", 2**63) + b"{}", "header length .* larger"),
    (raw_file(b"{not json"), "header: not valid JSON"),
    (raw_file(b"\xff\xfe{}"), "header: not UTF-8 text"),
    (raw_file([1, 2]), "header is JSON list"),
    (raw_file(b'{"a": ' + json.dumps(F32x2).encode() + b', "a": ' + json.dumps(F32x2).encode() + b"}",
              bytes(8)), "the key 'a' appears twice"),
    (raw_file({"w": F32x2}, bytes(4)), r"data_offsets \[0, 8\] out of range: the data section has 4 bytes"),
    (raw_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 2]}}, bytes(8)), "invalid data_offsets"),
    (raw_file({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)), "needs 12 bytes"),
    (raw_file({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)), "unsupported dtype 'F16'"),
    (raw_file({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)), "invalid shape"),
    (raw_file({"w": {"dtype": "F32", "shape": [2]}}, bytes(8)), "must have dtype, shape and data_offsets"),
    (raw_file({"__metadata__": {"a": 1}}), "__metadata__ must map str to str"),
    (raw_file({"w": F32x2}, bytes(12)), "not a valid safetensors file"),  # bytes no tensor accounts for
    (raw_file({"w": F32x2, "v": F32x2}, bytes(8)), "not a valid safetensors file"),  # overlapping tensors
]


@pytest.mark.parametrize("content, problem", CORRUPT)
def test_corrupt_files_raise_freenet_errors(tmp_path, content, problem):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(fn.FreenetError, match=problem) as e:
        load(path)
    assert str(path) in str(e.value)


def test_unsupported_dtype_written_by_safetensors(tmp_path):
    path = tmp_path / "half.safetensors"
    safetensors.numpy.save_file({"h": np.ones(3, np.float16)}, str(path))
    with pytest.raises(fn.FreenetError, match="half.safetensors.*unsupported dtype 'F16'"):
        load(path)


def test_truncated_real_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"a": np.ones((3, 4), np.float64), "b": np.arange(5)}, path)
    full = path.read_bytes()
    for cut in (len(full) - 1, len(full) - 40, 20, 7):
        path.write_bytes(full[:cut])
        with pytest.raises(fn.FreenetError, match="m.safetensors"):
            load(path)
    path.write_bytes(full[:20])
    with pytest.raises(fn.FreenetError, match="larger than the rest of the file"):
        load_metadata(path)


@given(data=st.data())
def test_damaged_files_load_or_raise_freenet_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    save({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False]), "c": np.int64(4)},
         path, metadata={"k": "v"})
    content = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(content) - 1))
        content[i] = data.draw(st.integers(0, 255))
    content = content[:data.draw(st.integers(0, len(content)))]
    path.write_bytes(bytes(content))
    try:
        got = load(path)
        load_metadata(path)
    except fn.FreenetError as e:
        assert str(path) in str(e)
    else:
        assert all(isinstance(t, fn.Tensor) and t.dtype in DTYPES for t in got.values())


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.safetensors")


def test_atomic_write_helper_leaves_no_temp_on_success(tmp_path):
    serialize.atomic_write(tmp_path / "x.bin", b"abc")
    serialize.atomic_write(str(tmp_path / "x.bin"), b"defg")
    assert (tmp_path / "x.bin").read_bytes() == b"defg" and os.listdir(tmp_path) == ["x.bin"]


def test_weights_sha256_is_the_hash_of_a_file_saved_without_metadata(tmp_path):
    import hashlib
    from freenet.serialize import weights_sha256
    state = {"b": fn.ones(3), "a": fn.zeros(2, 2, dtype=fn.float64)}
    path = tmp_path / "w.safetensors"
    fn.save(state, path)
    assert weights_sha256(state) == hashlib.sha256(path.read_bytes()).hexdigest()
    state["a"]._data[0, 0] = 1e-30
    assert weights_sha256(state) != hashlib.sha256(path.read_bytes()).hexdigest()
