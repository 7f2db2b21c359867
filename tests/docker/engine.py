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
    """Each container's memory as ``docker stats`` reports it (usage without the inactive file
    cache) and its limit, sampled about once a second for the life of a test; ``peak`` and
    ``last`` per container name.

    It polls ``docker stats --no-stream --all`` rather than following one streaming ``docker
    stats --all``: the stream adds a container on its ``create`` event, and when that container
    was not yet running the daemon ends its stats at once; the CLI never asks again, so the
    container stayed at zero for the whole test (seen in CI with ``docker run -d``). Each poll
    lists the containers afresh.
    """

    INTERVAL = 1.0

    def __init__(self):
        self.peak: dict[str, float] = defaultdict(float)
        self.last: dict[str, float] = {}
        self.limit: dict[str, float] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="docker-stats", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                out = subprocess.run([DOCKER, "stats", "--no-stream", "--all", "--format", "{{json .}}"],
                                     capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                continue
            for line in out.stdout.splitlines():
                if line.strip().startswith("{"):
                    self.record(json.loads(line))
            self.polls += 1
            self._stop.wait(max(0.0, self.INTERVAL - (time.monotonic() - started)))

    def record(self, row: dict) -> None:
        """One row of ``docker stats --format '{{json .}}'``."""
        usage, _, limit = row.get("MemUsage", "").partition("/")
        try:
            used, cap = size_bytes(usage), size_bytes(limit)
        except ValueError:  # "--" while a container starts or after it stopped
            return
        name = row["Name"]
        if used > 0:
            self.last[name] = used
            self.peak[name] = max(self.peak[name], used)
            self.limit[name] = cap

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)
