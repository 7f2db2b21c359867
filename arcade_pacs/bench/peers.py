"""Real peers over loopback for the end-to-end figures: DCMTK's storescu and storescp, and
``arcade-pacs serve`` itself as its own process.

Every time is taken from what the peers say as it happens: ``storescu -v`` prints
"Received Store Response" when the C-STORE response arrives (read line by line as it is
written), and ``storescp --exec-on-reception`` runs ``echo`` once a received file is
complete, so the SR's arrival is the moment that line is read.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arcade_pacs.bench.load import USERS

RUBO = "dicom/xa_rubo0002_cine96_jpegbaseline.dcm"
LOOPBACK = "127.0.0.1"


class PeerMissing(RuntimeError):
    """A real peer the bench needs is not installed: the bench fails, it never guesses."""


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise PeerMissing(f"{name} is not installed (Debian package dcmtk): the bench needs the real peer")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Terminate a process and wait for it (kill it if it does not stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- test cines ---------------------------------------------------------------------------


def rubo_frames(data_dir: Path, frames: int = 60) -> np.ndarray:
    """``frames`` consecutive 512x512 frames of the real Rubo cine around its contrast injection."""
    import pydicom

    pixels = pydicom.dcmread(Path(data_dir) / RUBO).pixel_array
    start = max(0, min(len(pixels) - frames, 18))
    return np.ascontiguousarray(pixels[start : start + frames])


def write_cine(pixels: np.ndarray, out: Path, study_uid: str, series_uid: str, number: int = 1) -> Path:
    """An uncompressed 8-bit XA cine of ``pixels`` ``(T, 512, 512)`` with fresh UIDs (PS3.3 A.14)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = "XA"
    ds.PatientName, ds.PatientID = "Bench^Synthetic", "BENCH"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.SeriesNumber, ds.InstanceNumber = number, 1
    ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
    ds.NumberOfFrames = int(pixels.shape[0])
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.FrameTime = 66.7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(out, enforce_file_format=True)
    return out


