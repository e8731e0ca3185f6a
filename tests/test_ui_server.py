"""`dlv ui`'s pages over HTTP (aiohttp's test client): content, read-only, loopback, no torch."""
from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the web UI needs the 'ui' extra (aiohttp, jinja2)")
pytest.importorskip("jinja2", reason="the web UI needs the 'ui' extra (aiohttp, jinja2)")

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

import modelhub  # noqa: E402
from modelhub.errors import InputError  # noqa: E402
from modelhub.ui import server  # noqa: E402
from modelhub.ui.reader import RepoReader  # noqa: E402

from ui_fixture import build_ui_repo  # noqa: E402


@pytest.fixture(scope="module")
def ui_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui") / "repo"
    runs = build_ui_repo(root)
    return root, runs


def fetch(root: Path, *paths: str, method: str = "GET", headers: dict | None = None,
          loopback_only: bool = True) -> list[tuple[int, str]]:
    async def go():
        app = server.create_app(RepoReader(root), loopback_only=loopback_only)
        out = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for path in paths:
                response = await client.request(method, path, headers=headers or {}, allow_redirects=False)
                out.append((response.status, await response.text()))
        return out
    return asyncio.run(go())


def page(root: Path, path: str) -> str:
    [(status, text)] = fetch(root, path)
    assert status == 200, text
    return text


def series_of(html: str) -> dict[str, list[dict]]:
    """{metric: [{label, points}]} embedded for the plots."""
    out = {}
    for metric, body in re.findall(r'<figure class="chart" data-metric="([^"]+)">.*?<script type="application/json" '
                                   r'class="series">(.*?)</script>', html, re.S):
        out[metric] = json.loads(body)
    return out


def test_versions_table_lists_every_version_with_run_state_and_metrics(ui_repo):
    root, _ = ui_repo
    html = page(root, "/")
    refs = re.findall(r'<tr data-id="[0-9a-f]+" data-ref="([^"]+)">', html)
    assert sorted(refs) == ["lenet-small@1", "lenet-small@2", "lenet@1", "lenet@2"]
    assert '<span class="state finished"' in html and '<span class="state failed"' in html
    assert re.search(r'<th class="num metric">acc</th>\s*<th class="num metric">loss</th>', html)
    assert ">0.85<" in html   # lenet@2's latest acc


def test_dql_box_filters_and_shows_errors_with_their_caret(ui_repo):
    root, _ = ui_repo
    html = page(root, '/?q=select m where m.name == "lenet" and m.metrics["acc"] > 0.82')
    assert re.findall(r'data-ref="([^"]+)"', html) == ["lenet@2"]
    html = page(root, "/?q=select m wher m.name == 1")
    error = re.search(r'<pre class="error" id="dql-error">(.*?)</pre>', html, re.S).group(1)
    assert "line 1, column 10" in error and "\n           ^" in error
    html = page(root, '/?q=slice m2 from m1 where m1.name == "lenet" mutate m2.input = m1["conv1"] '
                      'and m2.output = m1["fc1"]')
    assert "read-only and runs `select` statements only" in html


def test_version_page_shows_layers_tensors_hparams_metrics_files_lineage_and_run(ui_repo):
    root, runs = ui_repo
    html = page(root, "/version/lenet@2")
    for needle in ("conv1", "Conv2d", "fc2.weight", "float32", "run.json", "<dt>torch</dt>",
                   'href="/version/lenet@1"', f'href="/run/{runs["finished"]}"', "0.05"):
        assert needle in html, needle
    curves = series_of(html)
    assert set(curves) == {"acc", "loss"}
    assert curves["loss"] == [{"label": "lenet@2", "points": [[0, 0.9], [1, 0.7], [2, 0.5], [3, pytest.approx(0.3)]]}]
    assert "steps 0, 1, 2, 3" in html
    html = page(root, "/version/lenet@1")
    assert 'href="/version/lenet@2"' in html and 'href="/version/lenet-small@1"' in html  # children


def test_compare_overlays_the_curves_of_several_versions(ui_repo):
    root, _ = ui_repo
    html = page(root, "/compare?v=lenet@1&v=lenet@2&v=lenet-small@2")
    curves = series_of(html)
    assert [s["label"] for s in curves["loss"]] == ["lenet@1", "lenet@2", "lenet-small@2"]
    assert curves["loss"][0]["points"] == [[0, 1.0], [1, 0.6], [2, 0.4]]
    assert [s["label"] for s in curves["acc"]] == ["lenet@1", "lenet@2"]  # the failed run logged no acc
    assert [s["label"] for s in series_of(page(root, "/compare?v=lenet@1&v=lenet@2&metric=acc"))["acc"]] == \
        ["lenet@1", "lenet@2"]


def test_diff_of_two_versions(ui_repo):
    root, _ = ui_repo
    html = page(root, "/diff?a=lenet@1&b=lenet@2")
    tensors = re.search(r'<section id="diff-tensors">(.*?)</section>', html, re.S).group(1)
    assert re.findall(r'<tr class="(\w+)"><td>([^<]+)</td>', tensors) == [("changed", "fc2.weight")]
    hparams = re.search(r'<section id="diff-hparams">(.*?)</section>', html, re.S).group(1)
    assert re.findall(r'<tr class="(\w+)"><td>([^<]+)</td>', hparams) == [("changed", "lr")]
    everything = page(root, "/diff?a=lenet@1&b=lenet@2&all=1")
    assert everything.count('<tr class="same">') > 8


