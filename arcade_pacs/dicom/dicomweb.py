"""DICOMweb Studies Store (STOW-RS, PS3.18 10.5): media types, statuses and the Store Instances
Response (PS3.18 Annex I), shared by the receiving side (:mod:`arcade_pacs.receive.stow`) and
the sending side (:mod:`arcade_pacs.send.stow`).

A request is ``multipart/related; type="application/dicom"``, one Part 10 instance per part
(PS3.18 8.6.1.2); the answer is an ``application/dicom+json`` data set that lists the stored
instances (Referenced SOP Sequence, with a Warning Reason when stored with a warning) and the
ones that were not (Failed SOP Sequence, with a Failure Reason). The HTTP status sums it up
(PS3.18 Table 10.5.3-1): 200 all stored, 202 some stored or stored with warnings, 409 none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom import Dataset

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
MULTIPART_RELATED = "multipart/related"

PROCESSING_FAILURE = 0x0110
"""Failure Reason: a general failure in processing the operation (PS3.18 Table I.2-2)."""
SOP_CLASS_NOT_SUPPORTED = 0x0122
"""Failure Reason: Referenced SOP Class not supported (PS3.18 Table I.2-2)."""
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
"""Failure Reason: Referenced Transfer Syntax not supported (PS3.18 Table I.2-2)."""


def is_stored(status: int) -> bool:
    """Success or a warning (PS3.4 B.2.3; Warning Reason values are Bxxx): the instance was kept."""
    return status == 0x0000 or 0xB000 <= status <= 0xBFFF


@dataclass(frozen=True)
class InstanceStatus:
    """The outcome for one instance: ``status`` 0 (stored), a Warning Reason or a Failure Reason.

    The UIDs are empty when a part could not be read far enough to find them.
    """

    sop_class_uid: str
    sop_instance_uid: str
    status: int

    @property
    def stored(self) -> bool:
        return is_stored(self.status)


def http_status(results: Iterable[InstanceStatus]) -> int:
    """200 when every instance was stored without warning, 202 when some were stored (or stored
    with a warning), 409 when none was (PS3.18 Table 10.5.3-1)."""
    results = list(results)
    stored = [r for r in results if r.stored]
    if not stored:
        return 409
    if len(stored) == len(results) and all(r.status == 0 for r in stored):
        return 200
    return 202


def store_response(results: Iterable[InstanceStatus], retrieve_url: str = "") -> dict:
    """The Store Instances Response Module (PS3.18 Table I.1-1) as DICOM JSON (PS3.18 F.2).

    Retrieve URL is Type 2: empty where the server offers no Studies Retrieve (WADO-RS).
    """
    response = Dataset()
    response.RetrieveURL = retrieve_url
    stored, failed = [], []
    for result in results:
        item = Dataset()
        item.ReferencedSOPClassUID = result.sop_class_uid
        item.ReferencedSOPInstanceUID = result.sop_instance_uid
        if result.stored:
            item.RetrieveURL = ""
            if result.status:
                item.WarningReason = result.status
            stored.append(item)
        else:
            item.FailureReason = result.status
            failed.append(item)
    if failed:
        response.FailedSOPSequence = failed
    if stored:
        response.ReferencedSOPSequence = stored
    return response.to_json_dict()


def parse_store_response(body: dict) -> list[InstanceStatus]:
    """Every instance a Store Instances Response names, stored ones first.

    Raises
    ------
    ValueError
        When ``body`` is not a DICOM JSON data set.
    """
    try:
        response = Dataset.from_json(body)
        return list(_items(response, "ReferencedSOPSequence", "WarningReason")) + list(
            _items(response, "FailedSOPSequence", "FailureReason"))
    except Exception as exc:  # pydicom raises several kinds on malformed DICOM JSON
        raise ValueError(f"not a Store Instances Response: {type(exc).__name__}") from None


def _items(response: Dataset, sequence: str, reason: str) -> Iterator[InstanceStatus]:
    for item in response.get(sequence, None) or []:
        status = item.get(reason, None)
        if status is None and reason == "FailureReason":
            status = PROCESSING_FAILURE  # a failure without its (Type 1) reason is still a failure
        yield InstanceStatus(str(item.get("ReferencedSOPClassUID", "") or ""),
                             str(item.get("ReferencedSOPInstanceUID", "") or ""), int(status or 0))
