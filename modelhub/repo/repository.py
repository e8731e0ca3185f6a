"""The repository: one object per `.dlv` folder, one method per operation.

Each method opens its own catalog scope (shared lock for reads, exclusive
lock + one transaction for writes), so several processes can use one
repository at once: they wait for each other instead of failing.
"""
from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..catalog import Catalog
from ..catalog import files as catalog_files
from ..catalog import versions as catalog_versions
from ..catalog.db import RECOVERY_HINT
from ..catalog.files import StagedFile
from ..errors import CatalogCorruptError, InputError, RepoError, RepoExistsError, WeightsError
from ..netdef import Graph
from ..progress import NULL_PROGRESS, Progress
from ..storage_boundary import BlobStore
from .gc import DEFAULT_GRACE_S
from . import hotcopy
from .hotcopy import HotCopies
from .lineage import list_models
from .paths import RepoPaths, find_repo_root, is_repo_dir
from .reads import (all_versions, hparams_of, load_state_dict, refresh_hot_copy, snapshot_entries,
                    version_graph, version_header, version_info, weights_meta)
from .records import Checkout, ModelSummary, RepoStats, VersionDescription, VersionDiff, VersionInfo
from .refs import LATEST, check_model_name, resolve
from . import settings
from .settings import hot_max_bytes

if TYPE_CHECKING:
    import torch
    from torch import nn

# Operations that need torch (commit, checkout) import it, and commit.py, when they run:
# opening a repository to read its catalog (`dlv log`) must not pay for importing torch.


