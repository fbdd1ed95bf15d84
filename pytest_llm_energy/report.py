"""Reports for people: the terminal table, a regression's failure message, and the JSON / Markdown files."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from .baseline import WriteSummary
from .errors import EnergyError
from .files import atomic_write, display_path, dumps
from .host import SLOW as SLOW_HOST_READING
from .measurement import meter_label
from .result import PAIRED, TestResult
from .run_report import RunReport, results_by_test
from .stats import Noise, Verdict

if TYPE_CHECKING:
    from .session import EnergySession

COLUMNS = ("test", "J/token", "baseline", "delta", "CI", "verdict", "GPU busy, power", "notes")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def joules(value) -> str:
    return f"{value:.4g}" if _finite(value) else "-"


def percent(value) -> str:
    return f"{value:+.1%}" if _finite(value) else "-"


def interval(low, high) -> str:
    """The interval of a ratio as changes: '-1.2%..+3.4%'."""
    if not (_finite(low) and _finite(high)):
        return "-"
    return f"{low - 1:+.1%}..{high - 1:+.1%}"


def gpu_load(result: TestResult) -> str:
    """How GPU-bound the windows were: the share of time kernels ran, and average against capped power."""
    windows = result.windows
    busy, watts, limit = ((windows.busy_share, windows.average_watts, windows.power_limit_watts) if windows
                          else (None, None, None))
    parts = [f"{busy:.0%}" if _finite(busy) else "-"]
    if _finite(watts) and _finite(limit):
        parts.append(f"{watts:.0f}/{limit:.0f} W")
    elif _finite(watts) and not result.estimated:
        parts.append(f"{watts:.0f} W")
    return ", ".join(parts) if parts != ["-"] else "-"


def noise_note(detectable) -> str:
    """What a result too noisy to guard its tolerance says about itself."""
    return "too noisy: detects " + (f">={detectable:.0%}" if _finite(detectable) else "nothing")


def card_adjusted_note(adjustment: float) -> str:
    """What a comparison of runs from several cards says it compared (stats.per_card_scale)."""
    return (f"card-adjusted: J/token per unit of each card's reference kernels, this card's {adjustment - 1:+.1%} "
            "on the baseline runs'; delta and CI are of that, not of the J/token columns")


def notes(result: TestResult) -> str:
    judgement = result.judgement
    parts = []
    if judgement.refused:
        parts.append("not compared: " + (judgement.refused_note or "hardware changed"))
    if judgement.too_noisy:
        parts.append(noise_note(judgement.detectable))
    if judgement.verdict not in (Verdict.UNCHANGED, Verdict.NEW):
        parts.extend(f"{c.component} {c.baseline}->{c.current}" for c in judgement.stack_changes)
    parts.extend(result.flags)
    if result.estimated:
        parts.append("estimated")
    if result.outcome not in (None, "passed") and judgement.verdict != Verdict.REGRESSED:
        parts.append(str(result.outcome))
    return "; ".join(parts)


def rows(results: Iterable[TestResult]) -> list[list[str]]:
    return [
        [r.nodeid, joules(r.joules_per_token), joules(r.baseline_joules_per_token), percent(r.decision.delta),
         interval(r.decision.ci_low, r.decision.ci_high), str(r.verdict), gpu_load(r), notes(r)]
        for r in results
    ]


def terminal_table(results: Sequence[TestResult], tablefmt: str = "simple") -> str:
    return tabulate(rows(results), headers=COLUMNS, tablefmt=tablefmt, disable_numparse=True)


def describe_arm_a(arms: dict) -> str:
    """Arm A in a few words: its interpreter, then the environment and backend options only it has."""
    arm_a = arms["A"]
    settings = [f"{key}={value}" for key, value in {**arm_a["env"], **arm_a["options"]}.items()]
    return ", ".join([display_path(arm_a["python"]), *settings])


def ab_against(arms: dict) -> str:
    """What an A/B run compares, as its headers say it."""
    return f"A/B turn about, arm B (this interpreter) against arm A ({describe_arm_a(arms)})"


def header_line(report: RunReport) -> str:
    meter = meter_label(report.meter, report.estimated, loud=True)
    if report.mode == "ab":
        return f"J per output token on {report.gpu}, meter {meter}, {ab_against(report.arms)}; 'baseline' is arm A"
    folder = report.baselines_folder or report.baselines
    return f"J per output token on {report.gpu}, meter {meter}, baselines {display_path(folder)}"


def host_line(host: Mapping) -> str:
    """The host probe as a header line (host.py)."""
    text = f"Host: {host['cpus']} CPUs, a fixed Python loop {host['fastest_ms']:.3g} ms at best"
    if not host["slow"]:
        return text + f", no reading {SLOW_HOST_READING}x slower"
    text += f"; {host['slow']} of {host['readings']} readings {SLOW_HOST_READING}x slower or more"
    if host.get("throttled_ms"):
        return text + f", while the container's CPU quota held it {host['throttled_ms']:.0f} ms"
    return text + ": its CPUs are shared, and what waits on the host (bins under about 80% GPU busy) moves with them"


def reference_line(reference: Mapping) -> str:
    """The card's reference kernels as a header line (reference.py)."""
    return (f"Reference kernels on {reference.get('gpu') or 'this GPU'}: matmul "
            f"{reference['compute_joules_per_tflop']:.3g} J/TFLOP at {reference['compute_watts']:.0f} W, "
            f"copy {reference['memory_joules_per_gb']:.3g} J/GB at {reference['memory_watts']:.0f} W")


