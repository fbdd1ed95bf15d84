"""pytest-xdist on a multi-GPU runner: one GPU per worker, pinned by UUID before the worker starts CUDA.

    pytest suites/ -n 2 --energy-gpu=h100                      # two workers, one H100 each
    pytest suites/ -n 2 --energy-gpu=h100 --dist loadgroup     # and tests of one model on one worker

The controller lists the GPUs it can see (NVML, after its own CUDA_VISIBLE_DEVICES) and, in
`pytest_configure_node`, gives worker gwK the K-th of them as a UUID in `workerinput`. The worker's
`pytest_configure` sets CUDA_VISIBLE_DEVICES to that UUID before the plugin creates its meter and before
any backend loads a model, so the model and the NVML meter of a worker see that one GPU only: the energy a
worker measures never includes another worker's work. (NVML counters cover a whole device, so this is the
only way two workers can measure at once.) A worker that xdist restarts after a crash gets a new id and
takes the GPU its predecessor left.

Rules: `-n` larger than the number of visible GPUs is a usage error (two workers on one GPU would measure
each other); on `--energy-gpu=cpu` nothing is pinned and any `-n` works (the CPU-time meter counts its own
process; RAPL counts the whole package, which the report says). A test that needs several GPUs
(tensor_parallel_size > 1) cannot run under `-n`: run that suite without it.

Grouping: a backend keeps one model resident per process, so tests of one model are cheapest on one
worker. With `--dist loadgroup`, a test whose energy marker names a `model` is grouped by that model
(`xdist_group(name=model)`) unless it has its own `xdist_group` mark. xdist appends "@group" to the
node ids of grouped tests; `plain_nodeid` removes it, so baselines keep the test id a serial run uses.

The controller still merges every worker's records (they travel in the test reports) into one report and
one baseline write; each record says which worker measured it, and its `measurement.devices` which GPU.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..core.errors import EnergyUsageError
from .progress import CHANNEL_KEY

GPU_INPUT_KEY = "energy_gpu_uuid"  # workerinput key: the UUID of the GPU this worker measures
DESELECTED_KEY = "energy_deselected"  # workeroutput key: the worker's plugins or conftests deselected tests
GROUP_MARK = "xdist_group"
_WORKER_ID = re.compile(r"gw(\d+)")


def has_xdist(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("xdist")


def worker_id(config: pytest.Config) -> str | None:
    """This process's xdist worker id (gw0, gw1, ...), or None in the controller or a serial run."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("workerid") if workerinput else None


def worker_count(config: pytest.Config) -> int:
    """How many workers xdist will start for this run (0: tests run in this process)."""
    if worker_id(config) is not None or config.getoption("dist", "no") == "no":
        return 0
    specs = config.getoption("tx", None) or []
    count = 0
    for spec in specs:  # `--tx 3*popen` means three workers, as xdist reads it
        times, star, _ = spec.partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count


# --- which worker measures which GPU (pure logic) -------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    worker: str
    uuid: str
    index: int  # the GPU's place among those the controller sees


class GpuAssignment:
    """One GPU per live worker: gwK gets the K-th GPU; a restarted worker the GPU that was freed."""

    def __init__(self, uuids: Sequence[str]) -> None:
        if len(set(uuids)) != len(uuids):
            raise EnergyUsageError("the same GPU is listed twice in CUDA_VISIBLE_DEVICES; list each GPU once")
        self.uuids = tuple(uuids)
        self._held: dict[str, int] = {}  # worker id -> index into uuids
        self.pins: dict[str, Pin] = {}  # every worker that ever got a GPU, for the report

    def assign(self, worker: str) -> Pin:
        if worker in self._held:
            return self.pins[worker]
        taken = set(self._held.values())
        match = _WORKER_ID.fullmatch(worker)
        preferred = int(match.group(1)) if match else None
        if preferred is not None and preferred < len(self.uuids) and preferred not in taken:
            index = preferred
        else:
            free = [i for i in range(len(self.uuids)) if i not in taken]
            if not free:
                raise EnergyUsageError(
                    f"xdist worker {worker}: all {len(self.uuids)} visible GPUs are in use by other workers; "
                    f"run with -n {len(self.uuids)} or fewer"
                )
            index = free[0]
        self._held[worker] = index
        self.pins[worker] = Pin(worker, self.uuids[index], index)
        return self.pins[worker]

    def release(self, worker: str) -> None:
        self._held.pop(worker, None)

    def planned(self, count: int) -> list[Pin]:
        """The pins that workers gw0..gw{count-1} will get, for the report header before they start."""
        return [Pin(f"gw{k}", self.uuids[k], k) for k in range(min(count, len(self.uuids)))]


