"""Prometheus gauges read from the database at scrape time (jobs and deliveries by state).

They live beside the admin app, which serves ``/metrics``, so :mod:`arcade_pacs.metrics`
stays a leaf every layer can import.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import jobs
from arcade_pacs.metrics import REGISTRY
from arcade_pacs.send import outbox


class DatabaseCollector:
    """Gauges computed from the database each time ``/metrics`` is scraped."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def collect(self):
        with self.sessions() as s:
            counts = {
                ("arcade_jobs", "Analysis jobs by state"): jobs.counts_by_state(session=s),
                ("arcade_deliveries", "SR deliveries by state"): outbox.counts_by_state(session=s),
            }
        for (name, documentation), by_state in counts.items():
            gauge = GaugeMetricFamily(name, documentation, labels=["state"])
            for state, n in by_state.items():
                gauge.add_metric([state], n)
            yield gauge


_collector: DatabaseCollector | None = None


def register_database(sessions: sessionmaker[Session]) -> None:
    """Attach the database gauges (once per process; a later call rebinds the session factory)."""
    global _collector
    if _collector is None:
        _collector = DatabaseCollector(sessions)
        REGISTRY.register(_collector)
    else:
        _collector.sessions = sessions
