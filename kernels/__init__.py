"""Numba kernels on raw ndarrays, installed as ``freenet.kernels``.

They know nothing of Tensor or autograd. Each kernel has a plain NumPy reference twin, named
``<kernel>_reference``, that the tests hold it to. Results never depend on the thread count
(see ``parallel.py``), nor on the CPU: matrix products are freenet's own GEMM (``gemm.py``), and
exp, log, tanh and the other transcendental functions of the training path are freenet's own
(``elementary.py``, ``erf.py``, ``correctly_rounded.py``), not OpenBLAS's, NumPy's or the libm's,
whose bits depend on the CPU. ``settings.py`` holds the switches (``FREENET_MATMUL``).

Working on them: Numba's on-disk cache (``cache=True``) checks only the file of the kernel it
loads, so a kernel that calls one from another file (``winograd_transforms.py`` calls
``winograd.py``'s) keeps running the callee's old code after that file changes, until its own
file changes or the cache goes (``find . -name '*.nb[ic]' -delete``). Installing a new version
rewrites every file, so users never meet it.
"""

from freenet.kernels.parallel import block_ranges, get_num_threads, run_blocks, set_num_threads
from freenet.kernels.gemm import matmul
from freenet.kernels.elementary import (exp, exp_reference, expm1, expm1_reference, log, log1p, log1p_reference,
                                       log_reference, power, power_reference, sigmoid, sigmoid_reference, tanh,
                                       tanh_reference)
from freenet.kernels.erf import erf, erf_reference, erfc, erfc_reference
from freenet.kernels import correctly_rounded
from freenet.kernels.gelu import gelu, gelu_backward, gelu_backward_reference, gelu_reference
from freenet.kernels.conv import (conv2d_backward, conv2d_backward_bias, conv2d_backward_bias_reference,
                                  conv2d_backward_input, conv2d_backward_input_reference, conv2d_backward_weight,
                                  conv2d_backward_weight_reference, conv2d_forward, conv2d_forward_reference,
                                  Conv2dPrepared)
from freenet.kernels.pool import (avg_pool2d_backward, avg_pool2d_backward_reference, avg_pool2d_forward,
                                  avg_pool2d_forward_reference, global_avg_pool2d_backward,
                                  global_avg_pool2d_backward_reference, global_avg_pool2d_forward,
                                  global_avg_pool2d_forward_reference, max_pool2d_backward,
                                  max_pool2d_backward_reference, max_pool2d_forward, max_pool2d_forward_reference)
from freenet.kernels.norm import (batch_norm_backward, batch_norm_backward_reference, batch_norm_eval_forward,
                                  batch_norm_eval_forward_reference, batch_norm_train_forward,
                                  batch_norm_train_forward_reference, batch_norm_unbiased_var,
                                  batch_norm_update_running, batch_norm_update_running_reference)
from freenet.kernels.fused import (add_relu_backward, add_relu_forward, batch_norm_add_relu_backward,
                                   batch_norm_add_relu_train_forward, batch_norm_relu_backward,
                                   batch_norm_relu_train_forward, bias_relu_backward, bias_relu_forward,
                                   relu_backward, relu_forward)
from freenet.kernels.dropout import dropout_backward, dropout_forward