def test_lineage_graph_and_archive_statistics(ui_repo):
    root, _ = ui_repo
    html = page(root, "/lineage/lenet")
    nodes = re.findall(r'<g class="([^"]+)" data-version="([0-9a-f]+)">', html)
    assert len(nodes) == 3  # lenet@1, lenet@2 and the copy lenet-small@1 that descends from lenet@1
    assert sum("other" in c for c, _ in nodes) == 1 and sum("ok" in c for c, _ in nodes) == 1
    assert html.count('class="edge"') == 2
    [(status, text)] = fetch(root, "/lineage")
    assert status == 200 and 'href="/lineage/lenet-small"' in text
    stats = page(root, "/stats")
    assert re.search(r"<dt>versions</dt><dd>4 \(\d+ snapshots, 3 runs\)</dd>", stats)
    assert "segmented" in stats


def test_runs_pages_show_state_failures_and_live_curves(ui_repo):
    root, runs = ui_repo
    html = page(root, "/runs")
    states = dict(re.findall(r'<tr data-run="([0-9a-f]+)">.*?<span class="state (\w+)"', html, re.S))
    assert re.search(rf'<tr data-run="{runs["finished"]}">.*?>lenet@2</a></td></tr>', html, re.S)
    assert states == {runs["finished"]: "finished", runs["failed"]: "failed", runs["unfinished"]: "unfinished"}
    failed = page(root, f"/run/{runs['failed'][:8]}")
    assert "ValueError: NaN loss at step 1" in failed
    unfinished = page(root, f"/run/{runs['unfinished']}")
    assert f'repo.resume_run("{runs["unfinished"][:8]}")' in unfinished
    assert series_of(unfinished)["loss"][0]["points"] == [[0, 5.0]]


def test_unknown_references_are_404_pages_with_the_reason(ui_repo):
    root, _ = ui_repo
    (s1, t1), (s2, t2), (s3, _) = fetch(root, "/version/nosuch@3", "/lineage/nosuch", "/run/zz")
    assert (s1, s2, s3) == (404, 404, 400)
    assert "unknown" in t1 and "nosuch" in t2


def test_the_ui_is_read_only_and_answers_loopback_names_only(ui_repo):
    root, _ = ui_repo
    [(status, text)] = fetch(root, "/", method="POST")
    assert status == 405 and "read-only" in text
    [(status, text)] = fetch(root, "/", headers={"Host": "evil.example:8765"})
    assert status == 403 and "refused" in text
    [(status, _)] = fetch(root, "/", headers={"Host": "localhost:8765"})
    assert status == 200
    [(status, _)] = fetch(root, "/", headers={"Host": "evil.example:8765"}, loopback_only=False)
    assert status == 200


def test_assets_ship_in_the_package_and_nothing_comes_from_a_cdn(ui_repo):
    root, runs = ui_repo
    paths = ["/", "/version/lenet@2", "/compare?v=lenet@1", "/diff?a=lenet@1&b=lenet@2", "/lineage/lenet",
             "/stats", "/runs", f"/run/{runs['finished']}"]
    for status, html in fetch(root, *paths):
        assert status == 200
        assert not re.search(r'(src|href)="(https?:)?//', html), "an asset from another host"
        for asset in re.findall(r'(?:src|href)="(/static/[^"?]+)', html):
            assert (Path(server.__file__).parent / asset.removeprefix("/")).is_file()
    [(status, js)] = fetch(root, "/static/uPlot.iife.min.js")
    assert status == 200 and "uPlot" in js
    assert (Path(server.__file__).parent / "static" / "uPlot.LICENSE").read_text().startswith("The MIT License")


def test_pages_that_read_the_catalog_never_import_torch(ui_repo):
    root, runs = ui_repo
    code = textwrap.dedent(f"""
        import asyncio, sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch imported by a read-only page")
        sys.meta_path.insert(0, NoTorch())
        from aiohttp.test_utils import TestClient, TestServer
        from modelhub.ui.reader import RepoReader
        from modelhub.ui.server import create_app
        async def go():
            async with TestClient(TestServer(create_app(RepoReader({str(root)!r})))) as c:
                for p in ["/", "/version/lenet@2", "/compare?v=lenet@1&v=lenet@2", "/diff?a=lenet@1&b=lenet@2",
                          "/lineage/lenet", "/stats", "/runs", "/run/{runs['failed']}"]:
                    r = await c.get(p)
                    assert r.status == 200, (p, r.status, await r.text())
        asyncio.run(go())
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(modelhub.__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_dlv_ui_command(ui_repo, monkeypatch, cli, capsys):
    root, _ = ui_repo
    calls = []
    monkeypatch.setattr(server, "serve", lambda r, **kw: calls.append((r, kw)))
    code, _, err = cli("ui", "--repo", str(root), "--port", "9001")
    assert code == 0 and calls == [(str(root), {"host": "127.0.0.1", "port": 9001, "announce": calls[0][1]["announce"]})]
    assert "warning" not in err
    code, _, err = cli("ui", "--repo", str(root), "--host", "0.0.0.0")
    assert code == 0 and "warning: serving on 0.0.0.0: anyone who can reach port 8765" in err
    code, _, err = cli("ui", "--port", "70000")
    assert code != 0 and "is not a TCP port" in err
    capsys.readouterr()
    cli("--help")   # argparse prints help on sys.stdout
    assert re.search(r"^    ui +browse versions", capsys.readouterr().out, re.M)


def test_serve_reports_a_port_in_use(ui_repo):
    root, _ = ui_repo
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.serve(root, port=port, announce=lambda line: None)


def test_an_empty_repository_has_pages_too(tmp_path):
    modelhub.init_repo(tmp_path / "empty")
    for status, html in fetch(tmp_path / "empty", "/", "/runs", "/lineage", "/stats"):
        assert status == 200
        assert "Traceback" not in html
    assert "0 version(s)" in page(tmp_path / "empty", "/") and "no models yet" in page(tmp_path / "empty", "/lineage")
