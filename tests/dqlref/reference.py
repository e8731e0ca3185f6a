"""A slow, obviously-correct evaluator for select plans, in plain Python.

It loads the whole catalog into dicts, walks graphs through
:class:`modelhub.netdef.Graph` (parsed from the stored JSON definition, not
from graph_nodes/graph_edges) and applies SQL's three-valued logic by hand.
Tests compare its rows with :func:`modelhub.dql.execute` on generated
catalogs (:mod:`dqlref.synthetic`); it is not used at run time.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import datetime
from typing import Any

import duckdb

from modelhub.dql import plan as P
from modelhub.dql.graphops import view_of
from modelhub.dql.graphs import satisfying_nodes
from modelhub.dql.patterns import OPERATION_KINDS
from modelhub.netdef.graph import Graph


class ReferenceCatalog:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.versions: dict[str, dict] = {}
        for vid, model, seq, msg, author, created, gh, n_params, n_tensors in con.execute(
                "SELECT id, model, seq, message, author, created_at, graph_hash, n_params, n_tensors FROM versions"
        ).fetchall():
            self.versions[vid] = {"id": vid, "name": model, "seq": seq, "message": msg, "author": author,
                                  "creation_time": created, "graph_hash": gh, "n_params": n_params,
                                  "n_tensors": n_tensors, "parent": None, "n_layers": None, "run_status": None}
        for vid, status in con.execute(
                "SELECT version_id, min(status) FROM runs WHERE version_id IS NOT NULL GROUP BY version_id").fetchall():
            if vid in self.versions:
                self.versions[vid]["run_status"] = status
        parents: dict[str, list] = {}
        for vid, pid, ord_ in con.execute("SELECT version_id, parent_id, ord FROM version_parents").fetchall():
            parents.setdefault(vid, []).append((ord_, pid))
        for vid, ps in parents.items():
            if vid in self.versions:
                self.versions[vid]["parent"] = min(ps)[1]
        self.parents = {vid: [p for _, p in sorted(ps)] for vid, ps in parents.items()}
        for v in self.versions.values():      # the first-parent chain: root and depth
            cur, depth = v["id"], 0
            while self.versions.get(cur, {}).get("parent") is not None:
                cur, depth = self.versions[cur]["parent"], depth + 1
            v["root"], v["depth"] = cur, depth
        self.hparams: dict[str, dict[str, tuple]] = {}
        for vid, key, vj, vn, vs in con.execute(
                "SELECT version_id, key, value_json, value_num, value_str FROM hparams").fetchall():
            self.hparams.setdefault(vid, {})[key] = (vj, vn, vs)
        self.metrics: dict[str, dict[str, list]] = {}
        for vid, name, step, value in con.execute("SELECT version_id, name, step, value FROM metrics").fetchall():
            self.metrics.setdefault(vid, {}).setdefault(name, []).append((step, value))
        self.graphs = {h: Graph.from_json(d) for h, d in con.execute("SELECT graph_hash, definition FROM graphs").fetchall()}
        for v in self.versions.values():
            g = self.graphs.get(v["graph_hash"])
            v["n_layers"] = len(g.layers) if g is not None else None
        self._views: dict[str, Any] = {}

    def view(self, h: str):
        if h not in self._views:
            self._views[h] = view_of(self.graphs[h])
        return self._views[h]


    def ancestors(self, vid: str) -> list[str]:
        """Every ancestor through any parent, nearest first (ties by id)."""
        depth: dict[str, int] = {}
        frontier, d = [vid], 0
        while frontier:
            d += 1
            nxt = []
            for f in frontier:
                for p in self.parents.get(f, []):
                    if p not in depth:
                        depth[p] = d
                        nxt.append(p)
            frontier = nxt
        return sorted(depth, key=lambda a: (depth[a], a))

    def ref_ids(self, text: str) -> set[str]:
        name, _, seq = text.rpartition("@")
        if name and seq.isdigit():
            return {v["id"] for v in self.versions.values() if v["name"] == name and v["seq"] == int(seq)}
        named = [v for v in self.versions.values() if v["name"] == text]
        if named:
            return {max(named, key=lambda v: v["seq"])["id"]}
        return {i for i in self.versions if i.startswith(text)}


def run_select(ref: ReferenceCatalog, plan: P.SelectPlan) -> list[tuple]:
    if plan.aggregate:
        return _grouped(ref, plan)
    if plan.join_var is not None:
        return _pairs(ref, plan)
    ids = _ids(ref, plan)
    return [tuple(_output(ref, ref.versions[i], c.value) for c in plan.columns) for i in ids]


def _grouped(ref: ReferenceCatalog, plan: P.SelectPlan) -> list[tuple]:
    """One row per group: group keys by their output value (a hyperparameter by its JSON)."""
    ids = [i for i in ref.versions if plan.filter is None or _cond(ref, ref.versions[i], plan.filter) is True]
    groups: dict[tuple, list[str]] = {}
    for i in ids:
        key = tuple(_group_key(ref, ref.versions[i], g) for g in plan.group)
        groups.setdefault(key, []).append(i)
    if not plan.group and not groups:
        groups[()] = []             # an aggregate over nothing is one row

    def cell(key: tuple, members: list[str], v: P.BoundValue):
        if isinstance(v, P.GroupAggregate):
            return _aggregate(ref, members, v)
        if isinstance(v, P.Const):
            return v.value
        if isinstance(v, P.BoundArith) and v not in plan.group:    # over the group's cells
            return _value(ref, {}, _with_cells(v, lambda x: P.Const(cell(key, members, x), x.vtype), plan.group))
        raw = key[plan.group.index(v)]
        return json.loads(raw) if isinstance(v, P.HParam) and raw is not None else raw

    rows = [(key, members) for key, members in groups.items()]
    if plan.having is not None:     # a group is kept where the condition over its cells is true
        rows = [(k, m) for k, m in rows if _cond(ref, {}, _with_cells(
            plan.having, lambda x, k=k, m=m: P.Const(cell(k, m, x), x.vtype), plan.group)) is True]
    rows.sort(key=lambda km: [(_none_last(x)) for x in km[0]])
    for key in reversed(plan.order):     # stable sorts, least significant first; NULLs last
        vals = [cell(k, m, key.value) for k, m in rows]
        if isinstance(key.value, P.HParam):
            vals = [None if v is None else json.dumps(v) for v in vals]
        present = sorted((j for j in range(len(rows)) if vals[j] is not None), key=lambda j: vals[j],
                         reverse=key.descending)
        rows = [rows[j] for j in present] + [rows[j] for j in range(len(rows)) if vals[j] is None]
    out = [tuple(cell(k, m, c.value) for c in plan.columns) for k, m in rows]
    return out[: plan.limit] if plan.limit is not None else out


def _with_cells(node, cell, group: tuple):
    """``node`` (a condition or value over a group) with every aggregate and group key replaced by
    ``cell(value)``: what is left the row-wise evaluator computes."""
    if isinstance(node, P.GroupAggregate) or (not isinstance(node, P.Const) and node in group):
        return cell(node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.replace(node, **{f.name: _with_cells(getattr(node, f.name), cell, group)
                                            for f in dataclasses.fields(node) if f.init})
    if isinstance(node, tuple):
        return tuple(_with_cells(i, cell, group) for i in node)
    return node


def _none_last(x):
    return (x is None, "" if x is None else x)


def _group_key(ref: ReferenceCatalog, row: dict, v: P.BoundValue):
    if isinstance(v, P.HParam):
        return _hp(ref, row, v.key, 0)
    return _value(ref, row, v)


def _aggregate(ref: ReferenceCatalog, members: list[str], v: P.GroupAggregate):
    if v.inner is None:
        return len(members)
    vals = [_numeric(ref, ref.versions[i], v.inner) for i in members]
    vals = [x for x in vals if x is not None]
    if v.func == "count":
        return len(vals)
    if not vals:
        return None
    return {"min": min, "max": max, "sum": sum, "avg": lambda xs: sum(xs) / len(xs)}[v.func](vals)


def _numeric(ref: ReferenceCatalog, row: dict, v: P.BoundValue):
    """A value where numbers are wanted: a hyperparameter by its numeric projection."""
    if isinstance(v, P.HParam):
        return _hp(ref, row, v.key, 1)
    if isinstance(v, P.BoundRelated) and isinstance(v.inner, P.HParam):
        other = _related(ref, row, v.relation)
        return None if other is None else _hp(ref, other, v.inner.key, 1)
    return _value(ref, row, v)


def _is_hp(v: P.BoundValue) -> bool:
    return isinstance(v, P.HParam) or isinstance(v, P.BoundRelated) and isinstance(v.inner, P.HParam)


def _hp_of(ref: ReferenceCatalog, row: dict, v: P.BoundValue, slot: int) -> Any:
    if isinstance(v, P.BoundRelated):
        other = _related(ref, row, v.relation)
        return None if other is None else _hp(ref, other, v.inner.key, slot)
    return _hp(ref, row, v.key, slot)


def _related(ref: ReferenceCatalog, row: dict, relation: str) -> dict | None:
    if relation == "join":
        return row["__joined"]
    target = row["parent"] if relation == "parent" else row["root"]
    return None if target is None else ref.versions.get(target)


def _ids(ref: ReferenceCatalog, plan: P.SelectPlan) -> list[str]:
    pool = list(ref.versions)
    if isinstance(plan.source, P.SubquerySource):
        allowed = set(_ids(ref, plan.source.plan))
        pool = [i for i in pool if i in allowed]
    kept = [i for i in pool if plan.filter is None or _cond(ref, ref.versions[i], plan.filter) is True]
    # stable sorts, least significant key first; NULLs last in both directions (as in the SQL)
    kept.sort(key=lambda i: (ref.versions[i]["name"], ref.versions[i]["seq"]))
    for key in reversed(plan.order):
        for part in reversed(_sort_parts(key.value)):
            vals = {i: part(ref.versions[i], ref) for i in kept}
            present = [i for i in kept if vals[i] is not None]
            present.sort(key=lambda i: vals[i], reverse=key.descending)
            kept = present + [i for i in kept if vals[i] is None]
    return kept[: plan.limit] if plan.limit is not None else kept


def _pairs(ref: ReferenceCatalog, plan: P.SelectPlan) -> list[tuple]:
    """`from a, b`: every pair (a from the source, b any version) the filter keeps; a row is a's
    values with b's under "__joined" (what relation "join" reads)."""
    pool = list(ref.versions)
    if isinstance(plan.source, P.SubquerySource):
        allowed = set(_ids(ref, plan.source.plan))
        pool = [i for i in pool if i in allowed]
    rows = [dict(ref.versions[a], __joined=ref.versions[b]) for a in pool for b in ref.versions]
    kept = [r for r in rows if plan.filter is None or _cond(ref, r, plan.filter) is True]
    kept.sort(key=lambda r: (r["name"], r["seq"], r["__joined"]["name"], r["__joined"]["seq"]))
    for key in reversed(plan.order):
        for part in reversed(_sort_parts(key.value)):
            vals = [part(r, ref) for r in kept]
            present = sorted((j for j in range(len(kept)) if vals[j] is not None), key=lambda j: vals[j],
                             reverse=key.descending)
            kept = [kept[j] for j in present] + [kept[j] for j in range(len(kept)) if vals[j] is None]
    kept = kept[: plan.limit] if plan.limit is not None else kept
    return [tuple(_output(ref, r, c.value) for c in plan.columns) for r in kept]


