"""Receipt of one instance, however it arrived: Part 10 data in, a stored instance or a typed refusal out.

:func:`receive_part10` is the one receipt: the C-STORE handler calls it with the file pynetdicom
wrote (``receive/handlers.py``), and any other way in (DICOMweb STOW-RS) calls it the same way,
outside a pynetdicom event. It

1. refuses while the store is below its free-space watermark;
2. opens the data set through the door for DICOM input (:mod:`arcade_pacs.pipeline.part10`:
   size, inflated size, element count, declared dimensions, native Pixel Data present in full)
   and checks what receipt requires (:func:`check_dataset`: UIDs, the SOP class, an XA
   Secondary Capture);
3. checks whose instance it is against what is stored (:func:`admit`): an instance whose patient
   differs from its study's is refused, as is a SOP Instance UID already held in another study;
   both are audited (``receipt_conflicts``) and counted in ``GET /status``;
4. commits the file (fsync, rename) and its rows (instance, study, analysis job) together, under
   a lock per study, so a refusal never leaves a file behind and a replaced file never stays.

Every refusal is a :class:`Refusal` whose ``kind`` decides the DICOM status, in one table
(:data:`DICOM_STATUS`, PS3.4 B.2.3); its message is the Error Comment. Nothing here raises
anything else across the boundary but unexpected errors, which callers answer as 0xA700.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs import jobs
from arcade_pacs.core import faults
from arcade_pacs.db.tables import Instance, ReceiptConflict, Study, utcnow
from arcade_pacs.dicom.conformance import Contexts
from arcade_pacs.dicom.identity import PATIENT_TAGS, PatientKey
from arcade_pacs.pipeline.part10 import (
    InputError,
    Kind,
    Limits,
    check_image,
    frame_bytes,
    open_part10,
    pixel_data_lengths,
)
from arcade_pacs.settings import Settings
from arcade_pacs.store.files import commit_file, disk_space, incoming_dir, instance_path, safe_uid

if TYPE_CHECKING:
    from arcade_pacs.receive.audit import AssociationAudit
    from arcade_pacs.receive.transport import AssociationSlots, ChunkedReceipt

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
"""Refused: out of resources (storage failed, the object exceeds a configured limit, or it
arrived truncated: a modality sends it again)."""
CONFLICTING_PATIENT = 0xA778
"""Refused: the Patient ID differs from that of the study (dcm4chee-arc's
CONFLICTING_PID_NOT_ACCEPTED, in the Refused range of PS3.4 B.2.3)."""
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
"""Error: the data set does not match the SOP class (e.g. no Pixel Data, missing UIDs)."""
CANNOT_UNDERSTAND = 0xC210
"""Error: cannot understand (not decodable as DICOM, or content the plugin cannot analyse)."""
INSTANCE_OF_ANOTHER_STUDY = 0xC409
"""Error: the SOP Instance UID is already held in another study (dcm4chee-arc's
DIFF_STUDY_INSTANCE_UID, in the Cannot Understand range of PS3.4 B.2.3)."""
SOP_CLASS_NOT_SUPPORTED = 0x0122
"""Refused: SOP Class not supported (PS3.7 C.4.2), for ways in without a negotiated context."""

PIXEL_DATA_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class ReceiptKind(StrEnum):
    """Why receipt refuses, beyond what the door finds wrong with the data (:class:`Kind`)."""

    NO_SPACE = "no-space"
    """The store is below its free-space watermark, or writing failed."""
    PATIENT_CONFLICT = "patient-conflict"
    """The instance's patient differs from its study's."""
    STUDY_CONFLICT = "study-conflict"
    """The SOP Instance UID is already held in another study (new content must keep its study)."""
    SOP_CLASS_NOT_SUPPORTED = "sop-class-not-supported"
    """A SOP class the plugin does not store (only where no presentation context decided it)."""


DICOM_STATUS: dict[Kind | ReceiptKind, int] = {
    Kind.UNKNOWN_FORMAT: CANNOT_UNDERSTAND,
    Kind.UNREADABLE: CANNOT_UNDERSTAND,
    Kind.UNSUPPORTED: CANNOT_UNDERSTAND,
    Kind.INCONSISTENT: DATASET_DOES_NOT_MATCH_SOP_CLASS,
    Kind.TOO_LARGE: OUT_OF_RESOURCES,
    Kind.TRUNCATED: OUT_OF_RESOURCES,
    ReceiptKind.NO_SPACE: OUT_OF_RESOURCES,
    ReceiptKind.PATIENT_CONFLICT: CONFLICTING_PATIENT,
    ReceiptKind.STUDY_CONFLICT: INSTANCE_OF_ANOTHER_STUDY,
    ReceiptKind.SOP_CLASS_NOT_SUPPORTED: SOP_CLASS_NOT_SUPPORTED,
}
"""The DICOM status (PS3.4 B.2.3) of each refusal, by kind: the one place a status is chosen."""


class Refusal(Exception):
    """An instance refused at receipt: ``kind`` says why (its DICOM status: ``status``), the
    message becomes the Error Comment (no data values)."""

    def __init__(self, kind: Kind | ReceiptKind, reason: str):
        super().__init__(reason)
        self.kind = kind

    @property
    def status(self) -> int:
        return DICOM_STATUS[self.kind]


@dataclass
class StoreContext:
    """Everything receipt needs, created once at start-up and passed explicitly."""

    settings: Settings
    sessions: sessionmaker[Session]
    contexts: Contexts
    on_stored: list[Callable[[int], None]] = field(default_factory=list)
    receipt: ChunkedReceipt | None = None  # set by start_scp: data sets arrive as files
    slots: AssociationSlots | None = None  # set by start_scp: established associations
    audit: AssociationAudit | None = None  # set by start_scp: one row per association
    _last_sweep: float = 0.0
    _sweep_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Stored:
    """An instance receipt kept: its row, and whether it was byte for byte what was held already."""

    instance_id: int
    sop_instance_uid: str
    study_instance_uid: str
    size: int
    unchanged: bool


RECEIPT_TAGS = [
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "Rows", "Columns", "BitsAllocated",
    *PATIENT_TAGS, *PIXEL_DATA_TAGS,
]
"""What receipt reads: nothing else is parsed."""

_STUDY_LOCKS = [threading.Lock() for _ in range(64)]
"""Receipts of one study run their identity check, file commit and row commit in turn (in this
process; another process is caught by the unique columns and checked again)."""


def _lock(study_uid: str) -> threading.Lock:
    return _STUDY_LOCKS[int(hashlib.sha256(study_uid.encode()).hexdigest()[:8], 16) % len(_STUDY_LOCKS)]


def check_dataset(ds: Dataset, sop_class_uid: str, settings: Settings, transfer_syntax: str | None = None,
                  file_size: int | None = None) -> None:
    """Refuse at receipt what can be refused without decoding pixels.

    The door's checks of the image (:func:`~arcade_pacs.pipeline.part10.check_image`: Pixel
    Data, grayscale, declared dimensions within the limits, native Pixel Data of Rows x Columns
    x Number of Frames x Bits Allocated, PS3.5 8.1.1, present in full in a file of
    ``file_size``), and receipt's own: the SOP Class of the context, valid UIDs, an XA Secondary
    Capture, no more native frames than declared. Encapsulated data is checked by the decoder.

    Raises
    ------
    Refusal
        With its kind (its status) and reason.
    """
    if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise Refusal(Kind.UNREADABLE, "not a DICOM data set (no SOP Class or Instance UID)")
    if ds.get("SOPClassUID") != sop_class_uid:
        raise Refusal(Kind.INCONSISTENT, "SOP Class UID does not match the context")
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        try:
            safe_uid(ds.get(keyword, ""))
        except ValueError:
            raise Refusal(Kind.INCONSISTENT, f"missing or invalid {keyword}") from None
    if sop_class_uid == SECONDARY_CAPTURE and str(ds.get("Modality", "")).strip().upper() != "XA":
        # A screenshot or scanned document is not an angiogram; only XA secondary captures
        # (e.g. exported cine frames) are analysed. PS3.3 A.8.1: Modality describes the source.
        raise Refusal(Kind.UNSUPPORTED, "Secondary Capture is analysed only with Modality XA")
    try:
        shape = check_image(ds, Limits.of(settings), syntax=transfer_syntax, file_size=file_size)
    except InputError as exc:
        raise Refusal(exc.kind, str(exc)) from None
    encapsulated = UID(transfer_syntax or ds.file_meta.TransferSyntaxUID).is_encapsulated
    if not encapsulated and "PixelData" in ds:
        one = frame_bytes(ds, shape)
        if pixel_data_lengths(ds, file_size)[0] - one * shape.frames >= one:
            raise Refusal(Kind.INCONSISTENT, "Pixel Data holds more frames than Number of Frames")


def _digest(path: Path) -> str:
    with open(path, "rb") as stored:
        return hashlib.file_digest(stored, "sha256").hexdigest()


def _part10_file(source: bytes | Dataset, folder: Path) -> Path:
    """Write Part 10 bytes, or a data set with its File Meta, to a new file in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="recv-", suffix=".dcm", delete=False) as handle:
        if isinstance(source, Dataset):
            source.save_as(handle, enforce_file_format=True)
        else:
            handle.write(source)
    return Path(handle.name)


