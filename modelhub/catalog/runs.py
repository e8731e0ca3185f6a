"""Catalog queries of training runs (tables runs, run_metrics, run_snapshots, run_snapshot_tensors).

The only place that writes their SQL; modelhub/repo/runs.py drives them and
the web UI reads them. Every function takes the connection of the caller's
scope (``with catalog.read()`` / ``with catalog.write()``).
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

import duckdb

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
#: a running run is shown as unfinished (its process died) when it is on another host and
#: silent for this long; on this host its process id says it at once
STALE_AFTER = timedelta(minutes=10)

_COLS = ("id, model, status, status_message, parents, hparams, environment, graph, message, host, pid, "
         "started_at, heartbeat_at, ended_at, version_id")


@dataclass(frozen=True)
class RunRow:
    id: str
    model: str
    status: str                     # running | finished | failed (as stored)
    status_message: str | None
    parents: tuple[str, ...] | None  # None: the model's latest version when the run commits
    hparams: dict
    environment: dict
    graph_json: str | None
    message: str | None
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None
    version_id: str | None
    n_snapshots: int = 0
    last_step: int | None = None
    metric_names: tuple[str, ...] = field(default_factory=tuple)
    version_ref: str | None = None   # NAME@N of version_id

    @property
    def state(self) -> str:
        """What a user sees: finished, failed, running, or unfinished (stored as running, process gone)."""
        if self.status != RUNNING:
            return self.status
        return RUNNING if _process_alive(self.host, self.pid, self.heartbeat_at) else "unfinished"

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def to_dict(self) -> dict:
        return {
            "id": self.id, "model": self.model, "state": self.state, "status": self.status,
            "status_message": self.status_message, "parents": list(self.parents) if self.parents is not None else None,
            "hparams": self.hparams, "environment": self.environment, "message": self.message,
            "host": self.host, "pid": self.pid, "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None, "version_id": self.version_id,
            "n_snapshots": self.n_snapshots, "last_step": self.last_step, "metrics": list(self.metric_names),
            "version_ref": self.version_ref,
        }


def _process_alive(host: str, pid: int, heartbeat_at: datetime) -> bool:
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's live process
        return True
    return utcnow() - heartbeat_at < STALE_AFTER


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# -- writes -----------------------------------------------------------------------------------

def insert_run(con: duckdb.DuckDBPyConnection, *, run_id: str, model: str, parents: Sequence[str] | None,
               hparams: dict, environment: dict, message: str | None, now: datetime) -> None:
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, NULL, ?, ?, ?, NULL, ?, ?, ?, ?, ?, NULL, NULL)",
        [run_id, model, RUNNING, None if parents is None else json.dumps(list(parents)),
         json.dumps(hparams, sort_keys=True), json.dumps(environment, sort_keys=True), message,
         socket.gethostname(), os.getpid(), now, now],
    )


def reopen_run(con, run_id: str, *, environment: dict, now: datetime) -> None:
    """A resumed run: this process owns it now."""
    con.execute(
        "UPDATE runs SET status = ?, status_message = NULL, host = ?, pid = ?, heartbeat_at = ?, ended_at = NULL, "
        "environment = ? WHERE id = ?",
        [RUNNING, socket.gethostname(), os.getpid(), now, json.dumps(environment, sort_keys=True), run_id],
    )


def touch(con, run_id: str, now: datetime) -> None:
    con.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", [now, run_id])


def set_graph(con, run_id: str, graph_json: str) -> None:
    con.execute("UPDATE runs SET graph = ? WHERE id = ?", [graph_json, run_id])


def set_hparams(con, run_id: str, hparams: dict) -> None:
    con.execute("UPDATE runs SET hparams = ? WHERE id = ?", [json.dumps(hparams, sort_keys=True), run_id])


def add_metrics(con, run_id: str, rows: Iterable[tuple[str, int, float]]) -> None:
    """Metric points; a point logged again for the same (name, step) replaces the earlier one."""
    rows = list({(n, s): (n, s, v) for n, s, v in rows}.values())
    if not rows:
        return
    names, steps, values = (list(c) for c in zip(*rows))
    con.execute(
        "INSERT OR REPLACE INTO run_metrics SELECT ?, unnest(?), unnest(?), unnest(?)",
        [run_id, names, steps, values],
    )


def add_snapshot(con, run_id: str, *, step: int | None, label: str | None, now: datetime,
                 entries: Sequence[tuple[str, str]]) -> int:
    """A snapshot's (tensor name, tensor hash) list, in state-dict order; returns its number."""
    snap = con.execute("SELECT coalesce(max(snap) + 1, 0) FROM run_snapshots WHERE run_id = ?", [run_id]).fetchone()[0]
    con.execute("INSERT INTO run_snapshots VALUES (?, ?, ?, ?, ?)", [run_id, snap, step, label, now])
    if entries:
        con.execute(
            "INSERT INTO run_snapshot_tensors SELECT ?, ?, unnest(?), unnest(?), unnest(?)",
            [run_id, snap, list(range(len(entries))), [n for n, _ in entries], [h for _, h in entries]],
        )
    return int(snap)


