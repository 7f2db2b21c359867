"""Source headers made fit to be copied into the SR: valid values, or none.

The SR copies the patient and study attributes of its source images (PS3.3 C.7.1.1 Patient,
C.7.2.1 General Study modules). Real modalities send values those modules do not allow, such
as Patient's Sex ``?`` (PS3.3 C.7.1.1: only ``M``, ``F``, ``O``), a date that is not a DA, or an
attribute left out altogether, and highdicom rightly refuses to write them. A result must never
be held back by such a header: :func:`sanitize_header` returns a copy in which each of these
attributes is valid, or present and empty (all are Type 2 in the SR, so empty means
"unknown"), and logs a warning that names the attribute, never its value (no patient data in
logs).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

from pydicom import Dataset
from pydicom.valuerep import DA, TM

log = logging.getLogger(__name__)

PATIENT_SEX_VALUES = ("M", "F", "O")
"""PS3.3 C.7.1.1: the only values of Patient's Sex (0010,0040); empty means unknown."""

SHORT_STRING_MAX = 16  # SH


def _sex(value) -> str | None:
    text = str(value).strip().upper()
    return text if text in PATIENT_SEX_VALUES else None


def _date(value) -> str | None:
    text = str(value).strip()
    try:
        return str(DA(text)) if text else ""
    except ValueError:
        return None


def _time(value) -> str | None:
    text = str(value).strip()
    try:
        TM(text)
    except ValueError:
        return None
    return text


def _max_length(limit: int) -> Callable[[object], str | None]:
    def check(value) -> str | None:
        text = str(value)
        return text if len(text) <= limit and "\\" not in text else None

    return check


CHECKS: dict[str, Callable[[object], str | None]] = {
    "PatientSex": _sex,
    "PatientBirthDate": _date,
    "StudyDate": _date,
    "StudyTime": _time,
    "AccessionNumber": _max_length(SHORT_STRING_MAX),
    "StudyID": _max_length(SHORT_STRING_MAX),
}
"""Attribute -> function returning its valid form, or ``None`` when it has none.

Patient ID and Patient's Name are never changed: the SR must file under the same patient as its
images, and an altered identity is worse than an odd one (highdicom accepts both as they are)."""

REQUIRED_PRESENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                    "StudyID", "StudyDate", "StudyTime")
"""Type 2 attributes the SR copies by name: absent in the source means present and empty in the copy."""


def sanitize_header(source: Dataset) -> Dataset:
    """A copy of ``source`` whose patient/study attributes the SR can carry unchanged.

    Valid values are kept as they are (a value is never invented or "corrected" into another
    meaning); an invalid one is emptied, and a missing Type 2 attribute is added empty, each
    with a warning naming the attribute. The pixel data, if any, is not copied.
    """
    header = Dataset()
    for element in source:
        if element.keyword != "PixelData":
            header.add(copy.deepcopy(element))
    header.file_meta = copy.deepcopy(getattr(source, "file_meta", Dataset()))
    for keyword, check in CHECKS.items():
        value = header.get(keyword)
        if value is None or value == "":
            continue
        valid = check(value)
        if valid is None:
            log.warning("source attribute %s has a value the SR cannot carry; copied empty", keyword)
            setattr(header, keyword, "")
        elif valid != value:
            setattr(header, keyword, valid)
    for keyword in REQUIRED_PRESENT:
        if keyword not in header:
            log.warning("source attribute %s is missing; copied empty", keyword)
            setattr(header, keyword, "")
    return header