def _open(path: Path, sop_class: str | None, transfer_syntax: str | None, settings: Settings,
          contexts: Contexts) -> tuple[Dataset, str, str]:
    """The received file's header through the door, checked; ``(data set, SOP class, syntax)``."""
    inflated = path.with_name(path.name + ".inflated")
    try:
        try:
            ds = open_part10(path, Limits.of(settings), tags=RECEIPT_TAGS, inflate_to=inflated)
        except InputError as exc:
            raise Refusal(exc.kind, str(exc)) from None
        syntax = str(transfer_syntax or ds.file_meta.get("TransferSyntaxUID", ""))
        if not sop_class:  # no presentation context chose it (STOW-RS): the data set says
            sop_class = str(ds.get("SOPClassUID", ""))
            if sop_class not in contexts.storage:
                raise Refusal(ReceiptKind.SOP_CLASS_NOT_SUPPORTED, "SOP Class not supported")
        header = inflated if inflated.exists() else path
        # A deflated data set was inflated to Explicit VR Little Endian before it was read.
        read_as = syntax if syntax != DeflatedExplicitVRLittleEndian else str(ds.file_meta.TransferSyntaxUID)
        try:
            check_dataset(ds, sop_class, settings, read_as, file_size=header.stat().st_size)
        except Refusal:
            raise
        except Exception as exc:  # malformed element values
            raise Refusal(Kind.UNREADABLE, f"data set cannot be parsed: {type(exc).__name__}") from exc
        return ds, sop_class, syntax
    finally:
        inflated.unlink(missing_ok=True)


