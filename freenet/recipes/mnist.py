"""The MNIST recipe: a small CNN trained with SGD and momentum. ``freenet train mnist`` runs it.

>>> from freenet.recipes import mnist
>>> mnist.build_model()[0]
Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
"""

import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

import freenet as fn
from freenet import nn, optim
from freenet.data import DataLoader, MNIST
from freenet.kernels import settings
from freenet.nn import functional as F
from freenet.checkpoint import Checkpointer
from freenet.serialize import weights_sha256


@dataclass
class Recipe:
    """Everything that decides the trained weights (with the data and the code)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    max_shift: int = 2  # augmentation: random translations of up to this many pixels
    max_steps: int = None  # stop after this many SGD steps in all (for quick checks); None: every batch
    data: str = None  # a folder with the official MNIST files; None: the bundled 5,000-image sample

    def as_dict(self):
        return asdict(self)


LICENSE = "CC-BY-SA-3.0"  # the weights follow the share-alike licence of the MNIST data
ARCHITECTURE = "conv(1->32, 3x3, pad 1) - ReLU - maxpool 2 - conv(32->64, 3x3, pad 1) - ReLU - maxpool 2 - " \
               "flatten - linear(3136->128) - ReLU - linear(128->10)"


def data_identity(recipe):
    """Which data the recipe trains on, where to get it, its licence and the SHA-256 of each file."""
    train_set, test_set = MNIST(recipe.data, train=True), MNIST(recipe.data, train=False)
    bundled = recipe.data is None
    return {
        "name": "MNIST (5,000-image sample bundled with freenet)" if bundled else "MNIST",
        "source": ("bundled: freenet/data/mnist5k in the freenet package, from the MNIST database "
                   "http://yann.lecun.com/exdb/mnist/" if bundled else "http://yann.lecun.com/exdb/mnist/"),
        "bundled": bundled,
        "license": "CC-BY-SA-3.0",
        "attribution": "Y. LeCun and C. Cortes (with C. Burges), the MNIST database",
        "files": {**train_set.sha256, **test_set.sha256},
        "split": (f"{len(train_set)} train / {len(test_set)} test: the last 100 images of each digit are held out"
                  if bundled else "the official 60,000 train / 10,000 test files"),
        "preprocessing": f"pixels / 255, standardised with mean {MEAN} and std {STD}; training images shifted "
                         f"by up to {recipe.max_shift} px, seeded by (seed, epoch, batch)",
    }


def build_model():
    """conv(1->32) - ReLU - maxpool - conv(32->64) - ReLU - maxpool - linear(3136->128) - ReLU - linear(128->10)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


MEAN, STD = 0.1307, 0.3081  # of the MNIST training images: inputs are standardised with these


def random_shift(images, max_shift, rng):
    """Each image translated by its own random (dy, dx) in [-max_shift, max_shift], zeros shifted in."""
    if max_shift == 0:
        return images
    n, c, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))  # (n, c, dy, dx, h, w)
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.ascontiguousarray(windows[np.arange(n), :, dy, dx])


def standardize(images):
    return (images - np.float32(MEAN)) / np.float32(STD)


@fn.no_grad()
def evaluate(model, dataset, batch_size=500):
    """Accuracy of ``model`` on ``dataset`` (in eval mode, without a graph)."""
    was_training = model.training
    model.eval()
    correct = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        correct += int((model(fn.from_numpy(standardize(images.numpy()))).argmax(1) == labels).numpy().sum())
    model.train(was_training)
    return correct / len(dataset)


@dataclass
class Result:
    model: nn.Module
    accuracy: float
    seconds: float
    sha256: str
    history: list


