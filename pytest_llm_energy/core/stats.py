"""The decision rule: a run's J/token against the runs recorded for its baseline, with the noise of each level.

A number moves for three reasons, each a level of the model (all on log J/token, so a spread is relative):

* trial: windows of one run differ (the meter, the work's own jitter);
* run: whole runs differ, process to process, on the same card (warm-up, host state, compile caches);
* card: whole cards of one GPU model differ (silicon, cooling, the host around them).

A run is summarised by its median (robust to one wild trial, even of three). Its median varies around the
run's level by ``c(n) * trial**2 / n`` (``c`` is the variance cost of a median over a mean); the run's level
varies around the test's by ``run**2``. The baseline is the mean of the medians of its K recorded runs.
So ``d = log(median now) - mean(log median of each recorded run)`` has variance

    V = run**2 * (1 + 1/K) + c(n)*trial**2/n + sum(c(n_k)*trial**2/n_k)/K**2 + card**2 * w

where ``w = (1 - n_0/K)**2 + sum over the baseline's other cards of (n_j/K)**2`` (`Cards.weight`; n_j: the
recorded runs on card j, n_0 those on this run's card): 0 where every run came from this run's card,
``1 + 1/J`` on a card none of J cards' single runs came from. Each variance is estimated from data:

* trial: the trials' spread, pooled over this run and the recorded runs (one stack, one workload);
* run: the scatter of the recorded run medians within each card beyond what their trials explain,
  moderated towards a value pooled over every test of the baselines set, and that towards a prior
  (`--energy-run-noise`, weighted as PRIOR_WEIGHT degrees of freedom), so one run or two never claim to
  know it. (Runs on different cards differ by their cards too: counted as run scatter, that level would
  be counted twice.)
* card: the scatter of card means beyond what runs explain, over the entries of the set whose runs came
  from several cards (this test's among them), towards `--energy-card-noise`. Where runs
  from several cards meet (in a baseline, or this run against it) and each measured the reference kernels
  (`reference`), every median is first divided by its card's reference figure (`per_card_scale`), so the
  card level is what that leaves.

The degrees of freedom of each estimate combine by Welch-Satterthwaite, and the interval of the ratio is
``exp(d +- t * sqrt(V))`` at the chosen confidence. The trials' part counts the degrees of freedom a median
sees (`median_trial_df`): a median's variance beyond a mean's moves with the trials' spread itself, so a
difference of medians over its estimated se has lighter tails than Student's t at the spread's own degrees
of freedom (benchmarks/README.md section 5). Verdicts, with the tolerance band ``[1/(1+t), 1+t]``:

* ``unchanged``: the interval lies inside the band;
* ``regressed``: significant (p < 1 - confidence) and the estimate beyond the band; ``improved`` the mirror;
* ``inconclusive``: neither shown (too few runs, too much noise, or a change near the tolerance);
* ``new``: no baseline.

``detectable`` is the rise caught 80% of the time: ``max(band, t * se) + t_0.8 * se`` (a rise must be both
significant and beyond the band). ``too_noisy``: the interval is wider than the band, so this test cannot
come out ``unchanged`` whatever it measures. The rule works on arrays of replicates as well as on one run,
so `benchmarks/detection.py` simulates this very code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, field, fields, replace
from enum import StrEnum

import numpy as np

# Student's t and the normal through scipy.special: scipy.stats' t and norm call these and import 3x slower
from scipy.special import ndtri, stdtr, stdtridf, stdtrit

from .words import counted


class Verdict(StrEnum):
    """What a comparison concludes; the value is the word every report and file writes."""

    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"


VERDICTS = tuple(Verdict)  # the rule on arrays gives each verdict as its index here
DEFAULT_CONFIDENCE = 0.99
DEFAULT_RUN_NOISE = 0.05  # prior spread of a run's level on one card, until recorded runs say otherwise
DEFAULT_CARD_NOISE = 0.05  # prior spread of a card's level within a GPU model
PRIOR_WEIGHT = 3  # a prior counts as this many degrees of freedom (the scatter of four runs)
POOLED_WEIGHT_CAP = 4  # a test's own runs outweigh what other tests of its set say, once it has a few
DETECTION_POWER = 0.80

MAD_TO_SIGMA = 1.4826  # a normal's sigma per unit of median absolute deviation
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi/2): a normal's sigma per unit of mean absolute deviation
OUTLIER_Z = 3.5  # Iglewicz and Hoaglin's cut on the modified z-score
# Var(median of n normal samples) / (sigma**2 / n), n = 1..20 (simulated, 4e5 replicates each); beyond,
# pi/2 * n/(n + 0.5) for odd n and pi/2 * n/(n + 1.5) for even n follow it within 1%.
_MEDIAN_COST = (1.0, 1.0, 1.344, 1.198, 1.430, 1.288, 1.472, 1.347, 1.494, 1.379,
                1.517, 1.405, 1.522, 1.426, 1.526, 1.444, 1.529, 1.456, 1.538, 1.469)


def median_cost(n: int) -> float:
    if n <= len(_MEDIAN_COST):
        return _MEDIAN_COST[n - 1]
    return math.pi / 2 * n / (n + (0.5 if n % 2 else 1.5))


# --- values ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSummary:
    """Robust location and spread of one set of samples."""

    n: int
    median: float
    mad: float  # median absolute deviation scaled to a normal's sigma (x1.4826)
    robust_cv: float  # mad / median; nan for n < 2
    outliers: tuple[int, ...]  # indices with modified z-score > 3.5; marked for the report, never removed


@dataclass(frozen=True)
class Run:
    """One run (a process) of a test: the median of its trials, how many, their spread, where and when."""

    median: float  # J per output token
    trials: int
    spread: float  # standard deviation of the log samples (a relative spread); 0 for one trial
    gpus: frozenset[str] = frozenset()
    recorded_at: str | None = None
    card_scale: float | None = None  # its card's reference figure for this work (reference.card_scale)

    @classmethod
    def of(cls, samples: Sequence[float], gpus: Iterable[str] = (), recorded_at: str | None = None,
           card_scale: float | None = None) -> Run:
        values = validated(samples, "samples")
        logs = np.log(values)
        spread = float(np.std(logs, ddof=1)) if len(values) > 1 else 0.0
        return cls(float(np.median(values)), len(values), spread, frozenset(gpus), recorded_at, card_scale)

    def to_dict(self) -> dict:
        return {"median": self.median, "trials": self.trials, "spread": self.spread,
                "gpus": sorted(self.gpus), "recorded_at": self.recorded_at}

    @classmethod
    def from_dict(cls, data: Mapping) -> Run:
        """A run as `to_dict` wrote it (checked where a baseline file is read: `baseline`)."""
        return cls(data["median"], data["trials"], data["spread"], frozenset(data.get("gpus") or ()),
                   data.get("recorded_at"))


@dataclass(frozen=True)
class Prior:
    """What the rule assumes before runs are recorded: relative spreads of a run and of a card."""

    run: float = DEFAULT_RUN_NOISE
    card: float = DEFAULT_CARD_NOISE
    # Runs move at least as far as one trial does, until recorded runs show otherwise: where a window's noise
    # is the machine's other work (the CPU meters), that work lasts seconds to minutes and moves whole runs
    # too (benchmarks/README.md section 12).
    at_least_trials: bool = False
    stated: bool = False  # `run` was given (option, ini, marker), not the default: the CPU floor stays off

    def __post_init__(self) -> None:
        for name in ("run", "card"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} noise must be a fraction in [0, 1) (0.05 means 5%), got {value!r}")


@dataclass(frozen=True)
class Evidence:
    """Run-to-run and card-to-card scatter over the tests of a baselines set, beyond what trials explain.

    Sums of (degrees of freedom x excess variance) and the degrees of freedom, so one test's own run part can
    be taken out again (`besides`) before its own runs are weighed against the rest. The card scatter is kept
    twice: of plain J/token, and of J/token per unit of each card's reference figure (`per_card_scale`,
    from the histories it applies to), so each comparison learns from the kind it makes (`scaled`).
    """

    run_sum: float = 0.0
    run_df: int = 0
    card_sum: float = 0.0
    card_df: int = 0
    scaled_card_sum: float = 0.0
    scaled_card_df: int = 0

    @classmethod
    def of(cls, histories: Iterable[Sequence[Run]]) -> Evidence:
        total = cls()
        for history in histories:
            total = total + cls.of_history(history)
        return total

    @classmethod
    def of_history(cls, runs: Sequence[Run]) -> Evidence:
        """What one test's recorded runs say: their scatter beyond their trials, by run and by card."""
        if any(r.gpus for r in runs):
            # A run that names no GPU (an older record) came from a card nobody knows: grouped with the
            # others like it, their cards' scatter would count as the runs'. It is left out here.
            runs = [r for r in runs if r.gpus]
        if len(runs) < 2:
            return cls()
        trial_var, _ = _pooled_trial_variance([(r.trials, r.spread) for r in runs])
        own = [median_cost(r.trials) * trial_var / r.trials for r in runs]
        run_sum, run_df, card_sum, card_df = _scatter(runs, own)
        scaled = per_card_scale(runs)
        # The run level is learnt from plain J/token: dividing by a card's reference leaves the runs on one
        # card as they were (benchmarks/README.md section 10); only the card level differs.
        scaled_sum, scaled_df = _scatter(scaled, own)[2:] if scaled else (0.0, 0)
        return cls(run_sum, run_df, card_sum, card_df, scaled_sum, scaled_df)

    def scaled(self) -> Evidence:
        """The evidence for a comparison made per unit of each card's reference figure."""
        return replace(self, card_sum=self.scaled_card_sum, card_df=self.scaled_card_df)

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def without(self, part: Evidence) -> Evidence:
        return Evidence(*(a - b for a, b in zip(astuple(self), astuple(part), strict=True)))

    def besides(self, runs: Sequence[Run] | None) -> Evidence:
        """The set's evidence for judging against these recorded runs: without their run part, which the rule
        weighs itself; their cards' part stays, as nothing else counts it."""
        if not runs:
            return self
        own = Evidence.of_history(runs)
        return self.without(Evidence(run_sum=own.run_sum, run_df=own.run_df))


