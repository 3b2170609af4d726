"""The search of `compat-matrix bisect`: per cell, the first release that takes B's outcome.

Pure logic over an oracle `run(release, cells) -> {cell: outcome or None}`; None means the release
says nothing about the cell (it cannot be installed, or the cell is `skipped` there) and is stepped
over, never taken as good or bad. Many cells are searched at once: each round asks every release
some undecided cell wants, for just those cells, and every answer is kept, so cells sharing a
boundary share the releases tested and nothing is run twice.

A binary search assumes one change in the range. To catch a cell that changes more than once,
the releases next to each boundary are tested too, and every tested release must agree with the
boundary (A's outcome before it, B's from it on); otherwise the cell "changes more than once".
`exhaustive` tests every release instead and lists every change.

While a release is tested, `prepare` (when given) is told which releases may come next: those asked
later in the same round, and for every search the middle of each half it may continue in. Making
their environments meanwhile takes environment creation off the critical path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Literal, Sequence, TypeVar

Outcome = TypeVar("Outcome")
CellKey = TypeVar("CellKey", bound=Hashable)

Verdict = Literal["boundary", "changes more than once", "no change", "undecided"]
"""`boundary`: one change, between last_good and first_bad. `changes more than once`: the tested
releases disagree with a single boundary (`changes` lists what was seen). `no change`: A and B
agree. `undecided`: A or B itself says nothing (skipped, not installable)."""

Oracle = Callable[[str, list[CellKey]], dict[CellKey, "Outcome | None"]]
Prepare = Callable[[list[str]], None]
Same = Callable[[Outcome, Outcome], bool]


@dataclass
class Boundary(Generic[CellKey, Outcome]):
    """The answer for one cell; releases in the order A -> B."""

    cell: CellKey
    verdict: Verdict
    last_good: str | None = None
    first_bad: str | None = None
    before: Outcome | None = None
    """The outcome at A (and up to last_good)."""
    after: Outcome | None = None
    """The outcome at first_bad."""
    tested: list[str] = field(default_factory=list)
    """Releases with an answer for this cell, in A -> B order."""
    stepped_over: list[str] = field(default_factory=list)
    """Releases that said nothing about this cell (skipped, not installable)."""
    changes: list[tuple[str, str]] = field(default_factory=list)
    """Every (last like the one before, first different) pair seen among tested releases, A -> B."""


@dataclass
class _Search(Generic[CellKey]):
    cell: CellKey
    lo: int
    hi: int
    silent: set[int] = field(default_factory=set)


class Bisect(Generic[CellKey, Outcome]):
    """Searches `releases` (A first, B last; any direction in version) for every cell of `cells`."""

    def __init__(self, releases: list[str], oracle: Oracle, same: Same | None = None, exhaustive: bool = False,
                 prepare: Prepare | None = None):
        if len(releases) < 2:
            raise ValueError("bisect needs two releases at least (A and B)")
        self.releases = releases
        self.oracle = oracle
        self.prepare = prepare
        self.same: Same = same or (lambda a, b: a == b)
        self.exhaustive = exhaustive
        self.answers: dict[tuple[int, CellKey], Outcome | None] = {}
        self.asked: list[str] = []
        """Releases the oracle was called for, in call order (each once per cell at most)."""

    def known(self, index: int, cell: CellKey) -> bool:
        return (index, cell) in self.answers

    def ask(self, wanted: dict[int, list[CellKey]], ahead: Sequence[int] = ()) -> None:
        """One oracle call per release, only for cells without an answer there yet; `ahead`: releases
        that may be asked next round (told to `prepare` with the rest of this round)."""
        todo = {i: cells for i in sorted(wanted)
                if (cells := [c for c in dict.fromkeys(wanted[i]) if not self.known(i, c)])}
        order = list(todo)
        for n, index in enumerate(order):
            if self.prepare is not None:
                coming = [i for i in dict.fromkeys([*order[n + 1:], *ahead]) if i != index]
                self.prepare([self.releases[i] for i in coming])
            cells = todo[index]
            self.asked.append(self.releases[index])
            got = self.oracle(self.releases[index], cells)
            for cell in cells:
                self.answers[(index, cell)] = got.get(cell)

    def run(self, cells: list[CellKey]) -> list[Boundary]:
        last = len(self.releases) - 1
        self.ask({0: list(cells), last: list(cells)}, ahead=[1 + (last - 1) // 2] if last > 1 else [])  # the first middle
        ends_silent = [c for c in cells if self.answers[(0, c)] is None or self.answers[(last, c)] is None]
        results: dict[CellKey, Boundary] = {cell: self._boundary(cell, "undecided") for cell in ends_silent}
        if self.exhaustive:
            self.ask({i: [c for c in cells if c not in results] for i in range(1, last)})
            return [results.get(cell) or self._judge(cell, None) for cell in cells]
        searches: dict[CellKey, _Search] = {}
        for cell in (c for c in cells if c not in results):
            a, b = self.answers[(0, cell)], self.answers[(last, cell)]
            if self.same(a, b):
                results[cell] = self._boundary(cell, "no change", before=a, after=b)
            else:
                searches[cell] = _Search(cell, 0, last)
        while searches:
            wanted: dict[int, list[CellKey]] = {}
            ahead: list[int] = []
            for search in list(searches.values()):
                probe = self._next_probe(search)
                if probe is None:
                    results[search.cell] = self._judge(search.cell, search)
                    del searches[search.cell]
                else:
                    wanted.setdefault(probe, []).append(search.cell)
                    ahead += self._ahead(search, probe)
            self.ask(wanted, ahead)
            for search in searches.values():
                self._learn(search)
        return [results[cell] for cell in cells]

    def _ahead(self, search: _Search, probe: int) -> list[int]:
        """The release this search asks after `probe`, whichever way `probe` answers."""
        guesses = (_Search(search.cell, probe, search.hi, set(search.silent)),
                   _Search(search.cell, search.lo, probe, set(search.silent)))
        return [n for guess in guesses if (n := self._next_probe(guess)) is not None and n != probe]

    def _candidates(self, search: _Search) -> list[int]:
        return [i for i in range(search.lo + 1, search.hi) if i not in search.silent]

    def _next_probe(self, search: _Search) -> int | None:
        """The middle untried release between lo and hi; once none is left, the nearest release on
        each side of the boundary (stepping over silent ones); None when all that is known."""
        candidates = self._candidates(search)
        if candidates:
            return candidates[len(candidates) // 2]
        for edge, step in ((search.lo, -1), (search.hi, +1)):
            beyond = self._neighbour(search, edge, step)
            if beyond is not None and not self.known(beyond, search.cell):
                return beyond
        return None

    def _neighbour(self, search: _Search, index: int, step: int) -> int | None:
        """The nearest release beyond `index` (away from the boundary) that has not been silent."""
        i = index + step
        while 0 <= i < len(self.releases):
            if not (self.known(i, search.cell) and self.answers[(i, search.cell)] is None):
                return i
            i += step
        return None

    def _learn(self, search: _Search) -> None:
        """Move lo/hi with every answer inside them (answers from other cells' probes count too)."""
        a = self.answers[(0, search.cell)]
        for i in range(search.lo + 1, search.hi):
            if not self.known(i, search.cell):
                continue
            got = self.answers[(i, search.cell)]
            if got is None:
                search.silent.add(i)
            elif self.same(a, got):
                search.lo = max(search.lo, i)
        for i in range(search.hi - 1, search.lo, -1):
            got = self.answers.get((i, search.cell))
            if got is not None and not self.same(a, got):
                search.hi = i

    def _boundary(self, cell: CellKey, verdict: Verdict, **values: object) -> Boundary:
        tested = [r for i, r in enumerate(self.releases) if self.answers.get((i, cell)) is not None]
        silent = [r for i, r in enumerate(self.releases) if self.known(i, cell) and self.answers[(i, cell)] is None]
        return Boundary(cell, verdict, tested=tested, stepped_over=silent, **values)  # type: ignore[arg-type]

    def _judge(self, cell: CellKey, search: _Search | None) -> Boundary:
        """Every change among the tested releases; one that agrees with A before and B after is a boundary."""
        seen = [(i, self.answers[(i, cell)]) for i in range(len(self.releases))
                if self.known(i, cell) and self.answers[(i, cell)] is not None]
        changes = [(self.releases[i], self.releases[j]) for (i, x), (j, y) in zip(seen, seen[1:]) if not self.same(x, y)]
        a, b = seen[0][1], seen[-1][1]
        if len(changes) == 1:
            first_bad = self.releases.index(changes[0][1])
            return self._boundary(cell, "boundary", last_good=changes[0][0], first_bad=changes[0][1], before=a,
                                  after=self.answers[(first_bad, cell)], changes=changes)
        if not changes:
            return self._boundary(cell, "no change", before=a, after=b)
        return self._boundary(cell, "changes more than once", before=a, after=b, changes=changes)
