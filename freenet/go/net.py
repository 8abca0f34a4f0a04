"""The residual policy/value net (``go9-6x64`` of the benchmark workloads, any size), its file format,
and the evaluator that the search calls.

    input 18 planes N x N -> conv3x3 F (no bias) + BN + ReLU
    B residual blocks: conv3x3 - BN - ReLU - [pooling bias] - conv3x3 - BN, add the block's input, ReLU
    policy head: conv1x1 2 + BN + ReLU, linear(2*N*N -> N*N + 1)            (logits; the last is the pass)
    value head:  conv1x1 1 + BN + ReLU, linear(N*N -> H) + ReLU, linear(H -> 1), tanh
                                                                      (+1: the side to move wins)
  options of ``NetConfig`` (KataGo's, Wu 2019), all off by default:
    pooling:        in blocks 2, 5, 8, ... the pooling bias: y + linear(2F -> F) of (mean, max) of y over
                    the board, per channel, broadcast over the board (global context for the 3x3 convs)
    ownership head: conv1x1 1 (with bias), tanh      (N*N; +1: the point ends as the side to move's area)
    score head:     linear(H -> 1) on the value head's hidden layer (after its ReLU)
                                       (the final margin for the side to move, divided by N*N)

H is 256 on 19x19 (Leela Zero's fixed size, so such nets export) and 64 otherwise unless set.
A net is saved with ``freenet.save``; its shape is in the file's metadata under ``freenet.go``.
"""

import json
import os
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

import freenet as fn
from freenet import kernels, nn, validate
from freenet.errors import FreenetError
from freenet.go import features, symmetry
from freenet.go.board import MAX_SIZE, MIN_SIZE, check_size
from freenet.validate import FileFormatError

FORMAT = "freenet.go.net/1"
# GoNetInference runs a batch of 2 or more boards with up to SPLIT_PIXELS points in all as two halves,
# each through the whole net on its own thread: one thread hand-off per evaluation instead of one per
# convolution, whose own splits do worse at these sizes. Measured at 2 threads (ms per batch, whole /
# halves): 9x9 6x64 b2 0.95/0.77, b8 3.3/2.0, b16 5.5/3.7, b20 5.3/4.2, b24 8.0/8.0, b32 9.0/10.2;
# 13x13 b8 6.0/4.6, b12 8.5/9.4; 19x19 6x128 b2 11.0/6.7, b4 20.7/19.5, b8 28/38.
SPLIT_PIXELS = 1700
OPTIONS = ("ownership", "score", "pooling")


@dataclass
class NetConfig:
    size: int = 9
    blocks: int = 6
    filters: int = 64
    value_hidden: int = None
    ownership: bool = False
    score: bool = False
    pooling: bool = False

    def __post_init__(self):
        check_size(self.size)
        for name in ("blocks", "filters"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "blocks" else 1):
                raise FreenetError(f"net: {name} must be a {'non-negative' if name == 'blocks' else 'positive'} "
                                   f"integer, not {v!r}")
        for name in OPTIONS:
            if not isinstance(getattr(self, name), bool):
                raise FreenetError(f"net: {name} must be True or False, not {getattr(self, name)!r}")
        if self.value_hidden is None:
            self.value_hidden = 256 if self.size == 19 else 64

    @property
    def aux_heads(self):
        """Whether the net has an ownership or score head (then ``GoNet.forward`` returns 4 outputs)."""
        return self.ownership or self.score

    def as_dict(self):
        return asdict(self)


def pooled_block(index):
    """Whether residual block ``index`` (from 0) has the pooling bias when ``NetConfig.pooling`` is on:
    blocks 2, 5, 8, ... counted from 1, as KataGo places its global pooling."""
    return index % 3 == 1


class NetOutput(NamedTuple):
    """The net's outputs for a batch of B positions: policy logits (B, N*N+1), value (B,) in [-1, 1],
    ownership (B, N*N) in [-1, 1] or None, score (B,) (final margin / N*N) or None."""
    policy: object
    value: object
    ownership: object = None
    score: object = None


