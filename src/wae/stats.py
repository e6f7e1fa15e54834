"""When is one accuracy better than another on a test set? The rule every verdict of ours uses.

A claim "A beats B" with margin = A's top-1 - B's (points) and SE the binomial standard error
of the difference of two accuracies on the same n test images (:func:`se_diff`): beyond
+2 SE it *holds*, beyond -2 SE it *does not hold*, within 2 SE it is *inconclusive* (the test
set cannot tell the two apart). Without a test-set size (SE nan) the sign decides.
"""

from __future__ import annotations

import math

__all__ = ["se_diff", "verdict"]


def se_diff(a: float, b: float, n: int) -> float:
    """Standard error (points) of the difference of two accuracies (%) on n test images."""
    if n <= 0:
        return math.nan
    pa, pb = a / 100.0, b / 100.0
    return 100.0 * math.sqrt(max(pa * (1 - pa), 1e-12) / n + max(pb * (1 - pb), 1e-12) / n)


def verdict(margin: float, se: float) -> str:
    """ "holds" beyond +2 SE, "does not hold" beyond -2 SE, "inconclusive" within 2 SE;
    with no SE (nan: no test-set size) the sign decides."""
    if not math.isfinite(se):
        return "holds" if margin > 0 else "does not hold"
    if margin > 2 * se:
        return "holds"
    if margin < -2 * se:
        return "does not hold"
    return "inconclusive"
