"""The 2-SE rule (wae.stats): the standard error of a difference of two accuracies, the
three-way verdict and non-inferiority, at their edges."""

from __future__ import annotations

import math

import pytest

from wae.stats import SE_MULTIPLE, beyond_two_se, non_inferior, se_diff, two_se, verdict


def test_se_diff_is_the_binomial_se_of_a_difference() -> None:
    # 50 % vs 50 % on 100 images: sqrt(0.25/100 + 0.25/100) = 0.0707... -> 7.07 points
    assert se_diff(50.0, 50.0, 100) == pytest.approx(100 * math.sqrt(0.005))
    # 90 % vs 80 % on 1000 images
    want = 100 * math.sqrt(0.9 * 0.1 / 1000 + 0.8 * 0.2 / 1000)
    assert se_diff(90.0, 80.0, 1000) == pytest.approx(want)
    assert se_diff(80.0, 90.0, 1000) == pytest.approx(want)  # symmetric
    assert se_diff(90.0, 80.0, 4000) == pytest.approx(want / 2)  # shrinks as 1/sqrt(n)


@pytest.mark.parametrize("n", [0, -5])
def test_se_diff_without_a_test_set_is_nan(n: int) -> None:
    assert math.isnan(se_diff(90.0, 80.0, n))


def test_se_diff_at_0_and_100_percent_is_tiny_but_positive() -> None:
    """p(1 - p) is floored, so two perfect scores still have an SE (> 0, ~1e-4 points)."""
    se = se_diff(100.0, 100.0, 100)
    assert 0 < se < 1e-3
    assert se_diff(0.0, 100.0, 100) == pytest.approx(se)


def test_two_se() -> None:
    assert SE_MULTIPLE == 2
    assert two_se(0.5) == 1.0 and two_se(0.0) == 0.0
    assert math.isnan(two_se(math.nan))


@pytest.mark.parametrize(
    ("margin", "se", "expected"),
    [
        (1.01, 0.5, "holds"),
        (1.0, 0.5, "inconclusive"),  # exactly 2 SE: not beyond
        (0.0, 0.5, "inconclusive"),
        (-1.0, 0.5, "inconclusive"),
        (-1.01, 0.5, "does not hold"),
        (0.01, 0.0, "holds"),  # zero SE: any margin is beyond it
        (-0.01, 0.0, "does not hold"),
        (0.0, 0.0, "inconclusive"),
        (0.01, math.nan, "holds"),  # no SE: the sign decides
        (0.0, math.nan, "does not hold"),
        (-3.0, math.nan, "does not hold"),
        (5.0, math.inf, "holds"),  # an infinite SE is no SE either
    ],
)
def test_verdict(margin: float, se: float, expected: str) -> None:
    assert verdict(margin, se) == expected


@pytest.mark.parametrize(
    ("margin", "se", "expected"),
    [
        (0.5, 0.5, True),
        (0.0, 0.5, True),
        (-1.0, 0.5, True),  # a loss of exactly 2 SE is within 2 SE
        (-1.01, 0.5, False),
        (0.0, 0.0, True),  # zero SE: no loss at all
        (-0.01, 0.0, False),
        (0.0, math.nan, True),  # no SE: no loss at all
        (-0.01, math.nan, False),
    ],
)
def test_non_inferior(margin: float, se: float, expected: bool) -> None:
    assert non_inferior(margin, se) is expected


def test_non_inferior_holds_where_the_verdict_is_inconclusive() -> None:
    """Keeping an accuracy is a weaker claim than beating it: every margin that does not
    "not hold" is non-inferior, and only those (with an SE)."""
    for margin in (-2.0, -1.01, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0):
        assert non_inferior(margin, 0.5) == (verdict(margin, 0.5) != "does not hold")


@pytest.mark.parametrize(
    ("margin", "se", "expected"),
    [(1.01, 0.5, True), (-1.01, 0.5, True), (1.0, 0.5, False), (0.0, 0.0, False)],
)
def test_beyond_two_se(margin: float, se: float, expected: bool) -> None:
    assert beyond_two_se(margin, se) is expected
    assert beyond_two_se(margin, math.nan) is False


def test_reproduce_and_accelerate_use_this_rule() -> None:
    """The reproduction's claims and accelerate's verdict call these functions (one rule)."""
    from wae.apps import accelerate_report
    from wae.apps.reproduce import verdicts

    assert verdicts.verdict is verdict and verdicts.non_inferior is non_inferior
    assert accelerate_report.two_se is two_se and accelerate_report.verdict is verdict
