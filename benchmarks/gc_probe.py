"""A pytest plugin (`-p gc_probe`, with benchmarks/ on PYTHONPATH) that counts the garbage collector's work
inside measured trial windows, per test, for `first_process.sh`.

GC_PROBE_OUT: where to write the JSON (a list of tests: collections by generation and their milliseconds
inside trial windows, objects the collector tracks at the test's end).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from pathlib import Path

import pytest

from pytest_llm_energy.plugin import runner

_state = {"in_trial": False, "started": 0.0, "test": None}
_tests: list[dict] = []


def _on_gc(phase: str, info: dict) -> None:
    test = _state["test"]
    if not _state["in_trial"] or test is None:
        return
    if phase == "start":
        _state["started"] = time.perf_counter()
        return
    generation = str(info["generation"])
    test["collections"][generation] = test["collections"].get(generation, 0) + 1
    test["ms"][generation] = test["ms"].get(generation, 0.0) + (time.perf_counter() - _state["started"]) * 1e3


_measured = runner.measured


@contextlib.contextmanager
def _probed(*args, warmup: bool = False, **kwargs):
    _state["in_trial"] = not warmup
    try:
        with _measured(*args, warmup=warmup, **kwargs) as window:
            yield window
    finally:
        _state["in_trial"] = False


def pytest_configure(config: pytest.Config) -> None:
    runner.measured = _probed
    gc.callbacks.append(_on_gc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    _state["test"] = {"nodeid": item.nodeid, "collections": {}, "ms": {}}
    try:
        return (yield)
    finally:
        _state["test"]["tracked_objects"] = len(gc.get_objects())
        _tests.append(_state["test"])
        _state["test"] = None


def pytest_unconfigure(config: pytest.Config) -> None:
    out = os.environ.get("GC_PROBE_OUT")
    if out:
        Path(out).write_text(json.dumps({"tests": _tests}, indent=1))
