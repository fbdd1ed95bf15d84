"""Files of a git revision, for `llm-energy diff --git REV`: listed and read with git itself, never a shell."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from .errors import EnergyUsageError

GIT_TIMEOUT_S = 60


def run(arguments: Sequence[str], cwd: Path, failure: str) -> bytes:
    """Run git; a failure is one line: `failure`, then git's own last line."""
    try:
        done = subprocess.run(["git", *arguments], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise EnergyUsageError("--git needs the git command, which is not installed here") from None
    except subprocess.TimeoutExpired:
        raise EnergyUsageError(f"--git: git took over {GIT_TIMEOUT_S} s ({failure})") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise EnergyUsageError(f"--git: {failure}" + (f" ({said[-1]})" if said else ""))
    return done.stdout


def _under(name: PurePosixPath, folder: PurePosixPath) -> PurePosixPath:
    """`name` relative to the folder that was asked for (the file's own name when a file was asked for)."""
    if name == folder:
        return PurePosixPath(name.name)
    return name.relative_to(folder) if folder.parts else name


def export(revision: str, path: str | Path, into: Path, *, keep: Callable[[str], bool],
           hide: Callable[[PurePosixPath], bool]) -> tuple[Path, PurePosixPath]:
    """Copy the files under `path` (of the working tree) as committed at `revision` into `into`.

    Only files whose names `keep` accepts, and none that `hide` hides below `path`. Returns where `path`
    lies in the copy (it may not exist: nothing was there) and `path` relative to the repository.
    """
    if not revision or revision.startswith("-"):
        raise EnergyUsageError(f"--git {revision!r}: give a revision such as main, HEAD~1 or a commit hash")
    path = Path(path).absolute()
    start = path if path.is_dir() else path.parent
    while not start.is_dir() and start != start.parent:  # a folder deleted in the working tree
        start = start.parent
    top = Path(run(["rev-parse", "--show-toplevel"], start, f"{path} is not in a git repository").decode().strip())
    commit = run(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top,
                 f"{revision!r} is not a commit in {top}").decode().strip()
    try:
        relative = PurePosixPath(path.resolve().relative_to(top.resolve()).as_posix())
    except ValueError:
        raise EnergyUsageError(f"--git: {path} is outside the repository {top}") from None
    listing = run(["ls-tree", "-r", "-z", "--name-only", "--full-tree", commit, "--", str(relative)], top,
                  f"cannot list {relative} at {revision}")
    for name in (PurePosixPath(n) for n in listing.decode().split("\0") if n):
        if keep(name.name) and not hide(_under(name, relative)):
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(run(["show", f"{commit}:{name}"], top, f"cannot read {name} at {revision}"))
    return into / relative, relative
