"""The decision rule: robust summaries of trial samples and the verdict of current energy against a baseline.

Samples are positive joules per output token, one per trial. Energy of LLM inference is noisy: on an H200 with
HF ``generate`` the spread across repeats after warm-up is 3-16% with bimodal run times, and comparing single
runs at a 5% threshold calls 68% of identical pairs a change (MEASUREMENTS.md). So a verdict needs both a size
(is the change beyond the tolerance?) and a test (is it beyond the noise?), as asv does with a ratio and
Mann-Whitney U.

The rule, with ``alpha = 1 - confidence`` (0.01 by default) and the tolerance band ``[1/(1+t), 1+t]``:

* ``new``: there is no baseline (``None`` or empty).
* Test: ``scipy.stats.mannwhitneyu(current, baseline, alternative="two-sided")``, two-sided p, U of
  ``current``. Significant means ``p < alpha``. The method is scipy's own "auto" choice (exact when the
  smaller side has at most 8 samples and there are no ties, else normal with continuity and tie correction),
  pinned here and passed explicitly so that the interval below always inverts the very same null distribution.
* Second test: Welch's t on the log samples (``scipy.stats.ttest_ind(equal_var=False)``). Significant means
  that BOTH tests reject at ``alpha`` (an intersection-union test, still of level ``alpha``); ``p_value`` is
  the larger p. Why both: the rank test assumes both sides have the same spread. On a real H200, HF eager
  runs of one workload minutes apart had five trials all in the fast mode in one run and a mix of modes in
  the next; the rank test called 3 of 15 unchanged bins regressed or improved. Welch uses each side's own
  variance, so a noisier side widens its interval; with it none of the 15 was called a change (the cases
  are in tests/test_stats.py). The rank test still guards Welch against a single wild outlier.
* Ratio: ``median(current) / median(baseline)``, reported as the headline; ``delta = ratio - 1``.
* Interval of the ratio: the distribution-free interval for a shift of log samples that inverts the same test
  (Hodges-Lehmann / Moses). Sort the ``n*m`` differences ``log(c_i) - log(b_j)``; the bounds are the k-th
  smallest and the k-th largest, exponentiated. ``k - 1`` is the largest U whose two-sided p is below
  ``alpha``: from the exact null distribution of U (counted by the Gaussian-binomial recurrence) on the exact
  path, from the normal approximation with continuity and tie correction on the asymptotic one. So
  "significant" and "the interval excludes 1" agree (exactly without ties; ties between the two sides can
  shift it by one rank). When the counts cannot reach ``p < alpha`` at all (4 vs 4 at 0.01: the smallest
  two-sided p is 2/70), the interval is (0, inf) and is reported as ``None``. The reported interval is the
  envelope of this one and Welch's interval of the ratio of geometric means, so it excludes 1 exactly when
  both tests reject.
* ``regressed``: significant, ratio > 1, and ``ci_high > 1 + t``: a real increase not shown to be within
  tolerance.
* ``improved``: significant, ratio < 1, and ``ci_low < 1/(1+t)``.
* ``inconclusive``: the ratio is outside the band but neither of the above holds (not significant, or, rarely,
  the medians and the ranks point opposite ways).
* ``unchanged``: otherwise, including a significant change whose interval lies inside the band.
* ``detectable``: the smallest relative change these counts and this noise detect at ``confidence`` with 80%
  power: ``se = 1.2533 * sqrt(s_b**2/n_b + s_c**2/n_c)`` and
  ``detectable = exp((z_{1-alpha/2} + z_{0.8}) * se) - 1``, where s is the normal sigma implied by the
  interquartile range of the log samples (IQR/1.349; see ``_log_sigma`` for why not the MAD) and
  1.2533 = sqrt(pi/2) is the variance cost of a median. ``inf`` when the counts cannot reach significance.
  ``too_noisy = detectable > t``: that test cannot guard its tolerance. With no baseline it is what a baseline
  of the same size and noise as ``current`` would give.

The tolerance band is symmetric in log space: a 5% tolerance means +5% or -4.76% (1/1.05). All comparisons are
made on logs, so swapping baseline and current swaps ``regressed`` and ``improved`` exactly.

Why this rule: A/A comparisons (two sample sets of one configuration) raise a false alarm only through a
significant test, whose exact size at alpha 0.01 is below 1% (0.7-0.9% for 5-20 trials a side); the interval
condition only removes alarms. Requirements checked by ``benchmarks/detection.py`` (simulated noise, 4000 A/A
and 2000 changed pairs a cell): A/A false alarms 0.0-0.5% at 2% noise and 0.4-0.9% at 10% noise or bimodal run
times; a +5% change on 2% noise caught in 98% of comparisons with 10 trials per side (57% with 5, 85% with 7).
The flip side of catching a change at the tolerance: a real +3% on 2% noise is also called regressed about
half the time at 10 trials (its interval cannot yet exclude +5%); more trials narrow the interval, and such a
change comes out ``unchanged`` more often.

Adaptive trials (``should_stop``): looking after every trial and stopping at the first significant result
would multiply the false-alarm rate by the number of looks (2.5-3.4% instead of 0.7-0.9% for 3..10 or 5..20
trials, simulated). So an early stop on a regression or improvement asks for a stricter level (half of
``alpha`` spread over the looks, Bonferroni); stopping because the interval already lies inside the band costs
no false alarms; at ``max_trials`` the caller decides at the full ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.stats import mannwhitneyu, norm, ttest_ind
from scipy.stats import t as student_t

VERDICTS = ("regressed", "improved", "unchanged", "inconclusive", "new")
REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE, NEW = VERDICTS
DEFAULT_CONFIDENCE = 0.99

MAD_TO_SIGMA = 1.4826  # a normal's sigma per unit of median absolute deviation
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi/2): a normal's sigma per unit of mean absolute deviation
IQR_TO_SIGMA = 1.3490  # a normal's interquartile range in units of sigma
MEDIAN_VARIANCE_COST = 1.2533  # sqrt(pi/2): standard error of a median over that of a mean, normal data
OUTLIER_Z = 3.5  # Iglewicz and Hoaglin's cut on the modified z-score
DETECTION_POWER = 0.80
EXACT_MAX_SMALLER_SIDE = 8  # scipy's "auto": exact U distribution up to this size of the smaller side


@dataclass(frozen=True)
class SampleSummary:
    """Robust location and spread of one set of samples."""

    n: int
    median: float
    mad: float  # median absolute deviation scaled to a normal's sigma (x1.4826)
    robust_cv: float  # mad / median; nan for n < 2
    outliers: tuple[int, ...]  # indices with modified z-score > 3.5; marked for the report, never removed


@dataclass(frozen=True)
class Decision:
    """The verdict on one test's current samples against its baseline, with the numbers behind it."""

    verdict: str  # one of VERDICTS
    ratio: float | None  # median(current) / median(baseline)
    delta: float | None  # ratio - 1
    ci_low: float | None  # interval of the ratio at `confidence`; None when the counts cannot bound it
    ci_high: float | None
    p_value: float | None  # the larger of the two tests' p-values: significant only if both reject
    statistic: float | None  # U of current: pairs (c, b) with c > b, ties counted one half
    detectable: (
        float | None
    )  # smallest relative change detectable at `confidence` with 80% power; inf if none
    too_noisy: bool  # detectable > tolerance
    tolerance: float
    confidence: float
    n_baseline: int
    n_current: int
    reason: str
    rank_p_value: float | None = None  # Mann-Whitney U, two-sided
    welch_p_value: float | None = None  # Welch's t on log samples (unequal variances), two-sided

    def to_dict(self) -> dict:
        """JSON-safe fields: +inf becomes the string "inf" (``float("inf")`` reads it back); nan, None."""
        return {name: _json_number(value) for name, value in asdict(self).items()}


