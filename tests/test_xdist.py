"""pytest-xdist: one GPU per worker (pure logic on the fake NVML, then real `-n 2` runs), merged results."""

import json
import sys
import types
from pathlib import Path

import pytest

from pytest_llm_energy.core.errors import EnergyUsageError
from pytest_llm_energy.plugin import xdist_support
from pytest_llm_energy.plugin.meters.nvml import NvmlMeter, visible_devices
from pytest_llm_energy.plugin.xdist_support import (
    GPU_INPUT_KEY,
    GpuAssignment,
    XdistHooks,
    check_worker_count,
)

from .fake_nvml import Clock, FakeGpu, FakeNvml

pytest.importorskip("xdist")

UUIDS = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
ARGS = ("--energy-gpu=cpu", "--energy-trials=3", "--energy-min-window=0.05", "-p", "no:cacheprovider")


# --- pure logic -------------------------------------------------------------------------------------------


def test_worker_k_gets_the_kth_gpu_and_no_gpu_twice():
    assignment = GpuAssignment(UUIDS[:2])
    assert assignment.assign("gw1").uuid == "GPU-bbbb"
    assert assignment.assign("gw0").uuid == "GPU-aaaa"
    assert assignment.assign("gw0").uuid == "GPU-aaaa"  # asking again changes nothing
    with pytest.raises(EnergyUsageError, match="all 2 visible GPUs are in use.*-n 2 or fewer"):
        assignment.assign("gw2")


def test_a_restarted_worker_takes_the_gpu_that_was_freed():
    assignment = GpuAssignment(UUIDS[:2])
    assignment.assign("gw0"), assignment.assign("gw1")
    assignment.release("gw0")  # gw0 crashed; xdist starts gw2 in its place
    assert assignment.assign("gw2").uuid == "GPU-aaaa"
    assert {worker: pin.uuid for worker, pin in assignment.pins.items()} == {
        "gw0": "GPU-aaaa",
        "gw1": "GPU-bbbb",
        "gw2": "GPU-aaaa",
    }


def test_more_workers_than_gpus_is_a_usage_error():
    check_worker_count(2, UUIDS[:2], "h100")
    with pytest.raises(
        EnergyUsageError, match=r"-n 3 starts more xdist workers than the 2 visible h100 GPUs.*use -n 2"
    ):
        check_worker_count(3, UUIDS[:2], "h100")
    with pytest.raises(EnergyUsageError, match=r"use -n 2 or fewer \(-n auto counts CPU cores, not GPUs\)"):
        check_worker_count(16, UUIDS[:2], "h100", auto=True)
    with pytest.raises(EnergyUsageError, match="listed twice"):
        GpuAssignment(["GPU-aaaa", "GPU-aaaa"])


def test_the_controller_pins_the_gpus_it_sees_through_cuda_visible_devices():
    nvml = FakeNvml([FakeGpu(uuid) for uuid in UUIDS])
    seen = visible_devices(nvml, "GPU-cccc,GPU-aaaa")  # the runner gave this job two of three GPUs
    hooks = XdistHooks(GpuAssignment([d.uuid for d in seen]))
    nodes = [
        types.SimpleNamespace(gateway=types.SimpleNamespace(id=f"gw{k}"), workerinput={}) for k in range(2)
    ]
    for node in nodes:
        hooks.pytest_configure_node(node)
    assert [node.workerinput[GPU_INPUT_KEY] for node in nodes] == ["GPU-cccc", "GPU-aaaa"]
    hooks.pytest_testnodedown(nodes[0], error="crashed")
    clone = types.SimpleNamespace(gateway=types.SimpleNamespace(id="gw2"), workerinput={})
    hooks.pytest_configure_node(clone)
    assert clone.workerinput[GPU_INPUT_KEY] == "GPU-cccc"


