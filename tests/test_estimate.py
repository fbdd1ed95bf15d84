"""Reading measured results; the workload estimate and delta on constructed results, numbers by hand.

The constructed trace (12 requests):
    6 x (100 in, 10 out)  -> in128-out16      3 x (300 in, 50 out) -> in512-out64
    1 x (200 in, 12 out)  -> in256-out16      2 dropped: (9000, 5) and (10, 600)
Measured at batch 2: in128-out16 at 0.5 J/token, in512-out64 at 0.25 J/token; in256-out16 unmeasured.
"""

from __future__ import annotations

import json

import pytest

from pytest_llm_energy.cli.estimate import estimate_workload, nearest_measured, workload_delta
from pytest_llm_energy.core.backend_options import BackendOptions
from pytest_llm_energy.core.baseline import BaselineStore
from pytest_llm_energy.core.binning import Bin, bin_table
from pytest_llm_energy.core.errors import EnergyUsageError
from pytest_llm_energy.core.files import clean_for_json
from pytest_llm_energy.core.results import configuration_label, load_many, load_results

TRACE_ROWS = [(100, 10)] * 6 + [(300, 50)] * 3 + [(200, 12), (9000, 5), (10, 600)]


def options(**changes) -> dict:
    # what the plugin writes: BackendOptions.to_dict() through the JSON cleaning (inf -> null)
    return clean_for_json(BackendOptions(**changes).to_dict())


def result(
    nodeid,
    input_tokens,
    output_tokens,
    batch_size,
    joules_per_token,
    *,
    backend="hf",
    model="tiny-llama",
    decoding=None,
    opts=None,
):
    return {
        "nodeid": nodeid,
        "joules_per_token": joules_per_token,
        "samples": [joules_per_token],
        "baseline_joules_per_token": None,
        "delta": None,
        "verdict": "new",
        "meter": "nvml",
        "estimated": False,
        "workload": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "batch_size": batch_size,
            "decoding": decoding or {"kind": "greedy", "temperature": 1.0, "top_p": 1.0, "num_beams": 1},
            "seed": 0,
        },
        "backend": {
            "backend": backend,
            "model": {"name": model, "source": "packaged", "reference": model, "weights": "random"},
            "options": opts if opts is not None else options(),
        },
    }


def report(results, gpu="h100") -> dict:
    return {
        "schema": "pytest-llm-energy/report",
        "schema_version": 1,
        "gpu": gpu,
        "meter": "nvml",
        "estimated": False,
        "fingerprint": {},
        "results": results,
    }


