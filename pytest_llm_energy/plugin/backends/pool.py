"""The session's backend pool: exactly one loaded backend at a time, reused while its load key is the same."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .placement import free_device_memory

if TYPE_CHECKING:
    from ...core.models import ModelSpec
    from .base import Backend, BackendOptions


class BackendPool:
    """Loads eagerly in `get`, so loading never falls inside a measured window.

    One resident backend: two models at once would share the GPU, and the energy counter covers the whole
    device. The key is (backend, model, what the backend's `load_key` says matters at load time): dtype,
    device and parallelism for all; the batch size too for vLLM, whose max_num_seqs is fixed at load. Options
    that only shape the load (a server's request rate) are swapped in without reloading.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._backend: Backend | None = None

    @property
    def current(self) -> Backend | None:
        return self._backend

    def get(self, name: str, model: ModelSpec, options: BackendOptions, batch_size: int) -> Backend:
        from .registry import backend_class

        cls = backend_class(name)
        key = (name, model, cls.load_key(options, batch_size))
        if self._backend is not None and key == self._key:
            self._backend.options = options
            return self._backend
        self.close_all()
        backend = cls(model, options, max_num_seqs=batch_size)
        try:
            backend.load()
        except BaseException:
            backend.close()  # a half-started server or half-built model must not outlive the failure
            free_device_memory()
            raise
        self._key, self._backend = key, backend
        return backend

    def close_all(self) -> None:
        backend, self._backend, self._key = self._backend, None, None
        if backend is not None:
            try:
                backend.close()
            finally:
                free_device_memory()
