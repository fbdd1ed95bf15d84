"""An async load generator for an OpenAI-compatible `/v1/completions` server: arrivals, streaming, timestamps.

Prompts are token ids; every request asks for exactly n tokens (min_tokens = max_tokens = n, ignore_eos) and
streams them back with `return_token_ids`, so each token gets an arrival time. The phases of a run follow
the ML.ENERGY benchmark: the steady state begins when the target concurrency is first reached, and the tail
begins at the first completion after the last request was sent. Callers measure energy between the two.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...core.errors import BackendError, EnergyUsageError

if TYPE_CHECKING:
    from ...core.measurement import Reading
    from ..meters.base import Window

ARRIVALS = ("poisson", "gamma")


@dataclass(frozen=True)
class LoadSpec:
    """How requests arrive: at `request_rate` per second (inf = all at once), at most `max_concurrency` open."""

    request_rate: float = math.inf
    arrival: str = "poisson"
    burstiness: float = 1.0  # gamma shape: 1 = Poisson, < 1 burstier, > 1 more regular
    max_concurrency: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVALS:
            raise EnergyUsageError(f"arrival {self.arrival!r} is not one of {', '.join(ARRIVALS)}")
        if not self.request_rate > 0:
            raise EnergyUsageError(f"request_rate must be > 0 (inf = all at once), got {self.request_rate}")
        if not self.burstiness > 0:
            raise EnergyUsageError(f"burstiness (the gamma shape) must be > 0, got {self.burstiness}")
        if self.max_concurrency < 1:
            raise EnergyUsageError(f"max_concurrency must be >= 1, got {self.max_concurrency}")


def arrival_offsets(count: int, spec: LoadSpec) -> tuple[float, ...]:
    """Send times of `count` requests in seconds from the start; the first is sent at once.

    Gaps are gamma-distributed with shape `burstiness` and mean 1/request_rate (shape 1 is the exponential
    gap of a Poisson process), as in vLLM's serving benchmark.
    """
    if count <= 0:
        return ()
    if math.isinf(spec.request_rate):
        return (0.0,) * count
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    shape = 1.0 if spec.arrival == "poisson" else spec.burstiness
    gaps = rng.gamma(shape, 1.0 / (spec.request_rate * shape), size=count - 1)
    return (0.0, *np.cumsum(gaps).tolist())


@dataclass(frozen=True)
class RequestRecord:
    """One streamed request: when it was sent and when each of its tokens arrived (perf_counter seconds)."""

    index: int
    prompt_tokens: int
    sent_at: float
    token_times: tuple[float, ...]
    finished_at: float
    reported_tokens: int | None  # the server's own usage.completion_tokens, when it sent one

    @property
    def output_tokens(self) -> int:
        return len(self.token_times)

    @property
    def ttft_s(self) -> float:
        return self.token_times[0] - self.sent_at if self.token_times else math.nan

    @property
    def inter_token_latencies(self) -> tuple[float, ...]:
        times = self.token_times
        return tuple(later - earlier for earlier, later in zip(times, times[1:], strict=False))


@dataclass(frozen=True)
class LoadRun:
    """What one run of the load generator saw, with the two phase boundaries."""

    records: tuple[RequestRecord, ...]
    started_at: float
    last_sent_at: float
    steady_began_at: float | None
    tail_began_at: float | None

    def tokens_between(self, begin: float, end: float) -> int:
        return sum(begin <= t <= end for record in self.records for t in record.token_times)

    def latency(self) -> dict:
        """TTFT and inter-token latency (median, p90) over every request of the run."""
        import numpy as np

        ttfts = [record.ttft_s for record in self.records if record.token_times]
        itls = [gap for record in self.records for gap in record.inter_token_latencies]

        def quantile(values, q):
            return float(np.quantile(values, q)) if values else math.nan

        return {"ttft_s_median": quantile(ttfts, 0.5), "ttft_s_p90": quantile(ttfts, 0.9),
                "itl_s_median": quantile(itls, 0.5), "itl_s_p90": quantile(itls, 0.9),
                "requests": len(self.records)}


@dataclass
class LoadPhases:
    """Events a caller awaits to open and close its measurement window while the load keeps streaming."""

    steady: asyncio.Event = field(default_factory=asyncio.Event)
    tail: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class CompletionRequest:
    """What every request of a run asks for, apart from its prompt."""

    model: str
    output_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None  # sampling: request i uses seed + i

    def body(self, index: int, prompt: Sequence[int]) -> dict:
        body = {
            "model": self.model, "prompt": list(prompt), "max_tokens": self.output_tokens,
            "min_tokens": self.output_tokens, "ignore_eos": True, "stream": True, "return_token_ids": True,
            "stream_options": {"include_usage": True}, "temperature": self.temperature, "top_p": self.top_p,
        }
        if self.seed is not None:
            body["seed"] = self.seed + index
        return body


async def run_load(base_url: str, request: CompletionRequest, prompts: Sequence[Sequence[int]], spec: LoadSpec,
                   phases: LoadPhases | None = None, read_timeout_s: float = 600.0) -> LoadRun:
    """Send every prompt on the arrival schedule, stream all answers, and check each got exactly n tokens."""
    import aiohttp

    phases = phases or LoadPhases()
    offsets = arrival_offsets(len(prompts), spec)
    slots = asyncio.Semaphore(spec.max_concurrency)
    # Below the target concurrency (a slow arrival rate) the steady state begins at the first completion.
    target = min(spec.max_concurrency, len(prompts))
    state = {"in_flight": 0, "all_sent": False, "steady": None, "tail": None, "last_sent": None}
    records: list[RequestRecord] = []
    tasks: list[asyncio.Task] = []

    def mark(name: str, event: asyncio.Event) -> None:
        if state[name] is None:
            state[name] = time.perf_counter()
            event.set()

    async def one(session, index: int, prompt: Sequence[int], sent_at: float) -> None:
        try:
            records.append(await _stream_one(session, base_url, request, index, prompt, sent_at))
        finally:
            state["in_flight"] -= 1
            slots.release()
        # Only a completed request marks a phase: a failed one ends the run instead.
        mark("steady", phases.steady)
        if state["all_sent"]:
            mark("tail", phases.tail)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout_s)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        try:
            for index, (offset, prompt) in enumerate(zip(offsets, prompts, strict=True)):
                delay = started + offset - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                _raise_first_failure(tasks)
                state["in_flight"] += 1
                tasks.append(asyncio.create_task(one(session, index, prompt, time.perf_counter())))
                if state["in_flight"] >= target:
                    mark("steady", phases.steady)
            state["all_sent"] = True
            state["last_sent"] = time.perf_counter()
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    phases.steady.set()
    phases.tail.set()
    records.sort(key=lambda record: record.index)
    _check_lengths(records, request.output_tokens)
    return LoadRun(records=tuple(records), started_at=started, last_sent_at=state["last_sent"],
                   steady_began_at=state["steady"], tail_began_at=state["tail"])


async def run_metered_load(base_url: str, request: CompletionRequest, prompts: Sequence[Sequence[int]],
                           spec: LoadSpec, open_window: Callable[[], ContextManager[Window]],
                           ) -> tuple[Reading, LoadRun, tuple[float, float]]:
    """The load, with a meter window (from `open_window`, the meter's `window`) open from the steady state
    until the tail begins.

    Opening and closing a window block (an NVML meter waits for a counter tick), so the window is held in a
    worker thread while this loop keeps reading the streams.
    """
    loop = asyncio.get_running_loop()
    phases = LoadPhases()
    load = asyncio.create_task(run_load(base_url, request, prompts, spec, phases))
    opened = asyncio.Event()
    close, failed = threading.Event(), threading.Event()

    def hold() -> Window | None:
        try:
            with open_window() as window:
                loop.call_soon_threadsafe(opened.set)
                close.wait()
                if failed.is_set():
                    raise _LoadFailed  # leaves the window through its abort path
        except _LoadFailed:
            return None
        return window

    held = None
    try:
        await _event_or_done(phases.steady, load)
        if load.done() and not load.cancelled() and load.exception() is not None:
            raise load.exception()  # failed before the steady state: no window to open
        held = loop.run_in_executor(None, hold)
        await _event_or_done(opened, held)
        if held.done():
            held.result()  # the window could not be opened: its error
        begin = time.perf_counter()  # the window is open once the meter has begun (aligned to a tick)
        await _event_or_done(phases.tail, load)
        end = time.perf_counter()
        close.set()
        window = await held
        run = await load
    except BaseException:
        failed.set()
        close.set()
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
        if held is not None:
            await asyncio.gather(held, return_exceptions=True)
        raise
    return window.reading, run, (begin, end)


class _LoadFailed(Exception):
    """Raised inside a held window when the load failed, so the window is aborted rather than read."""


async def _event_or_done(event: asyncio.Event, load: asyncio.Task) -> None:
    """Wait for a phase, or for the load to end (a failed load raises when it is awaited)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter, load], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _stream_one(session, base_url: str, request: CompletionRequest, index: int,
                      prompt: Sequence[int], sent_at: float) -> RequestRecord:
    token_times: list[float] = []
    reported = None
    async with session.post(f"{base_url}/v1/completions", json=request.body(index, prompt)) as response:
        if response.status != 200:
            text = (await response.text())[:500]
            raise BackendError(f"request {index} to {base_url}/v1/completions failed: HTTP {response.status}: "
                               f"{text}")
        async for raw_line in response.content:
            line = raw_line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            arrived = time.perf_counter()
            chunk = json.loads(payload)
            if "error" in chunk:
                raise BackendError(f"request {index} failed while streaming: {chunk['error']}")
            for choice in chunk.get("choices") or ():
                token_ids = choice.get("token_ids")
                # One chunk may carry several tokens (a slow reader, or a stream interval): same timestamp.
                token_times.extend([arrived] * (len(token_ids) if token_ids is not None else 1))
            usage = chunk.get("usage")
            if usage and not chunk.get("choices"):
                reported = usage.get("completion_tokens")
    return RequestRecord(index=index, prompt_tokens=len(prompt), sent_at=sent_at, token_times=tuple(token_times),
                         finished_at=time.perf_counter(), reported_tokens=reported)


def _raise_first_failure(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()


def _check_lengths(records: Sequence[RequestRecord], expected: int) -> None:
    wrong = [(r.index, r.output_tokens, r.reported_tokens) for r in records
             if r.output_tokens != expected or r.reported_tokens not in (None, expected)]
    if wrong:
        shown = ", ".join(f"request {i}: {n} streamed, {rep} reported" for i, n, rep in wrong[:5])
        raise BackendError(f"{len(wrong)} of {len(records)} requests did not yield exactly {expected} tokens "
                           f"({shown}); J per token would not be comparable")
