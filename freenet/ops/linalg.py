"""Matrix products."""

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.tensor import record


@op
def matmul(a, b):
    """``a @ b`` with NumPy's rules: 1-d operands are vectors, leading dims broadcast as a batch."""
    if a._data.ndim == 0 or b._data.ndim == 0:
        raise FreenetError(f"matmul: needs at least 1-d operands, got shapes {a._data.shape} and {b._data.shape}")
    inner_a = a._data.shape[-1]
    inner_b = b._data.shape[-2] if b._data.ndim > 1 else b._data.shape[0]
    if inner_a != inner_b:
        raise FreenetError(f"matmul: shapes {a._data.shape} and {b._data.shape} do not fit "
                           f"(inner sizes {inner_a} and {inner_b} differ)")
    out = _matmul(a._data, b._data)

    def backward(g):
        A, B = a._data, b._data
        if A.ndim == 1 and B.ndim == 1:
            return g * B, g * A
        if A.ndim == 1:  # (k) @ (..., k, n): treat a as a (1, k) matrix
            A, g = A[None, :], np.expand_dims(g, -2)
        if B.ndim == 1:  # (..., m, k) @ (k): treat b as a (k, 1) matrix
            B, g = B[:, None], np.expand_dims(g, -1)
        ga = gb = None
        plain = A.ndim == B.ndim == g.ndim == 2  # (no batch dims)
        if a.requires_grad:
            ga = _matmul(B, g.T).T if plain and _transposed(A) else _matmul(g, np.swapaxes(B, -1, -2))
            if a._data.ndim == 1:
                ga = ga[..., 0, :]
        if b.requires_grad:
            gb = _matmul(g.T, A).T if plain and _transposed(B) else _matmul(np.swapaxes(A, -1, -2), g)
            if b._data.ndim == 1:
                gb = gb[..., 0]
        return ga, gb

    return record(out, (a, b), backward)


def _transposed(m):
    """Whether the matrix ``m`` is a transposed C-contiguous one (``weight.T`` in ``linear``). Its
    gradient is then made as the transposed product, so that it has the memory order of the
    parameter it ends up in: the optimizer's updates then run over two arrays in one order (SGD on
    MNIST's (128, 3136) weight: 0.69 -> 0.15 ms)."""
    return m.ndim == 2 and not m.flags.c_contiguous and m.T.flags.c_contiguous


def _matmul(a, b):
    """Deterministic across thread counts for matrices; vectors are cheap enough for NumPy."""
    if a.ndim >= 2 and b.ndim >= 2:
        return kernels.matmul(a, b)
    return np.matmul(a, b)


def bmm(a, b):
    """Batched matrix product of (B, n, k) and (B, k, m) tensors."""
    if a._data.ndim != 3 or b._data.ndim != 3 or a._data.shape[0] != b._data.shape[0]:
        raise FreenetError(f"bmm: needs two 3-d tensors with the same batch size, got {a._data.shape} and "
                           f"{b._data.shape}")
    return matmul(a, b)


@op
def einsum(equation, *operands):
    """``numpy.einsum`` with explicit or implicit output, differentiable in every operand (each
    operand's subscripts without repeats, no ellipsis)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs, output = _einsum_parts(equation, operands)
    out = np.einsum(equation, *(t._data for t in operands))

    def backward(g):
        grads = []
        for i, t in enumerate(operands):
            if not t.requires_grad:
                grads.append(None)
                continue
            others = [s for j, s in enumerate(inputs) if j != i]
            known = set(output).union(*others)
            kept = "".join(c for c in inputs[i] if c in known)  # letters summed in this operand alone come back
            gi = np.einsum(",".join([output] + others) + "->" + kept, g, *(o._data for j, o in enumerate(operands)
                                                                        if j != i))
            shape = tuple(n if c in known else 1 for c, n in zip(inputs[i], t._data.shape))
            grads.append(np.broadcast_to(gi.reshape(shape), t._data.shape))
        return tuple(grads)

    return record(out, operands, backward)


def _einsum_parts(equation, operands):
    equation = equation.replace(" ", "")
    if "." in equation:
        raise FreenetError("einsum: ellipsis (...) is not supported")
    lhs, arrow, output = equation.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise FreenetError(f"einsum: the equation names {len(inputs)} operands, {len(operands)} were given")
    if not arrow:  # implicit output: the letters that appear once, in alphabetical order
        letters = "".join(inputs)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    for s in inputs:
        if len(set(s)) != len(s):
            raise FreenetError(f"einsum: repeated subscripts within one operand ({s!r}) are not supported")
    return inputs, output
