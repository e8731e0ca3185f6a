"""Catalog schema and migrations.

The schema version lives in ``meta('schema_version')``. ``MIGRATIONS[i]``
upgrades version ``i`` to ``i + 1``; opening a repository applies every
missing migration inside one transaction, so a crash mid-upgrade leaves the
old schema intact. Later capabilities (datasets, materializations, archive
plan, remotes) add their tables as new migrations, never by editing old ones.
"""
from __future__ import annotations

SCHEMA_V1 = """
CREATE TABLE meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- A model is a name; its versions form a DAG through version_parents.
CREATE TABLE models (
    name        VARCHAR PRIMARY KEY,
    created_at  TIMESTAMP NOT NULL
);

-- Network definitions are content-addressed and shared between versions.
CREATE TABLE graphs (
    graph_hash  VARCHAR PRIMARY KEY,
    traced      BOOLEAN NOT NULL,      -- captured with torch.fx (rebuildable) or from the module tree
    rebuildable BOOLEAN NOT NULL,      -- every node maps to a standard torch layer / whitelisted function
    n_layers    INTEGER NOT NULL,      -- call_module nodes
    definition  VARCHAR NOT NULL       -- canonical JSON of the whole graph (modelhub.netdef.Graph)
);

CREATE TABLE graph_nodes (
    graph_hash  VARCHAR NOT NULL,
    idx         INTEGER NOT NULL,      -- topological order
    name        VARCHAR NOT NULL,      -- layer name (module path, e.g. 'features.conv1') or fx node name
    kind        VARCHAR NOT NULL,      -- placeholder | call_module | call_function | call_method | output
    op          VARCHAR NOT NULL,      -- torch class name ('Conv2d'), function ('add') or 'input'/'output'
    attrs       VARCHAR NOT NULL,      -- JSON object of constructor attributes
    n_params    BIGINT  NOT NULL,
    PRIMARY KEY (graph_hash, idx)
);

CREATE TABLE graph_edges (
    graph_hash  VARCHAR NOT NULL,
    src         INTEGER NOT NULL,      -- graph_nodes.idx
    dst         INTEGER NOT NULL
);

CREATE TABLE versions (
    id          VARCHAR PRIMARY KEY,   -- 64 hex chars (sha256 of the version's content)
    model       VARCHAR NOT NULL,
    seq         INTEGER NOT NULL,      -- 1-based position within the model: NAME@seq
    message     VARCHAR NOT NULL,
    author      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    graph_hash  VARCHAR,               -- NULL when only a state dict was committed
    n_params    BIGINT NOT NULL,
    n_tensors   INTEGER NOT NULL,
    logical_bytes BIGINT NOT NULL,     -- raw bytes of all tensors of the latest snapshot
    weights_meta VARCHAR,              -- JSON: safetensors __metadata__ to reproduce the file
    UNIQUE (model, seq)
);

CREATE TABLE version_parents (
    version_id  VARCHAR NOT NULL,
    parent_id   VARCHAR NOT NULL,
    ord         INTEGER NOT NULL,
    PRIMARY KEY (version_id, ord)
);

-- Hyperparameters: value_json is authoritative; value_num / value_str are
-- typed projections so DQL can compare without parsing JSON.
CREATE TABLE hparams (
    version_id  VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    value_json  VARCHAR NOT NULL,
    value_num   DOUBLE,
    value_str   VARCHAR,
    PRIMARY KEY (version_id, key)
);

CREATE TABLE metrics (
    version_id  VARCHAR NOT NULL,
    name        VARCHAR NOT NULL,
    step        BIGINT NOT NULL,
    value       DOUBLE NOT NULL,
    PRIMARY KEY (version_id, name, step)
);

-- A version holds one or more snapshots (checkpoints); the last is "the" weights.
CREATE TABLE snapshots (
    version_id  VARCHAR NOT NULL,
    snap        INTEGER NOT NULL,      -- 0-based; max(snap) is the version's weights
    step        BIGINT,                -- training step/epoch, if known
    label       VARCHAR,
    PRIMARY KEY (version_id, snap)
);

-- Tensor content, stored once per distinct (dtype, shape, bytes).
CREATE TABLE tensor_data (
    tensor_hash VARCHAR PRIMARY KEY,   -- over dtype, shape and raw bytes: blake3-320 (80 hex) or blake2b-256 (64)
    dtype       VARCHAR NOT NULL,      -- 'float32', 'bfloat16', 'int64', ...
    shape       VARCHAR NOT NULL,      -- JSON list
    nbytes      BIGINT NOT NULL,
    encoding    VARCHAR NOT NULL       -- JSON manifest understood by modelhub.storage (codec, segment blobs, delta base)
);

CREATE TABLE snapshot_tensors (
    version_id  VARCHAR NOT NULL,
    snap        INTEGER NOT NULL,
    ord         INTEGER NOT NULL,      -- order of the tensor in the committed state dict
    name        VARCHAR NOT NULL,
    tensor_hash VARCHAR NOT NULL,
    PRIMARY KEY (version_id, snap, name)
);

-- Every blob referenced by the catalog (tensor segments, attached files).
CREATE TABLE objects (
    blob_hash   VARCHAR PRIMARY KEY,
    size        BIGINT NOT NULL
);

CREATE TABLE files (
    version_id  VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,      -- relative, '/'-separated
    blob_hash   VARCHAR NOT NULL,
    size        BIGINT NOT NULL,
    PRIMARY KEY (version_id, path)
);

CREATE TABLE staged (
    path        VARCHAR PRIMARY KEY,
    blob_hash   VARCHAR NOT NULL,
    size        BIGINT NOT NULL,
    staged_at   TIMESTAMP NOT NULL
);

CREATE TABLE saved_queries (
    name        VARCHAR PRIMARY KEY,
    text        VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

-- archive ---------------------------------------------------------------
-- Storage plans chosen by `dlv archive` (modelhub/repo/archive.py). The plan
-- itself lives in tensor_data.encoding (each delta manifest names its base);
-- these tables record what was chosen and each snapshot's recreation cost.
CREATE TABLE archive_plans (
    plan_id       INTEGER PRIMARY KEY,
    created_at    TIMESTAMP NOT NULL,
    alpha         DOUBLE NOT NULL,
    scheme        VARCHAR NOT NULL,    -- independent | parallel
    algorithm     VARCHAR NOT NULL,    -- mst | spt | pas-mt | pas-pt
    stored_bytes  BIGINT NOT NULL,     -- tensor blobs under the plan
    mst_bytes     BIGINT NOT NULL,     -- storage lower bound (no recreation constraint)
    spt_bytes     BIGINT NOT NULL      -- storage of the all-materialized plan
);

CREATE TABLE archive_costs (
    plan_id         INTEGER NOT NULL,
    version_id      VARCHAR NOT NULL,
    snap            INTEGER NOT NULL,
    recreation_cost DOUBLE NOT NULL,   -- bytes read + bytes produced along every delta chain
    spt_cost        DOUBLE NOT NULL,   -- the same when every tensor is stored whole
    PRIMARY KEY (plan_id, version_id, snap)
);
-- end archive -----------------------------------------------------------

-- remote ----------------------------------------------------------------
-- Remote hubs known to this repository (`dlv remote add`, modelhub/remote).
CREATE TABLE remotes (
    name        VARCHAR PRIMARY KEY,
    url         VARCHAR NOT NULL,      -- absolute folder path or s3://bucket/prefix
    config      VARCHAR NOT NULL       -- JSON object: fsspec storage options (endpoint_url, ...)
);
-- end remote ------------------------------------------------------------

-- engine ----------------------------------------------------------------
-- Versioned datasets (modelhub/repo/datasets.py). Records are append-only:
-- `dlv data add` to an existing name appends records as a new version, so
-- record i never changes and stored prefix outputs stay valid.
CREATE TABLE datasets (
    name          VARCHAR PRIMARY KEY,
    uid           VARCHAR NOT NULL,    -- identity of the record sequence (feature-store keys, split salt)
    record_shape  VARCHAR NOT NULL,    -- JSON list: shape of one input record
    x_dtype       VARCHAR NOT NULL,
    y_dtype       VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL
);

CREATE TABLE dataset_versions (
    name          VARCHAR NOT NULL,
    version       INTEGER NOT NULL,    -- 1-based: NAME@version
    n_records     BIGINT NOT NULL,     -- records [0, n_records) belong to this version
    message       VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (name, version)
);

-- Record ranges as .npy blobs in the object store (one row per array part).
CREATE TABLE dataset_chunks (
    name          VARCHAR NOT NULL,
    start_record  BIGINT NOT NULL,
    end_record    BIGINT NOT NULL,
    part          VARCHAR NOT NULL,    -- 'x' (inputs) | 'y' (labels)
    blob_hash     VARCHAR NOT NULL,    -- keeps the blob alive for gc/fsck
    size          BIGINT NOT NULL,
    PRIMARY KEY (name, start_record, part)
);

-- Materialized frozen-prefix outputs under .dlv/features (modelhub/engine/features.py).
CREATE TABLE materializations (
    prefix_hash   VARCHAR NOT NULL,    -- content hash of the frozen prefix (ops, attrs, weights, preprocessing)
    dataset_uid   VARCHAR NOT NULL,
    dtype         VARCHAR NOT NULL,    -- float32, or float16 when asked
    start_record  BIGINT NOT NULL,
    end_record    BIGINT NOT NULL,
    path          VARCHAR NOT NULL,    -- relative to .dlv/features
    nbytes        BIGINT NOT NULL,
    checksum      VARCHAR NOT NULL,    -- blake2b-256 of the chunk file
    created_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (prefix_hash, dataset_uid, dtype, start_record)
);
-- end engine ------------------------------------------------------------
"""

