"""A/B turn about on one GPU: the controller's meter, lent to two worker processes one window at a time.

Each arm (a pytest worker holding its own loaded backend) measures through a RemoteMeter; every window it
opens is opened by the controller's WindowServer on the controller's own meter, so one meter, on one
device, measures both arms. Only one arm may run work on the device at a time: an arm holds the *turn*
from the start of a test's setup and gives it up only when its next window is the other arm's (windows of
one test alternate A B B A A B B A ..., warm-ups included), so model loading, calibration calls and every
window of one arm fall while the other arm waits. Both arms run a test together (one waits at a test's
setup until the other has left the test before), and an arm that has gone (its process died) or moved on
no longer holds the other back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from ...core.errors import MeterError
from ...core.measurement import Reading
from .base import Meter

ARMS = ("A", "B")


def turn_of(window: int) -> str:
    """A B B A A B B A ...: within each pair of pairs both orders, so a drift hits both arms alike."""
    return "A" if window % 4 in (0, 3) else "B"


@dataclass(frozen=True)
class RemoteDevice:
    index: int
    uuid: str
    name: str


SESSION_END = "(session end)"  # what a finished arm holds until it has gone, so no test overlaps its teardown


class Turns:
    """Who may run on the device, and whose window comes next, for two arms in step test by test."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.alive = set(ARMS)
        self.holder: str | None = None
        self.test: dict[str, str | None] = dict.fromkeys(ARMS)  # the test each arm is in
        self.waiting: dict[str, str | None] = dict.fromkeys(ARMS)  # the test each arm waits to enter
        self.windows: dict[str, int] = {}  # test -> windows opened so far
        self.order: dict[str, dict[str, int]] = {}  # arm -> its collected tests' positions
        self.done: dict[str, set[str]] = {arm: set() for arm in ARMS}  # tests each arm has left

    def _other(self, arm: str) -> str:
        return ARMS[1 - ARMS.index(arm)]

    def _other_with_me(self, arm: str, nodeid: str) -> bool:
        """Whether the other arm runs this test too (or waits to): then windows alternate."""
        other = self._other(arm)
        return other in self.alive and nodeid in (self.test[other], self.waiting[other])

    def collected(self, arm: str, nodeids: list[str]) -> None:
        with self.changed:
            self.order[arm] = {nodeid: position for position, nodeid in enumerate(nodeids)}
            self.changed.notify_all()

    def _other_is_here(self, arm: str, nodeid: str) -> bool:
        """Whether the other arm has come to this test, or will not: it has gone, or is past it (it ran the
        test already, skipped it before its setup, or has ended its session)."""
        other = self._other(arm)
        at = self.test[other] or self.waiting[other]
        if other not in self.alive or at in (nodeid, SESSION_END) or nodeid == SESSION_END:
            return True
        if nodeid in self.done[other]:
            return True
        order = self.order.get(arm, {})
        if at in order and nodeid in order:
            return order[at] > order[nodeid]
        # No order to go by: when both wait, each at a test the other has not come to, A goes first.
        return arm == "A" and at is not None and self.test[other] is None

    def enter(self, arm: str, nodeid: str) -> None:
        """Wait until the other arm has come to this test too (both run it, windows alternating), is not in
        another test, and the device is free; then take it."""
        with self.changed:
            self.waiting[arm] = nodeid
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.holder == arm or (
                self.holder is None and self.test[self._other(arm)] in (None, nodeid)
                and self._other_is_here(arm, nodeid)))
            self.test[arm], self.waiting[arm], self.holder = nodeid, None, arm

    def before_window(self, arm: str) -> None:
        """Wait for this arm's turn: give the device up if the next window is the other arm's."""
        with self.changed:
            nodeid = self.test[arm]

            def mine() -> bool:
                return turn_of(self.windows.get(nodeid, 0)) == arm or not self._other_with_me(arm, nodeid)

            if not mine() and self.holder == arm:
                self.holder = None
                self.changed.notify_all()
            self.changed.wait_for(lambda: mine() and self.holder in (None, arm))
            self.holder = arm

    def after_window(self, arm: str) -> None:
        with self.changed:
            nodeid = self.test[arm]
            self.windows[nodeid] = self.windows.get(nodeid, 0) + 1
            self.changed.notify_all()

    def leave(self, arm: str) -> None:
        with self.changed:
            self.done[arm].add(self.test[arm])
            self.test[arm] = None
            if self.holder == arm:
                self.holder = None
            self.changed.notify_all()

    def gone(self, arm: str) -> None:
        """An arm's process ended: it holds nothing and holds no one back."""
        with self.changed:
            self.alive.discard(arm)
            self.test[arm] = self.waiting[arm] = None
            if self.holder == arm:
                self.holder = None
            self.changed.notify_all()


