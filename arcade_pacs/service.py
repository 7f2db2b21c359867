"""The running plugin: every resource created once, every loop started and stopped in one place.

``arcade-pacs serve --role ROLE`` builds a :class:`Service` and runs it in the foreground:

``scp``
    the DICOM SCP: stores instances and queues their jobs (no model, no inference).
``worker``
    one analysis worker (the model loaded once), the reporter (SRs of quiet studies) and one
    sender per destination. Any number of workers on any number of hosts share the database
    and the storage volume: jobs, study reports and deliveries are claimed with leases.
``admin``
    the admin HTTP API (``/predict`` and retraining load a model of their own).
``all`` (default, what ``make run`` starts)
    ``scp`` and ``admin`` in this process and a ``worker`` in a child process that is
    restarted when it dies: an input that kills its worker (out of memory, a decoder crash)
    takes down neither the SCP nor the admin, and after ``pipeline.max_attempts`` such deaths
    its job ends ``failed`` (see :mod:`arcade_pacs.jobs`).

``scp`` and ``worker`` processes serve ``/health``, ``/status`` and ``/metrics`` on the admin
port (for probes), unless started with ``http=False``.

Before anything starts: the database schema must be the one this version knows
(``arcade-pacs db upgrade`` makes it so), and an admin bound beyond loopback needs a token.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from enum import StrEnum

from arcade_pacs import faults, retention
from arcade_pacs.conformance import load_contexts
from arcade_pacs.db import make_engine, make_session_factory, schema_problem
from arcade_pacs.db.notify import JOBS_CHANNEL, Listener
from arcade_pacs.model.classifier import Classifier, configure_tensorflow
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.send import outbox
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.send.sender import Sender
from arcade_pacs.settings import Settings
from arcade_pacs.training.retrain import RetrainManager
from arcade_pacs.worker import Worker

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 600.0
"""Seconds between retention passes (each deletes at most a few hundred files)."""
WORKER_RESTART_CAP_S = 30.0


class Role(StrEnum):
    """What one ``serve`` process runs."""

    ALL = "all"
    SCP = "scp"
    WORKER = "worker"
    ADMIN = "admin"


class StartupError(Exception):
    """The service must not start as configured; the message says why and what to do."""


def admin_binding_problem(settings: Settings) -> str | None:
    """An admin reachable beyond loopback without a token is refused (state changes would be open)."""
    host = settings.admin.host.strip()
    if settings.admin.token or host == "localhost":
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"admin.host is {host!r} (not loopback) and admin.token is empty: set admin.token "
            "(ARCADE_ADMIN__TOKEN) or bind the admin to 127.0.0.1")


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
        return cmd + ["serve", "--role", Role.WORKER.value, "--no-http", "--supervised"]

    def run(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.proc = subprocess.Popen(self.command())
            log.info("worker process pid=%d started", self.proc.pid)
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            self.restarts += 1
            delay = 1.0 if time.monotonic() - started > 60 else min(WORKER_RESTART_CAP_S, delay * 2)
            log.error("worker process pid=%d died (exit %s); restarting in %.0f s (restart %d)",
                      self.proc.pid, code, delay, self.restarts)
            self.stopping.wait(delay)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def watch_parent() -> None:
    """Exit when the process that started this one is gone (a supervised worker never outlives it)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Service:
    """All long-lived resources and loops of one plugin process, for its role."""

    def __init__(self, settings: Settings, role: Role = Role.ALL, http: bool = True):
        self.settings = settings
        self.role = Role(role)
        self.http = http
        if http:
            problem = admin_binding_problem(settings)
            if problem:
                raise StartupError(problem)
        faults.configure(settings.faults)
        settings.storage.root.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.database.url)
        problem = schema_problem(self.engine)
        if problem:
            self.engine.dispose()
            raise StartupError(problem)
        self.sessions = make_session_factory(self.engine)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._listener: Listener | None = None
        self.model: ModelHolder | None = None
        self.worker: Worker | None = None
        self.senders: list[Sender] = []
        self.worker_process: WorkerProcess | None = None
        self.retrain: RetrainManager | None = None
        runs = self.runs
        if runs(Role.WORKER) or runs(Role.ADMIN):
            configure_tensorflow(settings.model.threads or None)
            self.model = ModelHolder(Classifier.load(settings.model.path, settings.model.batch_size))
        if runs(Role.SCP):
            self.contexts = load_contexts()
            self.store = StoreContext(settings, self.sessions, self.contexts)
            self.scp_ae = make_scp_ae(settings, self.contexts)
        if runs(Role.WORKER):
            self.worker = Worker(settings, self.sessions, self.model, model_path=settings.model.path)
            scu = StoreSCU(settings, load_contexts())
            self.senders = [Sender(settings, self.sessions, scu, dest, self.name) for dest in settings.destinations]
        if runs(Role.ADMIN):
            self.retrain = RetrainManager(self.sessions, settings.data_dir / "arcade", settings.model.path, self._promoted)
            self.retrain.recover()
        if self.role is Role.ALL:
            self.worker_process = WorkerProcess(settings)

    def runs(self, part: Role) -> bool:
        """Whether this process runs ``part`` itself (``all`` runs its worker in a child process)."""
        if self.role is Role.ALL:
            return part in (Role.SCP, Role.ADMIN)
        return self.role is part

    def _promoted(self, classifier: Classifier) -> None:
        """A retrained model won: serve it from the next request on, with this service's batch size.

        Worker processes see the new files and load them before their next job.
        """
        classifier.batch_size = self.settings.model.batch_size
        self.model.swap(classifier)

    def report_once(self) -> int:
        """Cancel deliveries to removed destinations, write the SRs of ready studies, wake the senders."""
        with self.sessions() as session:
            outbox.cancel_removed([d.name for d in self.settings.destinations], session=session)
            written = report_ready_studies(self.settings, session=session, owner=self.name)
        if written:
            for sender in self.senders:
                sender.wake.set()
        return written

    def retention_once(self) -> int:
        """Delete the pixel data that ``storage.keep_days`` no longer keeps (0: retention off)."""
        with self.sessions() as session:
            purged = retention.purge_delivered(self.settings.storage.keep_days, session=session)
        if purged:
            log.info("retention: pixel data of %d delivered instances deleted", purged)
        return purged

    def _report_loop(self) -> None:
        next_retention = 0.0
        while not self.stopping.is_set():
            try:
                self.report_once()
                if self.settings.storage.keep_days > 0 and time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + RETENTION_INTERVAL_S
                    self.retention_once()
            except Exception:
                log.exception("reporter error")
            self.stopping.wait(REPORT_INTERVAL_S)

    def _thread(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        """Start this role's loops (non-blocking)."""
        if self.runs(Role.SCP):
            self._server = start_scp(self.scp_ae, self.settings, self.store)
            log.info("SCP %s listening on %s:%d", self.settings.scp.ae_title, self.settings.scp.host,
                     self.settings.scp.port)
        if self.worker is not None:
            if self.engine.dialect.name == "postgresql":
                self._listener = Listener(self.settings.database.url, JOBS_CHANNEL, self.worker.wake.set).start()
            self._thread("worker", self.worker.run)
            self._thread("reporter", self._report_loop)
            for sender in self.senders:
                self._thread(f"sender-{sender.destination.name}", sender.run)
            log.info("worker %s: model %s, %d destinations", self.name, self.model.get().info.version,
                     len(self.senders))
        if self.worker_process is not None:
            self._thread("worker-process", self.worker_process.run)

    def scp_listening(self) -> bool:
        """The SCP's server is started and its listening socket open (for ``GET /ready``)."""
        server = self._server
        return server is not None and not self.stopping.is_set() and server.socket.fileno() >= 0

    def active_associations(self) -> int:
        """DICOM associations established now (``GET /status``); a bare TCP connection is not one."""
        return sum(1 for assoc in self.scp_ae.active_associations if assoc.is_established)

    def stop(self) -> None:
        """Stop accepting associations, then let the loops finish their current step."""
        self.stopping.set()
        if self._listener is not None:
            self._listener.stop()
        if self.worker_process is not None:
            self.worker_process.stop()
        if self.worker is not None:
            self.worker.stop()
        for sender in self.senders:
            sender.stop()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=60)
        self.engine.dispose()

    def serve_forever(self) -> None:
        """Run until interrupted: the admin API in the foreground, or a wait for SIGTERM/SIGINT."""
        self.start()
        try:
            if self.http:
                self._serve_http()
            else:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: self.stopping.set())
                while not self.stopping.wait(1.0):
                    pass
        finally:
            self.stop()

    def _serve_http(self) -> None:
        import uvicorn

        from arcade_pacs.admin.app import AdminState, create_app

        scp = self.runs(Role.SCP)
        state = AdminState(
            self.settings, self.sessions, self.model, self.retrain,
            scp_listening=self.scp_listening if scp else None,
            active_associations=self.active_associations if scp else None,
        )
        app = create_app(state, full=self.runs(Role.ADMIN))
        uvicorn.run(app, host=self.settings.admin.host, port=self.settings.admin.port, log_level="warning")