def train(recipe, progress=True, log=print, checkpoint_every=None, checkpoint_dir=None, resume=None):
    """Trains the recipe's model from its seed; returns the model, test accuracy, time and weights hash.

    With ``checkpoint_every`` steps a checkpoint goes to ``checkpoint_dir``; ``resume`` (a checkpoint
    folder) continues the run from its newest good checkpoint, to the same bits as an unbroken run.
    """
    fn.manual_seed(recipe.seed)
    train_set = MNIST(recipe.data, train=True)
    test_set = MNIST(recipe.data, train=False)
    model = build_model()
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, seed=recipe.seed)
    optimizer = optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    total_steps = recipe.epochs * len(loader)
    if recipe.max_steps is not None:
        total_steps = min(total_steps, recipe.max_steps)
    schedule = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps)
    run = {"step": 0, "seconds": 0.0, "history": [], "epoch": {"seen": 0, "correct": 0, "loss": 0.0}}
    if resume is not None:
        checkpoint = Checkpointer(resume).latest(warn=log)
        if checkpoint is None:
            raise fn.FreenetError(f"--resume {resume}: no checkpoint there")
        if checkpoint.state["recipe"] != recipe.as_dict():
            raise fn.FreenetError(f"{checkpoint.path} was made by another recipe: {checkpoint.state['recipe']}")
        recorded = checkpoint.state.get("matmul", settings.matmul_path())  # one run, one matmul path
        if recorded != settings.matmul_path():
            raise fn.FreenetError(f"{checkpoint.path} was made with the {recorded} matmul path, not "
                                  f"{settings.matmul_path()}; resume with FREENET_MATMUL={recorded}")
        model.load_state_dict(checkpoint.arrays)
        optimizer.load_state_dict(checkpoint.state["optimizer"])
        schedule.load_state_dict(checkpoint.state["schedule"])
        loader.load_state_dict(checkpoint.state["loader"])
        fn.default_generator().bit_generator.state = checkpoint.state["rng"]
        run = checkpoint.state["run"]
        log(f"resumed from {checkpoint.path} at step {run['step']}")
    checkpointer = Checkpointer(checkpoint_dir) if checkpoint_every else None
    log(f"training on {len(train_set)} images ({'bundled sample' if recipe.data is None else recipe.data}), "
        f"testing on {len(test_set)}; {fn.get_num_threads()} threads")
    start = time.perf_counter() - run["seconds"]
    bar = tqdm(total=total_steps, initial=run["step"], unit="step", disable=not progress)
    while run["step"] < total_steps:
        epoch, first = loader.epoch, loader.state_dict()["batch"]
        for index, (images, labels) in enumerate(loader, start=first):
            # Seeded by (seed, epoch, batch) alone, so a resumed run draws the same shifts.
            rng = np.random.default_rng([recipe.seed, epoch, index])
            logits = model(fn.from_numpy(standardize(random_shift(images.numpy(), recipe.max_shift, rng))))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            run["step"] += 1
            stats = run["epoch"]
            stats["seen"] += len(labels)
            stats["loss"] += loss.item() * len(labels)
            stats["correct"] += int((logits.argmax(1) == labels).numpy().sum())
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{stats['loss'] / stats['seen']:.4f}",
                            acc=f"{stats['correct'] / stats['seen']:.3f}")
            if index == len(loader) - 1 or run["step"] == total_steps:
                _end_epoch(run, epoch, model, test_set, recipe, log)
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


def _end_epoch(run, epoch, model, test_set, recipe, log):
    stats = run["epoch"]
    accuracy = evaluate(model, test_set)
    run["history"].append({"epoch": epoch + 1, "train_loss": stats["loss"] / stats["seen"],
                           "train_accuracy": stats["correct"] / stats["seen"], "test_accuracy": accuracy})
    log(f"epoch {epoch + 1}/{recipe.epochs}: train loss {stats['loss'] / stats['seen']:.4f}, "
        f"train accuracy {stats['correct'] / stats['seen']:.4f}, test accuracy {accuracy:.4f}")
    run["epoch"] = {"seen": 0, "correct": 0, "loss": 0.0}
