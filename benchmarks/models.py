"""The reference networks, written once against a PyTorch-like ``nn`` namespace.

The same function builds the freenet model (``freenet.nn``) and the PyTorch model (``torch.nn``), so the
two are identical layer for layer. Definitions: ``workloads.md`` (mirrored in ``spec.py``).
"""


def mnist_cnn(nn):
    """conv(1->32, 3x3, pad 1)-ReLU-maxpool 2-conv(32->64)-ReLU-maxpool 2-flatten-linear(3136->128)-ReLU-linear(128->10)."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def go_net(nn, board=9, blocks=6, filters=64, planes=18, value_hidden=None):
    """An AlphaGo-Zero-style residual net: (N, planes, board, board) -> (policy logits, value in [-1, 1]).

    stem conv3x3 + BN + ReLU; ``blocks`` residual blocks (conv-BN-ReLU-conv-BN, add skip, ReLU);
    policy head conv1x1 2 + BN + ReLU + linear(2*board^2 -> board^2 + 1);
    value head conv1x1 1 + BN + ReLU + linear(board^2 -> hidden) + ReLU + linear(hidden -> 1) + tanh,
    with hidden = 64 on 9x9 and 256 on 19x19 (as workloads.md) unless given.
    Convolutions have no bias (BN follows each one).
    """
    points = board * board
    hidden = value_hidden or (64 if board <= 9 else 256)

    def conv_bn(c_in, c_out, k):
        return [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)]

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(filters, filters, 3), nn.ReLU(), *conv_bn(filters, filters, 3))
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.body(x) + x)

    class GoNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(*conv_bn(planes, filters, 3), nn.ReLU(), *[Residual() for _ in range(blocks)])
            self.policy = nn.Sequential(*conv_bn(filters, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * points, points + 1))
            self.value = nn.Sequential(*conv_bn(filters, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(points, hidden),
                                       nn.ReLU(), nn.Linear(hidden, 1), nn.Tanh())

        def forward(self, x):
            h = self.trunk(x)
            return self.policy(h), self.value(h)

    return GoNet()