def summarize(samples: Sequence[float]) -> SampleSummary:
    """Median, scaled MAD, robust CV and outlier marks of positive finite samples."""
    values = _validated(samples, "samples")
    median = float(np.median(values))
    deviations = values - median
    raw_mad = float(np.median(np.abs(deviations)))
    mad = MAD_TO_SIGMA * raw_mad
    robust_cv = mad / median if len(values) >= 2 else math.nan
    # Modified z-score. When more than half the samples are equal the MAD is 0; Iglewicz and Hoaglin's
    # fallback scales by the mean absolute deviation, so one odd trial among constants is still marked.
    scale = mad if raw_mad > 0 else MEAN_AD_TO_SIGMA * float(np.mean(np.abs(deviations)))
    outliers = (
        tuple(int(i) for i in np.flatnonzero(np.abs(deviations) > OUTLIER_Z * scale)) if scale > 0 else ()
    )
    return SampleSummary(n=len(values), median=median, mad=mad, robust_cv=robust_cv, outliers=outliers)


def combine_noise(*spreads: float) -> float:
    """One relative spread from independent ones (run-to-run, card-to-card): they add in log variance."""
    combined = math.expm1(math.sqrt(sum(math.log1p(spread) ** 2 for spread in spreads)))
    if combined >= 1:
        raise ValueError(f"spreads of {', '.join(f'{s:.0%}' for s in spreads)} combine to {combined:.0%}; "
                         "a run-to-run spread must stay below 100%")
    return combined


