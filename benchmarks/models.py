"""The reference networks, written once against a PyTorch-like ``nn`` namespace.

The same function builds the freenet model (``freenet.nn``) and the PyTorch model (``torch.nn``), so the
two are identical layer for layer. Definitions: ``workloads.md`` (mirrored in ``spec.py``).
"""

import importlib
import math


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


def char_gpt(nn, vocab=65, block=64, embed=128, heads=4, layers=4):
    """A GPT-style character model: (N, T <= block) int64 tokens -> (N, T, vocab) next-token logits.

    token embedding (vocab -> embed) + position embedding (block -> embed); ``layers`` pre-norm blocks,
    x = x + attn(LayerNorm(x)), x = x + mlp(LayerNorm(x)), where attn is causal multi-head self-attention
    (one linear embed -> 3*embed for q, k, v; softmax(q k^T / sqrt(embed/heads)) with the future masked
    by a ``tril`` buffer; a linear embed -> embed projection) and mlp is linear(embed -> 4*embed) + GELU
    + linear(4*embed -> embed); a final LayerNorm and a linear head (embed -> vocab). No dropout, no weight
    tying, the frameworks' default initialisations.
    """
    lib = importlib.import_module(nn.__name__.rpartition(".")[0])  # torch or freenet, whichever nn belongs to
    head_size = embed // heads

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(embed, 3 * embed)
            self.proj = nn.Linear(embed, embed)
            self.register_buffer("mask", lib.tril(lib.ones(block, block)).view(1, 1, block, block))

        def forward(self, x):
            n, t, c = x.shape
            q, k, v = self.qkv(x).split(embed, dim=2)
            q, k, v = (z.view(n, t, heads, head_size).transpose(1, 2) for z in (q, k, v))  # (n, heads, t, hs)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head_size))
            att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(n, t, c)
            return self.proj(y)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(embed)
            self.attn = CausalSelfAttention()
            self.ln2 = nn.LayerNorm(embed)
            self.mlp = nn.Sequential(nn.Linear(embed, 4 * embed), nn.GELU(), nn.Linear(4 * embed, embed))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class CharGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, embed)
            self.pos = nn.Embedding(block, embed)
            self.register_buffer("positions", lib.arange(block), persistent=False)
            self.blocks = nn.ModuleList([Block() for _ in range(layers)])
            self.ln_f = nn.LayerNorm(embed)
            self.head = nn.Linear(embed, vocab)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(self.positions[:idx.shape[1]])
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    return CharGPT()