class Repo:
    def __init__(self, root: Path | str) -> None:
        self.paths = RepoPaths(Path(root).resolve())
        if not self.paths.catalog.is_file():
            if is_repo_dir(self.paths.dlv):
                raise CatalogCorruptError(
                    f"the catalog {self.paths.catalog} is missing; {RECOVERY_HINT}")
            raise RepoError(f"{self.paths.root} is not a dlv repository (no .dlv/catalog.duckdb); run `dlv init {self.paths.root}`")
        self.catalog = Catalog(self.paths.catalog, self.paths.lock)
        self.store = BlobStore(self.paths.objects)
        self.hot = HotCopies(self.paths.hot)
        self.catalog.ensure_schema()

    @property
    def root(self) -> Path:
        return self.paths.root

    def __repr__(self) -> str:
        return f"Repo({str(self.root)!r})"

    # -- references ---------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        with self.catalog.read() as con:
            return resolve(con, ref)

    def version(self, ref: str) -> VersionInfo:
        with self.catalog.read() as con:
            return version_info(con, resolve(con, ref))

    # -- writes -----------------------------------------------------------------------
    def commit(
        self,
        model: nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike,
        *,
        name: str,
        message: str | bytes,
        parent: str | Sequence[str] | None = LATEST,
        hparams: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        files: Iterable[str | os.PathLike] | Mapping[str, bytes] | None = None,
        author: str | None = None,
        snapshots: Sequence[nn.Module | Mapping[str, torch.Tensor]] = (),
        snapshot_steps: Sequence[int | None] | None = None,
        graph: Graph | None = None,
        weights_meta: dict | None = None,
        hot_copy: bool = True,
        progress: Progress | None = None,
        inherit_hparams: bool = False,
    ) -> VersionInfo:
        """Commit a module (graph captured), a state dict, or a weights path as a new version of ``name``.

        A path (a ``.safetensors`` file, a sharded checkpoint's ``*.safetensors.index.json``,
        or a folder holding either) is streamed: tensors are read one at a time from the mapped
        file(s) and hashed, encoded and written in threads, so memory stays near a few times the
        largest tensor; a sharded source is checked out sharded again (:meth:`write_checkout`).

        ``parent`` defaults to the latest version of ``name`` (none for a new
        model); give a reference or a list of them (merges), or ``()`` / None
        to start a new lineage.

        ``metrics`` maps a name to a value, a list of values (steps 0..n-1) or
        a list of (step, value) pairs. ``snapshots`` are earlier checkpoints
        (oldest first); the committed weights are the last snapshot.
        ``files`` are paths as ``open()`` takes them (a relative one from the
        current folder) that must lie inside the repository's folder, or a
        mapping {relative path: bytes}.
        ``hot_copy=False`` skips writing the hot copy (a caller committing several versions of
        one model in a row writes it for the last one only). ``progress`` (modelhub.progress)
        counts the bytes stored.
        ``inherit_hparams=True`` keeps the first parent's hyperparameters that ``hparams`` does not
        override (what `dlv commit` does).
        """
        from . import commit as commit_op

        req = commit_op.build_request(
            model, name=name, message=message, parent=parent, hparams=hparams, metrics=metrics,
            files=files, author=author, snapshots=snapshots, snapshot_steps=snapshot_steps,
            graph=graph, weights_meta=weights_meta, root=self.root, inherit_hparams=inherit_hparams,
        )
        try:
            hotcopy.max_bytes()  # a malformed DLV_HOT_MAX_BYTES is refused before anything is written
            with self.catalog.write() as con:
                vid = commit_op.write_commit(con, self.store, req, progress=progress or NULL_PROGRESS)
                info = version_info(con, vid)
                entries = snapshot_entries(con, vid)
                siblings = catalog_versions.ids_of_model(con, info.model)
                cap = hot_max_bytes(con)
            if hot_copy:
                refresh_hot_copy(self.hot, vid, entries, commit_op.hot_copy_items(req.state_dicts[-1]), siblings, cap)
        finally:
            commit_op.close_request(req)
        return info

    def add(self, paths: Iterable[str | os.PathLike]) -> list[tuple[str, int]]:
        """Stage files to attach to the next commit; returns (path, size) pairs."""
        from . import commit as commit_op

        files = commit_op.read_files(paths, self.root)
        if not files:
            raise InputError("nothing to add; name one or more files")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        from .tensorstore import put_blob
        with self.catalog.write() as con:
            for path, data in files:
                blob_hash = put_blob(con, self.store, data)
                catalog_files.stage_file(con, StagedFile(path, blob_hash, len(data), now))
        return [(p, len(d)) for p, d in files]

    def staged(self) -> list[tuple[str, int]]:
        with self.catalog.read() as con:
            return [(f.path, f.size) for f in catalog_files.staged_files(con)]

    def copy(self, ref: str, new_name: str, *, message: str | None = None, author: str | None = None) -> VersionInfo:
        """Start a new model from an existing version (same network, weights, hparams; lineage kept)."""
        from . import commit as commit_op

        check_model_name(new_name)
        with self.catalog.write() as con:
            if catalog_versions.model_exists(con, new_name):
                raise InputError(f"model {new_name!r} already exists; choose another name or commit to it directly")
            src = resolve(con, ref)
            info = version_info(con, src)
            state = load_state_dict(con, self.store, src)
            files = {f.path: self.store.get(f.blob_hash) for f in catalog_files.version_files(con, src)}
            req = commit_op.build_request(
                state, name=new_name, message=message or f"copy of {info.ref}", parent=src,
                hparams=hparams_of(con, src), files=files, author=author,
                graph=version_graph(con, src), weights_meta=weights_meta(con, src),
            )
            # Staged files belong to the user's next commit, not to the copy.
            staged = catalog_files.staged_files(con)
            vid = commit_op.write_commit(con, self.store, req)
            catalog_files.restage(con, staged)
            return version_info(con, vid)

    def query(self, text: str, *, commit: bool = False, name: str | None = None, progress=None,
              storage_budget: int | None = None, backend: str | None = None, ray_address: str | None = None,
              all_or_nothing: bool = False):
        """Run a DQL statement (see docs/DQL.md); ``commit=True`` stores slice/construct results
        as new versions (weights carried over for surviving layers); ``storage_budget`` caps the
        bytes of frozen-layer features an `evaluate` may materialize (docs/ENGINE.md);
        ``backend="ray"`` runs an `evaluate`'s extraction and training on a Ray cluster
        (``ray_address``, else RAY_ADDRESS, else a local one; same results). A slice/construct
        skips (and lists in ``result.skipped``) the source versions it fails for, unless
        ``all_or_nothing=True``."""
        from .query import run_query
        return run_query(self, text, commit=commit, name=name, progress=progress, storage_budget=storage_budget,
                         backend=backend, ray_address=ray_address, all_or_nothing=all_or_nothing)

    # -- reads ------------------------------------------------------------------------
    def log(self, name: str | None = None) -> list[VersionInfo]:
        with self.catalog.read() as con:
            if name is not None and not catalog_versions.model_exists(con, name):
                resolve(con, name)  # raises a RefError with close matches
            return all_versions(con, name)

    def models(self) -> list[ModelSummary]:
        with self.catalog.read() as con:
            return list_models(con)

    def desc(self, ref: str) -> VersionDescription:
        from .describe import describe  # per-command modules load when used: `dlv log` stays light
        with self.catalog.read() as con:
            return describe(con, resolve(con, ref))

    def diff(self, a: str, b: str, *, include_same: bool = False) -> VersionDiff:
        from .diff import diff_versions
        with self.catalog.read() as con:
            return diff_versions(con, self.store, resolve(con, a), resolve(con, b), include_same=include_same)

    def stats(self) -> RepoStats:
        from .stats import repo_stats
        with self.catalog.read() as con:
            stats = repo_stats(con, self.store)
        return dataclasses.replace(stats, hot_bytes=self.hot.bytes_used())

    def checkout(
        self,
        ref: str,
        *,
        snapshot: int | None = None,
        model_class: type[nn.Module] | Callable[[], nn.Module] | None = None,
        rebuild_module: bool = True,
        progress: Progress | None = None,
    ) -> Checkout:
        """Weights (bit-exact), network and hyperparameters of a version.

        ``module`` is the user's ``model_class()`` with the weights loaded when
        given, else the network rebuilt from the stored graph when possible. ``progress``
        (modelhub.progress) counts the bytes decoded from the archive.
        """
        with self.catalog.read() as con:
            vid = resolve(con, ref)
            header = version_header(con, vid)
            count = header.n_snapshots
            if snapshot is not None and not -count <= snapshot < count:
                raise InputError(f"version {ref} has {count} snapshot(s); choose a snapshot from 0 to {count - 1}")
            snap = None if snapshot is None else snapshot % count
            state = load_state_dict(con, self.store, vid, snap, hot=self.hot, header=header,
                                    progress=progress or NULL_PROGRESS)
            graph = header.graph()
            info, hp, meta = header.info, header.hparams, header.weights_meta
        module = None
        if model_class is not None:
            module = _load_into(model_class(), state, ref)
        elif rebuild_module and graph is not None and graph.rebuildable:
            from ..netdef import rebuild

            module = _load_into(rebuild(graph), state, ref)
        return Checkout(info, state, module, graph, hp, meta, count - 1 if snap is None else snap)

    def config(self, name: str | None = None) -> list:
        """Repository settings (settings.py) with their values: all of them, or ``name``'s."""
        with self.catalog.read() as con:
            return settings.all_settings(con) if name is None else [settings.get_setting(con, name)]

    def set_config(self, name: str, value: str | None):
        """Set a repository setting (None: back to its default); a smaller hot copy cap applies at once."""
        with self.catalog.write() as con:
            result = settings.set_setting(con, name, value)
            cap = hot_max_bytes(con)
        if name == "hotcopy.max_bytes" and cap is not None:
            if cap == 0:
                self.hot.retain(set())
            else:
                self.hot.enforce_cap(cap, keep="")
        return result

    def fsck(self, *, repair: bool = False, deep: bool = False):
        """Verify the catalog's own storage, catalog <-> objects consistency and checksums (see repo/fsck.py)."""
        from .fsck import check_repository
        return check_repository(self, repair=repair, deep=deep)

    def gc(self, *, grace_s: float | None = None, dry_run: bool = False, features: bool = False):
        """Remove unreferenced blobs older than ``grace_s`` seconds, and half-written feature
        chunks; ``features=True`` drops the whole (recomputable) feature cache (see repo/gc.py)."""
        from .gc import DEFAULT_GRACE_S, collect_garbage
        return collect_garbage(self, grace_s=DEFAULT_GRACE_S if grace_s is None else grace_s, dry_run=dry_run,
                               features=features)

    def files(self, ref: str) -> dict[str, bytes]:
        with self.catalog.read() as con:
            vid = resolve(con, ref)
            files = catalog_files.version_files(con, vid)
            return {f.path: self.store.get(f.blob_hash) for f in files}

    # -- training runs (repo/runs.py; see docs/RUNS.md) --------------------------------
    def run(self, name: str, *, hparams: Mapping[str, Any] | None = None,
            parent: str | Sequence[str] | None = LATEST, model: nn.Module | None = None,
            message: str | None = None, flush_every_s: float | None = None):
        """Track a training as it happens: ``with repo.run("net", hparams={...}, model=net) as run:
        run.log(step=..., loss=...); run.snapshot()``; commits a version of ``name`` at exit
        (status finished, or failed with the exception's message)."""
        from .runs import DEFAULT_FLUSH_EVERY_S, start_run
        return start_run(self, name, hparams=hparams, parent=parent, model=model, message=message,
                         flush_every_s=DEFAULT_FLUSH_EVERY_S if flush_every_s is None else flush_every_s)

    def resume_run(self, run: str, *, model: nn.Module | None = None):
        """Continue an unfinished run (its process died) by id or unique id prefix."""
        from .runs import resume_run
        return resume_run(self, run, model=model)

    def commit_run(self, run: str, *, status: str = "finished", status_message: str | None = None,
                   message: str | None = None) -> VersionInfo | None:
        """Commit an unfinished run's snapshots and metrics as a version (None when it took no snapshot)."""
        from .runs import commit_run
        return commit_run(self, run, status=status, status_message=status_message, message=message)

    def runs(self, name: str | None = None):
        """Runs, newest first (catalog.runs.RunRow: state is running, unfinished, finished or failed)."""
        from ..catalog import runs as run_queries
        with self.catalog.read() as con:
            return run_queries.list_runs(con, name)

    def run_info(self, run: str):
        from .runs import resolve_run
        with self.catalog.read() as con:
            return resolve_run(con, run)

    def run_of(self, ref: str):
        """The run a version was committed from (catalog.runs.RunRow), or None."""
        from ..catalog import runs as run_queries
        with self.catalog.read() as con:
            vid = resolve(con, ref)
            return run_queries.runs_of_versions(con, [vid]).get(vid)

    def runs_of(self, version_ids) -> dict:
        """{version id: RunRow} for the versions among ``version_ids`` committed from a run (for `dlv log`)."""
        from ..catalog import runs as run_queries
        with self.catalog.read() as con:
            return run_queries.runs_of_versions(con, list(version_ids))

    def run_metrics(self, run: str) -> dict[str, list[tuple[int, float]]]:
        """{metric: [(step, value), ...]} flushed so far (a live run flushes every few seconds)."""
        from ..catalog import runs as run_queries
        from .runs import resolve_run
        with self.catalog.read() as con:
            series: dict[str, list[tuple[int, float]]] = {}
            for name, step, value in run_queries.metric_points(con, resolve_run(con, run).id):
                series.setdefault(name, []).append((step, value))
            return series

    # -- datasets and evaluation (engine; see docs/ENGINE.md) -------------------------
    def data_add(self, name: str, files, *, message: str = ""):
        """Add records to dataset ``name`` (created if new) as a new dataset version."""
        from .datasets import add_dataset
        return add_dataset(self, name, files, message)

    def datasets(self):
        """The latest version of every dataset."""
        from .datasets import list_datasets
        return list_datasets(self)

    def dataset(self, ref: str):
        """Records of ``NAME`` (latest) or ``NAME@N`` as an engine DataView."""
        from .datasets import load_dataset
        return load_dataset(self, ref)

    def eval(self, ref: str, *, data: str, split: str = "val", loss: str = "cross_entropy", config: str | None = None,
             progressive: bool = False, top_k: int = 1, compare: bool = True, backend: str | None = None,
             ray_address: str | None = None, use_stored_features: bool = True, progress: Progress | None = None):
        """Loss and accuracy of version ``ref`` on dataset ``data`` (NAME[@N]); returns an EvalReport.
        ``progressive=True``: exact top-k labels reading the fewest parameter bytes (a ProgressiveReport),
        starting from the exact stored features of a frozen prefix when the feature store holds them
        (``use_stored_features=False``: always from the raw inputs).
        ``backend="ray"``: forward passes on a Ray cluster (same numbers). ``progress``
        (modelhub.progress) names each step."""
        from ..engine.evaluate import evaluate_version
        from .engine_access import engine_access
        return evaluate_version(engine_access(self), ref, data, split=split, loss=loss, config=config,
                                progressive=progressive, top_k=top_k, compare=compare, backend=backend,
                                ray_address=ray_address, use_stored_features=use_stored_features,
                                progress=progress or NULL_PROGRESS)

    def eval_selection(self, select: str | None = None, refs: Sequence[str] = (), *, data: str,
                       remote: str | None = None, split: str = "val", config: str | None = None, top_k: int = 1,
                       compare: bool = True, link_mbps: float | None = None, link_latency_ms: float = 20.0,
                       progress=None, snapshots: bool = False):
        """Progressive top-k labels of many versions -- those a DQL ``select`` returns and/or ``refs`` --
        on dataset ``data``, with their weights in this archive or on ``remote`` (not pulled): one
        fetch of each blob for all of them, segments only where labels are not yet certain, and
        full precision over the same storage beside it (``compare``). A SelectionReport
        (docs/PROGRESSIVE.md, "Many versions"); ``link_mbps``: also price the fetches over a link of
        that many Mbit/s and ``link_latency_ms`` per request;
        ``snapshots``: every stored snapshot of each version (a run's checkpoints), not only the last."""
        from .progressive_eval import eval_selection
        return eval_selection(self, select, refs, data=data, remote=remote, split=split, config=config,
                              top_k=top_k, compare=compare, link_mbps=link_mbps,
                              link_latency_ms=link_latency_ms, progress=progress,
                              snapshots=snapshots)

    # -- what the command line needs beyond the above (it calls Repo only) -------------
    #: ``gc`` keeps unreferenced blobs younger than this many seconds unless told otherwise
    DEFAULT_GC_GRACE_S: float = DEFAULT_GRACE_S

    def commit_parent_weights(
        self,
        *,
        name: str,
        message: str | bytes,
        parent: str | Sequence[str] | None = LATEST,
        hparams: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        author: str | None = None,
        progress: Progress | None = None,
    ) -> VersionInfo:
        """A new version of ``name`` that keeps its first parent's weights (and so its network):
        new hyperparameters, metrics or a message for weights already stored.

        ``parent`` as in :meth:`commit` (default: the latest version of ``name``);
        it is chosen, and its weights read, inside the commit's write transaction.
        Without a parent there are no weights to keep: InputError. The first parent's hyperparameters
        are kept unless ``hparams`` overrides them.
        """
        from .parent_weights import choose_parents, parent_state_dict
        with self.catalog.write() as con:
            parents = choose_parents(con, name, parent)
            state = parent_state_dict(con, self.store, self.hot, parents[0])
            # Nested, so the same transaction. Its hot copy is written before that commits:
            # should the commit fail, the copy names no version and gc removes it.
            return self.commit(state, name=name, message=message, parent=parents, hparams=hparams,
                               metrics=metrics, author=author, progress=progress, inherit_hparams=True)

    def write_checkout(self, ref: str, output: str | os.PathLike | None = None, *, snapshot: int | None = None,
                       files_dir: str | os.PathLike | None = None, overwrite: bool = False,
                       max_shard_bytes: int | None = None, progress: Progress | None = None):
        """Write version ``ref``'s weights (bit-exact) to the safetensors file ``output``
        (default: NAME@N.safetensors in the current folder) and, with ``files_dir``, its attached
        files under that folder; returns a WrittenCheckout. Existing files are refused unless
        ``overwrite``. Tensors are decoded and written one at a time (memory stays near a few
        tensors). The weights go to a folder of shards plus ``model.safetensors.index.json`` when
        ``max_shard_bytes`` is given, or when the version was committed from a sharded checkpoint
        and ``output`` is not a ``.safetensors`` path (default then: a folder NAME@N)."""
        from .checkout_files import write_checkout
        return write_checkout(self, ref, None if output is None else Path(output), snapshot=snapshot,
                              files_dir=None if files_dir is None else Path(files_dir), overwrite=overwrite,
                              max_shard_bytes=max_shard_bytes, progress=progress or NULL_PROGRESS)

    def archive(self, *, alpha: float = 2.0, scheme: str = "independent", budget: int | None = None,
                keep_latest_whole: bool = False, progress: Callable[[str], None] | None = None,
                remeasure: bool = False):
        """Re-encode every stored tensor under the cheapest storage plan whose snapshots each cost at
        most ``alpha`` times their all-whole recreation cost (or the smallest alpha that fits in
        ``budget`` bytes), in one write transaction; returns an ArchiveResult (see repo/archive.py).
        Sizes measured by earlier archives and dry runs are reused (``remeasure``: measure all again)."""
        from .archive import archive
        return archive(self, alpha=alpha, scheme=scheme, budget=budget, keep_latest_whole=keep_latest_whole,
                       progress=progress, remeasure=remeasure)

    def archive_dry_run(self, alphas: Sequence[float], *, scheme: str = "independent",
                        keep_latest_whole: bool = False, progress: Callable[[str], None] | None = None,
                        remeasure: bool = False) -> list[dict]:
        """What :meth:`archive` would store, and what recreation would cost, for each of ``alphas``
        (no tensor is written; the sizes measured are recorded for the archive that follows)."""
        from .archive import archive_dry_run
        return archive_dry_run(self, alphas, scheme=scheme, keep_latest_whole=keep_latest_whole, progress=progress,
                               remeasure=remeasure)

    def dataset_log(self, name: str):
        """Every version of dataset ``name``, oldest first (DatasetVersion records); a DataError
        naming the known datasets when there is no such dataset."""
        from .datasets import dataset_versions, load_dataset
        with self.catalog.read():
            versions = dataset_versions(self, name)
            if not versions:
                load_dataset(self, name)  # raises the "no dataset named" error with the known names
        return versions

    def vocabulary(self):
        """The names a query may mention (models, layers, hparam keys, metrics, saved queries):
        what DQL completion offers."""
        from ..dql.vocabulary import Vocabulary
        with self.catalog.read() as con:
            return Vocabulary.load(con)

    # -- habits from git and MLflow: status, unstage, tags (docs/CLI.md) -------------
    def status(self):
        """What `dlv add` staged (and whether those files changed since), every model's latest version,
        the number of tags and what cheap checks notice; a RepoStatus (see repo/status.py)."""
        from .status import repo_status
        with self.catalog.read() as con:
            return repo_status(con, self.root, catalog_path=self.paths.catalog)

    def unstage(self, paths: Iterable[str | os.PathLike]) -> list[str]:
        """Take files out of the staging area (`dlv reset PATH`); the working copies are not touched.
        A path that is not staged is an InputError naming the staged ones."""
        from .commit import normalize_path
        wanted = [normalize_path(_relative_to(Path(p), self.root)) for p in paths]
        if not wanted:
            raise InputError("nothing to unstage; name one or more staged files")
        with self.catalog.write() as con:
            staged = [f.path for f in catalog_files.staged_files(con)]
            missing = [p for p in wanted if p not in staged]
            if missing:
                raise InputError(f"{', '.join(missing)} is not staged (staged: {', '.join(staged) or 'nothing'}); "
                                 "`dlv status` lists what is staged")
            for path in wanted:
                catalog_files.unstage_file(con, path)
        return wanted

    def tag(self, ref: str, tag: str, *, author: str | None = None):
        """Point tag ``tag`` of the version's model at version ``ref`` (moving it when it exists);
        afterwards ``NAME:TAG`` works wherever a version reference does. Returns a TagChange."""
        from .tags import set_tag
        with self.catalog.write() as con:
            return set_tag(con, ref, tag, author)

    def untag(self, name: str, *, author: str | None = None):
        """Delete tag ``NAME:TAG`` (its history keeps the deletion). Returns a TagChange."""
        from .tags import delete_tag
        with self.catalog.write() as con:
            return delete_tag(con, name, author)

    def tags(self, model: str | None = None):
        """Every tag (of ``model``) as TagInfo records, by model and tag."""
        from .tags import list_tags
        with self.catalog.read() as con:
            return list_tags(con, model)

    def tag_history(self, model: str | None = None, tag: str | None = None):
        """Every move of every tag (of ``model``, named ``tag``), oldest first: TagMoveInfo records."""
        from .tags import tag_history
        with self.catalog.read() as con:
            return tag_history(con, model, tag)

    def remove(self, refs: Sequence[str], *, model: bool = False, recursive: bool = False,
               author: str | None = None):
        """Remove versions (``model=True``: whole models, by name) in one write transaction; versions
        descending from them are refused unless ``recursive`` (then removed too). Tags naming them are
        deleted (their history keeps it). The space comes back with :meth:`gc`. Returns a Removed."""
        from .removal import remove
        with self.catalog.write() as con:
            return remove(con, list(refs), model=model, recursive=recursive, author=author)

    def rename_model(self, old: str, new: str) -> None:
        """Model ``old`` is called ``new`` from now on (versions keep their ids and numbers, tags move along)."""
        from .removal import rename_model
        with self.catalog.write() as con:
            rename_model(con, old, new)

    @staticmethod
    def restore_catalog(path: Path | str | None = None):
        """Replace the damaged or missing catalog of the repository at ``path`` (or the nearest
        above the current folder): its readable rows are salvaged, else the newest verified backup
        is restored. Returns a CatalogRestore. A static method: the damaged repository cannot be
        opened as a Repo."""
        from .restore import restore_repo_catalog
        return restore_repo_catalog(path)


