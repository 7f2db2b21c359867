"""Test helpers: free ports, waiting for a listener, running real peers as processes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from arcade_pacs.bench.peers import stop  # noqa: F401 - one way to stop a peer, shared with the bench


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on ``port``; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.25, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return it, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{message} not reached after {timeout}s")


def tool(name: str) -> str:
    """Absolute path of a required command-line tool (DCMTK, dicom3tools, Orthanc); fail if absent."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `make test` (it installs the Debian packages)")
    return found


def run(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run a command, capturing its output as text."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