def _scatter(runs: Sequence[Run], own: Sequence[float]) -> tuple[float, int, float, int]:
    """(run sum, run df, card sum, card df) of runs whose medians' own trial variances are `own`."""
    medians = np.log([r.median for r in runs])
    cards = {}
    for run, median, variance in zip(runs, medians, own, strict=True):
        cards.setdefault(run.gpus, []).append((median, variance))
    if len(cards) < 2:
        return float(np.var(medians, ddof=1) - np.mean(own)) * (len(runs) - 1), len(runs) - 1, 0.0, 0
    # Runs within each card estimate the run scatter; the card means' scatter, less what runs explain,
    # the card scatter.
    within = [(len(group) - 1, np.var([m for m, _ in group], ddof=1) - np.mean([v for _, v in group]))
              for group in cards.values() if len(group) > 1]
    run_df = sum(df for df, _ in within)
    if not run_df:  # no two runs on one card: the cards' scatter holds the runs' too, and cannot tell them apart
        return 0.0, 0, 0.0, 0
    run_sum = sum(df * excess for df, excess in within)
    run_var = max(0.0, run_sum / run_df)
    means = [np.mean([m for m, _ in group]) for group in cards.values()]
    explained = np.mean([(run_var + np.mean([v for _, v in group])) / len(group) for group in cards.values()])
    card_excess = float(np.var(means, ddof=1) - explained)
    return float(run_sum), run_df, card_excess * (len(cards) - 1), len(cards) - 1


