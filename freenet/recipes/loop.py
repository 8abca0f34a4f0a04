"""The training loop the image recipes share (MNIST, CIFAR-10): SGD steps on seeded augmentations, a
per-step schedule, a progress bar, the test accuracy after each epoch, and checkpoints that a run
resumes from to the same bits as one never interrupted.

A recipe seeds freenet, builds its data and model, then (``sgd``) its loader, optimizer and schedule,
in an order that decides the weights, into a ``Setup`` that it hands to ``fit``.
"""

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

import freenet as fn
from freenet import distributed, optim
from freenet.checkpoint import Checkpointer
from freenet.data import DataLoader
from freenet.kernels import settings
from freenet.nn import functional as F
from freenet.recipes.result import Result
from freenet.serialize import weights_sha256
from freenet.validate import FileFormatError, expect, field, fail


@dataclass
class Setup:
    """What a recipe builds for ``fit``."""

    model: object  # an nn.Module
    loader: DataLoader  # shuffles the training set
    test_set: object
    optimizer: object
    schedule: object  # stepped after every SGD step
    total_steps: int
    augment: Callable  # (images ndarray, np.random.Generator) -> the model's training input (ndarray)
    prepare: Callable  # images ndarray -> the model's test input (ndarray)
    source: str  # where the data is, for the log


def sgd(recipe, model, train_set, test_set, schedule, augment, prepare, source):
    """The ``Setup`` of SGD with momentum and weight decay on ``train_set``, shuffled by the recipe's seed, with
    ``schedule(optimizer, total_steps)``: ``recipe.epochs`` passes, or ``recipe.max_steps`` if fewer."""
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, seed=recipe.seed)
    optimizer = optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    total_steps = recipe.epochs * len(loader)
    if recipe.max_steps is not None:
        total_steps = min(total_steps, recipe.max_steps)
    return Setup(model, loader, test_set, optimizer, schedule(optimizer, total_steps), total_steps, augment, prepare,
                 source)


@fn.no_grad()
def evaluate(model, dataset, prepare, batch_size=500, shared=False):
    """Accuracy of ``model`` on ``dataset``, its images through ``prepare`` (in eval mode, without a graph).
    ``shared``: every MPI process calls this, and each computes every K-th batch (the batches and so
    the result are those of one process)."""
    was_training = model.training
    model.eval()
    world = distributed.world() if shared else distributed.World()
    correct = 0
    for index, (images, labels) in enumerate(DataLoader(dataset, batch_size=batch_size)):
        if index % world.size == world.rank:
            correct += int((model(fn.from_numpy(prepare(images.numpy()))).argmax(1) == labels).numpy().sum())
    model.train(was_training)
    return world.sum_int(correct) / len(dataset)


