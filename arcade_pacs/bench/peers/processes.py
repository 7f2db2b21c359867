"""What every peer process needs: finding its program, a free port, waiting for it to listen, stopping it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

LOOPBACK = "127.0.0.1"
"""Every peer listens on loopback only: nothing here is reachable from the hospital network."""

T = TypeVar("T")


class PeerMissing(RuntimeError):
    """A real peer is not installed: the bench and the tests fail, they never guess or skip."""


def tool(name: str) -> str:
    """Absolute path of a required program (DCMTK, dicom3tools, Orthanc; Debian puts some in /usr/sbin)."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise PeerMissing(f"{name} is not installed: `make system-deps` installs the Debian packages of the real peers")
    return found


def run(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run a peer's command to its end, its output captured as text."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on ``port``; fail at once if ``proc`` exits first."""
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


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.25,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; return it, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{message} not reached after {timeout}s")


def stop(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """Terminate a process and wait for it (kill it if it does not stop in ``timeout``)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
