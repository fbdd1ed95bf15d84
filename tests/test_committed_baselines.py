"""The baselines committed in baselines/ are measured records of the current suites, not hand-written numbers.

A hand edit, an entry recorded on one GPU and filed under another's key, or a suite bin renamed without
recording it again fails here, on the CPU, before a GPU runner meets it.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llm_energy.core.baseline import read_set
from pytest_llm_energy.core.gpus import key_for_name

ROOT = Path(__file__).resolve().parent.parent
GPU_FOLDERS = sorted(p for p in (ROOT / "baselines").iterdir() if p.is_dir() and not p.name.startswith("."))
BIN_ID = re.compile(r"\[in(\d+)-out(\d+)-b(\d+)-")


def test_there_are_gpu_baselines():
    assert GPU_FOLDERS, "baselines/ holds no GPU folder"


@pytest.mark.parametrize("folder", GPU_FOLDERS, ids=lambda p: p.name)
def test_every_entry_is_a_measured_record_of_its_gpu(folder):
    entries = [(gpu, entry) for (gpu, _), entry in read_set(folder).entries.items()]  # raises BaselineError on a malformed file
    assert entries, f"{folder} holds no entries"
    for gpu_key, entry in entries:
        where = f"{entry.path.relative_to(ROOT)}: {entry.nodeid}"
        fingerprint = entry.fingerprint
        assert gpu_key == folder.name, where
        assert key_for_name(fingerprint["gpu_name"]) == folder.name, where
        assert entry.data["meter"] == "nvml" and entry.data["estimated"] is False, where
        assert len(entry.samples) >= 3, where
        assert entry.gpu_uuids and entry.gpu_uuids == set(fingerprint["gpu_uuids"]), where
        assert fingerprint["driver"] and fingerprint["torch"], where
        assert entry.data.get("recorded_at"), where
        backend = entry.data["backend"]
        if backend["backend"] == "hf":  # the suites run HF compiled: an eager record is of another path
            assert backend["options"]["compile"] is True, where
        assert entry.data["measurement"].get("busy_share") is not None, where  # how GPU-bound it was


@pytest.fixture(scope="module")
def suite_test_ids() -> set[str]:
    """The ids the suites collect now, at their default GPU batch sizes (a superset of any smaller run's)."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/", "--collect-only", "-q", "--energy-gpu=cpu", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    return {line.strip() for line in collected.stdout.splitlines() if "::" in line}


@pytest.mark.parametrize("folder", GPU_FOLDERS, ids=lambda p: p.name)
def test_every_entry_names_a_test_the_suites_collect(folder, suite_test_ids):
    stale = sorted(entry.nodeid for _, entry in read_set(folder).entries.items() if entry.nodeid not in suite_test_ids)
    assert not stale, f"{folder.name}: entries of no current suite test (renamed or dropped bins): {stale}"


@pytest.mark.parametrize("folder", GPU_FOLDERS, ids=lambda p: p.name)
def test_every_trace_bin_ran_the_workload_its_id_names(folder):
    for _, entry in read_set(folder).entries.items():
        match = BIN_ID.search(entry.nodeid)
        if match:
            workload = entry.data["workload"]
            assert (workload["input_tokens"], workload["output_tokens"], workload["batch_size"]) == tuple(
                int(n) for n in match.groups()), f"{entry.path.relative_to(ROOT)}: {entry.nodeid}"


@pytest.mark.parametrize("folder", GPU_FOLDERS, ids=lambda p: p.name)
def test_no_entry_names_a_path_of_the_machine_that_recorded_it(folder):
    for _, entry in read_set(folder).entries.items():
        model = (entry.data.get("backend") or {}).get("model") or {}
        if model.get("source") != "hub":  # a hub id has a slash; a folder is kept by its name only
            assert "/" not in model.get("reference", "") and "/" not in model.get("name", ""), entry.nodeid
    text = "".join(path.read_text() for path in folder.rglob("*.json"))
    assert str(ROOT) not in text
