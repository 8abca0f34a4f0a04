"""``torch.utils.data`` under freenet: the names of ``freenet.data``, so that a PyTorch script runs with

    import freenet as torch
    from freenet.utils.data import DataLoader, Dataset, TensorDataset, random_split, Subset

Nothing is defined here; every name is the one object of ``freenet.data``.
"""

from freenet.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset, IterableDataset,
                          RandomSampler, Sampler, SequentialSampler, Subset, SubsetRandomSampler, TensorDataset,
                          WeightedRandomSampler, default_collate, default_convert, get_worker_info, random_split)

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset", "IterableDataset",
           "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler", "TensorDataset",
           "WeightedRandomSampler", "default_collate", "default_convert", "get_worker_info", "random_split"]
