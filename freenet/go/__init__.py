"""Go: rules, Leela-Zero-style input planes and nets, MCTS, self-play and training, a GTP engine,
matches between GTP engines, and Leela Zero's weight format. ``freenet go --help`` lists the commands;
docs/go.md says how to use them and what has been measured.

Modules, one job each: ``board`` (rules), ``reference`` (slow rules for tests), ``features`` (input
planes), ``symmetry``, ``net``, ``mcts``, ``selfplay``, ``train``, ``sgf``, ``gtp``, ``match``, ``lz_weights``.
freenet.go uses only freenet's public API; the engine never imports it.
"""

from freenet.go.board import BLACK, EMPTY, WHITE, Board, IllegalMove

__all__ = ["Board", "IllegalMove", "BLACK", "WHITE", "EMPTY"]
