"""The MNIST recipe: a small CNN trained with SGD and momentum. ``freenet train mnist`` runs it.

>>> from freenet.recipes import mnist
>>> mnist.build_model()[0]
Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
"""

from dataclasses import asdict, dataclass

import numpy as np

import freenet as fn
from freenet import nn, optim
from freenet.data import MNIST
from freenet.recipes import loop
from freenet.recipes.augment import random_shift
from freenet.validate import expect

MAX_SHIFT = 28  # a shift past the 28-pixel image leaves nothing of it (and pads the batch by twice as much)


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
    shards: int = 1  # each batch in this many fixed parts (the MPI processes share them out; see distributed)
    max_steps: int = None  # stop after this many SGD steps in all (for quick checks); None: every batch
    data: str = None  # a folder with the official MNIST files; None: the bundled 5,000-image sample

    def __post_init__(self):
        """Records come from files: a hostile one fails here, with a clear message, not deep in training."""
        for name, least in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("shards", 1)):
            expect(getattr(self, name), int, f"mnist recipe: {name}", lo=least)
        expect(self.max_shift, int, "mnist recipe: max_shift", lo=0, hi=MAX_SHIFT)
        expect(self.max_steps, int, "mnist recipe: max_steps", lo=1, optional=True)
        for name in ("lr", "momentum", "weight_decay"):
            expect(getattr(self, name), float, f"mnist recipe: {name}", lo=0)
        expect(self.data, str, "mnist recipe: data", optional=True)

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


def standardize(images):
    return (images - np.float32(MEAN)) / np.float32(STD)


def evaluate(model, dataset, batch_size=500):
    """Accuracy of ``model`` on ``dataset`` (in eval mode, without a graph)."""
    return loop.evaluate(model, dataset, standardize, batch_size)


def train(recipe, progress=True, log=print, checkpoint_every=None, checkpoint_dir=None, resume=None):
    """Trains the recipe's model from its seed; returns the model, test accuracy, time and weights hash.

    With ``checkpoint_every`` steps a checkpoint goes to ``checkpoint_dir``; ``resume`` (a checkpoint
    folder) continues the run from its newest good checkpoint, to the same bits as an unbroken run.
    """
    fn.manual_seed(recipe.seed)
    train_set = MNIST(recipe.data, train=True)
    test_set = MNIST(recipe.data, train=False)
    setup = loop.sgd(recipe, build_model(), train_set, test_set,
                     lambda opt, steps: optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps),
                     augment=lambda images, rng: standardize(random_shift(images, recipe.max_shift, rng)),
                     prepare=standardize, source="bundled sample" if recipe.data is None else recipe.data)
    return loop.fit(recipe, setup, progress, log, checkpoint_every, checkpoint_dir, resume)
