"""Work per step of each workload, counted from its shapes: FLOPs, bytes moved, and kernels launched.

These counts feed the effective GFLOP/s of the report and the GPU roofline estimate of the gap report.
They are a model, not a measurement:

- FLOPs: 2 per multiply-add of convolutions and linear layers (2*N*C*K*H*W*kh*kw for a conv); the
  elementwise layers (BN, ReLU, add, pooling, losses) count no FLOPs, since they are bound by memory.
- Bytes: each layer reads its inputs and weights once and writes its output once, in float32; BN in
  training reads its input twice (statistics, then normalisation). No cache reuse between layers is assumed (pessimistic for a GPU's L2).
- Kernels: one per layer in the forward pass, two per layer in the backward pass (each with the
  forward's FLOPs and bytes), and ``OPTIMIZER_KERNELS`` for a fused (multi-tensor) optimizer step,
  which moves 5 floats per parameter for SGD with momentum (read weight, gradient and momentum, write
  weight and momentum) and 7 for Adam(W) (two moments read and written).
  ``Cost.launches`` keeps (FLOPs, bytes) of every kernel for the per-kernel roofline of ``gap.py``.
"""

from dataclasses import dataclass, field

from benchmarks import spec

F32 = 4
OPTIMIZER_KERNELS = 3


@dataclass
class Cost:
    flops: float
    bytes: float
    kernels: int
    params: int = 0
    launches: list = field(default_factory=list, repr=False)  # (flops, bytes) of each kernel, in order

    def as_dict(self):
        return {"flops": self.flops, "bytes": self.bytes, "kernels": self.kernels, "params": self.params}


@dataclass
class Layer:
    kind: str
    flops: float
    bytes: float
    params: int = 0


def conv_layer(n, c, h, w, k, ksize=3):
    flops = 2.0 * n * c * k * h * w * ksize * ksize
    params = k * c * ksize * ksize
    return Layer("conv", flops, F32 * (n * c * h * w + params + n * k * h * w), params)


def elementwise(kind, elements, reads=1, writes=1, params=0):
    return Layer(kind, 0.0, F32 * elements * (reads + writes), params)


def linear_layer(n, fan_in, fan_out):
    params = fan_in * fan_out + fan_out
    return Layer("linear", 2.0 * n * fan_in * fan_out, F32 * (n * fan_in + params + n * fan_out), params)


def matmul_layer(batch, m, k, n):
    """A batched matrix product without weights, (batch, m, k) @ (batch, k, n): attention's two."""
    return Layer("matmul", 2.0 * batch * m * k * n, F32 * batch * (m * k + k * n + m * n))


def total(layers, train, optimizer_floats=5):
    """Cost of one forward pass (``train=False``) or one training step (forward, backward, optimizer
    moving ``optimizer_floats`` floats per parameter: 5 for SGD with momentum, 7 for Adam)."""
    params = sum(layer.params for layer in layers)
    launches = [(layer.flops, layer.bytes) for layer in layers]
    if train:  # backward: two kernels per layer, each as big as the forward one; then the optimizer
        launches += [(layer.flops, layer.bytes) for layer in reversed(layers) for _ in range(2)]
        launches += [(0.0, optimizer_floats * F32 * params / OPTIMIZER_KERNELS)] * OPTIMIZER_KERNELS
    return _cost(launches, params)


def _cost(launches, params):
    return Cost(sum(f for f, _ in launches), sum(b for _, b in launches), len(launches), params, launches)


def conv_cost(n, c, h, k, backward):
    """A 3x3 conv with bias alone: forward, or forward + input, weight and bias gradients."""
    layer = conv_layer(n, c, h, h, k)
    launches = [(layer.flops, layer.bytes)]
    if backward:  # gradients of the input and of the weights, then of the bias (a sum over N, H, W)
        launches += [(layer.flops, layer.bytes), (layer.flops, layer.bytes), (0.0, F32 * (n * k * h * h + k))]
    return _cost(launches, layer.params + k)


