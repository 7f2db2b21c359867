"""Wake-ups by PostgreSQL ``LISTEN``/``NOTIFY``: a queued job wakes idle workers at once.

Polling stays the fallback (and the only way on SQLite): a notification is a hint that
work may be there, never the work itself; a lost one costs at most one poll interval. The
notification is sent inside the transaction that queues the job, so PostgreSQL delivers it only
when that commits (PostgreSQL docs, NOTIFY), never for work that was rolled back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

JOBS_CHANNEL = "arcade_jobs"


def notify(channel: str, *, session: Session) -> None:
    """Send ``channel`` a notification when the session's transaction commits (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


class Listener:
    """A thread that calls ``callback`` for every notification on ``channel``; reconnects on errors."""

    def __init__(self, url: str, channel: str, callback: Callable[[], None]):
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.channel = channel
        self.callback = callback
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> Listener:
        self.thread.start()
        return self

    def _run(self) -> None:
        import psycopg

        delay = 1.0
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    delay = 1.0
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.callback()
            except Exception as exc:  # the database restarted: polling covers the gap
                log.warning("LISTEN %s lost (%s); retrying in %.0f s", self.channel, type(exc).__name__, delay)
                self.stopping.wait(delay)
                delay = min(30.0, delay * 2)

    def stop(self) -> None:
        self.stopping.set()
