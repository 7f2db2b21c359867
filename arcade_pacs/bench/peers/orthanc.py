"""A real Orthanc (Debian's package) as the PACS or a modality, with its REST API on loopback."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from arcade_pacs.bench.peers.processes import LOOPBACK, PeerMissing, free_port, stop, tool, wait_for_port

DICOMWEB_PLUGIN_PATHS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",  # Debian's orthanc-dicomweb (symlink)
    "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7",
)


def dicomweb_plugin() -> str:
    """Path of Debian's Orthanc DICOMweb plugin (package orthanc-dicomweb); fail if absent."""
    for candidate in DICOMWEB_PLUGIN_PATHS:
        if Path(candidate).exists():
            return candidate
    found = sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")) if Path("/usr/lib/orthanc").is_dir() else []
    if found:
        return str(found[0])
    raise PeerMissing("Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb)")



class Orthanc:
    """Orthanc with its own DICOM and HTTP ports and storage in a temporary folder."""

    def __init__(self, folder: Path, aet: str = "PACS", modalities: dict | None = None, dicomweb: bool = False,
                 dicomweb_servers: dict | None = None, http_port: int | None = None, extra: dict | None = None):
        """``dicomweb``: load the DICOMweb plugin (QIDO-RS/WADO-RS/STOW-RS under ``/dicom-web/``, WADO-URI
        at ``/wado``), as a web viewer reads the archive (PS3.18); ``dicomweb_servers``: the DICOMweb
        servers its client knows (``POST /dicom-web/servers/{id}/stow``); ``http_port``: a fixed
        port (to start it again where a sender expects it); ``extra``: more configuration keys."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = http_port or free_port()
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps((extra or {}) | {
            "Name": "arcade-test-pacs",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": modalities or {},
            "Plugins": [dicomweb_plugin()] if dicomweb else [],
            "StorageCompression": False,
            "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/", "EnableWado": dicomweb, "WadoRoot": "/wado",
                         "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full",
                         "Servers": dicomweb_servers or {}},
        }))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Orthanc:
        self.log = (self.folder / "orthanc.log").open("w")
        self.proc = subprocess.Popen([tool("Orthanc"), str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.http_port, proc=self.proc)
            wait_for_port(self.dicom_port, proc=self.proc)
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)
        self.log.close()

    def get(self, path: str):
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}{path}", timeout=30) as r:
            return json.load(r)

    def file(self, instance_id: str) -> bytes:
        """The stored Part 10 file of an instance."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/instances/{instance_id}/file", timeout=30) as r:
            return r.read()

    def post(self, path: str, body):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}{path}", data=data, method="POST")
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.load(r)

    def instances_of_class(self, sop_class: str) -> list[dict]:
        """Every stored instance of ``sop_class`` with its tags (simplified)."""
        found = []
        for iid in self.get("/instances"):
            tags = self.get(f"/instances/{iid}/simplified-tags")
            if tags.get("SOPClassUID") == sop_class:
                found.append(tags | {"_id": iid, "_parent_study": self.get(f"/instances/{iid}/study")["ID"]})
        return found