def _sort_parts(v: P.BoundValue):
    if isinstance(v, P.HParam):
        return [lambda row, ref: _hp(ref, row, v.key, 1), lambda row, ref: _hp(ref, row, v.key, 2)]
    if _is_hp(v):       # a related version's hyperparameter: numbers first, then text
        return [lambda row, ref: _hp_of(ref, row, v, 1), lambda row, ref: _hp_of(ref, row, v, 2)]
    return [lambda row, ref: _value(ref, row, v)]


def _hp(ref: ReferenceCatalog, row: dict, key: str, slot: int) -> Any:
    entry = ref.hparams.get(row["id"], {}).get(key)
    return None if entry is None else entry[slot]


def _output(ref: ReferenceCatalog, row: dict, v: P.BoundValue) -> Any:
    if isinstance(v, P.HParam):
        raw = _hp(ref, row, v.key, 0)
        return None if raw is None else json.loads(raw)
    if isinstance(v, P.BoundRelated):
        other = _related(ref, row, v.relation)
        return None if other is None else _output(ref, other, v.inner)
    return _value(ref, row, v)


def _value(ref: ReferenceCatalog, row: dict, v: P.BoundValue) -> Any:
    if isinstance(v, P.Prop):
        return row[v.name]
    if isinstance(v, P.Metric):
        series = ref.metrics.get(row["id"], {}).get(v.name)
        if not series:
            return None
        if v.agg == "latest":
            latest = max(series)[1]
            return None if math.isnan(latest) else latest
        usable = [val for _, val in series if not math.isnan(val)]
        return (max if v.agg == "max" else min)(usable) if usable else None
    if isinstance(v, P.LayerCount):
        g = ref.graphs.get(row["graph_hash"])
        if g is None:
            return None
        return sum(1 for n in g.nodes if n.kind in OPERATION_KINDS and re.fullmatch(v.pattern.sql_regex, n.name))
    if isinstance(v, P.Const):
        return v.value
    if isinstance(v, P.BoundRelated):
        other = _related(ref, row, v.relation)
        return None if other is None else _value(ref, other, v.inner)
    if isinstance(v, P.BoundAncestors):
        return ref.ancestors(row["id"])
    if isinstance(v, P.BoundArith):
        a, b = _numeric(ref, row, v.left), _numeric(ref, row, v.right)
        if a is None or b is None or (v.op == "/" and b == 0):
            return None
        return {"+": a + b, "-": a - b, "*": a * b}[v.op] if v.op != "/" else a / b
    raise AssertionError(v)


