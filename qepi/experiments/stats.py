"""Statistics over seeds: mean with a Student-t 95% confidence interval, paired t-tests."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values, confidence: float = 0.95) -> dict[str, float]:
    """Mean and half-width of the Student-t confidence interval (NaN half-width for n < 2).

    >>> r = mean_ci([0.8, 0.9, 1.0])
    >>> round(r["mean"], 3), round(r["ci"], 3), r["n"]
    (0.9, 0.248, 3)
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return {"mean": float(x.mean()) if n else math.nan, "ci": math.nan, "n": n}
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return {"mean": float(x.mean()), "ci": float(half), "n": n}


def paired_test(a, b) -> dict[str, float]:
    """Paired t-test of ``a`` against ``b`` (matched by seed): mean difference a - b, its 95%
    CI, t and the two-sided p-value. NaN where undefined (n < 2 or identical pairs).

    >>> r = paired_test([0.9, 0.8, 0.85, 0.88], [0.7, 0.72, 0.71, 0.69])
    >>> round(r["diff"], 3), r["p"] < 0.05
    (0.153, True)
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    out = {"diff": float(diff.mean()) if len(diff) else math.nan,
           "ci": mean_ci(diff)["ci"], "t": math.nan, "p": math.nan, "n": len(diff)}
    if len(diff) >= 2 and np.ptp(diff) > 0:
        result = stats.ttest_rel(a, b)
        out.update(t=float(result.statistic), p=float(result.pvalue))
    elif len(diff) >= 2 and diff[0] != 0:  # the same nonzero difference every seed
        out.update(t=math.copysign(math.inf, diff[0]), p=0.0)
    return out
