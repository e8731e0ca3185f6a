"""`dlv ui`: browse the repository in a web browser (read-only)."""
from __future__ import annotations

from ..errors import InputError

HELP = "browse versions, metric curves, diffs, lineage and runs in a local web page (read-only)"
DESCRIPTION = """Serve a read-only web view of the repository on this machine.

examples:
  dlv ui                      http://127.0.0.1:8765/
  dlv ui --port 9000
  dlv ui --host 0.0.0.0       reachable from other machines: anyone who can reach the port reads the repository"""


def configure(p) -> None:
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only); another address is warned about")


def run(args, ui) -> int:
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a TCP port; choose one from 1 to 65535 (or 0 for a free one)")
    try:
        from ..ui.server import is_loopback, serve
    except ImportError as exc:
        raise InputError(f"dlv ui needs the 'ui' extra ({exc.name} is not installed); "
                         "run: pip install 'modelhub[ui]'") from None
    if not is_loopback(args.host):
        ui.warn(f"warning: serving on {args.host}: anyone who can reach port {args.port} of this machine can read "
                "the repository (models, metrics, files); there is no login. Use the default 127.0.0.1 unless "
                "you mean it.")
    serve(args.repo, host=args.host, port=args.port, announce=ui.warn)
    return 0