def study_files(pixels: np.ndarray, folder: Path, runs: int) -> tuple[str, list[Path]]:
    """``runs`` cines of one new study, each its own series."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    files = [write_cine(pixels, folder / f"run{i:02d}.dcm", study, generate_uid(), i + 1) for i in range(runs)]
    return study, files


# --- storescp: the PACS receiving SRs -----------------------------------------------------


class StoreSCP:
    """DCMTK's storescp (AE ``PACS``); records when each received file is complete."""

    def __init__(self, folder: Path, port: int | None = None, notify: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        args = [tool("storescp"), "-aet", "PACS", "-od", str(self.folder)]
        if notify:  # not for the ingest comparison: a process per file would slow storescp down
            args += ["-xcr", "echo RECEIVED #p/#f"]
        self.proc = subprocess.Popen([*args, str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.arrivals: queue.Queue[tuple[float, Path]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        wait_for_port(self.port, 20, self.proc)

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("RECEIVED "):
                self.arrivals.put((time.monotonic(), Path(line[len("RECEIVED "):].strip())))

    def wait_sr(self, study_uid: str, timeout: float, instances: int = 1) -> float:
        """Monotonic time an SR of ``study_uid`` referencing ``instances`` instances arrived."""
        import pydicom

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no SR of the study arrived within {timeout}s")
            try:
                at, path = self.arrivals.get(timeout=left)
            except queue.Empty:
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.StudyInstanceUID != study_uid or ds.Modality != "SR":
                continue
            evidence = sum(len(s.ReferencedSOPSequence) for item in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
                           for s in item.ReferencedSeriesSequence)
            if evidence >= instances:
                return at

    def close(self) -> None:
        stop(self.proc)


# --- storescu: the modality -------------------------------------------------------------


def store(files: list[Path], port: int, called: str, timeout: float = 300.0) -> dict:
    """Send ``files`` in one association; times of each C-STORE response and of the whole send."""
    args = [tool("storescu"), "-v", "-aet", "STORESCU", "-aec", called, LOOPBACK, str(port), *map(str, files)]
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    responses, failures, tail = [], [], []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if "Received Store Response" in line:
            responses.append(time.monotonic())
            if "Success" not in line:
                failures.append(line.strip())
    proc.wait(timeout=timeout)
    ended = time.monotonic()
    if proc.returncode != 0 or failures or len(responses) != len(files):
        raise RuntimeError(f"storescu failed ({proc.returncode}): " + "\n".join(failures or tail))
    return {"started": started, "responses": responses, "ended": ended}


# --- the plugin --------------------------------------------------------------------------


@dataclass
class Plugin:
    """``arcade-pacs serve`` in its own process, configured for the bench (loopback only)."""

    proc: subprocess.Popen
    scp_port: int
    admin_port: int
    startup_s: float
    log: Path
    status: dict = field(default_factory=dict)

    def get(self, path: str, timeout: float = 10.0) -> dict:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.admin_port}{path}", timeout=timeout) as r:
            return json.load(r)

    def idle(self, timeout: float) -> None:
        """Wait until no job is queued or running (the analysis backlog is drained)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.get("/status")["jobs"]
            if jobs.get("queued", 0) == 0 and jobs.get("running", 0) == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"jobs still pending after {timeout}s")

    def peak_rss_by_process(self) -> dict[int, float]:
        """Peak resident memory (VmHWM, MB) of the serve process and of each process it started
        (the supervised worker), by pid, the serve process first."""
        peaks = {}
        for pid in process_tree(self.proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # exited meanwhile
                continue
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[pid] = round(kb / 1024, 1)
        if not peaks:
            raise RuntimeError("VmHWM not found")
        return peaks

    def peak_rss_mb(self) -> float:
        """The serve process's and its worker's peaks, summed: an upper bound of the whole plugin's
        peak, since each process's own peak may come at a different time."""
        return round(sum(self.peak_rss_by_process().values()), 1)

    def worker_peak_rss_mb(self) -> float | None:
        """The supervised worker process's own peak (``None`` when the plugin runs no child)."""
        children = [mb for pid, mb in self.peak_rss_by_process().items() if pid != self.proc.pid]
        return max(children) if children else None

    def close(self) -> None:
        stop(self.proc)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc/<pid>/task/<tid>/children``)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, values: dict) -> Path:
    lines = []
    for key, value in values.items():
        if not isinstance(value, dict) and key != "destinations":
            lines.append(f"{key} = {toml_value(value)}")
    for section, table in values.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for dest in values.get("destinations", []):
        lines.append("[[destinations]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in dest.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_plugin(work: Path, settings, pacs_port: int, timeout: float = 300.0) -> Plugin:
    """Start ``arcade-pacs serve`` with the quiet period 0; start-up time = spawn to /health ready."""
    scp_port, admin_port = free_port(), free_port()
    config = write_config(work / "arcade.toml", {
        "data_dir": str(Path(settings.data_dir).resolve()),
        "scp": {"ae_title": "ARCADE", "host": LOOPBACK, "port": scp_port, "allowed_calling_aets": ["STORESCU"]},
        "storage": {"root": str(work / "store")},
        "database": {"url": f"sqlite:///{work / 'arcade.db'}"},
        "model": {"path": str(Path(settings.model.path).resolve()), "engine": settings.model.engine,
                  "threads": settings.model.threads, "batch_size": settings.model.batch_size,
                  "check_images": settings.model.check_images, "litert_batch": settings.model.litert_batch},
        "pipeline": {"study_quiet_seconds": 0, "workers": settings.pipeline.workers,
                     "keyframes": settings.pipeline.keyframes},
        # The load profile's users may all wait for /predict at once: queue them (the bounded
        # preparation limits memory) instead of answering 429, which the profile counts as failures.
        "admin": {"host": LOOPBACK, "port": admin_port, "predict_concurrency": USERS},
        "destinations": [{"name": "bench", "ae_title": "PACS", "host": LOOPBACK, "port": pacs_port}],
    })
    log = work / "serve.log"
    upgrade = subprocess.run([sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "db", "upgrade"],
                             capture_output=True, text=True)
    if upgrade.returncode:
        raise RuntimeError(f"arcade-pacs db upgrade failed:\n{upgrade.stderr[-3000:]}")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "arcade_pacs.cli", "--config", str(config), "serve"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = started + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"arcade-pacs serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            stop(proc)
            raise TimeoutError(f"arcade-pacs serve not ready after {timeout}s:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{admin_port}/health", timeout=2) as r:
                if json.load(r).get("model_loaded"):
                    break
        except OSError:
            pass
        time.sleep(0.05)
    plugin = Plugin(proc, scp_port, admin_port, time.monotonic() - started, log)
    wait_for_port(scp_port, 30, proc)
    plugin.status = plugin.get("/status")
    return plugin
