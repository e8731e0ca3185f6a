"""`dlv remote add NAME URL | list | remove NAME`."""
from __future__ import annotations

from ..errors import InputError
from ..remote import add_remote, list_remotes, remove_remote
from .common import parse_pairs, parse_value, repo_of

HELP = "manage remote hubs (folders or s3:// buckets) for publish, search and pull"
DESCRIPTION = """Examples:
  dlv remote add hub /mnt/shared/modelhub
  dlv remote add s3hub s3://my-bucket/models --endpoint-url http://127.0.0.1:9000
  dlv remote list
  dlv remote remove hub
S3 credentials come from the usual AWS environment variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION), a
profile (AWS_PROFILE) or the AWS credential chain; they are never stored in the
catalog (--option key=/secret=/token= is refused)."""


def configure(p) -> None:
    p.add_argument("action", choices=["add", "list", "remove"], help="what to do")
    p.add_argument("args", nargs="*", metavar="ARG", help="add: NAME URL; remove: NAME")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint (e.g. MinIO, moto), stored with the remote")
    p.add_argument("--region", default=None, help="S3 region, stored with the remote")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="fsspec/s3fs storage option stored with the remote (repeatable)")


def run(args, ui) -> int:
    repo = repo_of(args)
    want = {"add": 2, "list": 0, "remove": 1}[args.action]
    if len(args.args) != want:
        usage = {"add": "dlv remote add NAME URL", "list": "dlv remote list", "remove": "dlv remote remove NAME"}
        raise InputError(f"`dlv remote {args.action}` takes {want} argument(s); usage: {usage[args.action]}")
    if args.action == "add":
        options = {k: parse_value(v) for k, v in parse_pairs(args.option, "option")}
        if args.endpoint_url:
            options["endpoint_url"] = args.endpoint_url
        if args.region:
            options["region"] = args.region
        cfg = add_remote(repo, args.args[0], args.args[1], options)
        if ui.json_mode:
            ui.json(cfg.to_dict())
        else:
            ui.print(f"added remote {cfg.name} -> {cfg.url}")
        return 0
    if args.action == "remove":
        cfg = remove_remote(repo, args.args[0])
        if ui.json_mode:
            ui.json(cfg.to_dict())
        else:
            ui.print(f"removed remote {cfg.name} ({cfg.url}); nothing on the remote was deleted")
        return 0
    remotes = list_remotes(repo)
    if ui.json_mode:
        ui.json([r.to_dict() for r in remotes])
        return 0
    ui.table(["name", "url", "options"], [(r.name, r.url, r.masked() or "-") for r in remotes])
    return 0
