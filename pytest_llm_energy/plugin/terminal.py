"""What the plugin writes on the terminal: the header lines of a run (what is in force) and its energy summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.files import display_path
from ..core.gpus import CPU_KEY
from ..core.stats import Verdict
from ..core.words import counted
from . import ab
from .summary import (
    ab_against,
    header_line,
    host_line,
    reference_line,
    terminal_table,
    tests_text,
    unmeasured_line,
    verdict_counts,
    written_counts,
)

if TYPE_CHECKING:
    from .session import EnergySession


def header_lines(session: EnergySession) -> list[str]:
    """The settings in force, as pytest-randomly says its seed: the meter, the baselines, the rule's settings."""
    o = session.options
    mode = "updating" if session.update else "not updating"
    trials = f"{o.trials}" + (f"..{o.max_trials}" if o.max_trials and o.max_trials > o.trials else "")
    against = (f"{ab_against(session.ab_arms)}; no baselines read or written" if session.ab_arms
               else f"baselines {session.store.folder} ({mode})")
    lines = [
        f"energy: gpu key {session.gpu_key!r}, meter {session.meter.describe()}",
        f"energy: {against}, tolerance {o.tolerance:.0%}, trials {trials}, "
        f"warm-up {o.warmup}, confidence {o.confidence:.0%}, backend {o.backend}, "
        f"model {o.model or session.default_model}",
    ]
    if session.ab_arms:  # the two workers are the arms, taking turns: none of the -n caveats below holds
        return lines
    workers = session.xdist_workers
    if session.gpus is not None:
        pins = session.gpus.planned(workers)
        lines.append("energy: one GPU per xdist worker: " + ", ".join(f"{p.worker} -> {p.uuid}" for p in pins))
    if workers > 1 and session.meter.name == "rapl":
        lines.append(f"energy: RAPL counts the whole CPU package: with {workers} xdist workers, each test's "
                     "number includes the other workers' work")
    elif workers > 1 and session.meter.estimated:
        lines.append(f"energy: ESTIMATES INFLATED: {workers} xdist workers share the CPU, and each worker's CPU "
                     "time grows with the contention; compare only with runs of the same -n, or run without -n")
    return lines


def write_summary(tr, session: EnergySession) -> None:
    """The energy section at the end of a run (the controller's): the results, and what was written."""
    report = session.report(session.pins())
    results = report.results
    if not (results or session.write_error or session.written or report.unused_baseline_entries
            or report.unmeasured_tests):
        return
    tr.section("energy")
    tr.write_line(header_line(report))
    if report.estimated:
        tr.write_line("ESTIMATED: no energy counter here; " + report.meter_description, yellow=True)
    for reference in report.references:
        tr.write_line(reference_line(reference))
    if report.host:
        tr.write_line(host_line(report.host))
    if results:
        tr.write_line(terminal_table(results))
        tr.write_line(f"{tests_text(len(results))}: {verdict_counts(results)}")
    if session.written:
        for written in session.written:
            tr.write_line(f"baselines written: {written.path} ({written_counts(written)})", green=True)
    elif session.update and session.interrupted:
        tr.write_line("baselines NOT written: the run was interrupted", red=True)
    elif session.ab_arms:
        tr.write_line("A/B: each test ran in both arms (xdist counts it twice); B judged against A pair by pair "
                      "(delta: each B trial over the A trial beside it, averaged)")
        held = ab.held_memory_line(results)
        if held:
            tr.write_line(held)
        for line in ab.unpaired_lines(results):
            tr.write_line(line, red=True)
    elif not session.update and any(r.verdict in (Verdict.NEW, Verdict.IMPROVED) for r in results):
        tr.write_line("baselines unchanged; record new or improved results with --energy-update-baselines")
    if report.unmeasured_tests:
        tr.write_line(unmeasured_line(report.unmeasured_tests), yellow=True)
    if session.held_interrupt:
        tr.write_line("interrupted at the end of the run: held until every baseline and report file was "
                      "complete, then stopped", red=True)
    _unused_lines(tr, session, report.unused_baseline_entries)
    if report.workers:
        tr.write_line("one GPU per xdist worker: " + ", ".join(f"{w} {uuid}" for w, uuid in report.workers.items()))
    if session.plots:
        tr.write_line(f"energy plots: {counted(len(session.plots), 'PNG file')} in {display_path(session.plots[0].parent)}")
    if session.write_error:
        tr.write_line(f"energy: {session.write_error}", red=True)
    if session.gpu_key == CPU_KEY and report.estimated and results:
        tr.write_line("note: CPU numbers are estimates for trying the plugin out; guard energy on a GPU runner")


def _unused_lines(tr, session: EnergySession, unused_entries) -> None:
    """Baseline entries of tests this run did not collect: removed (an update of whole files), or listed."""
    removed = {nodeid for written in session.written for nodeid in written.removed}
    unused = [nodeid for nodeid in unused_entries if nodeid not in removed]
    if removed:
        tr.write_line(f"baseline entries removed ({len(removed)}), of tests that are gone: "
                      + ", ".join(sorted(removed)), yellow=True)
    if unused:
        why = ("the update did not complete" if session.update and session.options.prune_baselines
               else "if those tests are gone, --energy-update-baselines --energy-prune-baselines removes them")
        tr.write_line(f"unused baseline entries ({len(unused)}), of tests this run did not collect: "
                      + ", ".join(unused) + f"; {why}", yellow=True)
