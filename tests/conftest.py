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
