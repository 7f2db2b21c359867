"""Prometheus gauges read from the database at scrape time.

Jobs and deliveries by state, the depth of the two queues (analysis: jobs queued or running;
outbox: deliveries pending) and each destination's backlog.

They live beside the admin app, which serves ``/metrics``, so :mod:`arcade_pacs.core.metrics`
stays a leaf every layer can import.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import jobs
from arcade_pacs.core.metrics import REGISTRY
from arcade_pacs.db.queries import deliveries_by_destination
from arcade_pacs.send import outbox


class DatabaseCollector:
    """Gauges computed from the database each time ``/metrics`` is scraped."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def collect(self):
        with self.sessions() as s:
            counts = {
                ("arcade_jobs", "Analysis jobs by state"): jobs.counts_by_state(session=s),
                ("arcade_deliveries", "Result deliveries (SR, result images, presentation states) by state"): outbox.counts_by_state(session=s),
            }
            backlog = deliveries_by_destination(session=s)
        for (name, documentation), by_state in counts.items():
            gauge = GaugeMetricFamily(name, documentation, labels=["state"])
            for state, n in by_state.items():
                gauge.add_metric([state], n)
            yield gauge
        job_counts = counts[("arcade_jobs", "Analysis jobs by state")]
        delivery_counts = counts[("arcade_deliveries", "Result deliveries (SR, result images, presentation states) by state")]
        depth = GaugeMetricFamily("arcade_queue_depth", "Work waiting: analysis jobs queued or running, "
                                  "Result deliveries pending", labels=["queue"])
        depth.add_metric(["analysis"], job_counts[jobs.JobState.QUEUED] + job_counts[jobs.JobState.RUNNING])
        depth.add_metric(["outbox"], delivery_counts[outbox.DeliveryState.PENDING])
        yield depth
        per_destination = GaugeMetricFamily("arcade_destination_deliveries", "Result deliveries per destination and state",
                                            labels=["destination", "state"])
        for destination, by_state in sorted(backlog.items()):
            for state, n in sorted(by_state.items()):
                per_destination.add_metric([destination, state], n)
        yield per_destination


_collector: DatabaseCollector | None = None


def register_database(sessions: sessionmaker[Session]) -> None:
    """Attach the database gauges (once per process; a later call rebinds the session factory)."""
    global _collector
    if _collector is None:
        _collector = DatabaseCollector(sessions)
        REGISTRY.register(_collector)
    else:
        _collector.sessions = sessions
