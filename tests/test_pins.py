"""`compat-matrix pins`: shortest specifier of the passing releases, and the bounds resting on untested gaps."""

from __future__ import annotations

from compat_matrix.judge.pins import pin

INDEX = ["4.49.0", "4.50.0", "4.51.3", "4.52.4", "4.57.6", "5.0.0", "5.1.0", "5.2.0", "5.3.0", "5.4.0", "5.24.0"]


def test_bounds_and_exclusions_from_the_tested_releases() -> None:
    found = pin({"4.49.0": False, "4.51.3": True, "5.0.0": True, "5.1.0": False, "5.2.0": True, "5.3.0": False,
                 "5.24.0": False}, INDEX)
    assert found is not None and found.specifier == ">=4.51.3,<5.3.0,!=5.1.0"
    assert found.passing == ["4.51.3", "5.0.0", "5.2.0"]
    assert found.gaps == ["lower bound: between 4.49.0 and 4.51.3 1 releases untested: bisect first"]


def test_an_upper_bound_over_an_untested_span_is_flagged() -> None:
    found = pin({"5.0.0": True, "5.24.0": False}, INDEX)
    assert found is not None and found.specifier == ">=5.0.0,<5.24.0"
    assert found.gaps == ["upper bound: between 5.0.0 and 5.24.0 4 releases untested: bisect first"]


def test_nothing_passing_gives_no_pin() -> None:
    assert pin({"5.0.0": False}, INDEX) is None