def go_net_layers(n, board=9, blocks=6, filters=64, value_hidden=64, planes=spec.GO_PLANES, train=True):
    pts = board * board
    act = n * filters * pts
    bn_reads = 2 if train else 1

    def conv_bn_relu(c_in, c_out, k, relu=True):
        out = [conv_layer(n, c_in, board, board, c_out, k),
               elementwise("bn", n * c_out * pts, reads=bn_reads, params=2 * c_out)]
        return out + ([elementwise("relu", n * c_out * pts)] if relu else [])

    layers = conv_bn_relu(planes, filters, 3)
    for _ in range(blocks):
        layers += conv_bn_relu(filters, filters, 3) + conv_bn_relu(filters, filters, 3, relu=False)
        layers += [elementwise("add", act, reads=2), elementwise("relu", act)]
    layers += conv_bn_relu(filters, 2, 1) + [linear_layer(n, 2 * pts, pts + 1)]
    layers += conv_bn_relu(filters, 1, 1) + [linear_layer(n, pts, value_hidden), elementwise("relu", n * value_hidden),
                                             linear_layer(n, value_hidden, 1), elementwise("tanh", n)]
    if train:  # cross-entropy over the policy and MSE over the value
        layers += [elementwise("loss", n * (pts + 1), reads=2), elementwise("loss", n, reads=2)]
    return layers


def go_net_cost(n, train, **net):
    return total(go_net_layers(n, train=train, **net), train)


def mnist_cnn_cost(n=spec.MNIST_BATCH, train=True):
    layers = [conv_layer(n, 1, 28, 28, 32), elementwise("relu", n * 32 * 784),
              elementwise("pool", n * 32 * 784, writes=0.25),
              conv_layer(n, 32, 14, 14, 64), elementwise("relu", n * 64 * 196),
              elementwise("pool", n * 64 * 196, writes=0.25),
              linear_layer(n, 3136, 128), elementwise("relu", n * 128), linear_layer(n, 128, 10)]
    if train:
        layers.append(elementwise("loss", n * 10, reads=2))
    return total(layers, train)


def char_gpt_layers(n, vocab=65, block=64, embed=128, heads=4, layers=4, train=True):
    """``models.char_gpt`` on ``n`` sequences of ``block`` tokens. Per transformer block, with t = n*block
    tokens and C = embed: the linear layers 2*t*C*(3C + C + 4C + 4C) = 24*t*C^2 FLOPs and the two attention
    products (q k^T and att v, over the full block x block square: the masked half is computed too)
    2 * 2*n*block^2*C; then the head 2*t*C*vocab. Embedding lookups, layer norms, the mask, softmax and
    GELU count no FLOPs (memory-bound); a layer norm reads its input twice (statistics, then normalisation)."""
    t, c, hs = n * block, embed, embed // heads
    scores = n * heads * block * block
    out = [elementwise("embedding", t * c, params=vocab * c), elementwise("embedding", block * c, params=block * c),
           elementwise("add", t * c, reads=2)]
    for _ in range(layers):
        out += [elementwise("layernorm", t * c, reads=2, params=2 * c), linear_layer(t, c, 3 * c),
                matmul_layer(n * heads, block, hs, block), elementwise("scale", scores),
                elementwise("mask", scores), elementwise("softmax", scores, reads=2),
                matmul_layer(n * heads, block, block, hs), elementwise("transpose", t * c),
                linear_layer(t, c, c), elementwise("add", t * c, reads=2),
                elementwise("layernorm", t * c, reads=2, params=2 * c), linear_layer(t, c, 4 * c),
                elementwise("gelu", t * 4 * c), linear_layer(t, 4 * c, c), elementwise("add", t * c, reads=2)]
    out += [elementwise("layernorm", t * c, reads=2, params=2 * c), linear_layer(t, c, vocab)]
    if train:  # cross-entropy over (t, vocab) logits
        out.append(elementwise("loss", t * vocab, reads=2))
    return out


def char_gpt_cost(n=spec.CHAR_GPT_BATCH, train=True, **gpt):
    """Forward: layers * (24*t*C^2 + 4*n*block^2*C) + 2*t*C*vocab FLOPs (t = n*block); training 3x that,
    and an AdamW step."""
    return total(char_gpt_layers(n, train=train, **gpt), train, optimizer_floats=7)
