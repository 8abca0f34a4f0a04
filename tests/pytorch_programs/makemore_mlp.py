"""A PyTorch program in the style of a character-level name generator: first a smoothed bigram table of counts,
then an MLP over three-character contexts whose parameters (an embedding table and two layers) are plain
tensors built by hand and trained with hand-written gradient steps."""

import string

import torch
import torch.nn.functional as F

WORDS = ["anna", "bruno", "clara", "dario", "elena", "felix", "greta", "hugo", "ines", "jonas", "karla", "leon",
         "marta", "nico", "olga", "pablo", "quinn", "rosa", "sven", "tilda", "ugo", "vera", "walter", "xenia",
         "yusuf", "zoe", "amira", "basil", "celia", "emil", "fiona", "igor", "lena", "milo", "nadia", "oskar"]
BLOCK_SIZE = 3  # characters of context

chars = list(string.ascii_lowercase)
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}


def bigram(words, g):
    N = torch.zeros((27, 27), dtype=torch.int32)
    for w in words:
        chs = ["."] + list(w) + ["."]
        for ch1, ch2 in zip(chs, chs[1:]):
            ix1, ix2 = stoi[ch1], stoi[ch2]
            N[ix1, ix2] += 1
    P = (N + 1).float()
    P /= P.sum(1, keepdim=True)

    log_likelihood, n = 0.0, 0
    for w in words:
        chs = ["."] + list(w) + ["."]
        for ch1, ch2 in zip(chs, chs[1:]):
            log_likelihood += torch.log(P[stoi[ch1], stoi[ch2]])
            n += 1
    nll = -log_likelihood / n

    samples = []
    for _ in range(5):
        out, ix = [], 0
        while len(out) < 20:
            p = P[ix]
            ix = torch.multinomial(p, num_samples=1, replacement=True, generator=g).item()
            if ix == 0:
                break
            out.append(itos[ix])
        samples.append("".join(out))
    return N, P, nll.item(), samples


def build_dataset(words):
    X, Y = [], []
    for w in words:
        context = [0] * BLOCK_SIZE
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def main(seed, steps, initial=None):
    """``steps`` full-batch gradient steps; ``initial`` (name -> ndarray) replaces the random parameters."""
    g = torch.Generator().manual_seed(seed)
    N, P, bigram_nll, bigram_samples = bigram(WORDS, g)

    X, Y = build_dataset(WORDS)
    C = torch.randn((27, 10), generator=g)
    W1 = torch.randn((30, 64), generator=g) * (5 / 3) / 30**0.5
    b1 = torch.randn(64, generator=g) * 0.01
    W2 = torch.randn((64, 27), generator=g) * 0.1
    b2 = torch.zeros(27)
    names = ["C", "W1", "b1", "W2", "b2"]
    parameters = [C, W1, b1, W2, b2]
    if initial is not None:
        parameters = [torch.tensor(initial[name]) for name in names]
        C, W1, b1, W2, b2 = parameters
    start = {name: p.numpy().copy() for name, p in zip(names, parameters)}
    for p in parameters:
        p.requires_grad = True

    losses = []
    for i in range(steps):
        emb = C[X]  # (examples, 3, 10)
        h = torch.tanh(emb.view(-1, 30) @ W1 + b1)
        logits = h @ W2 + b2
        loss = F.cross_entropy(logits, Y)
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.5 if i < steps // 2 else 0.25
        for p in parameters:
            p.data += -lr * p.grad
        losses.append(loss.item())

    samples = []
    with torch.no_grad():
        for _ in range(5):
            out, context = [], [0] * BLOCK_SIZE
            while len(out) < 20:
                emb = C[torch.tensor([context])]
                h = torch.tanh(emb.view(1, -1) @ W1 + b1)
                probs = F.softmax(h @ W2 + b2, dim=1)
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                if ix == 0:
                    break
                context = context[1:] + [ix]
                out.append(itos[ix])
            samples.append("".join(out))

    return {
        "initial": start,
        "bigram_counts": N.tolist(),
        "bigram_probs": P.numpy(),
        "bigram_nll": bigram_nll,
        "bigram_samples": bigram_samples,
        "examples": X.shape[0],
        "losses": losses,
        "C": C.detach().numpy(),
        "W2": W2.detach().numpy(),
        "b2": b2.detach().numpy(),
        "samples": samples,
    }
