"""Test-only DQL helpers: a pure-Python reference evaluator and a synthetic-catalog generator
(tests and benchmarks/dql.py import them; the product package does not ship them)."""
