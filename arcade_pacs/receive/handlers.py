"""C-ECHO and C-STORE handlers: store durably, queue the analysis, answer with a DICOM status.

A C-STORE handler never runs inference (the modality waits for the answer) and never lets an
exception cross the network boundary: every outcome is one of the named statuses below
(PS3.4 B.2.3, Storage Service Class statuses), with an Error Comment saying why.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import faults, jobs, metrics
from arcade_pacs.conformance import Contexts
from arcade_pacs.db.tables import Instance, Study, utcnow
from arcade_pacs.deflate import InflateError, inflate_to_file
from arcade_pacs.dicomattrs import grayscale_problem, number_of_frames
from arcade_pacs.elementcount import TooManyElements, count_elements
from arcade_pacs.phi import describe, where
from arcade_pacs.receive.audit import AssociationAudit
from arcade_pacs.receive.transport import AssociationSlots, ChunkedReceipt
from arcade_pacs.settings import Settings
from arcade_pacs.storage import atomic_write, commit_file, disk_space, instance_path, safe_uid

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
"""Refused: out of resources (storage failed, or the object exceeds a configured limit)."""
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
"""Error: the data set does not match the SOP class (e.g. no Pixel Data, missing UIDs)."""
CANNOT_UNDERSTAND = 0xC210
"""Error: cannot understand (not decodable as DICOM, or content the plugin cannot analyse)."""

PIXEL_DATA_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class Refusal(Exception):
    """A C-STORE that must be answered with ``status``; the message becomes the Error Comment."""

    def __init__(self, status: int, comment: str):
        super().__init__(comment)
        self.status = status


@dataclass
class StoreContext:
    """Everything the C-STORE handler needs, created once at start-up and passed explicitly."""

    settings: Settings
    sessions: sessionmaker[Session]
    contexts: Contexts
    on_stored: list[Callable[[int], None]] = field(default_factory=list)
    receipt: ChunkedReceipt | None = None  # set by start_scp: data sets arrive as files
    slots: AssociationSlots | None = None  # set by start_scp: established associations
    audit: AssociationAudit | None = None  # set by start_scp: one row per association
    _last_sweep: float = 0.0
    _sweep_lock: threading.Lock = field(default_factory=threading.Lock)


def status(code: int, comment: str | None = None) -> Dataset:
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


def check_dataset(ds: Dataset, sop_class_uid: str, settings: Settings, transfer_syntax: str | None = None) -> None:
    """Refuse at receipt what can be refused without decoding pixels.

    For native (uncompressed) pixel data the length is checked against Rows x Columns x
    Number of Frames x Bits Allocated (PS3.5 8.1.1); encapsulated data can only be checked
    by decoding it, which the analysis job does.

    Raises
    ------
    Refusal
        With the status and reason to answer.
    """
    if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise Refusal(CANNOT_UNDERSTAND, "not a DICOM data set (no SOP Class or Instance UID)")
    if ds.get("SOPClassUID") != sop_class_uid:
        raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Class UID does not match the context")
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        try:
            safe_uid(ds.get(keyword, ""))
        except ValueError:
            raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"missing or invalid {keyword}") from None
    if sop_class_uid == SECONDARY_CAPTURE and str(ds.get("Modality", "")).strip().upper() != "XA":
        # A screenshot or scanned document is not an angiogram; only XA secondary captures
        # (e.g. exported cine frames) are analysed. PS3.3 A.8.1: Modality describes the source.
        raise Refusal(CANNOT_UNDERSTAND, "Secondary Capture is analysed only with Modality XA")
    if not any(tag in ds for tag in PIXEL_DATA_TAGS):
        raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "no Pixel Data")
    problem = grayscale_problem(ds)
    if problem:
        raise Refusal(CANNOT_UNDERSTAND, problem)
    limits = settings.pipeline
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = number_of_frames(ds)
    if rows < 1 or cols < 1:
        raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Rows or Columns missing or zero")
    if frames < 1:
        raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Number of Frames is zero")
    if rows > limits.max_rows or cols > limits.max_columns or frames > limits.max_frames:
        raise Refusal(OUT_OF_RESOURCES, f"image {rows}x{cols}x{frames} exceeds configured limits")
    if transfer_syntax and not UID(transfer_syntax).is_encapsulated and "PixelData" in ds:
        bits = int(ds.get("BitsAllocated", 8) or 8)
        frame_bytes = rows * cols * int(ds.get("SamplesPerPixel", 1) or 1) * bits // 8
        actual = value_length(ds, "PixelData")
        if actual < frame_bytes * frames:
            raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data shorter than Rows x Columns x Frames")
        if actual - frame_bytes * frames >= frame_bytes:
            raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data holds more frames than Number of Frames")


def value_length(ds: Dataset, keyword: str) -> int:
    """Length in bytes of an element's value without reading a deferred value from the file."""
    element = ds.get_item(keyword, keep_deferred=True)
    value = getattr(element, "value", None)
    if value is None:
        return int(getattr(element, "length", 0) or 0)
    return len(value)


