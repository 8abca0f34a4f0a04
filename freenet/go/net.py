"""The residual policy/value net (``go9-6x64`` of the benchmark workloads, any size), its file format,
and the evaluator that the search calls.

    input 18 planes N x N -> conv3x3 F (no bias) + BN + ReLU
    B residual blocks: conv3x3 - BN - ReLU - conv3x3 - BN, add the block's input, ReLU
    policy head: conv1x1 2 + BN + ReLU, linear(2*N*N -> N*N + 1)            (logits; the last is the pass)
    value head:  conv1x1 1 + BN + ReLU, linear(N*N -> H) + ReLU, linear(H -> 1), tanh
                                                                      (+1: the side to move wins)

H is 256 on 19x19 (Leela Zero's fixed size, so such nets export) and 64 otherwise unless set.
A net is saved with ``freenet.save``; its shape is in the file's metadata under ``freenet.go``.
"""

import json
from dataclasses import asdict, dataclass

import numpy as np

import freenet as fn
from freenet import kernels, nn
from freenet.errors import FreenetError
from freenet.go import features, symmetry
from freenet.go.board import check_size

FORMAT = "freenet.go.net/1"
# GoNetInference runs a batch of 2 or more boards with up to SPLIT_PIXELS points in all as two halves,
# each through the whole net on its own thread: one thread hand-off per evaluation instead of one per
# convolution, whose own splits do worse at these sizes. Measured at 2 threads (ms per batch, whole /
# halves): 9x9 6x64 b2 0.95/0.77, b8 3.3/2.0, b16 5.5/3.7, b20 5.3/4.2, b24 8.0/8.0, b32 9.0/10.2;
# 13x13 b8 6.0/4.6, b12 8.5/9.4; 19x19 6x128 b2 11.0/6.7, b4 20.7/19.5, b8 28/38.
SPLIT_PIXELS = 1700


@dataclass
class NetConfig:
    size: int = 9
    blocks: int = 6
    filters: int = 64
    value_hidden: int = None

    def __post_init__(self):
        check_size(self.size)
        for name in ("blocks", "filters"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "blocks" else 1):
                raise FreenetError(f"net: {name} must be a {'non-negative' if name == 'blocks' else 'positive'} "
                                   f"integer, not {v!r}")
        if self.value_hidden is None:
            self.value_hidden = 256 if self.size == 19 else 64

    def as_dict(self):
        return asdict(self)


class ResidualBlock(nn.Module):
    def __init__(self, filters):
        super().__init__()
        self.conv1 = nn.Conv2d(filters, filters, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)

    def forward(self, x):
        y = self.bn1(self.conv1(x), relu=True)
        return self.bn2(self.conv2(y), residual=x, relu=True)


class GoNet(nn.Module):
    def __init__(self, config=None, **kwargs):
        super().__init__()
        config = config if config is not None else NetConfig(**kwargs)
        self.config = config
        N, F, H = config.size, config.filters, config.value_hidden
        self.input_conv = nn.Conv2d(features.PLANES, F, 3, padding=1, bias=False)
        self.input_bn = nn.BatchNorm2d(F)
        self.blocks = nn.ModuleList([ResidualBlock(F) for _ in range(config.blocks)])
        self.policy_conv = nn.Conv2d(F, 2, 1, bias=False)
        self.policy_bn = nn.BatchNorm2d(2)
        self.policy_fc = nn.Linear(2 * N * N, N * N + 1)
        self.value_conv = nn.Conv2d(F, 1, 1, bias=False)
        self.value_bn = nn.BatchNorm2d(1)
        self.value_fc1 = nn.Linear(N * N, H)
        self.value_fc2 = nn.Linear(H, 1)

    def forward(self, x):
        """(policy logits (B, N*N+1), value (B,) in [-1, 1]) for input planes (B, 18, N, N)."""
        x = self.input_bn(self.input_conv(x), relu=True)
        for block in self.blocks:
            x = block(x)
        p = self.policy_bn(self.policy_conv(x), relu=True)
        p = self.policy_fc(p.reshape(p.shape[0], -1))
        v = self.value_bn(self.value_conv(x), relu=True)
        v = self.value_fc1(v.reshape(v.shape[0], -1)).relu()
        v = self.value_fc2(v).tanh()
        return p, v.reshape(-1)

    def inference(self):
        """A snapshot of the net's current weights for fast evaluation (see ``GoNetInference``)."""
        return GoNetInference(self)


