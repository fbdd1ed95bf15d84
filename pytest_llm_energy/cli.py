"""The `llm-energy` command: one function per subcommand, registered by name (`bins`, `estimate`, `advise`).

To add a subcommand, write `configure(parser)` and `run(args) -> int` and register them with
`@subcommand("name", help=..., configure=...)`, here or in a module listed in SUBCOMMAND_MODULES.
Bad input of any kind (an EnergyError) prints one line `llm-energy: error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import EnergyError, EnergyUsageError
from .report import clean_json

PROG = "llm-energy"
# Modules whose import registers more subcommands (e.g. "pytest_llm_energy.diff_command").
SUBCOMMAND_MODULES: tuple[str, ...] = ()


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
    from .binning import BinEdges, bin_table

    edges = BinEdges.of(_edges(args.input_edges), _edges(args.output_edges))
    return bin_table(args.trace, edges, input_column=args.input_column, output_column=args.output_column)


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None or not math.isfinite(fraction) else f"{fraction:.2%}"


def _joules(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    for factor, unit in ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value:.3g} J"


def _tabulate(rows: list[list], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def _print_json(document) -> None:
    print(json.dumps(clean_json(document), indent=2, allow_nan=False))  # JSON has no NaN/inf: null


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
    parser.add_argument("--json", action="store_true", help="print the whole table as JSON")


@subcommand("bins", help="bin a trace: requests and tokens per input x output bin", configure=_configure_bins)
def bins_command(args: argparse.Namespace) -> int:
    from .traces import attribution_for

    table = _table_for(args)
    attribution = attribution_for(table.source)
    if args.json:
        _print_json(table.to_dict() | {"attribution": attribution})
        return 0
    # --top picks the largest bins (by tokens when sorting by tokens); --sort bin shows them in grid order
    rows = table.top(args.top, by="tokens" if args.sort == "tokens" else "requests")
    if args.sort == "bin":
        rows.sort(key=lambda row: row.bin)
    print(
        f"{table.trace}: {table.total_requests:,} requests, {table.total_tokens:,} tokens, "
        f"{len(table.bins)} non-empty bins"
    )
    print(
        _tabulate(
            [
                [
                    row.bin.label,
                    f"{row.requests:,}",
                    _percent(row.share_of_requests),
                    _percent(row.share_of_tokens),
                ]
                for row in rows
            ],
            ["bin", "requests", "share of requests", "share of tokens"],
        )
    )
    print(
        f"dropped (longer than in{table.edges.input_edges[-1]} or out{table.edges.output_edges[-1]}): "
        f"{table.dropped_requests:,} requests ({_percent(table.dropped_share)}), "
        f"{_percent(table.dropped_token_share)} of tokens"
    )
    if attribution:
        print(f"trace: {attribution}")
    return 0


# --- estimate -------------------------------------------------------------------------------------------


def _configure_estimate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", required=True, help="azure-conv, azure-code, or a CSV/JSONL path")
    parser.add_argument(
        "--results",
        required=True,
        metavar="PATH",
        help="a JSON report (--energy-json) or a baselines folder or file",
    )
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
    parser.add_argument("--json", action="store_true")


def model_config(name: str, *, explicit: bool) -> dict | None:
    """The HF config of a model: a config.json path, a packaged name via models.resolve_model, or its file.

    When the name came from the results rather than --model, failure means "no ideal", not an error.
    """
    path = Path(name)
    if path.suffix == ".json" or path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise EnergyUsageError(f"--model {name}: cannot read it as a config.json ({error})") from None
    try:
        from .models import resolve_model  # written beside this module; optional until it lands
    except ImportError:
        resolve_model = None
    if resolve_model is not None:
        try:
            return dict(resolve_model(name).config_dict())
        except EnergyError:
            if explicit:
                raise
            return None
    packaged = Path(__file__).parent / "configs" / name / "config.json"
    if packaged.is_file():
        return json.loads(packaged.read_text(encoding="utf-8"))
    if explicit:
        raise EnergyUsageError(
            f"--model {name}: unknown model; give a packaged name or a path to config.json"
        )
    return None


def _ideal_of(estimate, args: argparse.Namespace, results) -> tuple[dict | None, str]:
    """The FLOPs ideal of an estimate as (JSON, one line of text)."""
    chosen = results.select(
        configuration=estimate.configuration,
        batch_size=estimate.batch_size,
        decoding=estimate.decoding,
        gpu=estimate.gpu,
    )
    names = sorted({m.model for m in chosen.bins if m.model})
    name = args.model or (names[0] if len(names) == 1 else None)
    config = model_config(name, explicit=bool(args.model)) if name else None
    if config is None:
        why = f"no model config for {name}" if name else "the results name no model"
        return None, f"FLOPs ideal: not computed ({why}; pass --model NAME or a config.json path)"
    ideal = estimate.ideal(config, args.gpu or estimate.gpu)
    if ideal.joules is None:
        return ideal.to_dict(), f"FLOPs ideal: {ideal.reason}"
    ratio = ideal.ratio(estimate.joules)
    data = ideal.to_dict() | {"model": name, "measured_over_ideal": ratio}
    return data, (
        f"FLOPs ideal ({name} on {ideal.gpu}: {ideal.flops:.3g} FLOPs x {ideal.tdp_watts:g} W / "
        f"{ideal.bf16_peak_tflops:g} TFLOP/s bf16 peak): {_joules(ideal.joules)}; "
        f"measured / ideal = {ratio:.2f}x"
    )


def _estimate_lines(estimate, skipped: int, ideal_line: str) -> list[str]:
    lines = [
        f"results: {estimate.results} - {estimate.gpu}, {estimate.configuration}, "
        f"batch {estimate.batch_size}, "
        f"{estimate.decoding}; meter: {', '.join(estimate.meters) or 'not stated'}",
    ]
    if skipped:
        lines.append(f"skipped {skipped} entr{'y' if skipped == 1 else 'ies'} without a workload or a number")
    lines.append(
        f"{estimate.trace}: {estimate.total_requests:,} requests; {estimate.dropped_requests:,} "
        f"({_percent(estimate.dropped_share)}) are longer than the largest bins and not part of the estimate"
    )
    lines.append(
        f"measured bins hold {_percent(estimate.measured_share)} of requests; unmeasured bins hold "
        f"{_percent(estimate.unmeasured_share)}: {estimate.method_text}"
    )
    rows = []
    for item in sorted(estimate.bins, key=lambda i: (-i.trace_bin.requests, i.trace_bin.bin)):
        source = (
            "measured"
            if item.measured
            else f"from {item.measured_as.label}"
            if item.measured_as
            else "excluded"
        )
        per_token = item.joules_per_output_token
        rows.append(
            [
                item.trace_bin.bin.label,
                f"{item.trace_bin.requests:,}",
                _percent(item.trace_bin.share_of_requests),
                f"{per_token:.4g}" if per_token else "-",
                source,
                _joules(item.joules),
            ]
        )
    lines.append(_tabulate(rows, ["bin", "requests", "share", "J/output token", "J/token from", "energy"]))
    lines.append(
        f"energy of the trace: {_joules(estimate.joules)}; per 1,000 requests: "
        f"{_joules(estimate.joules_per_1000_requests)}; per output token: "
        f"{estimate.joules_per_output_token:.4g} J (trace lengths), "
        f"{estimate.joules_per_binned_output_token:.4g} J (bin edges, as measured)"
    )
    lines.append(ideal_line)
    return lines


@subcommand(
    "estimate",
    help="energy of a whole trace from measured bins (and the delta of two result sets)",
    configure=_configure_estimate,
)
def estimate_command(args: argparse.Namespace) -> int:
    from .estimate import estimate_workload, workload_delta
    from .results import load_results

    table = _table_for(args)
    runs = [(args.results, args.config)]
    if args.results_b:
        runs.append((args.results_b, args.config_b or args.config))
    estimates, documents, texts = [], [], []
    for path, configuration in runs:
        results = load_results(path)
        estimate = estimate_workload(
            table,
            results,
            unmeasured=args.unmeasured,
            gpu=args.gpu,
            configuration=configuration,
            batch_size=args.batch_size,
            decoding=args.decoding,
        )
        ideal, ideal_line = _ideal_of(estimate, args, results)
        estimates.append(estimate)
        documents.append(estimate.to_dict() | {"ideal": ideal, "skipped_entries": len(results.skipped)})
        texts.append(_estimate_lines(estimate, len(results.skipped), ideal_line))
    delta = workload_delta(*estimates) if len(estimates) == 2 else None
    if args.json:
        document = {"estimate": documents[0]}
        if delta is not None:
            document |= {
                "estimate_b": documents[1],
                "delta": {
                    "fraction": delta.fraction,
                    "sentence": delta.sentence,
                    "same_bins_measured": delta.same_bins_measured,
                },
            }
        _print_json(document)
        return 0
    for label, text in zip(("A", "B"), texts, strict=False):
        if delta is not None:
            print(f"== {label}")
        print("\n".join(text))
    if delta is not None:
        print("==")
        print(f"B vs A: {delta.sentence} ({_joules(delta.a.joules)} -> {_joules(delta.b.joules)})")
        if not delta.same_bins_measured:
            print(
                "note: A and B measured different bins; part of the delta comes from the unmeasured-bin "
                "method"
            )
    return 0


# --- advise ---------------------------------------------------------------------------------------------


def _configure_advise(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", required=True, help="azure-conv, azure-code, or a CSV/JSONL path")
    parser.add_argument(
        "--results",
        required=True,
        nargs="+",
        metavar="PATH",
        help="JSON reports and/or baselines folders holding the setups to compare",
    )
    parser.add_argument(
        "--baseline-config",
        required=True,
        metavar="LABEL",
        help="the setup you run today: a full setup label (config/bN/decoding) or a "
        "configuration label that names one setup",
    )
    _add_trace_options(parser)
    parser.add_argument("--json", action="store_true")


@subcommand(
    "advise",
    help="the lowest-energy setup per bin, and the saving on a trace against a baseline",
    configure=_configure_advise,
)
def advise_command(args: argparse.Namespace) -> int:
    from .advise import advise
    from .results import load_many

    table = _table_for(args)
    results = load_many(args.results)
    advice = advise(table, results, args.baseline_config)
    if args.json:
        _print_json(advice.to_dict() | {"skipped_entries": len(results.skipped)})
        return 0
    print(f"advice for {advice.trace}: {len(advice.setups)} setups; baseline {advice.baseline_setup}")
    if results.skipped:
        print(f"skipped {len(results.skipped)} entries without a workload or a number")
    print(
        f"compared: bins the baseline measured hold {_percent(advice.compared_share)} of requests; "
        f"{_percent(advice.uncompared_share)} are in bins it did not measure (left out of the comparison); "
        f"{_percent(advice.dropped_share)} are longer than the largest bins"
    )
    print(
        _tabulate(
            [
                [
                    item.trace_bin.bin.label,
                    _percent(item.trace_bin.share_of_requests),
                    f"{item.baseline_joules_per_output_token:.4g}"
                    if item.baseline_joules_per_output_token
                    else "-",
                    item.best_setup,
                    f"{item.best_joules_per_output_token:.4g}",
                    _percent(item.saving),
                ]
                for item in advice.bins
            ],
            ["bin", "share", "baseline J/token", "lowest-energy setup", "J/token", "saving"],
        )
    )
    if advice.ranking:
        print("setups measured on every compared bin:")
        print(
            _tabulate(
                [
                    [total.setup, _joules(total.joules_per_1000_requests), f"{total.change:+.1%}"]
                    for total in advice.ranking
                ],
                ["setup", "energy per 1,000 requests", "vs baseline"],
            )
        )
    if advice.incomplete_setups:
        print(f"not ranked (missing some compared bins): {', '.join(advice.incomplete_setups)}")
    print(f"=> {advice.sentence}")
    return 0


# --- diff and show (the logic is in diff.py) -------------------------------------------------------------


def _option_value(name: str):
    """An argparse type that checks a value as the plugin's option of that name does (one place per fact)."""
    from .config import OPTIONS_BY_NAME

    def parse(text: str):
        try:
            return OPTIONS_BY_NAME[name].parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("terminal", "markdown", "json"),
        default="terminal",
        help="terminal table, GitHub Markdown (for a pull request), or JSON",
    )
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="= --format json")


