"""DQL benchmark: parse+bind+plan time and end-to-end latency vs a hand-written Python loop.

    python benchmarks/dql.py            # 10,000 versions, 15 runs per measurement
    python benchmarks/dql.py --quick    # 2,000 versions, 5 runs

Prints one JSON object. Both sides answer the same question on the same
generated catalog (tests/dqlref/synthetic.py) in the same run; the loop is
what a user scripts today: fetch the rows with plain SQL, filter in Python.
"dql_cold_ms" is the first run in this process (graph views not cached yet).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))     # the catalog generator is test-only code (tests/dqlref)

from dqlref.synthetic import generate                       # noqa: E402
from modelhub.dql import execute, parse                    # noqa: E402
from modelhub.dql.binder import bind                        # noqa: E402
from modelhub.dql.lowering import select_sql                # noqa: E402
from modelhub.dql.vocabulary import Vocabulary              # noqa: E402
from modelhub.netdef.graph import Graph                     # noqa: E402

SELECT_Q = ('select m1 where m1.name like "alexnet_%" and m1.creation_time > "2015-11-22" '
            'and m1["conv[1,3,5]"].next has POOL("MAX")')
RANGE_Q = 'select m where m.metrics["acc"] between 0.8 and 0.9'


def loop_select(catalog) -> list[str]:
    """The ModelHub select query, scripted by hand."""
    with catalog.read() as con:
        versions = con.execute("SELECT id, model, seq, created_at, graph_hash FROM versions").fetchall()
        graphs = {h: Graph.from_json(d) for h, d in con.execute("SELECT graph_hash, definition FROM graphs").fetchall()}
    name_rx = re.compile(r"alexnet.*", re.DOTALL)
    since = datetime(2015, 11, 22)
    out = []
    for vid, model, seq, created, gh in sorted(versions, key=lambda r: (r[1], r[2])):
        if not name_rx.fullmatch(model) or len(model) < 8 or not created > since or gh is None:
            continue
        g = graphs[gh]
        for conv in ("conv1", "conv3", "conv5"):
            if conv in g.index() and any(g.node(s).op == "MaxPool2d" for s in g.successors(conv)):
                out.append(vid)
                break
    return out


def loop_range(catalog) -> list[str]:
    """Latest acc between 0.8 and 0.9, scripted by hand."""
    with catalog.read() as con:
        versions = con.execute("SELECT id, model, seq FROM versions").fetchall()
        latest: dict[str, tuple[int, float]] = {}
        for vid, step, value in con.execute("SELECT version_id, step, value FROM metrics WHERE name = 'acc'").fetchall():
            if vid not in latest or step > latest[vid][0]:
                latest[vid] = (step, value)
    return [vid for vid, model, seq in sorted(versions, key=lambda r: (r[1], r[2]))
            if vid in latest and 0.8 <= latest[vid][1] <= 0.9]


def timed(fn, runs: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 versions and 5 runs (about 20 s)")
    ap.add_argument("--versions", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    n = args.versions or (2000 if args.quick else 10_000)
    runs = args.runs or (5 if args.quick else 15)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        catalog = generate(Path(tmp), n, seed=1)
        gen_s = time.perf_counter() - t0

        def front_end() -> None:
            stmt = parse(SELECT_Q)
            with catalog.read() as con:
                plan = bind(stmt, Vocabulary.load(con), SELECT_Q)
            select_sql(plan)

        def front_end_no_catalog() -> None:
            select_sql(bind(parse(SELECT_Q), Vocabulary.empty(), SELECT_Q))

        report: dict = {"versions": n, "runs": runs, "generate_s": round(gen_s, 2)}
        with catalog.read() as con:
            report["graphs"] = con.execute("SELECT count(*) FROM graphs").fetchone()[0]
            report["metric_points"] = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
        fe, _ = timed(front_end, runs)
        fe0, _ = timed(front_end_no_catalog, runs)
        report["parse_bind_plan_ms_p50"] = round(statistics.median(fe), 2)
        report["parse_bind_plan_without_catalog_checks_ms_p50"] = round(statistics.median(fe0), 2)
        for label, q, loop in (("modelhub_select", SELECT_Q, loop_select), ("metric_range", RANGE_Q, loop_range)):
            from modelhub.dql.graphs import clear_caches
            clear_caches()
            cold, _ = timed(lambda: execute(q, catalog), 1)
            dql_t, res = timed(lambda: execute(q, catalog), runs)
            loop_t, ids = timed(lambda: loop(catalog), runs)
            got = [r[0] for r in res.rows]
            p50_dql, p50_loop = statistics.median(dql_t), statistics.median(loop_t)
            report[label] = {
                "query": q, "rows": len(got), "same_rows_as_loop": got == ids,
                "dql_cold_ms": round(cold[0], 2), "dql_p50_ms": round(p50_dql, 2),
                "loop_p50_ms": round(p50_loop, 2), "speedup_vs_loop": round(p50_loop / p50_dql, 2),
                "target_p50_under_100ms": p50_dql < 100.0,
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
