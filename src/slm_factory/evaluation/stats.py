"""Is the fine-tuned model better than the base beyond noise? A paired test on per-item scores:
a bootstrap confidence interval of the mean difference and an exact sign test on wins vs losses.
Both must agree (the interval excludes 0 and p < 0.05) before a difference is called real: the
bootstrap uses the size of the differences, the sign test only their direction, so one outlier
item cannot carry the verdict alone."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb
from typing import Any

TIE_TOLERANCE = 1e-9
ALPHA = 0.05


def paired_comparison(
    a: Sequence[float | None],
    b: Sequence[float | None],
    seed: int = 0,
    resamples: int = 10000,
    labels: tuple[str, str] = ("base", "fine-tuned"),
) -> dict[str, Any]:
    """Compare per-item scores of model a (base) and model b (fine-tuned) on the same items.
    Items where either score is None are left out (counted in "skipped"). mean_diff is b - a;
    ci_low/ci_high: the 2.5th and 97.5th percentiles of the mean difference over `resamples`
    bootstrap resamples of the items (seeded: the same input gives the same interval); p_value:
    two-sided exact sign test on wins (b ahead) vs losses, ties dropped."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired scores need one score per item from each model: {len(a)} vs {len(b)}")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    n = len(pairs)
    diffs = np.array([y - x for x, y in pairs], dtype=float)
    wins = int(np.sum(diffs > TIE_TOLERANCE))
    losses = int(np.sum(diffs < -TIE_TOLERANCE))
    ci_low, ci_high = _bootstrap_interval(diffs, seed, resamples)
    p_value = sign_test(wins, losses)
    mean_diff = float(diffs.mean()) if n else 0.0
    significant = n > 0 and (ci_low > 0 or ci_high < 0) and p_value < ALPHA
    return {
        "n": n,
        "skipped": len(a) - n,
        "mean_a": float(np.mean([x for x, _ in pairs])) if n else None,
        "mean_b": float(np.mean([y for _, y in pairs])) if n else None,
        "mean_diff": mean_diff,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "confidence": 0.95,
        "wins": wins,
        "losses": losses,
        "ties": n - wins - losses,
        "p_value": p_value,
        "significant": bool(significant),
        "verdict": _verdict(n, mean_diff, p_value, bool(significant), labels),
        "resamples": resamples,
        "seed": seed,
    }


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance, if wins and losses were equally likely, of a split
    at least this uneven (binomial, p = 1/2). Exact with math.comb; no scipy needed."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _bootstrap_interval(diffs: Any, seed: int, resamples: int) -> tuple[float, float]:
    import numpy as np

    if len(diffs) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _verdict(n: int, mean_diff: float, p_value: float, significant: bool, labels: tuple[str, str]) -> str:
    first, second = labels
    questions = f"{n} question{'s' if n != 1 else ''}"
    if n == 0:
        return "nothing to compare: no question has a score from both models"
    if significant:
        better, worse = (second, first) if mean_diff > 0 else (first, second)
        return f"{better} better than {worse} beyond noise ({_p(p_value)}, {questions})"
    if abs(mean_diff) <= TIE_TOLERANCE:
        return f"no difference beyond noise on {questions}"
    ahead = second if mean_diff > 0 else first
    return f"no difference beyond noise on {questions} ({ahead} ahead by {abs(mean_diff):.3f}, {_p(p_value)})"


def _p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"
