"""The commands of `dlv`, in the order `dlv --help` lists them.

Each name maps to module ``modelhub.cli.cmd_<name>`` defining ``HELP``
(one line), ``configure(parser)`` and ``run(args, ui) -> int``. A command
module that is absent (a capability not installed) is skipped.
"""
COMMANDS: tuple[str, ...] = (
    "init", "add", "status", "reset", "commit", "log", "list", "desc", "diff", "checkout", "copy", "tag", "rm", "mv",
    "stats", "archive", "eval", "query", "repl", "runs", "ui", "data", "remote", "publish", "search", "pull", "clone",
    "gc", "fsck", "config", "completion",
)

#: each command's HELP, so that `dlv --help` lists the commands without importing their modules
#: (only the command that runs is imported); tests/test_startup.py checks it against the modules.
#: A command missing here is listed too: its module is imported for its HELP.
SUMMARIES: dict[str, str] = {
    "init": "create a repository (.dlv/) in PATH (default: the current folder)",
    "add": "stage files to attach to the next commit",
    "status": "show what the next commit takes (staged files), the models' latest versions and warnings",
    "reset": "unstage files staged by `dlv add` (the files in the folder are not touched)",
    "commit": "commit a model version (weights, network, hparams, metrics, staged files)",
    "log": "list versions, newest first (of one model, or all)",
    "list": "list models with their version counts and lineage",
    "desc": "describe a version: network, parameters, hyperparameters, metrics, files",
    "diff": "compare two versions: layers, parameters, hyperparameters, metrics",
    "checkout": "write a version's weights (bit-exact) to a safetensors file or shards, and optionally its files",
    "copy": "start a new model NEWNAME from an existing version (lineage kept)",
    "tag": "name a version with a movable tag (NAME:TAG works wherever a version does); list, delete, history",
    "rm": "remove versions (or whole models with --model); `dlv gc` then reclaims their space",
    "mv": "rename a model (versions keep their ids and numbers; tags move along)",
    "stats": "repository size: logical versus stored bytes, version counts",
    "archive": "re-encode stored weights under a storage plan (deltas between snapshots and versions)",
    "eval": "report the loss and accuracy of a version on a dataset (validation split by default)",
    "query": "run a DQL query (select, slice, construct, evaluate, explain; see docs/DQL.md)",
    "repl": "interactive DQL shell (highlighting, completion, history; end a query with ;)",
    "runs": "list training runs and their state; commit an unfinished one (--commit RUN)",
    "ui": "browse versions, metric curves, diffs, lineage and runs in a local web page (read-only)",
    "data": "add records to a versioned dataset (each add = a new version) and list datasets",
    "remote": "manage remote hubs (folders or s3:// buckets) for publish, search and pull",
    "publish": "publish versions (and their ancestors) to a remote; only what it lacks is sent",
    "search": "run a DQL select query on a remote's catalog (no weights are downloaded)",
    "pull": "fetch a version (with its ancestors) from a remote, keeping ids and lineage",
    "clone": "create a repository from a remote: every version, and the remote as `origin`",
    "gc": "delete blobs and tensors that no version references",
    "fsck": "verify the catalog against the object store and every blob checksum",
    "config": "show or change repository settings (e.g. hotcopy.max_bytes)",
    "completion": "print a shell completion script (commands and options) for bash, zsh or fish",
}