class GoNetInference:
    """The eval-mode forward pass of a ``GoNet`` without autograd and with little Python per layer:
    batch norm folded into each convolution, the filters transformed once (``kernels.Conv2dPrepared``),
    bias, residual add and ReLU applied in place. ``__call__(planes)`` takes a float32 ndarray
    (B, 18, N, N) and returns ndarrays (policy logits (B, N*N+1), values (B,)). Agrees with
    ``GoNet.forward`` in eval mode to float32 rounding (the folding rounds differently).

    >>> plan = new_net(size=5, blocks=1, filters=8).inference()
    >>> logits, values = plan(np.zeros((2, 18, 5, 5), np.float32))
    >>> logits.shape, values.shape
    ((2, 26), (2,))
    """

    def __init__(self, net):
        def conv(c, bn):
            return kernels.Conv2dPrepared(*nn.fold_batch_norm(c, bn), padding=c.padding)

        def head(c, bn):  # a 1x1 convolution as (outputs, F) weights and (outputs, 1) biases
            w, b = nn.fold_batch_norm(c, bn)
            return np.ascontiguousarray(w.reshape(w.shape[0], -1)), b.reshape(-1, 1)

        self.config = net.config
        self.stem = conv(net.input_conv, net.input_bn)
        self.blocks = [(conv(b.conv1, b.bn1), conv(b.conv2, b.bn2)) for b in net.blocks]
        self.policy_conv = head(net.policy_conv, net.policy_bn)
        self.value_conv = head(net.value_conv, net.value_bn)
        self.linears = [(layer.weight.data.T.copy(), layer.bias.data.copy())
                        for layer in (net.policy_fc, net.value_fc1, net.value_fc2)]

    def __call__(self, planes):
        x = np.ascontiguousarray(planes, np.float32)
        if x.ndim != 4 or x.shape[1:] != (features.PLANES, self.config.size, self.config.size):
            raise FreenetError(f"net: expected input planes (B, {features.PLANES}, {self.config.size}, "
                               f"{self.config.size}), got shape {x.shape}")
        if len(x) < 2 or x[0, 0].size * len(x) > SPLIT_PIXELS:
            return self._forward(x)
        # The halves depend on the batch size alone, not on the threads: the same bits with any number.
        parts = kernels.block_ranges(len(x), -(-len(x) // 2))
        outs = kernels.run_blocks(lambda i: self._forward(x[parts[i][0]:parts[i][1]]), len(parts))
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def _forward(self, x):
        x = self.stem(x, relu=True)
        for conv1, conv2 in self.blocks:
            x = conv2(conv1(x, relu=True), residual=x, relu=True)
        h = x.reshape(x.shape[0], x.shape[1], -1)
        (wp, bp), (wv, bv) = self.policy_conv, self.value_conv
        p = np.maximum(kernels.matmul(wp, h) + bp, 0).reshape(len(x), -1)
        v = np.maximum(kernels.matmul(wv, h) + bv, 0).reshape(len(x), -1)
        (w1, b1), (w2, b2), (w3, b3) = self.linears
        logits = kernels.matmul(p, w1) + b1
        v = kernels.tanh(kernels.matmul(np.maximum(kernels.matmul(v, w2) + b2, 0), w3) + b3)
        return logits, v.reshape(-1)


def new_net(size=9, blocks=6, filters=64, value_hidden=None, seed=0):
    """A net with fresh weights drawn from ``seed`` (PyTorch's default initialisation)."""
    fn.manual_seed(seed)
    return GoNet(NetConfig(size, blocks, filters, value_hidden))


def save_net(net, path, extra=None):
    metadata = {"freenet.go": json.dumps({"format": FORMAT, **net.config.as_dict()})}
    metadata.update(extra or {})
    fn.save(net.state_dict(), path, metadata=metadata)


def load_net(path):
    """The net in a file written by ``save_net`` (``freenet go init``, ``train``, ``import-lz``)."""
    try:
        meta = fn.load_metadata(path) or {}
    except FileNotFoundError:
        raise FreenetError(f"no such model file: {path}") from None
    except OSError as e:
        raise FreenetError(f"cannot read model {path}: {e}") from None
    if "freenet.go" not in meta:
        raise FreenetError(f"{path} is not a freenet Go net (no 'freenet.go' metadata)")
    try:
        info = json.loads(meta["freenet.go"])
        config = NetConfig(int(info["size"]), int(info["blocks"]), int(info["filters"]), int(info["value_hidden"]))
    except (ValueError, KeyError, TypeError) as e:
        raise FreenetError(f"{path}: bad 'freenet.go' metadata: {e}") from None
    net = GoNet(config)
    net.load_state_dict(fn.load(path))
    net.eval()
    return net


class Evaluator:
    """Runs a net on positions: ``evaluate(boards)`` gives (priors over N*N+1 moves, softmax of the
    logits, illegal moves zeroed and renormalised; values for the side to move). ``symmetry`` is a fixed
    symmetry (0-7), ``"random"`` for one drawn per position from ``rng``, or ``"average"`` for the mean
    over all 8. Counts positions and batches for speed reports."""

    def __init__(self, net, symmetry_mode=0, rng=None, max_batch=256):
        self.net = net
        self.size = net.config.size
        self.symmetry_mode = symmetry_mode
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.max_batch = max_batch
        self.positions = self.batches = 0
        net.eval()
        self.forward = net.inference()  # a snapshot: later changes to the net's weights are not seen

    def raw(self, planes):
        """(softmax policy, value) of input planes (B, 18, N, N), no symmetry, no masking."""
        logits, values = self.forward(planes)
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = kernels.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p, values.astype(np.float64)

    def raw_symmetric(self, planes, syms):
        """The policy on the boards' own points and the value, with symmetry ``syms[i]`` for position ``i``."""
        x = np.stack([symmetry.transform_planes(planes[i], s) for i, s in enumerate(syms)])
        p, v = self.raw(x)
        return np.stack([symmetry.untransform_policy(p[i], s) for i, s in enumerate(syms)]), v

    def evaluate(self, boards, masks=None):
        if not boards:
            return np.zeros((0, self.size ** 2 + 1)), np.zeros(0)
        planes = features.batch_planes(boards)
        policies, values = [], []
        for start in range(0, len(boards), self.max_batch):
            chunk = planes[start:start + self.max_batch]
            if self.symmetry_mode == "average":
                ps, vs = zip(*(self.raw_symmetric(chunk, [s] * len(chunk)) for s in range(symmetry.COUNT)))
                p, v = np.mean(ps, axis=0), np.mean(vs, axis=0)
            else:
                if self.symmetry_mode == "random":
                    syms = self.rng.integers(0, symmetry.COUNT, size=len(chunk))
                else:
                    syms = [int(self.symmetry_mode)] * len(chunk)
                p, v = self.raw_symmetric(chunk, syms)
            policies.append(p)
            values.append(v)
            self.batches += 1
        self.positions += len(boards)
        p, v = np.concatenate(policies), np.concatenate(values)
        masks = np.stack([b.legal_mask() for b in boards]) if masks is None else masks
        p = p * masks
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1), masks / np.maximum(masks.sum(1, keepdims=True), 1))
        return p, v