def decide(
    baseline: Sequence[float] | None,
    current: Sequence[float],
    tolerance: float,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    run_noise: float = 0.0,
) -> Decision:
    """The verdict of `current` against `baseline` at `tolerance` (a fraction); see the module docstring.

    `run_noise` is the relative spread of a whole run's median from one run to the next that trials within
    one run cannot show (a process-level state of the stack); it widens Welch's interval and the detectable
    change. 0 trusts the trials alone.
    """
    _check_settings(tolerance, confidence)
    if isinstance(run_noise, bool) or not isinstance(run_noise, (int, float)) or not 0 <= run_noise < 1:
        raise ValueError(f"run_noise must be a fraction in [0, 1) (0.05 means 5%), got {run_noise!r}")
    run_log_sd = math.log1p(run_noise)
    current_values = _validated(current, "current")
    alpha = 1.0 - confidence
    log_current = np.log(current_values)
    n_current = len(current_values)

    if baseline is None or len(baseline) == 0:
        # What a same-size baseline with the same noise could detect: tells a new test whether it will be able
        # to guard its tolerance once its baseline is stored.
        sigma = _log_sigma(log_current)
        detectable = _detectable(sigma, n_current, sigma, n_current, alpha, run_log_sd)
        too_noisy = detectable > tolerance
        median = float(np.median(current_values))
        spread = summarize(current_values).robust_cv
        reason = (
            f"no baseline: median {median:.4g} J/token over {n_current} trial{'s' if n_current != 1 else ''}"
            f" (robust CV {_percent(spread, signed=False)}); a baseline like it could detect"
            f" {_detectable_text(detectable)}"
        )
        return Decision(
            verdict=NEW,
            ratio=None,
            delta=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            statistic=None,
            detectable=detectable,
            too_noisy=too_noisy,
            tolerance=tolerance,
            confidence=confidence,
            n_baseline=0,
            n_current=n_current,
            reason=reason,
        )

    baseline_values = _validated(baseline, "baseline")
    log_baseline = np.log(baseline_values)
    n_baseline = len(baseline_values)

    median_current = float(np.median(current_values))
    median_baseline = float(np.median(baseline_values))
    ratio = median_current / median_baseline
    delta = ratio - 1.0
    # Compare on logs: log(a) - log(b) == -(log(b) - log(a)) exactly, so verdicts mirror under a swap.
    log_ratio = math.log(median_current) - math.log(median_baseline)
    band = math.log1p(tolerance)

    has_ties = len(np.unique(np.concatenate([current_values, baseline_values]))) < n_current + n_baseline
    method = _test_method(n_current, n_baseline, has_ties)
    test = mannwhitneyu(current_values, baseline_values, alternative="two-sided", method=method)
    rank_p = float(test.pvalue)
    statistic = float(test.statistic)

    k = _interval_rank(current_values, baseline_values, alpha, method)
    if k >= 1:
        differences = np.sort(np.subtract.outer(log_current, log_baseline), axis=None)
        rank_interval = (float(differences[k - 1]), float(differences[differences.size - k]))
    else:
        rank_interval = (-math.inf, math.inf)
    welch_p, welch_interval = _welch(log_current, log_baseline, confidence, run_log_sd)
    # Both tests must reject (an intersection-union test: still of level alpha). The rank test alone assumes
    # both sides have the same spread; on a GPU one run's trials can sit in one mode of a bimodal workload
    # and the next run's straddle both, and the rank test then calls noise a change. Welch's interval uses
    # each side's own variance, so a side that is noisier widens it (seen on an H200, see the docstring).
    p_value = max(rank_p, welch_p)
    significant = p_value < alpha
    log_low = min(rank_interval[0], welch_interval[0])
    log_high = max(rank_interval[1], welch_interval[1])
    if math.isfinite(log_low) and math.isfinite(log_high):
        ci_low, ci_high = math.exp(log_low), math.exp(log_high)
    else:
        ci_low = ci_high = None

    detectable = _detectable(
        _log_sigma(log_baseline), n_baseline, _log_sigma(log_current), n_current, alpha, run_log_sd
    )
    too_noisy = detectable > tolerance

    ranks_rise = statistic > n_current * n_baseline / 2  # the direction the test saw
    if significant and log_ratio > 0 and log_high > band:
        verdict = REGRESSED
    elif significant and log_ratio < 0 and log_low < -band:
        verdict = IMPROVED
    elif abs(log_ratio) > band:
        verdict = INCONCLUSIVE
    else:
        verdict = UNCHANGED

    reason = _reason(
        verdict,
        delta=delta,
        ci=(ci_low, ci_high),
        p_value=p_value,
        alpha=alpha,
        confidence=confidence,
        significant=significant,
        medians_rise=log_ratio > 0,
        ranks_rise=ranks_rise,
        tolerance=tolerance,
        detectable=detectable,
    )
    return Decision(
        verdict=verdict,
        ratio=ratio,
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        statistic=statistic,
        rank_p_value=rank_p,
        welch_p_value=welch_p,
        detectable=detectable,
        too_noisy=too_noisy,
        tolerance=tolerance,
        confidence=confidence,
        n_baseline=n_baseline,
        n_current=n_current,
        reason=reason,
    )