def record_instance(
    ds: Dataset, path: str, size: int, transfer_syntax: str, calling_aet: str, *, session: Session,
    digest: str | None = None,
) -> Instance:
    """Create or update the Instance row, mark its study as needing a report, queue the analysis.

    A resend of an instance already held with the same ``digest`` (SHA-256 of the stored file)
    changes nothing: it is acknowledged, not analysed again, and its study gets no new SR. New
    content under a known SOP Instance UID raises the instance's generation and queues it again
    (a run still busy with the old content cannot record its result; see ``jobs.complete``).
    """
    now = utcnow()
    instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
    if instance is not None and digest is not None and instance.digest == digest:
        log.info("instance id=%s received again with the same content: nothing to analyse", instance.id)
        instance.purged_at = None  # the file was rewritten whole: pixels deleted by retention are back
        return instance
    study = session.scalar(select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID))
    if study is None:
        study = Study(study_instance_uid=ds.StudyInstanceUID)
        session.add(study)
    study.last_received_at = now
    study.needs_report = True
    if instance is None:
        instance = Instance(sop_instance_uid=ds.SOPInstanceUID, generation=1)
        session.add(instance)
    else:
        instance.generation = (instance.generation or 1) + 1
        log.info("instance id=%s received with new content: generation %d", instance.id, instance.generation)
    instance.digest = digest
    instance.study = study
    instance.sop_class_uid = ds.SOPClassUID
    instance.series_instance_uid = ds.SeriesInstanceUID
    instance.transfer_syntax_uid = transfer_syntax
    instance.path = path
    instance.size_bytes = size
    instance.calling_aet = calling_aet[:16]
    instance.received_at = now
    instance.purged_at = None  # a resend brings the pixel data back
    jobs.enqueue(instance, session=session)
    return instance


def handle_store(event, ctx: StoreContext) -> Dataset | int:
    """C-STORE: write the Part 10 file atomically, record it and its job, then answer."""
    try:
        answer = _store(event, ctx)
    except Refusal as refusal:
        log.warning("C-STORE refused: 0x%04X %s", refusal.status, refusal)
        answer = status(refusal.status, str(refusal))
    except Exception as exc:  # never raise across the network boundary
        # No traceback: it would print the exception's message, which may quote data values.
        log.error("C-STORE failed unexpectedly at %s: %s", where(exc), describe(exc))
        answer = status(OUT_OF_RESOURCES, f"internal error: {type(exc).__name__}")
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


RECEIPT_TAGS = [
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "Rows", "Columns", "BitsAllocated",
    *PIXEL_DATA_TAGS,
]
"""What :func:`check_dataset` and :func:`record_instance` read: nothing else is parsed at receipt."""


