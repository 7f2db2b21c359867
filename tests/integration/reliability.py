"""What the crash and scale tests share: studies made of real pixels, a modality that says what was
acknowledged, and a PACS folder that says which SRs arrived (and how often)."""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from sqlalchemy import create_engine, text

from arcade_pacs.bench import peers
from tests.factory import real_frame, xa_dataset

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def make_studies(rubo: Path, folder: Path, n: int, first_frame: int = 20, runs_per_study: int = 1) -> list[Path]:
    """``n`` studies of ``runs_per_study`` single-frame XA instances each (real pixels, new UIDs)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n):
        study_uid = None
        for r in range(runs_per_study):
            ds = xa_dataset(real_frame(rubo, (first_frame + s * runs_per_study + r) % 96), study_uid=study_uid)
            study_uid = ds.StudyInstanceUID
            path = folder / f"study{s:03d}_run{r}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def storescu(port: int, path: Path, timeout: float = 120) -> bool:
    """Send one file with DCMTK's storescu; True only when the SCP answered Success (acknowledged)."""
    return peers.acknowledged(peers.storescu(port, path, options=["-v"], timeout=timeout))


def echoscu(port: int) -> bool:
    return peers.echoscu(port).returncode == 0


@dataclass
class Arrivals:
    """SR files a DCMTK storescp (``+uf``: one file per receipt) holds, by study."""

    by_study: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, folder: Path) -> Arrivals:
        found = cls()
        for path in folder.iterdir():
            if not path.name.startswith("SR"):
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # still being written
                continue
            if ds.SOPClassUID == SR_CLASS:
                found.by_study[ds.StudyInstanceUID].append(ds.SOPInstanceUID)
        return found

    def studies(self) -> set[str]:
        return set(self.by_study)

    def distinct(self, study_uid: str) -> set[str]:
        return set(self.by_study.get(study_uid, []))

    def duplicates(self) -> int:
        """Receipts of an SR already received (the same SOP Instance UID again)."""
        return sum(len(v) - len(set(v)) for v in self.by_study.values())

    def receipts(self) -> int:
        return sum(len(v) for v in self.by_study.values())


def study_uid(path: Path) -> str:
    return pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID


def sop_uid(path: Path) -> str:
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def stored_instances(database_url: str) -> dict[str, str]:
    """SOP Instance UID -> stored path, read from the plugin's database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT sop_instance_uid, path FROM instances")).all())
    finally:
        engine.dispose()


def query(database_url: str, sql: str) -> list:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def admin_json(port: int, path: str, token: str | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    return json.load(urllib.request.urlopen(request, timeout=10))


def figures_line(name: str, **values) -> str:
    """One line the README's reliability table is copied from (printed with ``pytest -s``)."""
    return "RELIABILITY " + name + " " + " ".join(f"{k}={v}" for k, v in values.items())
