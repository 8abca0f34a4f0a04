"""PyTorch programs run unchanged under freenet: each file in ``pytorch_programs/`` is a plain PyTorch script
(``import torch``, ``import torch.nn as nn``, ``from torch.utils.data import DataLoader``, ...) that is loaded
twice, once with the real torch and once with the ``torch`` modules in ``sys.modules`` pointed at freenet's.

Without torch, the freenet run still trains end to end and is checked for what needs no reference: the loss
falls, shapes and ranges are right, and the same seed gives the same results. With torch, the freenet run
starts from the torch run's initial weights and the two are compared step by step.
"""

import importlib.util
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import freenet

PROGRAMS = Path(__file__).parent / "pytorch_programs"

FREENET_AS_TORCH = {
    "torch": freenet,
    "torch.nn": freenet.nn,
    "torch.nn.functional": freenet.nn.functional,
    "torch.nn.init": freenet.nn.init,
    "torch.optim": freenet.optim,
    "torch.optim.lr_scheduler": freenet.optim.lr_scheduler,
    "torch.utils": freenet.utils,
    "torch.utils.data": freenet.utils.data,
}
_ABSENT = object()


@contextmanager
def torch_is(library):
    """``import torch`` (and its submodules) gives ``library`` ("torch" or "freenet") inside the block; every
    ``sys.modules`` entry touched is put back afterwards, also when the block raises."""
    if library == "torch":
        for name in FREENET_AS_TORCH:  # imported before the snapshot, so that restoring keeps them
            importlib.import_module(name)
    saved = {name: sys.modules.get(name, _ABSENT) for name in FREENET_AS_TORCH}
    try:
        if library == "freenet":
            sys.modules.update(FREENET_AS_TORCH)
        else:
            assert library == "torch" and not any(m is freenet for m in saved.values())
        yield
    finally:
        for name, module in saved.items():
            if module is _ABSENT:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load(program, library, directory=PROGRAMS):
    """A fresh module object for ``pytorch_programs/<program>.py``, its imports resolved to ``library``. The
    module is not registered in ``sys.modules``: each call executes the file again."""
    spec = importlib.util.spec_from_file_location(f"pytorch_program_{program}_under_{library}",
                                                  Path(directory) / f"{program}.py")
    module = importlib.util.module_from_spec(spec)
    with torch_is(library):
        spec.loader.exec_module(module)
    return module


def execute(program, library, seed=0, steps=3, **options):
    return load(program, library).main(seed, steps, **options)


@lru_cache(maxsize=None)
def freenet_run(program, steps, **options):
    """One freenet run from freenet's own random initialisation (shared by the tests that only read it)."""
    return execute(program, "freenet", steps=steps, **options)


@lru_cache(maxsize=None)
def both_runs(program, steps, **options):
    """The torch run, then the freenet run from the torch run's initial weights."""
    pytest.importorskip("torch")
    theirs = execute(program, "torch", steps=steps, **options)
    return theirs, execute(program, "freenet", steps=steps, initial=theirs["initial"], **options)