class ResidualBlock(nn.Module):
    """conv-BN-ReLU, then (with ``pooling``) a per-channel bias from the board-wide mean and max of
    that output, then conv-BN, the block's input added, ReLU."""

    def __init__(self, filters, pooling=False):
        super().__init__()
        self.conv1 = nn.Conv2d(filters, filters, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.pool_fc = nn.Linear(2 * filters, filters) if pooling else None

    def forward(self, x):
        y = self.bn1(self.conv1(x), relu=True)
        if self.pool_fc is not None:
            stats = fn.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)
            y = y + self.pool_fc(stats).reshape(y.shape[0], y.shape[1], 1, 1)
        return self.bn2(self.conv2(y), residual=x, relu=True)


class GoNet(nn.Module):
    def __init__(self, config=None, **kwargs):
        super().__init__()
        config = config if config is not None else NetConfig(**kwargs)
        self.config = config
        N, F, H = config.size, config.filters, config.value_hidden
        self.input_conv = nn.Conv2d(features.PLANES, F, 3, padding=1, bias=False)
        self.input_bn = nn.BatchNorm2d(F)
        self.blocks = nn.ModuleList([ResidualBlock(F, config.pooling and pooled_block(i))
                                     for i in range(config.blocks)])
        self.policy_conv = nn.Conv2d(F, 2, 1, bias=False)
        self.policy_bn = nn.BatchNorm2d(2)
        self.policy_fc = nn.Linear(2 * N * N, N * N + 1)
        self.value_conv = nn.Conv2d(F, 1, 1, bias=False)
        self.value_bn = nn.BatchNorm2d(1)
        self.value_fc1 = nn.Linear(N * N, H)
        self.value_fc2 = nn.Linear(H, 1)
        # made last: a seed gives the other layers the same weights as in a net without these heads
        self.ownership_conv = nn.Conv2d(F, 1, 1) if config.ownership else None
        self.score_fc = nn.Linear(H, 1) if config.score else None

    def forward(self, x):
        """For input planes (B, 18, N, N): (policy logits (B, N*N+1), value (B,) in [-1, 1]) when the net
        has neither aux head, else a ``NetOutput`` (policy, value, ownership (B, N*N) or None, score (B,)
        or None): a net without aux heads keeps its 2-tuple so that old callers unpack it."""
        x = self.input_bn(self.input_conv(x), relu=True)
        for block in self.blocks:
            x = block(x)
        p = self.policy_bn(self.policy_conv(x), relu=True)
        p = self.policy_fc(p.reshape(p.shape[0], -1))
        v = self.value_bn(self.value_conv(x), relu=True)
        hidden = self.value_fc1(v.reshape(v.shape[0], -1)).relu()
        v = self.value_fc2(hidden).tanh().reshape(-1)
        if not self.config.aux_heads:
            return p, v
        ownership = score = None
        if self.ownership_conv is not None:
            ownership = self.ownership_conv(x).tanh().reshape(x.shape[0], -1)
        if self.score_fc is not None:
            score = self.score_fc(hidden).reshape(-1)
        return NetOutput(p, v, ownership, score)

    def inference(self):
        """A snapshot of the net's current weights for fast evaluation (see ``GoNetInference``)."""
        return GoNetInference(self)


