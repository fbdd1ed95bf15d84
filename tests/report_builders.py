"""JSON reports as the plugin writes them, built by hand for the tests of estimate, advise and the CLI."""

import json
from pathlib import Path

from pytest_llm_energy.core.backend_options import BackendOptions
from pytest_llm_energy.core.files import clean_for_json


def measured_result(input_tokens, output_tokens, batch_size, joules_per_token, backend="hf", model="tiny-llama"):
    """One `energy.run` test's entry in a report: a greedy workload on default backend options."""
    return {
        "nodeid": f"suites/test_x.py::test[{backend}-in{input_tokens}-out{output_tokens}-b{batch_size}]",
        "joules_per_token": joules_per_token,
        "samples": [joules_per_token],
        "baseline_joules_per_token": None,
        "delta": None,
        "verdict": "new",
        "workload": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "batch_size": batch_size,
            "decoding": {"kind": "greedy", "temperature": 1.0, "top_p": 1.0, "num_beams": 1},
            "seed": 0,
        },
        "backend": {
            "backend": backend,
            "model": {"name": model},
            "options": clean_for_json(BackendOptions().to_dict()),
        },
    }


def write_report(path: Path, results: list, gpu: str = "h100") -> str:
    path.write_text(
        json.dumps({"schema": "pytest-llm-energy/report", "schema_version": 1, "gpu": gpu, "meter": "nvml",
                    "estimated": False, "results": results}),
        encoding="utf-8",
    )
    return str(path)  # the CLI takes it as an argument
