"""The `llm-energy` command: one function per subcommand, registered by name.

To add a subcommand, write `configure(parser)` and `run(args) -> int` and register them with
`@subcommand("name", help=..., configure=...)`. A subcommand reads its input, computes with the module that
owns the step, and prints what `views` renders; every one takes `--format terminal|markdown|json` (`--json`
for short). Bad input of any kind (an EnergyError) prints one line `llm-energy: error: ...` and exits 2.
`llm-energy --version` prints the plugin's version.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core import __version__
from ..core.errors import EnergyError, EnergyUsageError
from ..core.files import display_path, dumps
from . import views

PROG = "llm-energy"


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, *, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> int` as `llm-energy NAME`, with `configure(parser)` adding its arguments."""

    def register(run: Callable[[argparse.Namespace], int]):
        SUBCOMMANDS[name] = Subcommand(name, help, configure, run)
        return run

    return register


# --- shared arguments and formatting --------------------------------------------------------------------


def _edges(values: list[str] | None) -> tuple[int, ...] | None:
    """Edges as separate words or comma-separated: `--input-edges 32 64 128` or `--input-edges 32,64,128`."""
    if values is None:
        return None
    edges = []
    for word in values:
        for part in filter(None, word.split(",")):
            try:
                edges.append(int(part))
            except ValueError:
                raise EnergyUsageError(f"bin edge {part!r} is not a whole number of tokens") from None
    return tuple(edges)


def _add_trace_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-column", metavar="NAME", help="input token column (default: ContextTokens or input_tokens)"
    )
    parser.add_argument(
        "--output-column",
        metavar="NAME",
        help="output token column (default: GeneratedTokens or output_tokens)",
    )
    parser.add_argument(
        "--input-edges",
        nargs="+",
        metavar="N",
        help="input bin edges, strictly increasing (default: 32 64 ... 8192)",
    )
    parser.add_argument(
        "--output-edges",
        nargs="+",
        metavar="N",
        help="output bin edges, strictly increasing (default: 8 16 ... 512)",
    )


def _table_for(args: argparse.Namespace):
    from ..core.binning import BinEdges, bin_table

    edges = BinEdges.of(_edges(args.input_edges), _edges(args.output_edges))
    return bin_table(args.trace, edges, input_column=args.input_column, output_column=args.output_column)


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=views.FORMATS, default="terminal",
                        help="terminal table, GitHub Markdown (for a pull request), or JSON")
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="= --format json")


def _print_json(document) -> None:
    print(dumps(document), end="")  # strict JSON: NaN and inf become null


# --- bins -----------------------------------------------------------------------------------------------


def _configure_bins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", help="azure-conv, azure-code, or a CSV/JSONL path")
    _add_trace_options(parser)
    parser.add_argument(
        "--sort",
        choices=("requests", "tokens", "bin"),
        default="requests",
        help="row order: largest share of requests or tokens first, or grid order",
    )
    parser.add_argument("--top", type=int, metavar="K", help="show only the K largest bins")
    _add_format(parser)


@subcommand("bins", help="bin a trace: requests and tokens per input x output bin", configure=_configure_bins)
def bins_command(args: argparse.Namespace) -> int:
    from ..core.traces import attribution_for

    table = _table_for(args)
    attribution = attribution_for(table.source)
    if args.format == "json":
        _print_json(table.to_dict() | {"attribution": attribution})
        return 0
    # --top picks the largest bins (by tokens when sorting by tokens); --sort bin shows them in grid order
    rows = table.top(args.top, by="tokens" if args.sort == "tokens" else "requests")
    if args.sort == "bin":
        rows.sort(key=lambda row: row.bin)
    print(views.render_bins(table, rows, attribution, args.format))
    return 0


# --- estimate -------------------------------------------------------------------------------------------


def _add_trace_and_results(parser: argparse.ArgumentParser, results_help: str, nargs: str | None = None) -> None:
    parser.add_argument("--trace", required=True, help="azure-conv, azure-code, or a CSV/JSONL path")
    parser.add_argument("--results", required=True, nargs=nargs, metavar="PATH", help=results_help)


