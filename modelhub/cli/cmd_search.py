"""`dlv search REMOTE "DQL"`."""
from __future__ import annotations

from ..remote import open_remote, search
from .common import repo_of, show_result_table

HELP = "run a DQL select query on a remote's catalog (no weights are downloaded)"
DESCRIPTION = """Examples:
  dlv search hub 'select m where m.name like "resnet%" and m.metrics["acc"] > 0.9'
  dlv search hub 'select m where m["conv*"].next has POOL("MAX")'
Then fetch a result with `dlv pull hub ID`."""


def configure(p) -> None:
    p.add_argument("remote", help="remote name (see `dlv remote list`), folder path or s3:// URL")
    p.add_argument("text", help="the DQL select statement (quote it for the shell)")


def run(args, ui) -> int:
    repo = repo_of(args)
    result = search(open_remote(repo, args.remote), args.text, progress=ui.progress())
    if ui.json_mode:
        ui.print(result.to_json())
    elif result.kind == "explain":
        ui.print(result.text)
    else:
        show_result_table(ui, result)
    return 0