def assert_identical(a, b, where="result"):
    """Equal to the bit: the same keys, lists, numbers, strings and arrays (dtype and shape included)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def close(ours, theirs, rtol, atol=0.0, what=""):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=rtol, atol=atol, err_msg=what)


def falls(losses, window):
    """The mean of the last ``window`` losses is below the mean of the first ``window``."""
    return np.mean(losses[-window:]) < np.mean(losses[:window])


# -- the harness ----------------------------------------------------------------------------------------
def test_a_program_under_freenet_imports_only_freenet():
    program = load("mnist_cnn", "freenet")
    assert program.torch is freenet and program.nn is freenet.nn and program.F is freenet.nn.functional
    assert program.optim is freenet.optim and program.StepLR is freenet.optim.lr_scheduler.StepLR
    assert program.DataLoader is freenet.data.DataLoader and program.TensorDataset is freenet.data.TensorDataset
    assert all(sys.modules.get(name) is not module for name, module in FREENET_AS_TORCH.items())


def test_sys_modules_is_restored_when_a_program_fails_to_import(tmp_path):
    (tmp_path / "broken.py").write_text("import torch\nimport torch.nn as nn\nraise RuntimeError('broken')\n")
    before = {name: sys.modules.get(name, _ABSENT) for name in FREENET_AS_TORCH}
    with pytest.raises(RuntimeError, match="broken"):
        load("broken", "freenet", directory=tmp_path)
    assert {name: sys.modules.get(name, _ABSENT) for name in FREENET_AS_TORCH} == before


STEPS = {"mnist_cnn": 2, "makemore_mlp": 30, "resnet": 16, "tiny_gpt": 20}  # epochs for mnist_cnn, else steps


@pytest.mark.parametrize("program", list(STEPS))
def test_the_same_seed_gives_the_same_results_under_freenet(program):
    assert_identical(execute(program, "freenet", steps=STEPS[program]), freenet_run(program, STEPS[program]))


# -- (a) an MNIST-style CNN: Adadelta, StepLR, dropout, DataLoader, save and load ---------------------------
def check_mnist_cnn(r, epochs):
    assert len(r["losses"]) == 4 * epochs and all(np.isfinite(r["losses"]))
    assert falls(r["losses"], 4)
    np.testing.assert_allclose(r["lrs"], [0.7**e for e in range(epochs)], rtol=1e-12)
    assert 0 <= r["accuracy"] <= 1 and r["accuracy"] == r["accuracy_by_max"]
    assert r["reloaded_test"] == (r["test_loss"], r["accuracy"], r["accuracy"]) and r["same_after_reload"]
    assert r["conv1.weight"].shape == (8, 1, 3, 3) and r["conv1.weight"].dtype == np.float32
    assert r["fc2.bias"].shape == (10,) and r["parameter_count"] == 149418
    assert not np.array_equal(r["conv1.weight"], r["initial"]["conv1.weight"])


def test_mnist_cnn_trains_under_freenet():
    check_mnist_cnn(freenet_run("mnist_cnn", STEPS["mnist_cnn"]), STEPS["mnist_cnn"])


def test_mnist_cnn_dropout_acts_in_training_only():
    with_dropout = freenet_run("mnist_cnn", STEPS["mnist_cnn"])
    without = freenet_run("mnist_cnn", STEPS["mnist_cnn"], dropout=False)
    check_mnist_cnn(without, STEPS["mnist_cnn"])
    assert_identical(with_dropout["initial"], without["initial"])
    assert with_dropout["losses"][0] != without["losses"][0]  # the same weights, but some activations dropped


def test_mnist_cnn_without_dropout_matches_pytorch():
    theirs, ours = both_runs("mnist_cnn", 3, dropout=False)
    check_mnist_cnn(ours, 3)
    close(ours["losses"], theirs["losses"], 1e-5, what="losses")
    assert ours["lrs"] == theirs["lrs"]
    close(ours["test_loss"], theirs["test_loss"], 1e-5, what="test loss")
    assert ours["accuracy"] == theirs["accuracy"] and ours["accuracy_by_max"] == theirs["accuracy_by_max"]
    close(ours["conv1.weight"], theirs["conv1.weight"], 1e-5, 1e-6, "conv1.weight")
    close(ours["fc2.bias"], theirs["fc2.bias"], 1e-5, 1e-6, "fc2.bias")
    assert ours["parameter_count"] == theirs["parameter_count"]


def test_mnist_cnn_with_dropout_trains_as_pytorch_does():
    """The masks come from each library's own generator, so the numbers differ from the first step: this
    compares what does not depend on them (the schedule, shapes) and that both curves fall alike."""
    theirs, ours = both_runs("mnist_cnn", STEPS["mnist_cnn"])
    check_mnist_cnn(theirs, STEPS["mnist_cnn"])
    check_mnist_cnn(ours, STEPS["mnist_cnn"])
    assert ours["lrs"] == theirs["lrs"]
    close(np.mean(ours["losses"][-4:]), np.mean(theirs["losses"][-4:]), 0.25, what="last epoch's mean loss (loose)")


# -- (b) a makemore-style character MLP: hand-built parameters, p.data updates, bigram counts ----------------
def check_makemore(r, steps):
    words = load("makemore_mlp", "freenet").WORDS
    counts = np.array(r["bigram_counts"])
    assert counts.shape == (27, 27) and counts.sum() == r["examples"] == sum(len(w) + 1 for w in words)
    assert counts[0, 0] == 0 and counts[0].sum() == counts[:, 0].sum() == len(words)  # every word starts, ends
    probs = r["bigram_probs"]
    assert probs.dtype == np.float32 and (probs > 0).all()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    assert 0 < r["bigram_nll"] < np.log(27)
    assert len(r["losses"]) == steps and all(np.diff(r["losses"]) < 0)  # full-batch steps: every one lowers it
    assert r["losses"][0] == pytest.approx(np.log(27), rel=0.1)
    for name in ("C", "W2", "b2"):  # p.data += ... changed the parameters themselves
        assert r[name].shape == r["initial"][name].shape and not np.array_equal(r[name], r["initial"][name])
    for sample in r["samples"] + r["bigram_samples"]:
        assert len(sample) <= 20 and set(sample) <= set("abcdefghijklmnopqrstuvwxyz")


def test_makemore_mlp_trains_under_freenet():
    check_makemore(freenet_run("makemore_mlp", STEPS["makemore_mlp"]), STEPS["makemore_mlp"])


def test_makemore_mlp_matches_pytorch():
    """All but the samples: those are drawn from each library's own generator stream."""
    theirs, ours = both_runs("makemore_mlp", STEPS["makemore_mlp"])
    check_makemore(ours, STEPS["makemore_mlp"])
    assert ours["bigram_counts"] == theirs["bigram_counts"] and ours["examples"] == theirs["examples"]
    close(ours["bigram_probs"], theirs["bigram_probs"], 1e-6, what="bigram probabilities")
    close(ours["bigram_nll"], theirs["bigram_nll"], 1e-6, what="bigram negative log-likelihood")
    close(ours["losses"], theirs["losses"], 1e-5, what="losses")
    for name in ("C", "W2", "b2"):
        close(ours[name], theirs[name], 1e-5, 1e-6, name)