class WindowServer:
    """In the controller: serves the two arms' window requests, one connection per arm.

    The controller's meter reads each window unless it counts only its own process tree (CPU time): then
    the arm reads its own, and the server only keeps the turns.
    """

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.reads = not meter.process_local
        self.turns = Turns()
        self.authkey = os.urandom(16)
        self.listener = Listener(("127.0.0.1", 0), authkey=self.authkey)
        threading.Thread(target=self._accept, name="energy-ab-server", daemon=True).start()

    @property
    def address(self) -> str:
        host, port = self.listener.address
        return f"{host}:{port}:{self.authkey.hex()}"

    def _accept(self) -> None:
        while True:
            try:
                connection = self.listener.accept()
            except OSError:  # closed at the end of the session
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        arm, start = None, None
        try:
            while True:
                request = connection.recv()
                arm = request[1]
                try:
                    answer, start = self._answer(request, start)
                except Exception as error:  # noqa: BLE001 - the arm raises it; this thread must not die
                    answer, start = MeterError(f"A/B controller: {error}"), None
                connection.send(answer)
        except (EOFError, OSError):
            pass
        finally:
            connection.close()
            if start is not None:  # the arm died with a window open: its work is not measured
                self.meter.abort(start)
            if arm is not None:
                self.turns.gone(arm)

    def _answer(self, request: tuple, start: Any) -> tuple[Any, Any]:
        """(the answer, the window now open or None) for one request."""
        kind, arm = request[0], request[1]
        if kind == "hello":
            return self._facts(), start
        if kind == "enter":
            self.turns.enter(arm, request[2])
            return "go", start
        if kind == "leave":
            self.turns.leave(arm)
            return "ok", start
        if kind == "collected":
            self.turns.collected(arm, request[2])
            return "ok", start
        if kind == "reserve":
            self.turns.before_window(arm)
            return "yours", start
        if kind == "begin":
            self.turns.before_window(arm)
            return "open", self.meter.begin() if self.reads else None
        if kind in ("end", "abort"):
            try:
                if start is None:
                    return kind, None
                if kind == "abort":
                    self.meter.abort(start)
                    return kind, None
                return self.meter.end(start), None
            finally:
                self.turns.after_window(arm)
        if kind == "temperatures":
            return self.meter.temperatures(), start
        raise MeterError(f"unknown request {kind!r} from arm {arm}")

    def _facts(self) -> dict:
        meter = self.meter
        return {"name": meter.name, "estimated": meter.estimated, "min_window_s": meter.min_window_s,
                "describe": meter.describe(), "hardware": meter.hardware(), "idle_watts": meter.idle_watts(),
                "devices": [(d.index, d.uuid, d.name) for d in meter.devices], "reads": self.reads}

    def close(self) -> None:
        self.listener.close()


class RemoteMeter(Meter):
    """In an arm: the controller's meter, reached over a local connection; device work waits for its turn.

    `local` makes this arm's own meter of the same kind, which reads the windows when the controller's
    counts only the controller's processes.
    """

    def __init__(self, address: str, arm: str, local: Callable[[], Meter]) -> None:
        host, port, key = address.rsplit(":", 2)
        self.arm = arm
        self.connection = Client((host, int(port)), authkey=bytes.fromhex(key))
        facts = self._ask("hello")
        self.local = None if facts["reads"] else local()
        self.name, self.estimated = facts["name"], facts["estimated"]
        self.min_window_s, self._describe = facts["min_window_s"], facts["describe"]
        self._hardware, self._idle = facts["hardware"], facts["idle_watts"]
        self.devices = tuple(RemoteDevice(*device) for device in facts["devices"])

    def _ask(self, kind: str, *arguments: Any) -> Any:
        self.connection.send((kind, self.arm, *arguments))
        answer = self.connection.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def enter(self, nodeid: str) -> None:
        """Wait until the device is this arm's for the test (from its setup on)."""
        self._ask("enter", nodeid)

    def leave(self, nodeid: str) -> None:
        self._ask("leave", nodeid)

    def collected(self, nodeids: list[str]) -> None:
        """This arm's tests in order: an arm waits at a test for the other only if the other runs it too."""
        self._ask("collected", nodeids)

    def finish(self) -> None:
        """The arm's tests are done: hold the device through its teardown, until its process has gone."""
        self._ask("enter", SESSION_END)

    def reserve(self) -> None:
        """Wait for this arm's turn without opening the window yet: the other arm's load is not running
        while this one's starts (two vLLM servers on one host starve each other's start-up)."""
        self._ask("reserve")

    def begin(self) -> Any:
        self._ask("begin")
        return self.local.begin() if self.local else None

    def end(self, start: Any) -> Reading:
        if self.local is None:
            return self._ask("end")
        try:
            return self.local.end(start)
        finally:
            self._ask("end")

    def abort(self, start: Any) -> None:
        if self.local is not None:
            self.local.abort(start)
        self._ask("abort")

    def idle_watts(self) -> float:
        return self._idle

    def temperatures(self) -> list[float]:
        return self._ask("temperatures")

    def hardware(self) -> dict:
        return dict(self._hardware)

    def describe(self) -> str:
        return f"{self._describe}, lent to arm {self.arm} by the A/B controller"

    def close(self) -> None:
        self.connection.close()