def fit(recipe, setup, progress=True, log=print, checkpoint_every=None, checkpoint_dir=None, resume=None):
    """Trains ``setup.model`` for ``setup.total_steps``; returns its test accuracy, time and weights hash.

    With ``checkpoint_every`` steps a checkpoint goes to ``checkpoint_dir``; ``resume`` (a checkpoint
    folder) continues the run from its newest good checkpoint, to the same bits as an unbroken run.
    Each batch is cut into ``recipe.shards`` shards, shared out among the MPI processes if there are
    several (``freenet.distributed``); only the first process writes checkpoints and prints.
    """
    world = distributed.world()
    distributed.check_shards(recipe.shards, "shards per batch")
    if not world.main:
        progress, log, checkpoint_every = False, lambda *a, **k: None, None
    model, loader, optimizer, schedule, total_steps = (setup.model, setup.loader, setup.optimizer, setup.schedule,
                                                       setup.total_steps)
    run = {"step": 0, "seconds": 0.0, "history": [], "epoch": {"seen": 0, "correct": 0, "loss": 0.0}}
    if resume is not None:
        run = _resume(resume, recipe, setup, log)
    checkpointer = None
    if checkpoint_every:
        if checkpoint_dir is None:
            raise fn.FreenetError("checkpoint_every needs a checkpoint_dir to write to")
        checkpointer = Checkpointer(checkpoint_dir)
        checkpointer.prepare()  # a folder that cannot be written fails now, not after the first steps
    log(f"training on {len(loader.dataset)} images ({setup.source}), testing on {len(setup.test_set)}; "
        f"{fn.get_num_threads()} threads" + (f" in each of {world.size} processes" if world.size > 1 else ""))
    start = time.perf_counter() - run["seconds"]
    bar = tqdm(total=total_steps, initial=run["step"], unit="step", disable=not progress)
    while run["step"] < total_steps:
        epoch, first = loader.epoch, loader.state_dict()["batch"]
        for index, (images, labels) in enumerate(loader, start=first):
            # Seeded by (seed, epoch, batch) alone, so a resumed run draws the same augmentations.
            rng = np.random.default_rng([recipe.seed, epoch, index])
            inputs = setup.augment(images.numpy(), rng)

            def loss_of(rows):
                logits = model(fn.from_numpy(inputs[rows]))
                return F.cross_entropy(logits, labels[rows]), int((logits.argmax(1) == labels[rows]).numpy().sum())

            optimizer.zero_grad()
            loss, correct = distributed.sharded_backward(model, len(labels), recipe.shards, loss_of)
            optimizer.step()
            schedule.step()
            run["step"] += 1
            stats = run["epoch"]
            stats["seen"] += len(labels)
            stats["loss"] += loss * len(labels)
            stats["correct"] += int(correct)
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{stats['loss'] / stats['seen']:.4f}",
                            acc=f"{stats['correct'] / stats['seen']:.3f}")
            if index == len(loader) - 1 or run["step"] == total_steps:
                _end_epoch(run, epoch, setup, recipe, log)
            run["seconds"] = time.perf_counter() - start
            if checkpointer is not None and (run["step"] % checkpoint_every == 0 or run["step"] == total_steps):
                checkpointer.save(run["step"], model.state_dict(), {
                    "recipe": recipe.as_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "loader": loader.state_dict(), "rng": fn.default_generator().bit_generator.state, "run": run,
                    "matmul": settings.matmul_path()})
            if run["step"] == total_steps:
                break
    bar.close()
    history = run["history"]
    return Result(model, history[-1]["test_accuracy"], run["seconds"], weights_sha256(model.state_dict()), history)


def _resume(folder, recipe, setup, log):
    """Loads the newest good checkpoint in ``folder`` into ``setup``; returns the run's counters.

    A checksum proves that the file is what was written, not that it is a state this run can use: every
    part is checked (present, of the right types and shapes, its counters agreeing with each other) before
    it is used, and a bad one is a FileFormatError naming the file.
    """
    checkpoint = Checkpointer(folder).latest(warn=log)
    if checkpoint is None:
        raise fn.FreenetError(f"--resume {folder}: no checkpoint there")
    where = checkpoint.path
    state = expect(checkpoint.state, dict, where)
    saved_recipe = field(state, "recipe", dict, where)
    for key, value in saved_recipe.items():  # plain values: comparing an array with == gives no yes or no
        expect(value, (int, float, str, bool), f"{where}: recipe: {key}", optional=True)
    if saved_recipe != recipe.as_dict():
        raise fn.FreenetError(f"{where} was made by another recipe: {saved_recipe}")
    recorded = field(state, "matmul", str, where, default=settings.matmul_path())  # one run, one matmul path
    if recorded != settings.matmul_path():
        raise fn.FreenetError(f"{where} was made with the {recorded} matmul path, not "
                              f"{settings.matmul_path()}; resume with FREENET_MATMUL={recorded}")
    parts = {key: field(state, key, dict, where) for key in ("run", "optimizer", "schedule", "loader", "rng")}
    run = _checked_run(parts["run"], setup, f"{where}: run")
    for key, value in parts["loader"].items():  # ints and flags, which the loader compares with its own
        expect(value, (int, bool), f"{where}: loader: {key}")
    try:
        setup.model.load_state_dict(checkpoint.arrays)
        setup.optimizer.load_state_dict(parts["optimizer"])
        setup.schedule.load_state_dict(parts["schedule"])
        setup.loader.load_state_dict(parts["loader"])
    except FileFormatError:
        raise
    except fn.FreenetError as e:
        raise FileFormatError(f"{where}: {e}") from None
    # Each step takes one batch: the loader's position is the run's step, or the state mixes two runs.
    position = setup.loader.epoch * len(setup.loader) + setup.loader.state_dict()["batch"]
    if position != run["step"]:
        fail(where, f"the data loader is at batch {position} of the run, but the run at step {run['step']}")
    _restore_rng(parts["rng"], f"{where}: rng")
    log(f"resumed from {where} at step {run['step']}")
    return run


