"""Settings: the `--energy-*` options (each also an ini key), the marker's keywords, and their checks.

One table (OPTIONS) declares every option once; the plugin registers it, and a test's settings are
the marker's keywords over the options over the ini over the defaults. Every bad value becomes an
EnergyUsageError naming the option or keyword and what it accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.baseline import DEFAULT_HISTORY
from ..core.errors import EnergyUsageError
from ..core.gpus import GPU_AUTO
from ..core.models import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL
from ..core.settings import (
    CARD_NOISE,
    CONFIDENCE,
    RUN_NOISE,
    TOLERANCE,
    Option,
    boolean,
    non_empty_text,
    non_negative_int,
    positive_float,
    positive_int,
    stated_prior,
)
from ..core.stats import Prior
from .backends import BACKENDS, BackendOptions


def _gpu_key(text) -> str:
    value = str(text).strip().lower()
    if not value or any(ch in value for ch in "/\\") or value.startswith("."):
        raise ValueError(f"expected a GPU key such as h100, auto or cpu, got {text!r}")
    return value


def _backend(text) -> str:
    value = str(text).strip()
    if value not in BACKENDS:
        raise ValueError(f"expected one of {', '.join(BACKENDS)}, got {text!r}")
    return value


def _key_value(text) -> tuple[str, str]:
    key, equals, value = str(text).partition("=")
    if not equals or not key.strip() or key.strip() != key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _backend_option(text) -> tuple[str, Any]:
    """KEY=VALUE of a backend option (a keyword of energy.run), the value parsed as the option's type."""
    key, value = _key_value(text)
    parser = _BACKEND_OPTION_KEYWORDS.get(key)
    if parser is None:
        raise ValueError(f"unknown backend option {key!r}; known: {', '.join(sorted(_BACKEND_OPTION_KEYWORDS))}")
    try:
        return key, parser(value)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None


