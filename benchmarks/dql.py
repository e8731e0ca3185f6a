"""DQL against a lean hand-written baseline, cold (a fresh process) and warm, at 10,000 and 100,000 versions.

    python benchmarks/dql.py            # 10,000 and 100,000 versions, 15 warm runs per measurement
    python benchmarks/dql.py --quick    # 2,000 versions, 5 warm runs (a smoke run)
    python benchmarks/dql.py --versions 10000 50000

Prints one JSON object. Both sides answer the same question on the same generated catalog
(tests/dqlref/synthetic.py) in the same run, and the rows must agree. The baseline is what a
competent user writes over the catalog: filter the versions with SQL first, then read only the
graph tables (graph_nodes, graph_edges) of the graphs that passed, and walk them in Python.

"cold" runs the query once in a fresh Python process (imports done, catalog opened on the first
statement, no cache of any kind): ``*_cold_ms`` is the call alone, ``*_cold_process_ms`` the whole
process (interpreter start-up and imports included); the child also reports its peak RSS and the
bytes it read during the call (/proc/self/io rchar: page cache included). "warm" is the median of
repeated runs in one process, as in a REPL or a service, and each run asks with another threshold
(``{t}`` cycles through THRESHOLDS), so what DQL keeps per catalog state is reused but no result
is: both sides answer a new question each time.

Generated catalogs are kept (``--catalog-dir``, by default under the system's temp folder), since
100,000 versions take minutes to generate; a catalog generated before the catalog had a generation
token is given one by an empty write scope (DQL keeps nothing for a catalog without one).

Target (issue 19): at 100,000 versions, for a select with a metric filter and a graph predicate,
DQL warm p50 <= 50 ms and cold <= 200 ms, and faster than the lean baseline in both.
"""
from __future__ import annotations

import argparse
import os
import json
import resource
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
METRIC_GRAPH_Q = 'select m where m.metrics["acc"] > {t} and m["conv[1,3,5]"].next has POOL("MAX")'
#: paper query 1 (metadata filter and a graph predicate); the threshold is a date here
PAPER_Q1 = ('select m1 where m1.name like "alexnet_%" and m1.creation_time > "2015-11-{day}" '
            'and m1["conv[1,3,5]"].next has POOL("MAX")')
#: a pure metadata query (no graphs)
RANGE_Q = 'select m where m.metrics["acc"] between {lo} and 0.9'
#: warm run i asks with THRESHOLDS[i % 5] (cold and the row check use the first)
THRESHOLDS = (0.9, 0.85, 0.8, 0.75, 0.7)


def fill(text: str, t: float) -> str:
    """``text`` with its threshold: ``t`` for a metric, a day of November for paper query 1."""
    return text.format(t=t, lo=round(t - 0.1, 2), day=int(t * 30) - 5)

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


def lean_metric_graph(catalog, t: float) -> list[str]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT v.id, v.graph_hash FROM versions v JOIN (SELECT version_id, arg_max(value, step) AS acc "
            "FROM metrics WHERE name = 'acc' GROUP BY version_id) a ON a.version_id = v.id "
            "WHERE a.acc > ? AND NOT isnan(a.acc) AND v.graph_hash IS NOT NULL ORDER BY v.model, v.seq",
            [t]).fetchall()
        return _graph_filter(con, rows)


def lean_paper_q1(catalog, t: float) -> list[str]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT id, graph_hash FROM versions WHERE model LIKE 'alexnet_%' AND created_at > CAST(? AS TIMESTAMP) "
            "AND graph_hash IS NOT NULL ORDER BY model, seq", [f"2015-11-{int(t * 30) - 5}"]).fetchall()
        return _graph_filter(con, rows)


def lean_range(catalog, t: float) -> list[str]:
    with catalog.read() as con:
        return [r[0] for r in con.execute(
            "SELECT v.id FROM versions v JOIN (SELECT version_id, arg_max(value, step) AS acc FROM metrics "
            "WHERE name = 'acc' GROUP BY version_id) a ON a.version_id = v.id "
            "WHERE a.acc BETWEEN ? AND 0.9 ORDER BY v.model, v.seq", [round(t - 0.1, 2)]).fetchall()]


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
def timed(fn, runs: int) -> list[float]:
    """Milliseconds of ``fn(THRESHOLDS[i % 5])`` for run i."""
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(THRESHOLDS[i % len(THRESHOLDS)])
        times.append((time.perf_counter() - t) * 1000)
    return times


