"""The MNIST recipe and `freenet train mnist`, end to end on the bundled sample."""

import json

import pytest

import freenet as fn
from freenet import provenance  # noqa: F401  (fn.provenance)
from freenet.cli import main
from freenet.recipes import mnist
from freenet.serialize import weights_sha256


@pytest.fixture
def restore_threads():
    before = fn.get_num_threads()
    yield
    fn.set_num_threads(before)


def test_training_is_bit_identical_across_runs_and_thread_counts(restore_threads):
    recipe = mnist.Recipe(epochs=1, max_steps=6, seed=7)
    hashes = []
    for threads in (1, 2, 2):
        fn.set_num_threads(threads)
        hashes.append(mnist.train(recipe, progress=False, log=lambda *a: None).sha256)
    assert hashes[0] == hashes[1] == hashes[2]
    other = mnist.train(mnist.Recipe(epochs=1, max_steps=6, seed=8), progress=False, log=lambda *a: None)
    assert other.sha256 != hashes[0]


def test_cli_trains_writes_weights_and_a_json_summary(tmp_path, capsys):
    out, summary = tmp_path / "w.safetensors", tmp_path / "s.json"
    assert main(["train", "mnist", "--epochs", "1", "--quiet", "--out", str(out), "--json", str(summary)]) == 0
    data = json.loads(summary.read_text())
    assert {"accuracy", "epochs", "seconds", "sha256"} <= data.keys()
    assert data["epochs"] == 1 and data["accuracy"] > 0.8
    weights = fn.load(out)
    assert data["sha256"] == weights_sha256(weights)
    model = mnist.build_model()
    model.load_state_dict(weights)
    assert mnist.evaluate(model, fn.data.MNIST(train=False)) == pytest.approx(data["accuracy"])
    assert fn.provenance.read_record(out)["recipe"]["params"]["epochs"] == 1
    assert "test accuracy" in capsys.readouterr().out


def test_default_recipe_reaches_97_percent_in_5_epochs():
    result = mnist.train(mnist.Recipe(), progress=False, log=lambda *a: None)
    assert result.accuracy >= 0.97, result.history


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "mnist", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: freenet" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "mnist", "--data", str(tmp_path), "--quiet", "--out", str(tmp_path / "w")]) == 2
    assert "lacks train-images-idx3-ubyte" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "mnist", "--epochs", "0"])