# runs ------------------------------------------------------------------
# Training runs tracked as they happen (modelhub/repo/runs.py, docs/RUNS.md).
# A run writes here while it trains (metrics flushed every few seconds, each
# snapshot's tensors as soon as it is taken); at exit one transaction commits
# a version from it and records the status. A run whose process died keeps
# status 'running' with a stale heartbeat: it can be resumed or committed.
SCHEMA_V2_RUNS = """
CREATE TABLE runs (
    id            VARCHAR PRIMARY KEY, -- 32 hex chars (random)
    model         VARCHAR NOT NULL,    -- the model the run commits a version of
    status        VARCHAR NOT NULL,    -- running | finished | failed
    status_message VARCHAR,            -- why a failed run failed (the exception)
    parents       VARCHAR,             -- JSON list of version ids; NULL: the model's latest at commit time
    hparams       VARCHAR NOT NULL,    -- JSON object
    environment   VARCHAR NOT NULL,    -- JSON object: python, torch, device, git commit, host, argv
    graph         VARCHAR,             -- canonical JSON of the network (modelhub.netdef.Graph), when known
    message       VARCHAR,             -- commit message chosen at start (NULL: one is made at exit)
    host          VARCHAR NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    heartbeat_at  TIMESTAMP NOT NULL,  -- last time the run wrote here
    ended_at      TIMESTAMP,
    version_id    VARCHAR              -- the version committed from the run
);

CREATE TABLE run_metrics (
    run_id      VARCHAR NOT NULL,
    name        VARCHAR NOT NULL,
    step        BIGINT NOT NULL,
    value       DOUBLE NOT NULL,
    PRIMARY KEY (run_id, name, step)
);

CREATE TABLE run_snapshots (
    run_id      VARCHAR NOT NULL,
    snap        INTEGER NOT NULL,      -- 0-based, in the order taken
    step        BIGINT,
    label       VARCHAR,
    taken_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, snap)
);

-- Any column named tensor_hash keeps its tensor alive for gc (repo/liveness.py).
CREATE TABLE run_snapshot_tensors (
    run_id      VARCHAR NOT NULL,
    snap        INTEGER NOT NULL,
    ord         INTEGER NOT NULL,
    name        VARCHAR NOT NULL,
    tensor_hash VARCHAR NOT NULL,
    PRIMARY KEY (run_id, snap, name)
);
"""
# end runs --------------------------------------------------------------