def count_text(counts: Mapping[str, int]) -> str:
    """'2 regressed, 1 improved': counts in the order given."""
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n) or "no entries"


def tests_text(count: int) -> str:
    return f"{count} test{'' if count == 1 else 's'}"


def verdict_counts(results: Iterable[TestResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[str(result.verdict)] = counts.get(str(result.verdict), 0) + 1
    return count_text(dict(sorted(counts.items()))) if counts else ""


def runs_text(runs) -> str:
    return f"{runs} recorded run{'s' if runs != 1 else ''}" if isinstance(runs, int) and runs else "no runs"


def noise_text(noise: Noise | None) -> str:
    """'trials 1.2%, runs 3.0% (prior), cards 5.0%': the spread the verdict used at each level."""
    if not noise:
        return "-"
    if noise.run_source == "none":  # A/B turn about: both arms share every drift of the run
        return f"trials {noise.trial:.1%}, runs: none (one run, turn about)"
    text = f"trials {noise.trial:.1%}, runs {noise.run:.1%} ({noise.run_source})"
    return text + (f", cards {noise.card:.1%}" if noise.card else "")


def written_counts(written: WriteSummary) -> str:
    """'+2 new, 3 updated (1 history restarted)': what an update did to one baseline file."""
    text = f"+{len(written.added)} new, {len(written.updated)} updated"
    restarted = len(written.restarted)
    removed = len(written.removed)
    return (text + (f" ({restarted} history restarted: stack, workload or energy changed)" if restarted else "")
            + (f", {removed} removed" if removed else ""))


def junit_properties(result: TestResult) -> list[tuple[str, object]]:
    """A result as JUnit XML properties; an A/B arm's half has no verdict of its own (the pair has)."""
    decision, arm = result.decision, result.arm.name if result.arm else None
    if result.is_arm_half:
        properties = {"joules_per_token": result.joules_per_token, "meter": result.meter, "arm": arm}
    else:
        properties = {
            "joules_per_token": result.joules_per_token, "baseline_joules_per_token": result.baseline_joules_per_token,
            "delta": decision.delta, "card_adjustment": decision.card_adjustment, "verdict": str(result.verdict),
            "ci_low": decision.ci_low, "ci_high": decision.ci_high, "detectable": result.judgement.detectable,
            "meter": result.meter, "arm": arm,
        }
    return [(f"energy_{key}", value) for key, value in properties.items() if value is not None]


def failure_message(result: TestResult, *, strict_reason: str | None = None, accept: str | None = None) -> str:
    """What a failing test prints: the numbers that failed it, in a small table, then how to accept them."""
    ab = result.arm is not None and result.arm.name == PAIRED
    decision, judgement = result.decision, result.judgement
    adjustment = decision.card_adjustment
    title = strict_reason or (
        f"energy regressed: J per output token{' per unit of the card reference' if adjustment else ''} "
        f"{percent(decision.delta)} against {'arm A' if ab else 'the baseline'} "
        f"(tolerance {decision.tolerance:.0%})"
    )
    table = [
        [f"{'arm B' if ab else 'current'} J/token (median)", joules(result.joules_per_token)],
        ["arm A J/token (median, turn about)" if ab else f"baseline J/token ({runs_text(decision.runs)})",
         joules(result.baseline_joules_per_token)],
        ["delta (B over A, pair by pair)" if decision.extras.get("pairs") else "delta", percent(decision.delta)],
        *([["card adjustment (this card's reference figure on the baseline runs')", percent(adjustment - 1)]]
          if adjustment else []),
        [f"{decision.confidence:.0%} CI of the ratio", interval(decision.ci_low, decision.ci_high)],
        ["p-value", f"{decision.p_value:.2g}" if _finite(decision.p_value) else "-"],
        ["tolerance", f"{decision.tolerance:.0%}"],
        ["noise (spread of each level)", noise_text(decision.noise)],
        ["rise caught 80% of the time", f"{judgement.detectable:.1%}" if _finite(judgement.detectable) else "none"],
        [f"trials ({'B / A' if ab else 'current / baseline'})",
         f"{len(result.samples)} / {decision.n_baseline if decision.n_baseline is not None else '-'}"],
        ["meter", meter_label(result.meter, result.estimated, say_measured=False)],
    ]
    if judgement.stack_changes:
        table.append(["stack changes", "; ".join(f"{c.component} {c.baseline} -> {c.current}"
                                                  for c in judgement.stack_changes)])
    text = f"{title}\n{decision.reason or ''}\n" + tabulate(table, tablefmt="simple", disable_numparse=True)
    return text + (f"\nif this change is intended, record it as the new baseline:\n  {accept}" if accept else "")


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


def markdown(report: RunReport) -> str:
    """The session report for a pull request or GITHUB_STEP_SUMMARY: header, counts, table, what was written."""
    results = report.results
    lines = ["## Energy report", "", header_line(report) + "."]
    if report.meter_description:
        lines += ["", f"Meter: {markdown_cell(report.meter_description)}."]
    for reference in report.references:
        lines += ["", reference_line(reference) + "."]
    if report.host:
        lines += ["", host_line(report.host) + "."]
    if report.estimated:
        lines += ["", "> **ESTIMATED**: no energy counter was read; these numbers are an estimate for trying "
                      "the plugin out, not a measurement to guard energy with."]
    if report.workers:
        lines += ["", "xdist workers, one GPU each: "
                  + ", ".join(f"{worker} `{uuid}`" for worker, uuid in sorted(report.workers.items())) + "."]
    lines += ["", f"{tests_text(len(results))}: {verdict_counts(results) or 'none measured'}.", ""]
    if results:
        lines += markdown_results(COLUMNS, rows(results), what="results",
                                  attention=[r.verdict in ATTENTION for r in results])
    for written in report.written:
        lines.append(f"Baselines written: `{display_path(written.path)}` ({written_counts(written)}).  ")
    if report.git_commit:
        lines.append(f"Commit `{report.git_commit}`.")
    return "\n".join(lines).rstrip() + "\n"


# --- the files of a run ----------------------------------------------------------------------------------


def run_document(session: EnergySession, workers: Mapping[str, str] | None = None) -> RunReport:
    """The report of a run: what was in force, the stack, and one result per test."""
    meter = session.meter
    return RunReport(
        gpu=session.gpu_key, meter=meter.name, estimated=meter.estimated, results=results_by_test(session.records),
        meter_description=meter.describe(), baselines=str(session.baselines_root),
        baselines_folder=str(session.store.folder), updated_baselines=session.update,
        fingerprint=session.fingerprint(), git_commit=session.git_commit(),
        started_at=session.started_at.isoformat(timespec="seconds"), duration_s=session.duration_s(),
        python=session.python_version, references=tuple(session.run_references()), host=session.host,
        unused_baseline_entries=tuple(session.unused_entries()), mode=session.mode, arms=session.ab_arms,
        written=tuple(session.written), workers=dict(workers or {}),
    )


def write_run_reports(report: RunReport, *, json_path: str | None, md_path: str | None,
                      plots_folder: str | None) -> tuple[list[Path], str | None]:
    """The files of the run, once: JSON, Markdown, the GitHub job summary, plots.

    Returns the plots written and, if a file could not be written, why (the run then fails).
    """
    plots: list[Path] = []
    try:
        if json_path:
            atomic_write(Path(json_path), dumps(report.to_dict()))
        if md_path:
            atomic_write(Path(md_path), markdown(report))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary and report.results:  # GitHub shows this file on the job's page
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown(report) + "\n")
        if plots_folder and report.results:
            from .plots import write_plots

            plots = write_plots(report, Path(plots_folder))
    except OSError as error:
        return plots, f"could not write a report: {error}"
    except EnergyError as error:
        return plots, f"could not draw the plots: {error}"
    return plots, None
