"""Image augmentations the recipes share, on NumPy batches (N, C, H, W), drawn from a given generator so
that a recipe's seed decides them.

>>> import numpy as np
>>> images = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
>>> random_flip(images, np.random.default_rng(0))[0, 0].tolist()
[[1.0, 0.0], [3.0, 2.0]]
"""

import numpy as np


def random_shift(images, max_shift, rng):
    """Each image translated by its own random (dy, dx) in [-max_shift, max_shift], zeros shifted in: the
    same as a random crop of the original size from the image padded with ``max_shift`` zeros."""
    if max_shift == 0:
        return images
    n, c, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))  # (n, c, dy, dx, h, w)
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.ascontiguousarray(windows[np.arange(n), :, dy, dx])


def random_flip(images, rng):
    """Each image mirrored left to right with probability 1/2 (one draw per image)."""
    flip = rng.integers(0, 2, size=len(images)).astype(bool)
    out = images.copy()
    out[flip] = images[flip, :, :, ::-1]
    return out