def test_a_pinned_worker_measures_its_own_gpu_only(monkeypatch):
    clock = Clock()
    nvml = FakeNvml([FakeGpu("GPU-aaaa", watts=100.0), FakeGpu("GPU-bbbb", watts=300.0)], clock=clock)
    config = types.SimpleNamespace(workerinput={"workerid": "gw1", GPU_INPUT_KEY: "GPU-bbbb"})
    # Set before deleting, so monkeypatch records it and also undoes the variable pin_worker writes.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert xdist_support.pin_worker(config) == "GPU-bbbb"
    meter = NvmlMeter(nvml=nvml, clock=clock, sleep=clock.sleep)
    assert [d.uuid for d in meter.devices] == ["GPU-bbbb"]
    start = meter.begin()
    clock.sleep(2.0)  # the other GPU works too, at a third of the power: none of it may be counted
    reading = meter.end(start)
    assert [d.uuid for d in reading.devices] == ["GPU-bbbb"]
    assert reading.joules / reading.seconds == pytest.approx(300.0, rel=0.02)


def test_pinning_after_cuda_started_is_an_error(monkeypatch):
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    config = types.SimpleNamespace(workerinput={"workerid": "gw0", GPU_INPUT_KEY: "GPU-aaaa"})
    with pytest.raises(EnergyUsageError, match="CUDA was started before pytest-llm-energy could pin"):
        xdist_support.pin_worker(config)


