"""The baseline store: file layout, sanitized paths, schema checks, atomic merge-on-write under a lock."""

import json
import math
import multiprocessing
import os

import pytest

from pytest_llm_energy.core.baseline import BaselineStore, read_file, relative_path_for
from pytest_llm_energy.core.errors import BaselineError


def entry(value=0.5):
    return {"joules_per_token": value, "samples": [value, value * 1.01, value * 0.99]}


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("suites/test_chat.py::test_bin[in1024-out128-b8]", "suites/test_chat.json"),
        ("test_x.py::TestA::test_b", "test_x.json"),
        ("../../etc/test_x.py::t", "_/_/etc/test_x.json"),
        ("a b/te$t.py::t", "a_b/te_t.json"),
    ],
)
def test_test_file_maps_to_a_json_file_inside_the_gpu_folder(nodeid, expected):
    assert relative_path_for(nodeid).as_posix() == expected


def test_paths_never_leave_the_gpu_folder(tmp_path):
    store = BaselineStore(tmp_path / "baselines", "h100")
    path = store.path_for("../../../outside.py::t")
    assert store.folder.resolve() in path.resolve().parents
    (tmp_path / "baselines" / "h100").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "baselines" / "h100" / "linked")
    with pytest.raises(BaselineError, match="outside the baselines folder"):
        store.path_for("linked/test_x.py::t")


def test_write_then_lookup_round_trip(tmp_path):
    store = BaselineStore(tmp_path, "h100")
    summaries = store.write({"suites/test_a.py::t1": entry(0.25), "suites/test_a.py::t2": entry(0.5)})
    assert [s.added for s in summaries] == [("suites/test_a.py::t1", "suites/test_a.py::t2")]
    found = BaselineStore(tmp_path, "h100").lookup("suites/test_a.py::t1")
    assert found.joules_per_token == 0.25 and len(found.samples) == 3
    data = json.loads((tmp_path / "h100/suites/test_a.json").read_text())
    assert data["schema"] == "pytest-llm-energy/baseline" and data["gpu"] == "h100"


def test_write_merges_with_what_another_process_wrote_since(tmp_path):
    first = BaselineStore(tmp_path, "h100")
    first.write({"t.py::a": entry(1.0)})
    assert first.lookup("t.py::a")  # cached in this store now
    BaselineStore(tmp_path, "h100").write({"t.py::b": entry(2.0)})  # someone else
    first.write({"t.py::c": entry(3.0)})
    assert set(read_file(tmp_path / "h100/t.json")) == {"t.py::a", "t.py::b", "t.py::c"}


def test_unchanged_content_is_not_rewritten(tmp_path):
    store = BaselineStore(tmp_path, "h100")
    store.write({"t.py::a": entry(1.0)})
    path = tmp_path / "h100/t.json"
    os.utime(path, (1, 1))
    store.write({"t.py::a": entry(1.0)})
    assert path.stat().st_mtime == 1


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    store = BaselineStore(tmp_path, "h100")
    store.write({"t.py::a": entry(1.0)})
    before = (tmp_path / "h100/t.json").read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write({"t.py::a": entry(9.0)})
    assert (tmp_path / "h100/t.json").read_bytes() == before
    assert [p.name for p in (tmp_path / "h100").iterdir()] == ["t.json"]  # nothing but baseline JSON


def test_a_file_broken_before_the_write_is_left_alone_and_others_are_written(tmp_path):
    store = BaselineStore(tmp_path, "h100")
    (tmp_path / "h100").mkdir()
    (tmp_path / "h100/bad.json").write_text("{oops")
    with pytest.raises(BaselineError, match="bad.json: not valid JSON.*other files were written"):
        store.write({"bad.py::a": entry(1.0), "good.py::a": entry(1.0)})
    assert (tmp_path / "h100/bad.json").read_text() == "{oops"
    assert "good.py::a" in read_file(tmp_path / "h100/good.json")


def _writer(root, worker, count):
    for i in range(count):
        BaselineStore(root, "h100").write({f"t.py::w{worker}_{i}": entry(1.0 + i)})


def test_two_processes_updating_one_folder_lose_no_entry(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(tmp_path, w, 25)) for w in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    entries = read_file(tmp_path / "h100/t.json")
    assert len(entries) == 50


def test_floats_are_rounded_and_non_finite_values_become_null(tmp_path):
    store = BaselineStore(tmp_path, "h100")
    store.write({"t.py::a": {**entry(0.123456789), "detectable": float("inf")}})
    data = json.loads((tmp_path / "h100/t.json").read_text())["entries"]["t.py::a"]
    assert data["joules_per_token"] == 0.123457 and data["detectable"] is None


@pytest.mark.parametrize(("workload", "scale"), [
    ({"input_tokens": 4096, "output_tokens": 16, "batch_size": 8}, 1.03),  # prefill-bound: the matmul's
    ({"input_tokens": 1024, "output_tokens": 512, "batch_size": 8}, math.sqrt(1.03 * 0.109)),  # decode
    (None, math.sqrt(1.03 * 0.109)),  # a test that names no workload
])
def test_a_runs_reference_kernels_give_its_card_scale_for_the_entrys_work(tmp_path, workload, scale):
    store = BaselineStore(tmp_path, "h200")
    recorded = {**entry(), "runs": [{"median": 0.5, "trials": 3, "spread": 0.01, "gpus": ["GPU-a"],
                                     "reference": {"gpu": "GPU-a", "compute_joules_per_tflop": 1.03,
                                                   "memory_joules_per_gb": 0.109}},
                                    {"median": 0.5, "trials": 3, "spread": 0.01, "gpus": ["GPU-a"]}]}
    if workload:
        recorded["workload"] = workload
    store.write({"tests/test_x.py::test_a": recorded})
    runs = BaselineStore(tmp_path, "h200").lookup("tests/test_x.py::test_a").runs
    assert runs[0].card_scale == pytest.approx(scale)
    assert runs[1].card_scale is None  # a run recorded with --energy-no-reference
