"""Whole training steps of the reference networks (forward + backward + optimizer step)."""

import numpy as np

from benchmarks.peers import Unavailable


def mnist_cnn_step(framework, batch=128):
    """mnist-cnn: conv(1->32)-ReLU-pool-conv(32->64)-ReLU-pool-linear(3136->128)-ReLU-linear(128->10),
    cross-entropy, SGD momentum 0.9, batch 128."""
    rng = np.random.default_rng(0)
    x0 = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y0 = rng.integers(0, 10, batch)
    if framework == "freenet":
        import freenet as fn
        from freenet import nn, optim
        from freenet.nn import functional as F
        fn.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
        x, y = fn.tensor(x0), fn.tensor(y0)
    elif framework == "torch":
        import torch
        from torch import nn, optim
        from torch.nn import functional as F
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
        x, y = torch.tensor(x0), torch.tensor(y0)
    else:
        raise Unavailable(f"{framework} has no mnist-cnn workload")
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


WORKLOADS = {"net/mnist-cnn-train-b128": mnist_cnn_step}