def should_stop(
    baseline: Sequence[float] | None,
    current: Sequence[float],
    tolerance: float,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_trials: int,
    max_trials: int,
    run_noise: float = 0.0,
) -> bool:
    """Whether the runner can stop adding trials; afterwards it calls ``decide`` on the same samples.

    True at ``max_trials``; before ``min_trials`` False (an empty `current` is simply "not yet", so this can
    guard a ``while`` loop). In between, with a baseline: True when the interval of the ratio already lies
    inside the tolerance band, or when the samples give a regressed/improved verdict at the stricter level
    ``alpha / (2 * looks)`` (``looks = max_trials - min_trials + 1``): half of ``alpha`` spread over the looks
    (Bonferroni), so that looking after every trial adds at most ``alpha/2`` to the last look's false alarms.
    Without a baseline: True when a baseline of the same size and noise could detect a change of `tolerance`
    (``detectable <= tolerance``).
    """
    _check_settings(tolerance, confidence)
    if isinstance(min_trials, bool) or not isinstance(min_trials, int) or min_trials < 1:
        raise ValueError(f"min_trials must be an integer >= 1, got {min_trials!r}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < min_trials:
        raise ValueError(f"max_trials must be an integer >= min_trials ({min_trials}), got {max_trials!r}")
    if current is not None and len(current) == 0:
        return False
    current_values = _validated(current, "current")
    n_current = len(current_values)
    if n_current >= max_trials:
        return True
    if n_current < min_trials:
        return False

    if baseline is None or len(baseline) == 0:
        return (
            decide(None, current_values, tolerance, confidence=confidence, run_noise=run_noise).detectable
            <= tolerance
        )

    decision = decide(baseline, current_values, tolerance, confidence=confidence, run_noise=run_noise)
    band = math.log1p(tolerance)
    if (
        decision.ci_low is not None
        and math.log(decision.ci_low) >= -band
        and math.log(decision.ci_high) <= band
    ):
        return True
    if decision.verdict in (REGRESSED, IMPROVED):
        looks = max_trials - min_trials + 1
        early_alpha = (1.0 - confidence) / (2 * looks)
        strict = decide(
            baseline, current_values, tolerance, confidence=1.0 - early_alpha, run_noise=run_noise
        )
        return strict.verdict == decision.verdict
    return False


# ---------------------------------------------------------------------------------------------------------
# The null distribution of U and the rank of the interval bounds


def u_null_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n+m, n) orderings of n and m distinct values give U = 0, 1, ..., n*m.

    These are the coefficients of the Gaussian binomial [n+m choose n](q) = prod_{i=1..n} (1-q^(m+i))/(1-q^i),
    built one factor at a time in exact integers (the counts outgrow 64 bits).
    """
    return _u_null_counts(*sorted((int(n), int(m))))


@lru_cache(maxsize=256)
def _u_null_counts(smaller: int, larger: int) -> tuple[int, ...]:
    counts = [1]
    for i in range(1, smaller + 1):
        step = larger + i
        grown = counts + [0] * step
        for u, count in enumerate(counts):  # times (1 - q^step)
            grown[u + step] -= count
        for u in range(i, len(grown)):  # divided by (1 - q^i): exact, the quotient is a polynomial
            grown[u] += grown[u - i]
        counts = grown[: i * larger + 1]
    return tuple(counts)


def exact_interval_rank(n: int, m: int, alpha: float) -> int:
    """k of the exact interval: 1 + the largest u whose two-sided exact p is below alpha; 0 if none is."""
    return _exact_interval_rank(*sorted((int(n), int(m))), Fraction(alpha))


@lru_cache(maxsize=4096)
def _exact_interval_rank(smaller: int, larger: int, alpha: Fraction) -> int:
    counts = _u_null_counts(smaller, larger)
    total = math.comb(smaller + larger, smaller)
    k = 0
    cumulative = 0
    for count in counts[: len(counts) // 2 + 1]:
        cumulative += count
        if 2 * cumulative >= alpha * total:
            break
        k += 1
    return k


def _asymptotic_interval_rank(n: int, m: int, tie_term: float, alpha: float) -> int:
    """k for the normal approximation scipy uses: significant iff min(U, nm-U) < nm/2 - 1/2 - z * sigma."""
    total = n + m
    sigma = math.sqrt(n * m / 12 * ((total + 1) - tie_term / (total * (total - 1))))
    bound = n * m / 2 - 0.5 - _z_two_sided(alpha) * sigma
    return max(0, math.ceil(bound))


@lru_cache(maxsize=64)
def _z_two_sided(alpha: float) -> float:
    """The normal quantile z with P(|Z| > z) = alpha (cached: scipy's quantiles cost ~0.1 ms a call)."""
    return float(norm.isf(alpha / 2))


def _test_method(n: int, m: int, has_ties: bool) -> str:
    """scipy's "auto" choice, made here so that the test and the interval use one null distribution."""
    if min(n, m) <= EXACT_MAX_SMALLER_SIDE and not has_ties:
        return "exact"
    return "asymptotic"


def _interval_rank(current: np.ndarray, baseline: np.ndarray, alpha: float, method: str) -> int:
    if method == "exact":
        return exact_interval_rank(len(current), len(baseline), alpha)
    _, tie_sizes = np.unique(np.concatenate([current, baseline]), return_counts=True)
    tie_term = float(np.sum(tie_sizes.astype(float) ** 3 - tie_sizes))
    return _asymptotic_interval_rank(len(current), len(baseline), tie_term, alpha)


@lru_cache(maxsize=4096)
def _significance_possible(n_baseline: int, n_current: int, alpha: float) -> bool:
    """Whether samples of these counts (without ties) can reach p < alpha at all."""
    if _test_method(n_current, n_baseline, has_ties=False) == "exact":
        return exact_interval_rank(n_current, n_baseline, alpha) >= 1
    return _asymptotic_interval_rank(n_current, n_baseline, 0.0, alpha) >= 1


def _detectable(
    sigma_baseline: float, n_baseline: int, sigma_current: float, n_current: int, alpha: float,
    run_log_sd: float = 0.0,
) -> float:
    if not _significance_possible(n_baseline, n_current, alpha):
        return math.inf
    standard_error = math.sqrt(
        MEDIAN_VARIANCE_COST**2 * (sigma_baseline**2 / n_baseline + sigma_current**2 / n_current)
        + 2 * run_log_sd**2
    )
    z_sum = _z_two_sided(alpha) + _z_two_sided(2 * (1 - DETECTION_POWER))
    return math.expm1(z_sum * standard_error)


def _welch(
    log_current: np.ndarray, log_baseline: np.ndarray, confidence: float, run_log_sd: float = 0.0
) -> tuple[float, tuple[float, float]]:
    """Welch's t-test on log samples: two-sided p and the interval of the log ratio of geometric means.

    With one sample on a side its variance is unknown: p is 1 and the interval unbounded. With no spread on
    either side (and no run noise) the difference is exact: p is 0 if the means differ (1 if not) and the
    interval a point. Run noise adds a variance term of each side's run median that trials cannot shrink; it
    counts as known, so it adds no degrees of freedom (Welch-Satterthwaite over the sample terms only).
    """
    if len(log_current) < 2 or len(log_baseline) < 2:
        return 1.0, (-math.inf, math.inf)
    difference = float(np.mean(log_current) - np.mean(log_baseline))
    if run_log_sd == 0:
        if np.ptp(log_current) == 0 and np.ptp(log_baseline) == 0:
            return (0.0 if difference != 0 else 1.0), (difference, difference)
        result = ttest_ind(log_current, log_baseline, equal_var=False)
        interval = result.confidence_interval(confidence_level=confidence)
        return float(result.pvalue), (float(interval.low), float(interval.high))
    var_current = float(np.var(log_current, ddof=1)) / len(log_current)
    var_baseline = float(np.var(log_baseline, ddof=1)) / len(log_baseline)
    sample_terms = var_current**2 / (len(log_current) - 1) + var_baseline**2 / (len(log_baseline) - 1)
    variance = var_current + var_baseline + 2 * run_log_sd**2
    dof = variance**2 / sample_terms if sample_terms > 0 else math.inf
    standard_error = math.sqrt(variance)
    p_value = float(2 * student_t.sf(abs(difference) / standard_error, dof))
    half_width = float(student_t.isf((1 - confidence) / 2, dof)) * standard_error
    return p_value, (difference - half_width, difference + half_width)


def _log_sigma(log_values: np.ndarray) -> float:
    """The normal sigma implied by the interquartile range of the log samples.

    Not the MAD: with bimodal run times (MEASUREMENTS.md: 10 fast and 6 slow runs) more than half the samples
    sit in the fast mode, the MAD sees only that mode's width, and the detectable change it implies was 3-4x
    too small in simulation (11.6% reported where +40% was needed for 80% detection at 10 trials). The
    quartiles straddle both modes, and one slow run in ten still barely moves them.
    """
    lower, upper = np.percentile(log_values, [25.0, 75.0])
    return float(upper - lower) / IQR_TO_SIGMA


# ---------------------------------------------------------------------------------------------------------
# Input checks and wording


def _validated(samples: Sequence[float], what: str) -> np.ndarray:
    if samples is None:
        raise ValueError(f"{what} samples are missing (got None); pass one J/token value per trial")
    if isinstance(samples, (str, bytes)):
        raise ValueError(f"{what} samples must be a sequence of numbers, got a string {samples!r}")
    try:
        values = np.asarray(samples, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} samples must be numbers (J per output token): {error}") from None
    if values.ndim != 1:
        raise ValueError(f"{what} samples must be a flat sequence of numbers, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{what} samples are empty; at least one trial is needed")
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"{what} samples must be positive finite J/token values; got {values[index]!r} at index {index}"
            + (f" ({bad.size} bad values)" if bad.size > 1 else "")
        )
    return values


