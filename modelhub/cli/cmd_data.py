"""`dlv data add NAME FILES...` / `dlv data list` / `dlv data log NAME`: versioned datasets."""
from __future__ import annotations

import argparse

from .common import repo_of

HELP = "add records to a versioned dataset (each add = a new version) and list datasets"
DESCRIPTION = """Examples:
  dlv data add digits cycle1.npz            # arrays x (inputs) and y (labels): digits@1
  dlv data add digits cycle2.npz -m "new labels"   # appends records: digits@2
  dlv data add photos images/               # a folder of PNG/PGM/.npy images with labels.csv
  dlv data add digits x.npy y.npy           # inputs then labels
  dlv data list --json
The train/validation split hashes record ids, so it is stable as data grows."""


def configure(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    add = sub.add_parser("add", help="append records (a .npz, two .npy, a .safetensors or an image folder)")
    add.add_argument("name", help="dataset name")
    add.add_argument("files", nargs="+", help="input files")
    add.add_argument("-m", "--message", default="", help="a note for this dataset version")
    lst = sub.add_parser("list", help="datasets with their latest version")
    log = sub.add_parser("log", help="the versions of one dataset")
    log.add_argument("name", help="dataset name")
    for s in (add, lst, log):
        s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print machine-readable JSON")
        # accepted after the action's arguments too (`dlv data add NAME FILE --repo DIR`)
        s.add_argument("--repo", metavar="PATH", default=argparse.SUPPRESS,
                       help="repository folder (default: nearest .dlv above the current folder)")


def run(args, ui) -> int:
    ui.json_mode = bool(getattr(args, "json", False))
    repo = repo_of(args)
    if args.action == "add":
        v = repo.data_add(args.name, args.files, message=args.message)
        if ui.json_mode:
            ui.json(v.to_dict())
        else:
            ui.print(f"{v.ref}: added {v.added} record(s), {v.n_records} in all")
        return 0
    if args.action == "log":
        versions = repo.dataset_log(args.name)
    else:
        versions = repo.datasets()
    if ui.json_mode:
        ui.json([v.to_dict() for v in versions])
        return 0
    if not versions:
        ui.print("no datasets yet; add one with `dlv data add NAME FILES`")
        return 0
    ui.table(["dataset", "records", "added", "record shape", "created", "message"],
             [(v.ref, v.n_records, v.added, "x".join(map(str, v.record_shape)) or "scalar", v.created_at, v.message)
              for v in versions], align_right=(1, 2))
    return 0