def _and(vals: list) -> bool | None:
    if any(v is False for v in vals):
        return False
    return None if any(v is None for v in vals) else True


def _or(vals: list) -> bool | None:
    if any(v is True for v in vals):
        return True
    return None if any(v is None for v in vals) else False


def _not(v: bool | None) -> bool | None:
    return None if v is None else not v


def _cond(ref: ReferenceCatalog, row: dict, c: P.BoundCond) -> bool | None:
    if isinstance(c, P.AndP):
        return _and([_cond(ref, row, i) for i in c.items])
    if isinstance(c, P.OrP):
        return _or([_cond(ref, row, i) for i in c.items])
    if isinstance(c, P.NotP):
        return _not(_cond(ref, row, c.operand))
    if isinstance(c, P.Compare):
        return _compare(ref, row, c.left, c.op, c.right)
    if isinstance(c, P.LikeP):
        val = _hp(ref, row, c.value.key, 2) if isinstance(c.value, P.HParam) else _value(ref, row, c.value)
        if val is None:
            return None
        rx = like_regex(c.pattern)
        hit = re.fullmatch(rx, val, re.DOTALL) is not None
        return not hit if c.negated else hit
    if isinstance(c, P.MatchesP):
        val = _hp(ref, row, c.value.key, 2) if isinstance(c.value, P.HParam) else _value(ref, row, c.value)
        if val is None:
            return None
        hit = re.fullmatch(c.pattern, val) is not None
        return not hit if c.negated else hit
    if isinstance(c, P.LineageP):
        targets = ref.ref_ids(c.ref)
        if c.relation == "descendant":
            hit = bool(targets & set(ref.ancestors(row["id"])))
        else:
            hit = any(row["id"] in ref.ancestors(t) for t in targets)
        return not hit if c.negated else hit
    if isinstance(c, P.InP):
        r = _or([_compare(ref, row, c.value, "==", i) for i in c.items])
        return _not(r) if c.negated else r
    if isinstance(c, P.BetweenP):
        r = _and([_compare(ref, row, c.value, ">=", c.low), _compare(ref, row, c.value, "<=", c.high)])
        return _not(r) if c.negated else r
    if isinstance(c, P.GraphP):
        g = row["graph_hash"]
        if g is None:
            return None
        return bool(satisfying_nodes(ref.view(g), c.pred.selector, c.pred.template))
    raise AssertionError(c)


