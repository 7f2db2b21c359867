"""Claims with leases: how several threads, processes and hosts share one queue of rows safely.

A claim marks rows as taken by one owner until a lease time; the owner renews the lease while
it works (a heartbeat) and finishes with an update fenced on still being the owner. A dead
owner's lease runs out and another takes the row over. This is the pattern of dcm4chee-arc's
task scheduler and of PostgreSQL job queues:

- on PostgreSQL, ``SELECT ... FOR UPDATE SKIP LOCKED`` picks rows no other transaction holds
  and the same transaction marks them (PostgreSQL docs, "The Locking Clause"): claimers never
  wait on each other and never get the same row;
- on SQLite (one writer at a time), a conditional ``UPDATE ... WHERE id = ? AND <still
  claimable>`` per candidate: a row another claimer took first no longer matches, so its
  update changes nothing and the next candidate is tried.

Times are the processes' clocks (naive UTC); hosts sharing a database must keep them in step
(NTP), well within a lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from arcade_pacs.db.tables import utcnow


def lease_until(lease_s: float, now: datetime | None = None) -> datetime:
    """When a lease taken now (or at ``now``) runs out."""
    return (now or utcnow()) + timedelta(seconds=lease_s)


def claim_rows(
    table,
    claimable: ColumnElement[bool],
    order_by: Sequence,
    values: dict,
    *,
    session: Session,
    limit: int = 1,
) -> list[int]:
    """Mark up to ``limit`` rows of ``table`` matching ``claimable`` with ``values``; commit; return their ids.

    ``values`` sets the owner and lease columns (and any others, e.g. the state); it may hold
    SQL expressions (``attempts + 1``). ``claimable`` must be false for a row once claimed
    (e.g. it requires no lease or an expired one), so a claimed row is never claimed twice.
    """
    if session.get_bind().dialect.name == "postgresql":
        ids = list(
            session.scalars(
                select(table.id)
                .where(claimable)
                .order_by(*order_by)
                .limit(limit)
                .with_for_update(skip_locked=True, of=table)
            )
        )
        if ids:
            session.execute(update(table).where(table.id.in_(ids)).values(**values))
        session.commit()
        return ids
    taken: list[int] = []
    candidates = list(session.scalars(select(table.id).where(claimable).order_by(*order_by).limit(limit * 4)))
    for candidate in candidates:
        if session.execute(update(table).where(table.id == candidate, claimable).values(**values)).rowcount:
            taken.append(candidate)
            if len(taken) >= limit:
                break
    session.commit()
    return taken


def renew(table, row_id: int, owner_column, owner: str, lease_s: float, *, session: Session, extra=None) -> bool:
    """Extend ``owner``'s lease on one row; False when the row is no longer theirs (lease lost)."""
    where = [table.id == row_id, owner_column == owner]
    if extra is not None:
        where.append(extra)
    renewed = session.execute(update(table).where(*where).values(lease_until=lease_until(lease_s))).rowcount
    session.commit()
    return bool(renewed)
