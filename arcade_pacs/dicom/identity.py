"""Whose instance this is: the patient key kept on a study, so two patients never share one.

A Study Instance UID is meant to be unique, but real sites see it shared by two patients
(modalities with poor UID generation, phantoms and test patients, studies merged in a PACS).
Receipt refuses an instance whose patient differs from its study's, and the report builder
refuses to put two patients in one SR.

The key is the Patient ID (0010,0020) qualified by the Issuer of Patient ID (0010,0021), as
dcm4chee-arc matches a patient (IHE PIX: an identifier means something only within its
assigning authority): two keys match when the IDs are equal and their issuers are equal or at
least one is absent. An empty Patient ID (Type 2, PS3.3 C.7.1.1) says nothing about who the
patient is, so Patient's Name and Birth Date stand in for it (names compared without case and
trailing empty components).

The database keeps digests (SHA-256), never the identifiers themselves: the key can be compared
and counted, while patient data stays in the stored files only. A digest of a short identifier
is not anonymous (it can be searched for), so it is treated like the identifiers it stands for:
never logged, never shown.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydicom import Dataset

PATIENT_TAGS = ["PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate"]
"""What :meth:`PatientKey.of` reads (for ``specific_tags`` when only a header is parsed)."""


def _digest(domain: str, value: str) -> str:
    return hashlib.sha256(f"{domain}\0{value}".encode()).hexdigest()


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip(" \0")


def _name(ds: Dataset) -> str:
    components = [c.strip() for c in _text(ds, "PatientName").upper().split("^")]
    while components and not components[-1]:
        components.pop()
    return "^".join(components)


class MixedPatients(ValueError):
    """Instances of more than one patient where one patient is required (one study, one SR)."""


@dataclass(frozen=True)
class PatientKey:
    """A patient as digests: ``patient`` of the Patient ID (or of Name and Birth Date when the ID
    is empty), ``issuer`` of the Issuer of Patient ID (``None`` when absent)."""

    patient: str
    issuer: str | None = None

    @classmethod
    def of(cls, ds: Dataset) -> PatientKey:
        """The key of a data set's patient (PS3.3 C.7.1.1 Patient Module)."""
        patient_id = _text(ds, "PatientID")
        if patient_id:
            patient = _digest("id", patient_id)
        else:
            patient = _digest("name+birth", f"{_name(ds)}\0{_text(ds, 'PatientBirthDate')}")
        issuer = _text(ds, "IssuerOfPatientID")
        return cls(patient, _digest("issuer", issuer) if issuer else None)

    def matches(self, other: PatientKey) -> bool:
        """Same patient: same ID, and the same issuer unless one of them names none."""
        if self.patient != other.patient:
            return False
        return self.issuer is None or other.issuer is None or self.issuer == other.issuer

    def refined(self, other: PatientKey) -> PatientKey:
        """This key with ``other``'s issuer when this one names none (after :meth:`matches`), so a
        later instance naming a third issuer does not match."""
        return self if self.issuer is not None or other.issuer is None else PatientKey(self.patient, other.issuer)


def one_patient(sources: list[Dataset]) -> PatientKey:
    """The one patient all ``sources`` belong to; :class:`MixedPatients` when they are more."""
    if not sources:
        raise ValueError("no source")
    key = PatientKey.of(sources[0])
    for index, source in enumerate(sources[1:], start=2):
        other = PatientKey.of(source)
        if not key.matches(other):
            raise MixedPatients(f"source {index} of {len(sources)} belongs to another patient than the ones before")
        key = key.refined(other)
    return key
