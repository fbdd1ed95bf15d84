"""Cells and notes that every table shares (the run's, and `llm-energy`'s): numbers, counts, Markdown.

A leaf: it formats values and knows no result, report or command, so a number reads the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tabulate import tabulate

from .stats import Verdict
from .words import counted


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def joules(value) -> str:
    return f"{value:.4g}" if finite(value) else "-"


def percent(value) -> str:
    return f"{value:+.1%}" if finite(value) else "-"


def interval(low, high) -> str:
    """The interval of a ratio as changes: '-1.2%..+3.4%'."""
    if not (finite(low) and finite(high)):
        return "-"
    return f"{low - 1:+.1%}..{high - 1:+.1%}"


def noise_note(detectable) -> str:
    """What a result too noisy to guard its tolerance says about itself."""
    return "too noisy: detects " + (f">={detectable:.0%}" if finite(detectable) else "nothing")


def card_adjusted_note(adjustment: float) -> str:
    """What a comparison of runs from several cards says it compared (stats.per_card_scale)."""
    return (f"card-adjusted: J/token per unit of each card's reference kernels, this card's {adjustment - 1:+.1%} "
            "on the baseline runs'; delta and CI are of that, not of the J/token columns")


def count_text(counts: Mapping[str, int]) -> str:
    """'2 regressed, 1 improved': counts in the order given."""
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n) or "no entries"


def tests_text(count: int) -> str:
    return counted(count, "test")


def runs_text(runs) -> str:
    return counted(runs, "recorded run") if isinstance(runs, int) and runs else "no runs"


# Markdown: GitHub renders it in pull requests and job summaries. Longer tables fold into <details> (the
# regressions stay in the open), so a comment or summary with hundreds of tests stays readable.
DETAILS_AFTER_ROWS = 15


ATTENTION = (Verdict.REGRESSED, Verdict.INCONCLUSIVE)  # verdicts a reviewer must see without unfolding anything


def markdown_cell(text) -> str:
    """One table cell: a pipe would end the cell and `<x>` would vanish as an HTML tag (test ids have both)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], table_rows: Sequence[Sequence]) -> str:
    return tabulate([[markdown_cell(cell) for cell in row] for row in table_rows],
                    headers=[markdown_cell(h) for h in headers], tablefmt="github", disable_numparse=True)


def markdown_results(headers: Sequence[str], table_rows: Sequence[Sequence], *, attention: Sequence[bool],
                     what: str) -> list[str]:
    """A results table; when long, the rows that need attention first and the whole table folded below."""
    if len(table_rows) <= DETAILS_AFTER_ROWS:
        return [markdown_table(headers, table_rows), ""]
    lines = []
    flagged = [row for row, flag in zip(table_rows, attention, strict=True) if flag]
    if flagged:
        lines += [markdown_table(headers, flagged), ""]
    return lines + [f"<details><summary>All {len(table_rows)} {what}</summary>", "",
                    markdown_table(headers, table_rows), "", "</details>", ""]
