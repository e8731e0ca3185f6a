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
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..catalog import Catalog
from ..catalog import files as catalog_files
from ..catalog import versions as catalog_versions
from ..catalog.db import RECOVERY_HINT
from ..catalog.files import StagedFile
from ..errors import CatalogCorruptError, InputError, RepoError, WeightsError
from ..netdef import Graph, rebuild
from ..storage_boundary import BlobStore
from . import commit as commit_op
from .describe import describe
from .diff import diff_versions
from .gc import DEFAULT_GRACE_S
from . import hotcopy
from .hotcopy import HotCopies
from .lineage import list_models
from .paths import RepoPaths, find_repo_root, is_repo_dir
from .reads import (all_versions, hparams_of, load_state_dict, refresh_hot_copy, snapshot_entries,
                    version_graph, version_header, version_info, weights_meta)
from .records import Checkout, ModelSummary, RepoStats, VersionDescription, VersionDiff, VersionInfo
from .refs import check_model_name, resolve
from .stats import repo_stats
from .tensorstore import put_blob


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
        model: nn.Module | Mapping[str, torch.Tensor],
        *,
        name: str,
        message: str | bytes,
        parent: str | Sequence[str] | None = commit_op.LATEST,
        hparams: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        files: Iterable[str | os.PathLike] | Mapping[str, bytes] | None = None,
        author: str | None = None,
        snapshots: Sequence[nn.Module | Mapping[str, torch.Tensor]] = (),
        snapshot_steps: Sequence[int | None] | None = None,
        graph: Graph | None = None,
        weights_meta: dict | None = None,
        hot_copy: bool = True,
    ) -> VersionInfo:
        """Commit a module (graph captured) or a state dict as a new version of ``name``.

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
        one model in a row writes it for the last one only).
        """
        req = commit_op.build_request(
            model, name=name, message=message, parent=parent, hparams=hparams, metrics=metrics,
            files=files, author=author, snapshots=snapshots, snapshot_steps=snapshot_steps,
            graph=graph, weights_meta=weights_meta, root=self.root,
        )
        hotcopy.max_bytes()  # a malformed DLV_HOT_MAX_BYTES is refused before anything is written
        with self.catalog.write() as con:
            vid = commit_op.write_commit(con, self.store, req)
            info = version_info(con, vid)
            entries = snapshot_entries(con, vid)
            siblings = catalog_versions.ids_of_model(con, info.model)
        if hot_copy:
            refresh_hot_copy(self.hot, vid, entries, req.state_dicts[-1], siblings)
        return info

    def add(self, paths: Iterable[str | os.PathLike]) -> list[tuple[str, int]]:
        """Stage files to attach to the next commit; returns (path, size) pairs."""
        files = commit_op.read_files(paths, self.root)
        if not files:
            raise InputError("nothing to add; name one or more files")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
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
              storage_budget: int | None = None, backend: str | None = None, ray_address: str | None = None):
        """Run a DQL statement (see docs/DQL.md); ``commit=True`` stores slice/construct results
        as new versions (weights carried over for surviving layers); ``storage_budget`` caps the
        bytes of frozen-layer features an `evaluate` may materialize (docs/ENGINE.md);
        ``backend="ray"`` runs an `evaluate`'s extraction and training on a Ray cluster
        (``ray_address``, else RAY_ADDRESS, else a local one; same results)."""
        from .query import run_query
        return run_query(self, text, commit=commit, name=name, progress=progress, storage_budget=storage_budget,
                         backend=backend, ray_address=ray_address)

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
        with self.catalog.read() as con:
            return describe(con, resolve(con, ref))

    def diff(self, a: str, b: str, *, include_same: bool = False) -> VersionDiff:
        with self.catalog.read() as con:
            return diff_versions(con, self.store, resolve(con, a), resolve(con, b), include_same=include_same)

    def stats(self) -> RepoStats:
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
    ) -> Checkout:
        """Weights (bit-exact), network and hyperparameters of a version.

        ``module`` is the user's ``model_class()`` with the weights loaded when
        given, else the network rebuilt from the stored graph when possible.
        """
        with self.catalog.read() as con:
            vid = resolve(con, ref)
            header = version_header(con, vid)
            count = header.n_snapshots
            if snapshot is not None and not -count <= snapshot < count:
                raise InputError(f"version {ref} has {count} snapshot(s); choose a snapshot from 0 to {count - 1}")
            snap = None if snapshot is None else snapshot % count
            state = load_state_dict(con, self.store, vid, snap, hot=self.hot, header=header)
            graph = header.graph()
            info, hp, meta = header.info, header.hparams, header.weights_meta
        module = None
        if model_class is not None:
            module = _load_into(model_class(), state, ref)
        elif rebuild_module and graph is not None and graph.rebuildable:
            module = _load_into(rebuild(graph), state, ref)
        return Checkout(info, state, module, graph, hp, meta, count - 1 if snap is None else snap)

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
             ray_address: str | None = None, use_stored_features: bool = True):
        """Loss and accuracy of version ``ref`` on dataset ``data`` (NAME[@N]); returns an EvalReport.
        ``progressive=True``: exact top-k labels reading the fewest parameter bytes (a ProgressiveReport),
        starting from the exact stored features of a frozen prefix when the feature store holds them
        (``use_stored_features=False``: always from the raw inputs).
        ``backend="ray"``: forward passes on a Ray cluster (same numbers)."""
        from ..engine.evaluate import evaluate_version
        from .engine_access import engine_access
        return evaluate_version(engine_access(self), ref, data, split=split, loss=loss, config=config,
                                progressive=progressive, top_k=top_k, compare=compare, backend=backend,
                                ray_address=ray_address, use_stored_features=use_stored_features)

    # -- what the command line needs beyond the above (it calls Repo only) -------------
    #: ``gc`` keeps unreferenced blobs younger than this many seconds unless told otherwise
    DEFAULT_GC_GRACE_S: float = DEFAULT_GRACE_S

    def commit_parent_weights(
        self,
        *,
        name: str,
        message: str | bytes,
        parent: str | Sequence[str] | None = commit_op.LATEST,
        hparams: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        author: str | None = None,
    ) -> VersionInfo:
        """A new version of ``name`` that keeps its first parent's weights (and so its network):
        new hyperparameters, metrics or a message for weights already stored.

        ``parent`` as in :meth:`commit` (default: the latest version of ``name``);
        it is chosen, and its weights read, inside the commit's write transaction.
        Without a parent there are no weights to keep: InputError.
        """
        from .parent_weights import choose_parents, parent_state_dict
        with self.catalog.write() as con:
            parents = choose_parents(con, name, parent)
            state = parent_state_dict(con, self.store, self.hot, parents[0])
            # Nested, so the same transaction. Its hot copy is written before that commits:
            # should the commit fail, the copy names no version and gc removes it.
            return self.commit(state, name=name, message=message, parent=parents, hparams=hparams,
                               metrics=metrics, author=author)

    def write_checkout(self, ref: str, output: str | os.PathLike | None = None, *, snapshot: int | None = None,
                       files_dir: str | os.PathLike | None = None, overwrite: bool = False):
        """Write version ``ref``'s weights (bit-exact) to the safetensors file ``output``
        (default: NAME@N.safetensors in the current folder) and, with ``files_dir``, its attached
        files under that folder; returns a WrittenCheckout. Existing files are refused unless
        ``overwrite``."""
        from .checkout_files import default_output, write_checkout
        with self.catalog.read():  # one scope: the weights and the files of the same version
            ck = self.checkout(ref, snapshot=snapshot, rebuild_module=False)
            files = self.files(ck.version.id) if files_dir is not None else {}
        out = Path(output) if output is not None else default_output(ck.version)
        return write_checkout(ck, files, out, None if files_dir is None else Path(files_dir), overwrite=overwrite)

    def archive(self, *, alpha: float = 2.0, scheme: str = "independent", budget: int | None = None,
                keep_latest_whole: bool = False, progress: Callable[[str], None] | None = None):
        """Re-encode every stored tensor under the cheapest storage plan whose snapshots each cost at
        most ``alpha`` times their all-whole recreation cost (or the smallest alpha that fits in
        ``budget`` bytes), in one write transaction; returns an ArchiveResult (see repo/archive.py)."""
        from .archive import archive
        return archive(self, alpha=alpha, scheme=scheme, budget=budget, keep_latest_whole=keep_latest_whole,
                       progress=progress)

    def archive_dry_run(self, alphas: Sequence[float], *, scheme: str = "independent",
                        keep_latest_whole: bool = False, progress: Callable[[str], None] | None = None) -> list[dict]:
        """What :meth:`archive` would store, and what recreation would cost, for each of ``alphas``
        (nothing is written)."""
        from .archive import archive_dry_run
        return archive_dry_run(self, alphas, scheme=scheme, keep_latest_whole=keep_latest_whole, progress=progress)

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

    @staticmethod
    def restore_catalog(path: Path | str | None = None):
        """Replace the damaged or missing catalog of the repository at ``path`` (or the nearest
        above the current folder): its readable rows are salvaged, else the newest verified backup
        is restored. Returns a CatalogRestore. A static method: the damaged repository cannot be
        opened as a Repo."""
        from .restore import restore_repo_catalog
        return restore_repo_catalog(path)


def _load_into(module: nn.Module, state: "OrderedDict[str, torch.Tensor]", ref: str) -> nn.Module:
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
        raise RepoError(f"{paths.root} is already a dlv repository; use open_repo({str(paths.root)!r})")
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