# -- (c) a ResNet-style net: basic blocks, in-place ReLU and +=, batch norm, Kaiming init, SGD -----------------
def check_resnet(r, steps):
    assert len(r["losses"]) == steps and falls(r["losses"], 4)
    assert r["test_logits"].shape == (16, 4) and 0 <= r["accuracy"] <= 1
    assert r["num_batches_tracked"] == steps and (r["bn1.running_var"] > 0).all()
    start = r["initial"]
    for name, fan_out in [("conv1.weight", 8 * 9), ("layer1.0.conv1.weight", 8 * 9), ("layer2.0.conv2.weight", 16 * 9),
                          ("layer2.0.downsample.0.weight", 16)]:
        assert start[name].std() == pytest.approx(np.sqrt(2 / fan_out), rel=0.25), name  # kaiming, fan_out
    assert all((start[f"{bn}.weight"] == 1).all() and (start[f"{bn}.bias"] == 0).all()
               for bn in ("bn1", "layer1.0.bn1", "layer2.0.bn2", "layer2.0.downsample.1"))
    assert start["bn1.running_mean"].tolist() == [0] * 8 and start["bn1.num_batches_tracked"] == 0
    assert r["layer2.0.downsample.0.weight"].shape == (16, 8, 1, 1) and r["fc.weight"].shape == (4, 16)


def test_resnet_trains_under_freenet():
    check_resnet(freenet_run("resnet", STEPS["resnet"]), STEPS["resnet"])