def test_nothing_is_pinned_without_a_gpu_from_the_controller(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert xdist_support.pin_worker(types.SimpleNamespace(workerinput={"workerid": "gw0"})) is None
    assert xdist_support.pin_worker(types.SimpleNamespace()) is None
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


# --- real runs --------------------------------------------------------------------------------------------

MANY = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_case(energy, n):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10
"""


GROUPED = """
import pytest

def group_of(request):
    mark = request.node.get_closest_marker("xdist_group")
    return mark and (mark.args[0] if mark.args else mark.kwargs["name"])

@pytest.mark.parametrize("n", range(2))
@pytest.mark.energy(model="tiny-llama")  # grouped by model; the tests only measure
def test_a(energy, request, n):
    assert group_of(request) == "tiny-llama"
    with energy.measure() as m:
        sum(i * i for i in range(50000))
        m.output_tokens = 10

@pytest.mark.xdist_group("mine")
@pytest.mark.energy(model="tiny-llama")
def test_own_group(energy, request):
    assert group_of(request) == "mine"
    with energy.measure() as m:
        sum(i * i for i in range(50000))
        m.output_tokens = 10

def test_without_model(energy, request):
    assert group_of(request) is None
    with energy.measure() as m:
        sum(i * i for i in range(50000))
        m.output_tokens = 10
"""


def test_two_workers_on_cpu_pin_nothing_and_merge_every_result(pytester, monkeypatch):
    """One `-n 2 --dist loadgroup` run: merged results, model groups, plain test ids, JUnit, job summary."""
    pytester.makepyfile(test_many=MANY, test_grouped=GROUPED)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary.md"))
    result = pytester.runpytest_subprocess(
        *ARGS,
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--energy-update-baselines",
        "--energy-json=r.json",
        "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=8)
    assert "one GPU per xdist worker" not in result.stdout.str()  # nothing is pinned on cpu
    document = json.loads((pytester.path / "r.json").read_text())
    assert "workers" not in document
    results = {r["nodeid"]: r for r in document["results"]}
    assert sorted(results) == sorted(
        [f"test_many.py::test_case[{n}]" for n in range(4)]
        + [
            "test_grouped.py::test_a[0]",
            "test_grouped.py::test_a[1]",
            "test_grouped.py::test_own_group",
            "test_grouped.py::test_without_model",
        ]
    )  # and no "@group" suffix
    assert {r["worker"] for r in results.values()} == {"gw0", "gw1"}
    written = {
        path.name: json.loads(path.read_text())["entries"]
        for path in (pytester.path / "baselines/cpu").glob("*.json")
    }
    assert sorted([*written["test_many.json"], *written["test_grouped.json"]]) == sorted(results)
    # JUnit properties travel with the reports of the workers
    from xml.etree import ElementTree

    cases = ElementTree.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    properties = {
        f"{case.get('classname')}.{case.get('name')}": {
            p.get("name"): p.get("value") for p in case.iter("property")
        }
        for case in cases
    }
    assert len(properties) == 8 and all(p.get("energy_verdict") == "new" for p in properties.values())
    record = results["test_many.py::test_case[0]"]
    assert float(properties["test_many.test_case[0]"]["energy_joules_per_token"]) == pytest.approx(
        record["joules_per_token"]
    )
    # the job summary is written once, by the controller, with every worker's results
    summary = (pytester.path / "summary.md").read_text()
    assert summary.count("## Energy report") == 1 and "8 tests: 8 new." in summary
    # the CPU-time estimate under two workers says plainly that it is inflated, in the header and each record
    result.stdout.fnmatch_lines(["energy: ESTIMATES INFLATED: 2 xdist workers share the CPU*"])
    assert all("xdist-shared-cpu" in r["flags"] for r in results.values())
    # and the controller knew what the workers collected: no entry is reported unused
    assert "unused baseline entries" not in result.stdout.str() and document["unused_baseline_entries"] == []


def grouped_item(nodeid, groups, loadgroup=True):
    marks = [pytest.mark.xdist_group(name).mark for name in groups]
    options = {"loadgroup": loadgroup}
    config = types.SimpleNamespace(getoption=lambda name, default=None: options.get(name, default))
    return types.SimpleNamespace(
        nodeid=nodeid, config=config, iter_markers=lambda name: [m for m in marks if m.name == name]
    )


def test_the_group_suffix_xdist_adds_is_removed_from_test_ids():
    assert (
        xdist_support.plain_nodeid(grouped_item("t.py::test_x[1]@model-a", ["model-a"])) == "t.py::test_x[1]"
    )
    assert xdist_support.plain_nodeid(grouped_item("t.py::test_x@a_b", ["b", "a"])) == "t.py::test_x"
    # an @ that is part of the test id stays: only the suffix of the test's own groups goes
    assert xdist_support.plain_nodeid(grouped_item("t.py::test_x[a@b]", [])) == "t.py::test_x[a@b]"
    assert (
        xdist_support.plain_nodeid(grouped_item("t.py::test_x[a@b]", ["b"], loadgroup=False))
        == "t.py::test_x[a@b]"
    )


# --- a 2-GPU runner, simulated: the fake NVML stands in for pynvml in the controller and each worker -----

FAKE_NVML_CONFTEST = """
import sys
sys.path.insert(0, {tests!r})
import fake_nvml

# Two H100s that draw different power, so each record shows which GPU its worker measured.
fake_nvml.install_for_plugin_run([fake_nvml.FakeGpu("GPU-aaaa", watts=100.0),
                                   fake_nvml.FakeGpu("GPU-bbbb", watts=400.0)])
"""

SLEEPY = """
import os, time
import pytest

@pytest.mark.parametrize("n", range(4))
def test_case(energy, n):
    assert os.environ["CUDA_VISIBLE_DEVICES"].startswith("GPU-")
    with energy.measure() as m:
        time.sleep(0.12)
        m.output_tokens = 10
"""
GPU_ARGS = (
    "--energy-gpu=h100",
    "--energy-trials=2",
    "--energy-warmup=0",
    "--energy-min-window=0.05",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:randomly",
)


@pytest.fixture
def two_gpus(pytester, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makeconftest(FAKE_NVML_CONFTEST.format(tests=str(Path(__file__).parent)))
    pytester.makepyfile(test_gpu=SLEEPY)
    return pytester


def test_each_worker_measures_its_own_gpu_and_baselines_store_one_workers_view(two_gpus):
    result = two_gpus.runpytest_subprocess(
        *GPU_ARGS, "-n", "2", "--energy-update-baselines", "--energy-json=r.json"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["energy: one GPU per xdist worker: gw0 -> GPU-aaaa, gw1 -> GPU-bbbb"])
    document = json.loads((two_gpus.path / "r.json").read_text())
    assert document["workers"] == {"gw0": "GPU-aaaa", "gw1": "GPU-bbbb"}
    watts = {"GPU-aaaa": 100.0, "GPU-bbbb": 400.0}
    for record in document["results"]:
        (device,) = record["measurement"]["devices"]
        assert device["uuid"] == document["workers"][record["worker"]]
        assert record["measurement"]["average_watts"] == pytest.approx(watts[device["uuid"]], rel=0.1)
    # The stored fingerprint is one worker's view (one GPU): a later run compares with it instead of
    # refusing the baseline as recorded on other hardware (gpu_count is compared).
    entries = json.loads((two_gpus.path / "baselines/h100/test_gpu.json").read_text())["entries"]
    assert {entry["fingerprint"]["gpu_count"] for entry in entries.values()} == {1}
    assert document["fingerprint"]["gpu_count"] == 1


def test_more_workers_than_visible_gpus_stops_before_any_test(two_gpus):
    result = two_gpus.runpytest_subprocess(*GPU_ARGS, "-n", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*-n 3 starts more xdist workers than the 2 visible h100 GPUs*use -n 2 or fewer*"]
    )
    assert "Traceback" not in result.stderr.str()


HF_RUN = """
import pytest
from pytest_llm_energy import Workload

@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.energy(trials=2, warmup=1)
def test_hf(energy, batch):
    energy.run(Workload(8, 4, batch), backend="hf", model="tiny-llama")
"""


def test_two_workers_carry_real_backend_records_to_the_controller(pytester):
    """A real backend's record (torch's version is a str subclass execnet cannot send) crosses to the controller."""
    pytest.importorskip("transformers")
    pytester.makepyfile(test_hf_run=HF_RUN)
    result = pytester.runpytest_subprocess(*ARGS, "-n", "2", "--energy-update-baselines", "--energy-json=r.json")
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    versions = [r["backend"]["versions"] for r in document["results"]]
    assert len(versions) == 2 and all(v["torch"] and v["transformers"] for v in versions)


def test_a_bad_marker_under_xdist_errors_with_its_message_instead_of_crashing_the_worker(pytester):
    pytester.makepyfile(test_bad="""
