"""The hf backend on tiny-llama, on the CPU: exact token counts for every decoding, static cache, compile."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_llm_energy.core.errors import BackendError, EnergyUsageError
from pytest_llm_energy.core.models import resolve_model
from pytest_llm_energy.core.workload import Workload
from pytest_llm_energy.plugin.backends import BackendOptions, BackendPool, backend_class

from .model_folders import write_model_folder

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

HFBackend = backend_class("hf")
CPU = BackendOptions(device="cpu")


@pytest.fixture(scope="module")
def tiny():
    backend = HFBackend(resolve_model("tiny-llama"), CPU)
    backend.load()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """tiny-llama saved with weights and a tokenizer: a 'pretrained' local model."""
    return write_model_folder(tmp_path_factory.mktemp("tiny-pretrained"))


@pytest.mark.parametrize("decoding", ["greedy", "sampling:t=0.8,p=0.9", "beam:3"])
def test_every_request_yields_exactly_the_asked_tokens(tiny, decoding):
    workload = Workload(input_tokens=24, output_tokens=12, batch_size=3, decoding=decoding)
    generation = tiny.generate(tiny.prepare(workload))
    assert generation.output_tokens == workload.total_output_tokens == 36
    assert generation.tokens_per_request == (12, 12, 12)
    assert (generation.input_tokens, generation.requests) == (72, 3)


def test_prepare_puts_the_synthetic_prompt_on_the_device(tiny):
    workload = Workload(input_tokens=16, output_tokens=4, batch_size=2, seed=7)
    prepared = tiny.prepare(workload)
    assert prepared.input_ids.tolist() == workload.prompt_token_ids(32000)
    assert prepared.attention_mask.all() and prepared.input_ids.device.type == "cpu"
    assert prepared.generate_kwargs["min_new_tokens"] == prepared.generate_kwargs["max_new_tokens"] == 4


def test_sampling_is_seeded_so_repeats_do_the_same_work(tiny):
    workload = Workload(input_tokens=8, output_tokens=6, batch_size=2, decoding="sampling:t=1.5,p=1")
    prepared = tiny.prepare(workload)
    torch.manual_seed(1)
    first = _generated_ids(tiny, prepared)
    torch.manual_seed(2)  # whatever the global state, the backend reseeds from the workload
    assert _generated_ids(tiny, prepared) == first
    torch.manual_seed(1)
    reseeded = tiny.prepare(dataclasses.replace(workload, seed=workload.seed + 1))
    assert _generated_ids(tiny, reseeded)[0][8:] != first[0][8:]


def _generated_ids(backend, prepared):
    """The token ids the backend's own generate call produced (read back by wrapping model.generate)."""
    seen = []
    model = backend._model
    original = model.generate

    def recording_generate(*args, **kwargs):
        output = original(*args, **kwargs)
        seen.append(output.tolist())
        return output

    model.generate = recording_generate
    try:
        backend.generate(prepared)
    finally:
        del model.generate
    return seen[0]


def test_a_short_generation_is_an_error_not_a_smaller_number(tiny):
    workload = Workload(input_tokens=8, output_tokens=6, batch_size=2)
    prepared = tiny.prepare(workload)
    short = dataclasses.replace(prepared, generate_kwargs={**prepared.generate_kwargs, "max_new_tokens": 5,
                                                           "min_new_tokens": 5})
    with pytest.raises(BackendError, match=r"\[5, 5\].*exactly 6"):
        tiny.generate(short)


def test_static_cache_without_compile_does_not_compile():
    backend = HFBackend(resolve_model("tiny-llama"), dataclasses.replace(CPU, static_cache=True))
    backend.load()
    try:
        generation = backend.generate(backend.prepare(Workload(input_tokens=16, output_tokens=8, batch_size=2)))
        assert generation.output_tokens == 16
        assert backend.describe()["generate"] == {"cache_implementation": "static", "compile": None}
        # A smaller bin after a bigger one gets a cache of its own size: its energy must not depend on order.
        backend.generate(backend.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=2)))
        assert backend._model._previous_max_cache_length == 8 + 4 - 1  # the last token needs no slot
    finally:
        backend.close()


def test_compile_uses_generates_own_compiled_decode_step():
    """compile=True: static cache + CompileConfig; on the CPU too (transformers skips it there otherwise)."""
    from torch._dynamo.utils import counters

    backend = HFBackend(resolve_model("tiny-llama"), dataclasses.replace(CPU, compile=True))
    backend.load()
    try:
        graphs_before = counters["stats"]["unique_graphs"]
        prepared = backend.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=2))
        assert backend.generate(prepared).output_tokens == 8
        assert counters["stats"]["unique_graphs"] > graphs_before
        assert backend.generate(prepared).tokens_per_request == (4, 4)
        described = backend.describe()["generate"]
        assert described["cache_implementation"] == "static"
        assert described["compile"]["mode"] == "default"  # no CUDA graphs on a CPU
        assert backend.describe()["options"]["cuda_graphs"] is False  # and the record does not claim them
    finally:
        backend.close()