_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _compare(ref: ReferenceCatalog, row: dict, left: P.BoundValue, op: str, right: P.BoundValue) -> bool | None:
    if isinstance(right, P.Const) and right.value is None:
        val = _output(ref, row, left) if isinstance(left, P.HParam) else _value(ref, row, left)
        return (val is None) if op == "==" else (val is not None)
    if isinstance(left, P.BoundRelated) and isinstance(right, P.Const):
        other = _related(ref, row, left.relation)
        return None if other is None else _compare(ref, other, left.inner, op, right)
    if _is_hp(left) and not isinstance(right, P.Const):
        if _is_hp(right):      # two hyperparameters: numbers by value, else JSON text
            an, bn = _hp_of(ref, row, left, 1), _hp_of(ref, row, right, 1)
            if op in ("==", "!=") and (an is None or bn is None):
                an, bn = _hp_of(ref, row, left, 0), _hp_of(ref, row, right, 0)
            return None if an is None or bn is None else _OPS[op](an, bn)
        slot = 2 if right.vtype in (P.TEXT, P.ID) else 1
        a, b = _hp_of(ref, row, left, slot), _numeric(ref, row, right)
        return None if a is None or b is None else _OPS[op](a, b)
    if _is_hp(right) and not isinstance(left, P.Const):
        return _compare(ref, row, right, {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op), left)
    if isinstance(left, P.HParam) and isinstance(right, P.Const):
        lit = right.value
        if isinstance(lit, bool):
            a, b = _hp(ref, row, left.key, 0), ("true" if lit else "false")
        elif isinstance(lit, str):
            a, b = _hp(ref, row, left.key, 2), lit
        else:
            a, b = _hp(ref, row, left.key, 1), lit
    else:
        a, b = _value(ref, row, left), _value(ref, row, right)
        if left.vtype == P.TIME and isinstance(b, str):
            b = datetime.fromisoformat(b)
        if left.vtype == P.ID and isinstance(right, P.Const) and op in ("==", "!="):
            if a is None:
                return None
            return a.startswith(b) if op == "==" else not a.startswith(b)
    if a is None or b is None:
        return None
    return _OPS[op](a, b)


def like_regex(pattern: str) -> str:
    """A like pattern as a regular expression: % any run, _ one character, `\\` escapes the next."""
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "")))
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "".join(out)
