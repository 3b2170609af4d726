"""bisect's search against a fake release oracle: what it finds, what it refuses to guess, what it tests."""

from __future__ import annotations

import pytest

from compat_matrix.bisect.search import Bisect

RELEASES = [f"5.{minor}.0" for minor in range(25)]  # 5.0.0 .. 5.24.0, A first


class FakeOracle:
    """Outcome per (release, cell) from a table; None: the release says nothing (skipped, not installable)."""

    def __init__(self, table: dict[str, dict[str, str | None]]):
        self.table = table
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, release: str, cells: list[str]) -> dict[str, str | None]:
        self.calls.append((release, tuple(cells)))
        return {cell: self.table[cell][release] for cell in cells}

    def tested(self, cell: str) -> list[str]:
        return [release for release, cells in self.calls if cell in cells]


def steps(first_bad: int, before: str = "pass", after: str = "fail") -> dict[str, str | None]:
    return {r: (before if i < first_bad else after) for i, r in enumerate(RELEASES)}


def test_one_boundary_found_with_a_binary_search_and_its_neighbours() -> None:
    oracle = FakeOracle({"c": steps(7)})
    [found] = Bisect(RELEASES, oracle).run(["c"])
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.6.0", "5.7.0")
    assert (found.before, found.after) == ("pass", "fail")
    assert len(oracle.calls) <= 9, oracle.calls  # log2(25) ~ 5, plus both ends and two neighbours
    assert {"5.5.0", "5.6.0", "5.7.0", "5.8.0"} <= set(oracle.tested("c")), "both neighbours of the boundary tested"


def test_a_fix_is_found_the_same_way_when_a_is_the_newer_release() -> None:
    oracle = FakeOracle({"c": steps(7, before="fail", after="pass")})
    [found] = Bisect(list(reversed(RELEASES)), oracle).run(["c"])
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.7.0", "5.6.0")
    assert (found.before, found.after) == ("pass", "fail")


def test_several_boundaries_in_one_run_share_the_releases_tested() -> None:
    table = {"a": steps(7), "b": steps(7), "c": steps(19)}
    oracle = FakeOracle(table)
    found = {b.cell: b for b in Bisect(RELEASES, oracle).run(["a", "b", "c"])}
    assert [(found[c].last_good, found[c].first_bad) for c in "abc"] == [("5.6.0", "5.7.0"), ("5.6.0", "5.7.0"),
                                                                         ("5.18.0", "5.19.0")]
    released = [release for release, _ in oracle.calls]
    assert len(released) == len(set(released)), "each release is asked once: cells probing it ride along"
    assert oracle.tested("a") == oracle.tested("b")


def test_a_release_that_says_nothing_is_stepped_over_never_taken_as_good_or_bad() -> None:
    table = steps(7)
    for silent in ("5.6.0", "5.12.0"):
        table[silent] = None
    oracle = FakeOracle({"c": table})
    [found] = Bisect(RELEASES, oracle).run(["c"])
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.5.0", "5.7.0")
    assert "5.6.0" in found.stepped_over and "5.6.0" not in found.tested


def test_a_boundary_hidden_behind_silent_releases_stays_a_span() -> None:
    table = steps(7)
    for silent in ("5.5.0", "5.6.0", "5.7.0"):
        table[silent] = None
    [found] = Bisect(RELEASES, FakeOracle({"c": table})).run(["c"])
    assert (found.last_good, found.first_bad) == ("5.4.0", "5.8.0")
    assert {"5.5.0", "5.6.0", "5.7.0"} <= set(found.stepped_over)


def test_all_releases_identical_and_same_outcome_at_both_ends_test_only_the_ends() -> None:
    oracle = FakeOracle({"same": steps(99), "flip_back": {**steps(5), **{r: "pass" for r in RELEASES[20:]}}})
    found = {b.cell: b for b in Bisect(RELEASES, oracle).run(["same", "flip_back"])}
    assert found["same"].verdict == "no change" and found["flip_back"].verdict == "no change"
    assert [release for release, _ in oracle.calls] == ["5.0.0", "5.24.0"]


