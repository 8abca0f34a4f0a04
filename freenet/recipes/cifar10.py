"""The CIFAR-10 recipe: a small ResNet (ResNet-20 by default) trained with SGD, momentum and a cosine
schedule on random crops and flips. ``freenet train cifar10 --data DIR`` runs it.

CIFAR-10 is not bundled and never downloaded: ``data`` is a folder with its binary version.

>>> from freenet.recipes import cifar10
>>> cifar10.build_model(cifar10.Recipe(blocks=1, width=4)).fc
Linear(in_features=16, out_features=10, bias=True)
"""

import numbers
from dataclasses import asdict, dataclass

import numpy as np

import freenet as fn
from freenet import optim
from freenet.data import CIFAR10
from freenet.errors import FreenetError
from freenet.recipes import loop
from freenet.recipes.augment import random_flip, random_shift
from freenet.recipes.resnet import ResNet

SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (the binary version, cifar-10-binary.tar.gz)"
LICENSE = "GPL-3.0-or-later"  # freenet's own: the data states no licence to follow (see data_identity)


@dataclass
class Recipe:
    """Everything that decides the trained weights (with the data and the code)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1  # the cosine schedule's start, falling to 0 at the last step
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    crop_padding: int = 4  # augmentation: 32x32 crops of the image padded with this many zero pixels
    blocks: int = 3  # basic blocks per stage: 3 is ResNet-20
    width: int = 16  # channels of the first stage (then twice and four times as many)
    shards: int = 1  # each batch in this many fixed parts (the MPI processes share them out; see distributed)
    max_steps: int = None  # stop after this many SGD steps in all (for quick checks); None: every batch
    data: str = None  # the folder with CIFAR-10's binary files (required)

    def __post_init__(self):
        """Records come from files: a hostile one fails here, with a clear message."""
        least = {"epochs": 1, "batch_size": 1, "blocks": 1, "width": 1, "seed": 0, "crop_padding": 0, "max_steps": 1,
                 "shards": 1}
        for name, value in asdict(self).items():
            if name in least:
                need = f"an integer of at least {least[name]}" + (" or None" if name == "max_steps" else "")
                ok = (_integer(value) and value >= least[name]) or (value is None and name == "max_steps")
            elif name == "data":
                need, ok = "a folder name", value is None or isinstance(value, str)
            else:
                need, ok = "a number", isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not ok:
                raise FreenetError(f"cifar10 recipe: {name} must be {need}, not {value!r}")

    def as_dict(self):
        return asdict(self)


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# Of the 50,000 training images, per channel (R, G, B): inputs are standardised with these.
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def architecture(recipe):
    """The model in words, for the provenance record."""
    b, w = recipe.blocks, recipe.width
    return (f"ResNet-{6 * b + 2}: conv(3->{w}, 3x3) - BN - ReLU; 3 stages of {b} basic block{'s' if b > 1 else ''} "
            f"at {w}/{2 * w}/{4 * w} channels (conv3x3-BN-ReLU-conv3x3-BN + shortcut - ReLU; stages 2 and 3 start "
            f"with stride 2 and a 1x1 conv-BN shortcut); global average pool - linear({4 * w}->10)")


def build_model(recipe=None):
    """The recipe's ResNet (default: ResNet-20, width 16)."""
    recipe = recipe if recipe is not None else Recipe()
    return ResNet(blocks=recipe.blocks, width=recipe.width, classes=10)


def datasets(recipe):
    """(train set, test set) from ``recipe.data``; a FreenetError says what is wrong, or where to get them."""
    if recipe.data is None:
        raise FreenetError(f"CIFAR-10 is not bundled with freenet and is never downloaded by it: get it from {SOURCE}, "
                           "unpack it, and pass its folder with --data DIR (it holds data_batch_1.bin .. "
                           "data_batch_5.bin and test_batch.bin)")
    try:
        return CIFAR10(recipe.data, train=True), CIFAR10(recipe.data, train=False)
    except (OSError, MemoryError) as e:
        raise FreenetError(f"CIFAR-10 in {recipe.data} cannot be read: {e}") from None


def data_identity(recipe):
    """Which data the recipe trains on, where to get it, its licence and the SHA-256 of each file."""
    train_set, test_set = datasets(recipe)
    return {
        "name": "CIFAR-10",
        "source": SOURCE,
        "bundled": False,
        "license": "NOASSERTION",
        "license_note": "the CIFAR-10 page states no licence; its images were collected from the web "
                        "(a subset of the 80 Million Tiny Images)",
        "attribution": "A. Krizhevsky, V. Nair and G. Hinton; A. Krizhevsky, Learning Multiple Layers of Features "
                       "from Tiny Images, 2009",
        "files": {**train_set.sha256, **test_set.sha256},
        "split": f"{len(train_set)} train / {len(test_set)} test: data_batch_1..5.bin / test_batch.bin",
        "preprocessing": f"pixels / 255, standardised per channel (RGB) with mean {MEAN} and std {STD}; "
                         "training images cropped to 32x32 at random from the image padded "
                         f"with {recipe.crop_padding} zero pixels, and mirrored left-right with probability 1/2, "
                         "seeded by (seed, epoch, batch)",
    }


def standardize(images):
    """Per-channel standardisation of float images in [0, 1], (N, 3, H, W)."""
    mean, std = (np.array(v, np.float32).reshape(3, 1, 1) for v in (MEAN, STD))
    return (images - mean) / std


def evaluate(model, dataset, batch_size=500):
    """Accuracy of ``model`` on ``dataset`` (in eval mode, without a graph)."""
    return loop.evaluate(model, dataset, standardize, batch_size)


def train(recipe, progress=True, log=print, checkpoint_every=None, checkpoint_dir=None, resume=None):
    """Trains the recipe's ResNet from its seed and returns a ``Result``; checkpoints and ``resume`` work as
    in ``loop.fit``, to the same bits as an unbroken run."""
    fn.manual_seed(recipe.seed)
    train_set, test_set = datasets(recipe)

    def augment(images, rng):
        return standardize(random_flip(random_shift(images, recipe.crop_padding, rng), rng))

    setup = loop.sgd(recipe, build_model(recipe), train_set, test_set,
                     lambda optimizer, steps: optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps),
                     augment, prepare=standardize, source=recipe.data)
    return loop.fit(recipe, setup, progress, log, checkpoint_every, checkpoint_dir, resume)