def asked_for_auto(config: pytest.Config) -> bool:
    """Whether the command line said `-n auto` or `-n logical` (xdist has replaced it by a count by now)."""
    words = [str(word) for word in config.invocation_params.args]
    return any(
        word in ("auto", "logical") or word.endswith(("=auto", "=logical", "-nauto", "-nlogical"))
        for word in words
    )


def check_worker_count(workers: int, uuids: Sequence[str], gpu_key: str, *, auto: bool = False) -> None:
    if workers > len(uuids):
        raise EnergyUsageError(
            f"-n {workers} starts more xdist workers than the {len(uuids)} visible {gpu_key} GPU"
            f"{'s' if len(uuids) != 1 else ''}: each worker measures a GPU of its own, and two workers on "
            f"one GPU would count each other's energy; use -n {len(uuids)} or fewer"
            + (" (-n auto counts CPU cores, not GPUs)" if auto else "")
        )


# --- the hooks ------------------------------------------------------------------------------------------


class XdistHooks:
    """Registered on the controller only when xdist is installed (as pytest-randomly does)."""

    def __init__(self, assignment: GpuAssignment | None, progress_dir: Path | None = None) -> None:
        self.assignment = assignment
        self.progress_dir = progress_dir

    def pytest_configure_node(self, node) -> None:
        if self.assignment is not None:
            node.workerinput[GPU_INPUT_KEY] = self.assignment.assign(node.gateway.id).uuid
        if self.progress_dir is not None:
            node.workerinput[CHANNEL_KEY] = str(self.progress_dir)

    def pytest_testnodedown(self, node, error) -> None:
        if self.assignment is not None:
            self.assignment.release(node.gateway.id)


def pin_worker(config: pytest.Config) -> str | None:
    """In a worker: show CUDA only the GPU the controller gave it. Call before any meter or model exists."""
    workerinput = getattr(config, "workerinput", None) or {}
    uuid = workerinput.get(GPU_INPUT_KEY)
    if not uuid:
        return None
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and callable(getattr(cuda, "is_initialized", None)) and cuda.is_initialized():
        if os.environ.get("CUDA_VISIBLE_DEVICES") != uuid:
            raise EnergyUsageError(
                f"xdist worker {workerinput.get('workerid')}: CUDA was started before pytest-llm-energy could "
                f"pin this worker to GPU {uuid} (a conftest or plugin used CUDA at import); start CUDA "
                "in fixtures or tests instead"
            )
    os.environ["CUDA_VISIBLE_DEVICES"] = uuid
    return uuid


# --- grouping tests of one model on one worker ------------------------------------------------------------


def _group_names(item: pytest.Item) -> list[str]:
    names = set()
    for mark in item.iter_markers(GROUP_MARK):  # the same reading as xdist's worker
        names.add(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return sorted(names)


def loadgroup(config: pytest.Config) -> bool:
    """Whether xdist groups tests here: on a worker it sets `loadgroup`; the controller has `--dist`."""
    return bool(config.getoption("loadgroup", False)) or config.getoption("dist", "no") == "loadgroup"


def group_by_model(item: pytest.Item, model: str | None) -> None:
    """Under --dist loadgroup, keep a model's tests on one worker unless the test chose its own group."""
    if model and loadgroup(item.config) and not _group_names(item):
        item.add_marker(pytest.mark.xdist_group(name=model))


def plain_nodeid(item: pytest.Item) -> str:
    """The node id without the "@group" suffix xdist adds under --dist loadgroup: what baselines are keyed on."""
    nodeid = item.nodeid
    names = _group_names(item) if loadgroup(item.config) else []
    suffix = "@" + "_".join(names)
    return nodeid[: -len(suffix)] if names and nodeid.endswith(suffix) else nodeid


def strip_group(nodeid: str, config: pytest.Config) -> str:
    """A node id a worker reported, without the "@group" suffix loadgroup gives it (the controller has only
    the id, not the item; as plain_nodeid does for items)."""
    return nodeid.rsplit("@", 1)[0] if loadgroup(config) and "@" in nodeid else nodeid
