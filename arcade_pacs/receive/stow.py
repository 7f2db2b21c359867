"""STOW-RS receipt (PS3.18 10.5): instances that arrive over HTTP take the C-STORE's receipt.

A request body is ``multipart/related; type="application/dicom"``, one Part 10 file per part.
It is read as it arrives, never held whole in memory: :class:`MultipartSpool` (python-multipart's
streaming parser) writes each part to its own file under ``<storage root>/.incoming/`` and counts
the body against ``dicomweb.max_request_bytes``. Only a body that ended with its closing
delimiter is received; a malformed or truncated one stores nothing. Then each part goes, one
after the other, through :func:`receive_part`, to the SCP's one receipt
(:func:`arcade_pacs.receive.receipt.receive_part10`):
the same checks and bounds as a C-STORE, the same atomic, fsync-ed commit (a rename: the part
was written on the store's file system), the same Instance row and analysis job. A part that
fails is reported with its Failure Reason (PS3.18 Table I.2-2) and never undoes another part:
each stored instance is committed before the next part is looked at.

Every request leaves an association-like audit row (``protocol = "dicomweb"``) naming the
client by its ``[[dicomweb_senders]]`` name: :func:`record_request`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.db.tables import Association, utcnow
from arcade_pacs.dicom import dicomweb
from arcade_pacs.dicom.deflate import InflateError, meta_end
from arcade_pacs.dicom.dicomweb import InstanceStatus
from arcade_pacs.receive.audit import Outcome
from arcade_pacs.receive.receipt import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    SUCCESS,
    Refusal,
    StoreContext,
    receive_part10,
)
from arcade_pacs.store.files import incoming_dir

log = logging.getLogger(__name__)

PART_PREFIX = "stow-"
"""Name prefix of a part's file in ``.incoming/`` (removed at start, like every file there)."""
MAX_PARTS = 10_000
"""Most parts in one request (each becomes a file before any is received)."""
MAX_PART_HEADERS = 8192
"""Most bytes of one part's header lines."""
MAX_META_BYTES = 65536
"""Largest File Meta Information group accepted (it holds a few UIDs and names)."""
STUDY_WINDOW = 1 << 20
"""Bytes of a data set searched for its Study Instance UID when the request names a study."""
STUDY_UID = Tag("StudyInstanceUID")


class MalformedBody(ValueError):
    """The body is not a complete ``multipart/related`` message with the announced boundary (400)."""


class BodyTooLarge(ValueError):
    """The body passed ``dicomweb.max_request_bytes`` while it arrived (413)."""


@dataclass
class Part:
    """One body part, written to ``path`` (``content_type`` as its header said, lower case)."""

    path: Path
    content_type: str = ""
    size: int = 0


class MultipartSpool:
    """Parses a multipart body as it arrives and writes each part to a file in ``folder``.

    Feed it the body's chunks with :meth:`feed`, then :meth:`finish` returns the parts, or raises
    :class:`MalformedBody` when the closing delimiter never came. :meth:`discard` removes every
    file it wrote that nobody took (call it in a ``finally``).
    """

    def __init__(self, boundary: str, folder: Path, max_bytes: int):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.received = 0
        self.parts: list[Part] = []
        self._ended = False
        self._file = None
        self._part: Part | None = None
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0
        try:
            self._parser = MultipartParser(boundary.encode("latin-1"), callbacks={
                "on_part_begin": self._begin, "on_header_field": self._on_field, "on_header_value": self._on_value,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
                "on_part_data": self._data, "on_part_end": self._end, "on_end": self._finished,
            })
        except Exception as exc:  # e.g. a boundary longer than python-multipart allows
            raise MalformedBody(f"unusable boundary: {exc}") from None

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the body, writing part data as it comes."""
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise BodyTooLarge(f"request body larger than {self.max_bytes} bytes")
        if self._ended:
            return  # the epilogue after the closing delimiter is ignored (RFC 2046 5.1.1)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedBody(f"not a multipart body with the announced boundary: {exc}") from None

    def finish(self) -> list[Part]:
        """The parts of a complete body; :class:`MalformedBody` when it ended early."""
        if not self._ended:
            raise MalformedBody("the body ended before its closing boundary delimiter (truncated)")
        return self.parts

    def discard(self) -> None:
        """Close and remove every part file still in ``folder``."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for part in self.parts + ([self._part] if self._part is not None else []):
            part.path.unlink(missing_ok=True)

    # python-multipart's callbacks
    def _begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise MalformedBody(f"more than {MAX_PARTS} parts in one request")
        self._headers = {}
        self._header_bytes = 0

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADERS:
            raise MalformedBody(f"part headers longer than {MAX_PART_HEADERS} bytes")

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_done(self) -> None:
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=PART_PREFIX, suffix=".dcm")
        self._file = os.fdopen(fd, "wb")
        content_type = self._headers.get("content-type", "").split(";")[0].strip().lower()
        self._part = Part(Path(name), content_type)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            self._part.size += end - start

    def _end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.parts.append(self._part)
            self._part = None

    def _finished(self) -> None:
        self._ended = True


