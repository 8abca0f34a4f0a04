"""Data: datasets, samplers, a seeded and resumable DataLoader, and readers for MNIST (IDX) and CIFAR-10 files.

The classes and functions of ``torch.utils.data`` are here under the same names (and importable as
``freenet.utils.data``): Dataset, IterableDataset, TensorDataset, Subset, ConcatDataset, ChainDataset,
random_split, the samplers, default_collate, default_convert and DataLoader.

>>> from freenet.data import MNIST, DataLoader
>>> train = MNIST(train=True)                 # the bundled 5,000-image sample, 4,000 for training
>>> images, labels = next(iter(DataLoader(train, batch_size=64, shuffle=True, seed=0)))
>>> images.shape, labels.dtype
((64, 1, 28, 28), dtype('int64'))
"""

from freenet.data.dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset,
                                  collate, default_collate, default_convert, random_split)
from freenet.data.sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                                  WeightedRandomSampler)
from freenet.data.loader import DataLoader, get_worker_info
from freenet.data.idx import read_idx, write_idx
from freenet.data.cifar import CIFAR10, read_cifar10_batch
from freenet.data.mnist import MNIST
from freenet.data.files import sha256_file

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "ChainDataset", "random_split",
           "collate", "default_collate", "default_convert", "Sampler", "SequentialSampler", "RandomSampler",
           "SubsetRandomSampler", "WeightedRandomSampler", "BatchSampler", "DataLoader", "get_worker_info",
           "read_idx", "write_idx", "CIFAR10", "read_cifar10_batch", "MNIST", "sha256_file"]
