"""Leela Zero's v1 weight format: export freenet nets to it and import Leela Zero nets from it.

The file is text: the line ``1``, then one line of space-separated numbers per tensor, in this order
(F filters, B residual blocks, N = 19 for Leela Zero itself):

    input conv:      weights (F x 18 x 3 x 3), biases (F), BN means (F), BN variances (F)
    each block:      the same four lines for conv 1, then for conv 2 (F x F x 3 x 3)
    policy head:     conv weights (2 x F x 1 x 1), biases, means, variances (2 each),
                     fc weights (N*N+1 x 2*N*N), fc biases (N*N+1)
    value head:      conv weights (1 x F x 1 x 1), bias, mean, variance (1 each),
                     fc1 weights (256 x N*N), fc1 biases (256), fc2 weights (1 x 256), fc2 bias (1)

so 19 + 8 B lines. Convolution weights are [out][in][y][x]; fully connected ones [out][in]; the fc
inputs are the head's planes flattened channel by channel, points numbered y * N + x from the bottom
row (as freenet numbers them). Leela Zero's batch norm has no scale or offset: it computes
``(conv(x) + bias - mean) / sqrt(variance + 1e-5)``. Export folds freenet's BN scale (gamma) and
offset (beta) into the weights and means; import puts the biases into the means and sets gamma = 1,
beta = 0, so both directions compute the same function. The value head's tanh output v becomes
Leela Zero's winrate (1 + v) / 2 for the side to move.
"""

import gzip
import math
import os

import numpy as np

from freenet import validate
from freenet.errors import FreenetError
from freenet.go import features
from freenet.go.board import MAX_SIZE, MIN_SIZE
from freenet.go.net import MAX_BLOCKS, MAX_FILTERS, MAX_VALUE_HIDDEN, OPTIONS, GoNet, NetConfig

EPS = 1e-5  # Leela Zero's batch-norm epsilon (freenet's BatchNorm2d default too)


def _bn_parts(conv, bn):
    """(weights, biases, means, variances) of conv + BN in Leela Zero's form (BN scale and offset folded)."""
    w = conv.weight._data.astype(np.float64)
    gamma, beta = bn.weight._data.astype(np.float64), bn.bias._data.astype(np.float64)
    mean, var = bn.running_mean._data.astype(np.float64), bn.running_var._data.astype(np.float64)
    if bn.eps != EPS:
        # keep Leela Zero's epsilon: rescale so that gamma / sqrt(var + eps) is unchanged
        scale = np.sqrt(var + EPS) / np.sqrt(var + bn.eps)
        gamma = gamma * scale
    bias = np.zeros(w.shape[0]) if conv.bias is None else conv.bias._data.astype(np.float64)
    # gamma (conv + bias - mean) / s + beta  ==  (gamma conv - (gamma (mean - bias) - beta s)) / s
    s = np.sqrt(var + EPS)
    weights = w * gamma.reshape(-1, 1, 1, 1)
    means = gamma * (mean - bias) - beta * s
    return weights, np.zeros_like(means), means, var


def _line(array):
    return " ".join(f"{v:.9g}" for v in np.asarray(array, np.float32).ravel().tolist())


def export_lz(net, path):
    """Writes ``net`` (a GoNet) as a Leela Zero v1 weight file. Leela Zero itself plays 19x19 only with a
    256-unit value layer; other sizes are written too (for freenet's own import) with a warning returned."""
    c = net.config
    options = [name for name in OPTIONS if getattr(c, name)]
    if options:
        raise FreenetError(f"cannot export to Leela Zero's format: the net has {', '.join(options)} on "
                           "(KataGo-style options that Leela Zero's nets lack)")
    tensors = []
    tensors += _bn_parts(net.input_conv, net.input_bn)
    for block in net.blocks:
        tensors += _bn_parts(block.conv1, block.bn1)
        tensors += _bn_parts(block.conv2, block.bn2)
    tensors += _bn_parts(net.policy_conv, net.policy_bn)
    tensors += [net.policy_fc.weight._data, net.policy_fc.bias._data]
    tensors += _bn_parts(net.value_conv, net.value_bn)
    tensors += [net.value_fc1.weight._data, net.value_fc1.bias._data, net.value_fc2.weight._data,
                net.value_fc2.bias._data]
    text = "1\n" + "\n".join(_line(t) for t in tensors) + "\n"
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as f:
        f.write(text)
    if c.size != 19 or c.value_hidden != 256:
        return (f"note: Leela Zero plays 19x19 nets with a 256-unit value layer; this net is {c.size}x{c.size} "
                f"with {c.value_hidden}, so only freenet (import-lz) will read it")
    return None


