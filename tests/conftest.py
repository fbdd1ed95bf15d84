"""Shared test setup: pytester for plugin behaviour, as a user would run pytest."""

import contextlib

import pytest

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


# Plugins of this test environment that no inner run uses; hypothesis's alone adds ~1 s to every inner pytest.
INNER_RUNS_WITHOUT = "-p no:hypothesispytest -p no:typeguard -p no:anyio"


@pytest.fixture(autouse=True)
def _lean_inner_runs(request, monkeypatch):
    """Inner pytest runs (pytester's, their xdist workers and A/B arms) load only the plugins they use.

    pytester clears PYTEST_ADDOPTS when it starts, so it is set after pytester, for the runs it makes.
    """
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        monkeypatch.setenv("PYTEST_ADDOPTS", INNER_RUNS_WITHOUT)
