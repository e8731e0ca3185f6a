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
    p.add_argument("--bandwidth", type=float, metavar="MBIT/S", default=None,
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
        return _show_progressive(repo_of(args).eval(args.ref, data=args.data, split=args.split, config=args.config,
                                              progressive=True, top_k=args.top, compare=not args.no_compare,
                                              backend=args.backend,
                                              use_stored_features=not args.no_stored_features,
                                              progress=ui.progress()), ui)
    report = repo_of(args).eval(args.ref, data=args.data, split=args.split, loss=args.loss, config=args.config,
                                backend=args.backend, ray_address=args.ray_address, progress=ui.progress())
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    ui.kv([("version", report.version), ("dataset", report.dataset), ("split", f"{report.split} ({report.n_records} records)")]
          + [(k, f"{v:.4f}") for k, v in report.metrics.items()])
    return 0


def _show_progressive(report, ui) -> int:
    """A ProgressiveReport: what was read, per refinement step, and how many records it decided."""
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    pairs = [("version", report.version), ("records", str(report.n_records)), ("top", str(report.top_k)),
             ("bytes read", f"{report.bytes_read} / {report.bytes_total} ({100 * report.bytes_fraction:.1f}%)"),
             ("bytes per record", f"{100 * report.record_bytes_fraction:.1f}% on average"),
             ("decided exactly", f"{report.exact_records} records (full precision)"),
             ("time", f"{report.time_s:.3f}s"),
             ("start", f"node {report.head_from} (exact features)" if report.head_from else "raw inputs")]
    if report.stored_features:
        pairs.append(("features from the store", f"yes ({report.stored_features_note}; "
                                                 f"{report.feature_bytes_read} bytes of features read)"))
    elif report.stored_features_note is not None:
        pairs.append(("features from the store", f"no ({report.stored_features_note})"))
    if report.full_time_s is not None:
        pairs.append(("full precision", f"{report.full_time_s:.3f}s, agreement {100 * (report.agreement or 0):.1f}%"))
    if report.fallback:
        pairs.append(("fallback", report.fallback))
    if report.exact_only:
        pairs.append(("read whole", ", ".join(report.exact_only)))
    ui.kv(pairs)
    ui.table(["step", "segments", "bytes %", "undecided", "certified", "cumulative %"],
             [[s.step, f"{s.mean_segments:.2f}", f"{100 * s.bytes_fraction:.1f}", s.records, s.certified,
               f"{100 * s.certified_fraction:.1f}"] for s in report.levels], align_right=(0, 1, 2, 3, 4, 5))
    return 0


def _run_selection(args, ui) -> int:
    from .selection_view import selection_progress, show_selection
    if args.bandwidth is not None and (args.bandwidth <= 0 or args.latency_ms < 0):
        raise InputError("--bandwidth must be positive and --latency-ms not negative")
    report = repo_of(args).eval_selection(args.select, args.ref, data=args.data, remote=args.remote,
                                          split=args.split, config=args.config, top_k=args.top,
                                          compare=not args.no_compare, link_mbps=args.bandwidth,
                                          link_latency_ms=args.latency_ms,
                                          progress=selection_progress(ui), snapshots=args.snapshots)
    return show_selection(report, ui)