class GoNetInference:
    """The eval-mode forward pass of a ``GoNet`` without autograd and with little Python per layer:
    batch norm folded into each convolution, the filters transformed once (``kernels.Conv2dPrepared``),
    bias, residual add and ReLU applied in place. ``__call__(planes)`` takes a float32 ndarray
    (B, 18, N, N) and returns a ``NetOutput`` of float32 ndarrays (policy logits (B, N*N+1), values (B,),
    ownership (B, N*N) or None, score (B,) or None). Agrees with ``GoNet.forward`` in eval mode to float32
    rounding (the folding rounds differently).

    >>> plan = new_net(size=5, blocks=1, filters=8).inference()
    >>> out = plan(np.zeros((2, 18, 5, 5), np.float32))
    >>> out.policy.shape, out.value.shape, out.ownership
    ((2, 26), (2,), None)
    """

    def __init__(self, net):
        def conv(c, bn):
            return kernels.Conv2dPrepared(*nn.fold_batch_norm(c, bn), padding=c.padding)

        def head(c, bn):  # a 1x1 convolution as (outputs, F) weights and (outputs, 1) biases
            w, b = nn.fold_batch_norm(c, bn) if bn is not None else (c.weight._data, c.bias._data)
            return np.ascontiguousarray(w.reshape(w.shape[0], -1)), b.reshape(-1, 1).copy()

        def linear(layer):  # (in, out) weights and (out,) biases
            return layer.weight._data.T.copy(), layer.bias._data.copy()

        self.config = net.config
        self.stem = conv(net.input_conv, net.input_bn)
        self.blocks = [(conv(b.conv1, b.bn1), conv(b.conv2, b.bn2), None if b.pool_fc is None else linear(b.pool_fc))
                       for b in net.blocks]
        self.policy_conv = head(net.policy_conv, net.policy_bn)
        self.value_conv = head(net.value_conv, net.value_bn)
        self.linears = [linear(layer) for layer in (net.policy_fc, net.value_fc1, net.value_fc2)]
        self.ownership = None if net.ownership_conv is None else head(net.ownership_conv, None)
        self.score = None if net.score_fc is None else linear(net.score_fc)

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
        return NetOutput(*(None if field[0] is None else np.concatenate(field) for field in zip(*outs)))

    def _forward(self, x):
        x = self.stem(x, relu=True)
        for conv1, conv2, pool in self.blocks:
            y = conv1(x, relu=True)
            if pool is not None:
                y += _pooling_bias(y, *pool)[:, :, None, None]
            x = conv2(y, residual=x, relu=True)
        h = x.reshape(x.shape[0], x.shape[1], -1)
        (wp, bp), (wv, bv) = self.policy_conv, self.value_conv
        p = np.maximum(kernels.matmul(wp, h) + bp, 0).reshape(len(x), -1)
        v = np.maximum(kernels.matmul(wv, h) + bv, 0).reshape(len(x), -1)
        (w1, b1), (w2, b2), (w3, b3) = self.linears
        logits = kernels.matmul(p, w1) + b1
        hidden = np.maximum(kernels.matmul(v, w2) + b2, 0)
        value = kernels.tanh(kernels.matmul(hidden, w3) + b3).reshape(-1)
        ownership = score = None
        if self.ownership is not None:
            wo, bo = self.ownership
            ownership = kernels.tanh(kernels.matmul(wo, h) + bo).reshape(len(x), -1)
        if self.score is not None:
            ws, bs = self.score
            score = (kernels.matmul(hidden, ws) + bs).reshape(-1)
        return NetOutput(logits, value, ownership, score)


def _pooling_bias(y, w, b):
    """(B, F) bias of the pooling layer for y (B, F, H, W): linear (weights ``w`` (2F, F), bias ``b``)
    of the per-channel mean and max over the board."""
    stats = np.concatenate([kernels.global_avg_pool2d_forward(y), y.max(axis=(2, 3))], axis=1)
    return kernels.matmul(stats, w) + b


def new_net(size=9, blocks=6, filters=64, value_hidden=None, seed=0, ownership=False, score=False, pooling=False):
    """A net with fresh weights drawn from ``seed`` (PyTorch's default initialisation)."""
    fn.manual_seed(seed)
    return GoNet(NetConfig(size, blocks, filters, value_hidden, ownership, score, pooling))


def save_net(net, path, extra=None):
    metadata = {"freenet.go": json.dumps({"format": FORMAT, **net.config.as_dict()})}
    metadata.update(extra or {})
    fn.save(net.state_dict(), path, metadata=metadata)


# What a net file may declare (``load_net``): far beyond any net freenet trains on a CPU (Leela Zero's
# largest is 40 x 256), small enough that a lie in the metadata is caught before anything is built.
MAX_BLOCKS, MAX_FILTERS, MAX_VALUE_HIDDEN = 128, 1024, 4096
MAX_METADATA_BYTES = 1 << 16


def state_shapes(config):
    """name -> (shape, dtype) of the state dict of ``GoNet(config)``, worked out without building it (so
    that a file's tensors are checked against its metadata before anything is allocated)."""
    N, F, H = config.size, config.filters, config.value_hidden
    f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
    shapes = {}

    def conv(name, cin, cout, k, bias=False):
        shapes[f"{name}.weight"] = ((cout, cin, k, k), f32)
        if bias:
            shapes[f"{name}.bias"] = ((cout,), f32)

    def bn(name, c):
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{part}"] = ((c,), f32)
        shapes[f"{name}.num_batches_tracked"] = ((), i64)

    def linear(name, cin, cout):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = ((cout, cin), f32), ((cout,), f32)

    conv("input_conv", features.PLANES, F, 3)
    bn("input_bn", F)
    for i in range(config.blocks):
        for k in (1, 2):
            conv(f"blocks.{i}.conv{k}", F, F, 3)
            bn(f"blocks.{i}.bn{k}", F)
        if config.pooling and pooled_block(i):
            linear(f"blocks.{i}.pool_fc", 2 * F, F)
    conv("policy_conv", F, 2, 1)
    bn("policy_bn", 2)
    linear("policy_fc", 2 * N * N, N * N + 1)
    conv("value_conv", F, 1, 1)
    bn("value_bn", 1)
    linear("value_fc1", N * N, H)
    linear("value_fc2", H, 1)
    if config.ownership:
        conv("ownership_conv", F, 1, 1, bias=True)
    if config.score:
        linear("score_fc", H, 1)
    return shapes


