"""Tensor's operators and methods: each is an op of freenet/ops (or the engine's ``inplace`` around one),
attached to ``Tensor`` here, once, when ``freenet.tensor`` is imported (the ops build on the Tensor class, so
they cannot be attached in its body)."""

import numpy as np

from freenet import devices as _device
from freenet.ops import arith, linalg, reduce, shape, unary
from freenet.tensor import Tensor, _constant, inplace


def _reflected(fn):
    return lambda self, other: fn(other, self)


Tensor.__add__, Tensor.__radd__ = arith.add, _reflected(arith.add)
Tensor.__sub__, Tensor.__rsub__ = arith.sub, _reflected(arith.sub)
Tensor.__mul__, Tensor.__rmul__ = arith.mul, _reflected(arith.mul)
Tensor.__truediv__, Tensor.__rtruediv__ = arith.div, _reflected(arith.div)
Tensor.__floordiv__, Tensor.__rfloordiv__ = arith.floor_divide, _reflected(arith.floor_divide)
Tensor.__mod__, Tensor.__rmod__ = arith.remainder, _reflected(arith.remainder)
Tensor.__pow__, Tensor.__rpow__ = arith.pow, _reflected(arith.pow)
Tensor.__matmul__, Tensor.__rmatmul__ = linalg.matmul, _reflected(linalg.matmul)
Tensor.__neg__, Tensor.__abs__ = unary.neg, unary.abs
Tensor.__lt__, Tensor.__le__, Tensor.__gt__ = arith.lt, arith.le, arith.gt
Tensor.__ge__, Tensor.__eq__, Tensor.__ne__ = arith.ge, arith.eq, arith.ne
Tensor.__getitem__ = shape.getitem

Tensor.__and__, Tensor.__or__, Tensor.__xor__ = arith.logical_and, arith.logical_or, arith.logical_xor
Tensor.__invert__ = arith.logical_not

