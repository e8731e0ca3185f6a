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
from dataclasses import dataclass

from .errors import BackendError, ConfigError

BACKENDS = ("local", "ray")
INSTALL_HINT = "pip install 'modelhub[ray]'"


@dataclass(frozen=True)
class BackendOptions:
    name: str = "local"                   # local | ray
    address: str | None = None            # ray://host:10001, host:6379, "auto"; None: RAY_ADDRESS or a local cluster
    workers: int | None = None            # extraction actors; None: cluster CPUs (GPUs when present) / cpus_per_worker
    cpus_per_worker: float = 1.0          # declared per actor and per training task
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    threads: int | None = None            # torch threads in workers; None: this process's (bit-identical floats)
    fault: "FaultInjection | None" = None  # tests only: kill an extraction actor once

    @property
    def is_local(self) -> bool:
        return self.name == "local"


@dataclass(frozen=True)
class FaultInjection:
    """Make the extraction actor that handles the chunk starting at ``chunk_start`` exit
    (``os._exit``) after ``after_writes`` chunk files of it are written, the first time
    only: ``marker`` is created when it fires, so the retry runs normally."""
    chunk_start: int
    marker: str
    after_writes: int = 1


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


def open_executor(opts: BackendOptions):
    """None for the local backend; a connected RayExecutor for ``ray``."""
    if opts.is_local:
        return None
    import importlib
    try:   # only probing that the optional extra (Ray with Ray Data) is installed
        importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError:
        raise BackendError(f"the ray backend needs Ray, which is not installed; run {INSTALL_HINT} "
                           "or use --backend local") from None
    from .ray_backend import RayExecutor
    return RayExecutor.connect(opts)
