"""Training curves with Winograd convolutions against the direct path, on MNIST and 9x9 Go.

    python benchmarks/winograd_curves.py [--data MNIST_DIR] [--epochs 5] [--seeds 0,1]
        [--go-chunks 8] [--go-steps 50] [--threads 2] [--json F] [--markdown F]

Every run trains twice from the same seed: once with freenet's own choice of convolution (Winograd
for every 3x3 stride-1 conv with at least 8 input channels) and once with ``conv.WINO_TILE = 0``,
which sends every convolution through the direct (im2col / tap-GEMM) path. The two differ only in
float32 rounding; whether that changes training is what the curves show. "Noise" is the spread
between seeds on the same path: a Winograd-vs-direct gap inside it is a gap training cannot see.

- MNIST: the ``freenet train mnist`` recipe (bundled 5,000-image sample, or ``--data`` with the
  official files); per epoch the mean training loss and the test accuracy.
- Go: the default 9x9 6x64 net trained supervised on the SGF games in docs/go-match (the games of
  seed6000 held out), batch 256, SGD with Nesterov momentum 0.02; after every chunk of ``--go-steps``
  steps the held-out policy and value losses.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GO_GAMES = os.path.join(ROOT, "docs", "go-match")
GO_HELD_OUT = "seed6000"  # the folder of games kept out of training
PATHS = ("winograd", "direct")


def use_path(path):
    """Route every convolution through ``path``: "winograd" (freenet's rule) or "direct"."""
    from freenet.kernels import conv

    conv.WINO_TILE = None if path == "winograd" else 0


def mnist_curve(path, seed, epochs, data=None):
    """[{epoch, train_loss, test_accuracy}] of the MNIST recipe trained on ``path``."""
    from freenet.recipes import mnist

    use_path(path)
    result = mnist.train(mnist.Recipe(epochs=epochs, seed=seed, data=data), progress=False, log=lambda *a: None)
    return [{"epoch": h["epoch"], "train_loss": h["train_loss"], "test_accuracy": h["test_accuracy"]}
            for h in result.history], result.sha256


def go_split(size=9):
    """(training buffer, held-out buffer) of the SGF games in docs/go-match."""
    from freenet.go.train import ReplayBuffer, sgf_records

    train, held = ReplayBuffer(size), ReplayBuffer(size)
    for d, _, files in sorted(os.walk(GO_GAMES)):
        if any(f.endswith(".sgf") for f in files):
            records, _ = sgf_records(d, size, log=lambda *a: None)
            (held if os.path.basename(d) == GO_HELD_OUT else train).add(records)
    return train, held


def go_losses(net, buffer, batch=512):
    """Mean (policy cross-entropy, value MSE) of ``net`` over every position of ``buffer`` (eval mode)."""
    import freenet as fn
    from freenet.go.features import PLANES
    from freenet.nn import functional as F

    arrays = buffer.arrays()
    bits, policy, value = arrays["planes"], arrays["policy"], arrays["value"]
    N, totals = buffer.size, np.zeros(2)
    net.eval()
    with fn.no_grad():
        for i in range(0, len(value), batch):
            b = bits[i:i + batch]
            x = np.unpackbits(b, axis=1, count=PLANES * N * N).reshape(len(b), PLANES, N, N).astype(np.float32)
            logits, v = net(fn.from_numpy(x))
            totals += (F.cross_entropy(logits, fn.from_numpy(policy[i:i + batch])).item() * len(b),
                       F.mse_loss(v, fn.from_numpy(value[i:i + batch])).item() * len(b))
    return tuple(totals / len(value))


def go_curve(path, seed, chunks, steps, split, blocks=6, filters=64, batch=256, lr=0.02):
    """[{step, train_policy, train_value, held_policy, held_value}] of a 9x9 net trained on ``path``."""
    from freenet.go.net import new_net
    from freenet.go.train import make_optimizer, train_steps
    from freenet.serialize import weights_sha256

    use_path(path)
    train, held = split
    net = new_net(train.size, blocks, filters, seed=seed)
    opt = make_optimizer(net, lr, 0.9, 1e-4)
    curve = []
    for chunk in range(1, chunks + 1):
        means = train_steps(net, opt, train, steps, batch, np.random.default_rng([seed, chunk, 11]))
        tp, tv = means["policy"], means["value"]
        hp, hv = go_losses(net, held)
        curve.append({"step": chunk * steps, "train_policy": tp, "train_value": tv,
                      "held_policy": hp, "held_value": hv})
    return curve, weights_sha256(net.state_dict())


def gaps(runs, key):
    """(largest Winograd-vs-direct gap at the same seed, largest seed-to-seed gap on the same path) of
    ``key`` over the points of the curves."""
    seeds = sorted({s for _, s in runs})
    points = range(len(runs[(PATHS[0], seeds[0])]))
    between_paths = max(abs(runs[("winograd", s)][i][key] - runs[("direct", s)][i][key])
                        for s in seeds for i in points)
    between_seeds = max((abs(runs[(p, a)][i][key] - runs[(p, b)][i][key])
                         for p in PATHS for a in seeds for b in seeds if a < b for i in points), default=None)
    return between_paths, between_seeds


def markdown(results):
    lines = ["# Training curves: Winograd against the direct path", "",
             f"`{results['command']}` at {results['commit']}, {results['threads']} threads.", ""]
    for task, keys in (("mnist", ("train_loss", "test_accuracy")),
                       ("go", ("train_policy", "train_value", "held_policy", "held_value"))):
        if task not in results:
            continue
        runs = {(r["path"], r["seed"]): r["curve"] for r in results[task]["runs"]}
        x = "epoch" if task == "mnist" else "step"
        lines += [f"## {results[task]['title']}", "",
                  "| seed | " + x + " | " + " | ".join(f"{k} winograd | {k} direct" for k in keys) + " |",
                  "|---|---|" + "---|---|" * len(keys)]
        seeds = sorted({s for _, s in runs})
        for seed in seeds:
            for i, point in enumerate(runs[("winograd", seed)]):
                cells = [f"{runs[(p, seed)][i][k]:.4f}" for k in keys for p in PATHS]
                lines.append(f"| {seed} | {point[x]} | " + " | ".join(cells) + " |")
        lines += ["", "| quantity | largest Winograd-direct gap (same seed) | largest gap between seeds "
                  "(same path) |", "|---|---|---|"]
        for k in keys:
            a, b = gaps(runs, k)
            lines.append(f"| {k} | {a:.4f} | {'-' if b is None else f'{b:.4f}'} |")
        lines += ["", f"At the last {x}, over the {len(seeds)} seeds: mean (min - max).", "",
                  "| quantity | winograd | direct |", "|---|---|---|"]
        for k in keys:
            finals = {p: [runs[(p, s)][-1][k] for s in seeds] for p in PATHS}
            lines.append(f"| {k} | " + " | ".join(f"{statistics.mean(v):.4f} ({min(v):.4f} - {max(v):.4f})"
                                                   for v in finals.values()) + " |")
        seconds = {p: statistics.median(r["seconds"] for r in results[task]["runs"] if r["path"] == p)
                   for p in PATHS}
        lines += ["", f"Median time per run: Winograd {seconds['winograd']:.0f} s, direct "
                  f"{seconds['direct']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a folder with the official MNIST files (default: the bundled sample)")
    p.add_argument("--epochs", type=int, default=5, help="MNIST epochs (default: 5)")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: 0,1)")
    p.add_argument("--go-chunks", type=int, default=8, help="Go: evaluations of the held-out games (default: 8)")
    p.add_argument("--go-steps", type=int, default=50, help="Go: SGD steps between them (default: 50)")
    p.add_argument("--tasks", default="mnist,go", help="comma-separated: mnist, go (default: both)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--add", metavar="JSON", help="an earlier run's --json (same settings, other seeds): its "
                   "runs join this one's in the tables")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--markdown", help="write the tables here")
    args = p.parse_args(argv)
    import subprocess

    import freenet as fn

    fn.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    results = {"command": "python benchmarks/winograd_curves.py " + " ".join(argv or sys.argv[1:]),
               "commit": commit, "threads": args.threads, "seeds": seeds}
    if "mnist" in tasks:
        runs = []
        for seed in seeds:
            for path in PATHS:
                t0 = time.perf_counter()
                curve, sha = mnist_curve(path, seed, args.epochs, args.data)
                runs.append({"path": path, "seed": seed, "curve": curve, "sha256": sha,
                             "seconds": time.perf_counter() - t0})
                print(f"mnist seed {seed} {path}: {curve[-1]} ({runs[-1]['seconds']:.0f} s)", flush=True)
        results["mnist"] = {"title": f"MNIST ({'bundled sample' if args.data is None else 'official files'}, "
                                     f"{args.epochs} epochs, default recipe)", "runs": runs}
    if "go" in tasks:
        split = go_split()
        runs = []
        for seed in seeds:
            for path in PATHS:
                t0 = time.perf_counter()
                curve, sha = go_curve(path, seed, args.go_chunks, args.go_steps, split)
                runs.append({"path": path, "seed": seed, "curve": curve, "sha256": sha,
                             "seconds": time.perf_counter() - t0})
                print(f"go seed {seed} {path}: {curve[-1]} ({runs[-1]['seconds']:.0f} s)", flush=True)
        results["go"] = {"title": f"9x9 Go, 6x64 net, supervised on docs/go-match ({len(split[0])} positions; "
                                  f"{len(split[1])} held out), batch 256", "runs": runs}
    use_path("winograd")
    if args.add:
        with open(args.add) as f:
            earlier = json.load(f)
        results["command"] = f"{earlier['command']}` at {earlier['commit']} and `{results['command']}"
        results["seeds"] = sorted(set(earlier["seeds"]) | set(seeds))
        for task in ("mnist", "go"):
            if task in earlier:
                results.setdefault(task, {"title": earlier[task]["title"], "runs": []})
                if results[task]["title"] != earlier[task]["title"]:
                    raise SystemExit(f"--add: {args.add} has other {task} settings: {earlier[task]['title']}")
                results[task]["runs"] = earlier[task]["runs"] + results[task]["runs"]
    text = markdown(results)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
