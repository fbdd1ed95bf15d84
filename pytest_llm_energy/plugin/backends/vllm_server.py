"""The online vLLM backend: a real OpenAI-compatible vLLM server, driven by the load generator.

It measures its own window (`measure_online`): the meter runs from the moment the target concurrency is
first reached to the start of the tail, and only tokens streamed inside that window are counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import os
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core.errors import BackendError, EnergyUsageError
from .base import Backend, BackendOptions, Generation
from .loadgen import CompletionRequest, LoadSpec, run_load, run_metered_load
from .placement import resolve_device
from .server_process import ServerProcess
from .vllm_common import (
    LOAD_OPTIONS,
    check_engine_options,
    engine_arguments,
    server_flags,
    vllm_environment,
    vllm_version,
)

if TYPE_CHECKING:
    from ...core.measurement import Reading
    from ...core.models import ModelSpec
    from ...core.workload import Workload
    from ..meters.base import Meter

SERVED_MODEL_NAME = "llm-energy"
# BackendOptions.extra keys for the server itself; every other key is passed to vLLM as an engine flag.
SERVER_EXTRA_KEYS = ("start_timeout_s",)
DEFAULT_START_TIMEOUT_S = 900.0  # an 8B model with CUDA-graph capture takes minutes; a stuck one must not hang CI
# A steady window needs several rounds of requests; it grows until it is long enough for the meter.
REQUESTS_PER_SLOT = 4
# At a finite rate the run lasts count / rate seconds whatever the concurrency: start from the requests that
# arrive in this many minimum windows, not from rounds of slots (64 requests at 2/s would take 32 s a window).
RATE_WINDOWS = 2
MAX_ATTEMPTS = 4
MAX_REQUESTS = 100_000
DEATH_GRACE_S = 2.0  # after a failed load, how long to wait for a dying server to become visibly dead


@dataclass(frozen=True)
class ServerPrepared:
    workload: Workload
    request: CompletionRequest
    prompts: list[list[int]]


class VLLMServerBackend(Backend):
    name = "vllm-server"
    online = True

    def __init__(self, model: ModelSpec, options: BackendOptions, max_num_seqs: int = 1) -> None:
        # The server's max_num_seqs must hold the load generator's concurrency; fixed at start-up.
        super().__init__(model, options, options.max_concurrency or max_num_seqs)
        self._server: ServerProcess | None = None
        self._arguments: dict = {}
        self.base_url = ""
        # Requests that gave a long enough window, per (workload shape, load spec): later trials start there.
        self._requests_needed: dict[tuple, int] = {}

    @staticmethod
    def load_key(options: BackendOptions, batch_size: int) -> tuple:
        return tuple((name, getattr(options, name)) for name in LOAD_OPTIONS) + (
            ("max_num_seqs", options.max_concurrency or batch_size),)

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    @property
    def log_path(self):
        return self._server.log_path if self._server is not None else None

    # -- load / close ----------------------------------------------------------------------------------------
    def load(self) -> None:
        extra = dict(self.options.extra)
        check_engine_options(self.name, extra, own=SERVER_EXTRA_KEYS, server=True)
        server_settings = {key: extra.pop(key) for key in SERVER_EXTRA_KEYS if key in extra}
        device = resolve_device(self.options.device)
        self._arguments = engine_arguments(self.model, dataclasses.replace(self.options, extra=tuple(extra.items())),
                                           self.max_num_seqs)
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *server_flags(self._arguments),
                   "--host", "127.0.0.1", "--port", str(port),
                   "--served-model-name", SERVED_MODEL_NAME, "--disable-uvicorn-access-log"]
        env = dict(os.environ)
        env.update(vllm_environment(device))
        # The offline backend may have set this in our environment; a server runs its engine core apart.
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        self._server = ServerProcess(command, env=env, name="vllm-server")
        self._server.start()
        try:
            self._server.wait_healthy(f"{self.base_url}/health",
                                      float(server_settings.get("start_timeout_s", DEFAULT_START_TIMEOUT_S)))
        except BaseException:  # Ctrl-C while waiting included
            self.close()
            raise

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> VLLMServerBackend:
        if self._server is None:
            self.load()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- one batch through the server (the offline view) -------------------------------------------------
    def prepare(self, workload: Workload) -> ServerPrepared:
        if workload.batch_size > self.max_num_seqs:
            raise BackendError(f"vllm-server was started with max_num_seqs={self.max_num_seqs}, workload "
                               f"{workload.label} has {workload.batch_size} requests; get the backend from "
                               "the BackendPool with this batch size")
        return ServerPrepared(workload, self._request(workload), workload.prompt_token_ids(self.model.vocab_size))

    def generate(self, prepared: ServerPrepared) -> Generation:
        """All requests of the batch at once; returns when every token has streamed back."""
        workload = prepared.workload
        spec = LoadSpec(max_concurrency=workload.batch_size, seed=workload.seed)
        run = self._served(run_load(self._require_url(), prepared.request, prepared.prompts, spec))
        tokens = tuple(record.output_tokens for record in run.records)
        return Generation(output_tokens=sum(tokens), input_tokens=workload.total_input_tokens,
                          requests=len(tokens), tokens_per_request=tokens, latency=run.latency())

    # -- the online measurement ------------------------------------------------------------------------------
    def measure_online(self, workload: Workload, meter: Meter, min_window_s: float,
                       warmup: bool = False) -> tuple[Reading, Generation]:
        """Run a load long enough that its steady window lasts `min_window_s`; meter only that window.

        The count that gave a long enough window is kept for the next trials, but not from a warm-up: a cold
        server's slow first requests shorten its windows, the count grows, and at a finite rate a longer run's
        window holds more of the idle gaps between arrivals, so its J per token is not the trials'
        (benchmarks/README.md section 11).
        """
        request = self._request(workload)
        spec = self._load_spec(workload)
        key = (workload.shape, spec, min_window_s)
        count = self._requests_needed.get(key, first_request_count(spec, min_window_s))
        for attempt in range(1, MAX_ATTEMPTS + 1):
            prompts = dataclasses.replace(workload, batch_size=count).prompt_token_ids(self.model.vocab_size)
            # Each attempt is a window of its own: under --energy-ab the other arm measures between two, and
            # a load started before its turn came ran out before its window opened, so the run grew on.
            meter.reserve()
            reading, run, (begin, end) = self._served(
                run_metered_load(self._require_url(), request, prompts, spec, meter.window))
            window = end - begin
            if window >= min_window_s or attempt == MAX_ATTEMPTS or count >= MAX_REQUESTS:
                break
            # The window is the middle of the run; grow the whole run in proportion, with a margin.
            count = min(MAX_REQUESTS, math.ceil(count * max(2.0, 1.3 * min_window_s / max(window, 1e-3))))
        if not warmup:
            self._requests_needed[key] = count
        inside = [r for r in run.records if r.token_times and begin <= r.token_times[0] <= end]
        finished = [r for r in run.records if begin <= r.finished_at <= end]
        latency = run.latency()
        latency["steady_window_s"] = window
        generation = Generation(
            output_tokens=run.tokens_between(begin, end),
            input_tokens=sum(r.prompt_tokens for r in inside),  # prompts whose prefill ran in the window
            requests=len(finished),
            tokens_per_request=tuple(r.output_tokens for r in run.records),
            latency=latency,
        )
        return reading, generation

    def _load_spec(self, workload: Workload) -> LoadSpec:
        concurrency = self.options.max_concurrency or workload.batch_size
        if concurrency > self.max_num_seqs:
            raise BackendError(f"max_concurrency {concurrency} exceeds the server's max_num_seqs "
                               f"{self.max_num_seqs}; get the backend from the BackendPool with this batch size")
        return LoadSpec(request_rate=self.options.request_rate, arrival=self.options.arrival,
                        burstiness=self.options.burstiness, max_concurrency=concurrency, seed=workload.seed)

    def _request(self, workload: Workload) -> CompletionRequest:
        decoding = workload.decoding
        if decoding.kind == "beam":
            raise EnergyUsageError("beam decoding is not offered by the vllm-server backend: vLLM serves beam "
                                   "search only without streaming; use the hf backend for beam search")
        if decoding.kind == "sampling":
            return CompletionRequest(SERVED_MODEL_NAME, workload.output_tokens, temperature=decoding.temperature,
                                     top_p=decoding.top_p, seed=workload.seed)
        return CompletionRequest(SERVED_MODEL_NAME, workload.output_tokens)

    def describe(self) -> dict:
        description = super().describe()
        description.update(engine={k: v for k, v in self._arguments.items() if k != "model"},
                           versions={"vllm": vllm_version()})
        return description

    def _served(self, coroutine):
        """Run a load; if the server died under it, say that, whatever the load or the meter raised first."""
        try:
            return _run_async(coroutine)
        except Exception as error:
            death = self._death(grace_s=DEATH_GRACE_S)
            if death is not None:
                raise death from error
            raise

    def _death(self, grace_s: float = 0.0) -> BackendError | None:
        """The error to raise if the server started here has died (close() forgets a server it stopped)."""
        server = self._server
        if server is None or not server.ended_within(grace_s):
            return None
        return BackendError(f"vllm-server died during the run (exit code {server.exit_code}); log: {server.log_path}")

    def _require_url(self) -> str:
        death = self._death()  # between two loads: the same message as during one
        if death is not None:
            raise death
        if self._server is None:
            raise BackendError("vllm-server is not running (used before load() or after close())")
        return self.base_url


def first_request_count(spec: LoadSpec, min_window_s: float) -> int:
    """Requests of a load's first attempt: rounds of every slot, or at a finite rate what arrives in a few
    minimum windows, whichever is fewer; an attempt whose window comes out short grows the count."""
    count = spec.max_concurrency * REQUESTS_PER_SLOT
    if not math.isinf(spec.request_rate):
        count = min(count, math.ceil(spec.request_rate * min_window_s * RATE_WINDOWS))
    return max(count, 2)


def _run_async(coroutine):
    """Run a coroutine to completion from synchronous code, also when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
