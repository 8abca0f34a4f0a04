"""A PyTorch program: a tiny decoder-only transformer over characters (token and position embeddings, masked
multi-head self-attention, pre-norm blocks), trained with AdamW, evaluated under ``@torch.no_grad()``, and
sampled from. Batches are drawn with NumPy from the seed, so both libraries see the same ones."""

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

TEXT = ("the kettle sang on the stove while the cat slept by the door. rain tapped on the window and the "
        "old clock kept its slow time. nobody in the house was in a hurry that evening, not even the dog.\n")
batch_size, block_size = 8, 16
n_embd, n_head, n_layer = 24, 3, 2
learning_rate, eval_iters = 1e-2, 2

chars = sorted(set(TEXT))
vocab_size = len(chars)
stoi = {ch: i for i, ch in enumerate(chars)}
itos = {i: ch for i, ch in enumerate(chars)}


def encode(s):
    return [stoi[c] for c in s]


def decode(ids):
    return "".join(itos[i] for i in ids)


class Head(nn.Module):
    def __init__(self, head_size):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x):
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ v


class MultiHeadAttention(nn.Module):
    def __init__(self, num_heads, head_size):
        super().__init__()
        self.heads = nn.ModuleList([Head(head_size) for _ in range(num_heads)])
        self.proj = nn.Linear(head_size * num_heads, n_embd)

    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.sa = MultiHeadAttention(n_head, n_embd // n_head)
        self.ffwd = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd))
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd(self.ln2(x))


class GPTLanguageModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block() for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T))
        logits = self.lm_head(self.ln_f(self.blocks(x)))
        if targets is None:
            return logits, None
        B, T, C = logits.shape
        return logits, F.cross_entropy(logits.view(B * T, C), targets.view(B * T))

    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -block_size:])
            probs = F.softmax(logits[:, -1, :], dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def get_batch(data, rng):
    ix = rng.integers(0, len(data) - block_size, size=batch_size)
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + block_size + 1] for i in ix])
    return x, y


@torch.no_grad()
def estimate_loss(model, splits, rng):
    out = {}
    model.eval()
    for split, data in splits.items():
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(data, rng)
            _, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean().item()
    model.train()
    return out


def main(seed, steps, initial=None):
    """``steps`` AdamW steps; ``initial`` (name -> ndarray) replaces the random weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = torch.tensor(encode(TEXT), dtype=torch.long)
    n = int(0.8 * len(data))
    splits = {"train": data[:n], "val": data[n:]}
    model = GPTLanguageModel()
    if initial is not None:
        model.load_state_dict({name: torch.from_numpy(value) for name, value in initial.items()})
    named = list(model.named_parameters()) + list(model.named_buffers())
    start = {name: t.detach().numpy().copy() for name, t in named}
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)

    before = estimate_loss(model, splits, np.random.default_rng(seed + 1))
    losses = []
    for _ in range(steps):
        xb, yb = get_batch(splits["train"], rng)
        _, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = estimate_loss(model, splits, np.random.default_rng(seed + 1))

    model.eval()
    with torch.no_grad():
        sample = model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=20)[0].tolist()
    return {"initial": start, "parameter_count": sum(p.numel() for p in model.parameters()), "losses": losses,
            "eval_before": before, "eval_after": after, "sample": decode(sample),
            "lm_head.weight": model.lm_head.weight.detach().numpy(), "ln_f.bias": model.ln_f.bias.detach().numpy()}