def _relative_to(path: Path, root: Path) -> str:
    """A path as given on the command line, relative to the working folder when it lies inside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _load_into(module: nn.Module, state: "OrderedDict[str, torch.Tensor]", ref: str) -> nn.Module:
    from torch import nn

    if not isinstance(module, nn.Module):
        raise InputError("model_class must build an nn.Module when called without arguments")
    try:
        module.load_state_dict(state, strict=True, assign=_can_adopt(module, state))
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise WeightsError(f"the weights of {ref} do not fit the given model ({first}); use the class they were saved from") from None
    return module.eval()


def _can_adopt(module: nn.Module, state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the module can take the checked-out tensors themselves instead of copies.

    The tensors are fresh (decoded, or a private copy-on-write mapping of a hot
    copy), so adopting them saves a full copy of the weights, and with it most
    of a hot checkout's cost. Only when nothing observable changes: every target
    has the same dtype, shape and device (CPU), and no parameter is shared under
    two names (adopting would untie it).
    """
    targets = module.state_dict(keep_vars=True)
    if len({id(t) for t in targets.values()}) != len(targets) or targets.keys() != state.keys():
        return False
    return all(
        t.dtype == state[k].dtype and t.shape == state[k].shape and t.device.type == "cpu" == state[k].device.type
        for k, t in targets.items()
    )


