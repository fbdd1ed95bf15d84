"""Progress of long tests: `[energy] TEST trial 3/5 (41.2 s)`, written so that pytest's own output stays intact.

With -v each test has a line of its own, and progress lines go between them. In pytest's dot mode a line of
its own would cut the row of dots, so on a terminal the progress is a transient line under the row, erased
when the test ends, and in a log (not a terminal) it is left out. Under -q nothing is shown. An xdist worker
cannot write to the terminal: it leaves its latest line in a file the controller passes it, and the
controller shows those lines as reports arrive.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

PROGRESS_AFTER_S = 2.0  # quick tests stay quiet; progress appears once a test runs this long
CHANNEL_KEY = "energy_progress_dir"  # workerinput key: where a worker leaves its progress
ERASE_LINE = "\x1b[2K"
UP = "\x1b[1A"


class ProgressLine:
    """One object for the whole session: the workload runner keeps it, so it follows the current test."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.nodeid = ""
        self.started = time.perf_counter()
        self.transient = False  # a status line is shown under pytest's row of dots
        workerinput = getattr(config, "workerinput", None) or {}
        self.worker = workerinput.get("workerid")
        channel = workerinput.get(CHANNEL_KEY)
        self.channel = Path(channel) / f"{self.worker}.txt" if channel else None
        self.relayed: dict[Path, float] = {}  # the controller: progress files already shown

    def start(self, nodeid: str) -> None:
        self.nodeid, self.started = nodeid, time.perf_counter()

    def __call__(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed < PROGRESS_AFTER_S or self.config.get_verbosity() < 0:
            return
        line = f"  [energy] {self.nodeid} {text.replace(self.nodeid, '').strip()} ({elapsed:.1f} s)"
        if self.worker is not None:
            if self.channel is not None:
                temporary = self.channel.with_suffix(".tmp")
                temporary.write_text(line, encoding="utf-8")
                os.replace(temporary, self.channel)  # the controller never reads half a line
            return
        self.show(line)

    def show(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if self.config.get_verbosity() >= 1:
                reporter.write_line(line)
            elif getattr(reporter, "isatty", False):
                self._status(reporter, line)
            reporter.flush()

    def _status(self, reporter, line: str) -> None:
        """Under the row of dots: a line of its own, then back to the end of the row, which pytest goes on."""
        writer = reporter._tw
        row = writer._current_line
        text = line[: max(10, writer.fullwidth - 1)]
        writer._file.write(f"\n{ERASE_LINE}{text}{UP}\r{row}")
        self.transient = True

    def clear(self) -> None:
        """Erase the status line under the dots (a test ended); pytest's own output is as it was."""
        if not self.transient:
            return
        self.transient = False
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            writer = reporter._tw
            writer._file.write(f"\n{ERASE_LINE}{UP}\r{writer._current_line}")
            writer._file.flush()

    def relay(self, folder: Path | None) -> None:
        """The controller under xdist: show each worker's latest line that has not been shown yet."""
        if folder is None or self.config.get_verbosity() < 0:
            return
        for path in sorted(folder.glob("*.txt")):
            with contextlib.suppress(OSError):
                changed = path.stat().st_mtime
                if self.relayed.get(path) != changed:
                    self.relayed[path] = changed
                    self.show(f"[{path.stem}]" + path.read_text(encoding="utf-8"))
