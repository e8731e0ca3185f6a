"""Training runs: track a training as it happens, commit a version at its end (docs/RUNS.md).

    with repo.run("lenet", hparams={"lr": 0.01}, model=net) as run:
        for epoch in range(10):
            ...
            run.log(step=epoch, loss=loss, val_acc=acc)
            run.snapshot(net, step=epoch)

Durability: every ``log`` call appends one line to a journal,
``.dlv/runs/<run id>.jsonl`` (one ``write`` system call, so a killed process
keeps every line it wrote), and the catalog receives the points every
``flush_every_s`` seconds and at each snapshot (one write transaction costs
10-40 ms, too much for every step). A snapshot's tensors are stored at once,
deduplicated by content like a commit's (frozen layers are stored once).
At exit, ONE transaction commits a version from the run's snapshots, metrics
and hparams and records the run's status: finished, or failed with the
exception's message. A run whose process died stays ``running`` in the
catalog and is shown as ``unfinished``: ``repo.resume_run(id)`` continues it,
``repo.commit_run(id)`` commits what it logged (the journal's tail included).
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..catalog import runs as q
from ..catalog import versions as catalog_versions
from ..catalog.runs import FAILED, FINISHED, RUNNING, RunRow
from ..errors import InputError, RefError
from ..netdef import Graph, capture
from ..tensorio import as_state_dict, raw_to_tensor, tensor_to_raw
from . import commit as commit_op
from . import hotcopy
from .reads import refresh_hot_copy, snapshot_entries, version_info
from .records import VersionInfo
from .refs import check_model_name, resolve
from .settings import hot_max_bytes
from .tensorstore import load_tensors, store_tensors

#: seconds between two catalog flushes of logged metrics (the journal has every point at once)
DEFAULT_FLUSH_EVERY_S = 2.0
RUN_FILE = "run.json"    # attached to a run's version: environment, status, run id


class Run:
    """A training run in progress; use it as a context manager (see the module docstring)."""

    def __init__(self, repo, row: RunRow, *, model: nn.Module | None, flush_every_s: float) -> None:
        self.repo = repo
        self.id = row.id
        self.name = row.model
        self._model = model
        self._flush_every_s = flush_every_s
        self._pending: list[tuple[str, int, float]] = []
        self._last_flush = time.monotonic()
        self._next_step = 0 if row.last_step is None else row.last_step + 1
        self._has_graph = row.graph_json is not None
        self._last_snapshot: list[tuple[str, str]] | None = None
        self._journal = _journal_path(repo, row.id)
        self._journal.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.version: VersionInfo | None = None   # set when the run has committed
        self.status = RUNNING

    def __repr__(self) -> str:
        return f"Run({self.id[:8]}, {self.name!r}, {self.status})"

    # -- tracking ---------------------------------------------------------------------------
    def log(self, step: int | None = None, **metrics: Any) -> None:
        """Record metric values at ``step`` (default: one past the previous step)."""
        self._check_open()
        if step is None:
            step = self._next_step
        if isinstance(step, bool) or not isinstance(step, int) and not _is_integer_scalar(step):
            raise InputError(f"step {step!r} is not an integer; pass step=N with N an int")
        step = int(step)
        points = [(name, step, _as_float(name, value)) for name, value in metrics.items()]
        line = json.dumps({"step": step, "metrics": {n: _json_float(v) for n, _, v in points}}) + "\n"
        os.write(self._fd, line.encode())   # one write: a killed process keeps whole lines
        self._pending.extend(points)
        self._next_step = max(self._next_step, step + 1)
        if time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    def log_hparams(self, **hparams: Any) -> None:
        """Add or change hyperparameters (e.g. ones known only once training starts)."""
        self._check_open()
        checked = commit_op.check_hparams(hparams)
        with self.repo.catalog.write() as con:
            row = q.get_run(con, self.id)
            q.set_hparams(con, self.id, {**row.hparams, **checked})

    def snapshot(self, model_or_state_dict: nn.Module | Mapping[str, torch.Tensor] | None = None, *,
                 step: int | None = None, label: str | None = None) -> int:
        """Store a checkpoint now (its tensors deduplicated by content); returns its number.

        Without an argument, the model given to ``repo.run(model=...)`` is snapshotted.
        ``step`` defaults to the last logged step.
        """
        self._check_open()
        obj = self._model if model_or_state_dict is None else model_or_state_dict
        if obj is None:
            raise InputError("snapshot() needs a model or a state dict (or pass model= to repo.run)")
        state = OrderedDict(obj.state_dict()) if isinstance(obj, nn.Module) else as_state_dict(obj, "a snapshot")
        graph_json = _graph_json(obj, state) if isinstance(obj, nn.Module) and not self._has_graph else None
        if step is None:
            step = self._next_step - 1 if self._next_step > 0 else None
        raws = [tensor_to_raw(t) for t in state.values()]
        with self.repo.catalog.write() as con:
            hashes = store_tensors(con, self.repo.store, raws)
            entries = list(zip(state.keys(), hashes))
            self._flush_into(con)
            snap = q.add_snapshot(con, self.id, step=step, label=label, now=q.utcnow(), entries=entries)
            if graph_json is not None:
                q.set_graph(con, self.id, graph_json)
        self._has_graph = self._has_graph or graph_json is not None
        self._last_snapshot = entries
        return snap

    def flush(self) -> None:
        """Write the metrics logged since the last flush into the catalog (the UI and queries see them)."""
        self._check_open()
        with self.repo.catalog.write() as con:
            self._flush_into(con)

    def _flush_into(self, con) -> None:
        q.add_metrics(con, self.id, self._pending)
        q.touch(con, self.id, q.utcnow())
        self._pending = []
        self._last_flush = time.monotonic()

    # -- ending -----------------------------------------------------------------------------
    def finish(self, message: str | None = None) -> VersionInfo | None:
        """Commit a version from the run with status finished; returns it (None: no snapshot to commit)."""
        return self._end(FINISHED, None, message)

    def fail(self, reason: BaseException | str, message: str | None = None) -> VersionInfo | None:
        """End the run as failed (the reason is kept); its snapshots, if any, are committed."""
        text = reason if isinstance(reason, str) else _exception_text(reason)
        return self._end(FAILED, text, message)

    def _end(self, status: str, status_message: str | None, message: str | None) -> VersionInfo | None:
        self._check_open()
        if status == FINISHED and self._model is not None:
            self._final_snapshot()
        pending, self._pending = self._pending, []
        self._close()
        self.status = status
        self.version = commit_run(self.repo, self.id, status=status, status_message=status_message,
                                  message=message, extra_points=pending, replay_journal=False)
        return self.version

    def _final_snapshot(self) -> None:
        """The model given to repo.run, unless the last snapshot already holds exactly these weights."""
        state = OrderedDict(self._model.state_dict())
        if self._last_snapshot is not None and [n for n, _ in self._last_snapshot] == list(state):
            raws = [tensor_to_raw(t) for t in state.values()]
            from ..storage.tensors import tensor_matches
            if all(tensor_matches(h, *r) for (_, h), r in zip(self._last_snapshot, raws)):
                return
        self.snapshot(self._model, label="final")

    def _check_open(self) -> None:
        if self._fd is None:
            raise InputError(f"run {self.id[:8]} has ended ({self.status}); start a new one with repo.run(...)")

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fd is None:
            return  # finished or failed explicitly inside the block
        if exc is None:
            self.finish()
            return
        try:
            self.fail(exc)
        except Exception as commit_error:  # noqa: BLE001 - never hide the training's own exception
            exc.add_note(f"dlv: the run {self.id[:8]} could not be committed: {commit_error}")

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


# -- starting, resuming, committing ---------------------------------------------------------

def start_run(repo, name: str, *, hparams: Mapping[str, Any] | None = None,
              parent: str | Sequence[str] | None = commit_op.LATEST, model: nn.Module | None = None,
              message: str | None = None, flush_every_s: float = DEFAULT_FLUSH_EVERY_S) -> Run:
    check_model_name(name)
    checked = commit_op.check_hparams(dict(hparams or {}))
    if message is not None:
        message = commit_op.check_message(message)
    run_id = uuid.uuid4().hex
    env = environment()
    with repo.catalog.write() as con:
        if parent == commit_op.LATEST:
            parents = None
        else:
            refs = (parent,) if isinstance(parent, str) else tuple(parent or ())
            parents = tuple(resolve(con, r) for r in refs)
        q.insert_run(con, run_id=run_id, model=name, parents=parents, hparams=checked, environment=env,
                     message=message, now=q.utcnow())
        row = q.get_run(con, run_id)
    return Run(repo, row, model=model, flush_every_s=flush_every_s)


def resume_run(repo, ref: str, *, model: nn.Module | None = None,
               flush_every_s: float = DEFAULT_FLUSH_EVERY_S) -> Run:
    """Continue an unfinished run (its process died): steps continue after the last one logged."""
    with repo.catalog.write() as con:
        row = _unfinished(con, ref, "resume")
        _replay_journal(con, repo, row.id)
        q.reopen_run(con, row.id, environment=environment(), now=q.utcnow())
        row = q.get_run(con, row.id)
    return Run(repo, row, model=model, flush_every_s=flush_every_s)


def commit_run(repo, ref: str, *, status: str = FINISHED, status_message: str | None = None,
               message: str | None = None, extra_points: Sequence[tuple[str, int, float]] = (),
               replay_journal: bool = True) -> VersionInfo | None:
    """Commit a version from a run and record its status, in one transaction.

    Returns the version, or None when the run took no snapshot (there are no weights to
    commit; the run's status and metrics are recorded all the same).
    """
    if status not in (FINISHED, FAILED):
        raise InputError(f"a run ends as {FINISHED!r} or {FAILED!r}, not {status!r}")
    if message is not None:
        message = commit_op.check_message(message)
    hotcopy.max_bytes()  # a malformed DLV_HOT_MAX_BYTES is refused before anything is written
    with repo.catalog.write() as con:
        row = _unfinished(con, ref, "commit") if replay_journal else q.get_run(con, ref)
        if replay_journal:
            _replay_journal(con, repo, row.id)
        q.add_metrics(con, row.id, extra_points)
        snaps = q.snapshots(con, row.id)
        now = q.utcnow()
        if not snaps:
            q.end_run(con, row.id, status=status, status_message=status_message, version_id=None, now=now)
            info = None
        else:
            hashes = sorted({h for *_, entries in snaps for _, h in entries})
            decoded = load_tensors(con, repo.store, hashes)
            states = [OrderedDict((n, raw_to_tensor(*decoded[h])) for n, h in entries) for *_, entries in snaps]
            series: dict[str, list[tuple[int, float]]] = {}
            for name, step, value in q.metric_points(con, row.id):
                series.setdefault(name, []).append((step, value))
            record = {"run": row.id, "status": status, "status_message": status_message,
                      "started_at": row.started_at.isoformat(), "ended_at": now.isoformat(),
                      "environment": row.environment}
            req = commit_op.build_request(
                states[-1], name=row.model, message=message or row.message or _default_message(row, status, status_message),
                parent=commit_op.LATEST if row.parents is None else row.parents, hparams=row.hparams,
                metrics=series, files={RUN_FILE: json.dumps(record, indent=2, sort_keys=True).encode()},
                snapshots=states[:-1], snapshot_steps=[step for _, step, _, _ in snaps],
                graph=_graph_of(row, states[-1]),
            )
            vid = commit_op.write_commit(con, repo.store, req)
            q.end_run(con, row.id, status=status, status_message=status_message, version_id=vid, now=now)
            info = version_info(con, vid)
            entries = snapshot_entries(con, vid)
            siblings = catalog_versions.ids_of_model(con, row.model)
            cap = hot_max_bytes(con)
    if info is not None:
        refresh_hot_copy(repo.hot, info.id, entries, states[-1], siblings, cap)
    _journal_path(repo, row.id).unlink(missing_ok=True)   # the catalog holds every point now
    return info


def resolve_run(con, ref: str) -> RunRow:
    """A run named by its id or a unique prefix of it (8 characters are shown)."""
    text = ref.strip().lower()
    if not text or not all(c in "0123456789abcdef" for c in text):
        raise RefError(f"{ref!r} is not a run id; run ids are hex, see repo.runs() or the UI's runs page")
    ids = q.find_run_ids(con, text)
    if not ids:
        raise RefError(f"no run with id {ref!r}; list runs with repo.runs()")
    if len(ids) > 1:
        raise RefError(f"run id {ref!r} is ambiguous ({', '.join(i[:8] for i in ids[:3])} ...); give more characters")
    return q.get_run(con, ids[0])


def _unfinished(con, ref: str, what: str) -> RunRow:
    row = resolve_run(con, ref)
    if row.status != RUNNING:
        raise InputError(f"run {row.short_id} has already ended ({row.status}); only an unfinished run can be {what}ed")
    if row.state == RUNNING:
        raise InputError(f"run {row.short_id} is still running (process {row.pid} on {row.host}); "
                         f"wait for it to end, or stop that process first")
    return row


def _replay_journal(con, repo, run_id: str) -> None:
    """Points a killed process logged after its last flush; replaying all of them is idempotent."""
    path = _journal_path(repo, run_id)
    if not path.is_file():
        return
    points = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
            points.extend((n, int(doc["step"]), float(v)) for n, v in doc["metrics"].items())
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # the line a kill cut short
    q.add_metrics(con, run_id, points)


def _journal_path(repo, run_id: str) -> Path:
    return repo.paths.dlv / "runs" / f"{run_id}.jsonl"


def _default_message(row: RunRow, status: str, status_message: str | None) -> str:
    text = f"run {row.short_id} {status}"
    return f"{text}: {status_message}" if status_message else text


def _graph_json(module: nn.Module, state) -> str | None:
    """The network of the first module snapshotted, if its weights fit it (else weights only)."""
    try:
        graph = capture(module)
    except Exception:  # noqa: BLE001 - a module capture cannot describe is committed as weights only
        return None
    return graph.canonical() if commit_op.graph_fits(graph, state) else None


def _graph_of(row: RunRow, state) -> Graph | None:
    if row.graph_json is None:
        return None
    graph = Graph.from_json(row.graph_json)
    return graph if commit_op.graph_fits(graph, state) else None


def _as_float(name: str, value: Any) -> float:
    if not isinstance(name, str) or not name:
        raise InputError(f"invalid metric name {name!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InputError(f"metric {name!r} is a tensor of {value.numel()} values; log one number (e.g. loss.item())")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise InputError(f"metric {name!r} = {value!r} is not a number; log numbers only")
    return float(value)


def _is_integer_scalar(value: Any) -> bool:
    return hasattr(value, "__index__")


def _json_float(value: float):
    # JSON has no NaN or infinity; the journal spells them as strings float() reads back
    return value if math.isfinite(value) else str(value)


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def environment(workdir: Path | None = None) -> dict:
    """Where the run trained: versions, device, host, command line and the working folder's git commit."""
    workdir = Path.cwd() if workdir is None else workdir
    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "host": socket.gethostname(),
        "argv": list(sys.argv), "cwd": str(workdir), "torch": torch.__version__,
        "device": _device(),
    }
    from .. import __version__
    env["modelhub"] = __version__
    env.update(_git(workdir))
    return env


def _device() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _git(workdir: Path) -> dict:
    """The commit checked out in the working folder, and whether files differ from it."""
    if shutil.which("git") is None:
        return {}
    try:
        head = subprocess.run(["git", "-C", str(workdir), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", str(workdir), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
