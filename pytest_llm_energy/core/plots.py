"""Plots as PNG files: J per output token per bin (heatmaps), each test against its baseline, and each test's
recorded runs over time (`llm-energy history --plot`).

matplotlib is the optional extra `plots` (`pip install 'pytest-llm-energy[plots]'`). It is imported only
when plots are written, and used through its object API on the Agg canvas: no pyplot, no window, and no
change to the backend of the process the tests run in. What is drawn is worked out first, as plain values
(`heatmaps`, `comparison_bars`, `history.History`), so that the drawing functions only draw.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EnergyUsageError
from .history import History
from .measurement import meter_label
from .result import TestResult
from .results import read_report
from .run_report import RunReport
from .stats import Verdict
from .words import counted

INSTALL_HINT = "pip install 'pytest-llm-energy[plots]'"
BARS_PER_FIGURE = 40  # more tests go to further files: a taller image stops being readable
VERDICT_COLOURS = {Verdict.REGRESSED: "#d62728", Verdict.IMPROVED: "#2ca02c", Verdict.INCONCLUSIVE: "#ff7f0e"}
CURRENT_COLOUR = "#1f77b4"
BASELINE_COLOUR = "#b0b0b0"
COLOURS_PER_CYCLE = 10  # matplotlib's default colour cycle
LINE_STYLES = ("-", "--", ":", "-.")


def require_matplotlib(asked_by: str = "--energy-plots") -> None:
    """Fail before any work when plots are asked for (by the option or command `asked_by`) and matplotlib
    is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise EnergyUsageError(f"{asked_by} needs matplotlib, which is not installed here: {INSTALL_HINT}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "plot"


# --- what to draw -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heatmap:
    """J per output token on the grid of input bins x output bins, for one configuration and batch size."""

    title: str
    file_name: str
    input_bins: tuple[int, ...]  # columns
    output_bins: tuple[int, ...]  # rows
    values: tuple[tuple[float | None, ...], ...]  # values[row][column]; None where nothing was measured


def heatmaps(report: RunReport) -> list[Heatmap]:
    """One heatmap per (configuration, batch size, decoding) among the run's `energy.run` results."""
    # The bins are read as `llm-energy estimate` reads a report file; tests without a workload are left out.
    measured = read_report(Path("this run"), data=report.to_dict()).bins
    groups: dict[tuple[str, int, str], dict[tuple[int, int], float]] = {}
    for item in measured:
        cells = groups.setdefault((item.configuration, item.batch_size, item.decoding), {})
        cells[item.bin.input_tokens, item.bin.output_tokens] = item.joules_per_output_token
    found = []
    for (configuration, batch_size, decoding), cells in sorted(groups.items()):
        inputs = tuple(sorted({i for i, _ in cells}))
        outputs = tuple(sorted({o for _, o in cells}))
        found.append(
            Heatmap(
                title=f"{configuration}\nbatch {batch_size}, {decoding}; {report.gpu}, "
                f"{meter_label(report.meter, report.estimated, loud=True)}",
                file_name=f"bins-{_slug(configuration)}-b{batch_size}-{_slug(decoding)}.png",
                input_bins=inputs,
                output_bins=outputs,
                values=tuple(tuple(cells.get((i, o)) for i in inputs) for o in outputs),
            )
        )
    return found


@dataclass(frozen=True)
class ComparisonBar:
    """One test: its current median, its baseline median, and the interval of the current value."""

    nodeid: str
    current: float
    baseline: float | None
    low: float | None  # baseline x ci_low of the ratio
    high: float | None
    verdict: Verdict


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def comparison_bars(results: Sequence[TestResult]) -> list[ComparisonBar]:
    """Tests with a current value, the largest regression first (as in the diff tables)."""
    bars = []
    for result in results:
        current = _number(result.joules_per_token)
        if current is None:
            continue
        baseline = _number(result.baseline_joules_per_token)
        decision = result.decision
        low, high = _number(decision.ci_low), _number(decision.ci_high)
        # a card-adjusted interval is of J/token per unit of the card reference: back in this card's J/token
        scale = baseline * (_number(decision.card_adjustment) or 1.0) if baseline else None
        interval = (scale * low, scale * high) if scale and low and high else (None, None)
        bars.append(ComparisonBar(str(result.nodeid), current, baseline, *interval, result.verdict))
    delta = {bar.nodeid: (bar.current / bar.baseline - 1) if bar.baseline else -math.inf for bar in bars}
    return sorted(bars, key=lambda bar: (-delta[bar.nodeid], bar.nodeid))


# --- drawing ----------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def draw_heatmap(heatmap: Heatmap, path: Path) -> Path:
    import numpy as np

    grid = np.ma.masked_invalid(
        np.array([[math.nan if v is None else v for v in row] for row in heatmap.values], dtype=float)
    )
    figure = _figure(
        max(5.5, 1.6 + 1.1 * len(heatmap.input_bins)), max(3.5, 1.8 + 0.7 * len(heatmap.output_bins))
    )
    axes = figure.subplots()
    image = axes.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    axes.set_xticks(range(len(heatmap.input_bins)), [str(i) for i in heatmap.input_bins])
    axes.set_yticks(range(len(heatmap.output_bins)), [str(o) for o in heatmap.output_bins])
    axes.set_xlabel("input tokens (bin)")
    axes.set_ylabel("output tokens (bin)")
    axes.set_title(heatmap.title, fontsize=9)
    middle = float(grid.min() + grid.max()) / 2 if grid.count() else 0.0
    for row, values in enumerate(heatmap.values):
        for column, value in enumerate(values):
            if value is not None:  # dark text on the light end of viridis, light text on the dark end
                axes.text(
                    column,
                    row,
                    f"{value:.3g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if value > middle else "white",
                )
    figure.colorbar(image, ax=axes, label="J per output token")
    figure.savefig(path, dpi=100)
    return path


def _label(nodeid: str, width: int = 60) -> str:
    return nodeid if len(nodeid) <= width else "..." + nodeid[-(width - 3) :]


def draw_bars(bars: Sequence[ComparisonBar], path: Path, title: str) -> Path:
    figure = _figure(11, 1.6 + 0.45 * len(bars))
    axes = figure.subplots()
    rows = list(range(len(bars)))[::-1]  # the first bar at the top
    height = 0.38
    from matplotlib.patches import Patch

    axes.barh(
        [r + height / 2 for r in rows], [bar.baseline or 0 for bar in bars], height, color=BASELINE_COLOUR
    )
    colours = [VERDICT_COLOURS.get(bar.verdict, CURRENT_COLOUR) for bar in bars]
    axes.barh([r - height / 2 for r in rows], [bar.current for bar in bars], height, color=colours)
    verdicts = sorted({bar.verdict for bar in bars if bar.verdict in VERDICT_COLOURS})
    legend = [Patch(color=BASELINE_COLOUR, label="baseline"), Patch(color=CURRENT_COLOUR, label="current")]
    legend += [Patch(color=VERDICT_COLOURS[v], label=f"current, {v}") for v in verdicts]
    for row, bar in zip(rows, bars, strict=True):
        if bar.low is not None and bar.high is not None:
            axes.errorbar(
                bar.current,
                row - height / 2,
                xerr=[[max(bar.current - bar.low, 0)], [max(bar.high - bar.current, 0)]],
                fmt="none",
                ecolor="black",
                capsize=3,
                linewidth=1,
            )
    values = [v for bar in bars for v in (bar.current, bar.baseline, bar.high) if v]
    if values and max(values) / min(values) > 100:  # tests of very different sizes: compare on a log axis
        axes.set_xscale("log")
    axes.set_yticks(rows, [f"{_label(bar.nodeid)}  [{bar.verdict}]" for bar in bars], fontsize=8)
    axes.set_xlabel("J per output token (median); whisker: confidence interval of the change")
    axes.set_title(title, fontsize=9)
    axes.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # never on the bars
    figure.savefig(path, dpi=100)
    return path


def write_plots(report: RunReport, folder: Path) -> list[Path]:
    """Every plot of a report, written into `folder`; returns the files written."""
    require_matplotlib()
    folder.mkdir(parents=True, exist_ok=True)
    written = [draw_heatmap(heatmap, folder / heatmap.file_name) for heatmap in heatmaps(report)]
    bars = comparison_bars(report.results)
    pages = [bars[start : start + BARS_PER_FIGURE] for start in range(0, len(bars), BARS_PER_FIGURE)]
    for number, page in enumerate(pages, start=1):
        name = "baseline-vs-current.png" if len(pages) == 1 else f"baseline-vs-current-{number}.png"
        title = (
            f"J per output token against the baseline on {report.gpu}, "
            f"{meter_label(report.meter, report.estimated, loud=True)}"
            + (f", page {number} of {len(pages)}" if len(pages) > 1 else "")
        )
        written.append(draw_bars(page, folder / name, title))
    return written


def draw_history(histories: Sequence[History], path: Path, title: str) -> Path:
    """One line per test: each recorded run's median J/token relative to the test's first run."""
    history_figure(histories, title).savefig(path, dpi=100, format="png")
    return path


def history_figure(histories: Sequence[History], title: str):
    """The figure of `draw_history`."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = _figure(11, 4.5 + 0.18 * len(histories))
    axes = figure.subplots()
    several_gpus = len({history.gpu for history in histories}) > 1  # the same test on two GPU keys: say which
    for number, history in enumerate(histories):
        label = _label(f"{history.gpu}: {history.nodeid}" if several_gpus else history.nodeid)
        changes = [100 * (relative - 1) for relative in history.relative()]
        style = LINE_STYLES[number // COLOURS_PER_CYCLE % len(LINE_STYLES)]  # past ten tests colours repeat
        axes.plot([recorded.number for recorded in history.runs], changes, marker="o", markersize=4,
                  linewidth=1.2, linestyle=style, label=label)
    axes.axhline(0, color=BASELINE_COLOUR, linewidth=1, zorder=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # runs are counted, not measured
    # as many decimals as the ticks' spacing needs: runs within 2% of each other had ticks 0.5% apart
    # labelled 0%, 0%, 1%, 1% with none
    axes.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    axes.set_xlabel("recorded run (1 = the oldest the baseline keeps)")
    axes.set_ylabel("median J per output token,\nchange against the first run")
    axes.set_title(title, fontsize=9)
    if histories:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)  # never on the lines
    return figure


def write_history_plot(histories: Sequence[History], path: Path, source: str) -> Path:
    """The history plot of these tests, written to `path` (its folder is made if missing)."""
    require_matplotlib("llm-energy history --plot")
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = sum(len(history.runs) for history in histories)
    title = f"Recorded runs in {source}: {counted(len(histories), 'test')}, {counted(runs, 'run')}"
    return draw_history(histories, path, title)
