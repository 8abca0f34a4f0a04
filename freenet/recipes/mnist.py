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
from freenet.nn import functional as F
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


def train(recipe, progress=True, log=print):
    """Trains the recipe's model from its seed and returns the model, test accuracy, time and weights hash."""
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
    log(f"training on {len(train_set)} images ({'bundled sample' if recipe.data is None else recipe.data}), "
        f"testing on {len(test_set)}; {fn.get_num_threads()} threads")
    history = []
    steps = 0
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        if steps == total_steps:
            break
        seen = correct = 0
        total_loss = 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="batch", disable=not progress,
                   leave=False)
        for step, (images, labels) in enumerate(bar):
            if steps == total_steps:
                break
            steps += 1
            # Seeded by (seed, epoch, step) alone, so a resumed run draws the same shifts.
            rng = np.random.default_rng([recipe.seed, epoch, step])
            logits = model(fn.from_numpy(standardize(random_shift(images.numpy(), recipe.max_shift, rng))))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(labels)
            total_loss += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).numpy().sum())
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
        bar.close()
        accuracy = evaluate(model, test_set)
        history.append({"epoch": epoch + 1, "train_loss": total_loss / seen, "train_accuracy": correct / seen,
                        "test_accuracy": accuracy})
        log(f"epoch {epoch + 1}/{recipe.epochs}: train loss {total_loss / seen:.4f}, "
            f"train accuracy {correct / seen:.4f}, test accuracy {accuracy:.4f}")
    seconds = time.perf_counter() - start
    return Result(model, history[-1]["test_accuracy"] if history else evaluate(model, test_set), seconds,
                  weights_sha256(model.state_dict()), history)
