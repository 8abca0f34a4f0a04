"""Numba kernels on raw ndarrays, installed as ``freenet.kernels``.

They know nothing of Tensor or autograd. Each kernel has a plain NumPy reference twin, named
``<kernel>_reference``, that the tests hold it to.
"""

from freenet.kernels.parallel import get_num_threads, set_num_threads
from freenet.kernels.gemm import matmul
from freenet.kernels.gelu import gelu, gelu_backward, gelu_backward_reference, gelu_reference
