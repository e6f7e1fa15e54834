"""When is one accuracy better than another on a test set? The rule every verdict of ours uses.

A claim "A beats B" with margin = A's top-1 - B's (points) and SE the binomial standard error
of the difference of two accuracies on the same n test images (:func:`se_diff`): beyond
+2 SE it *holds*, beyond -2 SE it *does not hold*, within 2 SE it is *inconclusive* (the test
set cannot tell the two apart) (:func:`verdict`). A claim "A keeps B's accuracy" (no loss
beyond 2 SE, non-inferiority) holds unless A is worse by more than 2 SE
(:func:`non_inferior`). Without a test-set size (SE nan) the sign decides.
"""

from __future__ import annotations

import math

__all__ = ["SE_MULTIPLE", "beyond_two_se", "non_inferior", "se_diff", "two_se", "verdict"]

SE_MULTIPLE = 2.0  # a margin counts when it is beyond this many standard errors


def se_diff(a: float, b: float, n: int) -> float:
    """Standard error (points) of the difference of two accuracies (%) on n test images."""
    if n <= 0:
        return math.nan
    pa, pb = a / 100.0, b / 100.0
    return 100.0 * math.sqrt(max(pa * (1 - pa), 1e-12) / n + max(pb * (1 - pb), 1e-12) / n)


def two_se(se: float) -> float:
    """The rule's threshold (points) for a difference with standard error `se`: 2 SE."""
    return SE_MULTIPLE * se


def beyond_two_se(margin: float, se: float) -> bool:
    """Whether `margin` is beyond 2 SE either way (the test set tells the two apart); False
    without an SE (nan)."""
    return abs(margin) > two_se(se)


def verdict(margin: float, se: float) -> str:
    """ "holds" beyond +2 SE, "does not hold" beyond -2 SE, "inconclusive" within 2 SE;
    with no SE (nan: no test-set size) the sign decides."""
    if not math.isfinite(se):
        return "holds" if margin > 0 else "does not hold"
    if margin > two_se(se):
        return "holds"
    if margin < -two_se(se):
        return "does not hold"
    return "inconclusive"


def non_inferior(margin: float, se: float) -> bool:
    """Whether "A keeps B's accuracy" holds for margin = A - B: no loss beyond 2 SE (within
    2 SE it holds); with no SE (nan) no loss at all."""
    if not math.isfinite(se):
        return margin >= 0
    return margin >= -two_se(se)
