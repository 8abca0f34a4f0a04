"""Pooling, batch-norm, dropout and fused elementwise kernels against PyTorch's CPU kernels.

    python -m benchmarks.elementwise_kernels [--threads 2] [--repeats 7] [--shapes 128,32,28,28 ...]

Prints the median time per call of each freenet kernel and of the matching torch call(s), and the
ratio freenet / torch (below 1 means freenet is faster). float32, NCHW, both libraries on the same
number of threads; the two alternate sample by sample (``benchmarks.timing``), so load from other
processes hits both alike. Torch is only a peer here; freenet does not need it.
"""

import argparse
import os
import sys

import numpy as np

try:
    from benchmarks.timing import time_alternating
except ImportError:  # run as a script: python benchmarks/elementwise_kernels.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.timing import time_alternating

from freenet.kernels import dropout as D
from freenet.kernels import fused as F
from freenet.kernels import norm as N
from freenet.kernels import pool as P
from freenet.kernels.parallel import set_num_threads


def cases(shape, torch):
    import torch.nn.functional as tf

    aten = torch.ops.aten
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    r = rng.standard_normal(shape, dtype=np.float32)
    gy = rng.standard_normal(shape, dtype=np.float32)
    gamma = rng.standard_normal(c, dtype=np.float32)
    beta = rng.standard_normal(c, dtype=np.float32)
    rmean = np.zeros(c, dtype=np.float32)
    rvar = np.ones(c, dtype=np.float32)
    tx, tr, tgy = (torch.from_numpy(a) for a in (x, r, gy))
    tg, tb, trm, trv = (torch.from_numpy(a.copy()) for a in (gamma, beta, rmean, rvar))

    out = []

    # max pooling, 2x2 stride 2 and 3x3 stride 2 pad 1
    for k, s, p in ((2, 2, 0), (3, 2, 1)):
        y, idx = P.max_pool2d_forward(x, k, s, p)
        ty, tidx = aten.max_pool2d_with_indices(tx, [k, k], [s, s], [p, p])
        gyp = rng.standard_normal(y.shape, dtype=np.float32)
        tgyp = torch.from_numpy(gyp)
        out.append((f"max_pool2d fwd k{k}s{s}p{p} (with indices)",
                    lambda: P.max_pool2d_forward(x, k, s, p),
                    lambda: aten.max_pool2d_with_indices(tx, [k, k], [s, s], [p, p])))
        out.append((f"max_pool2d bwd k{k}s{s}p{p}",
                    lambda: P.max_pool2d_backward(gyp, idx, x.shape),
                    lambda: aten.max_pool2d_with_indices_backward(tgyp, tx, [k, k], [s, s], [p, p],
                                                                   [1, 1], False, tidx)))
    k, s, p = 3, 2, 1
    y = P.avg_pool2d_forward(x, k, s, p)
    gya = rng.standard_normal(y.shape, dtype=np.float32)
    tgya = torch.from_numpy(gya)
    out.append(("avg_pool2d fwd k3s2p1", lambda: P.avg_pool2d_forward(x, k, s, p),
                lambda: tf.avg_pool2d(tx, k, s, p)))
    out.append(("avg_pool2d bwd k3s2p1", lambda: P.avg_pool2d_backward(gya, x.shape, k, s, p),
                lambda: aten.avg_pool2d_backward(tgya, tx, [k, k], [s, s], [p, p], False, True,
                                                 None)))
    out.append(("global_avg_pool2d fwd", lambda: P.global_avg_pool2d_forward(x),
                lambda: tx.mean((2, 3))))
    gyg = rng.standard_normal((n, c), dtype=np.float32)
    tgyg = torch.from_numpy(gyg)
    out.append(("global_avg_pool2d bwd", lambda: P.global_avg_pool2d_backward(gyg, x.shape),
                lambda: (tgyg / (h * w))[:, :, None, None].expand(n, c, h, w).contiguous()))

    # batch norm
    y, mean, invstd = N.batch_norm_train_forward(x, gamma, beta, 1e-5)
    tsave = aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)

    def fn_bn_train():
        _, m, inv = N.batch_norm_train_forward(x, gamma, beta, 1e-5)
        N.batch_norm_update_running(rmean, rvar, m, N.batch_norm_unbiased_var(inv, 1e-5, n * h * w),
                                    0.1)

    out.append(("batch_norm train fwd (+running)", fn_bn_train,
                lambda: aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)))
    out.append(("batch_norm bwd", lambda: N.batch_norm_backward(gy, x, gamma, mean, invstd),
                lambda: aten.native_batch_norm_backward(tgy, tx, tg, trm, trv, tsave[1], tsave[2],
                                                        True, 1e-5, [True, True, True])))
    out.append(("batch_norm eval fwd",
                lambda: N.batch_norm_eval_forward(x, rmean, rvar, gamma, beta, 1e-5),
                lambda: tf.batch_norm(tx, trm, trv, tg, tb, False, 0.1, 1e-5)))

    # fused passes; torch runs the unfused sequence an autograd graph would run
    tbias = tb.view(1, c, 1, 1)
    y = F.bias_relu_forward(x, beta)
    ty = torch.relu(tx + tbias)
    out.append(("bias_relu fwd", lambda: F.bias_relu_forward(x, beta),
                lambda: torch.relu(tx + tbias)))

    def torch_bias_relu_bwd():
        g = aten.threshold_backward(tgy, ty, 0)
        return g, g.sum((0, 2, 3))

    out.append(("bias_relu bwd", lambda: F.bias_relu_backward(gy, y), torch_bias_relu_bwd))

    yb, mb, ib = F.batch_norm_relu_train_forward(x, gamma, beta, 1e-5)
    tyb = torch.relu(tsave[0])

    def torch_bn_relu():
        t = aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)
        return torch.relu_(t[0])

    def torch_bn_relu_bwd():
        g = aten.threshold_backward(tgy, tyb, 0)
        return aten.native_batch_norm_backward(g, tx, tg, trm, trv, tsave[1], tsave[2], True, 1e-5,
                                               [True, True, True])

    out.append(("bn_relu train fwd", lambda: F.batch_norm_relu_train_forward(x, gamma, beta, 1e-5),
                torch_bn_relu))
    out.append(("bn_relu bwd", lambda: F.batch_norm_relu_backward(gy, yb, x, gamma, mb, ib),
                torch_bn_relu_bwd))

    ya = F.add_relu_forward(x, r)
    tya = torch.relu(tx + tr)
    out.append(("add_relu fwd", lambda: F.add_relu_forward(x, r), lambda: torch.relu(tx + tr)))
    out.append(("add_relu bwd", lambda: F.add_relu_backward(gy, ya),
                lambda: aten.threshold_backward(tgy, tya, 0)))

    yr, mr, ir = F.batch_norm_add_relu_train_forward(x, r, gamma, beta, 1e-5)
    tyr = torch.relu(tsave[0] + tr)

    def torch_bn_add_relu():
        t = aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)
        return torch.relu_(t[0].add_(tr))

    def torch_bn_add_relu_bwd():
        g = aten.threshold_backward(tgy, tyr, 0)
        return g, aten.native_batch_norm_backward(g, tx, tg, trm, trv, tsave[1], tsave[2], True,
                                                  1e-5, [True, True, True])

    out.append(("bn_add_relu train fwd",
                lambda: F.batch_norm_add_relu_train_forward(x, r, gamma, beta, 1e-5),
                torch_bn_add_relu))
    out.append(("bn_add_relu bwd", lambda: F.batch_norm_add_relu_backward(gy, yr, x, gamma, mr, ir),
                torch_bn_add_relu_bwd))

    # dropout
    _, mask = D.dropout_forward(x, 0.5, 1234)
    _, tmask = aten.native_dropout(tx, 0.5, True)
    out.append(("dropout fwd p=0.5", lambda: D.dropout_forward(x, 0.5, 1234),
                lambda: aten.native_dropout(tx, 0.5, True)))
    out.append(("dropout bwd p=0.5", lambda: D.dropout_backward(gy, mask, 0.5),
                lambda: aten.native_dropout_backward(tgy, tmask, 2.0)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="alternating samples per library")
    parser.add_argument("--sample-s", type=float, default=0.05, help="seconds per sample")
    parser.add_argument("--shapes", nargs="*", default=["128,32,28,28", "256,64,9,9"])
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    print(f"threads={args.threads} repeats={args.repeats} float32; median ms per call")
    for spec in args.shapes:
        shape = tuple(int(v) for v in spec.split(","))
        print(f"\nshape {shape}")
        print(f"{'kernel':38s} {'freenet':>9s} {'torch':>9s} {'ratio':>7s}")
        for name, ours, theirs in cases(shape, torch):
            stats = time_alternating({"freenet": ours, "torch": theirs}, repeats=args.repeats,
                                     sample_s=args.sample_s)
            a, b = 1e3 * stats["freenet"].median, 1e3 * stats["torch"].median
            print(f"{name:38s} {a:9.3f} {b:9.3f} {a / b:7.2f}", flush=True)


if __name__ == "__main__":
    main()
