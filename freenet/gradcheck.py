"""Checks an op's backward against central finite differences in float64."""

import numpy as np

from freenet.errors import FreenetError
from freenet.tensor import Tensor, _constant, no_grad


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """True if backward through ``fn(*inputs)`` agrees with finite differences for every input that
    requires grad; otherwise a FreenetError names the input and element that disagree.

    The outputs are projected on fixed random weights w, so one backward pass gives the exact
    vector-Jacobian product w^T J that the finite differences of sum(w * fn(x)) estimate.

    >>> import freenet as fn
    >>> x = fn.tensor([0.5, -1.0], dtype="float64", requires_grad=True)
    >>> fn.gradcheck(lambda x: (x * x).tanh(), x)
    True
    """
    wrt = [(k, t) for k, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise FreenetError("gradcheck: no input requires grad")
    for k, t in wrt:
        if t.dtype != np.float64:
            raise FreenetError(f"gradcheck: input {k} is {t.dtype}; finite differences need float64")
        if not t._data.flags.writeable:
            raise FreenetError(f"gradcheck: input {k} is a read-only array and cannot be perturbed")
    outputs = _outputs(fn(*inputs), fn)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in outputs]

    saved = [t.grad for _, t in wrt]
    for _, t in wrt:
        t.grad = None
    terms = [(o * _constant(w)).sum() for o, w in zip(outputs, weights) if o.requires_grad]
    if terms:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        total.backward()
    analytic = [np.zeros(t.shape) if t.grad is None else t.grad._data.copy() for _, t in wrt]
    for (_, t), grad in zip(wrt, saved):
        t.grad = grad

    def projected():
        with no_grad():
            return sum(float(np.sum(o._data * w)) for o, w in zip(_outputs(fn(*inputs), fn), weights))

    for (k, t), grad in zip(wrt, analytic):
        for index in np.ndindex(t.shape):
            original = t._data[index]
            t._data[index] = original + eps
            plus = projected()
            t._data[index] = original - eps
            minus = projected()
            t._data[index] = original
            numeric = (plus - minus) / (2 * eps)
            if not abs(grad[index] - numeric) <= atol + rtol * abs(numeric):
                raise FreenetError(f"gradcheck: input {k} (shape {t.shape}) element {index}: backward gives "
                                   f"{grad[index]:.8g}, finite differences give {numeric:.8g}")
    return True


def _outputs(result, fn):
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    if not outputs or not all(isinstance(o, Tensor) for o in outputs):
        raise FreenetError(f"gradcheck: {getattr(fn, '__name__', 'fn')} must return a Tensor or a tuple of Tensors")
    return outputs
