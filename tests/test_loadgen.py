"""The load generator's logic: arrival processes, phases, token timestamps and the exact-length check.

The real vLLM server is exercised in test_backend_vllm_server.py; here a scripted SSE endpoint with fixed
timing makes the phase boundaries exact.
"""

from __future__ import annotations

import asyncio
import json
import statistics

import pytest

from pytest_llm_energy.core.errors import BackendError, EnergyUsageError
from pytest_llm_energy.plugin.backends.loadgen import (
    CompletionRequest,
    LoadPhases,
    LoadRun,
    LoadSpec,
    RequestRecord,
    arrival_offsets,
    run_load,
)


@pytest.mark.parametrize("arrival, burstiness", [("poisson", 1.0), ("gamma", 0.5), ("gamma", 4.0)])
@pytest.mark.parametrize("rate", [2.0, 50.0])
def test_arrivals_have_the_asked_mean_rate(rate, arrival, burstiness):
    offsets = arrival_offsets(20_001, LoadSpec(request_rate=rate, arrival=arrival, burstiness=burstiness, seed=3))
    assert offsets[0] == 0.0
    measured_rate = (len(offsets) - 1) / offsets[-1]
    assert measured_rate == pytest.approx(rate, rel=0.03)


def test_burstiness_sets_the_spread_of_the_gaps():
    def gap_cv(spec):
        offsets = arrival_offsets(20_001, spec)
        gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps)

    # A gamma process with shape k has gaps with coefficient of variation 1/sqrt(k); Poisson has 1.
    assert gap_cv(LoadSpec(request_rate=10, arrival="poisson", seed=1)) == pytest.approx(1.0, rel=0.05)
    assert gap_cv(LoadSpec(request_rate=10, arrival="gamma", burstiness=0.25, seed=1)) == pytest.approx(2.0, rel=0.08)
    assert gap_cv(LoadSpec(request_rate=10, arrival="gamma", burstiness=4.0, seed=1)) == pytest.approx(0.5, rel=0.05)


def test_arrivals_are_seeded():
    spec = LoadSpec(request_rate=5.0, seed=11)
    assert arrival_offsets(50, spec) == arrival_offsets(50, spec)
    assert arrival_offsets(50, spec) != arrival_offsets(50, LoadSpec(request_rate=5.0, seed=12))


def test_infinite_rate_sends_everything_at_once():
    assert arrival_offsets(4, LoadSpec()) == (0.0, 0.0, 0.0, 0.0)
    assert arrival_offsets(0, LoadSpec(request_rate=1.0)) == ()


@pytest.mark.parametrize("fields, message", [
    ({"arrival": "uniform"}, "arrival"), ({"request_rate": 0.0}, "request_rate"),
    ({"burstiness": 0.0}, "burstiness"), ({"max_concurrency": 0}, "max_concurrency"),
])
def test_bad_load_settings_are_usage_errors(fields, message):
    with pytest.raises(EnergyUsageError, match=message):
        LoadSpec(**fields)


def test_request_record_latencies():
    record = RequestRecord(index=0, prompt_tokens=4, sent_at=10.0, token_times=(10.5, 10.6, 10.8),
                           finished_at=10.9, reported_tokens=3)
    assert record.output_tokens == 3
    assert record.ttft_s == pytest.approx(0.5)
    assert record.inter_token_latencies == pytest.approx((0.1, 0.2))


def test_tokens_between_counts_only_the_window():
    records = tuple(RequestRecord(i, 4, 0.0, (1.0 + i, 2.0 + i, 3.0 + i), 3.0 + i, 3) for i in range(2))
    run = LoadRun(records, started_at=0.0, last_sent_at=0.0, steady_began_at=0.0, tail_began_at=3.0)
    assert run.tokens_between(2.0, 3.0) == 4  # 2.0 and 3.0 of each request; 1.0 and 4.0 are outside
    assert run.tokens_between(3.5, 9.0) == 1
    latency = run.latency()
    assert latency["requests"] == 2 and latency["ttft_s_median"] == pytest.approx(1.5)
    assert latency["itl_s_median"] == pytest.approx(1.0)


def test_request_body_asks_for_exact_lengths_and_token_ids():
    body = CompletionRequest("m", 7, temperature=0.5, top_p=0.9, seed=3).body(2, [5, 6])
    assert body["max_tokens"] == body["min_tokens"] == 7 and body["ignore_eos"] is True
    assert body["stream"] is True and body["return_token_ids"] is True and body["seed"] == 5
    assert "seed" not in CompletionRequest("m", 7).body(0, [5])


# -- phases against a scripted server: each request streams n tokens, one every `token_gap_s` ------------------
@pytest.fixture
def web():
    return pytest.importorskip("aiohttp.web")


async def _start(web, app):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


