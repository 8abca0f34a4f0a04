"""Model files that carry their corresponding source: the record, inspect, reproduce, hostile files."""

import base64
import hashlib
import io
import json
import os
import struct
import tarfile

import numpy as np
import pytest

import freenet as fn
from freenet import provenance
from freenet.cli import main
from freenet.recipes import mnist

QUIET = dict(progress=False, log=lambda *a: None)


def _model_file(path, recipe, license="CC-BY-SA-3.0", embed=True):
    result = mnist.train(recipe, **QUIET)
    state = result.model.state_dict()
    record = provenance.make_record(recipe="mnist", params=recipe.as_dict(), architecture={"recipe": "mnist"},
                                    data=mnist.data_identity(recipe), metrics={"test_accuracy": result.accuracy},
                                    license=license, state_dict=state)
    provenance.save_model(path, state, record, provenance.source_archive() if embed else None)
    return result


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    _model_file(path, mnist.Recipe(epochs=1, max_steps=4, seed=5))
    return path


def _rewrite(src, dst, edit_metadata=None, edit_tensors=None):
    """A copy of a model file with its metadata or tensors changed (written without freenet's checks)."""
    import safetensors.numpy
    metadata = fn.load_metadata(src)
    tensors = {k: v.numpy() for k, v in fn.load(src).items()}
    if edit_metadata:
        edit_metadata(metadata)
    if edit_tensors:
        edit_tensors(tensors)
    dst.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return dst


def test_record_has_everything_the_issue_asks_for(model_file):
    record = provenance.read_record(model_file)
    assert record["freenet_version"] == fn.__version__
    assert record["recipe"]["name"] == "mnist" and record["recipe"]["params"]["max_steps"] == 4
    assert len(record["code"]["freenet_source_sha256"]) == 64
    assert record["data"]["license"] == "CC-BY-SA-3.0" and len(record["data"]["files"]) == 2
    env = record["environment"]
    assert {"python", "numpy", "numba", "blas", "cpu_isa", "freenet_threads"} <= env.keys()
    assert record["license"] == "CC-BY-SA-3.0" and "test_accuracy" in record["metrics"]
    assert record["weights_sha256"] == fn.serialize.weights_sha256(fn.load(model_file))


def test_the_embedded_program_is_freenets_source(model_file, tmp_path):
    archive = provenance.read_archive(model_file, provenance.read_record(model_file))
    count = provenance.extract_archive(archive, tmp_path / "src")
    assert count > 20
    with open(fn.factory.__file__, "rb") as f:
        factory_source = f.read()
    assert (tmp_path / "src" / "freenet" / "factory.py").read_bytes() == factory_source
    assert (tmp_path / "src" / "freenet" / "kernels" / "conv.py").is_file()


