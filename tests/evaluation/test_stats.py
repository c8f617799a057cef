"""The paired test behind compare's verdict: the sign test against hand-computed binomial sums
(and scipy where installed), the bootstrap interval's coverage in a simulation, and the verdict on
clear, noisy and identical score lists."""

from __future__ import annotations

import random
from math import comb

import pytest

from slm_factory.evaluation.stats import paired_comparison, sign_test


def test_sign_test_matches_hand_computed_values() -> None:
    # 9 wins 1 loss: P(X <= 1) for Binomial(10, 1/2) = (1 + 10) / 1024; two-sided doubles it.
    assert sign_test(9, 1) == pytest.approx(22 / 1024) and round(sign_test(9, 1), 4) == 0.0215
    assert sign_test(1, 9) == sign_test(9, 1)
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(7, 3) == pytest.approx(2 * (comb(10, 0) + comb(10, 1) + comb(10, 2) + comb(10, 3)) / 1024)


def test_sign_test_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for wins in range(0, 25):
        for losses in range(0, 25):
            if wins + losses:
                assert sign_test(wins, losses) == pytest.approx(stats.binomtest(wins, wins + losses).pvalue)


def test_a_clear_improvement_is_significant() -> None:
    base = [0.2, 0.3, 0.1, 0.4, 0.25, 0.3, 0.2, 0.35, 0.15, 0.3, 0.2, 0.3]
    tuned = [score + 0.3 for score in base]
    tuned[3] = 0.35  # one loss
    result = paired_comparison(base, tuned)
    assert (result["wins"], result["losses"], result["ties"], result["n"]) == (11, 1, 0, 12)
    assert result["p_value"] == pytest.approx(2 * 13 / 4096)
    assert 0 < result["ci_low"] < result["mean_diff"] < result["ci_high"]
    assert result["significant"] is True
    assert result["verdict"].startswith("fine-tuned better than base beyond noise (p=0.006")


def test_a_clear_regression_is_named_the_other_way() -> None:
    tuned = [0.1] * 15
    base = [0.5 + 0.01 * i for i in range(15)]
    result = paired_comparison(base, tuned)
    assert result["significant"] and result["mean_diff"] < 0 and result["ci_high"] < 0
    assert result["verdict"].startswith("base better than fine-tuned beyond noise (p<0.001")


def test_identical_scores_are_no_difference() -> None:
    scores = [0.1, 0.5, 0.9, 0.3] * 5
    result = paired_comparison(scores, list(scores))
    assert (result["wins"], result["losses"], result["ties"]) == (0, 0, 20)
    assert result["mean_diff"] == 0 and result["ci_low"] == result["ci_high"] == 0 and result["p_value"] == 1.0
    assert result["significant"] is False and result["verdict"] == "no difference beyond noise on 20 questions"


def test_differences_within_the_tie_tolerance_are_ties() -> None:
    result = paired_comparison([0.5, 0.5], [0.5 + 1e-12, 0.5 - 1e-12])
    assert (result["wins"], result["losses"], result["ties"]) == (0, 0, 2)


def test_a_large_interval_or_a_weak_sign_test_alone_is_not_significant() -> None:
    # 4 wins of 4: the interval excludes 0 but p = 2/16 = 0.125.
    result = paired_comparison([0.1, 0.2, 0.3, 0.4], [0.6, 0.7, 0.8, 0.9])
    assert result["ci_low"] > 0 and result["p_value"] == pytest.approx(0.125) and not result["significant"]
    assert "no difference beyond noise on 4 questions (fine-tuned ahead by 0.500" in result["verdict"]
    # 9 wins of 10 by a hair against one big loss: p < 0.05 but the interval covers 0.
    base = [0.5] * 10
    tuned = [0.51] * 9 + [0.0]
    result = paired_comparison(base, tuned)
    assert result["p_value"] < 0.05 and result["ci_low"] < 0 < result["ci_high"] and not result["significant"]


def test_items_without_a_score_are_skipped_and_lengths_must_match() -> None:
    result = paired_comparison([0.1, None, 0.3], [0.2, 0.4, None])
    assert result["n"] == 1 and result["skipped"] == 2 and result["wins"] == 1
    empty = paired_comparison([None], [None])
    assert empty["n"] == 0 and not empty["significant"] and empty["verdict"].startswith("nothing to compare")
    with pytest.raises(ValueError, match="2 vs 1"):
        paired_comparison([0.1, 0.2], [0.3])


def test_the_same_seed_gives_the_same_interval_and_another_seed_a_close_one() -> None:
    rng = random.Random(3)
    base = [rng.random() for _ in range(30)]
    tuned = [rng.random() for _ in range(30)]
    first, again = paired_comparison(base, tuned, seed=5), paired_comparison(base, tuned, seed=5)
    other = paired_comparison(base, tuned, seed=6)
    assert first == again
    assert (first["ci_low"], first["ci_high"]) != (other["ci_low"], other["ci_high"])
    assert first["ci_low"] == pytest.approx(other["ci_low"], abs=0.03)


def test_the_interval_covers_the_true_mean_difference_about_95_percent_of_the_time() -> None:
    rng = random.Random(0)
    true_diff, runs, covered = 0.05, 200, 0
    for run in range(runs):
        base = [rng.random() for _ in range(40)]
        tuned = [score + true_diff + rng.gauss(0, 0.2) for score in base]
        result = paired_comparison(base, tuned, seed=run, resamples=2000)
        covered += result["ci_low"] <= true_diff <= result["ci_high"]
    # The percentile bootstrap runs a little narrow on 40 items; 200 runs put a 95% interval's
    # coverage in about 0.92-0.98.
    assert 0.88 <= covered / runs <= 0.99
