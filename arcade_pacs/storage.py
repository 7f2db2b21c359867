"""Durable files: atomic writes (temp file, fsync, rename, fsync of the folder).

After :func:`atomic_write` returns, the file is complete on disk under its final name or not
there at all, even if the machine loses power the next instant (POSIX rename is atomic, and the
folder's fsync makes the new name itself durable).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def safe_uid(uid: str) -> str:
    """Return ``uid`` if it is a valid DICOM UID (PS3.5 9.1), so it can name a file; else raise."""
    uid = str(uid).strip().rstrip("\x00")
    if len(uid) > 64 or not _UID.match(uid):
        raise ValueError(f"not a valid DICOM UID: {uid[:80]!r}")
    return uid


def instance_path(root: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """Where a received instance lives: ``root/<study>/<series>/<sop>.dcm``."""
    return Path(root) / safe_uid(study_uid) / safe_uid(series_uid) / f"{safe_uid(sop_uid)}.dcm"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
