"""Embedding: a lookup table of vectors, indexed by integers (PyTorch's ``torch.nn.Embedding``)."""

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import empty
from freenet.nn import functional as F
from freenet.nn import init
from freenet.nn.module import Module
from freenet.nn.parameter import Parameter
from freenet.ops.embedding import _padding_index
from freenet.tensor import Tensor, no_grad

__all__ = ["Embedding"]


class Embedding(Module):
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by an integer tensor of any shape.

    The weight starts N(0, 1), drawn from freenet's seeded generator (or ``generator``), with the row
    ``padding_idx`` (if any) zero; that row gets no gradient, so it stays what it is.

    >>> import freenet as fn
    >>> emb = fn.nn.Embedding(10, 3, padding_idx=0)
    >>> emb(fn.tensor([[0, 2], [4, 9]])).shape
    (2, 2, 3)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, dtype=None, generator=None):
        super().__init__()
        for name, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
                raise FreenetError(f"Embedding: {name} must be a non-negative int, not {n!r}")
        if sparse:
            raise FreenetError("Embedding: sparse gradients are not supported (use sparse=False)")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings, "Embedding")
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            dtype = np.float32 if dtype is None else dtype
            self.weight = Parameter(empty(self.num_embeddings, self.embedding_dim, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters(generator)
        else:
            if tuple(_weight.shape) != (self.num_embeddings, self.embedding_dim):
                raise FreenetError(f"Embedding: _weight of shape {tuple(_weight.shape)} does not match "
                                   f"({self.num_embeddings}, {self.embedding_dim})")
            self.weight = Parameter(_weight if isinstance(_weight, Tensor) else np.asarray(_weight),
                                    requires_grad=not _freeze)

    def reset_parameters(self, generator=None):
        init.normal_(self.weight, generator=generator)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self):
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            text += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        return text

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding whose weight is ``embeddings`` (2-d; a Tensor's array is shared, as in PyTorch),
        trained only if ``freeze=False``. The ``padding_idx`` row is kept as given (not zeroed)."""
        shape = tuple(embeddings.shape)
        if len(shape) != 2:
            raise FreenetError(f"Embedding.from_pretrained: embeddings must be 2-d, not shape {shape}")
        return cls(shape[0], shape[1], padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze)