def _configure_estimate(parser: argparse.ArgumentParser) -> None:
    _add_trace_and_results(parser, "a JSON report (--energy-json) or a baselines folder or file")
    parser.add_argument(
        "--results-b", metavar="PATH", help="a second result set: print the workload delta B vs A"
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="which measured batch size to use")
    parser.add_argument("--config", metavar="LABEL", help="which configuration, e.g. hf/llama-3.2-1b/bf16")
    parser.add_argument(
        "--config-b", metavar="LABEL", help="configuration of --results-b (default: --config)"
    )
    parser.add_argument("--decoding", metavar="LABEL", help="which decoding, e.g. greedy or beam4")
    parser.add_argument("--gpu", metavar="KEY", help="which GPU's results, and the GPU of the FLOPs ideal")
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="model (packaged name or config.json path) for the FLOPs ideal "
        "(default: the model named in the results)",
    )
    parser.add_argument(
        "--unmeasured",
        choices=("nearest", "exclude"),
        default="nearest",
        help="bins with no measurement: borrow the nearest measured bin (default) or exclude them",
    )
    _add_trace_options(parser)
    _add_format(parser)


@subcommand(
    "estimate",
    help="energy of a whole trace from measured bins (and the delta of two result sets)",
    configure=_configure_estimate,
)
def estimate_command(args: argparse.Namespace) -> int:
    from ..core.results import load_results
    from .estimate import compare_with_ideal, estimate_workload, workload_delta

    table = _table_for(args)
    runs = [(args.results, args.config)]
    if args.results_b:
        runs.append((args.results_b, args.config_b or args.config))
    estimated = []
    for path, configuration in runs:
        results = load_results(path)
        estimate = estimate_workload(table, results, unmeasured=args.unmeasured, gpu=args.gpu,
                                     configuration=configuration, batch_size=args.batch_size,
                                     decoding=args.decoding)
        estimated.append((estimate, len(results.skipped),
                          compare_with_ideal(estimate, results, model=args.model, gpu=args.gpu)))
    delta = workload_delta(estimated[0][0], estimated[1][0]) if len(estimated) == 2 else None
    if args.format == "json":
        documents = [estimate.to_dict() | {"ideal": comparison.to_dict(), "skipped_entries": skipped}
                     for estimate, skipped, comparison in estimated]
        document = {"estimate": documents[0]}
        if delta is not None:
            document |= {"estimate_b": documents[1], "delta": {
                "fraction": delta.fraction, "sentence": delta.sentence,
                "same_bins_measured": delta.same_bins_measured}}
        _print_json(document)
        return 0
    print(views.render_estimates(estimated, delta, args.format))
    return 0


# --- advise ---------------------------------------------------------------------------------------------


def _configure_advise(parser: argparse.ArgumentParser) -> None:
    _add_trace_and_results(parser, "JSON reports and/or baselines folders holding the setups to compare", "+")
    parser.add_argument(
        "--baseline-config",
        required=True,
        metavar="LABEL",
        help="the setup you run today: a full setup label (config/bN/decoding) or a "
        "configuration label that names one setup",
    )
    _add_trace_options(parser)
    _add_format(parser)


@subcommand(
    "advise",
    help="the lowest-energy setup per bin, and the saving on a trace against a baseline",
    configure=_configure_advise,
)
def advise_command(args: argparse.Namespace) -> int:
    from ..core.results import load_many
    from .advise import advise

    table = _table_for(args)
    results = load_many(args.results)
    advice = advise(table, results, args.baseline_config)
    if args.format == "json":
        _print_json(advice.to_dict() | {"skipped_entries": len(results.skipped)})
        return 0
    print(views.render_advice(advice, len(results.skipped), args.format))
    return 0


# --- diff and show (the logic is in diff.py) -------------------------------------------------------------


def _option_value(name: str):
    """An argparse type that checks a value as the plugin's option of that name does (one place per fact)."""
    from ..core.settings import RULE_OPTIONS

    def parse(text: str):
        try:
            return RULE_OPTIONS[name].parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _configure_diff(parser: argparse.ArgumentParser) -> None:
    from ..core.settings import RULE_OPTIONS
    from ..core.stats import DEFAULT_CONFIDENCE

    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="OLD NEW: two baselines folders or files; with --git: one working-tree path "
        "(default: baselines)",
    )
    parser.add_argument(
        "--git", metavar="REV", help="compare the baselines committed at REV with the working tree"
    )
    parser.add_argument(
        "--tolerance",
        type=_option_value("tolerance"),
        default=RULE_OPTIONS["tolerance"].default,
        help="allowed relative change of J per output token (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence",
        type=_option_value("confidence"),
        default=DEFAULT_CONFIDENCE,
        help="confidence of the decision rule (default: %(default)s)",
    )
    for name in ("run_noise", "card_noise"):
        option = RULE_OPTIONS[name]
        parser.add_argument("--" + name.replace("_", "-"), type=_option_value(name), default=option.default,
                            help=f"as the plugin's {option.cli}: {option.cli_help}")
    parser.add_argument("--all", action="store_true", help="also list entries that did not change")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any test regressed")
    _add_format(parser)


