"""C-ECHO and C-STORE handlers, and the A-ASSOCIATE-RQ gate: pynetdicom's events in, DICOM statuses out.

A C-STORE handler never runs inference (the modality waits for the answer) and never lets an
exception cross the network boundary: it hands the received data set to the one receipt
(:func:`arcade_pacs.receive.receipt.receive_part10`) and answers with the status of what came
of it (PS3.4 B.2.3, Storage Service Class statuses; one table,
:data:`~arcade_pacs.receive.receipt.DICOM_STATUS`), with an Error Comment saying why.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydicom import Dataset

from arcade_pacs.core import metrics
from arcade_pacs.core.phi import describe, where
from arcade_pacs.pipeline.part10 import Kind
from arcade_pacs.receive.receipt import OUT_OF_RESOURCES, SUCCESS, Refusal, StoreContext, receive_part10
from arcade_pacs.store.files import disk_space

log = logging.getLogger(__name__)


def status_dataset(code: int, comment: str | None = None) -> Dataset:
    """A status dataset with an optional Error Comment (0000,0902), at most 64 characters."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def handle_echo(event) -> int:
    """C-ECHO: the Verification service always succeeds while the SCP runs."""
    return SUCCESS


REJECTED_TRANSIENT, SOURCE_PRESENTATION, TEMPORARY_CONGESTION, LOCAL_LIMIT_EXCEEDED = 0x02, 0x03, 0x01, 0x02
STALE_SWEEP_INTERVAL_S = 60.0


def _reject(event, ctx: StoreContext, diagnostic: int, reason: str) -> None:
    """A-ASSOCIATE-RJ, rejected-transient, source "service-provider (presentation related)"
    (PS3.8 9.3.4): the sender may retry later. Logged (AE title and address, no data) and audited."""
    assoc = event.assoc
    calling = str(assoc.requestor.primitive.calling_ae_title).strip()[:16]
    log.warning("association from AE %s at %s refused: %s", calling, assoc.requestor.address, reason)
    assoc.acse.send_reject(REJECTED_TRANSIENT, SOURCE_PRESENTATION, diagnostic)
    if ctx.audit is not None:
        ctx.audit.rejected(event, reason)
    assoc.kill()  # as pynetdicom's own rejections: waits until the A-ASSOCIATE-RJ is sent


def handle_requested(event, ctx: StoreContext) -> None:
    """A-ASSOCIATE-RQ received: refuse it while the store is below its free-space watermark
    (reason "temporary congestion"), or when ``scp.max_associations`` associations are
    established (reason "local limit exceeded"); otherwise it holds one of those slots.

    Once a minute it also removes files of associations that ended mid-message.
    """
    settings = ctx.settings
    now = time.monotonic()
    if ctx.receipt is not None and now - ctx._last_sweep > STALE_SWEEP_INTERVAL_S and ctx._sweep_lock.acquire(False):
        try:
            ctx._last_sweep = now
            ctx.receipt.sweep_stale(older_than_s=2 * settings.scp.network_timeout_s + STALE_SWEEP_INTERVAL_S)
        finally:
            ctx._sweep_lock.release()
    if settings.storage.min_free_mb > 0:
        space = disk_space(settings.storage.root, settings.storage.min_free_mb)
        if not space.ok:
            metrics.CSTORE.labels(status="association-refused-disk").inc()
            _reject(event, ctx, TEMPORARY_CONGESTION, f"temporary congestion: {space.reason}")
            return
    if ctx.slots is not None and not ctx.slots.take(event.assoc):
        _reject(event, ctx, LOCAL_LIMIT_EXCEEDED,
                f"local limit exceeded: {ctx.slots.limit} associations established (scp.max_associations)")


def handle_store(event, ctx: StoreContext) -> Dataset | int:
    """C-STORE: the one receipt (file committed, rows and job recorded), then the answer."""
    try:
        answer = _store(event, ctx)
    except Refusal as refusal:
        log.warning("C-STORE refused: 0x%04X %s", refusal.status, refusal)
        answer = status_dataset(refusal.status, str(refusal))
    except Exception as exc:  # never raise across the network boundary
        # No traceback: it would print the exception's message, which may quote data values.
        log.error("C-STORE failed unexpectedly at %s: %s", where(exc), describe(exc))
        answer = status_dataset(OUT_OF_RESOURCES, f"internal error: {type(exc).__name__}")
    code = answer if isinstance(answer, int) else int(answer.Status)
    metrics.CSTORE.labels(status=f"0x{code:04X}").inc()
    return answer


def _received_file(event) -> Path | None:
    """Where pynetdicom wrote the data set (chunked receipt), or None when it is in memory."""
    try:
        path = event.dataset_path
    except AttributeError:
        return None
    return Path(path) if isinstance(path, (str, Path)) else None


def _store(event, ctx: StoreContext) -> int:
    received = _received_file(event)
    if received is not None and ctx.receipt is not None and ctx.receipt.overflowed(received):
        raise Refusal(Kind.TOO_LARGE, "instance exceeds the configured size limit")
    source: Path | bytes = received if received is not None else event.encoded_dataset(include_meta=True)
    receive_part10(ctx, source, calling_aet=str(event.assoc.requestor.ae_title).strip(),
                   sop_class=str(event.context.abstract_syntax), transfer_syntax=str(event.context.transfer_syntax))
    return SUCCESS