def config_from_metadata(text, where):
    """The NetConfig in a file's 'freenet.go' metadata (JSON text), every field checked (``where`` names it)."""
    try:
        info = validate.parse_json(text, where, max_depth=2, max_bytes=MAX_METADATA_BYTES)
    except FileFormatError:
        raise
    except ValueError as e:  # an integer of over 4,300 digits: Python's int() limit, a plain ValueError
        validate.fail(where, f"not valid JSON ({e})")
    validate.expect(info, dict, where)
    kind = validate.field(info, "format", str, where, default=FORMAT)
    if kind != FORMAT:
        validate.fail(where, f"format {validate.preview(kind)}; this freenet reads {FORMAT!r}")
    return NetConfig(validate.field(info, "size", int, where, MIN_SIZE, MAX_SIZE),
                     validate.field(info, "blocks", int, where, 0, MAX_BLOCKS),
                     validate.field(info, "filters", int, where, 1, MAX_FILTERS),
                     validate.field(info, "value_hidden", int, where, 1, MAX_VALUE_HIDDEN, default=None, optional=True),
                     **{name: validate.field(info, name, bool, where, default=False) for name in OPTIONS})


def _tensor_problems(tensors, want):
    """What is wrong with a file's tensors for a net whose state dict has ``want`` (``state_shapes``)."""
    problems = []
    missing = [k for k in want if k not in tensors]
    unexpected = [k for k in tensors if k not in want]
    if missing:
        problems.append("missing " + ", ".join(f"'{k}'" for k in missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(f"'{k}'" for k in unexpected[:5])
                        + (" ..." if len(unexpected) > 5 else ""))
    for name, (shape, dtype) in want.items():
        t = tensors.get(name)
        if t is not None and (tuple(t.shape) != shape or t.dtype != dtype):
            problems.append(f"'{name}' is {t.dtype} {tuple(t.shape)}, the net's is {dtype} {shape}")
    return problems


def load_net(path):
    """The net in a file written by ``save_net`` (``freenet go init``, ``train``, ``import-lz``). Files
    from before the options (``NetConfig.ownership``, ``score``, ``pooling``) load with them off. A file
    that is not such a net raises FileFormatError naming it: the metadata is checked field by field, and
    the tensors against the shapes it declares before the net is built."""
    path = os.fspath(path)
    validate.check_regular(path, "model file")  # never a FIFO, which would block the read
    try:
        meta = fn.load_metadata(path) or {}
        if "freenet.go" not in meta:
            validate.fail(path, "not a freenet Go net (no 'freenet.go' metadata)")
        config = config_from_metadata(meta["freenet.go"], f"{path}: 'freenet.go' metadata")
        tensors = fn.load(path)
    except FileFormatError:
        raise
    except FreenetError as e:  # the safetensors reader's, in the form "load: PATH: problem"
        validate.fail(path, str(e).removeprefix(f"load: {path}: "))
    except OSError as e:
        validate.fail(path, f"cannot read ({e.strerror or e})")
    if not isinstance(tensors, dict) or not all(isinstance(t, fn.Tensor) for t in tensors.values()):
        validate.fail(path, "does not hold a dict of tensors")
    problems = _tensor_problems(tensors, state_shapes(config))
    if problems:
        options = ", ".join(f"{name}={getattr(config, name)}" for name in OPTIONS)
        validate.fail(path, f"the tensors do not match the net its 'freenet.go' metadata describes ({config.size}x"
                            f"{config.size}, {config.blocks} blocks x {config.filters} filters, value head "
                            f"{config.value_hidden}, {options}): " + "; ".join(problems[:8]))
    net = GoNet(config)
    net.load_state_dict(tensors)
    net.eval()
    return net


class Evaluator:
    """Runs a net on positions: ``evaluate(boards)`` gives (priors over N*N+1 moves, softmax of the
    logits, illegal moves zeroed and renormalised; values for the side to move); ``evaluate_planes``
    does the same from input planes and legal-move masks and adds the ownership. ``symmetry`` is a fixed
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

    def _heads(self, planes):
        """(softmax policy, value, ownership or None) in float64 of planes (B, 18, N, N), as the net sees them."""
        out = self.forward(planes)
        logits = out.policy.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = kernels.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        ownership = None if out.ownership is None else out.ownership.astype(np.float64)
        return p, out.value.astype(np.float64), ownership

    def raw(self, planes):
        """(softmax policy, value) of input planes (B, 18, N, N), no symmetry, no masking."""
        return self._heads(planes)[:2]

    def _symmetric(self, planes, syms):
        """``_heads`` with symmetry ``syms[i]`` for position ``i``, the policy and ownership put back on
        the boards' own points. Positions with the same symmetry are transformed together."""
        syms = np.asarray(syms, np.int64)
        groups = [(s, np.flatnonzero(syms == s)) for s in np.unique(syms)]
        if len(groups) == 1 and groups[0][0] == 0:
            return self._heads(planes)
        x = np.empty(planes.shape, np.float32)
        for s, at in groups:
            x[at] = symmetry.transform_planes(planes[at], s)
        p, v, ownership = self._heads(x)
        for s, at in groups:
            if s != 0:
                p[at] = symmetry.untransform_policy(p[at], s)
                if ownership is not None:
                    ownership[at] = symmetry.untransform_points(ownership[at], s)
        return p, v, ownership

    def raw_symmetric(self, planes, syms):
        """The policy on the boards' own points and the value, with symmetry ``syms[i]`` for position ``i``."""
        return self._symmetric(planes, syms)[:2]

    def evaluate_planes(self, planes, masks):
        """(priors (B, N*N+1), values (B,), ownership (B, N*N) or None), float64, for input planes
        (B, 18, N, N) of positions whose legal moves are the bool ``masks`` (B, N*N+1): the priors are
        the softmax masked and renormalised (the mask itself, normalised, when no legal move has any
        prior), values and ownership for the side to move, ownership on the boards' own points."""
        N = self.size
        planes = np.asarray(planes, np.float32)
        masks = np.asarray(masks)
        if masks.shape != (len(planes), N * N + 1):
            raise FreenetError(f"evaluate_planes: masks of shape {masks.shape} for {len(planes)} positions, "
                               f"expected ({len(planes)}, {N * N + 1})")
        if not len(planes):
            return np.zeros((0, N * N + 1)), np.zeros(0), np.zeros((0, N * N)) if self.net.config.ownership else None
        policies, values, ownerships = [], [], []
        for start in range(0, len(planes), self.max_batch):
            chunk = planes[start:start + self.max_batch]
            if self.symmetry_mode == "average":
                ps, vs, os = zip(*(self._symmetric(chunk, [s] * len(chunk)) for s in range(symmetry.COUNT)))
                p, v = np.mean(ps, axis=0), np.mean(vs, axis=0)
                o = None if os[0] is None else np.mean(os, axis=0)
            else:
                if self.symmetry_mode == "random":
                    syms = self.rng.integers(0, symmetry.COUNT, size=len(chunk))
                else:
                    syms = [int(self.symmetry_mode)] * len(chunk)
                p, v, o = self._symmetric(chunk, syms)
            policies.append(p)
            values.append(v)
            ownerships.append(o)
            self.batches += 1
        self.positions += len(planes)
        p, v = np.concatenate(policies), np.concatenate(values)
        ownership = None if ownerships[0] is None else np.concatenate(ownerships)
        p = p * masks
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1), masks / np.maximum(masks.sum(1, keepdims=True), 1))
        return p, v, ownership

    def evaluate(self, boards, masks=None):
        """(priors, values) of ``evaluate_planes`` for ``boards``; ``masks`` default to their legal moves."""
        if not boards:
            return np.zeros((0, self.size ** 2 + 1)), np.zeros(0)
        planes = features.batch_planes(boards)
        masks = np.stack([b.legal_mask() for b in boards]) if masks is None else masks
        return self.evaluate_planes(planes, masks)[:2]
