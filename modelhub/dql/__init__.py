"""DQL: the model query language (grammar/dql.lark -> AST -> plan -> catalog selection + graph evaluation).

    from modelhub.dql import execute
    result = execute('select m where m.metrics["acc"] > 0.9', catalog)
    result.rows, result.columns, result.to_dicts()
"""
from .errors import BindError, DQLSyntaxError, ExecutionError, PlanError
from .executor import EvaluateRunner, Progress, execute, plan_text
from .parser import parse
from .result import DerivedGraph, QueryResult, ResultKind

__all__ = ["parse", "execute", "plan_text", "EvaluateRunner", "Progress", "QueryResult", "ResultKind",
           "DerivedGraph", "DQLSyntaxError", "BindError", "PlanError", "ExecutionError"]
