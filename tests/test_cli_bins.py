"""The `llm-energy` command: bins (against the independently counted Azure tables), estimate, advise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llm_energy.cli import SUBCOMMANDS, main

from .report_builders import measured_result, write_report
from .test_binning import AZURE_CODE_COUNTS, AZURE_CONV_COUNTS, AZURE_TOTALS

REPO = Path(__file__).resolve().parent.parent
TRACE_ROWS = [(100, 10)] * 6 + [(300, 50)] * 3 + [(200, 12), (9000, 5), (10, 600)]
TINY_CONFIG = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 1000,
    "model_type": "llama",
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("trace", "counts"), [("azure-conv", AZURE_CONV_COUNTS), ("azure-code", AZURE_CODE_COUNTS)]
)
def test_bins_json_matches_the_hand_checked_table(capsys, trace, counts):
    code, out, err = run(capsys, "bins", trace, "--json")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert {(b["input_tokens"], b["output_tokens"]): b["requests"] for b in document["bins"]} == counts
    total, dropped, total_tokens, dropped_tokens = AZURE_TOTALS[trace]
    assert (document["total_requests"], document["dropped_requests"]) == (total, dropped)
    assert (document["total_tokens"], document["dropped_tokens"]) == (total_tokens, dropped_tokens)
    assert document["dropped_share"] == pytest.approx(dropped / total)
    assert document["edges"] == {
        "input": [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
        "output": [8, 16, 32, 64, 128, 256, 512],
    }
    assert "CC-BY 4.0" in document["attribution"]


def test_bins_table_text(capsys):
    code, out, _ = run(capsys, "bins", "azure-conv", "--top", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("azure-conv: 19,366 requests")
    assert "share of requests" in lines[1] and "share of tokens" in lines[1]
    assert lines[3].split() == ["in2048-out512", "4,477", "23.12%", "25.64%"]  # 4477/19366, 6782190/26450535
    assert lines[4].split()[:2] == ["in512-out128", "3,933"]
    assert "dropped (longer than in8192 or out512): 563 requests (2.91%)" in out


def test_bins_custom_edges_and_columns(capsys, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("p,g\n10,1\n100,50\n101,51\n", encoding="utf-8")
    code, out, _ = run(
        capsys,
        "bins",
        str(path),
        "--input-column",
        "p",
        "--output-column",
        "g",
        "--input-edges",
        "100,1000",
        "--output-edges",
        "50",
        "100",
        "--json",
    )
    assert code == 0
    document = json.loads(out)
    assert [(b["input_tokens"], b["output_tokens"], b["requests"]) for b in document["bins"]] == [
        (100, 50, 2),
        (1000, 100, 1),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bins", "azure-chat"], "unknown trace 'azure-chat'"),
        (["bins", "azure-conv", "--input-edges", "64", "32"], "strictly increasing"),
        (["bins", "azure-conv", "--output-edges", "eight"], "bin edge 'eight'"),
        (["bins", "azure-conv", "--input-column", "nope"], "no column 'nope'"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("llm-energy: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "estimate", "--trace", "azure-conv")
    assert code == 2 and "--results" in err


def test_registry_holds_one_function_per_subcommand():
    assert {"bins", "estimate", "advise"} <= set(SUBCOMMANDS)
    assert SUBCOMMANDS["bins"].run.__name__ == "bins_command"


# --- estimate and advise through the command ------------------------------------------------------------


def result(input_tokens, output_tokens, batch_size, joules_per_token, backend="hf"):
    return measured_result(input_tokens, output_tokens, batch_size, joules_per_token, backend, model="no-such-model")


@pytest.fixture
def trace(tmp_path) -> str:
    path = tmp_path / "trace.csv"
    path.write_text(
        "input_tokens,output_tokens\n" + "".join(f"{i},{o}\n" for i, o in TRACE_ROWS), encoding="utf-8"
    )
    return str(path)


def test_estimate_with_delta(capsys, tmp_path, trace):
    a = write_report(tmp_path / "a.json", [result(128, 16, 2, 0.5), result(512, 64, 2, 0.25)])
    b = write_report(tmp_path / "b.json", [result(128, 16, 2, 0.55), result(512, 64, 2, 0.25)])
    code, out, err = run(capsys, "estimate", "--trace", trace, "--results", a, "--results-b", b)
    assert code == 0, err
    assert "energy of the trace: 104 J; per 1,000 requests: 10.4 kJ" in out
    assert "unmeasured bins hold 8.33%" in out and "nearest measured bin" in out
    assert "2 (16.67%) are longer than the largest bins" in out
    assert "meter: nvml (measured)" in out
    assert "FLOPs ideal: not computed (no model config for no-such-model" in out
    assert "B vs A: this change costs 5.4% more" in out


def test_estimate_json_with_ideal(capsys, tmp_path, trace):
    a = write_report(tmp_path / "a.json", [result(128, 16, 2, 0.5), result(512, 64, 2, 0.25)])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    code, out, _ = run(
        capsys,
        "estimate",
        "--trace",
        trace,
        "--results",
        a,
        "--model",
        str(config),
        "--unmeasured",
        "exclude",
        "--json",
    )
    assert code == 0
    document = json.loads(out)["estimate"]
    assert document["joules"] == pytest.approx(96 * 10 / 9)
    assert document["unmeasured"]["method"] == "exclude" and document["unmeasured"]["share"] == pytest.approx(
        1 / 12
    )
    assert document["ideal"]["gpu"] == "h100" and document["ideal"]["measured_over_ideal"] > 1


def test_estimate_on_cpu_results_says_there_is_no_ideal(capsys, tmp_path, trace):
    a = write_report(tmp_path / "a.json", [result(128, 16, 2, 0.5)], gpu="cpu")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    code, out, _ = run(capsys, "estimate", "--trace", trace, "--results", a, "--model", str(config))
    assert code == 0 and "no FLOPs ideal on the CPU" in out
    assert "hf/no-such-model/fp32" in out


def test_estimate_ambiguous_results_exit_2(capsys, tmp_path, trace):
    a = write_report(tmp_path / "a.json", [result(128, 16, 2, 0.5), result(128, 16, 8, 0.2)])
    code, _, err = run(capsys, "estimate", "--trace", trace, "--results", a)
    assert code == 2 and "pick one with --batch-size" in err


def test_advise(capsys, tmp_path, trace):
    hf = write_report(
        tmp_path / "hf.json", [result(128, 16, 1, 2.0), result(512, 64, 1, 1.0), result(256, 16, 1, 1.5)]
    )
    vllm = write_report(
        tmp_path / "vllm.json",
        [result(128, 16, 8, 0.5, "vllm"), result(512, 64, 8, 0.2, "vllm"), result(256, 16, 8, 0.45, "vllm")],
    )
    code, out, err = run(
        capsys,
        "advise",
        "--trace",
        trace,
        "--results",
        hf,
        vllm,
        "--baseline-config",
        "hf/no-such-model/bf16",
    )
    assert code == 0, err
    # baseline 408 J, vLLM b8 on every bin 93.6 J for the 10 binned requests
    assert (
        "=> running each bin on its lowest-energy setup saves 77.1% against hf/no-such-model/bf16/b1/greedy"
        in out
    )
    code, out, _ = run(
        capsys,
        "advise",
        "--trace",
        trace,
        "--results",
        hf,
        vllm,
        "--baseline-config",
        "hf/no-such-model/bf16",
        "--json",
    )
    assert json.loads(out)["mix_saving"] == pytest.approx(1 - 93.6 / 408)


def test_subprocess_module_entry_point():
    completed = subprocess.run(
        [sys.executable, "-m", "pytest_llm_energy.cli", "bins", "azure-code", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert {
        (b["input_tokens"], b["output_tokens"]): b["requests"] for b in document["bins"]
    } == AZURE_CODE_COUNTS
    failed = subprocess.run(
        [sys.executable, "-m", "pytest_llm_energy.cli", "bins", "nope.csv"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith("llm-energy: error: trace file nope.csv: no such file")
    assert "Traceback" not in failed.stderr
