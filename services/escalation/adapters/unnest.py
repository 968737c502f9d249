"""Many rows in one statement whatever their number (issue 12): each column's values bound as one array and turned
back into rows by ``unnest``, so the statement's text, compiled and prepared once, is the same for one row or a
thousand (an ``executemany`` is a server-side execute a row; a ``VALUES`` list is a new statement for each count).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import TableValuedAlias, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def unnested(name: str, columns: Mapping[str, TypeEngine[Any]]) -> TableValuedAlias:
    """A FROM item ``name`` of ``columns``, its rows bound as ``arrays`` gives them (one array a column)."""
    binds = [bindparam(f"{name}_{column}", type_=ARRAY(kind)) for column, kind in columns.items()]
    return func.unnest(*binds).table_valued(*columns).render_derived(name=name)


def arrays(table: TableValuedAlias, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of ``table`` (from ``unnested``) holding ``rows`` (each a mapping of every column)."""
    return {f"{table.name}_{column}": [row[column] for row in rows] for column in table.c.keys()}  # noqa: SIM118 - names, not columns


def array_literal(items: Iterable[str]) -> str:
    """``items`` as PostgreSQL's text form of an array (each quoted): an array inside an ``unnested`` row, where
    arrays of arrays of different lengths cannot go, bound as text and cast back."""
    quoted = (item.replace("\\", "\\\\").replace('"', '\\"') for item in items)
    return "{" + ",".join(f'"{item}"' for item in quoted) + "}"
