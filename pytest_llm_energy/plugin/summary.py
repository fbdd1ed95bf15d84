"""What a run's reports say: the results table and its notes, the header lines, and the Markdown report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tabulate import tabulate

from ..core.baseline import WriteSummary
from ..core.cells import (
    ATTENTION,
    count_text,
    finite,
    interval,
    joules,
    markdown_cell,
    markdown_results,
    noise_note,
    percent,
    tests_text,
)
from ..core.files import display_path
from ..core.measurement import meter_label
from ..core.result import TestResult
from ..core.run_report import RunReport
from ..core.stats import Verdict
from .host import SLOW as SLOW_HOST_READING

COLUMNS = ("test", "J/token", "baseline", "delta", "CI", "verdict", "GPU busy, power", "notes")


def gpu_load(result: TestResult) -> str:
    """How GPU-bound the windows were: the share of time kernels ran, and average against capped power."""
    windows = result.windows
    busy, watts, limit = ((windows.busy_share, windows.average_watts, windows.power_limit_watts) if windows
                          else (None, None, None))
    parts = [f"{busy:.0%}" if finite(busy) else "-"]
    if finite(watts) and finite(limit):
        parts.append(f"{watts:.0f}/{limit:.0f} W")
    elif finite(watts) and not result.estimated:
        parts.append(f"{watts:.0f} W")
    return ", ".join(parts) if parts != ["-"] else "-"


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


def verdict_counts(results: Iterable[TestResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[str(result.verdict)] = counts.get(str(result.verdict), 0) + 1
    return count_text(dict(sorted(counts.items()))) if counts else ""


def written_counts(written: WriteSummary) -> str:
    """'+2 new, 3 updated (1 history restarted)': what an update did to one baseline file."""
    text = f"+{len(written.added)} new, {len(written.updated)} updated"
    restarted = len(written.restarted)
    removed = len(written.removed)
    return (text + (f" ({restarted} history restarted: stack, workload, xdist or energy changed)" if restarted else "")
            + (f", {removed} removed" if removed else ""))


# What a test that took the fixture and measured nothing is told, and the report says of it.
UNMEASURED = ("took the energy fixture and measured nothing: measure inside it with `with energy.measure() as "
              "m:`, `energy(fn, ...)` or `energy.run(workload)`, or drop the fixture")


def unmeasured_line(nodeids: Sequence[str]) -> str:
    """The tests that took the energy fixture and measured nothing: named, as they have no row."""
    return f"{tests_text(len(nodeids))} {UNMEASURED}: " + ", ".join(nodeids)


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
    if report.unmeasured_tests:
        lines += [markdown_cell(unmeasured_line(report.unmeasured_tests)) + ".", ""]
    for written in report.written:
        lines.append(f"Baselines written: `{display_path(written.path)}` ({written_counts(written)}).  ")
    if report.git_commit:
        lines.append(f"Commit `{report.git_commit}`.")
    return "\n".join(lines).rstrip() + "\n"