def init_repo(path: Path | str = ".") -> Repo:
    """Create a repository in ``path`` (created if missing)."""
    paths = RepoPaths(Path(path).resolve())
    if paths.catalog.exists():
        raise RepoExistsError(f"{paths.root} is already a dlv repository; use open_repo({str(paths.root)!r})")
    if is_repo_dir(paths.dlv):
        raise CatalogCorruptError(f"{paths.dlv} is a repository whose catalog is missing; {RECOVERY_HINT} "
                                  "instead of creating a new one")
    if paths.dlv.exists() and any(paths.dlv.iterdir()):
        raise RepoError(f"{paths.dlv} exists but holds no catalog; move it away, then run `dlv init` again")
    try:
        paths.objects.mkdir(parents=True, exist_ok=True)
        paths.features.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepoError(f"cannot create {paths.dlv}: {exc.strerror}; check the folder's permissions") from None
    # The catalog is created under a temporary name and renamed into place so
    # that a crash here never leaves a half-initialized repository.
    tmp = paths.dlv / "catalog.duckdb.init"
    for leftover in (tmp, tmp.with_suffix(".init.wal")):
        leftover.unlink(missing_ok=True)
    Catalog.create(tmp, paths.lock)
    os.replace(tmp, paths.catalog)
    return Repo(paths.root)


def open_repo(path: Path | str | None = None) -> Repo:
    """Open the repository at ``path`` or the nearest one above the current folder."""
    if path is not None and (Path(path) / ".dlv").is_dir():
        return Repo(path)
    return Repo(find_repo_root(path))



