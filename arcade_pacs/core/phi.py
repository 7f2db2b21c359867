"""Error descriptions safe for logs and the admin: technical facts, never data values.

Libraries quote the values they choke on ("Invalid value for VR DA: '19010203'", "could not
convert string to float: 'Smith'"), and a value of an incoming data set may be a patient's name
or birth date. :func:`describe` keeps an exception's type and wording but replaces every quoted
value with ``'...'``, except DICOM tags such as ``'(FE00,00FF)'`` and attribute names such as
``'Bits Allocated'``, which are about the file's structure. Logs and stored errors carry database ids, UIDs and statuses, and these descriptions.
"""

from __future__ import annotations

import re

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_TAG = re.compile(r"""^['"]\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)['"]$""")
MAX_LENGTH = 500


def _dicom_names() -> frozenset[str]:
    from pydicom.datadict import DicomDictionary

    names = set()
    for entry in DicomDictionary.values():
        names.update((entry[2], entry[4]))  # name and keyword, e.g. "Bits Allocated", "BitsAllocated"
    return frozenset(n for n in names if n)


_NAMES: frozenset[str] | None = None


def _keep(quoted: str) -> bool:
    """Quoted text that names structure, not content: a tag, or an attribute's name or keyword."""
    global _NAMES
    if _TAG.match(quoted):
        return True
    if _NAMES is None:
        _NAMES = _dicom_names()
    return quoted[1:-1] in _NAMES


def scrub(text: str) -> str:
    """``text`` with quoted values replaced by ``'...'`` (quoted DICOM tags and attribute names
    kept), on one line."""
    text = _QUOTED.sub(lambda m: m.group(0) if _keep(m.group(0)) else "'...'", str(text))
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())[:MAX_LENGTH]


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` of ``exc`` with values scrubbed (see :func:`scrub`), one line."""
    message = scrub(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def where(exc: BaseException) -> str:
    """``module.py:line`` of the innermost frame of ``exc``'s traceback (for unexpected errors,
    where a full traceback would print the exception's message, values included)."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


class PhiFilter:
    """A logging filter for the process's handlers: no record carries data values.

    Messages of other libraries' loggers (pydicom quotes invalid values, e.g. a whole header
    misread as a UID) are scrubbed; a traceback, whose text would print the exception's
    message, is replaced by the scrubbed exception and where it was raised. The plugin's own
    messages are written to carry ids, UIDs and statuses only, and are kept as they are.
    """

    def filter(self, record) -> bool:
        if not record.name.startswith("arcade_pacs"):
            record.msg, record.args = scrub(record.getMessage()), ()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} [{describe(exc)} at {where(exc)}]", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
