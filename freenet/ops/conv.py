"""Convolution and pooling over NCHW tensors, on the Numba kernels."""

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.tensor import record


@op
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation: x (N, C, H, W), weight (K, C / groups, kh, kw), bias (K,) or None."""
    geometry = (stride, padding, dilation, groups)
    out = kernels.conv2d_forward(x._data, weight._data, None if bias is None else bias._data, *geometry)

    def backward(g):
        return kernels.conv2d_backward(g, x._data, weight._data, *geometry, input=x.requires_grad,
                                       weight=weight.requires_grad,
                                       bias=bias is not None and bias.requires_grad)

    return record(out, (x, weight) if bias is None else (x, weight, bias), backward, saved=(x, weight))


@op
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max over windows; the gradient goes to the first maximum of each window (as PyTorch)."""
    out, argmax = kernels.max_pool2d_forward(x._data, kernel_size, stride, padding, dilation)
    return record(out, (x,), lambda g: (kernels.max_pool2d_backward(g, argmax, x._data.shape),), saved=())


@op
def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    window = (kernel_size, stride, padding, count_include_pad)
    out = kernels.avg_pool2d_forward(x._data, *window)
    return record(out, (x,), lambda g: (kernels.avg_pool2d_backward(g, x._data.shape, *window),), saved=())


@op
def adaptive_avg_pool2d(x, output_size):
    """Only ``output_size=1`` (global average pooling, kept as (N, C, 1, 1)) is supported."""
    if output_size not in (1, (1, 1), [1, 1]):
        raise FreenetError(f"adaptive_avg_pool2d: only output_size 1 is supported, not {output_size}")
    means = kernels.global_avg_pool2d_forward(x._data)
    out = means.reshape(means.shape + (1, 1))
    return record(out, (x,), lambda g: (kernels.global_avg_pool2d_backward(g.reshape(means.shape), x._data.shape),),
                  saved=())