OPTIONS: tuple[Option, ...] = (
    Option("gpu", _gpu_key, GPU_AUTO, "which baseline set and meter: a GPU key (h100, h200, a100, ...) "
           "that must match the visible GPUs, 'auto' to derive it, or 'cpu' (default: auto)"),
    Option("backend", _backend, "hf", "backend for energy.run: hf, vllm or vllm-server (default: hf)"),
    Option("model", non_empty_text, None, "model for energy.run: a packaged config (tiny-llama, llama-3.2-1b, "
           "llama-3.1-8b, qwen2.5-0.5b; random weights), a hub id or a local path "
           f"(default: {DEFAULT_CPU_MODEL} on cpu, {DEFAULT_GPU_MODEL} on a GPU)"),
    Option("baselines", non_empty_text, "baselines", "baselines folder, relative to the rootdir (default: baselines)"),
    Option("update_baselines", boolean, False, "record this run's results as the new baselines", flag=True),
    Option("prune_baselines", boolean, False, "with --energy-update-baselines: also remove the entries of tests "
           "that are gone from the collected test files (a run of whole files only)", flag=True),
    TOLERANCE,
    Option("trials", positive_int, 5, "measured trials per test (default: 5)"),
    Option("max_trials", positive_int, None, "adaptive trials: keep measuring up to this many until "
           "the result decides against the tolerance (default: off, = --energy-trials)"),
    Option("time_budget", positive_float, None, "adaptive trials: stop adding trials to a test after "
           "this many seconds (default: none)"),
    Option("warmup", non_negative_int, 1, "unmeasured warm-up runs per workload shape (default: 1)"),
    CONFIDENCE,
    RUN_NOISE,
    CARD_NOISE,
    Option("history", positive_int, DEFAULT_HISTORY, "recorded runs a baseline entry keeps; "
           f"--energy-update-baselines adds this run to them (default: {DEFAULT_HISTORY})"),
    Option("min_window", positive_float, None, "shortest measured window in seconds; short work is "
           "repeated inside one window (default: the meter's, 1 s on NVML)"),
    Option("cooldown_temp", positive_float, 85.0, "before a trial, wait (up to 60 s) while a GPU is "
           "hotter than this many degrees C (default: 85)"),
    Option("json", non_empty_text, None, "write the JSON report to this path"),
    Option("md", non_empty_text, None, "write a Markdown report to this path"),
    Option("plots", non_empty_text, None, "write PNG plots to this folder: J/token per bin, baseline vs current (needs matplotlib)"),
    Option("strict", boolean, False, "fail tests whose verdict is new or inconclusive too", flag=True),
    Option("allow_hardware_change", boolean, False,
           "compare with baselines recorded on another GPU model (refused by default)", flag=True),
    Option("ab", non_empty_text, None, "A/B: run the energy tests in two arms turn about on this machine's GPU and judge "
           "B against A: arm A in this Python interpreter (another environment's bin/python; it needs "
           "pytest-llm-energy and pytest-xdist), arm B in the current one (default: off)"),
    Option("ab_env", _key_value, (), "A/B: an environment variable of arm A only, KEY=VALUE (repeatable)",
           repeat=True),
    Option("ab_option", _backend_option, (), "A/B: a backend option of arm A's energy.run, KEY=VALUE such as "
           "compile=true (repeatable)", repeat=True),
    Option("no_reference", boolean, False, "skip the reference kernels a GPU run measures before its tests "
           "(a bf16 matmul and a copy, about 2 s each, kept with each recorded run)", flag=True),
    Option("cpu_watts_per_core", positive_float, 10.0,
           "watts per busy core for the CPU-time estimate where RAPL is unreadable (default: 10)"),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


class Options(Mapping):
    """The options in force for a run, read once: each by its name, as `options.trials` or `options["trials"]`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Options({self._values!r})"


def read_options(get_option: Callable[[str], Any], get_ini: Callable[[str], Any]) -> Options:
    """Command line over ini over default; each value checked, errors naming where the value came from."""
    values = {}
    for option in OPTIONS:
        raw, source = get_option(option.name), option.cli
        if raw is None:
            raw, source = get_ini(option.ini), f"ini {option.ini}"
        if raw is None or raw == "" or raw == []:
            values[option.name] = option.default
            continue
        try:
            if option.repeat:
                items = raw.split() if isinstance(raw, str) else raw
                values[option.name] = tuple(option.parse(item) for item in items)
            else:
                values[option.name] = option.parse(raw)
        except ValueError as error:
            raise EnergyUsageError(f"{source}: {error}") from None
    if values["max_trials"] is not None and values["max_trials"] < values["trials"]:
        raise EnergyUsageError(
            f"--energy-max-trials ({values['max_trials']}) is below --energy-trials ({values['trials']})"
        )
    return Options(values)


# Marker keywords: name -> parser. Workload and backend keywords feed energy.run(); the backend ones are the
# fields of BackendOptions, checked by their type.
_PARSER_FOR_TYPE: dict[str, Callable[[Any], Any]] = {
    "str": non_empty_text, "bool": boolean, "int": positive_int, "int | None": positive_int, "float": positive_float,
}
_BACKEND_OPTION_KEYWORDS: dict[str, Callable[[Any], Any]] = {
    name: _PARSER_FOR_TYPE[kind] for name, kind in BackendOptions.field_types().items()
}
_WORKLOAD_KEYWORDS: dict[str, Callable[[Any], Any]] = {
    "input_tokens": positive_int, "output_tokens": positive_int, "batch_size": positive_int,
    "decoding": lambda v: v, "seed": non_negative_int,
}
_SETTING_KEYWORDS = ("tolerance", "trials", "max_trials", "time_budget", "warmup", "confidence", "run_noise",
                     "card_noise", "min_window", "strict", "model", "backend")
MARKER_KEYWORDS: dict[str, Callable[[Any], Any]] = {
    **{name: OPTIONS_BY_NAME[name].parse for name in _SETTING_KEYWORDS},
    **_WORKLOAD_KEYWORDS, **_BACKEND_OPTION_KEYWORDS,
}


def marker_help() -> str:
    """The `energy` marker's line in `pytest --markers`."""
    return ("energy(**settings): per-test energy settings: " + ", ".join(_SETTING_KEYWORDS)
            + "; the workload of energy.run(): " + ", ".join(_WORKLOAD_KEYWORDS)
            + "; backend options: " + ", ".join(_BACKEND_OPTION_KEYWORDS))


@dataclass(frozen=True)
class TestSettings:
    """What one test measures and how it is judged, after marker, options, ini and defaults."""

    tolerance: float
    trials: int
    max_trials: int
    time_budget: float | None
    warmup: int
    confidence: float
    run_noise: float | None  # None: not given (the default prior)
    card_noise: float
    strict: bool
    min_window: float | None  # the marker's; None: the meter's, which --energy-min-window sets
    model: str
    backend: str
    workload: Mapping[str, Any]  # marker keywords for energy.run(): input_tokens, output_tokens, ...
    backend_options: Mapping[str, Any]

    @property
    def prior(self) -> Prior:
        """What the verdict assumes of run-to-run and card-to-card spread before runs are recorded."""
        return stated_prior(self.run_noise, self.card_noise)

    @property
    def adaptive(self) -> bool:
        return self.max_trials > self.trials or self.time_budget is not None


def check_marker_keywords(where: str, kwargs: Mapping[str, Any], args: Iterable) -> dict[str, Any]:
    """Parse one `@pytest.mark.energy(...)`; unknown keywords and bad values name themselves."""
    if tuple(args):
        raise EnergyUsageError(f"{where}: @pytest.mark.energy takes keywords only, e.g. energy(trials=5)")
    parsed = {}
    for key, value in kwargs.items():
        parser = MARKER_KEYWORDS.get(key)
        if parser is None:
            raise EnergyUsageError(
                f"{where}: unknown keyword {key!r} in @pytest.mark.energy; known: "
                + ", ".join(sorted(MARKER_KEYWORDS))
            )
        try:
            parsed[key] = parser(value)
        except ValueError as error:
            raise EnergyUsageError(f"{where}: @pytest.mark.energy({key}=...): {error}") from None
    return parsed


def test_settings(options: Mapping[str, Any], marker_values: Mapping[str, Any], default_model: str) -> TestSettings:
    """Combine the session options with one test's marker keywords (already checked)."""
    merged = {**options, **marker_values}
    trials = merged["trials"]
    max_trials = marker_values.get("max_trials") or options["max_trials"] or trials
    return TestSettings(
        tolerance=merged["tolerance"], trials=trials, max_trials=max(max_trials, trials),
        time_budget=merged["time_budget"], warmup=merged["warmup"], confidence=merged["confidence"],
        run_noise=merged["run_noise"], card_noise=merged["card_noise"],
        strict=merged["strict"], min_window=marker_values.get("min_window"),
        model=merged.get("model") or default_model, backend=merged["backend"],
        workload={k: v for k, v in marker_values.items() if k in _WORKLOAD_KEYWORDS},
        backend_options={k: v for k, v in marker_values.items() if k in _BACKEND_OPTION_KEYWORDS},
    )
