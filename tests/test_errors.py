"""User errors raise FreenetError (a ValueError) naming the op and the shapes, with no NumPy trace."""

import numpy as np
import pytest

import freenet as fn
from freenet.nn import functional as F


def raises(match):
    return pytest.raises(fn.FreenetError, match=match)


CASES = [
    ("add", lambda: fn.zeros(2, 3) + fn.zeros(4), r"add: .*\(2, 3\).*\(4,\)"),
    ("mul", lambda: fn.zeros(2, 3) * np.zeros((3, 2)), r"mul: .*\(2, 3\)"),
    ("matmul", lambda: fn.zeros(2, 3) @ fn.zeros(4, 5), r"matmul: shapes \(2, 3\) and \(4, 5\).*3 and 4"),
    ("matmul-0d", lambda: fn.zeros(()) @ fn.zeros(3), r"matmul: needs at least 1-d"),
    ("matmul-batch", lambda: fn.zeros(2, 2, 3) @ fn.zeros(3, 3, 4), r"matmul: .*\(2, 2, 3\).*\(3, 3, 4\)"),
    ("reshape", lambda: fn.zeros(2, 3).reshape(4), r"reshape: cannot reshape \(2, 3\) \(6 elements\) into \(4,\)"),
    ("sum-dim", lambda: fn.zeros(2, 3).sum(2), r"sum: .*axis 2 is out of bounds.*\(2, 3\)"),
    ("max-empty", lambda: fn.zeros(0).max(), r"max: .*\(0,\)"),
    ("transpose", lambda: fn.zeros(2, 3).transpose(0, 5), r"transpose: .*\(2, 3\)"),
    ("permute", lambda: fn.zeros(2, 3).permute(0), r"permute: 1 dims given for a tensor of 2 dims"),
    ("expand", lambda: fn.zeros(2, 3).expand(4, 3), r"expand: .*\(2, 3\)"),
    ("cat", lambda: fn.cat([fn.zeros(2, 3), fn.zeros(2, 4)]), r"cat: .*"),
    ("cat-empty", lambda: fn.cat([]), r"cat: needs at least one tensor"),
    ("stack", lambda: fn.stack([fn.zeros(2), fn.zeros(3)]), r"stack: .*"),
    ("pad", lambda: F.pad(fn.zeros(2), (1, 1, 1, 1)), r"pad: needs pairs for at most 1 dims"),
    ("index", lambda: fn.zeros(2, 3)[5], r"getitem: .*index 5 is out of bounds.*\(2, 3\)"),
    ("index-float", lambda: fn.zeros(3)[np.array([0.5])], r"index: arrays used as indices must be integer"),
    ("where", lambda: fn.where(fn.tensor([1.0]), fn.zeros(1), fn.zeros(1)), r"where: condition must be bool"),
    ("clip", lambda: fn.zeros(2).clip(), r"clip: give min, max or both"),
    ("gelu", lambda: F.gelu(fn.zeros(2), approximate="fast"), r"gelu: approximate must be"),
    ("requires_grad-int", lambda: fn.tensor([1, 2], requires_grad=True), r"requires_grad: only float32 and float64"),
    ("tensor-dtype", lambda: fn.tensor(["a"]), r"tensor: dtype <U1 is not supported"),
    ("tensor-ragged", lambda: fn.tensor([[1.0], [1.0, 2.0]]), r"tensor: cannot make a tensor"),
    ("combine", lambda: fn.zeros(2) + "x", r"cannot combine a tensor with str"),
    ("item", lambda: fn.zeros(2).item(), r"item: only one-element tensors"),
    ("backward-no-grad", lambda: fn.zeros(2).sum().backward(), r"backward: tensor of shape \(\) does not require grad"),
    ("backward-non-scalar", lambda: fn.zeros(2, requires_grad=True).exp().backward(),
     r"backward: grad can be implied only for a one-element tensor, not shape \(2,\)"),
    ("backward-grad-shape", lambda: fn.zeros(2, requires_grad=True).exp().backward(fn.zeros(3)),
     r"backward: grad of shape \(3,\) does not match tensor of shape \(2,\)"),
    ("gradcheck-float32", lambda: fn.gradcheck(fn.exp, fn.zeros(2, requires_grad=True)), r"gradcheck: input 0 is float32"),
    ("gradcheck-no-input", lambda: fn.gradcheck(fn.exp, fn.zeros(2)), r"gradcheck: no input requires grad"),
]


@pytest.mark.parametrize("name,call,match", CASES, ids=[c[0] for c in CASES])
def test_error_names_the_op_and_shapes(name, call, match):
    with raises(match) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None and info.value.__suppress_context__ or info.value.__context__ is None


def test_freenet_error_is_a_value_error():
    assert issubclass(fn.FreenetError, ValueError)