def test_resnet_matches_pytorch():
    theirs, ours = both_runs("resnet", STEPS["resnet"])
    check_resnet(ours, STEPS["resnet"])
    close(ours["losses"], theirs["losses"], 1e-5, what="losses")
    close(ours["test_logits"], theirs["test_logits"], 1e-5, 1e-5, "eval-mode logits")
    close(ours["test_loss"], theirs["test_loss"], 1e-5, what="test loss")
    assert ours["accuracy"] == theirs["accuracy"] and ours["num_batches_tracked"] == theirs["num_batches_tracked"]
    for name in ("fc.weight", "layer2.0.downsample.0.weight", "bn1.running_mean", "bn1.running_var"):
        close(ours[name], theirs[name], 1e-5, 1e-6, name)


# -- (d) a tiny GPT: embeddings, causal masked attention, LayerNorm, AdamW, @torch.no_grad(), sampling --------
def check_tiny_gpt(r, steps):
    program = load("tiny_gpt", "freenet")
    assert r["parameter_count"] == 15961  # as PyTorch counts this model's parameters
    assert len(r["losses"]) == steps and r["losses"][-1] < r["losses"][0]
    assert r["eval_before"]["train"] == pytest.approx(np.log(program.vocab_size), abs=0.5)
    assert r["eval_after"]["train"] < r["eval_before"]["train"] - 0.3
    assert len(r["sample"]) == 21 and r["sample"][0] == program.itos[0] and set(r["sample"]) <= set(program.chars)
    assert r["initial"]["blocks.0.sa.heads.0.tril"].tolist() == np.tril(np.ones((16, 16))).tolist()
    assert r["lm_head.weight"].shape == (program.vocab_size, 24) and r["ln_f.bias"].shape == (24,)


def test_tiny_gpt_trains_under_freenet():
    check_tiny_gpt(freenet_run("tiny_gpt", STEPS["tiny_gpt"]), STEPS["tiny_gpt"])


def test_tiny_gpt_matches_pytorch():
    """All but the sample, drawn by torch.multinomial from each library's own generator."""
    theirs, ours = both_runs("tiny_gpt", STEPS["tiny_gpt"])
    check_tiny_gpt(ours, STEPS["tiny_gpt"])
    close(ours["losses"], theirs["losses"], 1e-5, what="losses")
    for when in ("eval_before", "eval_after"):
        assert list(ours[when]) == ["train", "val"]
        close(list(ours[when].values()), list(theirs[when].values()), 1e-5, what=when)
    for name in ("lm_head.weight", "ln_f.bias"):
        close(ours[name], theirs[name], 1e-5, 1e-6, name)


# -- idioms the programs above do not use, checked under both libraries -----------------------------------
def _state_dict_as_numpy(torch):
    model = torch.nn.Linear(3, 2)
    arrays = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}
    assert list(arrays) == ["weight", "bias"] and arrays["weight"].shape == (2, 3)


def _tensors_compared_with_equal(torch):
    x = torch.arange(6).view(2, 3)
    assert torch.equal(x, x.clone()) and not torch.equal(x, x + 1)
    assert torch.allclose(x.float(), x.float() + 1e-9) and x.new_zeros(2).dtype == x.dtype


def _init_with_keywords(torch):
    w = torch.empty(200, 10)
    with torch.no_grad():
        w.normal_(mean=0.0, std=0.02)
    assert abs(float(w.std()) - 0.02) < 0.004


IDIOMS = {
    "state_dict_values_are_tensors": _state_dict_as_numpy,
    "torch_equal": _tensors_compared_with_equal,
    "init_with_keywords": _init_with_keywords,
}


@pytest.mark.parametrize("idiom", list(IDIOMS))
def test_idioms_under_pytorch(idiom):
    IDIOMS[idiom](pytest.importorskip("torch"))


@pytest.mark.parametrize("idiom", list(IDIOMS))
def test_idioms_under_freenet(idiom):
    IDIOMS[idiom](freenet)