def _check_element_count(path: Path, transfer_syntax: str, limit: int) -> None:
    """Refuse a data set with more than ``limit`` elements before anything parses it."""
    from arcade_pacs.deflate import meta_end

    syntax = UID(transfer_syntax)
    try:
        start = meta_end(path)
    except InflateError:
        return  # no usable File Meta: pydicom's parse will refuse it
    with open(path, "rb") as fp:
        try:
            # A deflated data set was inflated to Explicit VR Little Endian before this.
            implicit = syntax.is_implicit_VR and syntax != DeflatedExplicitVRLittleEndian
            little = syntax.is_little_endian or syntax == DeflatedExplicitVRLittleEndian
            count_elements(fp, start, path.stat().st_size, implicit, limit, little)
        except TooManyElements as exc:
            raise Refusal(OUT_OF_RESOURCES if "more than" in str(exc) else CANNOT_UNDERSTAND, str(exc)) from None


def _remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _store(event, ctx: StoreContext) -> Dataset | int:
    sop_class = str(event.context.abstract_syntax)
    transfer_syntax = str(event.context.transfer_syntax)
    settings = ctx.settings
    received = _received_file(event)
    if received is not None and ctx.receipt is not None and ctx.receipt.overflowed(received):
        raise Refusal(OUT_OF_RESOURCES, "instance exceeds the configured size limit")
    if settings.storage.min_free_mb > 0 and not disk_space(settings.storage.root, settings.storage.min_free_mb).ok:
        raise Refusal(OUT_OF_RESOURCES, "storage below its free-space watermark")
    data = None
    inflated = None
    try:
        if received is not None:
            size = received.stat().st_size
            header_file = received
            if transfer_syntax == DeflatedExplicitVRLittleEndian:
                inflated = received.with_name(received.name + ".inflated")
                header_file = inflated
                try:
                    inflate_to_file(received, inflated, settings.scp.max_inflated_bytes)
                except InflateError as exc:
                    status = OUT_OF_RESOURCES if "exceeds" in str(exc) else CANNOT_UNDERSTAND
                    raise Refusal(status, str(exc)) from None
            _check_element_count(header_file, transfer_syntax, settings.scp.max_elements)
            # Only the attributes receipt reads are kept; values over 64 KB (pixel data) stay on disk.
            ds = pydicom.dcmread(header_file, defer_size="64 KB", specific_tags=RECEIPT_TAGS)
        else:
            ds = event.dataset
            ds.file_meta = event.file_meta
            data = event.encoded_dataset(include_meta=True)
            size = len(data)
    except Refusal:
        _remove(inflated)
        raise
    except Exception as exc:
        _remove(inflated)
        raise Refusal(CANNOT_UNDERSTAND, f"data set cannot be decoded: {type(exc).__name__}") from exc
    try:
        if size > settings.scp.max_instance_bytes:
            raise Refusal(OUT_OF_RESOURCES, "instance exceeds the configured size limit")
        check_dataset(ds, sop_class, settings, transfer_syntax)
    except Refusal:
        raise
    except Exception as exc:  # malformed element values (FrameError included)
        raise Refusal(CANNOT_UNDERSTAND, f"data set cannot be parsed: {type(exc).__name__}") from exc
    finally:
        _remove(inflated)

    path = instance_path(settings.storage.root, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    try:
        if received is not None:
            commit_file(received, path)
        else:
            atomic_write(path, data)
    except OSError as exc:
        raise Refusal(OUT_OF_RESOURCES, f"storage failed: {exc.strerror or type(exc).__name__}") from exc

    faults.point("stored", str(ds.SOPInstanceUID))
    if data is not None:
        digest = hashlib.sha256(data).hexdigest()
    else:  # received in chunks: hash the committed file without reading it into memory
        with open(path, "rb") as stored:
            digest = hashlib.file_digest(stored, "sha256").hexdigest()
    calling = str(event.assoc.requestor.ae_title).strip()
    for attempt in range(2):  # a concurrent association may create the same study first
        with ctx.sessions() as session:
            try:
                instance = record_instance(ds, str(path), size, transfer_syntax, calling, session=session,
                                           digest=digest)
                session.commit()
                instance_id = instance.id
                break
            except IntegrityError:
                session.rollback()
                if attempt:
                    raise
    log.info("stored instance id=%s (%d bytes, %s)", instance_id, size, transfer_syntax)
    for callback in ctx.on_stored:
        callback(instance_id)
    return SUCCESS
