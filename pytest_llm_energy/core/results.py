"""Measured results as value objects: one MeasuredBin per binned workload, from a JSON report or baselines.

Both files the plugin writes carry, per test, the workload it ran and the backend that ran it; that is all the
workload estimate and the advice need. Entries of plain `energy.measure()` tests have no workload: they are
skipped and counted, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from . import baseline
from .backend_options import BackendOptions
from .binning import Bin
from .errors import EnergyError, EnergyUsageError
from .files import positive_number, read_json
from .measurement import meter_label
from .run_report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, RunReport
from .workload import Workload

# An option equal to its default (as BackendOptions writes it) is left out of a configuration label, so labels
# stay short and stable across plugin versions.
_OPTION_DEFAULTS: dict[str, object] = BackendOptions().to_dict()
_SHORT_OPTION_NAMES = {"tensor_parallel_size": "tp"}


@dataclass(frozen=True)
class MeasuredBin:
    """One measured workload: a bin at a batch size and decoding, on one configuration and GPU."""

    bin: Bin
    batch_size: int
    decoding: str  # Decoding.label: "greedy", "sampling-t0.7-p0.9", "beam4"
    configuration: str  # backend/model/dtype plus options that differ from the defaults
    joules_per_output_token: float
    gpu: str
    nodeid: str
    source: str  # the file it was read from
    model: str | None = None  # the model name, for the FLOPs ideal
    meter: str | None = None  # "nvml (measured)", "cpu-time (estimated)"
    samples: tuple[float, ...] = ()

    @property
    def batch_joules(self) -> float:
        """Energy of one full batch of this bin: J/token x batch size x output tokens."""
        return self.joules_per_output_token * self.batch_size * self.bin.output_tokens

    @property
    def setup(self) -> str:
        """Everything but the bin: what the advice compares."""
        return f"{self.configuration}/b{self.batch_size}/{self.decoding}"


@dataclass(frozen=True)
class SkippedEntry:
    nodeid: str
    source: str
    reason: str


@dataclass(frozen=True)
class ResultSet:
    """Measured bins from one or more files, with what was skipped and how the numbers were metered."""

    sources: tuple[str, ...]
    bins: tuple[MeasuredBin, ...]
    skipped: tuple[SkippedEntry, ...] = ()

    @property
    def label(self) -> str:
        return ", ".join(self.sources)

    @property
    def meters(self) -> tuple[str, ...]:
        """Which meters produced these numbers, e.g. ("nvml (measured)",): every report says so."""
        return tuple(dict.fromkeys(measured.meter for measured in self.bins if measured.meter))

    def values(self, attribute: str) -> list:
        return sorted({getattr(measured, attribute) for measured in self.bins})

    def select(self, **wanted) -> ResultSet:
        """Only the bins whose attributes equal the given ones (None = any)."""
        chosen = tuple(
            measured
            for measured in self.bins
            if all(value is None or getattr(measured, name) == value for name, value in wanted.items())
        )
        return replace(self, bins=chosen)

    def __add__(self, other: ResultSet) -> ResultSet:
        return ResultSet(self.sources + other.sources, self.bins + other.bins, self.skipped + other.skipped)


def dtype_label(options: Mapping, gpu: str) -> str:
    dtype = str(options.get("dtype") or "auto")
    if dtype == "auto":  # the backends' rule: bf16 on a GPU, fp32 on the CPU
        return "fp32" if gpu == "cpu" else "bf16"
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)


def configuration_label(backend: Mapping | None, gpu: str) -> str:
    """'hf/llama-3.2-1b/bf16', then '+option' for each option that differs from its default.

    Booleans read `+compile` or `+no-cuda_graphs`; other values `+tp=2`, `+attention=eager`.
    """
    backend = backend if isinstance(backend, Mapping) else {}
    model = backend.get("model")
    model_name = model.get("name") if isinstance(model, Mapping) else model
    options = backend.get("options") if isinstance(backend.get("options"), Mapping) else {}
    parts = [
        f"{backend.get('backend') or 'unknown-backend'}/{model_name or 'unknown-model'}/"
        f"{dtype_label(options, gpu)}"
    ]
    for name in sorted(options):
        if name == "dtype":
            continue
        value = options[name]
        if _is_default(name, value):
            continue
        short = _SHORT_OPTION_NAMES.get(name, name)
        if name == "extra" and isinstance(value, Mapping):
            parts.extend(f"{key}={_plain(item)}" for key, item in sorted(value.items()))
        elif value is True:
            parts.append(short)
        elif value is False:
            parts.append(f"no-{short}")
        else:
            parts.append(f"{short}={_plain(value)}")
    return "+".join(parts)


def _is_default(name: str, value) -> bool:
    if name not in _OPTION_DEFAULTS:
        return value is None
    default = _OPTION_DEFAULTS[name]
    if _infinite(default):
        # an infinite request rate is written as "inf" by BackendOptions.to_dict (strict JSON has no
        # Infinity), as null by older baseline files and as Infinity by plain json.dumps
        return value is None or _infinite(value)
    return value == default


def _infinite(value) -> bool:
    return value == "inf" or (isinstance(value, float) and math.isinf(value))


def _plain(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _measured(
    nodeid: str, entry: Mapping, gpu: str, source: str, default_meter: str | None
) -> MeasuredBin | SkippedEntry:
    raw = entry.get("workload")
    if not raw:
        return SkippedEntry(nodeid, source, "no workload (a plain energy.measure() test)")
    if not positive_number(entry.get("joules_per_token")):
        return SkippedEntry(
            nodeid, source, f"no measured joules_per_token ({entry.get('joules_per_token')!r})"
        )
    try:
        if not isinstance(raw, Mapping):
            raise TypeError("not an object")
        workload = Workload.from_dict(raw)
    except (TypeError, ValueError, EnergyError) as error:
        raise EnergyUsageError(f"{source}: entry {nodeid!r} has an unreadable workload ({error})") from None
    backend = entry.get("backend")
    model = backend.get("model") if isinstance(backend, Mapping) else None
    samples = entry.get("samples")
    return MeasuredBin(
        bin=Bin(workload.input_tokens, workload.output_tokens),
        batch_size=workload.batch_size,
        decoding=workload.decoding.label,
        configuration=configuration_label(backend, gpu),
        joules_per_output_token=float(entry["joules_per_token"]),
        gpu=gpu,
        nodeid=nodeid,
        source=source,
        model=(model.get("name") if isinstance(model, Mapping) else None) or None,
        meter=_meter_label(entry) or default_meter,
        samples=tuple(float(s) for s in samples if positive_number(s)) if isinstance(samples, list) else (),
    )


def _collect(
    pairs: Iterable[tuple[str, Mapping, str]], source: str, default_meter: str | None = None
) -> ResultSet:
    bins, skipped = [], []
    for nodeid, entry, gpu in pairs:
        item = _measured(nodeid, entry, gpu, source, default_meter)
        (bins if isinstance(item, MeasuredBin) else skipped).append(item)
    return ResultSet((source,), tuple(bins), tuple(skipped))


def _meter_label(data: Mapping) -> str | None:
    """The meter an entry or report names, labelled; None where it names none."""
    return meter_label(data["meter"], bool(data.get("estimated"))) if data.get("meter") else None


def _read_json(path: Path):
    return read_json(path, error=EnergyUsageError, fix="give a JSON report or a baselines folder")


def read_report(path: Path, data: Mapping | None = None) -> ResultSet:
    """A JSON report written by `pytest --energy-json=PATH`."""
    path = Path(path)
    data = _read_json(path) if data is None else data
    if not isinstance(data, Mapping) or data.get("schema") != REPORT_SCHEMA:
        raise EnergyUsageError(
            f'{path}: not a pytest-llm-energy report (missing "schema": "{REPORT_SCHEMA}")'
        )
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EnergyUsageError(f"{path}: schema_version must be a positive integer, got {version!r}")
    if version > REPORT_SCHEMA_VERSION:
        raise EnergyUsageError(
            f"{path}: written by a newer pytest-llm-energy (report schema {version}; this one reads "
            f"{REPORT_SCHEMA_VERSION}); upgrade the plugin"
        )
    results = data.get("results")
    if not isinstance(results, list):
        raise EnergyUsageError(f'{path}: "results" must be a list of test results')
    gpu = str(data.get("gpu") or "unknown")
    pairs = []
    for number, result in enumerate(results):
        if not isinstance(result, Mapping):
            raise EnergyUsageError(f"{path}: result {number} is not an object")
        pairs.append((str(result.get("nodeid") or f"result {number}"), result, gpu))
    return _collect(pairs, str(path), _meter_label(data))


def read_report_document(path: Path) -> RunReport:
    """The whole of a JSON report (`pytest --energy-json=PATH`), checked as `read_report` checks it."""
    path = Path(path)
    fix = "give the file written by pytest --energy-json=PATH"
    if not path.is_file():
        raise EnergyUsageError(f"{path}: no such report file; {fix}")
    data = read_json(path, error=EnergyUsageError, fix=fix)
    schema = data.get("schema") if isinstance(data, Mapping) else None
    if schema == baseline.SCHEMA:
        raise EnergyUsageError(f"{path}: a baseline file, not a report; {fix} (llm-energy history draws "
                               "the runs of baselines)")
    if schema != REPORT_SCHEMA:
        raise EnergyUsageError(f'{path}: not a pytest-llm-energy report ("schema" is {schema!r}); {fix}')
    read_report(path, data=data)
    return RunReport.from_dict(data)


def read_baselines(path: Path) -> ResultSet:
    """A baselines root (`baselines/`), one GPU folder (`baselines/h100/`) or one baseline file."""
    found = baseline.read_set(path, label=str(path))
    pairs = [(nodeid, entry.data, gpu) for (gpu, nodeid), entry in sorted(found.entries.items())]
    return _collect(pairs, str(path))


def load_results(path: str | Path) -> ResultSet:
    """A JSON report file, a baseline file, or a baselines folder: whichever `path` is."""
    path = Path(path)
    if not path.exists():
        raise EnergyUsageError(f"{path}: no such results file or baselines folder")
    if path.is_file():
        data = _read_json(path)
        schema = data.get("schema") if isinstance(data, Mapping) else None
        if schema == REPORT_SCHEMA:
            return read_report(path, data)
        if schema == baseline.SCHEMA:
            return read_baselines(path)
        raise EnergyUsageError(
            f'{path}: neither a pytest-llm-energy report nor a baseline file ("schema" is {schema!r}); '
            "give the file written by --energy-json or a baselines folder"
        )
    return read_baselines(path)


def load_many(paths: Iterable[str | Path]) -> ResultSet:
    sets = [load_results(path) for path in paths]
    if not sets:
        raise EnergyUsageError("no results given; pass a JSON report or a baselines folder")
    combined = sets[0]
    for more in sets[1:]:
        combined = combined + more
    return combined
