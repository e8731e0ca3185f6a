"""DQL against a lean hand-written baseline, cold (a fresh process) and warm, at 10,000 and 100,000 versions.

    python benchmarks/dql.py            # 10,000 and 100,000 versions, 15 warm runs per measurement
    python benchmarks/dql.py --quick    # 2,000 versions, 5 warm runs (a smoke run)
    python benchmarks/dql.py --versions 10000 50000

Prints one JSON object. Both sides answer the same question on the same generated catalog
(tests/dqlref/synthetic.py) in the same run, and the rows must agree. The baseline is what a
competent user writes over the catalog: filter the versions with SQL first, then read only the
graph tables (graph_nodes, graph_edges) of the graphs that passed, and walk them in Python.

"cold" runs the query once in a fresh Python process (imports done, catalog opened on the first
statement, no cache of any kind); "warm" is the median of repeated runs in one process.
Target (issue 19): at 100,000 versions, for a select with a metric filter and a graph predicate,
DQL warm p50 <= 50 ms and cold <= 200 ms, and faster than the lean baseline in both.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))     # the catalog generator is test-only code (tests/dqlref)

#: the select the targets are about: a metric filter and a graph predicate
METRIC_GRAPH_Q = 'select m where m.metrics["acc"] > 0.9 and m["conv[1,3,5]"].next has POOL("MAX")'
#: paper query 1 (metadata filter and a graph predicate)
PAPER_Q1 = ('select m1 where m1.name like "alexnet_%" and m1.creation_time > "2015-11-22" '
            'and m1["conv[1,3,5]"].next has POOL("MAX")')
#: a pure metadata query (no graphs)
RANGE_Q = 'select m where m.metrics["acc"] between 0.8 and 0.9'

_CONVS = ("conv1", "conv3", "conv5")
_MAX_POOLS = ("MaxPool1d", "MaxPool2d", "MaxPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d")


# ---- the lean baseline: SQL filter first, then only the graph tables it needs -------------------
def _graph_filter(con, rows: list[tuple[str, str]]) -> list[str]:
    """Keep the (id, graph_hash) rows whose graph has conv1/3/5 followed by a max pool."""
    hashes = list({h for _, h in rows})
    convs: dict[str, dict[int, str]] = {}
    pools: set[tuple[str, int]] = set()
    for h, idx, name, op in con.execute(
            "SELECT graph_hash, idx, name, op FROM graph_nodes WHERE graph_hash IN (SELECT unnest(?))",
            [hashes]).fetchall():
        if name.rsplit(".", 1)[-1] in _CONVS:
            convs.setdefault(h, {})[idx] = name
        if op in _MAX_POOLS:
            pools.add((h, idx))
    ok = set()
    for h, src, dst in con.execute(
            "SELECT graph_hash, src, dst FROM graph_edges WHERE graph_hash IN (SELECT unnest(?))",
            [list(convs)]).fetchall():
        if src in convs[h] and (h, dst) in pools:
            ok.add(h)
    return [vid for vid, h in rows if h in ok]


def lean_metric_graph(catalog) -> list[str]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT v.id, v.graph_hash FROM versions v JOIN (SELECT version_id, arg_max(value, step) AS acc "
            "FROM metrics WHERE name = 'acc' GROUP BY version_id) a ON a.version_id = v.id "
            "WHERE a.acc > 0.9 AND NOT isnan(a.acc) AND v.graph_hash IS NOT NULL ORDER BY v.model, v.seq").fetchall()
        return _graph_filter(con, rows)


def lean_paper_q1(catalog) -> list[str]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT id, graph_hash FROM versions WHERE model LIKE 'alexnet_%' AND created_at > TIMESTAMP '2015-11-22' "
            "AND graph_hash IS NOT NULL ORDER BY model, seq").fetchall()
        return _graph_filter(con, rows)


def lean_range(catalog) -> list[str]:
    with catalog.read() as con:
        return [r[0] for r in con.execute(
            "SELECT v.id FROM versions v JOIN (SELECT version_id, arg_max(value, step) AS acc FROM metrics "
            "WHERE name = 'acc' GROUP BY version_id) a ON a.version_id = v.id "
            "WHERE a.acc BETWEEN 0.8 AND 0.9 ORDER BY v.model, v.seq").fetchall()]


CASES = {  # name -> (DQL text, lean baseline)
    "metric_and_graph": (METRIC_GRAPH_Q, lean_metric_graph),
    "paper_query1": (PAPER_Q1, lean_paper_q1),
    "metric_range": (RANGE_Q, lean_range),
}


def dql_ids(catalog, text: str) -> list[str]:
    from modelhub.dql import execute
    return [r[0] for r in execute(text, catalog).rows]


def open_catalog(folder: Path):
    from modelhub.catalog import Catalog
    return Catalog(folder / "catalog.duckdb", folder / "lock")


# ---- measurements -------------------------------------------------------------------------------
def timed(fn, runs: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, result


def cold_child(folder: str, case: str, side: str) -> None:
    """Run in a fresh process: one query, timed from the call to the rows (imports excluded)."""
    t0 = time.perf_counter()
    import modelhub.catalog      # noqa: F401 - what either side imports before its first query
    if side == "dql":
        import modelhub.dql      # noqa: F401
    catalog = open_catalog(Path(folder))
    import_ms = (time.perf_counter() - t0) * 1000
    text, lean = CASES[case]
    t = time.perf_counter()
    rows = dql_ids(catalog, text) if side == "dql" else lean(catalog)
    print(json.dumps({"ms": (time.perf_counter() - t) * 1000, "import_ms": import_ms, "rows": len(rows)}))


def cold(folder: Path, case: str, side: str, repeats: int) -> dict:
    """Median over ``repeats`` fresh processes."""
    out = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, __file__, "--cold-child", str(folder), case, side],
                              capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout))
    return {"ms": round(statistics.median(o["ms"] for o in out), 1),
            "import_ms": round(statistics.median(o["import_ms"] for o in out), 1)}


def measure(n: int, runs: int, cold_repeats: int, tmp: Path) -> dict:
    from dqlref.synthetic import generate
    folder = tmp / f"cat{n}"
    t0 = time.perf_counter()
    if not (folder / "catalog.duckdb").exists():
        generate(folder, n, seed=1)
    report: dict = {"versions": n, "generate_s": round(time.perf_counter() - t0, 1)}
    catalog = open_catalog(folder)
    with catalog.read() as con:
        report["graphs"] = con.execute("SELECT count(*) FROM graphs").fetchone()[0]
        report["metric_points"] = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    for case, (text, lean) in CASES.items():
        dql_cold = cold(folder, case, "dql", cold_repeats)
        lean_cold = cold(folder, case, "lean", cold_repeats)
        dql_ids(catalog, text)      # warm-up: a REPL or a service has run a query before
        lean(catalog)
        dql_t, got = timed(lambda: dql_ids(catalog, text), runs)
        lean_t, expected = timed(lambda: lean(catalog), runs)
        dql_p50, lean_p50 = statistics.median(dql_t), statistics.median(lean_t)
        report[case] = {
            "query": text, "rows": len(got), "same_rows_as_lean": got == expected,
            "dql_cold_ms": dql_cold["ms"], "lean_cold_ms": lean_cold["ms"], "cold_import_ms": dql_cold["import_ms"],
            "dql_warm_p50_ms": round(dql_p50, 1), "lean_warm_p50_ms": round(lean_p50, 1),
            "warm_speedup_vs_lean": round(lean_p50 / dql_p50, 2),
            "cold_speedup_vs_lean": round(lean_cold["ms"] / dql_cold["ms"], 2),
        }
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 versions, 5 warm runs, 1 cold process")
    ap.add_argument("--versions", type=int, nargs="*", default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--cold-repeats", type=int, default=None, help="fresh processes per cold measurement")
    ap.add_argument("--catalog-dir", type=Path, default=None,
                    help="keep generated catalogs here and reuse them (they are deterministic per size)")
    ap.add_argument("--cold-child", nargs=3, metavar=("FOLDER", "CASE", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold_child:
        cold_child(*args.cold_child)
        return
    sizes = args.versions or ([2000] if args.quick else [10_000, 100_000])
    runs = args.runs or (5 if args.quick else 15)
    cold_repeats = args.cold_repeats or (1 if args.quick else 3)
    report: dict = {"runs": runs, "cold_processes": cold_repeats, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            report["sizes"].append(measure(n, runs, cold_repeats, args.catalog_dir or Path(tmp)))
    big = report["sizes"][-1]
    target = big["metric_and_graph"]
    report["targets"] = {
        "at_versions": big["versions"],
        "warm_p50_le_50ms": target["dql_warm_p50_ms"] <= 50.0,
        "cold_le_200ms": target["dql_cold_ms"] <= 200.0,
        "faster_than_lean_warm": target["dql_warm_p50_ms"] < target["lean_warm_p50_ms"],
        "faster_than_lean_cold": target["dql_cold_ms"] < target["lean_cold_ms"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
