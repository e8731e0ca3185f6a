"""`dlv tag REF TAG`, `dlv tag --list`, `dlv tag -d NAME:TAG`, `dlv tag --history`."""
from __future__ import annotations

from ..errors import InputError
from .common import repo_of

HELP = "name a version with a movable tag (NAME:TAG works wherever a version does); list, delete, history"
DESCRIPTION = """Examples:
  dlv tag resnet@3 production     # resnet:production now names resnet@3 (moved if it existed)
  dlv checkout resnet:production
  dlv tag --list [resnet]
  dlv tag --history [resnet]      # who moved which tag where, and when
  dlv tag -d resnet:production"""


def configure(p) -> None:
    p.add_argument("args", nargs="*", metavar="ARG", help="REF TAG to set; a model name with --list/--history")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-l", "--list", action="store_true", help="list tags (of one model)")
    mode.add_argument("-d", "--delete", metavar="NAME:TAG", help="delete a tag (its history keeps the deletion)")
    mode.add_argument("--history", action="store_true", help="every move of the tags (of one model), oldest first")
    p.add_argument("--author", help="who moves the tag (default: $DLV_AUTHOR or the login name)")


def run(args, ui) -> int:
    repo = repo_of(args)
    if args.delete:
        if args.args:
            raise InputError("`dlv tag -d NAME:TAG` takes no other arguments")
        change = repo.untag(args.delete, author=args.author)
        return _print_change(change, ui)
    if args.list or args.history or not args.args:
        if len(args.args) > 1:
            raise InputError("name at most one model, e.g. `dlv tag --list resnet`")
        model = args.args[0] if args.args else None
        if args.history:
            moves = repo.tag_history(model)
            if ui.json_mode:
                ui.json([m.to_dict() for m in moves])
            else:
                ui.table(["tag", "version", "author", "moved"],
                         [(f"{m.model}:{m.tag}", m.ref or "(deleted)", m.author, m.moved_at) for m in moves])
            return 0
        tags = repo.tags(model)
        if ui.json_mode:
            ui.json([t.to_dict() | {"name": t.name} for t in tags])
        else:
            ui.table(["tag", "version", "id"], [(t.name, t.ref, t.id[:12]) for t in tags])
        return 0
    if len(args.args) != 2:
        raise InputError("give a version and a tag, e.g. `dlv tag resnet@3 production`")
    return _print_change(repo.tag(args.args[0], args.args[1], author=args.author), ui)


def _print_change(change, ui) -> int:
    if ui.json_mode:
        ui.json(change.to_dict())
    elif change.current is None:
        ui.print(f"deleted tag {change.model}:{change.tag} (was {change.previous})")
    elif change.previous is None:
        ui.print(f"tagged {change.current} as {change.model}:{change.tag}")
    elif change.previous == change.current:
        ui.print(f"{change.model}:{change.tag} already names {change.current}")
    else:
        ui.print(f"moved {change.model}:{change.tag} from {change.previous} to {change.current}")
    return 0
