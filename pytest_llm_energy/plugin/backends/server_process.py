"""A server subprocess that never outlives the test run: own process group, log file, health wait, sure stop.

Stopped on `stop()`, on a failed start, at interpreter exit (atexit, which also runs after Ctrl-C), on
SIGTERM to this process, and, on Linux, by the kernel if this process dies without running any of those
(the server is started with a parent-death signal). An orphaned server would keep a GPU busy, and the
energy counter of every later test would count it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...core.errors import BackendError

STOP_GRACE_S = 15.0  # SIGTERM, then this long for a clean shutdown, then SIGKILL
LOG_TAIL_LINES = 25

# Sets the parent-death signal, then becomes the server (exec keeps the pid and the signal setting).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "except Exception:\n"
    "    pass\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

_live: dict[int, ServerProcess] = {}
_live_lock = threading.Lock()
_exit_hooks_installed = False
_previous_sigterm = None


class ServerProcess:
    """One server command; `start` then `wait_healthy`, and `stop` from any exit path."""

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str] | None = None, name: str = "server") -> None:
        self.command = list(command)
        self.env = dict(os.environ if env is None else env)
        self.name = name
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._keep_log = False  # set once an error message has pointed at the log

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ended_within(self, seconds: float) -> bool:
        """Whether the server has ended, waiting up to `seconds` for it: a killed process closes its sockets
        before it can be reaped, so a client can see the connection reset before the exit is visible."""
        if self._process is None:
            return False
        try:
            self._process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def exit_code(self) -> int | None:
        """The server's exit status once it has ended (negative: the signal that ended it)."""
        return self._process.poll() if self._process is not None else None

    def start(self) -> None:
        log_dir = Path(tempfile.mkdtemp(prefix="llm-energy-server-"))
        self.log_path = log_dir / f"{self.name}.log"
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        command = self.command
        # The parent-death signal fires when the *thread* that forked exits; only the main thread lives as
        # long as the process, so only there is it safe.
        if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
            command = [sys.executable, "-c", _LAUNCHER, *command]
        _install_exit_hooks()
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True,  # its own process group: one signal reaches all its workers
            )
        except OSError as error:
            self._close_log()
            raise BackendError(f"{self.name}: cannot start {self.command[0]}: {error}") from error
        with _live_lock:
            _live[self._process.pid] = self

    def wait_healthy(self, url: str, timeout_s: float, poll_s: float = 0.5) -> float:
        """Poll `url` until it answers 200; returns the seconds it took. Stops the server on failure."""
        started = time.monotonic()
        while True:
            if not self.running:
                code = self._process.returncode if self._process is not None else None
                self._keep_log = True
                self.stop()
                raise BackendError(f"{self.name} exited with code {code} before it was ready; "
                                   f"log: {self.log_path}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() - started > timeout_s:
                self._keep_log = True
                self.stop()
                raise BackendError(f"{self.name} did not answer {url} within {timeout_s:.0f} s; log: "
                                   f"{self.log_path}\n{self.log_tail()}")
            time.sleep(poll_s)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the whole process group, SIGKILL to what is left after `grace_s`; safe to call twice.

        Returns once no process of the group is left, so a caller may check the pid is gone.
        """
        process, self._process = self._process, None
        if process is None:
            self._close_log()
            return
        with _live_lock:
            _live.pop(process.pid, None)
        if process.poll() is not None:
            self._keep_log = True  # it ended by itself: the log says why
        deadline = time.monotonic() + grace_s
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        # Its workers get the same SIGTERM and may take a moment longer than the leader to finish.
        if not _wait_group_gone(process.pid, deadline - time.monotonic()):
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            _wait_group_gone(process.pid, 10.0)
        self._close_log()
        if not self._keep_log and self.log_path is not None:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)  # a clean stop leaves no litter in /tmp

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (signal 0 only checks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + max(timeout_s, 0.0)
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all_servers() -> None:
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        server.stop()


def _install_exit_hooks() -> None:
    """atexit always; a SIGTERM handler only from the main thread, chained to whatever handler was there."""
    global _exit_hooks_installed, _previous_sigterm
    if _exit_hooks_installed:
        return
    _exit_hooks_installed = True
    atexit.register(stop_all_servers)
    if threading.current_thread() is threading.main_thread():
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame) -> None:
    stop_all_servers()
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)
    elif _previous_sigterm != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
