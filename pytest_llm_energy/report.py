"""Reports for people: the terminal table, a regression's failure message, and the JSON / Markdown files."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tabulate import tabulate

from .baseline import clean_for_json

REPORT_SCHEMA = "pytest-llm-energy/report"
REPORT_SCHEMA_VERSION = 1

COLUMNS = ("test", "J/token", "baseline", "delta", "CI", "verdict", "notes")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def joules(value) -> str:
    return f"{value:.4g}" if _finite(value) else "-"


def percent(value) -> str:
    return f"{value:+.1%}" if _finite(value) else "-"


def interval(record: dict) -> str:
    low, high = record.get("ci_low"), record.get("ci_high")
    if not (_finite(low) and _finite(high)):
        return "-"
    return f"{low - 1:+.1%}..{high - 1:+.1%}"


def notes(record: dict) -> str:
    parts = []
    if record.get("refused"):
        parts.append("not compared: hardware changed")
    detectable = record.get("detectable")
    if record.get("too_noisy"):
        parts.append("too noisy: detects " + (f">={detectable:.0%}" if _finite(detectable) else "nothing"))
    if record.get("verdict") not in ("unchanged", "new"):
        parts.extend(f"{c['component']} {c['baseline']}->{c['current']}" for c in record.get("stack_changes", []))
    parts.extend(record.get("flags", []))
    if record.get("estimated"):
        parts.append("estimated")
    if record.get("outcome") not in (None, "passed") and record.get("verdict") != "regressed":
        parts.append(str(record["outcome"]))
    return "; ".join(parts)


def rows(records: Iterable[dict]) -> list[list[str]]:
    return [
        [r["nodeid"], joules(r.get("joules_per_token")), joules(r.get("baseline_joules_per_token")),
         percent(r.get("delta")), interval(r), r.get("verdict", "-"), notes(r)]
        for r in records
    ]


def terminal_table(records: Sequence[dict], tablefmt: str = "simple") -> str:
    return tabulate(rows(records), headers=COLUMNS, tablefmt=tablefmt, disable_numparse=True)


def display_path(path) -> str:
    """A path as a reader of the report knows it: relative to the current folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except (OSError, ValueError):
        return str(path)


def header_line(document: dict) -> str:
    meter = document["meter"] + (" (ESTIMATED)" if document["estimated"] else " (measured)")
    folder = document.get("baselines_folder") or document["baselines"]
    return f"J per output token on {document['gpu']}, meter {meter}, baselines {display_path(folder)}"


def verdict_counts(records: Iterable[dict]) -> str:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.get("verdict", "?")] = counts.get(record.get("verdict", "?"), 0) + 1
    return ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))


def failure_message(record: dict, *, strict_reason: str | None = None) -> str:
    """What a failing test prints: the numbers that failed it, in a small table."""
    title = strict_reason or (
        f"energy regressed: J per output token {percent(record.get('delta'))} against the baseline "
        f"(tolerance {record['tolerance']:.0%})"
    )
    table = [
        ["current J/token (median)", joules(record.get("joules_per_token"))],
        ["baseline J/token (median)", joules(record.get("baseline_joules_per_token"))],
        ["delta", percent(record.get("delta"))],
        [f"{record['confidence']:.0%} CI of the ratio", interval(record)],
        ["p-value (larger of rank and Welch)", f"{record['p_value']:.2g}" if _finite(record.get("p_value")) else "-"],
        ["tolerance", f"{record['tolerance']:.0%}"],
        ["run-to-run noise assumed", f"{record.get('run_noise') or 0:.0%}"
         + (f", and {record['card_noise']:.0%} card-to-card (baseline from other GPUs)"
            if record.get("card_noise") else "")],
        ["detectable change", f"{record['detectable']:.1%}" if _finite(record.get("detectable")) else "none"],
        ["samples (current / baseline)",
         f"{len(record.get('samples', []))} / {record.get('decision', {}).get('n_baseline', '-')}"],
        ["meter", record["meter"] + (" (estimated)" if record.get("estimated") else "")],
    ]
    changes = record.get("stack_changes") or []
    if changes:
        table.append(["stack changes", "; ".join(f"{c['component']} {c['baseline']} -> {c['current']}"
                                                  for c in changes)])
    return f"{title}\n{record.get('reason', '')}\n" + tabulate(table, tablefmt="simple", disable_numparse=True)


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(clean_json(document), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temp, path)


def clean_json(document):
    """A report as strict JSON with full precision (baselines round; reports do not)."""
    return clean_for_json(document, round_floats=False)


# Markdown: GitHub renders it in pull requests and job summaries. Longer tables fold into <details> (the
# regressions stay in the open), so a comment or summary with hundreds of tests stays readable.
DETAILS_AFTER_ROWS = 15
ATTENTION = ("regressed", "inconclusive")  # verdicts a reviewer must see without unfolding anything


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


def markdown(document: dict) -> str:
    """The session report for a pull request or GITHUB_STEP_SUMMARY: header, counts, table, what was written."""
    records = document["results"]
    lines = ["## Energy report", "", header_line(document) + "."]
    if document.get("meter_description"):
        lines += ["", f"Meter: {markdown_cell(document['meter_description'])}."]
    if document["estimated"]:
        lines += ["", "> **ESTIMATED**: no energy counter was read; these numbers are an estimate for trying "
                      "the plugin out, not a measurement to guard energy with."]
    workers = document.get("workers") or {}
    if workers:
        lines += ["", "xdist workers, one GPU each: "
                  + ", ".join(f"{worker} `{uuid}`" for worker, uuid in sorted(workers.items())) + "."]
    lines += ["", f"{len(records)} tests: {verdict_counts(records) or 'none measured'}.", ""]
    if records:
        lines += markdown_results(COLUMNS, rows(records), what="results",
                                  attention=[r.get("verdict") in ATTENTION for r in records])
    for written in document.get("written") or []:
        lines.append(f"Baselines written: `{display_path(written['path'])}` (+{len(written['added'])} new, "
                     f"{len(written['updated'])} updated).  ")
    if document.get("git_commit"):
        lines.append(f"Commit `{document['git_commit']}`.")
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["clean_for_json", "failure_message", "markdown", "terminal_table", "write_json"]
