"""Batch, layer and group normalisation, and dropout layers."""

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import ones, zeros
from freenet.nn import functional as F
from freenet.nn import init
from freenet.nn.module import Module
from freenet.nn.parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Dropout"]


class _BatchNorm(Module):
    dims = None  # the input ranks the layer accepts

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        super().__init__()
        dtype = np.float32 if dtype is None else dtype
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(ones(num_features, dtype=dtype))
            self.bias = Parameter(zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, input, residual=None, relu=False):
        """Batch norm of ``input``; with ``relu=True``, relu(bn(input) + residual) in one fused pass
        when training (a residual block's tail: ``bn2(conv2(y), residual=x, relu=True)``)."""
        if input.ndim not in self.dims or input.shape[1] != self.num_features:
            raise FreenetError(f"{type(self).__name__}({self.num_features}): expected input of "
                               f"{' or '.join(map(str, self.dims))} dims with {self.num_features} channels "
                               f"in dim 1, got shape {tuple(input.shape)}")
        use_batch_stats = self.training or self.running_mean is None
        running = (None, None)
        if self.track_running_stats:
            running = (self.running_mean._data, self.running_var._data)
            if self.training:
                self.num_batches_tracked._data[...] += 1
        if relu:
            return F.batch_norm_relu(input, *running, self.weight, self.bias, residual, training=use_batch_stats,
                                     momentum=self.momentum, eps=self.eps)
        out = F.batch_norm(input, *running, self.weight, self.bias, training=use_batch_stats,
                           momentum=self.momentum, eps=self.eps)
        return out if residual is None else out + residual

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs."""

    dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs, per channel."""

    dims = (4,)


class _ScaleAndShift(Module):
    """A normalisation with an optional elementwise ``weight`` (ones) and ``bias`` (zeros)."""

    def _scale_and_shift(self, shape, affine, bias, dtype):
        dtype = np.float32 if dtype is None else dtype
        self.register_parameter("weight", Parameter(ones(*shape, dtype=dtype)) if affine else None)
        self.register_parameter("bias", Parameter(zeros(*shape, dtype=dtype)) if affine and bias else None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)


class LayerNorm(_ScaleAndShift):
    """Normalises over the last dims, ``normalized_shape`` (an int or a tuple), each slice by its own
    mean and variance, then scales by ``weight`` (ones) and shifts by ``bias`` (zeros), elementwise.

    The same in training and eval. ``elementwise_affine=False`` drops both parameters, ``bias=False``
    the shift only.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self._scale_and_shift(self.normalized_shape, elementwise_affine, bias, dtype)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(_ScaleAndShift):
    """Splits the channels of (N, C, ...) inputs into ``num_groups`` groups and normalises each group of
    each sample by its mean and variance, then applies a per-channel ``weight`` (ones) and ``bias``
    (zeros); ``affine=False`` drops both, ``bias=False`` (keyword only, as in PyTorch) the shift only.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=None, *, bias=True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise FreenetError(f"GroupNorm: num_groups={num_groups} must divide num_channels={num_channels}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self._scale_and_shift((num_channels,), affine, bias, dtype)

    def forward(self, input):
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise FreenetError(f"GroupNorm: expected input (N, {self.num_channels}, ...) with {self.num_channels} "
                               f"channels, got shape {tuple(input.shape)}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Dropout(Module):
    """Zeroes elements with probability p during training (seeded by ``freenet.manual_seed``)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise FreenetError(f"Dropout: p must be in [0, 1), not {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}"
