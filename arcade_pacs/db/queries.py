"""Small queries shared by several components."""

from __future__ import annotations

from enum import Enum

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session


def counts_by_state(column: InstrumentedAttribute, states: type[Enum], *, session: Session) -> dict[str, int]:
    """Rows per value of a state ``column``, every member of ``states`` present (zero included)."""
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    counts = {s.value: 0 for s in states}
    counts.update({state: n for state, n in rows})
    return counts


def count_rows(table, *, session: Session) -> int:
    """Number of rows of a mapped ``table``."""
    return session.scalar(select(func.count()).select_from(table))


def newest(table, limit: int, *, session: Session, where=None) -> list:
    """The newest ``limit`` rows of a mapped ``table`` (highest id first), optionally filtered."""
    query = select(table).order_by(table.id.desc()).limit(limit)
    if where is not None:
        query = query.where(where)
    return list(session.scalars(query))
