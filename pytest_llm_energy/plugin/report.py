"""The files of a run, written once at its end: the JSON and Markdown reports, the GitHub job summary, plots."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import EnergyError
from ..core.files import atomic_write, dumps
from ..core.run_report import RunReport
from .summary import markdown


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
            from ..core.plots import write_plots

            plots = write_plots(report, Path(plots_folder))
    except OSError as error:
        return plots, f"could not write a report: {error}"
    except EnergyError as error:
        return plots, f"could not draw the plots: {error}"
    return plots, None
