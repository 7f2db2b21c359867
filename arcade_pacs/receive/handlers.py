"""C-ECHO and C-STORE handlers: store durably, queue the analysis, answer with a DICOM status.

A C-STORE handler never runs inference (the modality waits for the answer) and never lets an
exception cross the network boundary: every outcome is one of the named statuses below
(PS3.4 B.2.3, Storage Service Class statuses), with an Error Comment saying why.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.uid import UID
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import faults, jobs, metrics
from arcade_pacs.conformance import Contexts
from arcade_pacs.db.tables import Instance, Study, utcnow
from arcade_pacs.dicomattrs import grayscale_problem, number_of_frames
from arcade_pacs.settings import Settings
from arcade_pacs.storage import atomic_write, instance_path, safe_uid

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
        actual = len(ds.PixelData)
        if actual < frame_bytes * frames:
            raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data shorter than Rows x Columns x Frames")
        if actual - frame_bytes * frames >= frame_bytes:
            raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data holds more frames than Number of Frames")


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
        log.info("instance id=%s received again with the same content: nothing to do", instance.id)
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
        log.exception("C-STORE failed unexpectedly")
        answer = status(OUT_OF_RESOURCES, f"internal error: {type(exc).__name__}")
    code = answer if isinstance(answer, int) else int(answer.Status)
    metrics.CSTORE.labels(status=f"0x{code:04X}").inc()
    return answer


def _store(event, ctx: StoreContext) -> Dataset | int:
    sop_class = str(event.context.abstract_syntax)
    transfer_syntax = str(event.context.transfer_syntax)
    try:
        ds = event.dataset
        ds.file_meta = event.file_meta
        data = event.encoded_dataset(include_meta=True)
    except Exception as exc:
        raise Refusal(CANNOT_UNDERSTAND, f"data set cannot be decoded: {type(exc).__name__}") from exc
    try:
        check_dataset(ds, sop_class, ctx.settings, transfer_syntax)
    except Refusal:
        raise
    except Exception as exc:  # malformed element values (FrameError included)
        raise Refusal(CANNOT_UNDERSTAND, f"data set cannot be parsed: {type(exc).__name__}") from exc
    if len(data) > ctx.settings.scp.max_instance_bytes:
        raise Refusal(OUT_OF_RESOURCES, "instance exceeds the configured size limit")

    path = instance_path(
        ctx.settings.storage.root, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise Refusal(OUT_OF_RESOURCES, f"storage failed: {exc.strerror or exc}") from exc

    faults.point("stored", str(ds.SOPInstanceUID))
    digest = hashlib.sha256(data).hexdigest()
    calling = str(event.assoc.requestor.ae_title).strip()
    for attempt in range(2):  # a concurrent association may create the same study first
        with ctx.sessions() as session:
            try:
                instance = record_instance(ds, str(path), len(data), transfer_syntax, calling, session=session,
                                           digest=digest)
                session.commit()
                instance_id = instance.id
                break
            except IntegrityError:
                session.rollback()
                if attempt:
                    raise
    log.info("stored instance id=%s (%d bytes, %s)", instance_id, len(data), transfer_syntax)
    for callback in ctx.on_stored:
        callback(instance_id)
    return SUCCESS
