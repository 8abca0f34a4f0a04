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
from freenet.tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from freenet.factory import (arange, default_generator, empty, empty_like, from_numpy, full, full_like,
                             manual_seed, ones, ones_like, rand, rand_like, randn, randn_like, tensor, zeros,
                             zeros_like)
from freenet.ops.arith import maximum, minimum, where
from freenet.ops.linalg import matmul
from freenet.ops.reduce import log_softmax, logsumexp, softmax
from freenet.ops.shape import cat, stack
from freenet.ops.unary import abs, clip, exp, log, log1p, sigmoid, sqrt, tanh
from freenet import autograd, data, nn, optim
from freenet.kernels import get_num_threads, set_num_threads
from freenet.gradcheck import gradcheck
from freenet.serialize import load, load_metadata, save
from freenet.runtime import keep_freed_memory as _keep_freed_memory

__version__ = "0.1.0"

float32, float64 = _np.dtype(_np.float32), _np.dtype(_np.float64)
int32, int64, uint8, bool_ = _np.dtype(_np.int32), _np.dtype(_np.int64), _np.dtype(_np.uint8), _np.dtype(_np.bool_)

_keep_freed_memory()  # see freenet/runtime.py: a quarter of a training step was page faults