def _checked_run(run, setup, where):
    """The run's counters from a checkpoint, checked: ``fit`` does arithmetic on every one of them."""
    step = field(run, "step", int, where, lo=0, hi=setup.total_steps)
    field(run, "seconds", float, where, lo=0)
    history = field(run, "history", list, where)
    for i, entry in enumerate(history):
        for key in ("epoch", "train_loss", "train_accuracy", "test_accuracy"):
            field(entry, key, int if key == "epoch" else float, f"{where}: history[{i}]")
    stats = field(run, "epoch", dict, where)
    seen = field(stats, "seen", int, f"{where}: epoch", lo=0)
    field(stats, "correct", int, f"{where}: epoch", lo=0, hi=seen)
    field(stats, "loss", float, f"{where}: epoch")
    # An epoch ends after the loader's last batch, or at the last step: one history entry each.
    per_epoch = len(setup.loader)
    ended = step // per_epoch if per_epoch else 0
    if per_epoch and step == setup.total_steps and step % per_epoch:
        ended += 1
    if len(history) != ended:
        fail(where, f"{len(history)} epochs in its history, but step {step} ends {ended}")
    return run


def _restore_rng(saved, where):
    """Sets freenet's generator to ``saved``, which must be a state of the same kind of generator."""
    bit_generator = fn.default_generator().bit_generator
    current = bit_generator.state

    def check(value, model, at):  # the same keys, the same strings, non-negative ints where it has ints
        if isinstance(model, dict):
            expect(value, dict, at)
            for key in model:  # "bit_generator" first: a state of another generator is named as such
                if key not in value:
                    fail(at, f"has no {key!r}")
                check(value[key], model[key], f"{at}: {key}")
            if set(value) != set(model):
                fail(at, f"has entries other than {sorted(model)}")
        elif isinstance(model, str):
            if expect(value, str, at) != model:
                fail(at, f"is {value!r}, not {model!r}: the state of another generator")
        else:
            expect(value, int, at, lo=0)

    check(saved, current, where)
    try:
        bit_generator.state = saved
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        fail(where, f"not a state of a {current['bit_generator']} generator ({e})")


def _end_epoch(run, epoch, setup, recipe, log):
    stats = run["epoch"]
    accuracy = evaluate(setup.model, setup.test_set, setup.prepare, shared=True)
    run["history"].append({"epoch": epoch + 1, "train_loss": stats["loss"] / stats["seen"],
                           "train_accuracy": stats["correct"] / stats["seen"], "test_accuracy": accuracy})
    log(f"epoch {epoch + 1}/{recipe.epochs}: train loss {stats['loss'] / stats['seen']:.4f}, "
        f"train accuracy {stats['correct'] / stats['seen']:.4f}, test accuracy {accuracy:.4f}")
    run["epoch"] = {"seen": 0, "correct": 0, "loss": 0.0}
