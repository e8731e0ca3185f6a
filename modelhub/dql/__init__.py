"""DQL: the model query language (grammar/dql.lark -> AST -> plan -> DuckDB + graph evaluation).

    from modelhub.dql import execute
    result = execute('select m where m.metrics["acc"] > 0.9', catalog)
    result.rows, result.columns, result.to_dicts()
"""
from .errors import BindError, DQLSyntaxError, ExecutionError, PlanError
from .executor import execute, plan_text
from .parser import parse
from .result import DerivedGraph, QueryResult

__all__ = ["parse", "execute", "plan_text", "QueryResult", "DerivedGraph",
           "DQLSyntaxError", "BindError", "PlanError", "ExecutionError"]
