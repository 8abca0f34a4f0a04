"""Crash-safe checkpoints: a run killed with SIGKILL resumes to the same bits; bad checkpoints are skipped."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import freenet as fn
from freenet.checkpoint import Checkpointer
from freenet.cli import main
from freenet.kernels import settings
from freenet.recipes import mnist

QUIET = dict(progress=False, log=lambda *a: None)
RECIPE = mnist.Recipe(epochs=2, max_steps=100, seed=11)


@pytest.fixture(scope="module")
def unbroken():
    return mnist.train(RECIPE, **QUIET)


def test_sigkill_mid_run_then_resume_gives_the_same_weights(unbroken, tmp_path):
    folder = tmp_path / "ckpt"
    script = textwrap.dedent(f"""
        import sys
        from freenet.recipes import mnist
        mnist.train(mnist.{RECIPE!r}, progress=False, checkpoint_every=4, checkpoint_dir=sys.argv[1])
    """)
    process = subprocess.Popen([sys.executable, "-c", script, str(folder)])
    deadline = time.monotonic() + 300
    while not any(int(p.split("-")[-1].split(".")[0]) >= 8 for p in Checkpointer(folder).paths()):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    notes = []
    resumed = mnist.train(RECIPE, progress=False, log=notes.append, resume=folder, checkpoint_every=4,
                          checkpoint_dir=folder)
    assert any(n.startswith("resumed from") for n in notes)
    assert resumed.sha256 == unbroken.sha256
    assert resumed.history == unbroken.history


def test_a_corrupt_checkpoint_is_reported_and_the_previous_one_used(unbroken, tmp_path):
    folder = tmp_path / "ckpt"
    mnist.train(RECIPE, checkpoint_every=30, checkpoint_dir=folder, **QUIET)
    paths = Checkpointer(folder).paths()
    assert [os.path.basename(p) for p in paths] == ["checkpoint-000000090.safetensors",
                                                     "checkpoint-000000100.safetensors"]
    blob = bytearray(open(paths[-1], "rb").read())
    blob[-100] ^= 0xFF  # one flipped bit in the weights
    open(paths[-1], "wb").write(bytes(blob))
    notes = []
    resumed = mnist.train(RECIPE, progress=False, log=notes.append, resume=folder)
    assert any("checksum mismatch" in n for n in notes)
    assert any("checkpoint-000000090" in n for n in notes if n.startswith("resumed from"))
    assert resumed.sha256 == unbroken.sha256
    for path in paths:  # truncate both: nothing usable is an error, not a silent fresh start
        with open(path, "r+b") as f:
            f.truncate(200)
    with pytest.raises(fn.FreenetError, match="no usable checkpoint"):
        mnist.train(RECIPE, resume=folder, **QUIET)


def test_resume_refuses_an_empty_folder_and_another_recipe(tmp_path):
    with pytest.raises(fn.FreenetError, match="no checkpoint there"):
        mnist.train(RECIPE, resume=tmp_path, **QUIET)
    mnist.train(mnist.Recipe(epochs=1, max_steps=2, seed=1), checkpoint_every=2, checkpoint_dir=tmp_path, **QUIET)
    with pytest.raises(fn.FreenetError, match="made by another recipe"):
        mnist.train(mnist.Recipe(epochs=1, max_steps=2, seed=2), resume=tmp_path, **QUIET)


def test_resume_refuses_another_matmul_path(tmp_path):
    """A run's weights come from one matmul path: resuming with the other would mix them."""
    recipe = mnist.Recipe(epochs=1, max_steps=4, seed=1)
    mnist.train(recipe, checkpoint_every=2, checkpoint_dir=tmp_path, **QUIET)
    old = settings.set_matmul_path("blas")
    try:
        with pytest.raises(fn.FreenetError, match="matmul path, not blas; resume with FREENET_MATMUL=freenet"):
            mnist.train(recipe, resume=tmp_path, **QUIET)
    finally:
        settings.set_matmul_path(old)


def test_cli_checkpoint_and_resume(tmp_path, capsys):
    folder, out, again = tmp_path / "ckpt", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    args = ["train", "mnist", "--epochs", "1", "--quiet", "--checkpoint-every", "25", "--checkpoint-dir", str(folder)]
    assert main(args + ["--out", str(out)]) == 0
    os.remove(Checkpointer(folder).paths()[-1])  # as if the run had died after step 50
    assert main(["train", "mnist", "--epochs", "1", "--quiet", "--resume", str(folder), "--out", str(again)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert fn.serialize.weights_sha256(fn.load(out)) == fn.serialize.weights_sha256(fn.load(again))


def test_checkpoint_that_is_not_one(tmp_path):
    fn.save({"w": fn.ones(2)}, tmp_path / "checkpoint-000000001.safetensors")
    with pytest.raises(fn.FreenetError, match="not a freenet checkpoint"):
        Checkpointer(tmp_path).latest()