# A weight file's text, read whole (inflated if gzipped) before it is parsed: room for a 40 x 256 net, Leela
# Zero's largest (47.5M numbers; export_lz writes at most 16 characters each, about 760 MB). A gzip bomb
# stops here, after inflating this much, instead of filling the memory.
MAX_TEXT_BYTES = 1 << 30
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _read_lines(path):
    """The lines of a weight file (plain or gzipped ASCII text), without the empty ones at the end."""
    data = validate.read_regular(path, MAX_TEXT_BYTES, "weight file")
    if validate.is_gzip(data):
        data = validate.decompress(data, "gzip", MAX_TEXT_BYTES, path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        validate.fail(path, f"not a Leela Zero weight file: byte {e.start} is not ASCII text")
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _parse(path, lineno, text, expected, what):
    """The ``expected`` numbers of a line as float32, all finite (the count is checked before converting)."""
    tokens = text.split()
    if len(tokens) != expected:
        validate.fail(path, f"line {lineno} ({what}) has {len(tokens)} numbers, expected {expected} "
                            "(truncated or not a Leela Zero v1 file?)")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next((t for t in tokens if not _is_number(t)), tokens[0])
        validate.fail(path, f"line {lineno} ({what}): {validate.preview(bad[:20])} is not a number")
    if not np.isfinite(values).all():
        validate.fail(path, f"line {lineno} ({what}) has a number that is not finite")
    if np.abs(values).max(initial=0) > FLOAT32_MAX:
        validate.fail(path, f"line {lineno} ({what}) has a number too large for float32")
    return values.astype(np.float32)


def _is_number(t):
    try:
        float(t)
        return True
    except ValueError:
        return False


def _count(lines, i):
    return len(lines[i].split())


def _shape(path, lines):
    """(blocks, filters, board size, value head width) from the line count and the lengths of three
    lines, each within the limits ``load_net`` puts on a net: nothing is parsed or allocated before."""
    version = lines[0].strip()
    if version != "1":
        hint = " (v2 is ELF's format, whose value head Leela Zero reads differently)" if version == "2" else ""
        validate.fail(path, f"not a Leela Zero v1 weight file: the first line is {validate.preview(version[:20])}, "
                            f"expected '1'{hint}")
    n = len(lines)
    if n < 19 or (n - 19) % 8:
        validate.fail(path, f"{n} lines; a Leela Zero v1 file has 19 + 8 x blocks (truncated?)")
    blocks = (n - 19) // 8
    if blocks > MAX_BLOCKS:
        validate.fail(path, f"{blocks} residual blocks, more than the {MAX_BLOCKS} freenet reads")
    filters = _count(lines, 2)
    if not 1 <= filters <= MAX_FILTERS:
        validate.fail(path, f"line 3 (input conv biases) gives {filters} filters, not 1 to {MAX_FILTERS}")
    pass_index = 1 + 4 + 8 * blocks + 5  # the policy fc biases
    moves = _count(lines, pass_index)
    size = int(round(math.sqrt(max(moves - 1, 0))))
    if size * size + 1 != moves or not MIN_SIZE <= size <= MAX_SIZE:
        validate.fail(path, f"line {pass_index + 1} (policy fc biases) has {moves} numbers, not N*N+1 for a board "
                            f"size N from {MIN_SIZE} to {MAX_SIZE}")
    hidden = _count(lines, pass_index + 6)
    if not 1 <= hidden <= MAX_VALUE_HIDDEN:
        validate.fail(path, f"line {pass_index + 7} (value fc1 biases) gives a value head of {hidden} units, not 1 "
                            f"to {MAX_VALUE_HIDDEN}")
    return blocks, filters, size, hidden


def import_lz(path):
    """A GoNet with the weights of a Leela Zero v1 file (any board size the file's shapes give). Every line
    is parsed and checked (its count of numbers is known from the shape) before the net is built, so a
    malformed file raises FileFormatError naming it and allocates no more than its numbers."""
    path = os.fspath(path)
    lines = _read_lines(path)
    if not lines:
        validate.fail(path, "empty file")
    blocks, F, N, hidden = _shape(path, lines)
    at = [1]

    def take(expected, what):
        i = at[0]
        at[0] += 1
        return _parse(path, i + 1, lines[i], expected, what)

    def conv_bn(cin, cout, k, what):
        w = take(cout * cin * k * k, f"{what} weights").reshape(cout, cin, k, k)
        b = take(cout, f"{what} biases")
        mean = take(cout, f"{what} BN means")
        var = take(cout, f"{what} BN variances")
        if (var < 0).any():
            validate.fail(path, f"line {at[0]} ({what} BN variances) has a negative variance")
        return w, b, mean, var

    stem = conv_bn(features.PLANES, F, 3, "input conv")
    tower = [(conv_bn(F, F, 3, f"block {i + 1} conv 1"), conv_bn(F, F, 3, f"block {i + 1} conv 2"))
             for i in range(blocks)]
    policy = conv_bn(F, 2, 1, "policy conv")
    policy_fc = (take((N * N + 1) * 2 * N * N, "policy fc weights").reshape(N * N + 1, 2 * N * N),
                 take(N * N + 1, "policy fc biases"))
    value = conv_bn(F, 1, 1, "value conv")
    value_fc1 = take(hidden * N * N, "value fc1 weights").reshape(hidden, N * N), take(hidden, "value fc1 biases")
    value_fc2 = take(hidden, "value fc2 weights").reshape(1, hidden), take(1, "value fc2 bias")

    net = GoNet(NetConfig(N, blocks, F, hidden))  # only now: the file's numbers fill it exactly
    _set_conv_bn(net.input_conv, net.input_bn, stem)
    for block, (first, second) in zip(net.blocks, tower):
        _set_conv_bn(block.conv1, block.bn1, first)
        _set_conv_bn(block.conv2, block.bn2, second)
    _set_conv_bn(net.policy_conv, net.policy_bn, policy)
    _set_conv_bn(net.value_conv, net.value_bn, value)
    for layer, (w, b) in ((net.policy_fc, policy_fc), (net.value_fc1, value_fc1), (net.value_fc2, value_fc2)):
        layer.weight._data[...], layer.bias._data[...] = w, b
    net.eval()
    return net


def _set_conv_bn(conv, bn, parts):
    """Leela Zero's (weights, biases, means, variances) into freenet's conv + BN: the biases go into the
    means, BN scale 1 and offset 0."""
    w, b, mean, var = parts
    conv.weight._data[...] = w
    bn.weight._data[...] = 1.0
    bn.bias._data[...] = 0.0
    bn.running_mean._data[...] = mean - b
    bn.running_var._data[...] = var
    bn.eps = EPS
