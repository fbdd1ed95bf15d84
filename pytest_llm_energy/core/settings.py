"""How a setting is declared, read and checked, and the settings of the decision rule.

An `Option` is one `--energy-*` option with its ini key, default and help. The plugin's table of options
(`plugin/config.py`) declares them all; `llm-energy diff` takes the rule's four (tolerance, confidence, run and
card noise) as they are declared here, so a value is checked and defaulted the same way in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .stats import DEFAULT_CARD_NOISE, DEFAULT_CONFIDENCE, DEFAULT_RUN_NOISE, Prior


def number(text, convert: Callable[[str], float], accept: Callable[[float], bool], unreadable: str,
           out_of_range: str | None = None):
    """A number from an option, ini value or marker keyword; `unreadable` / `out_of_range` say what was
    expected (one text serves both where one says it all)."""
    try:
        value = convert(str(text).strip())
    except ValueError:
        raise ValueError(f"expected {unreadable}, got {text!r}") from None
    try:
        acceptable = math.isfinite(value) and accept(value)
    except OverflowError:  # an integer of hundreds of digits
        acceptable = False
    if not acceptable:
        raise ValueError(f"expected {out_of_range or unreadable}, got {text!r}")
    return value


def positive_int(text) -> int:
    return number(text, int, lambda v: v >= 1, "a whole number >= 1")


def non_negative_int(text) -> int:
    return number(text, int, lambda v: v >= 0, "a whole number >= 0")


def fraction(text) -> float:
    return number(text, float, lambda v: 0 < v < 1, "a fraction such as 0.05 (5%)",
                  "a fraction between 0 and 1 such as 0.05 (5%)")


def confidence_level(text) -> float:
    return number(text, float, lambda v: 0.5 <= v < 1, "a confidence such as 0.99 (99%)",
                  "a confidence between 0.5 and 1 such as 0.99 (99%)")


def noise_fraction(text) -> float:
    return number(text, float, lambda v: 0 <= v < 1, "a fraction such as 0.05 (5%)",
                  "a fraction in [0, 1) such as 0.05 (5%)")


def positive_float(text) -> float:
    return number(text, float, lambda v: v > 0, "a positive number")


def boolean(text) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def non_empty_text(text) -> str:
    value = str(text).strip()
    if not value:
        raise ValueError("expected a non-empty value")
    return value


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; the option is --energy-<name with dashes>, the ini key energy_<name>
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag: bool = False
    repeat: bool = False  # given any number of times (ini: separated by whitespace); a tuple of values

    @property
    def cli(self) -> str:
        return "--energy-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "energy_" + self.name

    @property
    def cli_help(self) -> str:
        """The help as argparse wants it: argparse %-formats option help (pytest's ini help is shown as is)."""
        return self.help.replace("%", "%%")


# The settings of the decision rule, shared by the plugin's options and `llm-energy diff`.
TOLERANCE = Option("tolerance", fraction, 0.05, "allowed relative change of J per output token, as a fraction: "
                   "0.05 is 5% (default: 0.05)")
CONFIDENCE = Option("confidence", confidence_level, DEFAULT_CONFIDENCE,
                    f"confidence of the decision rule (default: {DEFAULT_CONFIDENCE})")
RUN_NOISE = Option("run_noise", noise_fraction, None, "run-to-run spread of a test's median (a "
                   "fraction) that the verdict assumes until recorded runs, of the test and of its baselines set, "
                   f"show their own (default: {DEFAULT_RUN_NOISE}, and on the CPU at least the trials' own spread)")
CARD_NOISE = Option("card_noise", noise_fraction, DEFAULT_CARD_NOISE, "spread of a test's median from one GPU of a "
                    "model to another (a fraction), assumed until baselines recorded on several cards show their "
                    f"own; applied when this run's GPUs are none of the baseline's (default: {DEFAULT_CARD_NOISE}; "
                    "0 treats every card of a model as one)")
RULE_OPTIONS = {option.name: option for option in (TOLERANCE, CONFIDENCE, RUN_NOISE, CARD_NOISE)}


def stated_prior(run_noise: float | None, card_noise: float) -> Prior:
    """The rule's prior from the run-noise setting (None: not given, the default) and the card noise."""
    if run_noise is None:
        return Prior(card=card_noise)
    return Prior(run=run_noise, card=card_noise, stated=True)
