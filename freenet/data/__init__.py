"""Data: datasets, a seeded and resumable DataLoader, and readers for MNIST (IDX) and CIFAR-10 files.

>>> from freenet.data import MNIST, DataLoader
>>> train = MNIST(train=True)                 # the bundled 5,000-image sample, 4,000 for training
>>> images, labels = next(iter(DataLoader(train, batch_size=64, shuffle=True, seed=0)))
>>> images.shape, labels.dtype
((64, 1, 28, 28), dtype('int64'))
"""

from freenet.data.dataset import Dataset, TensorDataset, collate
from freenet.data.loader import DataLoader
from freenet.data.idx import read_idx, write_idx
from freenet.data.cifar import CIFAR10, read_cifar10_batch
from freenet.data.mnist import MNIST
from freenet.data.files import sha256_file

__all__ = ["Dataset", "TensorDataset", "collate", "DataLoader", "read_idx", "write_idx", "CIFAR10",
           "read_cifar10_batch", "MNIST", "sha256_file"]