def receive_part10(ctx: StoreContext, source: Path | bytes | Dataset, *, calling_aet: str,
                   sop_class: str | None = None, transfer_syntax: str | None = None) -> Stored:
    """Store one instance durably and queue its analysis, or refuse it.

    ``source`` is a Part 10 file (moved into the store when kept; left in place when refused,
    for its writer to remove), Part 10 bytes, or a data set with its File Meta. ``sop_class``
    and ``transfer_syntax`` are those of the presentation context when one was negotiated;
    otherwise the File Meta's, and the SOP class must be one the SCP stores.

    Raises
    ------
    Refusal
        The kind says why; ``status`` is its DICOM status (:data:`DICOM_STATUS`).
    """
    settings = ctx.settings
    if settings.storage.min_free_mb > 0 and not disk_space(settings.storage.root, settings.storage.min_free_mb).ok:
        raise Refusal(ReceiptKind.NO_SPACE, "storage below its free-space watermark")
    owned = not isinstance(source, Path)
    path = source if isinstance(source, Path) else _part10_file(source, incoming_dir(settings.storage.root))
    try:
        size = path.stat().st_size
        if size > settings.scp.max_instance_bytes:
            raise Refusal(Kind.TOO_LARGE, "instance exceeds the configured size limit")
        ds, sop_class, syntax = _open(path, sop_class, transfer_syntax, settings, ctx.contexts)
        stored = _commit(ctx, ds, path, size, syntax, calling_aet[:16], _digest(path))
    except BaseException:
        if owned:
            path.unlink(missing_ok=True)
        raise
    log.info("stored instance id=%s (%d bytes, %s)%s", stored.instance_id, size, syntax,
             " unchanged" if stored.unchanged else "")
    for callback in ctx.on_stored:
        callback(stored.instance_id)
    return stored


def _commit(ctx: StoreContext, ds: Dataset, received: Path, size: int, syntax: str, calling: str,
            digest: str) -> Stored:
    """Admit the instance, commit its file and rows together (see the module docstring, step 4)."""
    root = ctx.settings.storage.root
    path = instance_path(root, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    with _lock(str(ds.StudyInstanceUID)):
        for attempt in range(2):  # another process may create the same study or instance first
            with ctx.sessions() as session:
                try:
                    held = admit(ds, digest, session=session)
                except Refusal as refusal:
                    session.rollback()
                    _audit_conflict(ctx, ds, calling, refusal)
                    raise
                replaced = held.path if held is not None and held.path != str(path) else None
                unchanged = held is not None and held.digest == digest
                try:
                    commit_file(received, path)
                except OSError as exc:
                    raise Refusal(ReceiptKind.NO_SPACE, f"storage failed: {exc.strerror or type(exc).__name__}") from exc
                faults.point("stored", str(ds.SOPInstanceUID))
                try:
                    instance = record_instance(ds, str(path), size, syntax, calling, session=session, digest=digest)
                    session.commit()
                except IntegrityError:
                    session.rollback()
                    received = _park(path, received)  # taken back: admitted again on the next attempt
                    if attempt:
                        raise
                    continue
                if replaced:  # new content under a known SOP Instance UID, in another series: no orphan
                    Path(replaced).unlink(missing_ok=True)
                return Stored(instance.id, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), size, unchanged)
    raise AssertionError("unreachable")  # pragma: no cover


