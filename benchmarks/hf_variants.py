"""Which static-cache / torch.compile combinations of HF `generate` work in transformers 5.x, and what they cost.

For each variant and batch size: build the model (random weights from a packaged config), warm up the
shape, check every request yields exactly the asked tokens, then time `--repeats` calls. Prints a table and
writes JSON. Energy: `measure(fn) -> (seconds, joules)` is the one place a meter plugs in; `--meter nvml`
uses the plugin's NVML meter, the default measures time only.

On a GPU (what it is for):
    python benchmarks/hf_variants.py --out results/hf-variants
On the CPU (a quick check that every code path runs):
    python benchmarks/hf_variants.py --device cpu --model tiny-llama --out /tmp/hf-variants

Variants (see pytest_llm_energy/plugin/backends/hf.py for why the backend uses the "static+compile" path):
  eager-attn                       attn_implementation="eager", dynamic cache
  sdpa                             SDPA attention, dynamic cache (transformers' default)
  sdpa+static                      static cache, disable_compile=True (no compilation anywhere)
  sdpa+static+compile              static cache; generate compiles the decode step itself with
                                   CompileConfig(mode="reduce-overhead") = inductor + CUDA graphs
  sdpa+static+compile-default      the same with mode="default": inductor kernels, no CUDA graphs
  sdpa+static+compile-fullgraph    reduce-overhead with fullgraph=True (fails loudly on a graph break)
  manual-forward+early-cache       model.forward = torch.compile(reduce-overhead) by hand, generate's own
                                   compile off, and a StaticCache allocated (and marked static) before the
                                   first call and reset between calls
  manual-forward+static (expected to fail on CUDA)
                                   model.forward = torch.compile(reduce-overhead) + cache_implementation=
                                   "static": the combination that failed on transformers 5.17 with
                                   "accessing tensor output of CUDAGraphs that has been overwritten"
                                   (run last; kept to see whether a new release fixed it)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pytest_llm_energy.core.backend_options import BackendOptions  # noqa: E402
from pytest_llm_energy.core.models import resolve_model  # noqa: E402
from pytest_llm_energy.core.workload import Workload  # noqa: E402
from pytest_llm_energy.plugin.backends.hf import HFBackend  # noqa: E402

# measure(fn) runs fn once and returns (seconds, joules or None).
Measure = Callable[[Callable[[], object]], tuple[float, float | None]]


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    options: dict  # BackendOptions fields (besides device and dtype)
    manual: str | None = None  # "early-cache" | "static": compile model.forward by hand
    expected_to_fail_on_cuda: bool = False


VARIANTS = (
    Variant("eager-attn", {"attention": "eager"}),
    Variant("sdpa", {}),
    Variant("sdpa+static", {"static_cache": True}),
    Variant("sdpa+static+compile", {"compile": True, "extra": (("compile_mode", "reduce-overhead"),)}),
    Variant("sdpa+static+compile-default", {"compile": True, "extra": (("compile_mode", "default"),)}),
    Variant("sdpa+static+compile-fullgraph", {"compile": True, "extra": (("compile_fullgraph", True),
                                                                          ("compile_mode", "reduce-overhead"))}),
    Variant("manual-forward+early-cache", {}, manual="early-cache"),
    Variant("manual-forward+static", {}, manual="static", expected_to_fail_on_cuda=True),
)


# -- measuring ---------------------------------------------------------------------------------------------------
def time_only(device: str) -> Measure:
    import torch

    def measure(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started, None

    return measure


def with_meter(meter, device: str) -> Measure:
    """Any plugin Meter (begin/end -> Reading) as a measure function."""
    import torch

    def measure(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        start = meter.begin()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        reading = meter.end(start)
        return reading.seconds, reading.joules

    return measure


def make_measure(kind: str, device: str) -> Measure:
    if kind == "time":
        return time_only(device)
    if kind == "nvml":
        from pytest_llm_energy.plugin.meters.nvml import NvmlMeter

        return with_meter(NvmlMeter(), device)
    if kind == "cpu-time":
        from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter

        return with_meter(CpuTimeMeter(), device)
    raise SystemExit(f"--meter {kind!r}: use time, nvml or cpu-time")


# -- one variant -------------------------------------------------------------------------------------------------
def build_call(backend: HFBackend, variant: Variant, workload: Workload) -> Callable[[], object]:
    """The generate call of a variant, checked for exact token counts by the backend on every call."""
    prepared = backend.prepare(workload)
    if variant.manual is None:
        return lambda: backend.generate(prepared)
    import torch

    model = backend._model
    if not hasattr(model, "_llm_energy_compiled_forward"):
        model.forward = torch.compile(model.forward, mode="reduce-overhead")
        model._llm_energy_compiled_forward = True
    kwargs = dict(prepared.generate_kwargs)
    if variant.manual == "static":
        kwargs.update(cache_implementation="static")
        manual = dataclasses.replace(prepared, generate_kwargs=kwargs)
        return lambda: backend.generate(manual)
    from transformers import StaticCache

    config = model.config
    heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache = StaticCache(config=config, max_cache_len=workload.input_tokens + workload.output_tokens)
    # Allocated (and marked as static addresses) outside any compiled region: CUDA graphs may then keep it.
    cache.early_initialization(batch_size=workload.batch_size, num_heads=heads, head_dim=head_dim,
                               dtype=model.dtype, device=model.device)
    kwargs.update(past_key_values=cache, disable_compile=True)
    manual = dataclasses.replace(prepared, generate_kwargs=kwargs)

    def call():
        cache.reset()
        return backend.generate(manual)

    return call


def run_variant(variant: Variant, args, measure: Measure, reference_ids: dict) -> list[dict]:
    """All batch sizes of one variant on one freshly built model (the same random weights every time)."""
    import torch

    options = BackendOptions(device=args.device, dtype=args.dtype, **variant.options)
    results = []
    backend = HFBackend(resolve_model(args.model), options)
    torch.manual_seed(0)  # identical random weights in every variant, so greedy outputs can be compared
    started = time.perf_counter()
    try:
        backend.load()
    except Exception as error:
        return [failure(variant, batch, args, error, "load") for batch in args.batch_sizes]
    load_s = time.perf_counter() - started
    generated = record_generated_ids(backend)
    try:
        for batch in args.batch_sizes:
            workload = Workload(input_tokens=args.input_tokens, output_tokens=args.output_tokens, batch_size=batch)
            try:
                call = build_call(backend, variant, workload)
                first_s, _ = measure(call)  # includes compilation and CUDA-graph capture for this shape
                ids = generated["ids"][:, -workload.output_tokens:].tolist()
                for _ in range(args.warmup - 1):
                    measure(call)
                samples = [measure(call) for _ in range(args.repeats)]
            except Exception as error:
                results.append(failure(variant, batch, args, error, "generate"))
                continue
            result = summarize(variant, workload, load_s, first_s, samples)
            # Greedy tokens equal to the first variant's mean the same computation; bf16 kernels may differ a
            # little (random weights make near-ties), so this is reported, not enforced.
            reference = reference_ids.setdefault(batch, ids)
            result["same_tokens_as_first_variant"] = _agreement(ids, reference)
            results.append(result)
    finally:
        backend.close()
        if variant.manual is not None:
            torch._dynamo.reset()
    return results


def record_generated_ids(backend: HFBackend) -> dict:
    """Keeps the ids of the model's last generate call (the backend only returns counts)."""
    model = backend._model
    original = model.generate
    generated: dict = {}

    def recording_generate(*args, **kwargs):
        generated["ids"] = original(*args, **kwargs)
        return generated["ids"]

    model.generate = recording_generate
    return generated