def test_a_compiled_call_that_fails_leaves_the_next_call_compiling_afresh():
    """A failure inside a compiled generate (on a GPU: out of memory while a CUDA graph was captured) resets the
    compiled state, so the next bin compiles anew rather than run into what the failed one left half built."""
    from torch._dynamo.utils import counters

    backend = HFBackend(resolve_model("tiny-llama"), dataclasses.replace(CPU, compile=True))
    backend.load()
    try:
        prepared = backend.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=2))
        backend.generate(prepared)
        graphs = counters["stats"]["unique_graphs"]
        backend.generate(prepared)
        assert counters["stats"]["unique_graphs"] == graphs  # warm: nothing compiles
        vocabulary = backend._model.config.vocab_size
        broken = dataclasses.replace(prepared, input_ids=prepared.input_ids + vocabulary)  # no such token
        with pytest.raises(IndexError):
            backend.generate(broken)
        assert backend.generate(prepared).tokens_per_request == (4, 4)
        assert counters["stats"]["unique_graphs"] > graphs  # compiled again after the failure
    finally:
        backend.close()


def test_text_prompts_are_left_padded_and_counted_without_padding(tiny_folder):
    backend = HFBackend(resolve_model(str(tiny_folder)), CPU)
    backend.load()
    try:
        assert backend.describe()["model"]["weights"] == "pretrained"
        prompts = ["t5 t6 t7 t8 t9", "t10 t11"]
        prepared = backend.prepare(Workload(input_tokens=5, output_tokens=4, batch_size=2), prompts=prompts)
        assert prepared.input_ids.shape == (2, 5)
        assert prepared.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
        assert prepared.input_ids[1, -2:].tolist() == [10, 11]
        generation = backend.generate(prepared)
        assert (generation.output_tokens, generation.input_tokens) == (8, 7)
    finally:
        backend.close()


def test_pretrained_folder_loads_its_saved_weights(tiny_folder):
    from safetensors.torch import load_file

    backend = HFBackend(resolve_model(str(tiny_folder)), CPU)
    backend.load()
    try:
        saved = load_file(tiny_folder / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]
        assert torch.equal(backend._model.model.layers[0].mlp.up_proj.weight, saved)
    finally:
        backend.close()


def test_text_prompts_need_a_tokenizer(tiny):
    with pytest.raises(EnergyUsageError, match="tokenizer"):
        tiny.prepare(Workload(input_tokens=4, output_tokens=2, batch_size=1), prompts=["hello"])


@pytest.mark.parametrize("options, message", [
    (dataclasses.replace(CPU, tensor_parallel_size=2), "one device"),
    (dataclasses.replace(CPU, extra=(("warp_speed", True),)), "warp_speed"),
    (dataclasses.replace(CPU, dtype="fp8"), "fp8"),
    (dataclasses.replace(CPU, extra=(("compile_mode", "max-autotune"),)), "need compile=True"),
])
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(EnergyUsageError, match=message):
        HFBackend(resolve_model("tiny-llama"), options).load()


def test_closed_backend_refuses_to_generate():
    backend = HFBackend(resolve_model("tiny-llama"), CPU)
    backend.load()
    prepared = backend.prepare(Workload(input_tokens=4, output_tokens=2, batch_size=1))
    backend.close()
    with pytest.raises(BackendError, match="after close"):
        backend.generate(prepared)


def test_pool_reuses_the_model_across_batch_sizes_and_reloads_for_new_options():
    pool = BackendPool()
    try:
        tiny = resolve_model("tiny-llama")
        first = pool.get("hf", tiny, CPU, batch_size=1)
        assert pool.get("hf", tiny, CPU, batch_size=8) is first  # generate takes any batch size
        # A request rate only shapes a server's load; it does not change what hf loads.
        assert pool.get("hf", tiny, dataclasses.replace(CPU, request_rate=3.0), batch_size=8) is first
        static = pool.get("hf", tiny, dataclasses.replace(CPU, static_cache=True), batch_size=8)
        assert static is not first and pool.current is static
        assert first._model is None  # the previous backend was closed, its memory freed
        assert static.generate(static.prepare(Workload(4, 3, 2))).output_tokens == 6
    finally:
        pool.close_all()
    assert pool.current is None and static._model is None


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(EnergyUsageError, match="unknown backend 'tgi'.*hf, vllm, vllm-server"):
        backend_class("tgi")