def _park(path: Path, received: Path) -> Path:
    """Move a committed file back to where it was received (its rows were not committed)."""
    path.replace(received)
    return received


def study_key(study: Study, *, session: Session) -> PatientKey | None:
    """The patient key of ``study``; for a study received before keys were kept, the key of
    its first instance whose header can still be read (then kept on the study)."""
    if study.patient_key is not None:
        return PatientKey(study.patient_key, study.patient_issuer_key)
    for instance in sorted(study.instances, key=lambda i: i.id):
        try:
            key = PatientKey.of(pydicom.dcmread(instance.path, stop_before_pixels=True, specific_tags=PATIENT_TAGS))
        except Exception:  # a file gone: the next one tells
            continue
        study.patient_key, study.patient_issuer_key = key.patient, key.issuer
        return key
    return None


def admit(ds: Dataset, digest: str | None, *, session: Session) -> Instance | None:
    """Check whose instance ``ds`` is against what is held; the instance row it replaces, if any.

    - A SOP Instance UID already held in another study is refused (``STUDY_CONFLICT``): new
      content under a known UID must keep the study of the instance it replaces. A byte-for-byte
      resend (same ``digest``) is always admitted: it changes nothing.
    - An instance whose patient (:class:`~arcade_pacs.dicom.identity.PatientKey`) differs from its
      study's is refused (``PATIENT_CONFLICT``).
    """
    instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
    if instance is not None and digest is not None and instance.digest == digest:
        return instance
    if instance is not None and instance.study.study_instance_uid != ds.StudyInstanceUID:
        raise Refusal(ReceiptKind.STUDY_CONFLICT,
                      f"SOP Instance UID already held in another study (study id={instance.study_id})")
    study = session.scalar(select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID))
    if study is not None:
        known = study_key(study, session=session)
        if known is not None and not known.matches(PatientKey.of(ds)):
            raise Refusal(ReceiptKind.PATIENT_CONFLICT,
                          f"Patient ID differs from that of the study's patient (study id={study.id})")
    return instance


def _audit_conflict(ctx: StoreContext, ds: Dataset, calling: str, refusal: Refusal) -> None:
    """One ``receipt_conflicts`` row and a log line (UIDs and ids, no patient data)."""
    if refusal.kind not in (ReceiptKind.PATIENT_CONFLICT, ReceiptKind.STUDY_CONFLICT):
        return
    kind = "patient" if refusal.kind == ReceiptKind.PATIENT_CONFLICT else "study"
    log.warning("instance %s of study %s refused (0x%04X): %s", ds.SOPInstanceUID, ds.StudyInstanceUID,
                refusal.status, refusal)
    try:
        with ctx.sessions() as session:
            if kind == "patient":
                study_id = session.scalar(select(Study.id).where(Study.study_instance_uid == ds.StudyInstanceUID))
            else:
                study_id = session.scalar(select(Instance.study_id).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
            session.add(ReceiptConflict(kind=kind, sop_instance_uid=str(ds.SOPInstanceUID),
                                        study_instance_uid=str(ds.StudyInstanceUID), study_id=study_id,
                                        calling_aet=calling[:16], reason=str(refusal)))
            session.commit()
    except Exception:  # the refusal stands even if its audit row cannot be written
        log.exception("receipt conflict not audited")


def record_instance(
    ds: Dataset, path: str, size: int, transfer_syntax: str, calling_aet: str, *, session: Session,
    digest: str | None = None,
) -> Instance:
    """Create or update the Instance row, mark its study as needing a report, queue the analysis.
    Call :func:`admit` first: this keeps, it does not judge.

    A resend of an instance already held with the same ``digest`` (SHA-256 of the stored file)
    changes nothing: it is acknowledged, not analysed again, and its study gets no new SR. New
    content under a known SOP Instance UID raises the instance's generation and queues it again
    (a run still busy with the old content cannot record its result; see ``jobs.complete``).
    A new study keeps the patient key of its first instance.
    """
    now = utcnow()
    instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
    if instance is not None and digest is not None and instance.digest == digest:
        log.info("instance id=%s received again with the same content: nothing to analyse", instance.id)
        instance.purged_at = None  # the file was rewritten whole: pixels deleted by retention are back
        return instance
    key = PatientKey.of(ds)
    study = session.scalar(select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID))
    if study is None:
        study = Study(study_instance_uid=ds.StudyInstanceUID, patient_key=key.patient, patient_issuer_key=key.issuer)
        session.add(study)
    elif study.patient_key is None:  # received before keys were kept, and no header left to tell
        study.patient_key, study.patient_issuer_key = key.patient, key.issuer
    elif study.patient_issuer_key is None and key.issuer is not None:
        study.patient_issuer_key = key.issuer  # the study's patient now has an issuer: a third one will not match
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
    session.flush()
    return instance