@dataclass(frozen=True)
class Cards:
    """Which card each recorded run came from (indices) and this run's (None: a card none of them came from)."""

    runs: tuple[int, ...]
    current: int | None

    @classmethod
    def one(cls, runs: int) -> Cards:
        """Every run on this run's card: the level of cards plays no part."""
        return cls((0,) * runs, 0)

    @classmethod
    def of(cls, baseline: Sequence[Run], current: Run) -> Cards:
        """Runs that do not name their GPUs (older entries, the CPU) are never on another card."""
        index: dict[frozenset[str], int] = {}
        runs = tuple(index.setdefault(run.gpus if run.gpus and current.gpus else current.gpus, len(index))
                     for run in baseline)
        return cls(runs, index.get(current.gpus))

    def groups(self) -> list[list[int]]:
        """The positions of the runs on each card."""
        found: dict[int, list[int]] = {}
        for position, card in enumerate(self.runs):
            found.setdefault(card, []).append(position)
        return list(found.values())

    def weight(self) -> float:
        """Variance of this card's level less the mean level of the runs' cards, per unit of card variance."""
        total = len(self.runs)
        counts = {card: self.runs.count(card) for card in set(self.runs)}
        own = counts.pop(self.current, 0) if self.current is not None else 0
        return (1 - own / total) ** 2 + sum((n / total) ** 2 for n in counts.values())


DEFAULT_PRIOR = Prior()
NO_EVIDENCE = Evidence()


def per_card_scale(runs: Sequence[Run]) -> list[Run] | None:
    """Runs from several cards with each median divided by its card's reference figure (the geometric mean
    of what that card's runs measured, so a run recorded without it takes its card's): how the rule makes
    cards of one model comparable (benchmarks/README.md section 10 measured that this narrows their spread).
    None where the runs come from one card, or from a card none of whose runs measured the reference. (A run
    on several GPUs is scaled by the first one's: the kernels run on CUDA device 0.)"""
    logs: dict[frozenset[str], list[float]] = {}
    for run in runs:
        if run.gpus and run.card_scale:
            logs.setdefault(run.gpus, []).append(math.log(run.card_scale))
    if len({run.gpus for run in runs}) < 2 or any(run.gpus not in logs for run in runs):
        return None
    scale = {card: math.exp(sum(values) / len(values)) for card, values in logs.items()}
    return [replace(run, median=run.median / scale[run.gpus]) for run in runs]


