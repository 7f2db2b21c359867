"""DCMTK's peers: storescp (the PACS that receives what the plugin sends), storescu and echoscu
(the modality).

Times are taken from what the peers say as it happens: ``storescu -v`` prints "Received Store
Response" when the C-STORE response arrives (read line by line as it is written), and
``storescp --exec-on-reception`` runs ``echo`` once a received file is complete, so a file's
arrival is the moment that line is read.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from pathlib import Path

from arcade_pacs.bench.peers.processes import LOOPBACK, free_port, run, stop, tool, wait_for_port

# --- storescp: the PACS receiving SRs -----------------------------------------------------


class StoreSCP:
    """DCMTK's storescp as the PACS (AE ``aet``, loopback), writing what it receives to ``folder``.

    ``notify``: record when each received file is complete (:attr:`arrivals`, :meth:`wait_sr`);
    not for the ingest comparison, where a process per file would slow storescp down.
    ``unique_names`` (``+uf``): every receipt is its own file, so a duplicate transmission shows.
    ``bit_preserving`` (``+B``): the data set is written as it arrives, byte for byte.
    ``options``: more storescp options (TLS: ``+tls key cert +cf ca``).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, folder: Path, port: int | None = None, notify: bool = True, *, aet: str = "PACS",
                 unique_names: bool = False, bit_preserving: bool = False, options: tuple[str, ...] = (),
                 timeout: float = 20.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.aet = aet
        args = [tool("storescp"), *options, "-aet", aet, "-od", str(self.folder)]
        if unique_names:
            args.append("+uf")
        if bit_preserving:
            args.append("+B")
        if notify:
            args += ["-xcr", "echo RECEIVED #p/#f"]
        # Its output is always read (and dropped but for the notices), so storescp never blocks on a full pipe.
        self.proc = subprocess.Popen([*args, str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.arrivals: queue.Queue[tuple[float, Path]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            wait_for_port(self.port, timeout, self.proc)
        except Exception:
            self.close()
            raise

    def __enter__(self) -> StoreSCP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    @property
    def running(self) -> bool:
        return self.proc.poll() is None


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




def storescu(port: int, *files: Path | str, called: str = "ARCADE", calling: str = "STORESCU",
             options: tuple[str, ...] | list[str] = (), timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Send ``files`` in one association with DCMTK's storescu; its exit status and output."""
    return run([tool("storescu"), *options, "-aet", calling, "-aec", called, LOOPBACK, str(port), *map(str, files)],
               timeout=timeout)


def acknowledged(sent: subprocess.CompletedProcess) -> bool:
    """Whether a ``storescu -v`` run got Success for what it sent (the modality may forget it)."""
    return sent.returncode == 0 and "Received Store Response (Success)" in (sent.stdout + sent.stderr)


def echoscu(port: int, called: str = "ARCADE", calling: str = "STORESCU",
            timeout: float = 30.0) -> subprocess.CompletedProcess:
    """C-ECHO with DCMTK's echoscu; its exit status and output."""
    return run([tool("echoscu"), "-aet", calling, "-aec", called, LOOPBACK, str(port)], timeout=timeout)
