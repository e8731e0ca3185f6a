"""`dlv archive`: choose a storage plan over every snapshot and re-encode tensors.

The matrix storage graph has one vertex per distinct tensor (identical tensors,
e.g. frozen layers, are one vertex shared by many snapshots) and candidate
delta edges between the same-named tensors of consecutive snapshots of a
version and between a version's first snapshot and each parent's weights.
Edge costs are measured by encoding: storage = compressed bytes; recreation =
compressed bytes read + raw bytes produced (a delta costs its own decode on top
of its base's). :func:`modelhub.storage.plan.best_plan` picks the cheapest plan
whose snapshots each cost at most ``alpha`` times their all-materialized cost.

Measured sizes are kept in the catalog (:mod:`..catalog.encoding_sizes`, per encoder id): an
archive measures only the tensors and candidate deltas new since the last one (or since a dry
run), and decodes nothing where everything is known and the plan keeps every tensor as it is.
The sizes only steer the plan: what is written is encoded again and verified.

Atomicity: everything runs inside one catalog write scope. New blobs are
written (fsynced) first, every new manifest is decoded and checked against its
tensor hash, and only then do the ``tensor_data`` updates commit in the same
transaction as the plan rows. A crash at any point leaves either the old or
the new encodings, all readable; old blobs become garbage for `dlv gc`.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Optional

from ..catalog import archive_tables, encoding_sizes
from ..catalog import objects as catalog_objects
from ..catalog import versions as catalog_versions
from ..catalog.archive_tables import CostRow, PlanRow
from ..errors import ArchiveError, InputError, ModelhubError
from ..storage import plan as planning
from ..storage.tensors import archive_config, delta_base, encoder_id, manifest_blobs, tensor_matches
from ..storage_boundary import PendingBlobs, decode_tensor, encode_delta_best, encode_tensor
from . import tensorstore
from .records import Record
from .tensorstore import load_tensor

#: alphas tried, smallest first, when a storage budget is given instead of alpha
BUDGET_ALPHAS = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 1e9)


@dataclass(frozen=True)
class SnapshotCost(Record):
    version_id: str
    ref: str
    snap: int
    recreation_cost: float
    spt_cost: float


@dataclass(frozen=True)
class ArchiveResult(Record):
    alpha: float
    scheme: str
    algorithm: str
    n_tensors: int
    n_edges: int
    n_reencoded: int
    stored_before: int      # tensor blobs referenced before
    stored_after: int       # tensor blobs referenced after (the plan's storage)
    mst_bytes: int
    spt_bytes: int
    snapshots: tuple[SnapshotCost, ...]
    budget: Optional[int] = None   # the --budget the alpha was chosen for, if any
    n_measured: int = 0     # candidate encodings (whole and delta) this run encoded to size them
    n_known: int = 0        # candidate encodings sized by an earlier archive or dry run


@dataclass
class _Tensor:
    hash: str
    dtype: str
    shape: list
    nbytes: int
    manifest: dict


def _encoded_size(encoded) -> int:
    return sum(len(b) for b in encoded.blobs)


def _encode_whole(t: "_Tensor", raw: bytes):
    """The tuned whole encoding the plan sizes a tensor by (and writes where it stores it whole)."""
    return encode_tensor(raw, t.dtype, t.shape, config=archive_config(t.nbytes, len(t.shape)))


def _encode_delta(t: "_Tensor", raw: bytes, base: str, base_raw: bytes):
    """Segmented or context-coded (format 3) against ``base``, whichever is smaller: the plan sees
    real sizes (the result has no delta where none beats storing the tensor whole)."""
    return encode_delta_best(raw, t.dtype, t.shape, base_raw=base_raw, base_hash=base)


def _candidate_pairs(con) -> tuple[list[tuple[str, str]], dict[tuple[str, int], list[str]], dict[tuple[str, int], str]]:
    """(delta candidate pairs, snapshot -> tensor hashes, snapshot -> ref)."""
    by_snap: dict[tuple[str, int], dict[str, str]] = {}
    refs: dict[tuple[str, int], str] = {}
    last_snap: dict[str, int] = {}
    for t in tensorstore.snapshot_tensors(con):
        by_snap.setdefault((t.version_id, t.snap), {})[t.name] = t.tensor_hash
        refs[(t.version_id, t.snap)] = f"{t.model}@{t.seq}"
        last_snap[t.version_id] = max(last_snap.get(t.version_id, 0), t.snap)
    pairs: set[tuple[str, str]] = set()

    def link(a: dict[str, str], b: dict[str, str]) -> None:
        for name, th in b.items():
            other = a.get(name)
            if other is not None and other != th:
                pairs.add((other, th))

    for (vid, snap), tensors in by_snap.items():
        if snap > 0 and (vid, snap - 1) in by_snap:
            link(by_snap[(vid, snap - 1)], tensors)
    for parent_link in catalog_versions.parent_links(con):
        vid, pid = parent_link.version_id, parent_link.parent_id
        if vid in last_snap and pid in last_snap:
            link(by_snap[(pid, last_snap[pid])], by_snap[(vid, 0)])
            link(by_snap[(pid, last_snap[pid])], by_snap[(vid, last_snap[vid])])
    groups = {key: sorted(set(t.values())) for key, t in by_snap.items()}
    return sorted(pairs), groups, refs


@dataclass
class Measured:
    """The matrix storage graph of a repository with every candidate encoding measured. The
    encodings themselves are kept only while they fit in :data:`KEEP_ENCODED_BYTES` (all of
    them for a model of a few hundred MB): the plan needs their sizes, and the archive encodes
    again the few it writes that were not kept."""
    hashes: list[str]
    order: list[str]            # the hashes in the order they were measured: related tensors together
    info: dict[str, _Tensor]
    sizes: dict[tuple[Optional[str], str], int]   # (base or None, tensor) -> encoded bytes
    encodings: dict
    graph: planning.StorageGraph
    group_keys: list[tuple[str, int]]
    refs: dict[tuple[str, int], str]
    latest: list[bool]          # per group: is it its version's last snapshot
    stored_before: int
    fresh: dict[tuple[Optional[str], str], Optional[int]]   # measured by this run (None: no delta edge)
    n_measured: int             # candidate encodings this run encoded to size them
    n_known: int                # candidate encodings whose sizes an earlier run measured

    def group_alpha(self, alpha: float, keep_latest_whole: bool) -> Optional[list[float]]:
        if not keep_latest_whole:
            return None
        return [1.0 if last else alpha for last in self.latest]


#: decoded tensors an archive holds at once (at least two: a delta's pair), and encodings it keeps
#: from measuring to writing; a 1.16 GB bfloat16 checkpoint held all of both (2.1 GB peak)
RAW_CACHE_BYTES = 512 << 20
KEEP_ENCODED_BYTES = 256 << 20


class _DecodedTensors:
    """Tensors decoded from the catalog's current encodings, the least recently used dropped
    once more than ``budget`` bytes are held (the two asked for last are always kept).

    Every tensor row is read once, here (a query per tensor cost ~4 ms: 1.7 s of a re-archive
    of the 739-tensor fine-tune), and a delta's base is decoded through this cache too, so a
    delta chain is not decoded again from its whole root for every tensor on it."""

    def __init__(self, con, store, budget: Optional[int] = None) -> None:
        self.con, self.store = con, store
        self.budget = RAW_CACHE_BYTES if budget is None else budget
        self.rows = {row.tensor_hash: row for row in tensorstore.all_tensor_rows(con)}
        self._held: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def __getitem__(self, tensor_hash: str) -> bytes:
        raw = self._held.get(tensor_hash)
        if raw is not None:
            self._held.move_to_end(tensor_hash)
            return raw
        row = self.rows.get(tensor_hash)
        raw = (load_tensor(self.con, self.store, tensor_hash)[0] if row is None   # names what is missing
               else tensorstore.decode_row(self.store, row, self.__getitem__))
        self._held[tensor_hash] = raw
        self._bytes += len(raw)
        while self._bytes > self.budget and len(self._held) > 2:
            _, old = self._held.popitem(last=False)
            self._bytes -= len(old)
        return raw


def _related_order(hashes: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """``hashes`` with the tensors candidate deltas link (the versions of one weight) next to
    each other, so that measuring and writing decode each about once."""
    parent = {h: h for h in hashes}

    def root(h: str) -> str:
        while parent[h] != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    for a, b in pairs:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(root(h), i)
    position = {h: i for i, h in enumerate(hashes)}
    return sorted(hashes, key=lambda h: (first[root(h)], position[h]))


def measure(con, store, progress: Optional[Callable[[str], None]] = None, *, keep: bool = True,
            decoded: Optional[_DecodedTensors] = None,
            known: Optional[dict[tuple[Optional[str], str], Optional[int]]] = None) -> Measured:
    """Encode every tensor whole and every candidate delta whose size is not in ``known`` (sizes
    an earlier run measured; None: no delta edge), one related group at a time, and keep their
    sizes (and, with ``keep``, their encodings while they fit). A tensor with nothing to measure
    is not decoded."""
    say = progress or (lambda msg: None)
    pairs, groups, refs = _candidate_pairs(con)
    hashes = sorted({h for hs in groups.values() for h in hs})
    raw = decoded if decoded is not None else _DecodedTensors(con, store)
    info: dict[str, _Tensor] = {}
    for row in raw.rows.values():
        info[row.tensor_hash] = _Tensor(row.tensor_hash, row.dtype, row.shape, row.nbytes, row.manifest)
    stored_before = _stored_bytes(con, [info[h].manifest for h in hashes])
    index = {h: i + 1 for i, h in enumerate(hashes)}
    order = _related_order(hashes, pairs)
    at = {h: i for i, h in enumerate(order)}
    pairs_after: dict[str, list[tuple[str, str]]] = {}
    for a, b in pairs:   # each candidate delta once, measured next to the later of its two tensors
        pairs_after.setdefault(max(a, b, key=at.__getitem__), []).append((a, b))

    known = known or {}
    sizes: dict[tuple[Optional[str], str], int] = {k: v for k, v in known.items() if v is not None}
    fresh: dict[tuple[Optional[str], str], Optional[int]] = {}
    encodings: dict[tuple[Optional[str], str], object] = {}
    kept = 0
    todo: list[tuple[str, bool, list[tuple[str, str]]]] = []   # (tensor, whole unknown, unknown deltas)
    for h in order:
        deltas = [(a, b) for a, b in pairs_after.get(h, ())
                  if (a, b) not in known and (info[a].dtype, info[a].shape) == (info[b].dtype, info[b].shape)]
        if (None, h) not in known or deltas:
            todo.append((h, (None, h) not in known, deltas))
    n_whole = sum(whole for _, whole, _ in todo)
    n_deltas = sum(len(deltas) for _, _, deltas in todo)
    n_known = sum((None, h) in known for h in hashes) + sum(pair in known for pair in pairs)
    say(f"measuring {n_whole} whole encodings and {n_deltas} deltas"
        + (f" ({n_known} measured by an earlier archive)" if n_known else ""))

    def measured(key, enc) -> None:
        nonlocal kept
        sizes[key] = fresh[key] = size = _encoded_size(enc)
        if keep and kept + size <= KEEP_ENCODED_BYTES:
            encodings[key] = enc
            kept += size

    def work(job):
        """(a tensor, its decoded bytes if its whole size is unknown, its unknown deltas' pairs of
        decoded bytes), decoded in this thread: the catalog connection is used by one thread only."""
        h, whole, deltas = job
        return h, (raw[h] if whole else None), [(a, b, raw[a], raw[b]) for a, b in deltas]

    def encode(item) -> list:
        """The tensor's whole encoding and its candidate deltas (in a worker: zstd and the
        kernels release the GIL)."""
        h, data, deltas = item
        out = [] if data is None else [((None, h), _encode_whole(info[h], data))]
        for a, b, raw_a, raw_b in deltas:
            out.append(((a, b), _encode_delta(info[b], raw_b, a, raw_a)))
        return out

    # the tensors in flight are mostly the cache's too: both within its budget
    for results in tensorstore.bounded_map(encode, map(work, todo), budget=raw.budget,
                                           size=lambda item: len(item[1] or b"") + 2 * len(item[2]) * info[item[0]].nbytes):
        for key, enc in results:
            if key[0] is not None and enc.manifest.get("delta") is None:
                fresh[key] = None    # no delta beats storing it whole: no edge
            else:
                measured(key, enc)
        del results
    edges = [planning.Edge(0, index[h], sizes[(None, h)], sizes[(None, h)] + info[h].nbytes) for h in hashes]
    edges += [planning.Edge(index[a], index[b], sizes[(a, b)], sizes[(a, b)] + info[b].nbytes)
              for a, b in pairs if (a, b) in sizes]
    group_keys = sorted(groups)
    last_snap: dict[str, int] = {}
    for vid, snap in group_keys:
        last_snap[vid] = max(last_snap.get(vid, 0), snap)
    graph = planning.StorageGraph(len(hashes), tuple(edges),
                                  tuple(tuple(index[h] for h in groups[k]) for k in group_keys))
    return Measured(hashes, order, info, sizes, encodings, graph, group_keys, refs,
                    [snap == last_snap[vid] for vid, snap in group_keys], stored_before, fresh,
                    n_whole + n_deltas, n_known)


def choose_plan(m: Measured, *, alpha: float, scheme: str, budget: Optional[int] = None,
                keep_latest_whole: bool = False, also: tuple[float, ...] = (),
                cache: Optional[dict] = None) -> tuple[planning.StoragePlan, float]:
    """The plan (and the alpha it was made with): min storage under alpha, or the
    smallest alpha of BUDGET_ALPHAS whose plan fits ``budget`` bytes.

    The PAS heuristics are greedy, so the plan they find for a larger alpha can
    be larger than one found for a smaller alpha (seen: 1.25 -> 1.21x, 1.5 ->
    1.16x). A plan that meets a smaller alpha meets every larger one, so the
    plan for ``alpha`` is the smallest of those found for every alpha of the
    ladder (BUDGET_ALPHAS and ``also``) up to it: storage never grows with alpha.
    """
    cache = {} if cache is None else cache

    def at(a: float) -> planning.StoragePlan:
        if a not in cache:
            cache[a] = planning.best_plan(m.graph, a, scheme, m.group_alpha(a, keep_latest_whole))
        return cache[a]

    def monotone(limit: float) -> planning.StoragePlan:
        tried = sorted({a for a in (*BUDGET_ALPHAS, *also) if a <= limit} | {limit})
        return min((at(a) for a in tried), key=lambda p: (p.storage, sum(p.group_cost)))

    if budget is None:
        return monotone(alpha), alpha
    for a in BUDGET_ALPHAS:
        candidate = monotone(a)
        if candidate.storage <= budget:
            return candidate, a
    smallest = monotone(BUDGET_ALPHAS[-1])
    raise InputError(f"no plan fits in {budget} bytes (the smallest needs {int(smallest.storage)}); "
                     "raise --budget or use --alpha")


def _check_args(alpha: float, scheme: str) -> None:
    if scheme not in planning.SCHEMES:
        raise InputError(f"unknown scheme {scheme!r}; use one of {', '.join(planning.SCHEMES)}")
    if alpha < 1:
        raise InputError(f"--alpha {alpha} is below 1, which no plan can meet; use alpha >= 1 (1 = all tensors whole)")


def _known_sizes(con, remeasure: bool) -> dict:
    return {} if remeasure else encoding_sizes.measured_sizes(con, encoder_id())


def _record_sizes(con, m: Measured, remeasure: bool) -> None:
    if remeasure:
        encoding_sizes.clear_sizes(con)
    encoding_sizes.record_sizes(con, encoder_id(), m.fresh)


def plan_table(con, store, alphas, *, scheme: str = "independent", keep_latest_whole: bool = False,
               progress: Optional[Callable[[str], None]] = None, remeasure: bool = False) -> list[dict]:
    """Dry run: storage versus recreation of the chosen plan for each alpha (nothing is written)."""
    for a in alphas:
        _check_args(a, scheme)
    m = measure(con, store, progress, keep=False, known=_known_sizes(con, remeasure))
    return _plan_rows(m, alphas, scheme=scheme, keep_latest_whole=keep_latest_whole)


def _plan_rows(m: Measured, alphas, *, scheme: str, keep_latest_whole: bool) -> list[dict]:
    spt_plan = planning.spt(m.graph, scheme)
    rows = []
    cache: dict = {}
    logical = sum(m.info[h].nbytes for h in m.hashes)
    for a in sorted(alphas):
        plan, _ = choose_plan(m, alpha=a, scheme=scheme, keep_latest_whole=keep_latest_whole,
                              also=tuple(alphas), cache=cache)
        ratios = [c / s for c, s in zip(plan.group_cost, spt_plan.group_cost) if s]
        latest = [c for c, last in zip(plan.group_cost, m.latest) if last]
        rows.append({"alpha": a, "algorithm": plan.algorithm, "plan_storage_bytes": int(plan.storage),
                     "ratio": round(logical / plan.storage, 4) if plan.storage else None,
                     "total_recreation_cost": int(sum(plan.group_cost)),
                     "latest_recreation_cost": int(sum(latest)),
                     "max_recreation_over_spt": round(max(ratios, default=1.0), 4)})
    return rows


def run_archive(con, store, *, alpha: float = 2.0, scheme: str = "independent", budget: Optional[int] = None,
                keep_latest_whole: bool = False, progress: Optional[Callable[[str], None]] = None,
                fail_point: Optional[Callable[[str], None]] = None, remeasure: bool = False) -> ArchiveResult:
    """Plan and re-encode inside the caller's write scope (see module doc).

    ``keep_latest_whole`` holds every version's last snapshot to alpha 1 (stored
    whole, fastest checkout) while older snapshots use ``alpha``. ``remeasure``
    ignores the sizes earlier runs measured and measures everything again.
    ``fail_point(step)`` is called between steps; tests raise from it to prove
    that an interrupted archive leaves every version readable.
    """
    _check_args(alpha, scheme)
    say = progress or (lambda msg: None)
    hit = fail_point or (lambda step: None)

    decoded = _DecodedTensors(con, store)
    m = measure(con, store, progress, decoded=decoded, known=_known_sizes(con, remeasure))
    hashes, info = m.hashes, m.info
    index = {h: i + 1 for i, h in enumerate(hashes)}
    say("planning")
    best, alpha = choose_plan(m, alpha=alpha, scheme=scheme, budget=budget, keep_latest_whole=keep_latest_whole)
    spt_plan = planning.spt(m.graph, scheme)
    mst_plan = planning.mst(m.graph, scheme)
    n_edges = len(m.graph.edges)
    group_keys, refs, stored_before = m.group_keys, m.refs, m.stored_before

    # The encodings the plan asks for, written as they are made; a vertex whose parent is 0 is
    # stored whole. Nothing names the new blobs until the catalog update below.
    bases = {h: (None if best.parent(index[h]) == 0 else hashes[best.parent(index[h]) - 1]) for h in hashes}
    new_manifests: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    blob_size = catalog_objects.blob_sizes(con)
    with PendingBlobs() as pending:   # a failure before the sync removes its temp files
        for h in m.order:
            base = bases[h]
            measured = m.sizes.get((base, h))
            if measured is not None and _keep_current(info[h].manifest, base, measured, blob_size):
                continue
            enc = m.encodings.pop((base, h), None)
            if enc is None:   # not kept, or the plan uses the edge in the other direction
                enc = (_encode_whole(info[h], decoded[h]) if base is None else
                       _encode_delta(info[h], decoded[h], base, decoded[base]))
                if measured is None and delta_base(enc.manifest) == base:
                    # the other direction's size, for the first check above in later runs
                    m.fresh[(base, h)] = _encoded_size(enc)
            if enc.manifest == info[h].manifest or _keep_current(info[h].manifest, delta_base(enc.manifest),
                                                                 _encoded_size(enc), blob_size):
                continue
            new_manifests[h] = enc.manifest
            for name, blob in enc.named_blobs():   # the names the codec computed: not hashed again
                # a full disk is a DiskFullError; the transaction rolls back
                sizes[store.put(blob, pending=pending, blob_hash=name)] = len(blob)
            del enc
        m.encodings.clear()
        _record_sizes(con, m, remeasure)   # in the archive's transaction: kept only if it commits
        hit("encoded")
        say(f"wrote {len(sizes)} blobs for {len(new_manifests)} re-encoded tensors; syncing")
        store.sync(pending)      # all durable (one batch of fsyncs) before any catalog row names them
    hit("blobs-written")

    # Verify every new manifest decodes to its tensor before the catalog changes.
    final = {h: new_manifests.get(h, info[h].manifest) for h in hashes}
    for h in m.order:
        manifest = new_manifests.get(h)
        if manifest is None:
            continue
        t = info[h]
        out = decode_tensor(manifest, store.get, t.nbytes, base=decoded.__getitem__)
        if not tensor_matches(h, out, t.dtype, t.shape):
            raise ArchiveError(f"re-encoding tensor {h[:16]} did not round-trip; nothing was changed — "
                               "report this bug with `dlv fsck` output")
    _check_acyclic(final)
    hit("verified")

    for h, manifest in new_manifests.items():
        tensorstore.set_manifest(con, h, manifest)
    catalog_objects.add_blobs(con, sizes)
    hit("catalog-updated")
    snapshots = tuple(
        SnapshotCost(k[0], refs[k], k[1], float(best.group_cost[i]), float(spt_plan.group_cost[i]))
        for i, k in enumerate(group_keys))
    archive_tables.record_plan(
        con,
        PlanRow(created_at=datetime.now(timezone.utc).replace(tzinfo=None), alpha=alpha, scheme=scheme,
                algorithm=best.algorithm, stored_bytes=int(best.storage), mst_bytes=int(mst_plan.storage),
                spt_bytes=int(spt_plan.storage)),
        [CostRow(s.version_id, s.snap, s.recreation_cost, s.spt_cost) for s in snapshots])
    return ArchiveResult(alpha=alpha, scheme=scheme, algorithm=best.algorithm, n_tensors=len(hashes),
                         n_edges=n_edges, n_reencoded=len(new_manifests), stored_before=stored_before,
                         stored_after=_stored_bytes(con, list(final.values())), mst_bytes=int(mst_plan.storage),
                         spt_bytes=int(spt_plan.storage), snapshots=snapshots, budget=budget,
                         n_measured=m.n_measured, n_known=m.n_known)


#: a tensor whose planned encoding has the same delta base as its current one is rewritten
#: only when that saves at least this fraction of its stored bytes: re-encoding a commit's
#: fast encoding with the tuned one gains ~1%, and rewriting every tensor for that doubled
#: `.dlv` until `dlv gc` ran (the old blobs stay for readers in flight)
MIN_REWRITE_GAIN = 0.03


def _keep_current(current: dict, base: Optional[str], planned_size: int, blob_size: dict[str, int]) -> bool:
    """Whether a tensor keeps its current encoding where the plan stores it in ``planned_size``
    bytes against ``base`` (None: whole)."""
    if delta_base(current) != base:
        return False
    blobs = manifest_blobs(current)
    if any(b not in blob_size for b in blobs):
        return False
    now = sum(int(blob_size[b]) for b in blobs)
    return planned_size > now * (1 - MIN_REWRITE_GAIN)


def _check_acyclic(manifests: dict[str, dict]) -> None:
    for start in manifests:
        seen, h = set(), start
        while h is not None:
            if h in seen:
                raise ArchiveError(f"the plan makes tensor {start[:16]} a delta of itself; nothing was changed — "
                                   "report this bug")
            seen.add(h)
            m = manifests.get(h)
            h = delta_base(m) if m is not None else None


def _stored_bytes(con, manifests: list[dict]) -> int:
    return catalog_objects.total_size(con, sorted({b for m in manifests for b in manifest_blobs(m)}))


def recreation_costs(con) -> dict[str, float]:
    """Each version's recreation cost now (latest snapshot, independent scheme): for every
    tensor, the compressed bytes read plus raw bytes produced along its delta chain."""
    enc = {row.tensor_hash: (row.nbytes, row.manifest) for row in tensorstore.all_tensor_rows(con)}
    blob_size = catalog_objects.blob_sizes(con)
    memo: dict[str, float] = {}

    def cost(h: str) -> float:
        chain = []
        while h is not None and h not in memo and h not in chain:
            chain.append(h)
            h = delta_base(enc.get(h, (0, {}))[1])
        acc = memo.get(h, 0.0) if h is not None else 0.0
        for x in reversed(chain):
            nbytes, manifest = enc.get(x, (0, {}))
            acc += nbytes + sum(int(blob_size.get(b, 0)) for b in manifest_blobs(manifest))
            memo[x] = acc
        return acc

    out: dict[str, float] = {}
    for use in tensorstore.weights_tensors(con):
        out[use.version_id] = out.get(use.version_id, 0.0) + cost(use.tensor_hash)
    return out


def archive(repo, *, alpha: float = 2.0, scheme: str = "independent", budget: Optional[int] = None,
            keep_latest_whole: bool = False, progress: Optional[Callable[[str], None]] = None,
            fail_point: Optional[Callable[[str], None]] = None, remeasure: bool = False) -> ArchiveResult:
    """Run :func:`run_archive` in one write transaction of ``repo``'s catalog."""
    with repo.catalog.write() as con:
        return run_archive(con, repo.store, alpha=alpha, scheme=scheme, budget=budget,
                           keep_latest_whole=keep_latest_whole, progress=progress, fail_point=fail_point,
                           remeasure=remeasure)


#: how long a dry run waits for the write lock to record what it measured: a writer holding it
#: would otherwise hold up the table the user is waiting for
RECORD_LOCK_TIMEOUT_S = 2.0


def archive_dry_run(repo, alphas, *, scheme: str = "independent", keep_latest_whole: bool = False,
                    progress: Optional[Callable[[str], None]] = None, remeasure: bool = False) -> list[dict]:
    """:func:`plan_table` under a read lock: what `dlv archive` would store for each alpha. What it
    measured is then recorded in a short write scope, for the archive that usually follows; that
    is housekeeping: where it cannot be done (the lock held elsewhere, a read-only or full disk)
    the table stands and the archive measures again."""
    for a in alphas:
        _check_args(a, scheme)
    with repo.catalog.read() as con:
        m = measure(con, repo.store, progress, keep=False, known=_known_sizes(con, remeasure))
    rows = _plan_rows(m, alphas, scheme=scheme, keep_latest_whole=keep_latest_whole)
    if m.fresh or remeasure:
        try:
            with repo.catalog.write(lock_timeout_s=RECORD_LOCK_TIMEOUT_S) as con:
                _record_sizes(con, m, remeasure)
        except (ModelhubError, OSError):
            pass
    return rows
