"""The backends that make the tokens, by name; importing this package imports no ML framework."""

from __future__ import annotations

from .base import Backend, BackendOptions, Generation
from .pool import BackendPool
from .registry import BACKENDS, backend_class

__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendPool", "Generation", "backend_class"]
