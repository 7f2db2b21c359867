"""Prometheus metrics, one place: event counters updated where things happen, state read at scrape.

Counters and histograms live on one registry created at import. This module imports nothing
from the package, so every layer may count; the database-backed gauges (jobs and deliveries by
state, queue depth, backlog per destination) are added by the admin app
(:mod:`arcade_pacs.admin.collector`), computed when ``/metrics`` is scraped, so they are
always true after a restart.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

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
RECEIVED_BYTES = Counter(
    "arcade_received_bytes_total", "Bytes received by the DICOM SCP (PDUs, all associations)", registry=REGISTRY
)
JOB_SECONDS = Histogram(
    "arcade_job_duration_seconds", "Time of one analysis job attempt, claim to recorded outcome", ["outcome"],
    buckets=(0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600), registry=REGISTRY,
)
INFERENCE_PASSES = Counter(
    "arcade_inference_passes_total", "Engine calls: batches of windows run through the model", registry=REGISTRY
)
INFERENCE_IMAGES = Counter(
    "arcade_inference_images_total", "Tensors scored by the model (TTA views counted separately)", registry=REGISTRY
)
ASSOCIATIONS = Counter(
    "arcade_associations_total", "DICOM associations ended, by outcome (released, aborted, rejected)",
    ["outcome"], registry=REGISTRY,
)
ASSOCIATIONS_REJECTED = Counter(
    "arcade_associations_rejected_total", "DICOM associations rejected (A-ASSOCIATE-RJ)", registry=REGISTRY
)

SCP_CONNECTIONS_DROPPED = Counter(
    "arcade_scp_connections_dropped_total",
    "TCP connections the SCP closed itself: pdu-deadline, connection-cap (per address or in all), tls-handshake",
    ["reason"], registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