def test_an_end_that_says_nothing_leaves_the_cell_undecided() -> None:
    table = steps(7)
    table["5.24.0"] = None
    [found] = Bisect(RELEASES, FakeOracle({"c": table})).run(["c"])
    assert found.verdict == "undecided" and found.first_bad is None


def test_exhaustive_leaves_a_cell_undecided_when_an_end_says_nothing() -> None:
    """A cell skipped in every release (a hub model offline) must not stop the other cells' answers."""
    oracle = FakeOracle({"c": steps(7), "skipped": dict.fromkeys(RELEASES)})
    found = {b.cell: b for b in Bisect(RELEASES, oracle, exhaustive=True).run(["skipped", "c"])}
    assert found["skipped"].verdict == "undecided" and found["skipped"].first_bad is None
    assert (found["c"].last_good, found["c"].first_bad) == ("5.6.0", "5.7.0")
    assert oracle.tested("skipped") == [RELEASES[0], RELEASES[-1]]


def test_broken_then_fixed_then_broken_gets_a_real_change_point_or_the_warning() -> None:
    """pass until 5.9, fail 5.10-5.11, pass 5.12-5.19, fail from 5.20. A binary search sees only what it
    tests: whatever it answers must be a real change with the neighbours on both sides agreeing (the
    next test: a neighbour that sees another change is reported; --exhaustive finds every change)."""
    table = {r: ("fail" if 10 <= i <= 11 or i >= 20 else "pass") for i, r in enumerate(RELEASES)}
    for releases in (RELEASES, RELEASES[:21], RELEASES[2:], RELEASES[5:23], RELEASES[8:22]):
        [found] = Bisect(releases, FakeOracle({"c": table})).run(["c"])
        if found.verdict == "boundary":
            low, high = releases.index(found.last_good), releases.index(found.first_bad)
            assert high == low + 1 and table[found.last_good] == "pass" and table[found.first_bad] == "fail"
            assert table[releases[max(low - 1, 0)]] == "pass" and table[releases[min(high + 1, len(releases) - 1)]] == "fail"
        else:
            assert found.verdict == "changes more than once", found


def test_a_change_next_to_the_boundary_is_caught_by_the_neighbour_check() -> None:
    """fail only at 5.12 and from 5.13 another failure: the neighbour past the boundary disagrees with B."""
    table = {r: ("pass" if i < 12 else "fail: x" if i == 12 else "fail: y") for i, r in enumerate(RELEASES)}
    [found] = Bisect(RELEASES, FakeOracle({"c": table})).run(["c"])
    assert found.verdict == "changes more than once"
    assert ("5.11.0", "5.12.0") in found.changes and ("5.12.0", "5.13.0") in found.changes


def test_exhaustive_tests_every_release_and_lists_every_change() -> None:
    table = {r: ("fail" if 10 <= i <= 11 or i >= 20 else "pass") for i, r in enumerate(RELEASES)}
    oracle = FakeOracle({"c": table})
    [found] = Bisect(RELEASES, oracle, exhaustive=True).run(["c"])
    assert found.verdict == "changes more than once"
    assert found.changes == [("5.9.0", "5.10.0"), ("5.11.0", "5.12.0"), ("5.19.0", "5.20.0")]
    assert sorted(oracle.tested("c")) == sorted(RELEASES)


def test_answers_are_reused_across_runs_of_the_search() -> None:
    oracle = FakeOracle({"c": steps(7), "d": steps(7)})
    first = Bisect(RELEASES, oracle)
    first.run(["c"])
    asked = len(oracle.calls)
    again = Bisect(RELEASES, oracle)
    again.answers.update(first.answers)
    again.run(["c"])
    assert len(oracle.calls) == asked, "nothing known is asked twice"


def test_a_custom_sameness_counts_silent_changes() -> None:
    """Outcomes as (status, loaded class): a class change with the same status is a change."""
    table = {r: ("pass", "A" if i < 3 else "B") for i, r in enumerate(RELEASES)}
    [found] = Bisect(RELEASES, lambda release, cells: {c: table[release] for c in cells}).run(["c"])
    assert (found.last_good, found.first_bad) == ("5.2.0", "5.3.0")


