"""freenet: deep learning on free hardware. A small autograd engine for plain CPUs, NumPy and Numba.

>>> import freenet as fn
>>> w = fn.tensor([[1.0, -2.0]], requires_grad=True)
>>> loss = (w @ fn.tensor([[3.0], [1.0]])).relu().sum()
>>> loss.backward()
>>> w.grad
tensor([[3., 1.]])
"""

import numpy as _np

from freenet.errors import FreenetError
from freenet.tensor import (Tensor, enable_grad, inference_mode, is_grad_enabled, no_grad,
                            set_grad_enabled)
from freenet.factory import (Generator, arange, default_generator, empty, empty_like, eye, from_numpy, full,
                             full_like, linspace, manual_seed, multinomial, ones, ones_like, rand, rand_like, randint,
                             randn, randn_like, randperm, tensor, zeros, zeros_like)
from freenet.devices import backends, cuda, device
from freenet.ops.arith import maximum, minimum, where
from freenet.ops.linalg import bmm, einsum, matmul
from freenet.ops.reduce import (all, amax, amin, any, argmax, argmin, argsort, log_softmax, logsumexp, max, mean, min,
                                softmax, sort, std, sum, topk, var)
from freenet.ops.shape import (cat, chunk, flatten, flip, gather, index_select, masked_fill, permute, reshape, roll,
                               split, squeeze, stack, t, transpose, tril, triu, unsqueeze)
from freenet.ops.unary import (abs, clip, clone, exp, log, log1p, norm, relu, sigmoid, sqrt, square,
                               tanh)
from freenet import autograd, data, nn, optim, utils
from freenet.kernels import get_num_threads, set_num_threads
from freenet.gradcheck import gradcheck
from freenet.serialize import load, load_metadata, save
from freenet.runtime import keep_freed_memory as _keep_freed_memory

clamp = clip


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()


def equal(a, b):
    """True when ``a`` and ``b`` have the same shape and elements."""
    return a.equal(b)


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return a.allclose(b, rtol, atol, equal_nan)


def set_float32_matmul_precision(precision):
    """Accepted for PyTorch scripts; freenet's float32 products are always computed the one way."""
    if precision not in ("highest", "high", "medium"):
        raise FreenetError(f"set_float32_matmul_precision: unknown precision {precision!r}")


__version__ = "0.1.0"

float32, float64 = _np.dtype(_np.float32), _np.dtype(_np.float64)
int32, int64, uint8, bool_ = _np.dtype(_np.int32), _np.dtype(_np.int64), _np.dtype(_np.uint8), _np.dtype(_np.bool_)
# PyTorch's names for them (these shadow Python's float, int and bool inside this module only)
float, double, long, int, bool = float32, float64, int64, int32, bool_

_keep_freed_memory()  # see freenet/runtime.py: a quarter of a training step was page faults
