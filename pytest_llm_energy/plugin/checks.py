"""The checks before the first test: the baselines folder, what an update may write, the markers, the model.

Each raises EnergyUsageError (the plugin turns it into pytest's usage error), so a mistake in the setup of
a run stops it before anything is measured, with the option or test that is wrong.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..core.baseline import BaselineStore
from ..core.errors import BaselineError, EnergyError, EnergyUsageError
from ..core.models import resolve_model
from . import xdist_support
from .config import Options, check_marker_keywords

MARKER_KEY = pytest.StashKey[dict]()  # an item's energy marker keywords, checked
MARKER_ERROR_KEY = pytest.StashKey[str]()  # why they are wrong (xdist workers: the test errors with it)

# Options that pick a subset of the collected tests: a run with any of them does not cover whole test files.
# (--ff only reorders, and --lfnf acts only with --lf.)
SELECTING_OPTIONS = ("keyword", "markexpr", "deselect", "lf", "stepwise")


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """The plugin's errors in the setup of a run, as pytest's usage errors: one line, no traceback."""
    try:
        yield
    except (EnergyUsageError, BaselineError) as error:
        raise pytest.UsageError(str(error)) from None
    except EnergyError as error:
        raise pytest.UsageError(f"pytest-llm-energy: {error}") from None


def whole_run(config: pytest.Config) -> bool:
    """Whether this run covers whole test files: no -k, -m, --deselect, --lf or node ids on the command line."""
    if any("::" in str(argument) for argument in config.args):
        return False
    return not any(getattr(config.option, name, None) not in (None, "", False, [], "all")
                   for name in SELECTING_OPTIONS)


def baselines_given(config: pytest.Config) -> bool:
    """Whether the baselines folder was named (option or ini) rather than left at its default."""
    return bool(config.getoption("energy_baselines") is not None or config.getini("energy_baselines"))


def check_baselines_folder(store: BaselineStore, *, given: bool, update: bool) -> None:
    root = store.root
    if root.exists() and not root.is_dir():
        raise EnergyUsageError(f"--energy-baselines: {root} is not a folder")
    if not root.exists():
        if given and not update:
            raise EnergyUsageError(
                f"--energy-baselines: {root} does not exist; create it, fix the path, or record baselines "
                "there with --energy-update-baselines"
            )
        return
    if not os.access(root, os.R_OK | os.X_OK):
        raise EnergyUsageError(f"--energy-baselines: {root} is not readable")
    folder = store.folder
    if folder.exists() and not folder.is_dir():  # else its baselines are silently absent, and writing fails
        raise EnergyUsageError(f"--energy-baselines: {folder} is not a folder; move that file away")


def check_writable(folder: Path) -> None:
    """Updating: the folder the baselines go to must be writable, known before a run that would write it."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EnergyUsageError(f"--energy-update-baselines: cannot write baselines under {existing} "
                               "(permission denied); make it writable or choose --energy-baselines")


def check_report_paths(options: Options) -> None:
    """The report files and plots folder asked for, checked before the first test: a path that cannot be
    written would otherwise end a long run with a raw OS error and no report."""
    for option, value, folder in (("--energy-json", options.json, False), ("--energy-md", options.md, False),
                                  ("--energy-plots", options.plots, True)):
        if not value:
            continue
        path = Path(value)
        if folder and path.exists() and not path.is_dir():
            raise EnergyUsageError(f"{option}: {value} is a file, not a folder; name a folder for the plots")
        if not folder and path.is_dir():
            raise EnergyUsageError(f"{option}: {value} is a folder; name the report's file, e.g. "
                                   f"{path / ('report.json' if option == '--energy-json' else 'report.md')}")
        existing = path if folder else path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise EnergyUsageError(f"{option}: {value} lies under {existing}, which is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise EnergyUsageError(f"{option}: cannot write under {existing} (permission denied); choose "
                                   "another path")


def check_prune(config: pytest.Config, options: Options) -> None:
    """Entries are removed only on purpose, by a run that can tell a test that is gone from one left out. Asked on
    the command line, a run that cannot is refused; set in the ini, it is a standing choice that applies to
    updates of whole files only (every other run leaves the files alone anyway)."""
    if not config.getoption("energy_prune_baselines"):
        return
    if options.ab:
        raise EnergyUsageError("--energy-ab compares two arms and records nothing: drop --energy-prune-baselines")
    if not options.update_baselines:
        raise EnergyUsageError("--energy-prune-baselines removes entries as it records: add --energy-update-baselines")
    if not whole_run(config):
        raise EnergyUsageError("--energy-prune-baselines needs a run of whole test files: with -k, -m, --deselect, "
                               "--lf or node ids it cannot tell a test that is gone from one left out")


def check_markers(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every energy marker, before anything runs: a typo is an error that names the keyword.

    Each item keeps its keywords (MARKER_KEY), or why they are wrong (MARKER_ERROR_KEY)."""
    problems = []
    for item in items:
        values: dict = {}
        try:
            # Closest marker first: a function's keyword wins over its class's and module's.
            for mark in reversed(list(item.iter_markers("energy"))):
                values.update(check_marker_keywords(item.nodeid, mark.kwargs, mark.args))
            if "model" in values:
                check_model(values["model"], where=f"{item.nodeid}: @pytest.mark.energy(model=...)")
        except EnergyUsageError as error:
            problems.append(str(error))
            item.stash[MARKER_ERROR_KEY] = str(error)
            continue
        item.stash[MARKER_KEY] = values
        xdist_support.group_by_model(item, values.get("model"))
    # An xdist worker that stops at collection crashes without the message, so there each bad test errors
    # with it instead (at its setup); a serial run stops before any test.
    if problems and xdist_support.worker_id(config) is None:
        raise pytest.UsageError("\n".join(problems))


def check_model(model: str, *, where: str | None = None) -> None:
    """A misspelt model stops the run before any test, not in every test."""
    try:
        resolve_model(model)
    except EnergyUsageError as error:
        if where is None:
            raise
        raise EnergyUsageError(f"{where}: {error}") from None


def check_baseline_files(store: BaselineStore, items: list[pytest.Item], *, update: bool = False) -> None:
    """The baseline files of the collected tests, read before any runs: a broken one (or, for an update, a
    read-only one) is named now."""
    try:
        store.check((xdist_support.plain_nodeid(item) for item in items), writing=update)
    except BaselineError as error:
        raise pytest.UsageError(str(error)) from None
