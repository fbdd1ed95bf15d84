"""Which commit a record names: the checkout's HEAD, unless ENERGY_GIT_COMMIT says otherwise."""

import subprocess

import pytest

from pytest_llm_energy.core.fingerprint import git_commit


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("ENERGY_GIT_COMMIT", raising=False)
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("one")
    git(tmp_path, "add", "f.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_head_of_the_checkout_and_dirty_when_tracked_files_changed(repo):
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head
    (repo / "f.txt").write_text("two")
    assert git_commit(repo) == head + "-dirty"


def test_an_explicit_commit_wins_over_a_stale_checkout(repo, monkeypatch):
    monkeypatch.setenv("ENERGY_GIT_COMMIT", "abc123")
    assert git_commit(repo) == "abc123"


def test_without_a_repository_github_sha_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("ENERGY_GIT_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path either
    monkeypatch.setenv("GITHUB_SHA", "def456")
    assert git_commit(tmp_path) == "def456"
    monkeypatch.delenv("GITHUB_SHA")
    assert git_commit(tmp_path) is None
