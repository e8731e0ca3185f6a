"""DuckDB catalog: schema, migrations, locked connections (parameterized SQL only)."""
from .db import Catalog
from .schema import SCHEMA_VERSION

__all__ = ["Catalog", "SCHEMA_VERSION"]
