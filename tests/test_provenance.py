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
from freenet.kernels import settings
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
        if provenance.RECORD_KEY in metadata:
            provenance.seal_record(metadata)  # a deliberate change, not a tampered record
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
    assert {"python", "numpy", "numba", "blas", "cpu_isa", "cpu", "freenet_threads"} <= env.keys()
    assert env["cpu"] == provenance.cpu_identity() and record["reproducibility"]["class"] in ("x86-64-fma", "same-cpu")
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
    assert main(["inspect", str(bad), "--extract-source", str(target)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "evil.py").exists() and not os.path.exists("/tmp/evil.py")
    assert not target.exists() or not list(target.iterdir())  # checked before anything is written
    assert main(["reproduce", str(bad)]) == 1


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
        assert main(command) == 1
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
        assert main(["reproduce", str(_rewrite(model_file, tmp_path / "r.safetensors", edit))]) == 1
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


# -- reproducibility classes ------------------------------------------------------------------------------

EPYC = {"name": "AMD EPYC", "vendor": "AuthenticAMD", "family": 25, "model": 1}
XEON = {"name": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "vendor": "GenuineIntel", "family": 6, "model": 106}
SOURCE = "a" * 64


@pytest.fixture
def matmul_path():
    """``settings.set_matmul_path``, with the path in force restored after the test."""
    previous = settings.matmul_path()
    yield settings.set_matmul_path
    settings.set_matmul_path(previous)


def _machine(**changes):
    return {"arch": "x86_64", "x86_64": True, "fma": True, "cpu": EPYC, "numpy": "2.0.0", "numba": "0.60.0",
            "freenet_source_sha256": SOURCE, **changes}


def _record_of(reproducibility, **environment):
    record = {"code": {"freenet_source_sha256": SOURCE},
              "environment": {"numpy": "2.0.0", "numba": "0.60.0", "cpu_isa": "x86-64-v3", **environment}}
    if reproducibility is not None:
        record["reproducibility"] = reproducibility
    return record


def test_a_fresh_record_names_the_class_of_its_matmul_path(matmul_path):
    state = {"w": fn.tensor(np.ones((2, 2), np.float32))}
    here = provenance.this_machine()
    for path in ("freenet", "blas"):
        matmul_path(path)
        record = provenance.make_record(recipe="mnist", params={}, architecture={}, data={}, metrics={},
                                        license="MIT", state_dict=state)
        if path == "blas":
            assert record["reproducibility"] == {"class": "same-cpu", "matmul": "blas", "cpu": here["cpu"]}
        elif here["fma"]:  # the tested machines: x86-64 with AVX2 and FMA
            assert record["reproducibility"] == {"class": "x86-64-fma", "matmul": "freenet"}
        else:
            assert record["reproducibility"]["class"] == "same-cpu" and "reason" in record["reproducibility"]
        assert json.loads(json.dumps(record)) == record
    assert here["cpu"]["name"] == record["environment"]["cpu"]["name"]


def test_untested_hosts_give_same_cpu_records():
    arm = provenance.reproducibility("freenet", _machine(arch="aarch64", x86_64=False, fma=False, cpu={"name": "N1"}))
    assert arm == {"class": "same-cpu", "matmul": "freenet", "cpu": {"name": "N1"},
                   "reason": "trained on aarch64, not x86-64: freenet is bitwise-tested on x86-64 with FMA only"}
    old_x86 = provenance.reproducibility("freenet", _machine(fma=False))
    assert old_x86["class"] == "same-cpu" and "x86-64 without FMA" in old_x86["reason"]
    assert provenance.reproducibility("freenet", _machine()) == {"class": "x86-64-fma", "matmul": "freenet"}


def test_training_commands_warn_only_on_the_blas_path(matmul_path):
    matmul_path("blas")
    notice = provenance.training_notice()
    assert "reproducible on this CPU model only" in notice and provenance.cpu_identity()["name"] in notice
    matmul_path("freenet")
    assert (provenance.training_notice() is None) == provenance.this_machine()["fma"]


BLAS_ON_EPYC = {"class": "same-cpu", "matmul": "blas", "cpu": EPYC}
FMA = {"class": "x86-64-fma", "matmul": "freenet"}
MISMATCHES = {  # record, machine here -> expected here, words the explanation must have
    "blas-other-cpu": (_record_of(BLAS_ON_EPYC), _machine(cpu=XEON), "no",
                       ["trained on the OpenBLAS fast path", "only reproducible on AMD EPYC (AuthenticAMD family 25 "
                        "model 1)", "this CPU is Intel(R) Xeon(R)", "not evidence of tampering"]),
    "blas-unknown-cpu": (_record_of(BLAS_ON_EPYC), _machine(cpu={"name": None, "vendor": None, "family": None,
                                                                   "model": None}), "no",
                         ["trained on the OpenBLAS fast path", "this CPU's model is unknown",
                          "not evidence of tampering"]),
    "blas-cpu-not-recorded": (_record_of({"class": "same-cpu", "matmul": "blas"}), _machine(), "no",
                              ["only reproducible on its training CPU model, which the record does not name",
                               "this CPU cannot be compared with it"]),
    "arm-record-on-x86": (_record_of(provenance.reproducibility("freenet", _machine(
                              arch="aarch64", x86_64=False, fma=False, cpu={"name": "Neoverse-N1"}))), _machine(), "no",
                          ["trained on an untested machine (trained on aarch64, not x86-64",
                           "only reproducible on Neoverse-N1", "this CPU is AMD EPYC", "not evidence of tampering"]),
    "fma-on-arm": (_record_of(FMA), _machine(arch="aarch64", x86_64=False, fma=False), "no",
                   ["bitwise on x86-64 CPUs with FMA", "this machine is aarch64, not x86-64", "untested"]),
    "fma-without-fma": (_record_of(FMA), _machine(fma=False), "no", ["this machine is x86-64 without FMA"]),
    "other-code": (_record_of(FMA), _machine(freenet_source_sha256="b" * 64), "not guaranteed",
                   ["the freenet source here differs from the recorded one", "--extract-source"]),
    "other-numpy": (_record_of(FMA, numpy="1.26.4"), _machine(), "not guaranteed",
                    ["NumPy is 2.0.0 here and was 1.26.4 for the record", "same package versions"]),
    "before-classes": (_record_of(None), _machine(), "not guaranteed",
                       ["made before reproducibility classes", "OpenBLAS", "x86-64-v3"]),
    "blas-same-cpu": (_record_of(BLAS_ON_EPYC), _machine(cpu=dict(EPYC, name="AMD EPYC 7R13 Processor")), "yes",
                      ["should have matched", "freenet bug"]),
    "fma-here-too": (_record_of(FMA), _machine(cpu=XEON), "yes", ["should have matched", "freenet bug"]),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_explain_mismatch_says_why(case):
    record, here, expected, words = MISMATCHES[case]
    assert provenance.expected_here(record, here)[0] == expected
    text = provenance.explain_mismatch(record, here)
    for w in words:
        assert w in text, (w, text)
    assert ("not evidence of tampering" in text) == (expected == "no")


def test_same_cpu_model_compares_vendor_family_and_model():
    assert provenance.same_cpu_model(EPYC, dict(EPYC, name="AMD EPYC 9R14"))  # names vary between VMs
    assert provenance.same_cpu_model(EPYC, dict(EPYC, model=17)) is False
    assert provenance.same_cpu_model({"name": "N1"}, {"name": "N1"})
    assert not provenance.same_cpu_model({"name": "N1"}, {"name": "A72"})
    assert provenance.same_cpu_model({}, EPYC) is None and provenance.same_cpu_model("garbage", EPYC) is None


def _set_reproducibility(value):
    def edit(m):
        record = json.loads(m[provenance.RECORD_KEY])
        if value is _DROP:
            del record["reproducibility"]
        else:
            record["reproducibility"] = value
        m[provenance.RECORD_KEY] = json.dumps(record)
    return edit


_DROP = object()
BAD_REPRODUCIBILITY = {  # value -> what inspect shows and reproduce's error names
    "string": ("x86-64-fma", "malformed: a JSON string, not an object"),
    "list": (["x86-64-fma", "freenet"], "malformed: a JSON array, not an object"),
    "null": (None, "malformed: a JSON null, not an object"),
    "unknown-class": ({"class": "xyz", "matmul": "freenet"},
                      "unknown class 'xyz' (this freenet knows x86-64-fma, same-cpu)"),
    "no-class": ({"matmul": "freenet"}, "unknown class None (this freenet knows x86-64-fma, same-cpu)"),
    "unknown-path": ({"class": "x86-64-fma", "matmul": "cublas"},
                     "unknown matmul path 'cublas' (this freenet knows freenet, blas)"),
    "unhashable-path": ({"class": "same-cpu", "matmul": ["blas"]},
                        "unknown matmul path ['blas'] (this freenet knows freenet, blas)"),
    "contradiction": ({"class": "x86-64-fma", "matmul": "blas"},
                      "malformed: class 'x86-64-fma' with matmul path 'blas'"),
    "cpu-string": ({"class": "same-cpu", "matmul": "blas", "cpu": "EPYC"},
                   "malformed: its cpu is a JSON string, not an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPRODUCIBILITY))
def test_bad_reproducibility_is_shown_by_inspect_and_refused_by_reproduce(case, model_file, tmp_path, capsys):
    value, message = BAD_REPRODUCIBILITY[case]
    bad = _rewrite(model_file, tmp_path / "bad.safetensors", _set_reproducibility(value))
    assert main(["inspect", str(bad)]) == 0  # the weights still match; the line says what is wrong
    out = capsys.readouterr().out
    assert f"  reproducible {message}" in out and "verdict: Free Model" in out
    assert main(["inspect", str(bad), "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert checks["reproducibility_understood"] is False and checks["reproducible"].startswith(message)
    assert main(["reproduce", str(bad), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"freenet: error: {bad}: the record's reproducibility: {message}")
    assert "Traceback" not in captured.err and captured.out == ""  # refused before training


def test_inspect_shows_the_class(model_file, tmp_path, capsys, matmul_path):
    assert main(["inspect", str(model_file)]) == 0
    line = provenance.describe_reproducibility(provenance.read_record(model_file)["reproducibility"])
    assert f"  reproducible {line}\n" in capsys.readouterr().out
    record = {"class": "same-cpu", "matmul": "blas", "cpu": EPYC}
    blas = _rewrite(model_file, tmp_path / "b.safetensors", _set_reproducibility(record))
    assert main(["inspect", str(blas)]) == 0
    assert ("  reproducible same CPU model only: AMD EPYC (AuthenticAMD family 25 model 1) (OpenBLAS fast path)\n"
            in capsys.readouterr().out)
    fma = _rewrite(model_file, tmp_path / "f.safetensors", _set_reproducibility(FMA))
    assert main(["inspect", str(fma)]) == 0
    assert "  reproducible bitwise on every x86-64 CPU with FMA (freenet GEMM)\n" in capsys.readouterr().out
    old = _rewrite(model_file, tmp_path / "o.safetensors", _set_reproducibility(_DROP))
    assert main(["inspect", str(old)]) == 0
    assert "  reproducible unknown: made before reproducibility classes\n" in capsys.readouterr().out


def test_reproduce_trains_with_the_recorded_matmul_path(tmp_path, capsys, matmul_path, monkeypatch):
    """A model trained on the blas path reproduces with the freenet path in force (and the other way
    round), and the path in force is back afterwards."""
    paths_seen = []
    real_train = mnist.train

    def train(*args, **kwargs):
        paths_seen.append(settings.matmul_path())
        return real_train(*args, **kwargs)

    for recorded, in_force in (("blas", "freenet"), ("freenet", "blas")):
        matmul_path(recorded)
        path = tmp_path / f"{recorded}.safetensors"
        _model_file(path, mnist.Recipe(epochs=1, max_steps=2, seed=7), embed=False)
        assert provenance.read_record(path)["reproducibility"]["matmul"] == recorded
        matmul_path(in_force)
        monkeypatch.setattr(mnist, "train", train)
        status = main(["reproduce", str(path), "--quiet"])
        monkeypatch.setattr(mnist, "train", real_train)
        out = capsys.readouterr().out
        assert f"training with the {recorded} matmul path, as recorded" in out
        assert paths_seen.pop() == recorded
        assert settings.matmul_path() == in_force
        assert status == 0 and "bit-identical: reproduced" in out, out


def test_reproduce_of_a_record_without_a_class_uses_the_path_in_force(model_file, tmp_path, capsys):
    old = _rewrite(model_file, tmp_path / "o.safetensors", _set_reproducibility(_DROP))
    main(["reproduce", str(old), "--quiet"])
    out = capsys.readouterr().out
    assert "recorded class: unknown: made before reproducibility classes" in out
    assert f"training with the {settings.matmul_path()} matmul path\n" in out
    expected = out.split("bitwise match expected here: ")[1].split("\n")[0]
    assert expected.startswith("not guaranteed (") and "the record predates reproducibility classes" in expected


def test_inspect_reads_a_model_made_before_reproducibility_classes(capsys):
    shipped = os.path.join(os.path.dirname(__file__), "..", "docs", "go-match", "net-9x9-6x64-gnugo5.safetensors")
    assert "reproducibility" not in provenance.read_record(shipped)
    assert main(["inspect", shipped]) == 0
    assert "  reproducible unknown: made before reproducibility classes\n" in capsys.readouterr().out
