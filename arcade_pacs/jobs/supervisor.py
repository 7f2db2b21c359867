"""Worker-process supervision: ``serve --role all`` runs its analysis in a child process.

An input that kills its worker (out of memory, a decoder crash) must take down neither the SCP
nor the admin, so the parent (:class:`WorkerProcess`) starts ``serve --role worker`` as a child,
restarts it with back-off whenever it dies, and wakes it through its standard input; the child
(:class:`ParentLink`) reads that pipe and exits when it closes. Which job killed a worker is
decided by the queue (:mod:`arcade_pacs.jobs`: a dead worker's jobs are retried alone).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from arcade_pacs.settings import Settings

log = logging.getLogger(__name__)

WORKER_RESTART_CAP_S = 30.0
"""The longest wait before a dead worker process is started again (the wait doubles from 1 s)."""


def lower_priority(niceness: int) -> int:
    """Add ``niceness`` to this process's (the supervised worker's); returns the new niceness.

    The parent receives: a modality waits for each C-STORE response, which comes only once the
    file and its rows are durable, while analysis is throughput work that loses little by
    yielding the CPU for the milliseconds a receipt needs. Without it, ingest ran at 0.50-0.72 of
    DCMTK's ``storescp`` with the int8 engine analysing meanwhile (``arcade-pacs bench``).
    """
    return os.nice(niceness)


class WorkerProcess:
    """A ``serve --role worker`` child process, restarted with back-off whenever it dies."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "arcade_pacs.cli"]
        if self.settings.config_file is not None:
            cmd += ["--config", str(self.settings.config_file)]
        return cmd + ["serve", "--role", "worker", "--no-http", "--supervised", str(os.getpid())]

    @staticmethod
    def environment() -> dict[str, str]:
        """The child's environment: this one, with glibc's malloc arenas capped at 2 unless set.

        Each analysis thread otherwise gets arenas of its own, which keep the memory of a large
        cine after it was freed (a 10-cine study on a busy 2-core machine: worker peaks of 792 and
        821 MB without the cap, 702 and 785 MB with it: a small, noisy gain).
        """
        return {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}

    def run(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, env=self.environment())
            log.info("worker process pid=%d started", self.proc.pid)
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            self.restarts += 1
            delay = 1.0 if time.monotonic() - started > 60 else min(WORKER_RESTART_CAP_S, delay * 2)
            log.error("worker process pid=%d died (exit %s); restarting in %.0f s (restart %d)",
                      self.proc.pid, code, delay, self.restarts)
            self.stopping.wait(delay)

    def wake(self, _instance_id=None) -> None:
        """An instance was stored: tell the child's workers at once (a line on its stdin), so a
        SQLite installation does not wait for the next poll. Never raises."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            return
        try:
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):  # the child is gone or restarting: it polls anyway
            pass

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ParentLink:
    """A supervised worker's link to the ``serve`` process that started it.

    The parent holds the write end of this process's standard input: each line it writes
    wakes the workers (an instance was stored), and end of file means the parent is gone, so
    this process exits. The parent's pid, given on the command line, catches a parent that
    died before the link was watched.
    """

    def __init__(self, parent: int):
        self.parent = parent
        self.on_wake: Callable[[], None] | None = None

    def start(self) -> ParentLink:
        threading.Thread(target=self._watch, name="parent-link", daemon=True).start()
        return self

    def _watch(self) -> None:
        if os.getppid() != self.parent:
            os._exit(0)
        # Raw reads of file descriptor 0, not ``sys.stdin``: this daemon thread blocks here until
        # the process ends, and one blocked inside stdin's buffered reader holds its lock, which
        # interpreter shutdown then cannot take ("Fatal Python error: _enter_buffered_busy").
        while os.read(sys.stdin.fileno(), 4096):
            if self.on_wake is not None:
                self.on_wake()
        os._exit(0)
