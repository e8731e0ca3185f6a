"""`dlv ui`: a local, read-only web application over one repository (aiohttp + Jinja2).

Every route is a GET; the catalog is read in one worker thread (DuckDB scopes
and the repository lock are blocking) so a page waiting for a writer's lock
never stalls the server. Assets (uPlot, the page script, the style sheet) are
served from the package: nothing is fetched from the network.

Bound to 127.0.0.1 by default. Then requests must also name a loopback host
in their Host header: a web page elsewhere cannot read the repository by
pointing its own host name at 127.0.0.1 (DNS rebinding).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from .. import __version__
from ..errors import InputError, ModelhubError, RefError
from ..sizes import human_bytes
from . import lineage as lineage_svg
from .reader import RepoReader

HERE = Path(__file__).parent
DEFAULT_PORT = 8765
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
READER = web.AppKey("reader", RepoReader)
POOL = web.AppKey("pool", ThreadPoolExecutor)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(reader: RepoReader, *, loopback_only: bool = True) -> web.Application:
    app = web.Application(middlewares=[_guard(loopback_only)])
    app[READER] = reader
    app[POOL] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlv-ui-catalog")
    app[TEMPLATES] = _templates()
    app.on_cleanup.append(_shutdown_pool)
    app.router.add_get("/", index)
    app.router.add_get("/version/{ref}", version)
    app.router.add_get("/compare", compare)
    app.router.add_get("/diff", diff)
    app.router.add_get("/lineage", lineage_index)
    app.router.add_get("/lineage/{model}", lineage)
    app.router.add_get("/stats", stats)
    app.router.add_get("/runs", runs)
    app.router.add_get("/run/{id}", run)
    app.router.add_static("/static/", HERE / "static", name="static", show_index=False, append_version=True)
    return app


async def _shutdown_pool(app: web.Application) -> None:
    app[POOL].shutdown(wait=False)


def _guard(loopback_only: bool):
    @web.middleware
    async def guard(request: web.Request, handler):
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], text="the dlv UI is read-only")
        host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") \
            else (request.host or "").split("]")[0] + "]"
        if loopback_only and not is_loopback(host):
            raise web.HTTPForbidden(text=f"host {request.host!r} refused: this server answers only to "
                                         "localhost / 127.0.0.1 (start it with --host to serve other names)")
        try:
            response = await handler(request)
        except (RefError, ModelhubError) as exc:
            status = 404 if isinstance(exc, RefError) else 400
            response = _page(request, "error.html", status=status, title="error", message=str(exc))
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response
    return guard


async def _read(request: web.Request, fn: Callable, *args) -> Any:
    """Run a blocking catalog read on the app's catalog thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[POOL], partial(fn, *args))


