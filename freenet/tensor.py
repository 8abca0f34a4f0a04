"""The engine core: Tensor, the graph that ops record, and reverse-mode backward in generation order.

An op computes its result with NumPy (or a kernel), then calls ``record(out, inputs, backward)``.
``backward(g)`` maps the gradient of the output to one gradient per input (or None). The engine
sums broadcast axes and casts dtypes back to each input's shape and dtype, so ops need not.

>>> import freenet as fn
>>> x = fn.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4., 6.])
"""

import heapq

import numpy as np

from freenet.errors import FreenetError

_grad_enabled = True

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SUPPORTED_KINDS = "fiub"  # float, signed/unsigned int, bool


class _GradMode:
    """Sets whether ops record the graph; a context manager and a function decorator."""

    enabled = True

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous

    def __call__(self, fn):
        mode = type(self)

        def wrapped(*args, **kwargs):
            with mode():
                return fn(*args, **kwargs)

        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped


class no_grad(_GradMode):
    """Ops inside ``with freenet.no_grad():`` record no graph: results never require grad."""

    enabled = False


class enable_grad(_GradMode):
    """Turns graph recording back on inside a ``no_grad`` block."""

    enabled = True


def is_grad_enabled():
    return _grad_enabled


def as_array(data, dtype=None):
    """A fresh ndarray for ``tensor(data)``: floats from Python default to float32, NumPy keeps its dtype."""
    if isinstance(data, Tensor):
        data = data.data
    from_numpy = isinstance(data, (np.ndarray, np.generic))
    try:
        array = np.array(data, dtype=dtype, copy=True)
    except (TypeError, ValueError) as e:
        raise FreenetError(f"tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
    if array.dtype.kind not in _SUPPORTED_KINDS or array.dtype == np.float16:
        raise FreenetError(f"tensor: dtype {array.dtype} is not supported (use float32, float64, int or bool)")
    if dtype is None and not from_numpy and array.dtype == np.float64:
        array = array.astype(np.float32)
    return array


class Tensor:
    """An n-dimensional array that records the ops applied to it, for reverse-mode differentiation.

    ``data`` is the underlying ndarray; ``grad`` is filled by ``backward()`` on tensors that require grad.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_parents", "_backward", "_generation", "_retains_grad",
                 "__weakref__")
    __array_ufunc__ = None  # NumPy scalars and arrays defer to Tensor's reflected operators
    __hash__ = object.__hash__  # __eq__ is elementwise; identity stays the hash

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = as_array(data, dtype)
        self.grad = None
        self._requires_grad = False
        self._parents = ()
        self._backward = None
        self._generation = 0
        self._retains_grad = False
        if requires_grad:
            self.requires_grad = True

    # -- autograd state ------------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag and self.data.dtype not in _FLOATS:
            raise FreenetError(f"requires_grad: only float32 and float64 tensors can require grad, "
                               f"not {self.data.dtype}")
        if not flag and self._backward is not None:
            raise FreenetError("requires_grad: cannot turn it off on a non-leaf tensor; use detach()")
        self._requires_grad = bool(flag)

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return self._backward is None

    def retain_grad(self):
        """Keep ``grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retains_grad = True

    def detach(self):
        """The same data, cut from the graph."""
        return _constant(self.data)

    def backward(self, grad=None, retain_graph=False):
        """Accumulates d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        The graph is freed afterwards unless ``retain_graph`` is true.
        """
        if not self._requires_grad:
            raise FreenetError(f"backward: tensor of shape {self.shape} does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad)")
        if grad is None:
            if self.data.size != 1:
                raise FreenetError(f"backward: grad can be implied only for a one-element tensor, "
                                   f"not shape {self.shape}; pass grad=")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if grad.shape != self.data.shape:
                raise FreenetError(f"backward: grad of shape {grad.shape} does not match tensor "
                                   f"of shape {self.shape}")
        _run_backward(self, grad, retain_graph)

    # -- array facts -----------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    def size(self, dim=None):
        """The shape (as in PyTorch), or its length along ``dim``; ``numel()`` counts elements."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    def numpy(self):
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self):
        if self.data.size != 1:
            raise FreenetError(f"item: only one-element tensors convert to a Python number, not shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __len__(self):
        if self.data.ndim == 0:
            raise FreenetError("len: a 0-d tensor has no length")
        return self.data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        if self.data.size != 1:
            raise FreenetError(f"bool: the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype not in (np.float32, np.int64, np.bool_):
            extra += f", dtype={self.data.dtype}"
        if self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"


def _constant(data):
    """A tensor around an existing ndarray, outside the graph (no copy)."""
    out = Tensor.__new__(Tensor)
    out.data = data if type(data) is np.ndarray else np.asarray(data)
    out.grad = None
    out._requires_grad = False
    out._parents = ()
    out._backward = None
    out._generation = 0
    out._retains_grad = False
    return out


def record(data, parents, backward):
    """The result of an op: a tensor around ``data`` that remembers how to send gradients to ``parents``.

    ``backward(g)`` returns one gradient per parent (an array, or None where there is none).
    This is the public way to write a new differentiable op:

    >>> import numpy as np, freenet as fn
    >>> def cube(x):
    ...     return fn.autograd.record(x.data ** 3, (x,), lambda g: (g * 3 * x.data ** 2,))
    >>> x = fn.tensor(2.0, requires_grad=True); cube(x).backward(); x.grad
    tensor(12.)
    """
    out = _constant(data)
    if _grad_enabled:
        for p in parents:
            if p._requires_grad:
                out._requires_grad = True
                out._parents = parents
                out._backward = backward
                out._generation = max(q._generation for q in parents) + 1
                break
    return out


def _run_backward(root, grad, retain_graph):
    if root._backward is None:  # backward on a leaf: its gradient is grad itself
        _accumulate(root, grad)
        return
    grads = {id(root): grad}
    # Consumers always have a higher generation than what they consume, so popping the highest
    # generation first means a node's gradient is complete when it is popped.
    heap = [(-root._generation, 0, root)]
    pushed = 1
    while heap:
        node = heapq.heappop(heap)[2]
        g = grads.pop(id(node))
        if node._retains_grad:
            _accumulate(node, g)
        backward = node._backward
        if type(backward) is str:
            raise FreenetError(f"backward: the graph through '{backward}' was already freed by an earlier "
                               "backward(); pass retain_graph=True to the first backward to go through it twice")
        parent_grads = backward(g)
        for parent, pg in zip(node._parents, parent_grads):
            if pg is None or not parent._requires_grad:
                continue
            pg = _fit(pg, parent, node)
            if parent._backward is None:
                _accumulate(parent, pg)
            else:
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + pg
                else:
                    grads[key] = pg
                    heapq.heappush(heap, (-parent._generation, pushed, parent))
                    pushed += 1
        if not retain_graph:  # drop what the closure holds; keep the op's name for the error above
            node._backward = backward.__qualname__.split(".")[0]
            node._parents = ()


def _fit(g, parent, node):
    """The gradient reshaped (summing broadcast axes) and cast to the parent's shape and dtype."""
    if type(g) is not np.ndarray:
        g = np.asarray(g)
    shape = parent.data.shape
    if g.shape != shape:
        g = unbroadcast(g, shape, node._backward.__qualname__.split(".")[0])
    if g.dtype != parent.data.dtype:
        g = g.astype(parent.data.dtype)
    return g


def unbroadcast(g, shape, op="backward"):
    """Sum ``g`` over the axes that broadcasting added or stretched, to get back ``shape``."""
    extra = g.ndim - len(shape)
    if extra < 0:
        raise FreenetError(f"{op}: gradient of shape {g.shape} cannot reduce to input shape {shape}")
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if extra:
        g = g.reshape(g.shape[extra:])
    if g.shape != shape:
        raise FreenetError(f"{op}: gradient of shape {g.shape} does not match input shape {shape}")
    return g


def _accumulate(t, g):
    if t.grad is None:
        # Own the array: g may be shared with another input (add) or be a read-only broadcast view.
        t.grad = _constant(np.array(g, dtype=t.data.dtype, copy=True))
    else:
        t.grad = _constant(t.grad.data + g)


# -- operators and methods: the ops live in freenet/ops, which build on the Tensor above ---------------
from freenet.ops import arith, linalg, reduce, shape, unary  # noqa: E402


def _reflected(fn):
    return lambda self, other: fn(other, self)


Tensor.__add__, Tensor.__radd__ = arith.add, _reflected(arith.add)
Tensor.__sub__, Tensor.__rsub__ = arith.sub, _reflected(arith.sub)
Tensor.__mul__, Tensor.__rmul__ = arith.mul, _reflected(arith.mul)
Tensor.__truediv__, Tensor.__rtruediv__ = arith.div, _reflected(arith.div)
Tensor.__pow__, Tensor.__rpow__ = arith.pow, _reflected(arith.pow)
Tensor.__matmul__, Tensor.__rmatmul__ = linalg.matmul, _reflected(linalg.matmul)
Tensor.__neg__, Tensor.__abs__ = unary.neg, unary.abs
Tensor.__lt__, Tensor.__le__, Tensor.__gt__ = arith.lt, arith.le, arith.gt
Tensor.__ge__, Tensor.__eq__, Tensor.__ne__ = arith.ge, arith.eq, arith.ne
Tensor.__getitem__ = shape.getitem

for _name in ("abs", "exp", "log", "log1p", "sqrt", "tanh", "sigmoid", "relu", "clip"):
    setattr(Tensor, _name, getattr(unary, _name))
for _name in ("sum", "mean", "var", "max", "min", "logsumexp", "softmax", "log_softmax", "argmax", "argmin"):
    setattr(Tensor, _name, getattr(reduce, _name))
for _name in ("reshape", "transpose", "permute", "flatten", "squeeze", "unsqueeze", "expand"):
    setattr(Tensor, _name, getattr(shape, _name))
Tensor.view = shape.reshape
Tensor.T = property(shape.T)
Tensor.matmul = linalg.matmul
Tensor.maximum, Tensor.minimum = arith.maximum, arith.minimum
Tensor.to = unary.cast
Tensor.float = lambda self: unary.cast(self, np.float32)
Tensor.double = lambda self: unary.cast(self, np.float64)
del _name
