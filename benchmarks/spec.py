"""The reference workloads as facts (copied from the shared ``bench/workloads.md``; no code there).

Everything is float32, NCHW, 3x3 convs with stride 1 and padding 1 unless said otherwise.
Effective GFLOP/s of a 3x3 conv forward = 2*N*C*K*H*W*9 / seconds (x3 for forward + backward),
whatever algorithm computes it.
"""

# Conv2d 3x3, stride 1, padding 1: name -> (N, C, H=W, K, what it stands for)
CONV_SHAPES = {
    "go9-b1": (1, 64, 9, 64, "tree-search leaf evaluation"),
    "go9-b16": (16, 64, 9, 64, "batched leaf evaluation"),
    "go9-b256": (256, 64, 9, 64, "9x9 training batch"),
    "go9-128": (256, 128, 9, 128, "wider 9x9 net"),
    "go19-b64": (64, 128, 19, 128, "19x19 training batch"),
    "go19-256-b1": (1, 256, 19, 256, "Leela-Zero-size evaluation"),
    "mnist-c1": (128, 1, 28, 32, "first MNIST layer"),
    "mnist-c2": (128, 32, 14, 64, "second MNIST layer"),
    "cifar": (128, 64, 32, 64, "CIFAR-10 ResNet layer"),
}

# AlphaGo-Zero-style residual nets: name -> board, residual blocks, filters, value hidden units
GO_NETS = {
    "go9-6x64": dict(board=9, blocks=6, filters=64, value_hidden=64),
    "go19-6x128": dict(board=19, blocks=6, filters=128, value_hidden=256),
}
GO_TRAIN_BATCH = {"go9-6x64": 256, "go19-6x128": 64}
GO_INFER_BATCHES = (1, 8, 64)
GO_PLANES = 18

MNIST_BATCH = 128

# A GPT-style character model (``models.char_gpt``; the suite's own, not in workloads.md): vocabulary,
# context length (block), embedding width, attention heads, pre-norm transformer blocks. Training step:
# (batch, block) int64 tokens -> next-token cross-entropy over (batch*block, vocab) logits, AdamW.
CHAR_GPT = dict(vocab=65, block=64, embed=128, heads=4, layers=4)
CHAR_GPT_BATCH = 32

# Nets that are not run but that the gap report scales to (same shape of net, by FLOPs).
SCALED_GO_NETS = {
    "go19-6x64": dict(board=19, blocks=6, filters=64, value_hidden=256),
    "go19-10x128": dict(board=19, blocks=10, filters=128, value_hidden=256),
    "go19-20x256": dict(board=19, blocks=20, filters=256, value_hidden=256),   # AlphaGo Zero's 20-block net
    "go19-40x256": dict(board=19, blocks=40, filters=256, value_hidden=256),   # Leela Zero's largest nets
}