def test_inspect_classifies_free_toxic_and_nonfree(model_file, tmp_path, capsys):
    assert main(["inspect", str(model_file)]) == 0
    assert "verdict: Free Model" in capsys.readouterr().out
    assert main(["inspect", str(model_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "Free Model" and report["checks"]["weights_match_record"]

    toxic = _rewrite(model_file, tmp_path / "toxic.safetensors", lambda m: m.pop(provenance.SOURCE_KEY))
    assert main(["inspect", str(toxic), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "ToxicCandy" and "training program is not included" in report["reason"]

    def non_free(m):
        record = json.loads(m[provenance.RECORD_KEY])
        record["license"] = "CC-BY-NC-4.0"
        m[provenance.RECORD_KEY] = json.dumps(record)
    nonfree = _rewrite(model_file, tmp_path / "nonfree.safetensors", non_free)
    assert main(["inspect", str(nonfree), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "Non-free"


def test_inspect_extracts_the_source_on_request(model_file, tmp_path, capsys):
    assert main(["inspect", str(model_file), "--extract-source", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "freenet" / "tensor.py").is_file()


def test_reproduce_retrains_bit_for_bit(model_file, capsys):
    assert main(["reproduce", str(model_file), "--quiet", "--threads", "1"]) == 0
    assert "bit-identical: reproduced" in capsys.readouterr().out


def test_reproduce_refuses_other_data_and_changed_weights(model_file, tmp_path, capsys):
    def other_data(m):
        record = json.loads(m[provenance.RECORD_KEY])
        record["data"]["files"]["images-idx3-ubyte.gz"] = "0" * 64
        m[provenance.RECORD_KEY] = json.dumps(record)
    assert main(["reproduce", str(_rewrite(model_file, tmp_path / "d.safetensors", other_data))]) == 2
    assert "not the data the model was trained on" in capsys.readouterr().err

    def nudge(tensors):
        tensors["0.bias"][0] += 1e-3
    changed = _rewrite(model_file, tmp_path / "w.safetensors", edit_tensors=nudge)
    assert main(["reproduce", str(changed)]) == 2
    assert "are not the ones its record describes" in capsys.readouterr().err
    assert main(["inspect", str(changed)]) == 1
    assert "DOES NOT match the record" in capsys.readouterr().out


def _tar(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"x\n"))
    return buffer.getvalue()


def _with_archive(archive, fix_hash=True):
    def edit(m):
        m[provenance.SOURCE_KEY] = base64.b64encode(archive).decode()
        if fix_hash:
            record = json.loads(m[provenance.RECORD_KEY])
            record["source_archive_sha256"] = hashlib.sha256(archive).hexdigest()
            m[provenance.RECORD_KEY] = json.dumps(record)
    return edit


HOSTILE = {
    "record-not-json": (lambda m: m.update({provenance.RECORD_KEY: "{not json"}), None, "not valid JSON"),
    "record-not-object": (lambda m: m.update({provenance.RECORD_KEY: "[1, 2]"}), None, "not an object"),
    "no-record": (lambda m: m.pop(provenance.RECORD_KEY), None, "no freenet provenance record"),
    "archive-not-base64": (lambda m: m.update({provenance.SOURCE_KEY: "%%%"}), None, "not valid base64"),
    "archive-hash": (_with_archive(_tar([("a.py", "file")]), fix_hash=False), None, "does not match its SHA-256"),
    "archive-dotdot": (_with_archive(_tar([("../evil.py", "file")])), None, "would escape the target folder"),
    "archive-absolute": (_with_archive(_tar([("/tmp/evil.py", "file")])), None, "would escape the target folder"),
    "archive-symlink": (_with_archive(_tar([("link", "symlink")])), None, "not a regular file"),
    "archive-garbage": (_with_archive(b"\xfd7zXZ\x00garbage"), None, "cannot be read"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_metadata_is_a_clear_error_and_writes_nothing(name, model_file, tmp_path, capsys):
    edit, _, message = HOSTILE[name]
    bad = _rewrite(model_file, tmp_path / "bad.safetensors", edit)
    target = tmp_path / "extract"
    assert main(["inspect", str(bad), "--extract-source", str(target)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "evil.py").exists() and not os.path.exists("/tmp/evil.py")
    assert not target.exists() or not list(target.iterdir())  # checked before anything is written
    assert main(["reproduce", str(bad)]) == 2


def _raw_file(tmp_path, header, body=b""):
    path = tmp_path / "raw.safetensors"
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data + body)
    return path


@pytest.mark.parametrize("case", ["truncated", "oversized-header", "wrong-dtype", "corrupt-bytes", "empty"])
def test_broken_files_are_clear_errors(case, model_file, tmp_path, capsys):
    blob = model_file.read_bytes()
    if case == "truncated":
        path = tmp_path / "t.safetensors"
        path.write_bytes(blob[: len(blob) // 2])
    elif case == "oversized-header":
        path = tmp_path / "o.safetensors"
        path.write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    elif case == "wrong-dtype":
        path = _raw_file(tmp_path, {"w": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}, b"\0\0")
    elif case == "corrupt-bytes":
        path = tmp_path / "c.safetensors"
        path.write_bytes(b"\xff" * 64)
    else:
        path = tmp_path / "e.safetensors"
        path.write_bytes(b"")
    for command in (["inspect", str(path)], ["reproduce", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("freenet: error:") and "Traceback" not in err


def test_unknown_recipes_and_parameters_are_refused(model_file, tmp_path, capsys):
    def recipe(name=None, params=None):
        def edit(m):
            record = json.loads(m[provenance.RECORD_KEY])
            if name:
                record["recipe"]["name"] = name
            if params:
                record["recipe"]["params"].update(params)
            m[provenance.RECORD_KEY] = json.dumps(record)
        return edit
    cases = [(recipe(name="os.system"), "unknown recipe 'os.system'"),
             (recipe(params={"evil": 1}), "unknown recipe parameters"),
             (recipe(params={"epochs": [1]}), "is not a number or a string")]
    for edit, message in cases:
        assert main(["reproduce", str(_rewrite(model_file, tmp_path / "r.safetensors", edit))]) == 2
        assert message in capsys.readouterr().err


def test_go_training_writes_provenance_and_reproduces(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["go", "train", "--dir", str(run), "--generations", "1", "--size", "5", "--blocks", "1", "--filters", "4",
            "--games", "2", "--steps", "2", "--batch-size", "8", "--playouts", "4", "--parallel", "2", "--quiet"]
    assert main(args) == 0
    net = run / "net.safetensors"
    assert main(["inspect", str(net), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.split("latest net:")[-1].split("\n", 1)[1])
    assert report["verdict"] == "Free Model" and report["record"]["recipe"]["name"] == "go"
    assert report["checks"]["weights_match_record"]
    from freenet.go.net import load_net
    assert load_net(str(net)).config.size == 5  # still a Go net file
    assert main(["reproduce", str(net), "--quiet"]) == 0
    assert "bit-identical: reproduced" in capsys.readouterr().out


def test_go_supervised_training_records_its_sgf_files(tmp_path, capsys):
    from freenet.go.sgf import write_sgf
    games = tmp_path / "sgf"
    games.mkdir()
    write_sgf(str(games / "a.sgf"), 5, 7.5, [(1, 12), (2, 6), (1, 8)], "B+R", "x", "y")
    run = tmp_path / "sup"
    assert main(["go", "train", "--dir", str(run), "--sgf", str(games), "--generations", "1", "--size", "5",
                 "--blocks", "1", "--filters", "4", "--steps", "2", "--batch-size", "4", "--quiet"]) == 0
    record = provenance.read_record(run / "net.safetensors")
    assert list(record["data"]["files"]) == ["a.sgf"]
    verdict, reason = provenance.classify(record, True)
    assert verdict == "ToxicCandy" and "data's licence None" in reason  # nobody stated the games' licence
    (games / "a.sgf").write_text((games / "a.sgf").read_text().replace("B+R", "W+R"))
    capsys.readouterr()
    assert main(["reproduce", str(run / "net.safetensors"), "--quiet"]) == 2
    assert "a.sgf differ" in capsys.readouterr().err
