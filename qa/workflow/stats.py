"""Agreement statistics for calibration: Krippendorff's alpha and plain agreement rates.

Alpha (nominal) corrects agreement for chance, which matters on scorecards where most items
pass: two reviewers who always say "pass" agree 95 % of the time and tell us nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

import krippendorff
import numpy as np

from qa.schema import ItemOutcome

OUTCOME_CODE = {ItemOutcome.PASS: 0.0, ItemOutcome.FAIL: 1.0, ItemOutcome.NA: 2.0}


def nominal_alpha(ratings: Mapping[Hashable, Mapping[Hashable, ItemOutcome | str]]) -> float | None:
    """Alpha over ``{rater: {unit: outcome}}``; None when undefined.

    Undefined: fewer than two values in the data (no disagreement is possible, so chance
    agreement is total), or no unit rated by two raters.
    """
    raters = list(ratings)
    units = sorted({u for r in raters for u in ratings[r]}, key=str)
    if len(raters) < 2 or not units:
        return None
    data = np.full((len(raters), len(units)), np.nan)
    index = {u: j for j, u in enumerate(units)}
    for i, rater in enumerate(raters):
        for unit, outcome in ratings[rater].items():
            data[i, index[unit]] = OUTCOME_CODE[ItemOutcome(outcome)]
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    data = data[:, pairable]
    if data.shape[1] == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def agreement_rate(pairs: Iterable[tuple[object, object]]) -> float | None:
    """Share of pairs whose two values are equal; None for no pairs."""
    total = same = 0
    for a, b in pairs:
        total += 1
        same += a == b
    return same / total if total else None


def majority(outcomes: Iterable[ItemOutcome]) -> tuple[ItemOutcome | None, float | None]:
    """The most common outcome and the share of raters giving it; a tie has no majority
    (None), so a 1-1 split is never shown as a decision."""
    counts = Counter(outcomes)
    if not counts:
        return None, None
    (value, n), *rest = counts.most_common()
    share = n / sum(counts.values())
    return (None if rest and rest[0][1] == n else value), share


def pass_rate(outcomes: Iterable[ItemOutcome | str]) -> tuple[float | None, int]:
    """Passes / (passes + fails), and how many counted; na is not a pass or a fail."""
    passes = fails = 0
    for outcome in outcomes:
        outcome = ItemOutcome(outcome)
        passes += outcome is ItemOutcome.PASS
        fails += outcome is ItemOutcome.FAIL
    n = passes + fails
    return (passes / n if n else None), n