import pytest

@pytest.mark.energy(tolerence=0.1)
def test_typo(energy):
    pass
""", test_good=MANY)
    result = pytester.runpytest_subprocess(*ARGS, "-n", "2", "--energy-update-baselines")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*test_bad.py::test_typo: unknown keyword 'tolerence' in @pytest.mark.energy*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    written = json.loads((pytester.path / "baselines/cpu/test_good.json").read_text())["entries"]
    assert len(written) == 4 and not (pytester.path / "baselines/cpu/test_bad.json").exists()


ONE_TEST = """
def test_block(energy):
    with energy.measure() as m:
        sum(i * i for i in range(200_000))
        m.output_tokens = 100
"""


def test_a_cpu_estimate_under_xdist_starts_its_own_history(pytester):
    # `-n 2 --energy-update-baselines` took an entry from 5 to 6 runs beside serial ones, while its own header
    # says to compare only runs of the same -n: the inflated run restarts the history, and back again.
    pytester.makepyfile(test_one=ONE_TEST)

    def record(*args):
        result = pytester.runpytest(*ARGS, "--energy-update-baselines", *args)
        entry = json.loads((pytester.path / "baselines/cpu/test_one.json").read_text())["entries"]
        return result, entry["test_one.py::test_block"]

    _, entry = record()
    _, entry = record()
    assert len(entry["runs"]) == 2 and "xdist-shared-cpu" not in entry["flags"]
    result, entry = record("-n", "2")
    assert len(entry["runs"]) == 1 and "xdist-shared-cpu" in entry["flags"]
    result.stdout.fnmatch_lines(["*1 history restarted: stack, workload, xdist or energy changed*"])
    _, entry = record()
    assert len(entry["runs"]) == 1 and "xdist-shared-cpu" not in entry["flags"]
