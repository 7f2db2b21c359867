"""Durable files: atomic writes (temp file, fsync, rename, fsync of the folder), free space.

After :func:`atomic_write` or :func:`commit_file` returns, the file is complete on disk under its
final name or not there at all, even if the machine loses power the next instant (POSIX rename is
atomic, and the folder's fsync makes the new name itself durable). Temporary files (names starting
with ``.incoming-``, and everything in ``<root>/.incoming/`` where instances are received) that a
crash left behind are removed at start by :func:`sweep_temporary_files`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TEMP_PREFIX = ".incoming-"
"""Name prefix of every temporary file the plugin writes next to its final file."""
INCOMING_DIR = ".incoming"
"""Folder under the storage root where C-STORE data sets are received before they are committed."""


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def incoming_dir(root: Path) -> Path:
    """``root/.incoming``, created if needed: received data sets land there, on the same file
    system as their final place, so committing one is a rename, not a copy."""
    folder = Path(root) / INCOMING_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def commit_file(tmp: Path, path: Path) -> None:
    """Move the complete file ``tmp`` (same file system) to ``path`` durably and atomically:
    fsync its data, rename it, fsync the folder (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sweep_temporary_files(root: Path) -> int:
    """Remove temporary files a crash left under ``root``; returns how many were removed.

    Call once at start, before the SCP listens: every temporary file is then an orphan (its
    writer is gone), and nothing it held was acknowledged (an instance is acknowledged only after
    its file is committed under its final name).
    """
    root = Path(root)
    removed = 0
    if not root.is_dir():
        return 0
    for folder, _dirs, files in os.walk(root):
        in_incoming = Path(folder).name == INCOMING_DIR and Path(folder).parent == root
        for name in files:
            if in_incoming or (name.startswith(TEMP_PREFIX) and name.endswith(".tmp")):
                try:
                    (Path(folder) / name).unlink()
                    removed += 1
                except OSError as exc:
                    log.warning("cannot remove temporary file %s: %s", name, exc.strerror)
    return removed


@dataclass(frozen=True)
class DiskSpace:
    """Free space of the file system holding the storage root, against the watermark."""

    free_mb: float
    min_free_mb: float

    @property
    def ok(self) -> bool:
        """False below the watermark: new associations are refused and ``/health`` is degraded."""
        return self.free_mb >= self.min_free_mb

    @property
    def reason(self) -> str:
        """One line for logs and the admin."""
        state = "ok" if self.ok else "below the watermark"
        return f"free disk {self.free_mb:.0f} MB, watermark storage.min_free_mb = {self.min_free_mb:.0f} MB: {state}"


def disk_space(root: Path, min_free_mb: float) -> DiskSpace:
    """Free space where ``root`` lives (its nearest existing parent if it does not exist yet)."""
    place = Path(root)
    while not place.exists() and place != place.parent:
        place = place.parent
    return DiskSpace(shutil.disk_usage(place).free / 2**20, float(min_free_mb))


def free_space_ok(root: Path, min_free_mb: float) -> bool:
    """True when the storage root's file system has at least ``min_free_mb`` MB free (0 = no check)."""
    return min_free_mb <= 0 or disk_space(root, min_free_mb).ok