def _bytes_read() -> int:
    try:
        with open("/proc/self/io") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))
    except (OSError, StopIteration):
        return -1


def cold_child(folder: str, case: str, side: str) -> None:
    """Run in a fresh process: one query, timed from the call to the rows (imports excluded)."""
    t0 = time.perf_counter()
    import modelhub.catalog      # noqa: F401 - what either side imports before its first query
    if side == "dql":
        import modelhub.dql      # noqa: F401
    catalog = open_catalog(Path(folder))
    import_ms = (time.perf_counter() - t0) * 1000
    text, lean = CASES[case]
    read0 = _bytes_read()
    t = time.perf_counter()
    rows = dql_ids(catalog, fill(text, THRESHOLDS[0])) if side == "dql" else lean(catalog, THRESHOLDS[0])
    ms = (time.perf_counter() - t) * 1000
    print(json.dumps({"ms": ms, "import_ms": import_ms, "rows": len(rows), "read_mb": (_bytes_read() - read0) / 1e6,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def cold(folder: Path, case: str, side: str, repeats: int) -> dict:
    """Median over ``repeats`` fresh processes."""
    out, walls = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--cold-child", str(folder), case, side],
                              capture_output=True, text=True, check=True)
        walls.append((time.perf_counter() - t) * 1000)
        out.append(json.loads(proc.stdout))
    med = {k: round(statistics.median(o[k] for o in out), 1) for k in ("ms", "import_ms", "read_mb", "peak_rss_mb")}
    return {**med, "process_ms": round(statistics.median(walls), 1)}


def measure(n: int, runs: int, cold_repeats: int, tmp: Path) -> dict:
    from dqlref.synthetic import generate
    folder = tmp / f"cat{n}"
    t0 = time.perf_counter()
    if not (folder / "catalog.duckdb").exists():
        generate(folder, n, seed=1)
    report: dict = {"versions": n, "generate_s": round(time.perf_counter() - t0, 1)}
    catalog = open_catalog(folder)
    from modelhub.catalog.generation import catalog_generation
    with catalog.read() as con:
        has_token = catalog_generation(con) is not None
    if not has_token:       # generated before catalogs had one: an empty write scope gives it
        with catalog.write():
            pass
    with catalog.read() as con:
        report["graphs"] = con.execute("SELECT count(*) FROM graphs").fetchone()[0]
        report["metric_points"] = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    for case, (text, lean) in CASES.items():
        dql_cold = cold(folder, case, "dql", cold_repeats)
        lean_cold = cold(folder, case, "lean", cold_repeats)
        rows, same = [], True
        for t in THRESHOLDS:        # warm-up (a REPL or a service has run queries before) and the row check
            got = dql_ids(catalog, fill(text, t))
            same = same and got == lean(catalog, t)
            rows.append(len(got))
        dql_t = timed(lambda t: dql_ids(catalog, fill(text, t)), runs)
        lean_t = timed(lambda t: lean(catalog, t), runs)
        dql_p50, lean_p50 = statistics.median(dql_t), statistics.median(lean_t)
        report[case] = {
            "query": fill(text, THRESHOLDS[0]), "rows_per_threshold": rows, "same_rows_as_lean": same,
            "dql_cold_ms": dql_cold["ms"], "lean_cold_ms": lean_cold["ms"],
            "dql_cold_process_ms": dql_cold["process_ms"], "lean_cold_process_ms": lean_cold["process_ms"],
            "dql_cold_import_ms": dql_cold["import_ms"], "lean_cold_import_ms": lean_cold["import_ms"],
            "dql_cold_read_mb": dql_cold["read_mb"], "lean_cold_read_mb": lean_cold["read_mb"],
            "dql_cold_peak_rss_mb": dql_cold["peak_rss_mb"], "lean_cold_peak_rss_mb": lean_cold["peak_rss_mb"],
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
    ap.add_argument("--catalog-dir", type=Path, default=Path(tempfile.gettempdir()) / "modelhub-dql-bench",
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
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    for n in sizes:
        report["sizes"].append(measure(n, runs, cold_repeats, args.catalog_dir))
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