def write_json(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(
        "input_tokens,output_tokens\n" + "".join(f"{i},{o}\n" for i, o in TRACE_ROWS), encoding="utf-8"
    )
    return bin_table(path)


@pytest.fixture
def report_a(tmp_path):
    return write_json(
        tmp_path / "a.json",
        report(
            [
                result("suites/test_chat.py::test_chat[in128-out16-b2-greedy]", 128, 16, 2, 0.5),
                result("suites/test_chat.py::test_chat[in512-out64-b2-greedy]", 512, 64, 2, 0.25),
                {
                    "nodeid": "tests/test_model.py::test_generate",
                    "joules_per_token": 0.4,
                    "samples": [0.4],
                    "baseline_joules_per_token": None,
                    "delta": None,
                    "verdict": "new",
                    "workload": None,
                    "backend": None,
                },
            ]
        ),
    )


# --- results.py -----------------------------------------------------------------------------------------


def test_report_becomes_measured_bins(report_a):
    results = load_results(report_a)
    assert len(results.bins) == 2 and len(results.skipped) == 1
    assert results.skipped[0].nodeid == "tests/test_model.py::test_generate"
    first = results.bins[0]
    assert first.bin == Bin(128, 16) and first.batch_size == 2 and first.decoding == "greedy"
    assert first.configuration == "hf/tiny-llama/bf16"
    assert first.gpu == "h100" and first.model == "tiny-llama" and first.meter == "nvml (measured)"
    assert first.batch_joules == pytest.approx(0.5 * 2 * 16)  # J/token x batch x output tokens
    assert first.setup == "hf/tiny-llama/bf16/b2/greedy"


def test_configuration_labels_name_options_that_differ():
    backend = {
        "backend": "vllm",
        "model": {"name": "llama-3.1-8b"},
        "options": options(compile=True, tensor_parallel_size=2, cuda_graphs=False),
    }
    assert configuration_label(backend, "h100") == "vllm/llama-3.1-8b/bf16+compile+no-cuda_graphs+tp=2"
    assert (
        configuration_label({"backend": "hf", "model": {"name": "m"}, "options": options()}, "cpu")
        == "hf/m/fp32"
    )
    assert (
        configuration_label(
            {"backend": "hf", "model": {"name": "m"}, "options": options(dtype="float16")}, "h100"
        )
        == "hf/m/fp16"
    )


def test_baselines_folder_file_and_gpu_folder_read_the_same(tmp_path):
    store = BaselineStore(tmp_path / "baselines", "h100")
    entries = {}
    for r in report(
        [
            result("suites/test_chat.py::test_chat[a]", 128, 16, 2, 0.5),
            result("suites/test_chat.py::test_chat[b]", 512, 64, 2, 0.25),
        ]
    )["results"]:
        entries[r["nodeid"]] = {
            "joules_per_token": r["joules_per_token"],
            "samples": r["samples"],
            "workload": r["workload"],
            "backend": r["backend"],
        }
    entries["suites/test_chat.py::test_plain"] = {
        "joules_per_token": 1.0,
        "samples": [1.0],
        "workload": None,
        "backend": None,
    }
    store.write(entries)
    root = load_results(tmp_path / "baselines")
    gpu_folder = load_results(tmp_path / "baselines" / "h100")
    one_file = load_results(tmp_path / "baselines" / "h100" / "suites" / "test_chat.json")
    for results in (root, gpu_folder, one_file):
        assert sorted((m.bin, m.gpu, m.joules_per_output_token) for m in results.bins) == [
            (Bin(128, 16), "h100", 0.5),
            (Bin(512, 64), "h100", 0.25),
        ]
        assert len(results.skipped) == 1


def test_results_that_are_neither_report_nor_baseline(tmp_path):
    path = write_json(tmp_path / "x.json", {"schema": "something-else"})
    with pytest.raises(EnergyUsageError, match="neither a pytest-llm-energy report nor a baseline"):
        load_results(path)
    with pytest.raises(EnergyUsageError, match="no such results file"):
        load_results(tmp_path / "missing")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(EnergyUsageError, match="not valid JSON"):
        load_results(bad)


def test_newer_report_schema_asks_for_an_upgrade(tmp_path):
    path = write_json(tmp_path / "r.json", report([]) | {"schema_version": 99})
    with pytest.raises(EnergyUsageError, match="upgrade"):
        load_results(path)


def test_unreadable_workload_names_the_entry(tmp_path):
    broken = result("t::bad", 128, 16, 2, 0.5)
    broken["workload"]["batch_size"] = 0
    path = write_json(tmp_path / "r.json", report([broken]))
    with pytest.raises(EnergyUsageError, match="entry 't::bad' has an unreadable workload"):
        load_results(path)


# --- estimate.py ----------------------------------------------------------------------------------------


def test_nearest_estimate_by_hand(table, report_a):
    estimate = estimate_workload(table, load_results(report_a))
    # in128-out16: 6/2 x (0.5 x 2 x 16) = 48 J; in512-out64: 3/2 x (0.25 x 2 x 64) = 48 J;
    # in256-out16 borrows 0.5 J/token from in128-out16 (log2 distance 1, vs 3 to in512-out64): 1/2 x 16 = 8 J
    assert estimate.joules == pytest.approx(104.0)
    assert estimate.requests == 10
    assert estimate.joules_per_1000_requests == pytest.approx(10_400.0)
    assert estimate.joules_per_output_token == pytest.approx(104 / 222)  # 6x10 + 3x50 + 12 trace tokens
    assert estimate.joules_per_binned_output_token == pytest.approx(104 / 304)  # 6x16 + 3x64 + 16
    assert estimate.measured_share == pytest.approx(9 / 12)
    assert estimate.unmeasured_share == pytest.approx(1 / 12)
    assert estimate.dropped_share == pytest.approx(2 / 12)
    borrowed = next(item for item in estimate.bins if item.trace_bin.bin == Bin(256, 16))
    assert borrowed.measured_as == Bin(128, 16) and not borrowed.measured
    assert borrowed.batch_joules == pytest.approx(16.0)
    assert "nearest measured bin" in estimate.method_text
    assert estimate.meters == ("nvml (measured)",)


def test_exclude_estimate_renormalizes_by_hand(table, report_a):
    estimate = estimate_workload(table, load_results(report_a), unmeasured="exclude")
    # measured bins: 96 J for 9 requests, standing for all 10 binned requests
    assert estimate.joules == pytest.approx(96 * 10 / 9)
    assert estimate.joules_per_1000_requests == pytest.approx(96 / 9 * 1000)
    assert estimate.joules_per_output_token == pytest.approx(96 / 210)
    assert estimate.unmeasured_share == pytest.approx(1 / 12)  # still reported
    assert "renormalized" in estimate.method_text


def test_delta_by_hand(table, report_a, tmp_path):
    report_b = write_json(
        tmp_path / "b.json",
        report(
            [
                result("suites/test_chat.py::test_chat[in128-out16-b2-greedy]", 128, 16, 2, 0.55),
                result("suites/test_chat.py::test_chat[in512-out64-b2-greedy]", 512, 64, 2, 0.25),
            ]
        ),
    )
    a = estimate_workload(table, load_results(report_a))
    b = estimate_workload(table, load_results(report_b))
    delta = workload_delta(a, b)
    # B: 3 x 17.6 + 48 + 0.5 x 17.6 = 109.6 J against 104 J
    assert b.joules == pytest.approx(109.6)
    assert delta.fraction == pytest.approx(109.6 / 104 - 1)
    assert delta.sentence == f"this change costs 5.4% more on {table.trace}"
    assert workload_delta(delta.b, delta.a).sentence == f"this change saves 5.1% on {table.trace}"
    assert delta.same_bins_measured


def test_nearest_tie_prefers_the_same_input_length():
    # in1024-out128 is 3 steps from in128-out128 (input) and 1+2 from in512-out512: a tie; the closer input wins
    assert nearest_measured(Bin(1024, 128), [Bin(128, 128), Bin(512, 512)]) == Bin(512, 512)
    assert nearest_measured(Bin(256, 128), [Bin(128, 128), Bin(512, 512)]) == Bin(128, 128)
    # across kinds of work the same distances would pick in512-out64 for in1024-out16: a decode bin for a
    # prefill-bound one; the prefill-bound in128-out16 is taken instead
    assert nearest_measured(Bin(1024, 16), [Bin(128, 16), Bin(512, 64)]) == Bin(128, 16)


def test_duplicate_measurements_of_a_bin_take_the_median(table, tmp_path):
    path = write_json(
        tmp_path / "r.json",
        report(
            [
                result("t::a", 128, 16, 2, 0.4),
                result("t::b", 128, 16, 2, 0.5),
                result("t::c", 128, 16, 2, 0.9),
            ]
        ),
    )
    estimate = estimate_workload(table, load_results(path))
    measured = next(item for item in estimate.bins if item.trace_bin.bin == Bin(128, 16))
    assert measured.joules_per_output_token == 0.5


def test_several_batch_sizes_ask_which(table, report_a, tmp_path):
    other = write_json(tmp_path / "b8.json", report([result("t::b8", 128, 16, 8, 0.1)]))
    both = load_many([report_a, other])
    with pytest.raises(EnergyUsageError, match="2 values of batch_size: 2, 8; pick one with --batch-size"):
        estimate_workload(table, both)
    # every bin at 0.1 J/token over its output edge: 0.1 x (6x16 + 3x64 + 1x16) = 30.4 J
    assert estimate_workload(table, both, batch_size=8).joules == pytest.approx(30.4)
    with pytest.raises(EnergyUsageError, match="no measured bins .* match batch_size=4"):
        estimate_workload(table, both, batch_size=4)


def test_exclude_with_no_trace_bin_measured(table, tmp_path):
    path = write_json(tmp_path / "r.json", report([result("t::x", 4096, 512, 1, 1.0)]))
    with pytest.raises(EnergyUsageError, match="holds a request"):
        estimate_workload(table, load_results(path), unmeasured="exclude")
    # the default still estimates every bin from the one measurement, and says so
    assert estimate_workload(table, load_results(path)).unmeasured_share == pytest.approx(10 / 12)


def test_ideal_of_an_estimate(table, report_a):
    config = {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 1000,
    }
    estimate = estimate_workload(table, load_results(report_a))
    ideal = estimate.ideal(config)
    assert ideal.gpu == "h100" and ideal.joules > 0
    assert ideal.ratio(estimate.joules) == pytest.approx(estimate.joules / ideal.joules)
    assert estimate.ideal(config, "cpu").joules is None