@dataclass(frozen=True)
class Part10Header:
    """What the File Meta Information (PS3.10 7.1) says a Part 10 file holds."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    data_set_start: int


def read_part10_header(path: Path) -> Part10Header:
    """The File Meta Information of the Part 10 file at ``path``, read within ``MAX_META_BYTES``.

    Raises
    ------
    ValueError
        When there is no preamble, ``DICM`` prefix and File Meta Information Group Length
        first, or the group is too long or lacks its UIDs.
    """
    try:
        end = meta_end(path)
    except InflateError:
        raise ValueError("not a DICOM Part 10 file (no preamble, DICM prefix and File Meta group length)") from None
    if end - 132 > MAX_META_BYTES:
        raise ValueError("File Meta Information longer than 64 KB")
    with open(path, "rb") as fp:
        head = fp.read(end)
    try:
        meta = dcmread(BytesIO(head)).file_meta  # only the File Meta group was read: an empty data set
    except Exception as exc:
        raise ValueError(f"File Meta Information cannot be read: {type(exc).__name__}") from None
    values = [str(meta.get(k, "") or "").strip() for k in
              ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")]
    if not all(values):
        raise ValueError("File Meta Information lacks its SOP Class, SOP Instance or Transfer Syntax UID")
    return Part10Header(*values, data_set_start=end)


def study_uid_of(path: Path, header: Part10Header) -> str | None:
    """The Study Instance UID of a Part 10 file, looked for in the first ``STUDY_WINDOW`` bytes of
    its data set (inflated first when Deflated); ``None`` when it is not there.

    Only the elements before (0020,000D) are walked (their values skipped), so a hostile file
    costs at most the window, whatever it declares.
    """
    with open(path, "rb") as fp:
        fp.seek(header.data_set_start)
        head = fp.read(STUDY_WINDOW)
    syntax = UID(header.transfer_syntax_uid)
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    if syntax == DeflatedExplicitVRLittleEndian:
        try:
            head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(head, STUDY_WINDOW)
        except zlib.error:
            return None
        implicit, little = False, True
    try:
        ds = read_dataset(BytesIO(head), implicit, little, stop_when=lambda tag, vr, length: tag > STUDY_UID,
                          specific_tags=[STUDY_UID])
        value = ds.get("StudyInstanceUID")
    except Exception:  # cut in the middle of an element, or not parseable: not found
        return None
    return str(value).strip().rstrip("\x00") if value else None


@dataclass(frozen=True)
class Receipt:
    """What the receipt answered for one Part 10 file: a C-STORE status (PS3.4 B.2.3) or a
    Failure Reason (PS3.18 Table I.2-2), with the reason and the UIDs its File Meta named."""

    status: int
    comment: str | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""


def receive_part(path: Path, source: str, ctx: StoreContext, study: str | None = None) -> Receipt:
    """Receive the Part 10 file at ``path`` as a C-STORE from ``source`` would be. Never raises.

    What an association negotiates for a C-STORE (the SOP class and transfer syntax, among the
    declared contexts) comes here from the file's own File Meta Information, refused with the
    Failure Reasons of PS3.18 Table I.2-2; the rest is the one receipt's
    (:func:`arcade_pacs.receive.receipt.receive_part10`), whose refusals carry their C-STORE status.
    A committed file was moved into the store; any other is removed. With ``study``
    (``POST /dicom-web/studies/{study}``) an instance of another study is refused.
    """
    refs: dict[str, str] = {}
    try:
        try:
            header = read_part10_header(path)
        except ValueError as exc:
            return Receipt(CANNOT_UNDERSTAND, str(exc))
        refs = {"sop_class_uid": header.sop_class_uid, "sop_instance_uid": header.sop_instance_uid}
        if header.sop_class_uid not in ctx.contexts.storage:
            return Receipt(dicomweb.SOP_CLASS_NOT_SUPPORTED, "SOP class not accepted (see the conformance statement)",
                           **refs)
        if header.transfer_syntax_uid not in ctx.contexts.transfer_syntaxes:
            return Receipt(dicomweb.TRANSFER_SYNTAX_NOT_SUPPORTED, "transfer syntax not accepted", **refs)
        if study is not None and study_uid_of(path, header) != study:
            return Receipt(DATASET_DOES_NOT_MATCH_SOP_CLASS, "not an instance of the study the request names", **refs)
        receive_part10(ctx, path, calling_aet=source, sop_class=header.sop_class_uid,
                       transfer_syntax=header.transfer_syntax_uid)
        return Receipt(SUCCESS, None, **refs)
    except Refusal as refusal:
        log.warning("STOW-RS part refused: 0x%04X %s", refusal.status, refusal)
        return Receipt(refusal.status, str(refusal), **refs)
    except Exception as exc:  # never let one part break the request
        log.error("STOW-RS part failed unexpectedly: %s", type(exc).__name__)
        return Receipt(dicomweb.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}", **refs)
    finally:
        path.unlink(missing_ok=True)


@dataclass
class StoreOutcome:
    """One request's outcome: per-instance results, in the order of the parts, and their reasons."""

    results: list[InstanceStatus] = field(default_factory=list)
    comments: list[str | None] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.results)

    @property
    def refused(self) -> int:
        return len(self.results) - self.stored


