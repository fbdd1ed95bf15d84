"""Shared test setup: pytester for plugin behaviour, as a user would run pytest."""

import contextlib
import sys

import pytest

from pytest_llm_energy.plugin.meters.nvml import NvmlMeter

from .fake_nvml import FakeGpu, FakeNvml, WallClock

pytest_plugins = ["pytester"]

# pytester's in-process runs put sys.modules back as they found it, so a torch first imported inside one is
# dropped and imported again by the next, which its C extension does not survive (SystemError "bad call
# flags", then a segfault, when test_reliability.py runs alone). Imported here, it is in every snapshot.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401


@pytest.fixture(autouse=True)
def _no_github_job_summary(monkeypatch):
    """Inner pytest runs must not append to the real GitHub job summary of the CI job running these tests."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


# A plugin of this test environment that no inner run uses: it imports all of hypothesis in every inner
# pytest, also at the end of each in-process run (pytester drops what a run imported), ~1 s each.
INNER_RUNS_WITHOUT = "-p no:hypothesispytest"


@pytest.fixture(autouse=True)
def _lean_inner_runs(request, monkeypatch):
    """Inner pytest runs (pytester's, their xdist workers and A/B arms) load only the plugins they use.

    pytester clears PYTEST_ADDOPTS when it starts, so it is set after pytester, for the runs it makes.
    """
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        monkeypatch.setenv("PYTEST_ADDOPTS", INNER_RUNS_WITHOUT)
        # Under `-n`, an inner run is no xdist worker (pytest-benchmark turns itself off in one)
        for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_gpus(monkeypatch):
    """Install a fake pynvml with the given GPUs for in-process pytester runs (undone after the test)."""

    def install(*gpus: FakeGpu, nvml_class=FakeNvml) -> FakeNvml:
        nvml = nvml_class(list(gpus), clock=WallClock())
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.setitem(NvmlMeter.__init__.__kwdefaults__, "idle_seconds", 0.2)  # the real idle window: 2 s
        return nvml

    return install