def end_run(con, run_id: str, *, status: str, status_message: str | None, version_id: str | None,
            now: datetime) -> None:
    con.execute(
        "UPDATE runs SET status = ?, status_message = ?, version_id = ?, ended_at = ?, heartbeat_at = ? WHERE id = ?",
        [status, status_message, version_id, now, now, run_id],
    )


# -- reads ------------------------------------------------------------------------------------

def has_runs_table(con) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs' AND table_catalog = current_database()"
    ).fetchone()[0])


def get_run(con, run_id: str) -> RunRow | None:
    rows = _select(con, "WHERE r.id = ?", [run_id])
    return rows[0] if rows else None


def find_run_ids(con, prefix: str) -> list[str]:
    """Run ids starting with ``prefix`` (a run is named by a unique prefix of its id)."""
    return [r[0] for r in con.execute(
        "SELECT id FROM runs WHERE starts_with(id, ?) ORDER BY id LIMIT 10", [prefix.lower()]).fetchall()]


def list_runs(con, model: str | None = None) -> list[RunRow]:
    if model is None:
        return _select(con, "", [])
    return _select(con, "WHERE r.model = ?", [model])


def runs_of_versions(con, version_ids: Sequence[str]) -> dict[str, RunRow]:
    """The run each of these versions was committed from (versions committed otherwise are absent)."""
    if not version_ids:
        return {}
    return {r.version_id: r for r in _select(con, "WHERE r.version_id IN (SELECT unnest(?))", [list(version_ids)])}


def metric_points(con, run_id: str) -> list[tuple[str, int, float]]:
    return [(n, int(s), float(v)) for n, s, v in con.execute(
        "SELECT name, step, value FROM run_metrics WHERE run_id = ? ORDER BY name, step", [run_id]).fetchall()]


def snapshots(con, run_id: str) -> list[tuple[int, int | None, str | None, list[tuple[str, str]]]]:
    """(snap, step, label, [(tensor name, tensor hash), ...]) of every snapshot, oldest first."""
    entries: dict[int, list[tuple[str, str]]] = {}
    for snap, name, th in con.execute(
            "SELECT snap, name, tensor_hash FROM run_snapshot_tensors WHERE run_id = ? ORDER BY snap, ord",
            [run_id]).fetchall():
        entries.setdefault(int(snap), []).append((name, th))
    return [
        (int(snap), None if step is None else int(step), label, entries.get(int(snap), []))
        for snap, step, label in con.execute(
            "SELECT snap, step, label FROM run_snapshots WHERE run_id = ? ORDER BY snap", [run_id]).fetchall()
    ]


def last_step(con, run_id: str) -> int | None:
    row = con.execute("SELECT max(step) FROM run_metrics WHERE run_id = ?", [run_id]).fetchone()
    return None if row[0] is None else int(row[0])


def _select(con, where: str, params: list) -> list[RunRow]:
    # `where` is one of the fixed clauses above; values always travel as parameters
    rows = con.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in _COLS.split(','))}, "
        "(SELECT count(*) FROM run_snapshots s WHERE s.run_id = r.id), "
        "(SELECT max(step) FROM run_metrics m WHERE m.run_id = r.id), "
        "(SELECT list(DISTINCT name ORDER BY name) FROM run_metrics m WHERE m.run_id = r.id), "
        "(SELECT v.model || '@' || v.seq FROM versions v WHERE v.id = r.version_id) "
        f"FROM runs r {where} ORDER BY r.started_at DESC, r.id", params,
    ).fetchall()
    return [
        RunRow(
            id=r[0], model=r[1], status=r[2], status_message=r[3],
            parents=None if r[4] is None else tuple(json.loads(r[4])), hparams=json.loads(r[5]),
            environment=json.loads(r[6]), graph_json=r[7], message=r[8], host=r[9], pid=int(r[10]),
            started_at=r[11], heartbeat_at=r[12], ended_at=r[13], version_id=r[14], n_snapshots=int(r[15]),
            last_step=None if r[16] is None else int(r[16]), metric_names=tuple(r[17] or ()), version_ref=r[18],
        )
        for r in rows
    ]