@dataclass(frozen=True)
class Noise:
    """The spread of each level a comparison used (relative), with its degrees of freedom and source."""

    trial: float
    trial_df: int
    run: float
    run_df: float
    run_source: str  # "recorded runs", "pooled", "prior"; "none" where runs cannot differ (A/B)
    card: float = 0.0  # the cards' part of this comparison's spread: 0 where every run came from this card
    card_df: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Noise:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Decision:
    """The verdict on one run against its baseline, with the numbers behind it."""

    verdict: Verdict
    ratio: float | None  # median now / the baseline (geometric mean of its runs' medians)
    delta: float | None  # ratio - 1
    ci_low: float | None  # interval of the ratio at `confidence`
    ci_high: float | None
    p_value: float | None
    significant: bool
    detectable: float | None  # the rise caught 80% of the time (inf where none would be)
    too_noisy: bool  # the interval is wider than the tolerance band: `unchanged` is out of reach
    tolerance: float
    confidence: float
    n_baseline: int  # trials in the latest recorded run
    n_current: int
    runs: int  # recorded runs in the baseline
    df: float | None  # degrees of freedom of the interval
    noise: Noise | None
    reason: str
    # Where runs from several cards met: this card's reference figure over the baseline runs' (geometric
    # mean); ratio, interval and verdict are then of J/token per unit of each run's reference.
    card_adjustment: float | None = None
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe fields: +inf becomes the string "inf" (``float("inf")`` reads it back); nan, None."""
        data = {name: _json_number(value) for name, value in asdict(self).items() if name != "noise"}
        data["verdict"] = str(self.verdict)
        data["noise"] = self.noise.to_dict() if self.noise else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Decision:
        """A decision as `to_dict` wrote it; a field it lacks (a report of an older version) is None."""
        values = {f.name: _from_json_number(data.get(f.name)) for f in fields(cls) if f.name not in ("verdict", "noise")}
        noise = data.get("noise")
        return cls(**{**values, "verdict": Verdict(data.get("verdict") or Verdict.NEW),
                      "noise": Noise.from_dict(noise) if noise else None, "extras": dict(data.get("extras") or {})})


# --- the rule, on arrays of replicates (one row per replicate; the plugin passes one) -----------------------


# Gauss-Hermite nodes and weights: an expectation over a standard normal
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(40)
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / _HERMITE_WEIGHTS.sum()


@functools.lru_cache(maxsize=512)
def median_trial_df(trial_df: int, cost: float, confidence: float) -> float:
    """Degrees of freedom at which Student's t has the quantile of a median difference over its estimated se.

    With normal trials, (median - mean) / s is free of location and scale, hence independent of the mean and
    of s (Basu's theorem). So a difference of medians over sqrt(cost) x its means' se is t_df / sqrt(cost) + V,
    V independent, of variance (cost - 1) / cost, taken as normal: lighter-tailed than t_df, since the part
    of a median's variance beyond a mean's grows and shrinks with s itself (benchmarks/README.md section 5).
    """
    if trial_df <= 0 or cost <= 1 or not math.isfinite(trial_df):
        return float(trial_df)
    upper = 1 - (1 - confidence) / 2
    spread = math.sqrt((cost - 1) / cost)

    def tail(x: float) -> float:
        upper_tail = stdtr(trial_df, -math.sqrt(cost) * (x - spread * _HERMITE_NODES))
        return float(np.sum(_HERMITE_WEIGHTS * upper_tail)) - (1 - upper)

    quantile = _bisect_decreasing(tail, 0.0, 1e3)
    if quantile <= stdtrit(1e9, upper):
        return math.inf
    return float(stdtridf(upper, quantile))  # the df whose t quantile at `upper` is `quantile`


def _bisect_decreasing(f: Callable[[float], float], low: float, high: float) -> float:
    """The root of a decreasing f in [low, high], to a relative 1e-13 (scipy.optimize would double the import)."""
    while high - low > 1e-13 * max(1.0, abs(high)):
        middle = (low + high) / 2
        low, high = (middle, high) if f(middle) > 0 else (low, middle)
    return (low + high) / 2


def _pooled_trial_variance(parts: Iterable[tuple[int, float]]) -> tuple[float, int]:
    """Trial variance of log samples pooled over runs of (trials, spread); and its degrees of freedom."""
    total = df = 0
    for trials, spread in parts:
        total += (trials - 1) * spread**2
        df += trials - 1
    return (total / df if df else 0.0), df


def _satterthwaite(terms: Sequence[tuple[np.ndarray, np.ndarray | float]]) -> np.ndarray:
    """Degrees of freedom of a sum of variance estimates, each with its own (Welch-Satterthwaite).

    A term known exactly (infinite degrees of freedom) or absent (zero variance) adds no uncertainty.
    """
    total = sum(variance for variance, _ in terms)
    spread = 0.0
    for variance, df in terms:
        df = np.asarray(df, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = spread + np.where((variance > 0) & (df > 0) & np.isfinite(df), variance**2 / df, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, total**2 / np.where(spread > 0, spread, 1.0), np.inf)


@dataclass(frozen=True)
class Comparison:
    """The rule's numbers for R replicates at once (arrays of shape (R,)); `Decision` is one of them."""

    d: np.ndarray  # log ratio, now against the baseline
    se: np.ndarray
    df: np.ndarray
    low: np.ndarray  # log interval
    high: np.ndarray
    p_value: np.ndarray
    verdict: np.ndarray  # indices into VERDICTS
    detectable: np.ndarray  # as a fraction
    too_noisy: np.ndarray
    trial: np.ndarray  # spreads used (log sd) and their degrees of freedom
    trial_df: int
    run: np.ndarray
    run_df: np.ndarray
    run_source: str
    card: float
    card_df: float


def _run_variance(base_medians: np.ndarray, own: np.ndarray, prior: Prior, evidence: Evidence,
                  run_to_run: bool, cards: Cards, trial_var: np.ndarray | float = 0.0,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Between-run variance: the test's own recorded runs (their scatter within each card), moderated towards
    its set, and that towards the prior (with `prior.at_least_trials`, at least `trial_var`, the variance of
    one trial). Returns the variance, its degrees of freedom, the part of it the
    test's own runs gave and that part's degrees of freedom, and where it came from. (The evidence's sums
    may be arrays, one set per replicate, for simulation.)"""
    replicates, runs = base_medians.shape
    if not run_to_run:
        return np.zeros(replicates), np.full(replicates, np.inf), np.zeros(replicates), np.zeros(replicates), "none"
    prior_var = math.log1p(prior.run) ** 2
    if prior.at_least_trials:
        prior_var = np.maximum(prior_var, trial_var)
    pooled_df = PRIOR_WEIGHT + np.asarray(evidence.run_df, dtype=float)
    pooled = np.maximum(0.0, (PRIOR_WEIGHT * prior_var + evidence.run_sum) / pooled_df)
    weight = np.minimum(pooled_df, POOLED_WEIGHT_CAP)
    groups = cards.groups()
    within_df = runs - len(groups)
    if within_df < 1:
        source = "pooled" if np.any(evidence.run_df) else "prior"
        return (np.broadcast_to(pooled, (replicates,)).astype(float),
                np.broadcast_to(weight, (replicates,)).astype(float), np.zeros(replicates), np.zeros(replicates),
                source)
    # The runs' scatter within their cards S^2 less what their trials explain, weighed as m = K - G runs'
    # worth (G cards) against the set's estimate P, which counts as at most w degrees of freedom however many
    # tests gave it (other tests may move otherwise than this one). Degrees of freedom by Satterthwaite, each
    # estimate's variance taken at the value the blend V gives it: Var(P) ~ 2 V^2 / w and Var(S^2) ~
    # 2 (V + trials' part)^2 / m. With quiet trials that is w + m, the conjugate prior's posterior; where
    # trial noise makes most of the scatter, fewer. Taken at the observed P and S^2 instead, a scatter large
    # by chance would cut them (benchmarks/README.md section 5).
    scatter = sum(np.sum((base_medians[:, g] - base_medians[:, g].mean(axis=1, keepdims=True)) ** 2, axis=1)
                  for g in groups) / within_df
    # what the trials put into that scatter: each card's runs' own part, as many times as the card adds
    # degrees of freedom (a card's single run adds none)
    trials_part = sum((len(g) - 1) * own[:, g].mean(axis=1) for g in groups) / within_df
    excess = scatter - trials_part
    variance = np.maximum(0.0, (weight * pooled + within_df * excess) / (weight + within_df))
    spread = (weight * variance**2 + within_df * (variance + trials_part) ** 2) / (weight + within_df) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(spread > 0, variance**2 / np.where(spread > 0, spread, 1.0), np.inf)
        share = np.clip(np.where(scatter > 0, excess / np.where(scatter > 0, scatter, 1.0), 0.0), 0.0, 1.0)
    from_runs = np.maximum(0.0, within_df * excess / (weight + within_df))  # the part the test's runs gave
    return variance, df, from_runs, within_df * share**2, "recorded runs"


def _card_variance(prior: Prior, evidence: Evidence, cards: Cards) -> tuple[float, float]:
    """The card level's part of the variance of d (its level x `Cards.weight`), and its degrees of freedom."""
    weight = cards.weight()
    if not weight:
        return 0.0, 0.0
    df = PRIOR_WEIGHT + evidence.card_df
    variance = max(0.0, (PRIOR_WEIGHT * math.log1p(prior.card) ** 2 + evidence.card_sum) / df)
    return variance * weight, float(df)


def compare_arrays(base_medians: np.ndarray, base_trials: Sequence[int], base_spreads: np.ndarray,
                   current_median: np.ndarray, current_trials: int, current_spread: np.ndarray, *,
                   tolerance: float, confidence: float = DEFAULT_CONFIDENCE, prior: Prior = DEFAULT_PRIOR,
                   evidence: Evidence = NO_EVIDENCE, cards: Cards | None = None,
                   run_to_run: bool = True) -> Comparison:
    """The rule for R replicates: log medians (R, K) and spreads (R, K) of K recorded runs, and this run's
    log median and spread (R,). `cards`: which card each recorded run came from, and this run's (None:
    every run on this run's card)."""
    check_settings(tolerance, confidence)
    base_medians, base_spreads = np.atleast_2d(base_medians), np.atleast_2d(base_spreads)
    runs = base_medians.shape[1]
    cards = cards or Cards.one(runs)
    trials = np.asarray(base_trials, dtype=float)
    trial_df = int(trials.sum() - runs + current_trials - 1)
    pooled = ((trials - 1) * base_spreads**2).sum(axis=1) + (current_trials - 1) * current_spread**2
    trial_var = pooled / trial_df if trial_df else np.zeros_like(current_spread)
    # The medians' trial variance over what means of as many trials would have (1 at one or two trials a run)
    of_medians = median_cost(current_trials) / current_trials + sum(median_cost(int(n)) / n for n in trials) / runs**2
    of_means = 1 / current_trials + float((1 / trials).sum()) / runs**2
    median_df = median_trial_df(trial_df, round(of_medians / of_means, 9), confidence)
    own = np.array([median_cost(int(n)) / n for n in trials]) * trial_var[:, None]
    current_own = median_cost(current_trials) / current_trials * trial_var
    if len(cards.runs) != runs:
        raise ValueError(f"cards name {len(cards.runs)} runs, the baseline has {runs}")
    run_var, run_df, own_run, own_df, source = _run_variance(base_medians, own, prior, evidence, run_to_run, cards,
                                                             trial_var)
    card_var, card_df = _card_variance(prior, evidence, cards)
    between = run_var * (1 + 1 / runs)
    within = current_own + own.sum(axis=1) / runs**2
    variance = between + within + card_var
    df = _satterthwaite([(between, run_df), (within, median_df), (np.full_like(variance, card_var), card_df)])
    d = current_median - base_medians.mean(axis=1)
    se = np.sqrt(variance)
    band = math.log1p(tolerance)
    q, low, high, p_value, verdict = _judge(d, se, df, band, confidence)
    own_between = own_run * (1 + 1 / runs)
    detectable = _detectable(band, q, variance, within, trial_df, own_between, own_df, between - own_between)
    return Comparison(d, se, df, low, high, p_value, verdict, detectable, q * se > band, np.sqrt(trial_var),
                      trial_df, np.sqrt(run_var), run_df, source, math.sqrt(card_var), card_df)


def _judge(d: np.ndarray, se: np.ndarray, df: np.ndarray, band: float, confidence: float) -> tuple:
    """The interval, p-value and verdict (index into VERDICTS) of log ratios `d` with standard errors `se`."""
    alpha = 1 - confidence
    q = stdtrit(df, 1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = np.where(se > 0, 2 * stdtr(df, -np.abs(d) / np.where(se > 0, se, 1.0)),
                           np.where(d != 0, 0.0, 1.0))
    low, high = d - q * se, d + q * se
    significant = p_value < alpha
    verdict = np.full(d.shape, VERDICTS.index(Verdict.INCONCLUSIVE))
    verdict[significant & (d > band)] = VERDICTS.index(Verdict.REGRESSED)
    verdict[significant & (d < -band)] = VERDICTS.index(Verdict.IMPROVED)
    verdict[(low >= -band) & (high <= band)] = VERDICTS.index(Verdict.UNCHANGED)
    return q, low, high, p_value, verdict


def _detectable(band: float, q: np.ndarray, variance: np.ndarray, within: np.ndarray, trial_df: int,
                own_between: np.ndarray, own_df: np.ndarray, assumed_between: np.ndarray) -> np.ndarray:
    """The rise caught 80% of the time: it must clear the threshold max(band, q * se) in 80% of runs.

    What moves a run against that threshold: the scatter of d that this test's data measured (its trials,
    and its own recorded runs' part of the run-to-run estimate); where q * se is the threshold, the scatter
    of se itself, estimated from those data (Var(se) ~ V_data^2 / (2 df V)); and run-to-run scatter that is
    only assumed (the prior, or other tests of the set), counted at half its variance: the rise reported
    then holds within 20% whether the runs are as steady as trials alone or move twice as far as assumed
    (benchmarks/detection.py).
    """
    data = within + own_between
    df = _satterthwaite([(within, trial_df), (own_between, own_df)])
    se = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        threshold_var = np.where((q * se > band) & (variance > 0), q**2 * data**2 / (2 * df * variance), 0.0)
    margin = ndtri(DETECTION_POWER) * np.sqrt(data + assumed_between / 2 + threshold_var)
    with np.errstate(over="ignore"):  # a few wild trials: no rise would be caught, inf
        return np.expm1(np.maximum(band, q * se) + margin)


# --- one run against its baseline ------------------------------------------------------------------------


def other_cards(baseline: Sequence[Run] | None, current: Run) -> set[frozenset[str]]:
    """The cards (GPU sets) a baseline's runs came from, when this run is on none of them; else empty.

    Runs that do not name their GPUs (older entries, the CPU) are never on another card.
    """
    cards = {run.gpus for run in baseline or () if run.gpus}
    return cards if current.gpus and current.gpus not in cards else set()


def compare(baseline: Sequence[Run] | None, current: Run, tolerance: float, *,
            confidence: float = DEFAULT_CONFIDENCE, prior: Prior = DEFAULT_PRIOR, evidence: Evidence = NO_EVIDENCE,
            run_to_run: bool = True, against: str | None = None) -> Decision:
    """The verdict of this run against the runs recorded for its baseline (none: `new`); `against` names
    the baseline in the reason (default: its recorded runs)."""
    check_settings(tolerance, confidence)
    baseline = list(baseline or ())
    scaled = per_card_scale([*baseline, current]) if baseline else None
    adjustment = None
    if scaled:  # this card's reference over the baseline runs' cards' (geometric mean)
        scales = [math.log(run.median / by.median) for run, by in zip([*baseline, current], scaled, strict=True)]
        adjustment = math.exp(scales[-1] - float(np.mean(scales[:-1])))
        *baseline, current = scaled
        evidence = evidence.scaled()
    reference = baseline or [current]  # with no baseline: what a baseline like this run could detect
    found = compare_arrays(
        np.log([[run.median for run in reference]]), [run.trials for run in reference],
        np.array([[run.spread for run in reference]]), np.log([current.median]), current.trials,
        np.array([current.spread]), tolerance=tolerance, confidence=confidence, prior=prior,
        evidence=evidence, cards=Cards.of(baseline, current) if baseline else None, run_to_run=run_to_run,
    )
    noise = Noise(float(np.expm1(found.trial[0])), found.trial_df, float(np.expm1(found.run[0])),
                  float(found.run_df[0]), found.run_source, math.expm1(found.card), found.card_df)
    detectable, too_noisy = float(found.detectable[0]), bool(found.too_noisy[0])
    if not baseline:
        return Decision(Verdict.NEW, None, None, None, None, None, False, detectable, too_noisy, tolerance, confidence,
                        0, current.trials, 0, float(found.df[0]), noise,
                        _new_reason(current, detectable, noise))
    d, low, high, p = float(found.d[0]), float(found.low[0]), float(found.high[0]), float(found.p_value[0])
    verdict = VERDICTS[int(found.verdict[0])]
    significant = p < 1 - confidence
    against = against or f"against {counted(len(baseline), 'recorded run')}"
    if adjustment is not None:
        against += f", per unit of each card's reference kernels (this card's {_percent(adjustment - 1)} on theirs)"
    reason = _reason(verdict, _ratio(d) - 1, (_ratio(low), _ratio(high)), p, confidence, significant,
                     tolerance, detectable, against)
    return Decision(verdict, _ratio(d), _ratio(d) - 1, _ratio(low), _ratio(high), p, significant,
                    detectable, too_noisy, tolerance, confidence, sum(run.trials for run in baseline),
                    current.trials, len(baseline), float(found.df[0]), noise, reason, adjustment)


def compare_paired(reference: Sequence[float], current: Sequence[float], tolerance: float, *,
                   confidence: float = DEFAULT_CONFIDENCE) -> Decision:
    """Trials taken turn about, the i-th of each side one pair (A/B): the mean log ratio within pairs.

    A drift of the machine moves both windows of a pair alike and drops out of their ratio, so the interval
    is the pairs' own scatter, Student's t with n - 1 degrees of freedom; the verdict words and the band are
    those of `compare`. Both sides need the same number of trials, at least two.
    """
    check_settings(tolerance, confidence)
    a, b = validated(reference, "reference"), validated(current, "current")
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"pairs need as many trials on each side, at least 2: got {len(a)} and {len(b)}")
    pairs = np.log(b) - np.log(a)
    n = len(pairs)
    d, spread = np.array([pairs.mean()]), float(pairs.std(ddof=1))
    se, df, band = np.array([spread / math.sqrt(n)]), np.array([n - 1.0]), math.log1p(tolerance)
    q, low, high, p_value, verdict = _judge(d, se, df, band, confidence)
    variance = se**2
    detectable = float(_detectable(band, q, variance, variance, n - 1, np.zeros(1), np.zeros(1), np.zeros(1))[0])
    # Each pair's ratio carries two windows' scatter: one window's is that over the square root of two.
    noise = Noise(math.expm1(spread / math.sqrt(2)), n - 1, 0.0, 0.0, "none")
    delta, low_ratio, high_ratio, p = _ratio(float(d[0])) - 1, _ratio(float(low[0])), _ratio(float(high[0])), float(p_value[0])
    verdict_word = VERDICTS[int(verdict[0])]
    significant = p < 1 - confidence
    reason = _reason(verdict_word, delta, (low_ratio, high_ratio), p, confidence, significant, tolerance,
                     detectable, f"{n} pairs of windows, turn about")
    return Decision(verdict_word, delta + 1, delta, low_ratio, high_ratio, p, significant, detectable,
                    bool(q[0] * se[0] > band), tolerance, confidence, n, n, 1, float(df[0]), noise, reason,
                    extras={"pairs": n})


def should_stop(decision_at: Callable[[Sequence[float], float], Decision], samples: Sequence[float], *, min_trials: int, max_trials: int,
                confidence: float) -> bool:
    """Whether adaptive trials can stop after these samples; `decision_at(samples, confidence)` judges them.

    Before `min_trials` no, at `max_trials` yes. In between: yes once the interval lies inside the band (no
    false alarm can come of stopping there), or once a regression or improvement is shown at a stricter
    level: half of 1 - confidence spread over the looks (Bonferroni), so looking after every trial adds at
    most half the level to the last look's false alarms.
    """
    if len(samples) < min_trials:
        return False
    if len(samples) >= max_trials:
        return True
    decision = decision_at(samples, confidence)
    if decision.verdict in (Verdict.UNCHANGED, Verdict.NEW):
        return decision.verdict == Verdict.UNCHANGED or not decision.too_noisy
    if decision.verdict in (Verdict.REGRESSED, Verdict.IMPROVED):
        looks = max_trials - min_trials + 1
        strict = decision_at(samples, 1 - (1 - confidence) / (2 * looks))
        return strict.verdict == decision.verdict
    return False


# --- summaries, checks and wording ---------------------------------------------------------------------


def summarize(samples: Sequence[float]) -> SampleSummary:
    """Median, scaled MAD, robust CV and outlier marks of positive finite samples."""
    values = validated(samples, "samples")
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


def validated(samples: Sequence[float], what: str) -> np.ndarray:
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


def check_settings(tolerance: float, confidence: float) -> None:
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance)
            or tolerance < 0):
        raise ValueError(f"tolerance must be a finite fraction >= 0 (0.05 means 5%), got {tolerance!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number strictly between 0 and 1 (e.g. 0.99), got {confidence!r}")


