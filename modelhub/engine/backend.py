"""Execution backend selection: where extraction and candidate training run.

``local`` (the default) runs everything in this process and never needs Ray.
``ray`` runs frozen-prefix extraction as Ray Data ``map_batches`` over an actor
pool and candidate training as one Ray task per fused group
(:mod:`modelhub.engine.ray_backend`, imported only when asked for). The planner
decides the same either way; only where the work runs changes.

Precedence: a Python argument / CLI flag, then the evaluate config's
``backend`` key, then the ``DLV_BACKEND`` environment variable, then ``local``.
The Ray address: ``--ray-address`` / ``ray_address``, else ``RAY_ADDRESS``,
else a local cluster is started (or the one this process already joined is reused).
"""
from __future__ import annotations

import os

from .errors import BackendError, ConfigError
from .executor import BackendOptions, Executor, FaultInjection, LocalExecutor

__all__ = ["BACKENDS", "BackendOptions", "FaultInjection", "open_executor", "resolve_backend"]

BACKENDS = ("local", "ray")
INSTALL_HINT = "pip install 'modelhub[ray]'"


def resolve_backend(backend: "str | BackendOptions | None" = None, *, address: str | None = None,
                    config_value: str | None = None, config_address: str | None = None) -> BackendOptions:
    """The backend to use from an argument, a config key and ``DLV_BACKEND``, in that order."""
    if isinstance(backend, BackendOptions):
        opts = backend
        if address is not None and opts.address is None:
            opts = BackendOptions(**{**opts.__dict__, "address": address})
        return _checked(opts)
    name = backend or config_value or os.environ.get("DLV_BACKEND") or "local"
    return _checked(BackendOptions(str(name).strip().lower(), address or config_address))


def _checked(opts: BackendOptions) -> BackendOptions:
    if opts.name not in BACKENDS:
        raise ConfigError(f"unknown backend {opts.name!r}; use one of {', '.join(BACKENDS)} "
                          "(--backend, the config's backend key or DLV_BACKEND)")
    if opts.workers is not None and opts.workers < 1:
        raise ConfigError(f"workers must be at least 1, got {opts.workers}")
    return opts


def open_executor(opts: BackendOptions) -> Executor:
    """A LocalExecutor for the local backend; a connected RayExecutor for ``ray``."""
    if opts.is_local:
        return LocalExecutor()
    import importlib
    try:   # only probing that the optional extra (Ray with Ray Data) is installed
        importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError:
        raise BackendError(f"the ray backend needs Ray, which is not installed; run {INSTALL_HINT} "
                           "or use --backend local") from None
    from .ray_backend import RayExecutor
    return RayExecutor.connect(opts)
