"""What `llm-energy` prints: each result as a terminal table, GitHub Markdown or JSON.

The values come from where they are computed (`binning`, `estimate`, `advise`, `diff`); the cells and the
Markdown conventions are those of the run's reports (`cells`), so a number reads the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tabulate import tabulate

from ..core.baseline import BaselineSet
from ..core.binning import BinTable, TraceBin
from ..core.cells import (
    ATTENTION,
    count_text,
    interval,
    joules,
    markdown_cell,
    markdown_results,
    markdown_table,
    percent,
)
from ..core.files import display_path, dumps
from ..core.history import History
from ..core.measurement import meter_label
from ..core.words import counted
from .advise import Advice
from .diff import BaselineDiff, EntryDiff, GpuDiff
from .estimate import IdealComparison, WorkloadDelta, WorkloadEstimate

FORMATS = ("terminal", "markdown", "json")
DIFF_COLUMNS = ("test", "old J/token", "new J/token", "delta", "CI", "verdict", "notes")
# What a diff's columns hold, said under its table: a re-recorded entry holds its old runs too, so the new
# entry's level would move by a fraction of what its new run did.
DIFF_LEGEND = ("old J/token: the old entry (its recorded runs' geometric mean); new J/token: the new entry's "
               "latest run, which delta, CI and verdict judge")
CARD_ADJUSTED_LEGEND = "; card-adjusted rows: delta and CI per unit of each card's reference kernels"


def diff_legend(rows: Sequence[EntryDiff]) -> str:
    return DIFF_LEGEND + (CARD_ADJUSTED_LEGEND if any(row.card_adjustment for row in rows) else "")


def table(rows: Sequence[Sequence], headers: Sequence[str], fmt: str = "terminal") -> str:
    """A table for a terminal (tabulate's "simple") or for GitHub (escaped cells)."""
    if fmt == "markdown":
        return markdown_table(headers, rows)
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


# --- a diff of two baseline sets ---------------------------------------------------------------------------


def diff_rows(rows: Sequence[EntryDiff]) -> list[list[str]]:
    return [
        [
            row.nodeid,
            joules(row.old_joules_per_token),
            joules(row.new_joules_per_token),
            percent(row.delta),
            interval(row.ci_low, row.ci_high),
            row.verdict,
            "; ".join(row.notes),
        ]
        for row in rows
    ]


def _shown(gpu: GpuDiff, show_identical: bool) -> tuple[EntryDiff, ...]:
    return gpu.rows if show_identical else gpu.changed


def _gpu_summary(gpu: GpuDiff, show_identical: bool) -> str:
    shown = _shown(gpu, show_identical)
    text = count_text(gpu.counts(shown)) if shown else "no entry changed"
    if gpu.identical and not show_identical:
        text += f" ({counted(gpu.identical, 'identical entry')} not shown)"
    return text


def _title(diff: BaselineDiff) -> str:
    return (
        f"{diff.old} -> {diff.new}: J per output token, tolerance {diff.tolerance:.0%}, "
        f"confidence {diff.confidence:.0%}"
    )


def render_terminal(diff: BaselineDiff, *, show_identical: bool = False) -> str:
    lines = [_title(diff)]
    if not diff.gpus:
        lines.append("no baseline entries on either side")
    for gpu in diff.gpus:
        shown = _shown(gpu, show_identical)
        lines += ["", f"{gpu.gpu}: {_gpu_summary(gpu, show_identical)}"]
        if shown:
            lines += [table(diff_rows(shown), DIFF_COLUMNS), diff_legend(shown)]
        if gpu.stack_changes:
            lines.append("stack changes: " + "; ".join(map(str, gpu.stack_changes)))
    regressed = len(diff.regressed)
    lines += ["", f"{regressed} regressed" if regressed else "no regression"]
    return "\n".join(lines)


def render_markdown(diff: BaselineDiff, *, show_identical: bool = False) -> str:
    regressed = len(diff.regressed)
    lines = [
        f"## Energy baselines: `{markdown_cell(diff.old)}` → `{markdown_cell(diff.new)}`",
        "",
        f"J per output token, tolerance {diff.tolerance:.0%}, confidence {diff.confidence:.0%}: "
        + (f"**{regressed} regressed**." if regressed else "no regression."),
        "",
    ]
    if not diff.gpus:
        lines.append("No baseline entries on either side.")
    for gpu in diff.gpus:
        shown = _shown(gpu, show_identical)
        summary = _gpu_summary(gpu, show_identical)
        lines += [
            f"### {markdown_cell(gpu.gpu)}",
            "",
            markdown_cell(summary[:1].upper() + summary[1:]) + ".",
            "",
        ]
        if gpu.stack_changes:
            lines += [
                "Stack changes: " + "; ".join(markdown_cell(str(c)) for c in gpu.stack_changes) + ".",
                "",
            ]
        if shown:
            lines += markdown_results(
                DIFF_COLUMNS,
                diff_rows(shown),
                what="changed entries",
                attention=[row.verdict in ATTENTION for row in shown],
            )
            lines += [markdown_cell(diff_legend(shown)[:1].upper() + diff_legend(shown)[1:]) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_json(diff: BaselineDiff) -> str:
    return dumps(diff.to_dict()).rstrip("\n")


# --- one set, for `llm-energy show` ---------------------------------------------------------------------

SHOW_COLUMNS = ("test", "J/token", "trials", "robust CV", "meter", "recorded", "commit")


def short_commit(commit) -> str:
    """A commit as a reader finds it in `git log`: 12 hex digits, and whether the tree was dirty."""
    if not isinstance(commit, str) or not commit:
        return "-"
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def entry_rows(baselines: BaselineSet, gpu: str) -> list[list[str]]:
    rows = []
    for (entry_gpu, nodeid), entry in sorted(baselines.entries.items()):
        if entry_gpu != gpu:
            continue
        data = entry.data
        cv = data.get("robust_cv")
        meter = meter_label(str(data.get("meter") or "-"), bool(data.get("estimated")), say_measured=False)
        spread = f"{cv:.1%}" if isinstance(cv, (int, float)) and math.isfinite(cv) else "-"
        rows.append(
            [
                nodeid,
                joules(entry.joules_per_token),
                str(len(entry.samples)),
                spread,
                meter,
                str(data.get("recorded_at") or "-"),
                short_commit(data.get("git_commit")),
            ]
        )
    return rows


def render_entries(baselines: BaselineSet, fmt: str = "terminal") -> str:
    """Every entry of a baselines folder, one table per GPU key."""
    if fmt == "json":
        return dumps({
            "source": baselines.label,
            "gpus": {gpu: {nodeid: dict(entry.data) for (g, nodeid), entry in sorted(baselines.entries.items())
                           if g == gpu}
                     for gpu in baselines.gpus()},
        }).rstrip("\n")
    markdown = fmt == "markdown"
    lines = [
        f"## Energy baselines in `{markdown_cell(baselines.label)}`"
        if markdown
        else f"{baselines.label}: {counted(len(baselines.entries), 'entry')} in {counted(baselines.files, 'file')}"
    ]
    for gpu in baselines.gpus():
        rows = entry_rows(baselines, gpu)
        if markdown:
            lines += ["", f"### {markdown_cell(gpu)}", ""]
            lines += markdown_results(SHOW_COLUMNS, rows, what="entries", attention=[False] * len(rows))
        else:
            lines += [
                "",
                f"{gpu}: {counted(len(rows), 'entry')}",
                table(rows, SHOW_COLUMNS),
            ]
    if not baselines.entries:
        lines.append("no baseline entries")
    return "\n".join(lines).rstrip() + "\n"


# --- recorded runs over time, for `llm-energy history` ------------------------------------------------------

HISTORY_COLUMNS = ("test", "run", "recorded", "J/token", "vs first run", "trials", "spread", "GPU", "commit")


def short_gpu(uuid: str) -> str:
    """'GPU-0a43807b' of 'GPU-0a43807b-5892-18fa-...': enough to tell a team's cards apart."""
    return "-".join(uuid.split("-")[:2])


def history_rows(histories: Sequence[History]) -> list[list[str]]:
    rows = []
    for history in histories:
        for recorded in history.runs:
            run = recorded.run
            rows.append([
                history.nodeid,
                str(recorded.number),
                run.recorded_at or "-",
                joules(run.median),
                percent(history.change(recorded)),
                str(run.trials),
                f"{run.spread:.1%}" if run.trials > 1 else "-",  # one trial has no spread to show
                ", ".join(short_gpu(uuid) for uuid in sorted(run.gpus)) or "-",
                short_commit(recorded.git_commit),
            ])
    return rows


def _runs_text(histories: Sequence[History]) -> str:
    runs = sum(len(history.runs) for history in histories)
    return f"{counted(len(histories), 'test')}, {counted(runs, 'recorded run')}"


def render_history(label: str, histories: Sequence[History], fmt: str = "terminal", *,
                   test: str | None = None, plot: str | None = None) -> str:
    """Each test's recorded runs, one table per GPU key; `test` and `plot` are what the command was given."""
    if fmt == "json":
        gpus: dict[str, dict] = {}
        for history in histories:
            gpus.setdefault(history.gpu, {})[history.nodeid] = history.to_dict()
        return dumps({"source": label, "test": test, "gpus": gpus, "plot": plot})
    markdown = fmt == "markdown"
    code = (lambda text: f"`{markdown_cell(text)}`") if markdown else repr
    matching = f" (tests matching {code(test)})" if test else ""
    if markdown:
        lines = [f"## Energy history in {code(label)}", "",
                 f"{_runs_text(histories)}{matching}; each run's change is against its test's first recorded run."]
    else:
        lines = [f"{label}: {_runs_text(histories)}{matching}"]
    for gpu in dict.fromkeys(history.gpu for history in histories):
        shown = [history for history in histories if history.gpu == gpu]
        rows = table(history_rows(shown), HISTORY_COLUMNS, fmt)
        lines += ["", f"### {markdown_cell(gpu)}", "", rows] if markdown else ["", f"{gpu}: {_runs_text(shown)}", rows]
    if not histories:
        lines += ["", f"No baseline entries{matching}." if markdown else f"no baseline entries{matching}"]
    if plot:
        lines += ["", f"Plot: {code(plot)}." if markdown else f"plot: {plot}"]
    return "\n".join(lines).rstrip() + "\n"


# --- plots of a report, for `llm-energy plots` -------------------------------------------------------------


def render_written_plots(report: str, folder: str, written: Sequence, fmt: str = "terminal") -> str:
    """The PNG files drawn from a report: one line each, then how many and where."""
    paths = [display_path(path) for path in written]
    if fmt == "json":
        return dumps({"report": report, "folder": folder, "files": paths})
    markdown = fmt == "markdown"
    code = (lambda text: f"`{markdown_cell(text)}`") if markdown else str
    count = f"{counted(len(paths), 'PNG file')} in {code(folder)}"
    if not paths:
        count += f" ({code(report)} holds no measured test)"
    if markdown:
        return "\n".join([f"- {code(path)}" for path in paths] + ["", count + "."]).lstrip() + "\n"
    return "\n".join([*paths, count]) + "\n"


# --- bins, estimate, advise ----------------------------------------------------------------------------------


def share(fraction: float | None) -> str:
    return "-" if fraction is None or not math.isfinite(fraction) else f"{fraction:.2%}"


def energy(value: float | None) -> str:
    """Joules with a unit that keeps three significant digits readable: J, kJ, MJ, GJ."""
    if value is None or not math.isfinite(value):
        return "-"
    for factor, unit in ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value:.3g} J"


def _text(lines: Sequence[str], fmt: str) -> str:
    """Lines of prose and tables; in Markdown each prose line is its own paragraph."""
    separator = "\n\n" if fmt == "markdown" else "\n"
    return separator.join(lines)


def render_bins(table_of_bins: BinTable, rows: Sequence[TraceBin], attribution: str | None,
                fmt: str = "terminal") -> str:
    """A binned trace: requests and tokens per bin, and what the largest bins leave out."""
    lines = [
        f"{table_of_bins.trace}: {table_of_bins.total_requests:,} requests, {table_of_bins.total_tokens:,} "
        f"tokens, {len(table_of_bins.bins)} non-empty bins",
        table([[row.bin.label, f"{row.requests:,}", share(row.share_of_requests), share(row.share_of_tokens)]
               for row in rows], ["bin", "requests", "share of requests", "share of tokens"], fmt),
        f"dropped (longer than in{table_of_bins.edges.input_edges[-1]} or "
        f"out{table_of_bins.edges.output_edges[-1]}): {table_of_bins.dropped_requests:,} requests "
        f"({share(table_of_bins.dropped_share)}), {share(table_of_bins.dropped_token_share)} of tokens",
    ]
    if attribution:
        lines.append(f"trace: {attribution}")
    return _text(lines, fmt)


def _ideal_line(comparison: IdealComparison) -> str:
    ideal = comparison.ideal
    if ideal is None:
        return f"FLOPs ideal: not computed ({comparison.missing}; pass --model NAME or a config.json path)"
    if ideal.joules is None:
        return f"FLOPs ideal: {ideal.reason}"
    return (
        f"FLOPs ideal ({comparison.model} on {ideal.gpu}: {ideal.flops:.3g} FLOPs x {ideal.tdp_watts:g} W / "
        f"{ideal.bf16_peak_tflops:g} TFLOP/s bf16 peak): {energy(ideal.joules)}; "
        f"measured / ideal = {comparison.ratio:.2f}x"
    )


def _estimate_rows(estimate: WorkloadEstimate) -> list[list[str]]:
    rows = []
    for item in sorted(estimate.bins, key=lambda i: (-i.trace_bin.requests, i.trace_bin.bin)):
        source = ("measured" if item.measured
                  else f"from {item.measured_as.label}" if item.measured_as else "excluded")
        per_token = item.joules_per_output_token
        rows.append([item.trace_bin.bin.label, f"{item.trace_bin.requests:,}",
                     share(item.trace_bin.share_of_requests), f"{per_token:.4g}" if per_token else "-", source,
                     energy(item.joules)])
    return rows


def estimate_lines(estimate: WorkloadEstimate, skipped: int, comparison: IdealComparison,
                   fmt: str = "terminal") -> list[str]:
    """One estimate: what it is of, how unmeasured bins were handled, the bins, the total, the ideal."""
    lines = [
        f"results: {estimate.results} - {estimate.gpu}, {estimate.configuration}, batch {estimate.batch_size}, "
        f"{estimate.decoding}; meter: {', '.join(estimate.meters) or 'not stated'}",
    ]
    if skipped:
        lines.append(f"skipped {counted(skipped, 'entry')} without a workload or a number")
    lines += [
        f"{estimate.trace}: {estimate.total_requests:,} requests; {estimate.dropped_requests:,} "
        f"({share(estimate.dropped_share)}) are longer than the largest bins and not part of the estimate",
        f"measured bins hold {share(estimate.measured_share)} of requests; unmeasured bins hold "
        f"{share(estimate.unmeasured_share)}: {estimate.method_text}",
        table(_estimate_rows(estimate), ["bin", "requests", "share", "J/output token", "J/token from", "energy"],
              fmt),
        f"energy of the trace: {energy(estimate.joules)}; per 1,000 requests: "
        f"{energy(estimate.joules_per_1000_requests)}; per output token: "
        f"{estimate.joules_per_output_token:.4g} J (trace lengths), "
        f"{estimate.joules_per_binned_output_token:.4g} J (bin edges, as measured)",
        _ideal_line(comparison),
    ]
    return lines


def render_estimates(estimates: Sequence[tuple[WorkloadEstimate, int, IdealComparison]],
                     delta: WorkloadDelta | None, fmt: str = "terminal") -> str:
    """One estimate, or two (A and B) with the workload delta between them."""
    lines: list[str] = []
    for label, (estimate, skipped, comparison) in zip(("A", "B"), estimates, strict=False):
        if delta is not None:
            lines.append(f"== {label}")
        lines += estimate_lines(estimate, skipped, comparison, fmt)
    if delta is not None:
        lines += ["==", f"B vs A: {delta.sentence} ({energy(delta.a.joules)} -> {energy(delta.b.joules)})"]
        if not delta.same_bins_measured:
            lines.append("note: A and B measured different bins; part of the delta comes from the "
                         "unmeasured-bin method")
    return _text(lines, fmt)


def render_advice(advice: Advice, skipped: int, fmt: str = "terminal") -> str:
    """The lowest-energy setup per bin, the setups ranked on the trace, and the saving."""
    lines = [f"advice for {advice.trace}: {counted(len(advice.setups), 'setup')}; baseline {advice.baseline_setup}"]
    if skipped:
        lines.append(f"skipped {skipped} entries without a workload or a number")
    lines.append(
        f"compared: bins the baseline measured hold {share(advice.compared_share)} of requests; "
        f"{share(advice.uncompared_share)} are in bins it did not measure (left out of the comparison); "
        f"{share(advice.dropped_share)} are longer than the largest bins"
    )
    rows = [[item.trace_bin.bin.label, share(item.trace_bin.share_of_requests),
             f"{item.baseline_joules_per_output_token:.4g}" if item.baseline_joules_per_output_token else "-",
             item.best_setup, f"{item.best_joules_per_output_token:.4g}", share(item.saving)]
            for item in advice.bins]
    lines.append(table(rows, ["bin", "share", "baseline J/token", "lowest-energy setup", "J/token", "saving"], fmt))
    if advice.ranking:
        lines.append("setups measured on every compared bin (energy over the compared bins only, renormalized to "
                     "their requests: `llm-energy estimate --unmeasured=exclude`; estimate's default fills "
                     "the other bins from the nearest measured one):")
        lines.append(table([[total.setup, energy(total.joules_per_1000_requests), f"{total.change:+.1%}"]
                            for total in advice.ranking], ["setup", "energy per 1,000 requests", "vs baseline"],
                           fmt))
    if advice.incomplete_setups:
        lines.append(f"not ranked (missing some compared bins): {', '.join(advice.incomplete_setups)}")
    lines.append(f"=> {advice.sentence}")
    return _text(lines, fmt)
