"""Tests of the decision rule (pytest_llm_energy.stats) on constructed samples, plus its properties."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu, norm, ttest_ind

from pytest_llm_energy import stats
from pytest_llm_energy.stats import VERDICTS, decide, should_stop, summarize

TOLERANCE = 0.05


def lognormal(n: int, cv: float, seed: int, scale: float = 1.0) -> np.ndarray:
    """Evenly spread lognormal quantiles in a seeded order: no ties, and the same n and cv give the same set."""
    quantiles = (np.arange(n) + 0.5) / n
    values = scale * np.exp(math.sqrt(math.log1p(cv**2)) * norm.ppf(quantiles))
    return np.random.default_rng(seed).permutation(values)


def random_lognormal(n: int, cv: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    return scale * np.exp(rng.normal(0.0, math.sqrt(math.log1p(cv**2)), n))


def samples_with_u(n: int, m: int, u: int) -> tuple[list[float], list[float]]:
    """Current (n) and baseline (m) samples without ties whose Mann-Whitney U of current is exactly u."""
    baseline = [float(j + 1) for j in range(m)]
    below = []  # how many baseline values lie below each current value
    left = u
    for _ in range(n):
        take = min(m, left)
        below.append(take)
        left -= take
    assert left == 0
    current = [b + 0.5 + 0.001 * i for i, b in enumerate(below)]  # b + 0.5: above exactly b baseline values
    return current, baseline


# ---------------------------------------------------------------------------------------------------------
# summarize


def test_summarize_gives_median_scaled_mad_and_robust_cv():
    summary = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert summary.n == 5
    assert summary.median == 3.0
    assert summary.mad == pytest.approx(1.4826 * 1.0)
    assert summary.robust_cv == pytest.approx(1.4826 / 3.0)


def test_summarize_marks_outliers_and_keeps_them():
    samples = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.60]
    summary = summarize(samples)
    assert summary.outliers == (6,)
    assert summary.n == len(samples)  # marked, not removed
    assert summary.median == 1.00


def test_summarize_marks_the_odd_trial_among_constants():
    # More than half equal: the MAD is 0 and the mean-absolute-deviation fallback still marks the odd one.
    summary = summarize([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0])
    assert summary.mad == 0.0
    assert summary.outliers == (9,)


def test_summarize_constants_have_no_outliers_and_one_sample_has_no_cv():
    assert summarize([0.5, 0.5, 0.5]).outliers == ()
    assert summarize([0.5, 0.5, 0.5]).robust_cv == 0.0
    single = summarize([0.5])
    assert single.n == 1 and single.median == 0.5 and math.isnan(single.robust_cv)


# ---------------------------------------------------------------------------------------------------------
# decide: every verdict and the edge cases


@pytest.mark.parametrize("missing", [None, [], ()])
def test_missing_baseline_is_new(missing):
    current = lognormal(10, 0.02, seed=1)
    decision = decide(missing, current, TOLERANCE)
    assert decision.verdict == "new"
    assert decision.ratio is None and decision.delta is None and decision.p_value is None
    assert decision.ci_low is None and decision.ci_high is None
    assert decision.n_baseline == 0 and decision.n_current == 10
    # What a same-size baseline with this noise could detect: small for 2% noise and 10 trials.
    assert 0 < decision.detectable < TOLERANCE and not decision.too_noisy
    assert "no baseline" in decision.reason


def test_new_with_too_few_trials_is_too_noisy():
    decision = decide(None, [1.0, 1.01, 0.99], TOLERANCE)
    assert decision.verdict == "new"
    assert decision.detectable == math.inf and decision.too_noisy


def test_one_sample_per_side_cannot_decide():
    close = decide([1.0], [1.02], TOLERANCE)
    assert close.verdict == "unchanged"
    assert close.ratio == pytest.approx(1.02)
    assert close.ci_low is None and close.ci_high is None
    assert close.detectable == math.inf and close.too_noisy
    far = decide([1.0], [1.5], TOLERANCE)
    assert far.verdict == "inconclusive"
    assert far.p_value == 1.0


def test_identical_constants_are_unchanged():
    decision = decide([0.25] * 5, [0.25] * 5, TOLERANCE)
    assert decision.verdict == "unchanged"
    assert decision.ratio == 1.0 and decision.delta == 0.0
    assert decision.p_value == 1.0
    assert (decision.ci_low, decision.ci_high) == (1.0, 1.0)
    assert decision.detectable == 0.0 and not decision.too_noisy


def test_constants_that_double_are_regressed():
    decision = decide([1.0] * 5, [2.0] * 5, TOLERANCE)
    assert decision.verdict == "regressed"
    assert decision.ratio == 2.0 and decision.delta == 1.0
    assert decision.p_value < 0.01
    assert (decision.ci_low, decision.ci_high) == (2.0, 2.0)
    assert decision.detectable == 0.0


def test_identical_sets_are_unchanged():
    samples = lognormal(12, 0.05, seed=2)
    decision = decide(samples, samples.copy(), TOLERANCE)
    assert decision.verdict == "unchanged"
    assert decision.ratio == 1.0
    assert decision.p_value == 1.0
    assert decision.ci_low < 1.0 < decision.ci_high


def test_a_clear_increase_is_regressed_and_its_interval_holds_the_true_ratio():
    baseline = lognormal(10, 0.02, seed=3)
    current = lognormal(10, 0.02, seed=4, scale=1.10)
    decision = decide(baseline, current, TOLERANCE)
    assert decision.verdict == "regressed"
    assert decision.ratio == pytest.approx(1.10)
    assert decision.ci_low < 1.10 < decision.ci_high
    assert decision.ci_low > 1.0  # significant: the interval excludes 1
    assert decision.statistic == 100.0  # every current sample above every baseline sample
    assert "rose" in decision.reason


def test_a_clear_decrease_is_improved():
    baseline = lognormal(10, 0.02, seed=5)
    current = lognormal(10, 0.02, seed=6, scale=0.90)
    decision = decide(baseline, current, TOLERANCE)
    assert decision.verdict == "improved"
    assert decision.ci_high < 1.0
    assert decision.ci_low < 0.90 < decision.ci_high
    assert "fell" in decision.reason


def test_a_big_change_on_too_few_samples_is_inconclusive():
    decision = decide([1.0, 1.05, 0.97], [1.30, 1.36, 1.27], TOLERANCE)
    assert decision.verdict == "inconclusive"
    assert decision.ratio == pytest.approx(1.30)
    assert decision.p_value >= 0.01
    assert decision.ci_low is None  # 3 vs 3 cannot reach p < 0.01
    assert decision.detectable == math.inf and decision.too_noisy
    assert "not significant" in decision.reason


def test_a_big_change_within_the_noise_is_inconclusive():
    rng = np.random.default_rng(7)
    baseline = random_lognormal(10, 0.30, rng)
    current = baseline[::-1] * 1.08  # +8% median shift of the same noisy values: far from significant
    decision = decide(baseline, current, TOLERANCE)
    assert decision.verdict == "inconclusive"
    assert decision.too_noisy and decision.detectable > 0.2


def test_a_significant_change_inside_the_tolerance_is_unchanged():
    baseline = lognormal(20, 0.005, seed=8)
    current = lognormal(20, 0.005, seed=9, scale=1.02)
    decision = decide(baseline, current, TOLERANCE)
    assert decision.p_value < 1e-6
    assert 1.0 < decision.ci_low and decision.ci_high < 1.05
    assert decision.verdict == "unchanged"
    assert "significant" in decision.reason and "within" in decision.reason


def test_a_small_significant_increase_not_shown_within_tolerance_is_regressed():
    # +3.5%: a real increase, but the interval still reaches past +5%: not shown to be within tolerance.
    baseline = lognormal(10, 0.02, seed=10)
    current = lognormal(10, 0.02, seed=11, scale=1.035)
    decision = decide(baseline, current, TOLERANCE)
    assert decision.p_value < 0.01
    assert decision.delta < TOLERANCE < decision.ci_high - 1
    assert decision.verdict == "regressed"


def test_tolerance_band_is_symmetric_in_log_space():
    # -4.8% is beyond 1/1.05 - 1 = -4.76%; the mirror of +5%.
    baseline = lognormal(8, 0.0001, seed=12)
    beyond = decide(baseline, baseline * 0.952, TOLERANCE)
    within = decide(baseline, baseline * 0.953, TOLERANCE)
    assert beyond.verdict == "improved"
    assert within.verdict == "unchanged"


def test_swapping_sides_mirrors_the_decision():
    baseline = lognormal(10, 0.03, seed=13)
    current = lognormal(10, 0.03, seed=14, scale=1.07)
    forward, backward = decide(baseline, current, TOLERANCE), decide(current, baseline, TOLERANCE)
    assert (forward.verdict, backward.verdict) == ("regressed", "improved")
    assert forward.p_value == backward.p_value
    assert forward.ci_low == pytest.approx(1 / backward.ci_high)
    assert forward.ratio == pytest.approx(1 / backward.ratio)


def test_interval_covers_the_true_ratio_at_its_confidence():
    rng = np.random.default_rng(15)
    covered = 0
    draws = 300
    for _ in range(draws):
        baseline = random_lognormal(12, 0.10, rng)
        current = random_lognormal(12, 0.10, rng, scale=1.07)
        decision = decide(baseline, current, TOLERANCE, confidence=0.90)
        covered += decision.ci_low <= 1.07 <= decision.ci_high
    # 90% nominal; 300 draws put the observed share above 0.85 with overwhelming probability.
    assert 0.85 <= covered / draws <= 0.96


@pytest.mark.parametrize("n, m", [(5, 5), (6, 9), (3, 30), (8, 8), (9, 9), (10, 10), (12, 30), (25, 25)])
def test_significant_exactly_when_the_interval_excludes_one(n, m):
    rng = np.random.default_rng(n * 100 + m)
    seen = set()
    for draw in range(150):
        shift = [1.0, 1.05, 1.15, 1.4][draw % 4]
        decision = decide(
            random_lognormal(m, 0.08, rng), random_lognormal(n, 0.08, rng, scale=shift), TOLERANCE
        )
        significant = decision.p_value < 0.01
        excludes_one = decision.ci_low is not None and (decision.ci_low > 1.0 or decision.ci_high < 1.0)
        assert significant == excludes_one, decision
        seen.add(significant)
    assert seen == {True, False}  # both sides of the boundary were exercised


def test_ratio_of_medians_and_p_value_come_from_scipy():
    rng = np.random.default_rng(16)
    for n, m, ties in [(5, 7, False), (10, 12, False), (6, 6, True), (15, 4, True)]:
        baseline = random_lognormal(m, 0.05, rng)
        current = random_lognormal(n, 0.05, rng)
        if ties:
            baseline, current = np.round(baseline, 2), np.round(current, 2)
        decision = decide(baseline, current, TOLERANCE)
        reference = mannwhitneyu(current, baseline, alternative="two-sided")  # scipy's own method choice
        assert decision.rank_p_value == pytest.approx(float(reference.pvalue), rel=1e-12)
        welch = ttest_ind(np.log(current), np.log(baseline), equal_var=False)
        assert decision.welch_p_value == pytest.approx(float(welch.pvalue), rel=1e-12)
        assert decision.p_value == max(decision.rank_p_value, decision.welch_p_value)
        assert decision.statistic == float(reference.statistic)
        assert decision.ratio == pytest.approx(np.median(current) / np.median(baseline))


def test_too_noisy_when_detectable_exceeds_tolerance():
    quiet = decide(lognormal(10, 0.01, seed=17), lognormal(10, 0.01, seed=18), TOLERANCE)
    noisy = decide(lognormal(10, 0.15, seed=19), lognormal(10, 0.15, seed=20), TOLERANCE)
    assert quiet.detectable < TOLERANCE and not quiet.too_noisy
    assert noisy.detectable > TOLERANCE and noisy.too_noisy
    assert "too noisy" in noisy.reason


def test_detectable_sees_both_modes_of_bimodal_samples():
    # 10 fast and 6 slow runs, 40% apart: the spread that matters is the gap between the modes.
    fast = list(np.linspace(0.210, 0.216, 10))
    slow = list(np.linspace(0.285, 0.300, 6))
    decision = decide(fast + slow, fast + slow, TOLERANCE)
    assert decision.detectable > 0.2


def test_detectable_is_infinite_when_the_counts_cannot_reach_significance():
    assert (
        decide([1.0, 1.1, 1.2, 1.3], [1.0, 1.1, 1.2, 1.3], TOLERANCE).detectable == math.inf
    )  # 2/70 >= 0.01
    assert decide([1.0, 1.1, 1.2, 1.3, 1.4], [1.0, 1.1, 1.2, 1.3, 1.4], TOLERANCE).detectable < math.inf


# ---------------------------------------------------------------------------------------------------------
# The exact null distribution and the interval rank, against scipy and brute force


@pytest.mark.parametrize("n, m", [(1, 1), (1, 4), (2, 3), (3, 3), (4, 2), (3, 5)])
def test_u_null_counts_match_brute_force(n, m):
    counts = [0] * (n * m + 1)
    for positions in itertools.combinations(range(n + m), n):
        chosen = set(positions)
        # U of the chosen side: for each chosen position, the unchosen positions below it
        u = sum(sum(1 for q in range(p) if q not in chosen) for p in positions)
        counts[u] += 1
    assert list(stats.u_null_counts(n, m)) == counts
    assert sum(stats.u_null_counts(n, m)) == math.comb(n + m, n)


def test_u_null_counts_outgrow_64_bits_exactly():
    counts = stats.u_null_counts(8, 1000)
    assert sum(counts) == math.comb(1008, 8) > 2**64


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("n, m", [(4, 4), (5, 5), (3, 7), (2, 30), (6, 8), (8, 20), (1, 250), (7, 3)])
def test_exact_interval_rank_matches_scipy_p_values(n, m, alpha):
    k = stats.exact_interval_rank(n, m, alpha)

    def exact_p(u):
        current, baseline = samples_with_u(n, m, u)
        return float(mannwhitneyu(current, baseline, alternative="two-sided", method="exact").pvalue)

    if k == 0:
        assert exact_p(0) >= alpha  # the most extreme ordering is not significant: no interval
    else:
        assert exact_p(k - 1) < alpha <= exact_p(k)


def test_p_just_above_alpha_is_not_significant():
    # 7 vs 7 exact: U = 4 gives two-sided p = 24/3432 = 0.0070, U = 5 gives 38/3432 = 0.0111.
    baseline_side = 7 * 7
    current, baseline = samples_with_u(7, 7, baseline_side - 5)
    above = decide(baseline, current, TOLERANCE)
    assert above.rank_p_value == pytest.approx(38 / 3432)
    assert above.verdict == "inconclusive" and above.ci_low < 1.0
    current, baseline = samples_with_u(7, 7, baseline_side - 4)
    below = decide(baseline, current, TOLERANCE)
    assert below.rank_p_value == pytest.approx(24 / 3432)
    # The rank test rejects; the verdict also needs Welch's test on these (very unequal) samples to reject.
    welch_rejects = below.welch_p_value < 0.01
    assert below.verdict == ("regressed" if welch_rejects else "inconclusive")


def test_four_against_four_has_no_interval_at_99_percent():
    assert stats.exact_interval_rank(4, 4, 0.01) == 0
    decision = decide([1.0, 1.01, 1.02, 1.03], [2.0, 2.01, 2.02, 2.03], TOLERANCE)
    assert decision.ci_low is None and decision.verdict == "inconclusive"


# ---------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "bad, words",
    [
        ([], "empty"),
        ([1.0, -0.5], "index 1"),
        ([1.0, 0.0], "index 1"),
        ([1.0, float("nan")], "positive finite"),
        ([float("inf"), 1.0], "index 0"),
        (["a", 1.0], "numbers"),
        ("0.5", "string"),
        ([[1.0, 2.0]], "flat"),
        (None, "missing"),
    ],
)
def test_bad_current_samples_raise_value_error(bad, words):
    with pytest.raises(ValueError, match=words):
        decide([1.0, 1.1], bad, TOLERANCE)


def test_bad_baseline_and_settings_raise_value_error():
    with pytest.raises(ValueError, match="baseline"):
        decide([1.0, -1.0], [1.0], TOLERANCE)
    with pytest.raises(ValueError, match="tolerance"):
        decide([1.0], [1.0], -0.05)
    with pytest.raises(ValueError, match="tolerance"):
        decide([1.0], [1.0], float("nan"))
    with pytest.raises(ValueError, match="confidence"):
        decide([1.0], [1.0], TOLERANCE, confidence=1.0)
    with pytest.raises(ValueError, match="samples"):
        summarize([])


# ---------------------------------------------------------------------------------------------------------
# should_stop


def test_should_stop_at_max_trials_even_when_undecided():
    noisy = lognormal(10, 0.3, seed=21)
    assert should_stop(noisy, lognormal(8, 0.3, seed=22), TOLERANCE, min_trials=3, max_trials=8)
    assert not should_stop(noisy, lognormal(7, 0.3, seed=22), TOLERANCE, min_trials=3, max_trials=8)


def test_should_stop_waits_for_min_trials():
    baseline = lognormal(20, 0.001, seed=23)
    settled = lognormal(4, 0.001, seed=24)  # its interval already lies inside the tolerance
    assert should_stop(baseline, settled, TOLERANCE, min_trials=4, max_trials=20)
    assert not should_stop(baseline, settled, TOLERANCE, min_trials=5, max_trials=20)
    assert not should_stop(None, lognormal(8, 0.001, seed=24), TOLERANCE, min_trials=9, max_trials=20)
    assert not should_stop(baseline, [], TOLERANCE, min_trials=1, max_trials=20)  # no trial yet


def test_should_stop_on_a_strong_regression():
    baseline = lognormal(20, 0.01, seed=25)
    assert should_stop(
        baseline, lognormal(6, 0.01, seed=26, scale=1.5), TOLERANCE, min_trials=5, max_trials=20
    )
    assert should_stop(
        baseline, lognormal(6, 0.01, seed=26, scale=0.5), TOLERANCE, min_trials=5, max_trials=20
    )


def test_should_not_stop_on_a_regression_that_only_the_last_look_may_call():
    # 5 vs 5, fully separated: p = 2/252 < 0.01, so decide says regressed; but with 16 looks ahead an early
    # stop needs p < 0.01/32, which 5 vs 5 cannot reach.
    baseline = [1.00, 1.01, 1.02, 1.03, 1.04]
    current = [1.50, 1.51, 1.52, 1.53, 1.54]
    assert decide(baseline, current, TOLERANCE).verdict == "regressed"
    assert not should_stop(baseline, current, TOLERANCE, min_trials=5, max_trials=20)


def test_should_stop_when_the_interval_lies_inside_the_tolerance():
    baseline = lognormal(10, 0.005, seed=27)
    current = lognormal(6, 0.005, seed=28)
    decision = decide(baseline, current, TOLERANCE)
    assert 1 / 1.05 < decision.ci_low and decision.ci_high < 1.05
    assert should_stop(baseline, current, TOLERANCE, min_trials=5, max_trials=20)


def test_should_not_stop_while_noise_hides_the_answer():
    baseline = lognormal(10, 0.15, seed=29)
    assert not should_stop(baseline, lognormal(6, 0.15, seed=30), TOLERANCE, min_trials=5, max_trials=20)


def test_should_stop_without_baseline_when_precise_enough():
    assert should_stop(None, lognormal(6, 0.01, seed=31), TOLERANCE, min_trials=5, max_trials=20)
    assert not should_stop([], lognormal(6, 0.15, seed=32), TOLERANCE, min_trials=5, max_trials=20)
    # Three samples: a same-size baseline could never be significant, however quiet.
    assert not should_stop(None, [1.0, 1.0001, 1.0002], TOLERANCE, min_trials=3, max_trials=20)


def test_should_stop_rejects_bad_trial_limits():
    with pytest.raises(ValueError, match="min_trials"):
        should_stop(None, [1.0], TOLERANCE, min_trials=0, max_trials=5)
    with pytest.raises(ValueError, match="max_trials"):
        should_stop(None, [1.0], TOLERANCE, min_trials=5, max_trials=4)
    with pytest.raises(ValueError, match="current"):
        should_stop(None, [1.0, -2.0], TOLERANCE, min_trials=1, max_trials=5)
    with pytest.raises(ValueError, match="current"):
        should_stop([1.0], None, TOLERANCE, min_trials=1, max_trials=5)


# ---------------------------------------------------------------------------------------------------------
# The value type


def test_to_dict_is_json_serializable_with_infinity_as_a_string():
    decisions = [
        decide([1.0], [1.5], TOLERANCE),  # detectable inf, no interval
        decide(None, [1.0, 1.1], TOLERANCE),
        decide(lognormal(10, 0.02, seed=33), lognormal(10, 0.02, seed=34, scale=1.1), TOLERANCE),
    ]
    for decision in decisions:
        data = decision.to_dict()
        text = json.dumps(data, allow_nan=False)
        assert set(json.loads(text)) == {f.name for f in dataclasses.fields(stats.Decision)}
    assert decisions[0].to_dict()["detectable"] == "inf"
    assert float(decisions[0].to_dict()["detectable"]) == math.inf
    assert decisions[2].to_dict()["ci_low"] == decisions[2].ci_low


def test_decision_is_frozen():
    decision = decide([1.0], [1.0], TOLERANCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.verdict = "regressed"


# ---------------------------------------------------------------------------------------------------------
# Properties

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
sample_lists = st.lists(positive, min_size=1, max_size=25)
MIRROR = {
    "regressed": "improved",
    "improved": "regressed",
    "unchanged": "unchanged",
    "inconclusive": "inconclusive",
}


@settings(max_examples=300, deadline=None)
@given(
    baseline=sample_lists,
    current=sample_lists,
    tolerance=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    confidence=st.sampled_from([0.9, 0.95, 0.99]),
)
def test_decide_properties(baseline, current, tolerance, confidence):
    decision = decide(baseline, current, tolerance, confidence=confidence)
    assert decision.verdict in VERDICTS and decision.verdict != "new"
    assert decision.ratio > 0 and 0.0 <= decision.p_value <= 1.0
    assert decision.detectable >= 0 and decision.too_noisy == (decision.detectable > tolerance)
    json.dumps(decision.to_dict(), allow_nan=False)
    if decision.ci_low is not None:
        # The interval holds the Hodges-Lehmann ratio (median of pairwise ratios), the estimate it belongs to.
        hodges_lehmann = math.exp(float(np.median(np.subtract.outer(np.log(current), np.log(baseline)))))
        assert 0 < decision.ci_low <= hodges_lehmann * (1 + 1e-12)
        assert hodges_lehmann <= decision.ci_high * (1 + 1e-12)
    swapped = decide(current, baseline, tolerance, confidence=confidence)
    assert swapped.verdict == MIRROR[decision.verdict]
    assert swapped.p_value == decision.p_value


# Two runs of the same HF eager workloads on one H200, minutes apart (benchmarks/results/h200/record.json
# and check.json): the first run's five trials all fell in the fast mode, the second's straddled both.
# The rank test alone called these a regression and an improvement; neither is a change of the code.
H200_SAME_WORK = [
    ([0.2186, 0.2275, 0.2208, 0.2214, 0.2163], [0.2853, 0.2316, 0.2291, 0.2496, 0.2846]),  # in1024-out512-b8
    ([0.356, 0.2844, 0.2704, 0.2666, 0.27], [0.2511, 0.2554, 0.2585, 0.2464, 0.2403]),  # in2048-out512-b8
    ([0.2325, 0.2469, 0.2346, 0.2728, 0.2471], [0.2187, 0.2195, 0.2297, 0.2303, 0.228]),  # sampling, b8
]


@pytest.mark.parametrize(("baseline", "current"), H200_SAME_WORK)
def test_a_noisier_side_is_not_called_a_change(baseline, current):
    decision = decide(baseline, current, TOLERANCE)
    assert decision.rank_p_value < 0.01  # the rank test alone rejects
    assert decision.verdict not in ("regressed", "improved"), decision.reason


def test_run_noise_widens_the_interval_for_what_trials_cannot_show():
    # Sampling decoding, batch 8, HF eager on an H200: two runs a few minutes apart, each run's trials tight.
    baseline = [0.2325, 0.2469, 0.2346, 0.2728, 0.2471]
    current = [0.2036, 0.2005, 0.2119, 0.2051, 0.2156]
    assert decide(baseline, current, TOLERANCE).verdict == "improved"
    relaxed = decide(baseline, current, TOLERANCE, run_noise=0.08)
    assert relaxed.verdict == "inconclusive"
    assert relaxed.ci_low < decide(baseline, current, TOLERANCE).ci_low
    assert relaxed.detectable > decide(baseline, current, TOLERANCE).detectable
    # A change far beyond the run noise is still caught.
    assert decide(baseline, [x * 1.6 for x in baseline], TOLERANCE, run_noise=0.08).verdict == "regressed"


def test_run_noise_must_be_a_fraction():
    with pytest.raises(ValueError, match="run_noise"):
        decide([1.0, 1.1], [1.0, 1.1], TOLERANCE, run_noise=1.5)