@pytest.mark.parametrize("count", [25, 24])  # an odd and an even number of releases between the ends
def test_every_release_asked_after_the_first_was_announced_beforehand_for_its_environment(count: int) -> None:
    """While one release is tested, the next one (whichever way the answer goes) is being made ready."""
    oracle = FakeOracle({"a": steps(7), "c": steps(19)})
    announced: list[list[str]] = []
    asked_before: list[int] = []

    def prepare(releases: list[str]) -> None:
        announced.append(releases)
        asked_before.append(len(oracle.calls))

    Bisect(RELEASES[:count], oracle, prepare=prepare).run(["a", "c"])
    asked = [release for release, _ in oracle.calls]
    for n, release in enumerate(asked[1:], start=1):
        earlier = [r for told, when in zip(announced, asked_before) if when < n for r in told]
        assert release in earlier, f"{release} (asked {n + 1}.) was never announced before it was asked"
    assert all(len(told) <= 1 + 2 * 2 for told in announced), "the rest of the round, and both halves of each search"
    wasted = {r for told in announced for r in told} - set(asked)
    assert len(wasted) <= len(asked), "no more environments made for nothing than releases tested"


@pytest.mark.parametrize("first_bad", range(1, 25))
def test_two_at_once_finds_every_boundary_the_one_at_a_time_search_finds(first_bad: int) -> None:
    for releases in (RELEASES, list(reversed(RELEASES))):
        table = {"c": {r: ("pass" if RELEASES.index(r) < first_bad else "fail") for r in RELEASES}}
        one = Bisect(releases, FakeOracle(table)).run(["c"])[0]
        two = Bisect(releases, FakeOracle(table), parallel=2).run(["c"])[0]
        assert (two.verdict, two.last_good, two.first_bad) == (one.verdict, one.last_good, one.first_bad)


def test_two_at_once_needs_fewer_rounds_and_catches_a_second_change_next_to_the_boundary() -> None:
    rounds = {}
    for parallel in (1, 2):
        oracle = FakeOracle({"c": steps(7)})
        told: list[list[str]] = []
        Bisect(RELEASES, oracle, prepare=told.append, parallel=parallel).run(["c"])
        rounds[parallel] = len(told)  # prepare is told once per round of releases tested together
    assert rounds[2] < rounds[1], rounds
    table = steps(7)
    table["5.5.0"] = "fail"  # broken, fixed in 5.6.0, broken again from 5.7.0
    [found] = Bisect(RELEASES, FakeOracle({"c": table}), parallel=2).run(["c"])
    assert found.verdict == "changes more than once"


def test_the_releases_of_a_round_are_tested_at_the_same_time() -> None:
    import threading

    both = threading.Barrier(2, timeout=10)  # A and B: the first round holds both ends
    calls: list[str] = []

    def oracle(release: str, cells: list[str]) -> dict[str, str | None]:
        if release in (RELEASES[0], RELEASES[-1]):
            both.wait()  # raises BrokenBarrierError when the other end is not being tested meanwhile
        calls.append(release)
        return {c: steps(7)[release] for c in cells}

    [found] = Bisect(RELEASES, oracle, parallel=2).run(["c"])
    assert (found.last_good, found.first_bad) == ("5.6.0", "5.7.0")


def test_ctrl_c_in_one_release_returns_without_waiting_for_the_other() -> None:
    import threading

    other_done = threading.Event()

    def oracle(release: str, cells: list[str]) -> dict[str, str | None]:
        if release == RELEASES[0]:
            raise KeyboardInterrupt
        other_done.wait(10)  # the other end: still running when the interrupt comes back
        return dict.fromkeys(cells, "pass")

    with pytest.raises(KeyboardInterrupt):
        Bisect(RELEASES, oracle, parallel=2).run(["c"])
    assert not other_done.is_set(), "returned while the other release was still under test"
    other_done.set()