def _check_settings(tolerance: float, confidence: float) -> None:
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"tolerance must be a finite fraction >= 0 (0.05 means 5%), got {tolerance!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(
            f"confidence must be a number strictly between 0 and 1 (e.g. 0.99), got {confidence!r}"
        )


def _json_number(value):
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _percent(value: float, *, signed: bool = True) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _detectable_text(detectable: float) -> str:
    if math.isinf(detectable):
        return "no change at all (too few trials for significance)"
    return f"changes of {detectable:.1%} or more"


def _reason(
    verdict: str,
    *,
    delta: float,
    ci: tuple[float | None, float | None],
    p_value: float,
    alpha: float,
    confidence: float,
    significant: bool,
    medians_rise: bool,
    ranks_rise: bool,
    tolerance: float,
    detectable: float,
) -> str:
    ci_low, ci_high = ci
    level = f"{confidence:.0%}" if round(confidence * 100, 6).is_integer() else f"{confidence:.2%}"
    ci_text = (
        f"{level} CI {_percent(ci_low - 1)} to {_percent(ci_high - 1)}" if ci_low is not None else "no CI"
    )
    test_text = f"p={p_value:.2g} {'<' if significant else '>='} {alpha:.2g}"
    band_text = f"{1 / (1 + tolerance) - 1:+.2%}..+{tolerance * 100:.3g}%"
    disagree = significant and medians_rise != ranks_rise
    if verdict == REGRESSED:
        return (
            f"energy per token rose {delta:.1%} ({ci_text}, {test_text}), not shown to be within the"
            f" {band_text} tolerance"
        )
    if verdict == IMPROVED:
        return (
            f"energy per token fell {-delta:.1%} ({ci_text}, {test_text}), not shown to be within the"
            f" {band_text} tolerance"
        )
    if disagree:
        return (
            f"{_percent(delta)} in the medians, but the rank test points the other way"
            f" ({test_text}, {ci_text});"
            f" {'beyond' if verdict == INCONCLUSIVE else 'within'} the {band_text} tolerance"
        )
    if verdict == INCONCLUSIVE:
        if significant:
            return (
                f"{_percent(delta)} is beyond the {band_text} tolerance, its {ci_text} within ({test_text})"
            )
        return (
            f"{_percent(delta)} is beyond the {band_text} tolerance but not significant ({test_text}); these"
            f" samples could detect {_detectable_text(detectable)}"
        )
    if significant:
        return (
            f"{_percent(delta)} is significant ({test_text}) but its {ci_text} lies within the {band_text}"
            " tolerance"
        )
    text = f"{_percent(delta)} is within the {band_text} tolerance ({test_text})"
    if detectable > tolerance:
        text += f", but these samples could detect {_detectable_text(detectable)}: too noisy to guard it"
    return text
