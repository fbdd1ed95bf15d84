"""Files as this plugin reads and writes them: strict JSON in, plain values out, atomic replacement.

Baselines, reports and the CLI's JSON all pass through here, so every file is strict JSON (no NaN or
Infinity: another tool could not read it back), every reading error names the file and what to do, and a
file is replaced only whole (a temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import EnergyUsageError


def display_path(path) -> str:
    """A path as a reader of a report knows it: relative to the current folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except (OSError, ValueError):
        return str(path)


def positive_number(value) -> bool:
    """A positive finite number, as a J/token or a count must be (True and False are not numbers here)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an integer of hundreds of digits is no energy reading
        return False


def round_float(value: float) -> float:
    # Six significant digits keep diffs readable; the meter is not more precise than that.
    return float(f"{value:.6g}")


def clean_for_json(value, *, round_floats: bool = True):
    """Plain strict JSON: inf/nan become None, tuples lists, keys strings, str subclasses str.

    The last matters beyond JSON: xdist's execnet refuses str subclasses such as `torch.__version__`.
    Baselines round floats to six significant digits (readable diffs); reports keep full precision.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round_float(value) if round_floats else float(value)
    if isinstance(value, Mapping):
        return {str(k): clean_for_json(v, round_floats=round_floats) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_for_json(v, round_floats=round_floats) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():  # execnet refuses them too
        return clean_for_json(value.item(), round_floats=round_floats)
    return value


class _NotStrictJson(ValueError):
    pass


def _refuse_constant(name: str):
    # Python reads NaN and Infinity, but these files are strict JSON: one this plugin could not write back
    # would stop the next update of any test in it.
    raise _NotStrictJson(name)


def read_json(path: Path, *, error: type[Exception] = EnergyUsageError, fix: str = "restore it from git"):
    """The JSON value in a file; any problem is `error` naming the file, then `fix` (what the user can do)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; {fix}") from None
    except OSError as problem:
        raise error(f"{path}: cannot read ({problem.strerror or problem}); make it a readable file or "
                    "move it away") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as problem:
        raise error(f"{path}: not valid JSON ({problem.msg} at line {problem.lineno}, column "
                    f"{problem.colno}); {fix}") from None
    except _NotStrictJson as problem:
        raise error(f"{path}: {problem} is not valid JSON (strict JSON has no NaN or Infinity); write null "
                    f"instead, or {fix}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply; {fix}") from None
    except ValueError:  # an integer literal longer than Python converts (4300 digits)
        raise error(f"{path}: JSON holds a number too long to read; {fix}") from None


def dumps(document, *, round_floats: bool = False) -> str:
    """Strict JSON text of a document, indented for people and diffs."""
    return json.dumps(clean_for_json(document, round_floats=round_floats), indent=2, allow_nan=False) + "\n"


def _mode_for(path: Path) -> int:
    """The permissions a replaced file keeps; a new file gets what open() would give it under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` whole: written to a temporary file beside it, synced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # mkstemp makes the file 0600: a shared baseline would become unreadable to the rest of the team.
            os.chmod(temp, _mode_for(path))
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
