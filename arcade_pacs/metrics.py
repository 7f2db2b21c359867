"""Prometheus metrics, one place: event counters updated where things happen, state read at scrape.

Counters and histograms live on one registry created at import; the database-backed gauges
(jobs and deliveries by state) are computed when ``/metrics`` is scraped, so they are always
true after a restart.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry()

CSTORE = Counter(
    "arcade_cstore_total", "C-STORE requests answered, by DIMSE status", ["status"], registry=REGISTRY
)
ANALYSIS_SECONDS = Histogram(
    "arcade_analysis_seconds", "Time to analyse one instance (decode to finding)",
    buckets=(0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300), registry=REGISTRY,
)
JOB_OUTCOMES = Counter("arcade_job_outcomes_total", "Analysis attempts by outcome", ["outcome"], registry=REGISTRY)
DELIVERY_ATTEMPTS = Counter(
    "arcade_delivery_attempts_total", "SR C-STORE attempts by outcome", ["outcome"], registry=REGISTRY
)
REPORTS = Counter("arcade_reports_total", "SR documents written", registry=REGISTRY)


class DatabaseCollector:
    """Gauges read from the database at scrape time."""

    def __init__(self, sessions):
        self.sessions = sessions

    def collect(self):
        from arcade_pacs import jobs
        from arcade_pacs.send import outbox

        with self.sessions() as s:
            job_counts = jobs.counts_by_state(session=s)
            delivery_counts = outbox.counts_by_state(session=s)
        g = GaugeMetricFamily("arcade_jobs", "Analysis jobs by state", labels=["state"])
        for state, n in job_counts.items():
            g.add_metric([state], n)
        yield g
        d = GaugeMetricFamily("arcade_deliveries", "SR deliveries by state", labels=["state"])
        for state, n in delivery_counts.items():
            d.add_metric([state], n)
        yield d


_collector: DatabaseCollector | None = None


def register_database(sessions) -> None:
    """Attach the database gauges (once per process; a later call rebinds the session factory)."""
    global _collector
    if _collector is None:
        _collector = DatabaseCollector(sessions)
        REGISTRY.register(_collector)
    else:
        _collector.sessions = sessions


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
