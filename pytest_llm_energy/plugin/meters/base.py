"""The meter contract: a window is begun, ended (or aborted), and read as joules over seconds (after Zeus).

Everything a caller may ask of a meter is declared here, with a default where a meter has nothing to say
(no temperatures on a CPU, no devices, no hardware facts), so no caller reaches into one meter's internals.
`window()` is the one way to measure work: the device is synchronised at both ends, so the window holds all
the work started inside it, and a window whose work failed is aborted (a power-integrating meter's thread
stops) instead of read.
"""

from __future__ import annotations

import contextlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from ...core.measurement import FLAG_SHORT_WINDOW, Reading


def sync_device() -> None:
    """Wait for queued GPU work (as Zeus does); nothing to wait for where torch never started CUDA."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Window:
    """An open window: its `reading` is set once it has closed."""

    def __init__(self) -> None:
        self.reading: Reading | None = None


class Meter(ABC):
    """A source of joules. Subclasses say whether their number is measured or estimated."""

    name: str = "meter"
    estimated: bool = False
    # Windows shorter than this lose the precision the meter's docs state; the runner lengthens them.
    min_window_s: float = 1.0
    # The devices it sums (GPUs, each with .index, .uuid and .name); none for meters of the host.
    devices: tuple = ()
    # Counts only this process tree (CPU time): an A/B controller cannot read an arm's work, the arm reads it.
    process_local: bool = False

    @abstractmethod
    def begin(self) -> Any:
        """Start a window; returns an opaque start state for `end` or `abort`."""

    @abstractmethod
    def end(self, start: Any) -> Reading:
        """End the window begun by `begin` and return what was used in it."""

    def abort(self, start: Any) -> None:  # noqa: B027 - most meters hold nothing open between begin and end
        """Close a window whose work failed, without reading it."""

    def reserve(self) -> None:  # noqa: B027 - only a meter shared with another process has anyone to wait for
        """Wait until the device is this process's to measure on, before work that starts ahead of its window
        (a server's load runs before the steady window opens)."""

    @abstractmethod
    def idle_watts(self) -> float:
        """Idle power of the measured devices (summed), measured once and cached."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the report header: which devices, which method, measured or estimated."""

    def temperatures(self) -> list[float]:
        """Device temperatures in degrees C, for the cool-down between trials; none where not known."""
        return []

    def hardware(self) -> dict:
        """The hardware facts stored with every baseline (GPU model and count, driver, power limit)."""
        return {"gpu_name": None, "gpu_count": 0, "driver": None, "power_limit_watts": None}

    @property
    def device_uuids(self) -> frozenset[str]:
        return frozenset(device.uuid for device in self.devices)

    def close(self) -> None:  # noqa: B027 - meters without handles need no close
        """Release the meter's handles."""

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """Measure the work done inside the block; `window.reading` is set when the block ends."""
        sync_device()
        start = self.begin()
        window = Window()
        try:
            yield window
            sync_device()
        except BaseException:
            self.abort(start)
            raise
        window.reading = self.end(start)


def short_window(seconds: float, min_window_s: float, why: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The flag and note of a window under its meter's minimum (`why`: what the meter loses below it)."""
    if seconds >= min_window_s:
        return (), ()
    return (FLAG_SHORT_WINDOW,), (f"window {seconds:.2f} s is under {min_window_s:g} s: {why}; energy(fn, ...) "
                                  "repeats short work inside one window (--energy-min-window sets the minimum)",)