def receive_parts(parts: list[Part], source: str, ctx: StoreContext, study: str | None = None) -> StoreOutcome:
    """Receive every part in order (a part whose Content-Type is not ``application/dicom`` is
    refused as not understood); each one is committed or refused on its own."""
    outcome = StoreOutcome()
    for part in parts:
        if part.content_type not in ("", dicomweb.DICOM):
            part.path.unlink(missing_ok=True)
            receipt = Receipt(CANNOT_UNDERSTAND, "part is not application/dicom")
        else:
            receipt = receive_part(part.path, source, ctx, study)
        outcome.results.append(InstanceStatus(receipt.sop_class_uid, receipt.sop_instance_uid, receipt.status))
        outcome.comments.append(receipt.comment)
    return outcome


class StowReceiver:
    """What ``POST /dicom-web/studies`` needs from the running SCP, created once at start-up."""

    def __init__(self, ctx: StoreContext):
        self.ctx = ctx
        self.settings = ctx.settings
        self.slots = threading.BoundedSemaphore(self.settings.dicomweb.max_concurrent_requests)

    def sender(self, token: str | None) -> str | None:
        """The configured sender whose token this is, by name; ``None`` for no or a wrong token.

        Every configured token is compared (in constant time), so the answer's timing does not
        tell which one came close.
        """
        import secrets

        found = None
        given = (token or "").encode()
        for sender in self.settings.dicomweb_senders:
            if secrets.compare_digest(given, sender.token.get_secret_value().encode()) and token:
                found = sender.name
        return found

    def spool(self, boundary: str) -> MultipartSpool:
        return MultipartSpool(boundary, incoming_dir(self.settings.storage.root), self.settings.dicomweb.max_request_bytes)

    def record(self, *, client: str, address: str, port: int, started_at: datetime, outcome: str,
               reason: str | None = None, stored: int = 0, refused: int = 0, received: int = 0) -> None:
        record_request(self.ctx.sessions, client=client, called=self.settings.scp.ae_title, address=address,
                       port=port, started_at=started_at, outcome=outcome, reason=reason, stored=stored,
                       refused=refused, received=received)


def record_request(sessions: sessionmaker[Session], *, client: str, called: str, address: str, port: int,
                   started_at: datetime, outcome: str, reason: str | None, stored: int, refused: int,
                   received: int) -> None:
    """Write the audit row of one STOW-RS request (never raises: the audit never fails a request).

    ``outcome`` is :class:`~arcade_pacs.receive.audit.Outcome`'s: ``released`` for a request
    answered with per-instance results, ``rejected`` for one refused as a whole (token, media
    type, size, syntax, busy), ``aborted`` for a client that went away mid-body.
    """
    try:
        with sessions() as session:
            session.add(Association(
                calling_aet=client[:16], called_aet=called[:16], peer_address=address[:255], peer_port=port,
                started_at=started_at, ended_at=utcnow(), outcome=outcome, reason=reason,
                instances_stored=stored, instances_refused=refused, bytes_received=received, protocol="dicomweb",
            ))
            session.commit()
    except Exception:
        log.exception("STOW-RS audit row not written (%s)", outcome)


__all__ = ["Outcome", "MultipartSpool", "MalformedBody", "BodyTooLarge", "Part", "Receipt", "StowReceiver",
           "StoreOutcome", "receive_part", "receive_parts", "read_part10_header", "record_request"]