def _agreement(ids: list[list[int]], reference: list[list[int]]) -> float:
    pairs = [(a, b) for row, ref in zip(ids, reference, strict=True) for a, b in zip(row, ref, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)


def summarize(variant: Variant, workload: Workload, load_s: float, first_s: float, samples) -> dict:
    seconds = [s for s, _ in samples]
    joules = [j for _, j in samples if j is not None]
    median_s = statistics.median(seconds)
    result = {
        "variant": variant.name, "batch_size": workload.batch_size, "input_tokens": workload.input_tokens,
        "output_tokens": workload.output_tokens, "status": "ok", "load_s": load_s, "first_call_s": first_s,
        "median_s": median_s, "cv_s": statistics.pstdev(seconds) / statistics.fmean(seconds),
        "output_tokens_per_s": workload.total_output_tokens / median_s, "seconds": seconds,
    }
    if joules:
        result.update(joules=joules, joules_per_output_token=statistics.median(joules) / workload.total_output_tokens)
    return result


def failure(variant: Variant, batch: int, args, error: BaseException, stage: str) -> dict:
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    return {"variant": variant.name, "batch_size": batch, "input_tokens": args.input_tokens,
            "output_tokens": args.output_tokens, "status": "failed", "stage": stage,
            "error": f"{type(error).__name__}: {first_line}",
            "expected_to_fail": variant.expected_to_fail_on_cuda and args.device == "cuda",
            "traceback": traceback.format_exception(error)[-8:]}


# -- the run ---------------------------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def table(results: list[dict]) -> str:
    has_joules = any("joules_per_output_token" in r for r in results)
    header = ["variant", "batch", "status", "first s", "median s", "cv", "tok/s", "same"] + (
        ["J/tok"] if has_joules else [])
    rows = [header]
    for r in results:
        if r["status"] == "ok":
            row = [r["variant"], str(r["batch_size"]), "ok", f"{r['first_call_s']:.2f}", f"{r['median_s']:.3f}",
                   f"{r['cv_s']:.1%}", f"{r['output_tokens_per_s']:.0f}", f"{r['same_tokens_as_first_variant']:.0%}"]
            if has_joules:
                row.append(f"{r.get('joules_per_output_token', math.nan):.4f}")
        else:
            status = "FAILED (expected)" if r.get("expected_to_fail") else "FAILED"
            row = [r["variant"], str(r["batch_size"]), status, "", "", "", "", r["error"][:60]]
            row += [""] if has_joules else []
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for hf_variants.json")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available")
    parser.add_argument("--model", default=None, help="default: llama-3.2-1b on cuda, tiny-llama on cpu")
    parser.add_argument("--dtype", default="auto", help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--batch-sizes", type=lambda text: [int(b) for b in text.split(",")], default=None,
                        help="default: 1,8 on cuda, 2 on cpu")
    parser.add_argument("--input-tokens", type=int, default=None, help="default: 256 (cuda), 32 (cpu)")
    parser.add_argument("--output-tokens", type=int, default=None, help="default: 128 (cuda), 8 (cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="calls before timing, the first one reported "
                        "(default: 3 on cuda: compile, then CUDA-graph recording; 1 on cpu)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default: 10 cuda, 2 cpu)")
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS))
    parser.add_argument("--meter", default="time", help="time (default), nvml, or cpu-time")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = args.device == "cuda"
    args.model = args.model or ("llama-3.2-1b" if gpu else "tiny-llama")
    args.batch_sizes = args.batch_sizes or ([1, 8] if gpu else [2])
    args.input_tokens = args.input_tokens or (256 if gpu else 32)
    args.output_tokens = args.output_tokens or (128 if gpu else 8)
    args.warmup = max(1, args.warmup or (3 if gpu else 1))
    args.repeats = args.repeats or (10 if gpu else 2)
    known = {v.name: v for v in VARIANTS}
    unknown = [name for name in args.variants.split(",") if name not in known]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}")
    args.selected = [known[name] for name in args.variants.split(",")]
    return args


def main(argv=None, measure: Measure | None = None) -> list[dict]:
    args = parse_args(argv)
    measure = measure or make_measure(args.meter, args.device)
    results: list[dict] = []
    reference_ids: dict = {}
    for variant in args.selected:
        print(f"[hf_variants] {variant.name} ...", flush=True)
        results.extend(run_variant(variant, args, measure, reference_ids))
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment(args.device), "model": args.model, "meter": args.meter,
              "warmup": args.warmup, "repeats": args.repeats, "results": results}
    path = args.out / "hf_variants.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"[hf_variants] wrote {path}")
    return results


if __name__ == "__main__":
    main()
