"""The 8 symmetries of the square board, numbered as Leela Zero numbers them.

Symmetry ``s`` maps point (x, y) to (x', y'): first swap x and y if ``s & 4``, then mirror x if ``s & 2``,
then mirror y if ``s & 1``. ``table(N, s)[i]`` is the point whose content lands on index ``i``: the net
sees ``planes[..., table[i]]`` at ``i``, and its output at ``i`` belongs to point ``table[i]``
(Leela Zero's ``symmetry_nn_idx_table``). Symmetry 0 is the identity; the pass stays the pass.
"""

import functools

import numpy as np

COUNT = 8


@functools.lru_cache(maxsize=None)
def table(size, s):
    t = np.empty(size * size, np.int64)
    for y in range(size):
        for x in range(size):
            a, b = x, y
            if s & 4:
                a, b = b, a
            if s & 2:
                a = size - a - 1
            if s & 1:
                b = size - b - 1
            t[y * size + x] = b * size + a
    t.flags.writeable = False
    return t


def transform_planes(planes, s):
    """Input planes (..., N, N) as the net sees them under symmetry ``s``."""
    N = planes.shape[-1]
    flat = planes.reshape(planes.shape[:-2] + (N * N,))
    return flat[..., table(N, s)].reshape(planes.shape)


def transform_policy(policy, s):
    """A policy target over N*N + 1 moves, re-indexed like the transformed planes (pass unchanged)."""
    N = int(round((policy.shape[-1] - 1) ** 0.5))
    out = policy.copy()
    out[..., :N * N] = policy[..., table(N, s)]
    return out


def untransform_policy(policy, s):
    """The net's output under symmetry ``s`` put back on the board's own points (pass unchanged)."""
    N = int(round((policy.shape[-1] - 1) ** 0.5))
    out = policy.copy()
    out[..., table(N, s)] = policy[..., :N * N]
    return out


def untransform_points(values, s):
    """A per-point map (..., N*N) the net gave under symmetry ``s`` (an ownership map) put back on the
    board's own points."""
    N = int(round(values.shape[-1] ** 0.5))
    out = np.empty_like(values)
    out[..., table(N, s)] = values
    return out


def transform_points(values, s):
    """A per-point map (..., N*N) (an ownership target) re-indexed like the transformed planes."""
    N = int(round(values.shape[-1] ** 0.5))
    return values[..., table(N, s)]
