"""`dlv query "DQL" [--json] [--commit] [--save NAME]`."""
from __future__ import annotations

import json

from .common import parse_size, repo_of, show_result_table

HELP = "run a DQL query (select, slice, construct, evaluate, explain; see docs/DQL.md)"
DESCRIPTION = """Examples:
  dlv query 'select m where m.name like "alexnet%" and m.metrics["acc"] > 0.9 order by m.creation_time desc limit 5'
  dlv query 'explain select m where m["conv[1,3,5]"].next has POOL("MAX")'
  dlv query --commit 'slice m2 from m1 where m1.name == "lenet" mutate m2.input = m1["conv1"] and m2.output = m1["fc1"]'
  dlv query --save best 'select m where max(m.metrics["acc"]) > 0.9'"""


def configure(p) -> None:
    p.add_argument("text", help="the DQL statement (quote it for the shell)")
    p.add_argument("--commit", action="store_true",
                   help="store slice/construct results as new versions (lineage and weights carried over)")
    p.add_argument("--name", default=None, help="model name for committed results (default: SOURCE-slice/-construct)")
    p.add_argument("--storage-budget", metavar="SIZE", default=None,
                   help="evaluate: disk for materialized frozen-layer features, e.g. 500M (default: the config's)")
    p.add_argument("--backend", choices=("local", "ray"), default=None,
                   help="evaluate: where extraction and training run (default: the config's backend, "
                        "else DLV_BACKEND, else local); ray needs pip install 'modelhub[ray]'")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --backend ray: ray://HOST:10001 or HOST:6379 (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--save", metavar="NAME", default=None,
                   help="save the select query under NAME (then use it as: from \"NAME\")")


def run(args, ui) -> int:
    repo = repo_of(args)
    text = args.text
    if args.save:
        text = f"save query {json.dumps(args.save)} as {text}"
    progress = ui.progress_messages()
    budget = parse_size(args.storage_budget) if args.storage_budget is not None else None
    result = repo.query(text, commit=args.commit, name=args.name, progress=progress, storage_budget=budget,
                        backend=args.backend, ray_address=args.ray_address)
    if ui.json_mode:
        ui.print(result.to_json())
        return 0
    if result.kind == "explain":
        ui.print(result.text)
        return 0
    if result.columns:
        show_result_table(ui, result)
    if result.text and result.kind != "select":
        ui.print(result.text)
    return 0
