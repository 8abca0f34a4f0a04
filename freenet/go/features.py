"""The net's input: Leela Zero's 18 planes, for a board of any size.

For a position with ``c`` to move (N x N each, row 0 at the bottom, as the points are numbered):

    planes 0-7    c's stones now, one move ago, ..., seven moves ago
    planes 8-15   the opponent's stones at the same eight times
    plane 16      all ones if Black is to move, else zeros
    plane 17      all ones if White is to move, else zeros

"c's stones seven moves ago" means the stones of the colour to move *now*, on the board as it was then
(passes count as moves). Before the game began the planes are zero. This is exactly
``Network::gather_features`` of Leela Zero 0.17, so exported nets see the same input there.
"""

import numpy as np

from freenet.go.board import BLACK, WHITE

HISTORY = 8
PLANES = 2 * HISTORY + 2


def planes(board, out=None):
    """The (18, N, N) float32 input planes of ``board`` (a ``Board``)."""
    N = board.size
    if out is None:
        out = np.zeros((PLANES, N, N), np.float32)
    else:
        out[...] = 0
    me, them = board.to_move, 3 - board.to_move
    boards = (board.stones_array(),) + board.past[:HISTORY - 1]
    for h, stones in enumerate(boards):
        out[h] = stones == me
        out[HISTORY + h] = stones == them
    out[2 * HISTORY if me == BLACK else 2 * HISTORY + 1] = 1.0
    return out


def batch_planes(boards):
    """(len(boards), 18, N, N) float32: the planes of each board."""
    N = boards[0].size
    out = np.zeros((len(boards), PLANES, N, N), np.float32)
    for i, b in enumerate(boards):
        planes(b, out[i])
    return out


assert WHITE == 3 - BLACK
