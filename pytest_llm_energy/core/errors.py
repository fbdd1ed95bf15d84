"""Errors a user can act on: each prints as one line (what, where, what to do), never a traceback."""


class EnergyError(Exception):
    """Base of every error this plugin raises on purpose."""


class EnergyUsageError(EnergyError):
    """A bad option, ini value, marker keyword or GPU key: the run stops before any test."""


class BaselineError(EnergyError):
    """A baseline file that cannot be read as this plugin's schema; the file is left untouched."""


class MeterError(EnergyError):
    """The energy meter could not give a trustworthy number for a window."""


class BackendError(EnergyError):
    """A backend could not be loaded or failed to generate."""


class TraceError(EnergyError):
    """A trace file that cannot be binned (missing columns, non-numeric lengths, unknown name)."""


class BackendUnavailable(BackendError):
    """The backend's package is not installed here: tests that need it are skipped with this reason."""
