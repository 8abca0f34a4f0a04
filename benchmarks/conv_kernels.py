"""Benchmark freenet's conv2d kernels against PyTorch on CPU (3x3, stride 1, padding 1, float32).

    python benchmarks/conv_kernels.py [--quick] [--threads 2] [--shapes go9-b1,cifar] [--parts]

For every shape: the forward (with bias), and forward + input, weight and bias gradients, for
freenet and for torch.nn.functional.conv2d (+ torch.autograd backward) in NCHW and channels_last.
The implementations are run alternately, in blocks of back-to-back calls (a pause, WARM seconds of
untimed calls, then TIMED timed calls), after a first warm-up, with the same thread count; the
table shows the medians of the timed calls. GFLOP/s counts 2*N*C*K*H*W*9 per convolution (x3 for
forward + backward). ratio = freenet time / torch NCHW time (below 1: freenet is faster).
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
    "go9-b16": (16, 64, 9, 64),
    "go9-b256": (256, 64, 9, 64),
    "go9-128": (256, 128, 9, 128),
    "go19-b64": (64, 128, 19, 128),
    "go19-256-b1": (1, 256, 19, 256),
    "mnist-c1": (128, 1, 28, 32),
    "mnist-c2": (128, 32, 14, 64),
    "cifar": (128, 64, 32, 64),
}


GAP = 0.03  # seconds of pause before each block
WARM = 0.02  # seconds of untimed calls at the start of each block
TIMED = 3  # timed calls per block


def _reps(flops, quick):
    """Repetitions: more for small problems, bounded time for big ones."""
    if flops < 5e7:
        n = 15
    elif flops < 1e9:
        n = 8
    else:
        n = 4
    return max(2, n // 3) if quick else n


def bench_shape(name, shape, threads, quick, parts):
    import torch
    import torch.nn.functional as F
    from freenet.kernels import conv as fc

    N, C, H, K = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((K, C, 3, 3), dtype=np.float32) / np.sqrt(9 * C)).astype(np.float32)
    b = rng.standard_normal(K, dtype=np.float32)
    gy = rng.standard_normal((N, K, H, H), dtype=np.float32)
    st, pad = (1, 1), (1, 1)

    def fn_fwd():
        fc.conv2d_forward(x, w, b, st, pad)

    def fn_fb():
        fc.conv2d_forward(x, w, b, st, pad)
        fc.conv2d_backward_input(gy, w, x.shape, st, pad, 1, 1)
        fc.conv2d_backward_weight(gy, x, w.shape, st, pad, 1, 1)
        fc.conv2d_backward_bias(gy)

    def torch_fns(channels_last):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        tx = torch.from_numpy(x).contiguous(memory_format=fmt).requires_grad_(True)
        tw = torch.from_numpy(w).contiguous(memory_format=fmt).requires_grad_(True)
        tb = torch.from_numpy(b).requires_grad_(True)
        tgy = torch.from_numpy(gy).contiguous(memory_format=fmt)

        def fwd():
            with torch.no_grad():
                F.conv2d(tx, tw, tb, 1, 1)

        def fb():
            y = F.conv2d(tx, tw, tb, 1, 1)
            torch.autograd.backward(y, tgy)
            tx.grad = tw.grad = tb.grad = None

        return fwd, fb

    t_fwd, t_fb = torch_fns(False)
    c_fwd, c_fb = torch_fns(True)
    fns = {"fwd": [fn_fwd, t_fwd, c_fwd], "fb": [fn_fb, t_fb, c_fb]}
    if parts:
        fns["parts"] = [
            lambda: fc.conv2d_backward_input(gy, w, x.shape, st, pad, 1, 1),
            lambda: fc.conv2d_backward_weight(gy, x, w.shape, st, pad, 1, 1),
            lambda: fc.conv2d_backward_bias(gy),
        ]
    flops = 2 * N * C * K * H * H * 9
    reps = _reps(flops, quick)
    times = {k: [[] for _ in v] for k, v in fns.items()}
    for fl in fns.values():  # warm-up (compiles, allocates, creates oneDNN primitives)
        for f in fl:
            f()
            f()
    # Alternate in blocks: a pause (torch's libgomp workers spin for ~6 ms after each call and would
    # take the cores from the next block), untimed back-to-back calls for WARM seconds (at least
    # one), then TIMED timed calls: each implementation is measured warm, as in a training loop.
    for _ in range(reps):
        for key, fl in fns.items():
            for i, f in enumerate(fl):
                time.sleep(GAP)
                end = time.perf_counter() + WARM
                f()
                while time.perf_counter() < end:
                    f()
                for _ in range(TIMED):
                    t0 = time.perf_counter()
                    f()
                    times[key][i].append(time.perf_counter() - t0)
    med = {k: [statistics.median(t) * 1e3 for t in v] for k, v in times.items()}
    return flops, reps, med


def _cpu_ticks():
    """(busy ticks of all cores, ticks of this process) from /proc, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(a) for a in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(v) - v[3] - v[4], sum(v), int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--threads", type=int, default=2, help="threads for freenet and torch (default 2)")
    p.add_argument("--shapes", default="", help="comma-separated subset of: " + ", ".join(SHAPES))
    p.add_argument("--parts", action="store_true",
                   help="also time freenet's input, weight and bias gradients separately")
    args = p.parse_args(argv)

    import torch
    from freenet.kernels.parallel import set_num_threads

    set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    names = [s for s in args.shapes.split(",") if s] or list(SHAPES)
    for s in names:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}")
    print(f"threads={args.threads} torch={torch.__version__} numpy={np.__version__} float32, 3x3 s1 p1")
    print("ms = median; GF/s = 2*N*C*K*H*W*9 (x3 for fwd+bwd) / time; ratio = freenet / torch NCHW")
    head = (f"{'shape':12s} {'(N,C,HxW,K)':17s} {'pass':7s} {'freenet ms':>10s} {'GF/s':>6s} "
            f"{'torch ms':>9s} {'GF/s':>6s} {'torch-CL ms':>11s} {'GF/s':>6s} {'ratio':>6s}")
    print(head)
    print("-" * len(head))
    start = _cpu_ticks()
    for name in names:
        N, C, H, K = SHAPES[name]
        flops, reps, med = bench_shape(name, SHAPES[name], args.threads, args.quick, args.parts)
        for key, label, mult in (("fwd", "fwd", 1), ("fb", "fwd+bwd", 3)):
            f, t, c = med[key]
            gf = lambda ms: mult * flops / (ms * 1e-3) / 1e9  # noqa: E731
            print(f"{name:12s} {f'({N},{C},{H}x{H},{K})':17s} {label:7s} {f:10.3f} {gf(f):6.1f} "
                  f"{t:9.3f} {gf(t):6.1f} {c:11.3f} {gf(c):6.1f} {f / t:6.2f}")
        if args.parts:
            gi, gw, gb = med["parts"]
            print(f"{'':12s} freenet parts: fwd {med['fwd'][0]:.3f} ms, input-grad {gi:.3f} ms, "
                  f"weight-grad {gw:.3f} ms, bias-grad {gb:.3f} ms  ({reps * TIMED} timed calls)")
        sys.stdout.flush()
    end = _cpu_ticks()
    if start and end:  # the machine is shared: how much of it did others use meanwhile?
        busy, total, mine = (b - a for a, b in zip(start, end))
        print(f"other processes used {100 * max(busy - mine, 0) / max(total, 1):.0f}% of the machine's "
              f"CPU time during the run (this benchmark: {100 * mine / max(total, 1):.0f}%)")


if __name__ == "__main__":
    main()
