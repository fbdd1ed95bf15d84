"""The baselines committed in baselines/ are measured records of the current suites, not hand-written numbers.

A hand edit, an entry recorded on one GPU and filed under another's key, or a suite bin renamed without
recording it again fails here, on the CPU, before a GPU runner meets it.
"""

import re
from pathlib import Path

import pytest

from pytest_llm_energy.baseline import iter_entries
from pytest_llm_energy.gpus import key_for_name

ROOT = Path(__file__).resolve().parent.parent
GPU_FOLDERS = sorted(p for p in (ROOT / "baselines").iterdir() if p.is_dir() and not p.name.startswith("."))
BIN_ID = re.compile(r"\[in(\d+)-out(\d+)-b(\d+)-")


def test_there_are_gpu_baselines():
    assert GPU_FOLDERS, "baselines/ holds no GPU folder"


@pytest.mark.parametrize("folder", GPU_FOLDERS, ids=lambda p: p.name)
def test_every_entry_is_a_measured_record_of_its_gpu(folder):
    entries = list(iter_entries(folder))  # raises BaselineError on a malformed file
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


@pytest.mark.parametrize("folder", GPU_FOLDERS, ids=lambda p: p.name)
def test_every_entry_names_a_bin_of_a_current_suite(folder):
    for _, entry in iter_entries(folder):
        test_file, _, test_id = entry.nodeid.partition("::")
        where = f"{entry.path.relative_to(ROOT)}: {entry.nodeid}"
        assert (ROOT / test_file).is_file(), where
        assert re.search(rf"^def {test_id.split('[')[0]}\(", (ROOT / test_file).read_text(), re.M), where
        match = BIN_ID.search(test_id)
        if match:  # a trace bin: its id and the workload it ran must agree
            workload = entry.data["workload"]
            assert (workload["input_tokens"], workload["output_tokens"], workload["batch_size"]) == tuple(
                int(n) for n in match.groups()), where
