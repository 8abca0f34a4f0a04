"""The Winograd F(m x m, 3x3) matrices (B^T, G, A^T) for m = 2, 3, 4: see ``winograd.py``."""

import numpy as np

_F = np.array  # (the matrices below as float64 arrays)

# F(2x2, 3x3): points 0, 1, -1, infinity.
_BT2 = _F([[1, 0, -1, 0],
           [0, 1, 1, 0],
           [0, -1, 1, 0],
           [0, 1, 0, -1]], np.float64)
_G2 = _F([[1, 0, 0],
          [1 / 2, 1 / 2, 1 / 2],
          [1 / 2, -1 / 2, 1 / 2],
          [0, 0, 1]], np.float64)
_AT2 = _F([[1, 1, 1, 0],
           [0, 1, -1, -1]], np.float64)

# F(3x3, 3x3): points 0, 1, -1, 2, infinity.
_BT3 = _F([[2, -1, -2, 1, 0],
           [0, -2, -1, 1, 0],
           [0, 2, -3, 1, 0],
           [0, -1, 0, 1, 0],
           [0, 2, -1, -2, 1]], np.float64)
_G3 = _F([[1 / 2, 0, 0],
          [-1 / 2, -1 / 2, -1 / 2],
          [-1 / 6, 1 / 6, -1 / 6],
          [1 / 6, 1 / 3, 2 / 3],
          [0, 0, 1]], np.float64)
_AT3 = _F([[1, 1, 1, 1, 0],
           [0, 1, -1, 2, 0],
           [0, 1, 1, 4, 1]], np.float64)

# F(4x4, 3x3): points 0, 1, -1, 2, -2, infinity (the usual matrices of Lavin & Gray).
_BT4 = _F([[4, 0, -5, 0, 1, 0],
           [0, -4, -4, 1, 1, 0],
           [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0],
           [0, 2, -1, -2, 1, 0],
           [0, 4, 0, -5, 0, 1]], np.float64)
_G4 = _F([[1 / 4, 0, 0],
          [-1 / 6, -1 / 6, -1 / 6],
          [-1 / 6, 1 / 6, -1 / 6],
          [1 / 24, 1 / 12, 1 / 6],
          [1 / 24, -1 / 12, 1 / 6],
          [0, 0, 1]], np.float64)
_AT4 = _F([[1, 1, 1, 1, 1, 0],
           [0, 1, -1, 2, -2, 0],
           [0, 1, 1, 4, 4, 0],
           [0, 1, -1, 8, -8, 1]], np.float64)

WINOGRAD = {2: (_BT2, _G2, _AT2), 3: (_BT3, _G3, _AT3), 4: (_BT4, _G4, _AT4)}  # m: (B^T, G, A^T)
assert all((AT[:, 1] == 1).all() for _, _, AT in WINOGRAD.values())  # point 1 second (bias gradient)
