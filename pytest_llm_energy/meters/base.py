"""The meter interface: a window is begun, ended, and read as joules over seconds (after Zeus's windows)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..measurement import Reading


class Meter(ABC):
    """A source of joules. Subclasses say whether their number is measured or estimated."""

    name: str = "meter"
    estimated: bool = False
    # Windows shorter than this lose the precision the meter's docs state; the runner lengthens them.
    min_window_s: float = 1.0

    @abstractmethod
    def begin(self) -> Any:
        """Start a window; returns an opaque start state for `end`."""

    @abstractmethod
    def end(self, start: Any) -> Reading:
        """End the window begun by `begin` and return what was used in it."""

    @abstractmethod
    def idle_watts(self) -> float:
        """Idle power of the measured devices (summed), measured once and cached."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the report header: which devices, which method, measured or estimated."""

    @property
    def kind(self) -> str:
        return "estimated" if self.estimated else "measured"

    def close(self) -> None:  # noqa: B027 - meters without handles need no close
        """Release the meter's handles."""
