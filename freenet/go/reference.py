"""A small, obviously correct implementation of the rules, for tests: slow on purpose.

The board is a dict from (row, col) to BLACK/WHITE; groups and liberties are found by flood fill every
time; the positions seen so far are kept as frozensets for positional superko. Same point numbering and
colours as ``freenet.go.board``.
"""

from freenet.go.board import BLACK, EMPTY, WHITE


class ReferenceBoard:
    def __init__(self, size):
        self.size = size
        self.stones = {}
        self.to_move = BLACK
        self.passes = 0
        self.seen = {frozenset()}

    def neighbours(self, p):
        r, c = p
        for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= q[0] < self.size and 0 <= q[1] < self.size:
                yield q

    def group(self, stones, p):
        """(the stones of p's group, its liberties) on ``stones``."""
        colour = stones[p]
        group, libs, todo = {p}, set(), [p]
        while todo:
            q = todo.pop()
            for n in self.neighbours(q):
                if n not in stones:
                    libs.add(n)
                elif stones[n] == colour and n not in group:
                    group.add(n)
                    todo.append(n)
        return group, libs

    def after(self, point):
        """The stones after the side to move plays ``point``, or None if it is occupied or suicide."""
        p = divmod(point, self.size)
        if p in self.stones:
            return None
        stones = dict(self.stones)
        stones[p] = self.to_move
        for n in self.neighbours(p):
            if stones.get(n) == 3 - self.to_move:
                group, libs = self.group(stones, n)
                if not libs:
                    for q in group:
                        del stones[q]
        if not self.group(stones, p)[1]:
            return None
        return stones

    def is_legal(self, point):
        if self.passes >= 2:
            return False
        if point == self.size * self.size:
            return True
        stones = self.after(point)
        return stones is not None and frozenset(stones.items()) not in self.seen

    def play(self, point):
        assert self.is_legal(point)
        if point == self.size * self.size:
            self.passes += 1
        else:
            self.stones = self.after(point)
            self.seen.add(frozenset(self.stones.items()))
            self.passes = 0
        self.to_move = 3 - self.to_move

    def array(self):
        return [[self.stones.get((r, c), EMPTY) for c in range(self.size)] for r in range(self.size)]

    def area(self):
        """Tromp-Taylor: each colour's stones plus the empty points from which only that colour is reachable."""
        counts = {BLACK: 0, WHITE: 0}
        for colour in self.stones.values():
            counts[colour] += 1
        done = set()
        for r in range(self.size):
            for c in range(self.size):
                if (r, c) in self.stones or (r, c) in done:
                    continue
                region, reach, todo = {(r, c)}, set(), [(r, c)]
                while todo:
                    q = todo.pop()
                    for n in self.neighbours(q):
                        if n in self.stones:
                            reach.add(self.stones[n])
                        elif n not in region:
                            region.add(n)
                            todo.append(n)
                done |= region
                if len(reach) == 1:
                    counts[reach.pop()] += len(region)
        return counts[BLACK], counts[WHITE]
