"""The container engine as the tests drive it: Docker's command line (and Compose's), health
status, and memory as ``docker stats`` reports it.

``make docker-test`` exports ``DOCKER`` (Debian's ``/usr/bin/docker``, matched to its daemon and
with BuildKit built in) and ``COMPOSE`` (``docker-compose`` 1.29, or ``docker compose``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

DOCKER = os.environ.get("DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker")
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker-compose"))
"""Compose v1 runs with ``--compatibility`` (deploy limits and replicas), v2 applies them itself."""

_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIB = 2**20


class DockerError(AssertionError):
    """A docker command failed: the message holds its output."""


def docker(*args: str, timeout: float = 120, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``docker ARGS`` and capture its output; fail with the output unless it exits 0."""
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                         env=None if env is None else {**os.environ, **env})
    if check and out.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return out


def inspect(name: str, template: str) -> str:
    """``docker inspect -f TEMPLATE NAME`` (a container or an image)."""
    return docker("inspect", "-f", template, name).stdout.strip()


def state(container: str) -> dict:
    return json.loads(inspect(container, "{{json .State}}"))


def wait_healthy(containers: list[str], timeout: float) -> float:
    """Wait until Docker's own health status of every container is ``healthy``; return the seconds
    it took. A container that exits fails at once, with its log. One that Docker marked
    ``unhealthy`` may still become healthy (a probe that timed out on a busy machine): it fails
    at the timeout, with its log and its last probes."""
    started = time.monotonic()
    pending = set(containers)
    while pending:
        for name in sorted(pending):
            st = state(name)
            health = (st.get("Health") or {}).get("Status")
            if health == "healthy":
                pending.discard(name)
            elif not st["Running"]:
                raise AssertionError(f"{name} is {st['Status']} (exit {st['ExitCode']}):\n{logs(name)[-4000:]}")
        if pending and time.monotonic() - started > timeout:
            raise AssertionError(f"not healthy after {timeout:.0f}s: {sorted(pending)}\n" + "\n".join(
                f"--- {n}\n{logs(n)[-2000:]}\nprobes: {(state(n).get('Health') or {}).get('Log', [])[-3:]}"
                for n in sorted(pending)))
        if pending:
            time.sleep(2)
    return time.monotonic() - started


def logs(container: str) -> str:
    out = docker("logs", container, check=False, timeout=60)
    return out.stdout + out.stderr


def size_bytes(text: str) -> float:
    """``"1.2GiB"`` -> bytes, as ``docker stats`` prints sizes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]?i?[bB])\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class MemorySampler:
    """``docker stats`` streamed for the life of a test: each container's memory (what Docker's
    own figure counts: usage without the inactive file cache) and its limit, sampled about once a
    second; ``peak`` and ``last`` per container name."""

    def __init__(self):
        self.peak: dict[str, float] = defaultdict(float)
        self.last: dict[str, float] = {}
        self.limit: dict[str, float] = {}
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._read, name="docker-stats", daemon=True)

    def start(self) -> MemorySampler:
        # --all: containers started later (a scaled worker) are followed too.
        self._proc = subprocess.Popen([DOCKER, "stats", "--all", "--format", "{{json .}}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip()  # the screen refresh codes
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            usage, _, limit = row.get("MemUsage", "").partition("/")
            try:
                used, cap = size_bytes(usage), size_bytes(limit)
            except ValueError:  # "--" while a container starts or after it stopped
                continue
            name = row["Name"]
            if used > 0:
                self.last[name] = used
                self.peak[name] = max(self.peak[name], used)
                self.limit[name] = cap

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        self._thread.join(timeout=30)
