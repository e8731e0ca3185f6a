"""`dlv eval REF --data NAME[@V]`: loss and accuracy of one version on a dataset."""
from __future__ import annotations

from ..errors import InputError
from .common import repo_of

HELP = "report the loss and accuracy of a version on a dataset (validation split by default)"
DESCRIPTION = """Examples:
  dlv eval lenet --data digits            # latest lenet on the latest digits, validation split
  dlv eval lenet@3 --data digits@1 --split all --json
  dlv eval lenet --data digits --config eval.toml   # its normalize/val_fraction/loss settings
  dlv eval lenet --data digits --progressive        # exact labels; heads over stored features when present
  dlv eval --select 'select m where m.name == "lenet"' --data digits --progressive --remote hub
                                                    # every lenet version, weights read from remote hub"""


def configure(p) -> None:
    p.add_argument("ref", nargs="*", help="version: id prefix, NAME or NAME@N (several, or none with --select, "
                                          "with --progressive)")
    p.add_argument("--data", required=True, metavar="NAME[@V]", help="dataset (version) to evaluate on")
    p.add_argument("--split", choices=("val", "train", "all"), default="val", help="records to use (default val)")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy")
    p.add_argument("--config", default=None, help="an evaluate config (TOML/JSON) for preprocessing and the split")
    p.add_argument("--progressive", action="store_true",
                   help="exact top-k labels reading high-order weight bytes first (docs/PROGRESSIVE.md)")
    p.add_argument("--top", type=int, default=1, metavar="K", help="with --progressive: top-K labels (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default=None,
                   help="where the forward passes run (default: the config's backend, else DLV_BACKEND, else local)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --backend ray: ray://HOST:10001 or HOST:6379 (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--no-compare", action="store_true",
                   help="with --progressive: skip the timed full-precision comparison")
    p.add_argument("--no-stored-features", action="store_true",
                   help="with --progressive: start from the raw inputs even when the feature store holds "
                        "exact features of a frozen prefix")
    p.add_argument("--select", metavar="QUERY", default=None,
                   help="with --progressive: evaluate every version a DQL select returns (with the refs given)")
    p.add_argument("--remote", metavar="NAME", default=None,
                   help="with --progressive: read the weights from this remote without pulling them")
    p.add_argument("--snapshots", action="store_true",
                   help="with --progressive: every stored snapshot of each version (a run's checkpoints)")
    p.add_argument("--bandwidth", type=float, metavar="MB/S", default=None,
                   help="with --select/--remote: also report the fetches' time over a link of this throughput")
    p.add_argument("--latency-ms", type=float, default=20.0, metavar="MS",
                   help="with --bandwidth: the link's latency per request (default 20)")


def run(args, ui) -> int:
    many = args.select is not None or args.remote is not None or len(args.ref) > 1 or args.snapshots
    if many and not args.progressive:
        raise InputError("--select, --remote, --snapshots and several refs evaluate progressively: "
                         "add --progressive")
    if many:
        return _run_selection(args, ui)
    if len(args.ref) != 1:
        raise InputError("give the version to evaluate (NAME, NAME@N or an id prefix), or --select with "
                         "--progressive")
    args.ref = args.ref[0]
    if args.progressive:
        from ..progressive.render import show_report
        return show_report(repo_of(args).eval(args.ref, data=args.data, split=args.split, config=args.config,
                                              progressive=True, top_k=args.top, compare=not args.no_compare,
                                              backend=args.backend,
                                              use_stored_features=not args.no_stored_features), ui)
    report = repo_of(args).eval(args.ref, data=args.data, split=args.split, loss=args.loss, config=args.config,
                                backend=args.backend, ray_address=args.ray_address)
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    ui.kv([("version", report.version), ("dataset", report.dataset), ("split", f"{report.split} ({report.n_records} records)")]
          + [(k, f"{v:.4f}") for k, v in report.metrics.items()])
    return 0


def _run_selection(args, ui) -> int:
    from ..progressive.fetch import BandwidthModel
    from ..progressive.render import show_selection, terminal_progress
    bandwidth = None
    if args.bandwidth is not None:
        if args.bandwidth <= 0 or args.latency_ms < 0:
            raise InputError("--bandwidth must be positive and --latency-ms not negative")
        bandwidth = BandwidthModel(args.latency_ms / 1000.0, args.bandwidth * 1e6)
    report = repo_of(args).eval_selection(args.select, args.ref, data=args.data, remote=args.remote,
                                          split=args.split, config=args.config, top_k=args.top,
                                          compare=not args.no_compare, bandwidth=bandwidth,
                                          progress=terminal_progress(ui), snapshots=args.snapshots)
    return show_selection(report, ui)
