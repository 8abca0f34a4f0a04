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
import weakref

import numpy as np

from freenet import errors
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
        enabled = self.enabled

        def wrapped(*args, **kwargs):
            global _grad_enabled
            previous, _grad_enabled = _grad_enabled, enabled
            try:
                return fn(*args, **kwargs)
            finally:
                _grad_enabled = previous

        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped


class no_grad(_GradMode):
    """Ops inside ``with freenet.no_grad():`` record no graph: results never require grad."""

    enabled = False


class enable_grad(_GradMode):
    """Turns graph recording back on inside a ``no_grad`` block."""

    enabled = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` as a context manager (like ``no_grad``) or a plain call."""

    def __init__(self, mode):
        global _grad_enabled
        self.enabled = bool(mode)
        self._before_call = _grad_enabled
        _grad_enabled = self.enabled  # a plain call takes effect now; __exit__ restores the state before it

    def __enter__(self):
        self._previous = self._before_call


class inference_mode(_GradMode):
    """``no_grad`` (freenet has no separate inference mode); ``inference_mode(False)`` records."""

    def __init__(self, mode=True):
        self.enabled = not mode


def is_grad_enabled():
    return _grad_enabled


def as_array(data, dtype=None):
    """A fresh ndarray for ``tensor(data)``: floats from Python default to float32, NumPy keeps its dtype."""
    if isinstance(data, Tensor):
        data = data._data
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


class Node:
    """Where a tensor's gradient goes in backward.

    A recorded op's node holds the op's ``backward`` and the nodes of its inputs (None for an input
    that needs no gradient). A leaf that requires grad has a node without ``backward`` that adds
    into the leaf's ``grad``. Tensors point at nodes and nodes never at tensors (a weak reference
    for leaves and ``retain_grad``), so an in-place op can give a tensor a new node while the ops
    recorded before it keep the old one. ``saved`` lists (version counter, count at record) of the
    tensors the backward reads (a tensor, or a counter for the op's own output), checked before it runs.
    """

    __slots__ = ("backward", "parents", "generation", "shape", "dtype", "tensor", "saved")

    def __init__(self, backward, parents, generation, data, tensor=None, saved=()):
        self.backward = backward
        self.parents = parents
        self.generation = generation
        self.shape = data.shape
        self.dtype = data.dtype
        self.tensor = tensor
        self.saved = saved


class Version:
    """How many times a tensor's memory was changed in place; views share their base's counter."""

    __slots__ = ("count", "viewed")

    def __init__(self):
        self.count = 0
        self.viewed = False


class Tensor:
    """An n-dimensional array that records the ops applied to it, for reverse-mode differentiation.

    ``numpy()`` is the underlying ndarray; ``grad`` is filled by ``backward()`` on tensors that require grad.
    """

    __slots__ = ("_data", "grad", "_node", "_version", "__weakref__")
    __array_ufunc__ = None  # NumPy scalars and arrays defer to Tensor's reflected operators
    __hash__ = object.__hash__  # __eq__ is elementwise; identity stays the hash

    def __init__(self, data, dtype=None, requires_grad=False):
        self._data = as_array(data, dtype)
        self.grad = None
        self._node = None
        self._version = None
        if requires_grad:
            self.requires_grad = True

    @property
    def data(self):
        """This tensor's memory as a tensor outside the graph, as PyTorch's ``.data``: what is done to it (say
        ``p.data.add_(u)``) changes this tensor without autograd knowing. ``numpy()`` gives the ndarray."""
        return _constant(self._data)

    @data.setter
    def data(self, value):
        """``t.data = other``: ``t`` now holds ``other``'s memory (any shape), as in PyTorch."""
        self._data = value._data if isinstance(value, Tensor) else as_array(value)

    # -- autograd state ------------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._node is not None

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag:
            if self._data.dtype not in _FLOATS:
                raise FreenetError(f"requires_grad: only float32 and float64 tensors can require grad, "
                                   f"not {self._data.dtype}")
            if self._node is None:
                self._node = Node(None, (), 0, self._data, weakref.ref(self))
        elif self._node is not None:
            if self._node.backward is not None:
                raise FreenetError("requires_grad: cannot turn it off on a non-leaf tensor; use detach()")
            self._node = None

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return self._node is None or self._node.backward is None

    @property
    def version(self):
        """How many in-place changes this tensor's memory has had (shared with its views)."""
        return 0 if self._version is None else self._version.count

    def retain_grad(self):
        """Keep ``grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        if self._node is None:
            raise FreenetError("retain_grad: the tensor does not require grad")
        if self._node.backward is not None:
            self._node.tensor = weakref.ref(self)

    def detach(self):
        """The same data (and memory), cut from the graph."""
        return view(_constant(self._data), self)

    def backward(self, grad=None, retain_graph=False):
        """Accumulates d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        The graph is freed afterwards unless ``retain_graph`` is true.
        """
        if self._node is None:
            raise FreenetError(f"backward: tensor of shape {self.shape} does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad)")
        if grad is None:
            if self._data.size != 1:
                raise FreenetError(f"backward: grad can be implied only for a one-element tensor, "
                                   f"not shape {self.shape}; pass grad=")
            grad = np.ones_like(self._data)
        else:
            grad = np.asarray(grad._data if isinstance(grad, Tensor) else grad, dtype=self._data.dtype)
            if grad.shape != self._data.shape:
                raise FreenetError(f"backward: grad of shape {grad.shape} does not match tensor "
                                   f"of shape {self.shape}")
        _run_backward(self._node, grad, retain_graph)

    # -- array facts -----------------------------------------------------------------------------
    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def dtype(self):
        return self._data.dtype

    def size(self, dim=None):
        """The shape (as in PyTorch), or its length along ``dim``; ``numel()`` counts elements."""
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self):
        return self._data.size

    def numpy(self):
        """The underlying ndarray (shared, not copied)."""
        return self._data

    def item(self):
        if self._data.size != 1:
            raise FreenetError(f"item: only one-element tensors convert to a Python number, not shape {self.shape}")
        return self._data.item()

    def tolist(self):
        return self._data.tolist()

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)

    def __len__(self):
        if self._data.ndim == 0:
            raise FreenetError("len: a 0-d tensor has no length")
        return self._data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        if self._data.size != 1:
            raise FreenetError(f"bool: the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self._data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.size != 1 or self._data.dtype.kind not in "iub":
            raise FreenetError(f"index: only a one-element integer tensor can be used as an index, "
                               f"not shape {self.shape} {self.dtype}")
        return int(self._data.item())

    def __repr__(self):
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extra = ""
        if self._data.dtype not in (np.float32, np.int64, np.bool_):
            extra += f", dtype={self._data.dtype}"
        if self._node is not None:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"


def _constant(data):
    """A tensor around an existing ndarray, outside the graph (no copy)."""
    out = Tensor.__new__(Tensor)
    out._data = data if type(data) is np.ndarray else np.asarray(data)
    out.grad = None
    out._node = None
    out._version = None
    return out


def _counter(t):
    if t._version is None:
        t._version = Version()
    return t._version


def view(out, base):
    """Marks ``out`` as a view of ``base`` when their memory overlaps: they then share a version
    counter, so changing either in place invalidates what backward saved of the other."""
    if np.may_share_memory(out._data, base._data):
        counter = _counter(base)
        counter.viewed = True
        out._version = counter
    return out


def record(data, parents, backward, saved=None, output_saved=False):
    """The result of an op: a tensor around ``data`` that remembers how to send gradients to ``parents``.

    ``backward(g)`` returns one gradient per parent (an array, or None where there is none).
    ``saved`` lists the tensors whose values ``backward`` reads (by default all of ``parents``) and
    ``output_saved`` says that it reads ``data``: changing one of them in place before backward is
    then an error instead of a wrong gradient. This is the public way to write a new differentiable op:

    >>> import numpy as np, freenet as fn
    >>> def cube(x):
    ...     return fn.autograd.record(x.numpy() ** 3, (x,), lambda g: (g * 3 * x.numpy() ** 2,))
    >>> x = fn.tensor(2.0, requires_grad=True); cube(x).backward(); x.grad
    tensor(12.)
    """
    out = _constant(data)
    if not _grad_enabled:
        return out
    generation = -1
    for p in parents:
        n = p._node
        if n is not None and n.generation > generation:
            generation = n.generation
    if generation < 0:
        return out
    # (tensor, its version now) for inputs; the output's own counter (not the output: no reference cycle)
    saved = parents if saved is None else saved
    versions = tuple([(t, 0 if t._version is None else t._version.count) for t in saved])
    if output_saved:
        out._version = Version()
        versions += ((out._version, 0),)
    out._node = Node(backward, tuple(p._node for p in parents), generation + 1, out._data, None, versions)
    return out


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs`` (a tensor or a sequence), as a tuple, without
    touching any ``.grad`` (``torch.autograd.grad``). ``create_graph`` (gradients of gradients) is not supported."""
    if create_graph:
        raise FreenetError("grad: create_graph=True (higher-order gradients) is not supported by freenet")
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    found = {}
    for t in inputs:
        if t._node is None:
            raise FreenetError(f"grad: an input of shape {t.shape} does not require grad")
        found[id(t._node)] = None
    for out, g in zip(outputs, grad_outputs):
        if out._node is None:
            raise FreenetError(f"grad: an output of shape {out.shape} does not require grad")
        if g is None:
            if out._data.size != 1:
                raise FreenetError(f"grad: grad_outputs are needed for an output of shape {out.shape}")
            g = np.ones_like(out._data)
        g = np.asarray(g._data if isinstance(g, Tensor) else g, dtype=out._data.dtype)
        _run_backward(out._node, g, bool(retain_graph), found)
    result = []
    for t in inputs:
        g = found[id(t._node)]
        if g is None and not allow_unused:
            raise FreenetError(f"grad: an input of shape {t.shape} was not used to compute the outputs "
                               "(pass allow_unused=True to get None for it)")
        result.append(None if g is None else _constant(np.array(g, dtype=t._data.dtype)))
    return tuple(result)


def _op_name(backward):
    return backward.__qualname__.split(".")[0]


def _run_backward(root, grad, retain_graph, found=None):
    """Sends ``grad`` back from ``root``: into the ``grad`` of leaves (and retained tensors), or, given
    ``found`` (a dict keyed by id(node)), into ``found`` for those nodes only (``grad()``)."""
    if found is not None:
        _deliver = lambda node, g, backward=None: _gather(found, node, g, backward)  # noqa: E731
    else:
        _deliver = _accumulate
    if root.backward is None:  # backward on a leaf: its gradient is grad itself
        _deliver(root, grad)
        return
    grads = {id(root): grad}
    # Consumers always have a higher generation than what they consume, so popping the highest
    # generation first means a node's gradient is complete when it is popped.
    heap = [(-root.generation, 0, root)]
    pushed = 1
    while heap:
        node = heapq.heappop(heap)[2]
        g = grads.pop(id(node))
        if node.tensor is not None or (found is not None and id(node) in found):  # retain_grad, or grad()
            _deliver(node, g)
        backward = node.backward
        if type(backward) is str:
            raise FreenetError(f"backward: the graph through '{backward}' was already freed by an earlier "
                               "backward(); pass retain_graph=True to the first backward to go through it twice")
        for holder, count in node.saved:
            now = holder.count if type(holder) is Version else 0 if holder._version is None else holder._version.count
            if now != count:
                raise FreenetError(f"backward: a tensor that '{_op_name(backward)}' needs for its gradient was "
                                   f"changed in place after the op used it (version {now}, expected {count}); "
                                   "clone() it before changing it, or change a copy")
        parent_grads = backward(g)
        for parent, pg in zip(node.parents, parent_grads):
            if pg is None or parent is None:
                continue
            if parent.backward is None:
                _deliver(parent, pg, backward)
            else:
                pg = _fit(pg, parent.shape, parent.dtype, backward)
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + pg
                else:
                    grads[key] = pg
                    heapq.heappush(heap, (-parent.generation, pushed, parent))
                    pushed += 1
        if not retain_graph:  # drop what the closure holds; keep the op's name for the error above
            node.backward = _op_name(backward)
            node.parents = node.saved = ()


def _fit(g, shape, dtype, backward):
    """The gradient reshaped (summing broadcast axes) and cast to its input's shape and dtype."""
    if type(g) is not np.ndarray:
        g = np.asarray(g)
    if g.shape != shape:
        g = unbroadcast(g, shape, _op_name(backward))
    if g.dtype != dtype:
        g = g.astype(dtype)
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


def _gather(found, node, g, backward):
    if id(node) not in found:
        return
    if backward is not None:
        g = _fit(g, node.shape, node.dtype, backward)
    found[id(node)] = g if found[id(node)] is None else found[id(node)] + g


def _accumulate(node, g, backward=None):
    t = node.tensor()
    if t is None:  # the leaf is gone: nobody can read its gradient
        return
    if backward is not None:  # a leaf's array may have been replaced since (module.double())
        g = _fit(g, t._data.shape, t._data.dtype, backward)
    if t.grad is None:
        # Own the array: g may be shared with another input (add) or be a read-only broadcast view.
        t.grad = _constant(np.array(g, dtype=t._data.dtype, copy=True))
    else:
        t.grad = _constant(t.grad._data + g)


def inplace(t, compute, name, *inputs, fast=None):
    """Changes ``t`` in place to ``compute(t, *inputs)`` (an out-of-place op) and returns ``t``, as
    PyTorch's in-place methods do.

    When autograd records and anything involved requires grad, the op runs on a copy of ``t``'s old
    value (so its backward reads the old value) and ``t`` takes the op's node: ops recorded before
    keep ``t``'s old node. Otherwise ``fast(t, *inputs)`` (if given) writes directly. ``compute=None``
    means a fill (random, say) that ``fast`` does and that does not read ``t``.
    """
    involved = _grad_enabled and (t._node is not None or any(isinstance(v, Tensor) and v._node is not None
                                                             for v in inputs))
    if involved:
        if t._node is not None and t._node.backward is None:
            raise FreenetError(f"{name}: a leaf tensor that requires grad cannot be changed in place while "
                               "autograd records; do it under `with freenet.no_grad():`")
        if t._version is not None and t._version.viewed:
            raise FreenetError(f"{name}: this tensor shares memory with a view of it (or is one); changing it in "
                               "place while autograd records is not supported: clone() it first, or use the "
                               "out-of-place op")
        old = _constant(t._data.copy())
        if compute is None:  # a fill that does not read t: the new value needs no gradient
            fast(old)
            result = old
        else:
            old._node = t._node
            result = compute(old, *(old if v is t else v for v in inputs))
    elif fast is not None:
        _writable(t, name)
        fast(t, *inputs)
        _counter(t).count += 1
        if errors.tracer is not None:
            errors.tracer.changed_in_place(t, None, name)
        return t
    else:
        with no_grad():
            result = compute(t, *inputs)
    if result._data.shape != t._data.shape:
        raise FreenetError(f"{name}: the result has shape {result._data.shape}, which does not fit in place in "
                           f"a tensor of shape {t._data.shape}")
    if not np.can_cast(result._data.dtype, t._data.dtype, "same_kind"):
        raise FreenetError(f"{name}: a {result._data.dtype} result cannot be stored in place in a "
                           f"{t._data.dtype} tensor")
    _writable(t, name)
    t._data[...] = result._data
    _counter(t).count += 1
    if errors.tracer is not None:  # an ONNX export follows t to its new value
        errors.tracer.changed_in_place(t, result, name)
    if involved:
        t._node = result._node
        if t._node is not None:
            t._node.shape, t._node.dtype = t._data.shape, t._data.dtype
    return t


def _writable(t, name):
    if not t._data.flags.writeable:
        raise FreenetError(f"{name}: the tensor's memory is read-only (a view from expand(), or a read-only "
                           "array); clone() it first")


from freenet import tensor_methods  # noqa: E402,F401  (attaches the operators and methods to Tensor)
