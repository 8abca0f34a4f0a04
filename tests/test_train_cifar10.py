"""The CIFAR-10 recipe and `freenet train cifar10`, on a few hundred synthetic images in CIFAR-10's binary format."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import freenet as fn
from freenet import provenance
from freenet.checkpoint import Checkpointer
from freenet.cli import main
from freenet.data.cifar import TEST_FILES, TRAIN_FILES
from freenet.recipes import cifar10
from freenet.serialize import weights_sha256

QUIET = dict(progress=False, log=lambda *a: None)
TINY = dict(epochs=2, batch_size=32, blocks=1, width=4)  # 200 training images: 7 steps an epoch
TINY_ARGS = ["--epochs", "1", "--batch-size", "32", "--blocks", "1", "--width", "4", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """40 images in each of the six files (200 to train, 40 to test); each class tints its images."""
    root = tmp_path_factory.mktemp("cifar10")
    rng = np.random.default_rng(0)
    for name in TRAIN_FILES + TEST_FILES:
        labels = rng.integers(0, 10, 40, dtype=np.uint8)
        pixels = rng.integers(0, 128, (40, 3 * 32 * 32), dtype=np.uint8) + labels[:, None] * np.uint8(12)
        (root / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    return root


@pytest.fixture(scope="module")
def unbroken(data):
    return cifar10.train(cifar10.Recipe(**TINY, data=str(data)), **QUIET)


def test_the_same_seed_gives_the_same_weights_whatever_the_thread_count(data, unbroken):
    threads = fn.get_num_threads()
    fn.set_num_threads(1 if threads > 1 else 2)
    try:
        again = cifar10.train(cifar10.Recipe(**TINY, data=str(data)), **QUIET)
    finally:
        fn.set_num_threads(threads)
    assert again.sha256 == unbroken.sha256 and again.history == unbroken.history
    assert len(unbroken.history) == 2 and 0 <= unbroken.accuracy <= 1
    other = cifar10.train(cifar10.Recipe(**TINY, seed=1, data=str(data)), **QUIET)
    assert other.sha256 != unbroken.sha256


class Stop(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(data, unbroken, tmp_path):
    def die_at_the_end_of_epoch_1(message):
        if message.startswith("epoch 1/"):
            raise Stop  # after step 7, before its checkpoint: the newest is step 6, mid-epoch
    recipe = cifar10.Recipe(**TINY, data=str(data))
    with pytest.raises(Stop):
        cifar10.train(recipe, progress=False, log=die_at_the_end_of_epoch_1, checkpoint_every=3,
                      checkpoint_dir=tmp_path)
    notes = []
    resumed = cifar10.train(recipe, progress=False, log=notes.append, resume=tmp_path)
    assert any(n.startswith("resumed from") and "checkpoint-000000006" in n for n in notes), notes
    assert resumed.sha256 == unbroken.sha256 and resumed.history == unbroken.history


def test_cli_trains_and_the_file_says_how(data, tmp_path, capsys):
    out, summary = tmp_path / "w.safetensors", tmp_path / "s.json"
    assert main(["train", "cifar10", "--data", str(data), *TINY_ARGS, "--out", str(out), "--json", str(summary)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    result = json.loads(summary.read_text())
    assert result["sha256"] == weights_sha256(fn.load(out)) and result["epochs"] == 1
    assert main(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    record = report["record"]
    assert record["recipe"]["name"] == "cifar10" and record["recipe"]["params"]["width"] == 4
    assert record["architecture"]["description"].startswith("ResNet-8")
    assert record["data"]["files"] == {name: hashlib.sha256((data / name).read_bytes()).hexdigest()
                                      for name in TRAIN_FILES + TEST_FILES}
    assert "cs.toronto.edu/~kriz/cifar.html" in record["data"]["source"]
    assert record["metrics"]["test_accuracy"] == result["accuracy"] and record["license"] == cifar10.LICENSE
    assert report["checks"]["weights_match_record"] and report["checks"]["source_archive_files"] > 0
    assert report["verdict"] == "ToxicCandy" and "NOASSERTION" in report["reason"]  # CIFAR-10 states no licence
    assert main(["reproduce", str(out), "--quiet"]) == 0
    assert "bit-identical: reproduced" in capsys.readouterr().out


def test_cli_checkpoint_and_resume(data, tmp_path, capsys):
    folder, out, again = tmp_path / "ckpt", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    args = ["train", "cifar10", "--data", str(data), *TINY_ARGS]
    assert main(args + ["--checkpoint-every", "4", "--checkpoint-dir", str(folder), "--out", str(out)]) == 0
    paths = Checkpointer(folder).paths()
    assert [os.path.basename(p) for p in paths] == ["checkpoint-000000004.safetensors",
                                                     "checkpoint-000000007.safetensors"]
    os.remove(paths[-1])  # as if the run had died after step 4
    assert main(args + ["--resume", str(folder), "--out", str(again)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert weights_sha256(fn.load(out)) == weights_sha256(fn.load(again))


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "cifar10", "--help"])
    assert info.value.code == 0
    assert "usage: freenet train cifar10" in capsys.readouterr().out


def test_without_data_it_says_where_to_get_cifar10(tmp_path, capsys):
    assert main(["train", "cifar10", "--quiet", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("freenet: error: ") and "https://www.cs.toronto.edu/~kriz/cifar.html" in err
    assert "binary version" in err and not (tmp_path / "w").exists()


def _broken(name, damage):
    def apply(folder):
        path = folder / name
        path.write_bytes(damage(path.read_bytes()))
    return apply


@pytest.mark.parametrize("damage, message, status", [  # status 1: a bad file; 2: a bad argument (the folder)
    (_broken("data_batch_3.bin", lambda b: b[:-100]), "data_batch_3.bin: size 122820 bytes is not a positive multiple",
     1),
    (_broken("test_batch.bin", lambda b: b""), "test_batch.bin: size 0 bytes", 1),
    (_broken("data_batch_1.bin", lambda b: bytes([10]) + b[1:]), "record 0 has label 10", 1),
    (lambda folder: (folder / "data_batch_5.bin").unlink(), "lacks data_batch_5.bin", 2),
])
def test_malformed_files_are_a_clear_error(data, tmp_path, capsys, damage, message, status):
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    damage(folder)
    assert main(["train", "cifar10", "--data", str(folder), *TINY_ARGS, "--out", str(tmp_path / "w")]) == status
    err = capsys.readouterr().err
    assert err.startswith("freenet: error: ") and message in err, err


def test_a_hostile_record_is_a_clear_error(data, tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    result = cifar10.train(cifar10.Recipe(**TINY, max_steps=1, data=str(data)), **QUIET)
    state = result.model.state_dict()
    record = provenance.make_record(recipe="cifar10", params={**cifar10.Recipe().as_dict(), "epochs": "many"},
                                    architecture={}, data={}, metrics={}, license="MIT", state_dict=state)
    provenance.save_model(out, state, record)
    assert main(["reproduce", str(out), "--quiet"]) == 1
    assert "cifar10 recipe: epochs must be an integer of at least 1, not 'many'" in capsys.readouterr().err