def _page(request: web.Request, template: str, *, status: int = 200, **context) -> web.Response:
    env = request.app[TEMPLATES]
    html = env.get_template(template).render(repo_root=str(request.app[READER].root), version=__version__,
                                             static=lambda name: _static_url(request, name), **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _static_url(request: web.Request, name: str) -> str:
    return str(request.app.router["static"].url_for(filename=name))


# -- pages ----------------------------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    text = request.query.get("q", "")
    outcome = await _read(request, request.app[READER].versions, text)
    metric_names = sorted({m for r in outcome.rows for m in r.metrics})
    return _page(request, "index.html", title="versions", outcome=outcome, metric_names=metric_names[:8],
                 n_hidden_metrics=max(0, len(metric_names) - 8))


async def version(request: web.Request) -> web.Response:
    page = await _read(request, request.app[READER].version, request.match_info["ref"])
    _, series = await _read(request, request.app[READER].curves, [page.version.id])
    return _page(request, "version.html", title=page.version.ref, page=page,
                 charts=_charts([page.version], series), run=page.version.run)


async def compare(request: web.Request) -> web.Response:
    refs = request.query.getall("v", [])
    if not refs:
        return _page(request, "error.html", status=400, title="compare",
                     message="choose versions to compare: tick them in the versions table, or /compare?v=REF&v=REF")
    rows, series = await _read(request, request.app[READER].curves, refs)
    wanted = request.query.get("metric")
    charts = [c for c in _charts(rows, series) if wanted in (None, "", c["metric"])]
    return _page(request, "compare.html", title="compare", rows=rows, charts=charts,
                 diff_link=_diff_link(rows) if len(rows) == 2 else None)


async def diff(request: web.Request) -> web.Response:
    a, b = request.query.get("a"), request.query.get("b")
    if not a or not b:
        return _page(request, "error.html", status=400, title="diff", message="name two versions: /diff?a=REF&b=REF")
    ra, rb, sections = await _read(request, request.app[READER].diff, a, b)
    hide_same = request.query.get("all") != "1"
    shown = {k: [row for row in v if not (hide_same and row[1] == "same")] for k, v in sections.items()}
    counts = {k: {s: sum(1 for row in v if row[1] == s) for s in ("added", "removed", "changed", "reshaped", "same")}
              for k, v in sections.items()}
    return _page(request, "diff.html", title=f"diff {ra.ref} {rb.ref}", a=ra, b=rb, sections=shown, counts=counts,
                 hide_same=hide_same, all_link="/diff?" + urlencode({"a": a, "b": b, "all": "1"}))


async def lineage_index(request: web.Request) -> web.Response:
    models = await _read(request, request.app[READER].models)
    if len(models) == 1:
        raise web.HTTPFound(f"/lineage/{quote(models[0], safe='')}")
    return _page(request, "lineage_index.html", title="lineage", models=models)


async def lineage(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    rows, edges = await _read(request, request.app[READER].lineage, model)
    svg = lineage_svg.render_svg(rows, edges, focus_model=model, href=lambda r: f"/version/{quote(r.ref, safe='@')}")
    return _page(request, "lineage.html", title=f"lineage of {model}", model=model, svg=svg, rows=rows,
                 n_edges=len(edges))


async def stats(request: web.Request) -> web.Response:
    s = await _read(request, request.app[READER].stats)
    return _page(request, "stats.html", title="archive", s=s)


async def runs(request: web.Request) -> web.Response:
    rows = await _read(request, request.app[READER].runs)
    return _page(request, "runs.html", title="runs", runs=rows,
                 live=any(r.state == "running" for r in rows))


async def run(request: web.Request) -> web.Response:
    row, series = await _read(request, request.app[READER].run, request.match_info["id"])
    charts = [{"metric": name, "series": [{"label": f"run {row.short_id}", "points": _points(points)}]}
              for name, points in sorted(series.items())]
    return _page(request, "run.html", title=f"run {row.short_id}", run=row, charts=charts,
                 live=row.state == "running")


# -- helpers --------------------------------------------------------------------------------

def _charts(rows, series: dict) -> list[dict]:
    """One chart per metric, one line per version that has it."""
    names = sorted({m for r in rows for m in series.get(r.id, {})})
    return [
        {"metric": name, "series": [{"label": r.ref, "points": _points(series[r.id][name])}
                                    for r in rows if name in series.get(r.id, {})]}
        for name in names
    ]


def _points(points) -> list[list]:
    # JSON has no NaN or infinity: a diverged value becomes a gap in the line
    return [[step, value if math.isfinite(value) else None] for step, value in points]


def _diff_link(rows) -> str:
    return "/diff?" + urlencode({"a": rows[0].ref, "b": rows[1].ref})


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters.update(bytes=human_bytes, num=fmt_number, when=fmt_time, json_script=json_script,
                       vref=lambda ref: "/version/" + quote(ref, safe="@"), value=fmt_value)
    return env


def fmt_number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def fmt_time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return fmt_number(value)
    return value if isinstance(value, str) else json.dumps(value)


def json_script(value: Any) -> str:
    """JSON for a <script type="application/json"> block: '<' escaped so no text can close the tag."""
    from markupsafe import Markup
    return Markup(json.dumps(value, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


# -- serving ----------------------------------------------------------------------------------

def serve(root: Path | str | None = None, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          announce: Callable[[str], None] = print) -> None:
    """Serve the UI until interrupted (Ctrl-C)."""
    reader = RepoReader(root)
    app = create_app(reader, loopback_only=is_loopback(host))
    shown = f"[{host}]" if ":" in host else host
    _run(app, host, port, announce, shown)


def _run(app: web.Application, host: str, port: int, announce: Callable[[str], None], shown: str) -> None:
    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise InputError(f"cannot listen on {shown}:{port}: {exc.strerror or exc}; "
                             "choose another --port (or --port 0 for a free one)") from None
        bound = port
        server = getattr(site, "_server", None)
        if port == 0 and server is not None and server.sockets:
            bound = server.sockets[0].getsockname()[1]
        announce(f"dlv ui: serving {app[READER].root} at http://{shown}:{bound}/ (read-only; Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