def _configure_diff(parser: argparse.ArgumentParser) -> None:
    from .config import OPTIONS_BY_NAME
    from .stats import DEFAULT_CONFIDENCE

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
        default=OPTIONS_BY_NAME["tolerance"].default,
        help="allowed relative change of J per output token (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence",
        type=_option_value("confidence"),
        default=DEFAULT_CONFIDENCE,
        help="confidence of the decision rule (default: %(default)s)",
    )
    parser.add_argument(
        "--card-noise",
        type=_option_value("card_noise"),
        default=OPTIONS_BY_NAME["card_noise"].default,
        help="spread between GPUs of one model, used where two entries were measured on different GPUs "
        "(default: %(default)s, as the plugin)",
    )
    parser.add_argument("--all", action="store_true", help="also list entries that did not change")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any test regressed")
    _add_format(parser)


@subcommand(
    "diff",
    help="compare two sets of baselines: a table per GPU key, verdicts by the plugin's rule",
    configure=_configure_diff,
)
def diff_command(args: argparse.Namespace) -> int:
    from . import diff as review

    if args.git is not None:
        if len(args.paths) > 1:
            raise EnergyUsageError("--git REV compares one working-tree path with REV: give at most one PATH")
        path = Path(args.paths[0] if args.paths else "baselines")
        old, new = review.read_baseline_set_at(args.git, path), review.read_baseline_set(path)
    elif len(args.paths) == 2:
        old, new = (review.read_baseline_set(path) for path in args.paths)
    else:
        raise EnergyUsageError("give OLD and NEW (baselines folders or files), or --git REV [PATH]")
    diff = review.diff_baselines(old, new, args.tolerance, args.confidence, args.card_noise)
    if args.format == "json":
        print(review.render_json(diff))
    elif args.format == "markdown":
        print(review.render_markdown(diff, show_identical=args.all), end="")
    else:
        print(review.render_terminal(diff, show_identical=args.all))
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
    from . import diff as review

    print(review.render_entries(review.read_baseline_set(args.path), args.format), end="")
    return 0


# --- entry point ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog=PROG, description="Energy of LLM inference workloads: bin traces, estimate, compare, advise."
    )
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


if __name__ == "__main__":
    # Run the imported module's main, so subcommands registered by other modules land in the same registry.
    from pytest_llm_energy.cli import main as _main

    sys.exit(_main())
