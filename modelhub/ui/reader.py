"""What the web UI reads from a repository: read scopes only, and no torch.

The pages read the catalog through modelhub.catalog.browse (plain SQL); the
DQL box runs `select` statements only (modelhub.dql, imported on first use).
Nothing here writes, apart from the schema upgrade any command applies when
it opens an older repository.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..catalog import Catalog, browse
from ..catalog import runs as run_queries
from ..catalog.runs import RunRow
from ..errors import InputError, QueryError, RefError, RepoError
from ..repo.paths import RepoPaths, find_repo_root
from ..repo.refs import resolve


@dataclass(frozen=True)
class QueryOutcome:
    text: str
    rows: list[browse.VersionListing]
    error: str | None = None       # the DQL error as the CLI prints it (with its caret picture)


class RepoReader:
    def __init__(self, root: Path | str | None = None) -> None:
        paths = RepoPaths(Path(find_repo_root(root)).resolve())
        if not paths.catalog.is_file():
            raise RepoError(f"{paths.root} is not a dlv repository (no .dlv/catalog.duckdb); run `dlv init`")
        self.root = paths.root
        self.catalog = Catalog(paths.catalog, paths.lock)
        self.catalog.ensure_schema()

    # -- versions -----------------------------------------------------------------------------
    def versions(self, dql: str = "") -> QueryOutcome:
        text = dql.strip()
        if not text:
            with self.catalog.read() as con:
                return QueryOutcome("", browse.version_rows(con))
        try:
            ids = self._select_ids(text)
        except QueryError as exc:
            return QueryOutcome(text, [], str(exc))
        with self.catalog.read() as con:
            return QueryOutcome(text, browse.version_rows(con, ids))

    def _select_ids(self, text: str) -> list[str]:
        from ..dql import ast, execute, parse   # the DQL parser: only when a query is typed

        if not isinstance(parse(text), ast.SelectQuery):
            raise QueryError("the UI is read-only and runs `select` statements only; run slice, construct, "
                             "evaluate and save with `dlv query`")
        result = execute(text, self.catalog)
        if "id" not in result.columns:
            raise QueryError("the query returns no version ids; select versions, e.g. `select m where ...`")
        col = result.columns.index("id")
        return list(dict.fromkeys(r[col] for r in result.rows))

    def version(self, ref: str) -> browse.VersionPage:
        with self.catalog.read() as con:
            return browse.version_page(con, resolve(con, ref))

    def curves(self, refs: Sequence[str]) -> tuple[list[browse.VersionListing], dict]:
        with self.catalog.read() as con:
            ids = list(dict.fromkeys(resolve(con, r) for r in refs))
            return browse.version_rows(con, ids), browse.metric_series(con, ids)

    def diff(self, a: str, b: str) -> tuple[browse.VersionListing, browse.VersionListing, dict]:
        with self.catalog.read() as con:
            ia, ib = resolve(con, a), resolve(con, b)
            ra, rb = browse.version_rows(con, [ia, ib]) if ia != ib else browse.version_rows(con, [ia]) * 2
            return ra, rb, browse.meta_diff(con, ia, ib)

    def models(self) -> list[str]:
        with self.catalog.read() as con:
            return browse.model_names(con)

    def lineage(self, model: str):
        with self.catalog.read() as con:
            if model not in browse.model_names(con):
                resolve(con, model)   # a RefError naming the closest models
            return browse.lineage(con, model)

    def stats(self) -> browse.ArchiveStats:
        with self.catalog.read() as con:
            return browse.archive_stats(con)

    # -- runs ---------------------------------------------------------------------------------
    def runs(self) -> list[RunRow]:
        with self.catalog.read() as con:
            return run_queries.list_runs(con)

    def run(self, ref: str) -> tuple[RunRow, dict[str, list[tuple[int, float]]]]:
        text = ref.strip().lower()
        if not text or not all(c in "0123456789abcdef" for c in text):
            raise InputError(f"{ref!r} is not a run id (hex)")
        with self.catalog.read() as con:
            ids = run_queries.find_run_ids(con, text)
            if len(ids) != 1:
                raise RefError(f"no run with id {ref!r}" if not ids else f"run id {ref!r} is ambiguous; give more characters")
            series: dict[str, list[tuple[int, float]]] = {}
            for name, step, value in run_queries.metric_points(con, ids[0]):
                series.setdefault(name, []).append((step, value))
            return run_queries.get_run(con, ids[0]), series