async def _serve(web, token_gap_s: float, short_by: int = 0):
    """Streams max_tokens tokens (less `short_by`), one every token_gap_s x prompt length."""
    async def completions(request):
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        count = body["max_tokens"] - short_by
        for i in range(count):
            await asyncio.sleep(token_gap_s * len(body["prompt"]))
            chunk = {"choices": [{"index": 0, "text": "", "token_ids": [1000 + i]}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"choices": [], "usage": {"completion_tokens": count}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    return await _start(web, app)


def test_phases_follow_the_concurrency_and_the_tail(web):
    async def scenario():
        runner, url = await _serve(web, token_gap_s=0.01)
        try:
            phases = LoadPhases()
            prompts = [[1, 2, 3]] * 6
            run = await run_load(url, CompletionRequest("m", 5), prompts, LoadSpec(max_concurrency=2), phases)
        finally:
            await runner.cleanup()
        return run, phases

    run, phases = asyncio.run(scenario())
    assert phases.steady.is_set() and phases.tail.is_set()
    assert [record.output_tokens for record in run.records] == [5] * 6
    sent = sorted(record.sent_at for record in run.records)
    # Concurrency 2: the steady state begins when the second request is sent ...
    assert sent[1] <= run.steady_began_at < sent[2]
    # ... and the tail at the first completion after the sixth (last) request was sent.
    assert run.last_sent_at <= run.tail_began_at
    finished = sorted(record.finished_at for record in run.records)
    assert run.tail_began_at <= finished[-1]
    assert run.tail_began_at == pytest.approx(min(t for t in finished if t >= run.last_sent_at), abs=0.005)
    # Three rounds of two requests, about 5 x 10 ms each.
    assert 0.1 < finished[-1] - run.started_at < 1.0


def test_a_short_answer_fails_the_run(web):
    async def scenario():
        runner, url = await _serve(web, token_gap_s=0.001, short_by=1)
        try:
            return await run_load(url, CompletionRequest("m", 4), [[1]] * 2, LoadSpec(max_concurrency=2))
        finally:
            await runner.cleanup()

    with pytest.raises(BackendError, match="did not yield exactly 4 tokens"):
        asyncio.run(scenario())


def test_a_server_error_names_the_status(web):
    async def refuse(request):
        return web.Response(status=400, text="bad prompt")

    async def scenario():
        app = web.Application()
        app.router.add_post("/v1/completions", refuse)
        runner, url = await _start(web, app)
        try:
            return await run_load(url, CompletionRequest("m", 4), [[1]] * 3, LoadSpec(max_concurrency=1))
        finally:
            await runner.cleanup()

    with pytest.raises(BackendError, match="HTTP 400: bad prompt"):
        asyncio.run(scenario())



def test_metered_load_opens_the_window_at_the_steady_state_and_closes_it_at_the_tail(web):
    from pytest_llm_energy.plugin.backends.loadgen import run_metered_load
    from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter

    async def scenario():
        runner, url = await _serve(web, token_gap_s=0.005)
        try:
            # Fast and slow requests alternate, so the two open requests never finish together: when the tail
            # begins, the other one still has tokens to stream.
            prompts = [[1], [1, 2, 3]] * 5
            spec = LoadSpec(max_concurrency=2)
            return await run_metered_load(url, CompletionRequest("m", 10), prompts, spec, CpuTimeMeter().window)
        finally:
            await runner.cleanup()

    reading, run, (begin, end) = asyncio.run(scenario())
    assert run.steady_began_at <= begin < end
    assert end == pytest.approx(run.tail_began_at, abs=0.05)
    assert reading.seconds == pytest.approx(end - begin, abs=0.05)
    assert 0 < run.tokens_between(begin, end) < 100  # the tail's tokens are left out


def test_metered_load_that_fails_opens_no_window(web):
    from pytest_llm_energy.plugin.backends.loadgen import run_metered_load
    from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter

    class CountingMeter(CpuTimeMeter):
        begun = 0

        def begin(self):
            CountingMeter.begun += 1
            return super().begin()

    async def refuse(request):
        return web.Response(status=503, text="overloaded")

    async def scenario():
        app = web.Application()
        app.router.add_post("/v1/completions", refuse)
        runner, url = await _start(web, app)
        try:
            # The first request fails long before the second is due: the steady state is never reached.
            spec = LoadSpec(request_rate=5.0, max_concurrency=4)
            return await run_metered_load(url, CompletionRequest("m", 4), [[1]] * 4, spec, CountingMeter().window)
        finally:
            await runner.cleanup()

    with pytest.raises(BackendError, match="HTTP 503"):
        asyncio.run(scenario())
    assert CountingMeter.begun == 0


def test_a_rate_limited_load_starts_from_what_arrives_in_a_few_windows():
    from pytest_llm_energy.plugin.backends.vllm_server import REQUESTS_PER_SLOT, first_request_count

    # 16 slots at 2 requests/s: rounds of slots would be 64 requests, 32 s of arrivals for a 1 s window.
    assert first_request_count(LoadSpec(request_rate=2.0, max_concurrency=16), 1.0) == 4
    assert first_request_count(LoadSpec(request_rate=8.0, max_concurrency=16), 1.0) == 16
    # A burst, or a rate the slots cannot keep up with, is rounds of every slot.
    assert first_request_count(LoadSpec(max_concurrency=16), 1.0) == 16 * REQUESTS_PER_SLOT
    assert first_request_count(LoadSpec(request_rate=1000.0, max_concurrency=4), 1.0) == 4 * REQUESTS_PER_SLOT
    assert first_request_count(LoadSpec(request_rate=0.1, max_concurrency=1), 1.0) == 2
