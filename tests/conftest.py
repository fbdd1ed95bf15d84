"""Shared test setup: pytester for plugin behaviour, as a user would run pytest."""

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_github_job_summary(monkeypatch):
    """Inner pytest runs must not append to the real GitHub job summary of the CI job running these tests."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
