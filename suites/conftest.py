"""Shared setup of the ready-made suites: which profile runs where, and the suites' workloads.

A suite file marks its tests `@pytest.mark.suite(profile="gpu")` (or "cpu") and asks for the bins of a trace
with `@pytest.mark.trace_workloads(trace=..., top_k=..., decodings=..., batch_sizes=...)`; the batch sizes
come from `--suite-batch-sizes` (or the ini key `suite_batch_sizes`), so one flag sizes a run to a runner,
else from the suite's marker (the chat suite: 32 and 128), else GPU_BATCH_SIZES.

The GPU suites run HF `generate` compiled (`pytest.mark.energy(compile=True)` in each file; static cache +
CUDA graphs): eager HF at these sizes leaves the GPU idle for most of each window while Python dispatches
kernels, and such bins move with the runner's CPU. Each result shows how busy its GPU was
(benchmarks/README.md section 10).
"""

from __future__ import annotations

import pytest

from pytest_llm_energy.core.binning import bin_params

# The trace suites' batch sizes where a suite names none (the committed baselines hold these).
GPU_BATCH_SIZES = (32,)
CPU_BATCH_SIZES = (1, 4)


def pytest_addoption(parser):
    group = parser.getgroup("llm-energy suites")
    group.addoption("--suite-batch-sizes", default=None,
                    help=f"comma-separated batch sizes of every trace suite (default: each suite's own, else "
                         f"{','.join(map(str, GPU_BATCH_SIZES))} on a GPU; CPU profile: {','.join(map(str, CPU_BATCH_SIZES))})")
    group.addoption("--suite-top-bins", type=int, default=None,
                    help="how many of a trace's largest bins each trace suite runs (default: per suite)")
    parser.addini("suite_batch_sizes", "batch sizes of the trace suites, e.g. 8,32", default=None)


def pytest_configure(config):
    config.addinivalue_line("markers", "suite(profile): 'gpu' suites skip on --energy-gpu=cpu, 'cpu' ones elsewhere")
    config.addinivalue_line("markers", "trace_workloads(trace, top_k, decodings, batch_sizes, max_input_tokens, "
                                       "max_output_tokens): parametrize `workload` with the largest bins of a trace")


def _gpu_key(config) -> str:
    from pytest_llm_energy.plugin import SESSION_KEY

    return config.stash[SESSION_KEY].gpu_key


def _batch_sizes(config, profile: str, fixed) -> tuple[int, ...]:
    text = config.getoption("--suite-batch-sizes") or config.getini("suite_batch_sizes")
    if text:
        try:
            sizes = tuple(int(part) for part in str(text).split(",") if part.strip())
        except ValueError:
            raise pytest.UsageError(f"--suite-batch-sizes: expected numbers such as 8,32, got {text!r}") from None
        if not sizes or min(sizes) < 1:
            raise pytest.UsageError(f"--suite-batch-sizes: expected positive numbers, got {text!r}")
        return sizes
    if fixed:
        return tuple(fixed)
    return CPU_BATCH_SIZES if profile == "cpu" else GPU_BATCH_SIZES


def pytest_generate_tests(metafunc):
    mark = metafunc.definition.get_closest_marker("trace_workloads")
    if mark is None or "workload" not in metafunc.fixturenames:
        return
    suite = metafunc.definition.get_closest_marker("suite")
    profile = suite.kwargs.get("profile", "gpu") if suite else "gpu"
    top_k = metafunc.config.getoption("--suite-top-bins") or mark.kwargs.get("top_k", 3)
    params = bin_params(
        mark.kwargs["trace"], top_k=top_k, decodings=mark.kwargs.get("decodings", ("greedy",)),
        batch_sizes=_batch_sizes(metafunc.config, profile, mark.kwargs.get("batch_sizes")),
        max_input_tokens=mark.kwargs.get("max_input_tokens"), max_output_tokens=mark.kwargs.get("max_output_tokens"),
    )
    # Batch size outermost: a vLLM engine is sized to one batch (max_num_seqs), so fewer reloads.
    params.sort(key=lambda param: param.values[0].batch_size)
    metafunc.parametrize("workload", params)


def pytest_collection_modifyitems(config, items):
    _group_by_backend(items)
    gpu_key = _gpu_key(config)
    for item in items:
        suite = item.get_closest_marker("suite")
        if suite is None:
            continue
        profile = suite.kwargs.get("profile", "gpu")
        if profile == "gpu" and gpu_key == "cpu":
            item.add_marker(pytest.mark.skip(
                reason="GPU suite: run it on a GPU runner with --energy-gpu=<key> (h100, h200, ...) or auto"))
        elif profile == "cpu" and gpu_key != "cpu":
            item.add_marker(pytest.mark.skip(reason="CPU profile: runs with --energy-gpu=cpu"))


def _group_by_backend(items) -> None:
    """Within each file, the cases of one backend run together: a switch of backend unloads the model (one
    is resident at a time), so hf, vllm, hf, vllm would load and compile each twice."""
    first_of_file: dict = {}
    for index, item in enumerate(items):
        first_of_file.setdefault(item.path, index)

    def key(indexed):
        index, item = indexed
        params = getattr(getattr(item, "callspec", None), "params", {})
        return first_of_file[item.path], str(params.get("backend", "")), index

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]