SCHEMA_V3_TAGS = """
-- Tags (aliases): NAME:TAG names a version of model NAME, e.g. resnet:production (modelhub/catalog/tags.py).
CREATE TABLE tags (
    model       VARCHAR NOT NULL,
    tag         VARCHAR NOT NULL,
    version_id  VARCHAR NOT NULL,
    PRIMARY KEY (model, tag)
);

-- Every move of a tag, oldest first: who pointed it where, and when (version_id NULL: deleted).
CREATE TABLE tag_history (
    model       VARCHAR NOT NULL,
    tag         VARCHAR NOT NULL,
    version_id  VARCHAR,
    author      VARCHAR NOT NULL,
    moved_at    TIMESTAMP NOT NULL,
    seq         INTEGER NOT NULL,      -- 1-based per (model, tag)
    PRIMARY KEY (model, tag, seq)
);
"""

SCHEMA_V4_TENSOR_HASH = """
-- The hash that makes new tensor ids (storage/tensors.py). A repository created before BLAKE3
-- keeps making BLAKE2b-256 ids, so a tensor it committed before still deduplicates; a new
-- catalog is created with 'blake3-320' (Catalog.create). Ids of both kinds are verified by
-- their length, so repositories and remotes may hold both.
INSERT OR IGNORE INTO meta VALUES ('tensor_hash', 'blake2b-256');
"""

SCHEMA_V5_ENCODING_SIZES = """
-- What `dlv archive` measured by encoding (modelhub/catalog/encoding_sizes.py): a tensor whole
-- (base '') or as a delta against base; bytes NULL where no delta beats storing it
-- whole. A cache, keyed by the encoder that measured (storage.tensors.encoder_id): an archive
-- plans with these sizes and measures only what is new; it encodes again what it writes.
-- The columns are not called tensor_hash: a table with that column keeps its tensors alive
-- (catalog/tensors.py: referenced_hashes), and a measurement must not.
CREATE TABLE encoding_sizes (
    tensor      VARCHAR NOT NULL,
    base        VARCHAR NOT NULL,     -- '' = the tensor stored whole
    encoder     VARCHAR NOT NULL,
    bytes       BIGINT,
    PRIMARY KEY (tensor, base, encoder)
);
"""

#: MIGRATIONS[i] takes schema version i to i + 1 (version 0 = empty database).
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2_RUNS, SCHEMA_V3_TAGS, SCHEMA_V4_TENSOR_HASH, SCHEMA_V5_ENCODING_SIZES]

SCHEMA_VERSION = len(MIGRATIONS)
