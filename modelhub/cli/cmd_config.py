from __future__ import annotations

from ..errors import InputError
from .common import repo_of

HELP = "show or change repository settings (e.g. hotcopy.max_bytes)"
DESCRIPTION = (
    "`dlv config` lists every setting with its value; `dlv config NAME` shows one; `dlv config NAME VALUE` "
    "sets it; `dlv config --unset NAME` restores the default. Settings: hotcopy.max_bytes (default 1G) caps the "
    "disk that hot copies (the latest versions kept uncompressed for fast checkout) take in all; a version larger "
    "than the cap gets none, 0 turns them off, none removes the cap."
)


def configure(p) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("value", nargs="?", metavar="VALUE")
    p.add_argument("--unset", action="store_true", help="restore NAME's default")


def run(args, ui) -> int:
    repo = repo_of(args)
    if args.unset or args.value is not None:
        if args.name is None:
            raise InputError("name the setting to change, e.g. `dlv config hotcopy.max_bytes 2G`")
        if args.unset and args.value is not None:
            raise InputError("give either a VALUE or --unset, not both")
        values = [repo.set_config(args.name, None if args.unset else args.value)]
    else:
        values = repo.config(args.name)
    if ui.json_mode:
        ui.json({v.name: v.to_dict() for v in values})
    elif args.name is not None and len(values) == 1 and args.value is None and not args.unset:
        ui.print(values[0].value)
    else:
        ui.table(["setting", "value", ""], [(v.name, v.value, "(default)" if v.is_default else "") for v in values])
    return 0
