"""Convolution and pooling layers over NCHW tensors."""



from freenet.errors import FreenetError
from freenet.nn import functional as F
from freenet.nn.module import Module
from freenet.nn.layers import kaiming_reset, weight_and_bias

__all__ = ["Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _single(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise FreenetError(f"Conv1d: {name} must be an int or a 1-tuple, not {value!r}")
        value = value[0]
    return value


class Conv1d(Module):
    """1-d convolution (cross-correlation) over (N, C, L) or (C, L) inputs, with PyTorch's parameters
    (``padding`` an int, "valid" or "same") and default initialisation. It runs on the conv2d kernels,
    over a height-1 axis.

    >>> import freenet as fn
    >>> conv = fn.nn.Conv1d(4, 8, 3, padding=1)
    >>> conv(fn.zeros(2, 4, 50)).shape
    (2, 8, 50)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=None, generator=None):
        super().__init__()
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise FreenetError(f"Conv1d: groups={groups} must divide in_channels={in_channels} "
                               f"and out_channels={out_channels}")
        if padding_mode != "zeros":
            raise FreenetError(f"Conv1d: only padding_mode='zeros' is supported, not {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = (_single(kernel_size, "kernel_size"),), (_single(stride, "stride"),)
        self.dilation = (_single(dilation, "dilation"),)
        padding = _single(padding, "padding")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise FreenetError(f"Conv1d: padding must be an int, 'valid' or 'same', not {padding!r}")
            if padding == "same" and self.stride != (1,):
                raise FreenetError("Conv1d: padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = (padding,)
        self.padding_mode = padding_mode
        weight_and_bias(self, (out_channels, in_channels // groups, self.kernel_size[0]), bias, dtype)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        kaiming_reset(self.weight, self.bias, self.weight.shape[1] * self.kernel_size[0], generator)

    def forward(self, input):
        padding = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(input, self.weight, self.bias, self.stride[0], padding, self.dilation[0], self.groups)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,):
            text += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1,):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(Module):
    """2-d convolution (cross-correlation) with PyTorch's parameters and default initialisation.

    >>> import freenet as fn
    >>> conv = fn.nn.Conv2d(1, 8, 3, padding=1)
    >>> conv(fn.zeros(2, 1, 28, 28)).shape
    (2, 8, 28, 28)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=None, generator=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise FreenetError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                               f"and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        weight_and_bias(self, (out_channels, in_channels // groups, *self.kernel_size), bias, dtype)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        kaiming_reset(self.weight, self.bias, self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1],
                      generator)

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Global average pooling: only ``output_size=1`` is supported."""

    def __init__(self, output_size=1):
        super().__init__()
        if output_size not in (1, (1, 1), [1, 1]):
            raise FreenetError(f"AdaptiveAvgPool2d: only output_size 1 is supported, not {output_size}")
        self.output_size = output_size

    def forward(self, input):
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