def _ratio(log_ratio: float) -> float:
    """exp, with inf where a few trials of wild samples give an interval beyond any float."""
    return math.exp(log_ratio) if log_ratio < 709 else math.inf


def _json_number(value):
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _from_json_number(value):
    return float(value) if value in ("inf", "-inf") else value


def _percent(value: float | None, *, signed: bool = True) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _detects(detectable: float) -> str:
    return "no change at all" if math.isinf(detectable) else f"a rise of {detectable:.1%} or more"


def _new_reason(current: Run, detectable: float, noise: Noise) -> str:
    return (f"no baseline: median {current.median:.4g} J/token over {current.trials} "
            f"trial{'s' if current.trials != 1 else ''} (spread {noise.trial:.1%}); a baseline of one run "
            f"like it would catch {_detects(detectable)} 80% of the time")


def _reason(verdict: str, delta: float, ci: tuple[float, float], p_value: float, confidence: float,
            significant: bool, tolerance: float, detectable: float, against: str) -> str:
    level = f"{confidence:.0%}" if round(confidence * 100, 6).is_integer() else f"{confidence:.2%}"
    ci_text = f"{level} CI {_percent(ci[0] - 1)} to {_percent(ci[1] - 1)}"
    test_text = f"p={p_value:.2g}"
    band = f"{1 / (1 + tolerance) - 1:+.2%}..+{tolerance * 100:.3g}%"
    if verdict == Verdict.REGRESSED:
        return f"energy per token rose {delta:.1%} ({ci_text}, {test_text}, {against}), beyond the {band} tolerance"
    if verdict == Verdict.IMPROVED:
        return f"energy per token fell {-delta:.1%} ({ci_text}, {test_text}, {against}), beyond the {band} tolerance"
    if verdict == Verdict.UNCHANGED:
        noted = f"; the change is significant ({test_text}) but small" if significant else ""
        return f"{_percent(delta)}: its {ci_text} lies inside the {band} tolerance ({against}){noted}"
    return (f"{_percent(delta)}: its {ci_text} is not inside the {band} tolerance, and "
            + ("the estimate is within it" if significant else f"not significant ({test_text})")
            + f" ({against}); these samples would catch {_detects(detectable)} 80% of the time")
