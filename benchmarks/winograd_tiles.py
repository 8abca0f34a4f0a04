"""Time freenet's Winograd conv kernels per tile size F(m x m, 3x3), m = 2, 3, 4 (float32, 3x3, s1, p1).

    python benchmarks/winograd_tiles.py [--threads 1] [--shapes go9-b256,mnist-c2] [--reps 7]

For every shape and pass (forward, input gradient, weight gradient) the tile sizes are run
alternately (conv.WINO_TILE forces one), in blocks of back-to-back calls; the table shows the median
per call in ms and the chosen tile size of the built-in rule (``*``). The machine may be shared: the
alternation keeps the comparison fair, the medians keep it stable.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

SHAPES = {  # name: (N, C, H=W, K)
    "go9-b1": (1, 64, 9, 64),
    "go9-b8": (8, 64, 9, 64),
    "go9-b16": (16, 64, 9, 64),
    "go9-b256": (256, 64, 9, 64),
    "go9-128": (256, 128, 9, 128),
    "go19-b64-64": (64, 64, 19, 64),
    "go19-b64": (64, 128, 19, 128),
    "go19-256-b1": (1, 256, 19, 256),
    "mnist-c2": (128, 32, 14, 64),
    "cifar": (128, 64, 32, 64),
}
TILES = (2, 3, 4)


def bench(shape, reps, budget):
    from freenet.kernels import conv

    N, C, H, K = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((K, C, 3, 3), dtype=np.float32)
    b = rng.standard_normal(K, dtype=np.float32)
    gy = rng.standard_normal((N, K, H, H), dtype=np.float32)
    passes = {
        "fwd": lambda: conv.conv2d_forward(x, w, b, 1, 1),
        "bwd-in": lambda: conv.conv2d_backward_input(gy, w, x.shape, 1, 1),
        "bwd-w": lambda: conv.conv2d_backward_weight(gy, x, w.shape, 1, 1),
    }
    g = conv._geometry(x.shape, w.shape, 1, 1, 1, 1)
    chosen = {"fwd": conv._wino_tile(g), "bwd-in": conv._wino_tile(g), "bwd-w": conv._wino_tile(g, grad=True)}
    times = {(p, m): [] for p in passes for m in TILES}
    try:
        for m in TILES:  # warm-up: compile, allocate scratch
            conv.WINO_TILE = m
            for f in passes.values():
                f()
        for _ in range(reps):
            for p, f in passes.items():
                for m in TILES:
                    conv.WINO_TILE = m
                    time.sleep(0.01)
                    f()
                    end = time.perf_counter() + budget
                    while True:
                        t0 = time.perf_counter()
                        f()
                        times[p, m].append(time.perf_counter() - t0)
                        if time.perf_counter() > end:
                            break
    finally:
        conv.WINO_TILE = None
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}, chosen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shapes", default="", help="comma-separated subset of: " + ", ".join(SHAPES))
    p.add_argument("--reps", type=int, default=7, help="alternation rounds")
    p.add_argument("--budget", type=float, default=0.05, help="seconds of timed calls per block")
    args = p.parse_args(argv)
    from freenet.kernels.parallel import set_num_threads

    set_num_threads(args.threads)
    names = [s for s in args.shapes.split(",") if s] or list(SHAPES)
    print(f"threads={args.threads}; median ms per call for F(2x2), F(3x3), F(4x4); * = the rule's choice")
    print(f"{'shape':12s} {'(N,C,HxW,K)':19s} {'pass':7s} " + " ".join(f"{f'F({m}x{m})':>10s}" for m in TILES))
    for name in names:
        N, C, H, K = SHAPES[name]
        med, chosen = bench(SHAPES[name], args.reps, args.budget)
        for ps in ("fwd", "bwd-in", "bwd-w"):
            cells = " ".join(f"{med[ps, m]:9.3f}{'*' if chosen[ps] == m else ' '}" for m in TILES)
            print(f"{name:12s} {f'({N},{C},{H}x{H},{K})':19s} {ps:7s} {cells}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