@subcommand(
    "diff",
    help="compare two sets of baselines: a table per GPU key, verdicts by the plugin's rule",
    configure=_configure_diff,
)
def diff_command(args: argparse.Namespace) -> int:
    from ..core.baseline import read_set, read_set_at
    from ..core.settings import stated_prior
    from .diff import diff_baselines

    if args.git is not None:
        if len(args.paths) > 1:
            raise EnergyUsageError("--git REV compares one working-tree path with REV: give at most one PATH")
        path = Path(args.paths[0] if args.paths else "baselines")
        old, new = read_set_at(args.git, path), read_set(path)
    elif len(args.paths) == 2:
        old, new = (read_set(path) for path in args.paths)
    else:
        raise EnergyUsageError("give OLD and NEW (baselines folders or files), or --git REV [PATH]")
    diff = diff_baselines(old, new, args.tolerance, args.confidence,
                          stated_prior(args.run_noise, args.card_noise))
    if args.format == "json":
        print(views.render_json(diff))
    elif args.format == "markdown":
        print(views.render_markdown(diff, show_identical=args.all), end="")
    else:
        print(views.render_terminal(diff, show_identical=args.all))
    return 1 if args.fail_on_regression and diff.regressed else 0


def _configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        default="baselines",
        metavar="PATH",
        help="a baselines folder, one GPU folder, or one file (default: baselines)",
    )
    _add_format(parser)


@subcommand(
    "show", help="list the entries of a baselines folder, a table per GPU key", configure=_configure_show
)
def show_command(args: argparse.Namespace) -> int:
    from ..core.baseline import read_set

    print(views.render_entries(read_set(args.path), args.format), end="")
    return 0


# --- plots of a report and the history of recorded runs (drawn by plots.py) ------------------------------


def _configure_plots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", metavar="REPORT", help="a JSON report written by pytest --energy-json=REPORT")
    parser.add_argument("--out", metavar="DIR", help="folder for the PNG files (default: plots beside REPORT)")
    _add_format(parser)


@subcommand(
    "plots",
    help="draw the PNG plots of a JSON report, as pytest --energy-plots draws them",
    configure=_configure_plots,
)
def plots_command(args: argparse.Namespace) -> int:
    from ..core.plots import require_matplotlib, write_plots
    from ..core.results import read_report_document

    require_matplotlib(f"{PROG} plots")
    report = Path(args.report)
    document = read_report_document(report)
    folder = Path(args.out) if args.out else report.parent / "plots"
    try:
        written = write_plots(document, folder)
    except OSError as error:
        raise EnergyUsageError(f"{folder}: cannot write the plots there ({error.strerror or error}); "
                               "give another folder with --out") from None
    print(views.render_written_plots(display_path(report), display_path(folder), written, args.format), end="")
    return 0


def _png_path(text: str) -> Path:
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text!r} is not a .png file name")
    return Path(text)


def _configure_history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        default="baselines",
        metavar="PATH",
        help="a baselines folder, one GPU folder, or one file (default: baselines)",
    )
    parser.add_argument("--test", metavar="SUBSTRING", help="only tests whose id contains SUBSTRING")
    parser.add_argument("--plot", type=_png_path, metavar="FILE.png",
                        help="also draw each test's runs, relative to its first run, into FILE.png")
    _add_format(parser)


@subcommand(
    "history",
    help="each test's recorded runs over time, a table per GPU key (and a plot)",
    configure=_configure_history,
)
def history_command(args: argparse.Namespace) -> int:
    from ..core.baseline import read_set
    from ..core.history import histories

    baselines = read_set(args.path)
    found = histories(baselines, args.test)
    plot = None
    if args.plot is not None:
        from ..core.plots import write_history_plot

        if not found:
            raise EnergyUsageError(f"{baselines.label}: no recorded runs"
                                   + (f" of tests matching {args.test!r}" if args.test else "")
                                   + "; nothing to plot")
        try:
            write_history_plot(found, args.plot, baselines.label)
        except OSError as error:
            raise EnergyUsageError(f"{args.plot}: cannot write the plot ({error.strerror or error}); "
                                   "give another --plot path") from None
        plot = display_path(args.plot)
    print(views.render_history(baselines.label, found, args.format, test=args.test, plot=plot), end="")
    return 0


# --- entry point ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Energy of LLM inference workloads: bin traces, estimate, compare, advise."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help (0) or a usage error argparse already printed (2)
        return exit.code if isinstance(exit.code, int) else 2
    try:
        return args.run(args)
    except EnergyError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `llm-energy bins ... | head`
        sys.stderr.close()
        return 0
