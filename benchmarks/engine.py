"""Engine overhead: graphs so small that Python per op, not arithmetic, sets the time.

- tiny: two ops on 1-element tensors, forward + backward: ``(a * b + a).backward()``
- mm64: ``(x @ w).relu().sum()`` on 64x64 matrices, forward + backward
"""

import numpy as np

from benchmarks.peers import Unavailable


def tiny_graph(framework):
    if framework == "freenet":
        import freenet as fn
        a = fn.tensor([1.5], requires_grad=True)
        b = fn.tensor([2.0], requires_grad=True)
    elif framework == "torch":
        import torch as fn
        a = fn.tensor([1.5], requires_grad=True)
        b = fn.tensor([2.0], requires_grad=True)
    else:
        raise Unavailable(f"{framework} has no tiny-graph workload")

    def step():
        a.grad = b.grad = None
        (a * b + a).sum().backward()

    return step


def matmul64_graph(framework):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((64, 64), dtype=np.float32)
    w0 = rng.standard_normal((64, 64), dtype=np.float32)
    if framework == "freenet":
        import freenet as fn
        x, w = fn.tensor(x0, requires_grad=True), fn.tensor(w0, requires_grad=True)
    elif framework == "torch":
        import torch
        x, w = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    else:
        raise Unavailable(f"{framework} has no 64x64 workload")

    def step():
        x.grad = w.grad = None
        (x @ w).relu().sum().backward()

    return step


WORKLOADS = {
    "engine/tiny-graph": tiny_graph,
    "engine/matmul64-relu-sum": matmul64_graph,
}