_METHODS = {  # module: the ops that are also Tensor methods under the same name
    unary: ("abs", "exp", "log", "log1p", "sqrt", "tanh", "sigmoid", "relu", "clip", "clone", "contiguous", "square",
            "norm"),
    reduce: ("sum", "mean", "var", "std", "max", "min", "amax", "amin", "logsumexp", "softmax", "log_softmax",
             "argmax", "argmin", "sort", "argsort", "topk", "all", "any"),
    shape: ("reshape", "transpose", "permute", "flatten", "squeeze", "unsqueeze", "expand", "masked_fill", "repeat",
            "split", "chunk", "roll", "flip", "tril", "triu", "gather", "index_select", "t"),
    arith: ("maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "pow"),
    linalg: ("matmul", "bmm"),
}
for _module, _names in _METHODS.items():
    for _name in _names:
        setattr(Tensor, _name, getattr(_module, _name))
del _module, _names

Tensor.view = shape.reshape
Tensor.where = lambda self, condition, other: arith.where(condition, self, other)
Tensor.clamp = unary.clip
Tensor.T = property(shape.T)
Tensor.add = lambda self, other, alpha=1: arith.add(self, other if alpha == 1 else other * alpha)
Tensor.sub = lambda self, other, alpha=1: arith.sub(self, other if alpha == 1 else other * alpha)
Tensor.mul, Tensor.div, Tensor.neg = arith.mul, arith.div, unary.neg
Tensor.view_as = lambda self, other: shape.reshape(self, other.shape)
Tensor.reshape_as = Tensor.view_as
Tensor.expand_as = lambda self, other: shape.expand(self, other.shape)
Tensor.type_as = lambda self, other: unary.cast(self, other.dtype)
Tensor.dim = lambda self: self._data.ndim
Tensor.mT = property(lambda self: shape.transpose(self, -2, -1))
Tensor.allclose = lambda self, other, rtol=1e-05, atol=1e-08, equal_nan=False: bool(
    np.allclose(self._data, np.asarray(other), rtol, atol, equal_nan))
Tensor.equal = lambda self, other: self._data.shape == np.shape(other) and bool((self._data == np.asarray(other)).all())


def _new(fill):
    def new(self, *size, dtype=None, device=None, requires_grad=False):
        """A new tensor of ``size`` with this tensor's dtype (unless ``dtype``), as ``Tensor.new_zeros`` etc."""
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        _device.check(device)
        out = _constant(fill(size, dtype or self._data.dtype))
        return out.requires_grad_() if requires_grad else out

    return new


Tensor.new_zeros, Tensor.new_ones, Tensor.new_empty = (_new(f) for f in (np.zeros, np.ones, np.empty))
Tensor.new_full = lambda self, size, fill_value, dtype=None, device=None, requires_grad=False: _new(
    lambda shape, dtype: np.full(shape, fill_value, dtype))(self, size, dtype=dtype, device=device,
                                                             requires_grad=requires_grad)
Tensor.new_tensor = lambda self, data, dtype=None, device=None, requires_grad=False: Tensor(
    data, dtype=dtype or self._data.dtype, requires_grad=requires_grad)


def _type(self, dtype=None):
    """The dtype's name without an argument; else the tensor cast to ``dtype`` (as ``Tensor.type``)."""
    return str(self._data.dtype) if dtype is None else unary.cast(self, dtype)


Tensor.type = _type
Tensor.nelement = Tensor.numel
for _name, _dtype in (("float", np.float32), ("double", np.float64), ("long", np.int64), ("int", np.int32),
                      ("bool", np.bool_)):
    setattr(Tensor, _name, lambda self, _dtype=_dtype: unary.cast(self, _dtype))


def _to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other)``: a cast (the device is always the CPU)."""
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif isinstance(arg, _device.device) or (isinstance(arg, str) and arg.partition(":")[0] in _DEVICE_NAMES):
            device = arg
        else:
            dtype = arg
    _device.check(device)
    out = self if dtype is None else unary.cast(self, dtype)
    return unary.clone(out) if copy and out is self else out


_DEVICE_NAMES = ("cpu", "cuda", "mps", "xpu", "meta", "hip")
Tensor.to = _to
Tensor.device = property(lambda self: _device.CPU)
Tensor.is_cuda = property(lambda self: False)
Tensor.cpu = lambda self: self
Tensor.cuda = lambda self, *args, **kwargs: _device.device("cuda")


# -- in-place methods: each is its out-of-place op, stored back by ``inplace`` ------------------------
def _scaled(other, alpha):
    return other if alpha == 1 else other * alpha


def _filled(t, value):
    return _constant(np.full(t._data.shape, value, dtype=t._data.dtype))


def _copied(t, src):
    src = src if isinstance(src, Tensor) else _constant(np.asarray(src))
    return unary.cast(shape.expand(src, t._data.shape), t._data.dtype)


def _initialised(fill):
    def fast(t, *args, **options):
        from freenet.nn import init  # freenet.nn builds on this module
        getattr(init, fill)(t, *args, **options)
    return fast


_INPLACE = {  # name: (out-of-place op of (t, *tensor inputs, **options), direct writer when no graph is involved)
    "__iadd__": (arith.add, None), "__isub__": (arith.sub, None), "__imul__": (arith.mul, None),
    "__itruediv__": (arith.div, None), "__ifloordiv__": (arith.floor_divide, None),
    "__imod__": (arith.remainder, None), "__ipow__": (arith.pow, None),
    "add_": (lambda t, other, alpha=1: arith.add(t, _scaled(other, alpha)), None),
    "sub_": (lambda t, other, alpha=1: arith.sub(t, _scaled(other, alpha)), None),
    "mul_": (arith.mul, None), "div_": (arith.div, None), "pow_": (arith.pow, None),
    "neg_": (unary.neg, None), "abs_": (unary.abs, None), "exp_": (unary.exp, None), "log_": (unary.log, None),
    "sqrt_": (unary.sqrt, None), "tanh_": (unary.tanh, None), "sigmoid_": (unary.sigmoid, None),
    "relu_": (unary.relu, None), "clamp_": (unary.clip, None), "clip_": (unary.clip, None),
    "masked_fill_": (shape.masked_fill, None),
    "fill_": (_filled, None), "zero_": (lambda t: _filled(t, 0), None), "copy_": (_copied, None),
    "uniform_": (None, _initialised("uniform_")), "normal_": (None, _initialised("normal_")),
    "__setitem__": (shape.index_put, shape.setitem),
}


def _inplace_method(name, compute, fast):
    if compute is None:  # random fills: never in the graph
        def method(self, *args, **options):
            return inplace(self, None, name, fast=lambda t: fast(t, *args, **options))
    else:
        def method(self, *inputs, **options):
            return inplace(self, lambda t, *v: compute(t, *v, **options), name, *inputs, fast=fast)
    method.__name__ = method.__qualname__ = name
    return method


for _name, (_compute, _fast) in _INPLACE.items():
    setattr(Tensor, _name, _inplace_method(_name, _compute, _fast))
del _name, _compute, _fast
