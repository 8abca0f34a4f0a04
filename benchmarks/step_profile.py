"""Where a training step's time goes: wall time per ``freenet.kernels`` entry point, per step.

    python benchmarks/step_profile.py mnist|go9 [--threads 2] [--steps 10] [--with-torch] [--by-shape]

Builds the suite's MNIST CNN (batch 128) or freenet's 9x9 6x64 GoNet (batch 256), runs a few warm-up
steps, then times ``--steps`` SGD steps with every public kernel wrapped in a timer (outermost calls
only). ``--with-torch`` imports PyTorch first, as the benchmark suite does, to see what sharing its
OpenMP runtime costs (see ``benchmarks/__init__.py``). Also times the thread pool's cost of handing
out two empty tasks. ``--by-shape`` splits each entry point's time by the shape of its first argument.
"""

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("net", choices=["mnist", "go9"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--with-torch", action="store_true", help="import PyTorch first, as the suite does")
    p.add_argument("--by-shape", action="store_true", help="time each entry point per shape of its first argument")
    args = p.parse_args(argv)
    if args.with_torch:
        import torch  # noqa: F401
    import freenet as fn
    from freenet import kernels

    threads_before = fn.get_num_threads()
    fn.set_num_threads(args.threads)
    spent, depth = collections.Counter(), [0]

    def timed(name, f):
        def call(*a, **k):
            if depth[0]:
                return f(*a, **k)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                key = f"{name} {tuple(getattr(a[0], 'shape', ()))}" if args.by_shape and a else name
                spent[key] += time.perf_counter() - t
                depth[0] -= 1
        return call

    originals = {name: getattr(kernels, name) for name in dir(kernels)
                 if callable(getattr(kernels, name)) and not isinstance(getattr(kernels, name), type)
                 and not name.startswith("_") and "reference" not in name}
    for name, f in originals.items():
        setattr(kernels, name, timed(name, f))
    try:
        _profile(args, kernels, spent)
    finally:
        for name, f in originals.items():
            setattr(kernels, name, f)
        fn.set_num_threads(threads_before)


def _profile(args, kernels, spent):
    import numpy as np

    import freenet as fn
    from freenet import nn, optim
    from freenet.kernels.parallel import run_blocks
    from freenet.nn import functional as F

    rng = np.random.default_rng(0)
    if args.net == "mnist":
        from benchmarks.models import mnist_cnn
        net = mnist_cnn(nn)
        x, y = rng.standard_normal((128, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 128)

        def loss():
            return F.cross_entropy(net(fn.from_numpy(x)), fn.from_numpy(y))
    else:
        from freenet.go.net import new_net
        net = new_net(9, 6, 64)
        x = rng.standard_normal((256, 18, 9, 9)).astype(np.float32)
        pi = np.eye(82, dtype=np.float32)[rng.integers(0, 82, 256)]
        z = rng.uniform(-1, 1, 256).astype(np.float32)

        def loss():
            logits, v = net(fn.from_numpy(x))
            return F.cross_entropy(logits, fn.from_numpy(pi)) + F.mse_loss(v, fn.from_numpy(z))
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()

    for _ in range(3):
        step()
    spent.clear()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - t) / args.steps * 1e3
    print(f"{args.net}, {args.threads} thread(s){', PyTorch imported first' if args.with_torch else ''}: "
          f"{per_step:.1f} ms per step, {sum(spent.values()) / args.steps * 1e3:.1f} ms in kernels")
    for name, s in spent.most_common(30 if args.by_shape else 12):
        print(f"  {name:56s} {s / args.steps * 1e3:8.2f} ms")
    hand_off = []
    for _ in range(41):
        t = time.perf_counter()
        run_blocks(lambda i: None, 2)
        hand_off.append(time.perf_counter() - t)
    print(f"thread pool, two empty tasks: {sorted(hand_off)[20] * 1e6:.0f} us (median of 41)")


if __name__ == "__main__":
    main()
