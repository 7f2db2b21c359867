"""The running plugin: every resource created once, every loop started and stopped in one place.

``arcade-pacs serve --role ROLE`` builds a :class:`Service` and runs it in the foreground:

``scp``
    the DICOM SCP: stores instances and queues their jobs (no model, no inference).
``worker``
    ``pipeline.workers`` analysis threads sharing one model (:class:`~arcade_pacs.model.serving.ServedModel`:
    loaded once with the engine ``model.engine`` selects, warmed up, swappable by retraining) and its inference batcher, so
    one job's decoding overlaps another's inference; the reporter (SRs of quiet studies, woken
    as each job ends) and one sender per destination. Any number of workers on any number of hosts share the database
    and the storage volume: jobs, study reports and deliveries are claimed with leases.
``admin``
    the admin HTTP API (``/predict`` and retraining load a model of their own).
``all`` (default, what ``make run`` starts)
    ``scp`` and ``admin`` in this process and a ``worker`` in a child process that is
    restarted when it dies: an input that kills its worker (out of memory, a decoder crash)
    takes down neither the SCP nor the admin. The jobs that were running in the dead process
    are retried alone, one at a time, and only a job that kills its worker while alone is
    charged; after ``pipeline.max_attempts`` such deaths it ends ``failed`` (see
    :mod:`arcade_pacs.jobs`), and the jobs that merely shared its process keep their attempts.

``scp`` and ``worker`` processes serve ``/health``, ``/status`` and ``/metrics`` on the admin
port (for probes), unless started with ``http=False``.

Before anything starts: the database schema must be the one this version knows
(``arcade-pacs db upgrade`` makes it so), and an admin bound beyond loopback needs a token.
The served model needs no data folder: its LiteRT form ships beside it, checked where it was
built and verified at load. Under ``model.engine = "auto"`` a model without a form that passes
is served by Keras, and where the val images are its form is built in the background and
swapped in once it passed. With the LiteRT engine no role imports TensorFlow; training code is
imported only where retraining starts (:meth:`Service._retrain_manager`).

This module wires; the parts it wires live with their station: worker-process supervision in
:mod:`arcade_pacs.jobs.supervisor`, the three ways of waking analysis threads in
:mod:`arcade_pacs.jobs.wakeup`. ``Service.db_engine`` is the database engine (SQLAlchemy); the
inference engines are the served model's (:mod:`arcade_pacs.model.serving`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from enum import StrEnum

from arcade_pacs.admin.auth import token_problem
from arcade_pacs.core import faults
from arcade_pacs.db import make_engine, make_session_factory, schema_problem
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.jobs.supervisor import WorkerProcess
from arcade_pacs.jobs.wakeup import WakeUps
from arcade_pacs.jobs.worker import Isolation, Worker
from arcade_pacs.model.engine import EngineCheckError
from arcade_pacs.model.serving import ServedModel
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.receive.stow import StowReceiver
from arcade_pacs.send import outbox
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.send.sender import Sender
from arcade_pacs.send.stow import StowClient
from arcade_pacs.settings import Settings
from arcade_pacs.store import retention

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 600.0
"""Seconds between retention passes (each deletes at most a few hundred files)."""


class Role(StrEnum):
    """What one ``serve`` process runs."""

    ALL = "all"
    SCP = "scp"
    WORKER = "worker"
    ADMIN = "admin"


class StartupError(Exception):
    """The service must not start as configured; the message says why and what to do."""


def admin_binding_problem(settings: Settings) -> str | None:
    """An admin reachable beyond loopback needs a token (state changes would be open) that a
    network client cannot guess (:func:`arcade_pacs.admin.auth.token_problem`); so does every
    STOW-RS sender, whose token stores instances through the same port."""
    host = settings.admin.host.strip()
    if host == "localhost":
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    if not settings.admin.token:
        return (f"admin.host is {host!r} (not loopback) and admin.token is empty: set admin.token "
                "(ARCADE_ADMIN__TOKEN) or bind the admin to 127.0.0.1")
    weak = token_problem(settings.admin.token)
    if weak:
        return f"admin.host is {host!r} (not loopback) and the token is too weak: {weak}"
    for sender in settings.dicomweb_senders:  # STOW-RS is served on the same port
        weak = token_problem(sender.token.get_secret_value(), f"the token of [[dicomweb_senders]] {sender.name!r}")
        if weak:
            return f"admin.host is {host!r} (not loopback) and a STOW-RS sender's token is too weak: {weak}"
    return None


STOP_WAIT_S = 40.0
"""How long :meth:`Service.stop` waits for all its loops together to finish their current step."""


def _import_admin() -> None:
    """Import what :meth:`Service._serve_http` needs (a second import of a module is free)."""
    import uvicorn  # noqa: F401

    import arcade_pacs.admin.app  # noqa: F401
    import arcade_pacs.admin.server  # noqa: F401


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
        if http:
            # The admin's modules (FastAPI, the pages, uvicorn: about half a second) are imported
            # while the model below is loaded and checked, which runs in LiteRT with the GIL
            # released: start-up pays for the longer of the two, not for both (issue 19).
            threading.Thread(target=_import_admin, name="import-admin", daemon=True).start()
        settings.storage.root.mkdir(parents=True, exist_ok=True)
        self.db_engine = make_engine(settings.database.url)
        problem = schema_problem(self.db_engine)
        if problem:
            self.db_engine.dispose()
            raise StartupError(problem)
        self.sessions = make_session_factory(self.db_engine)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.report_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self.model: ServedModel | None = None
        self.workers: list[Worker] = []
        self.wakeups = WakeUps(self.workers)
        self.senders: list[Sender] = []
        self.worker_process: WorkerProcess | None = None
        self.retrain = None  # arcade_pacs.training.retrain.RetrainManager in the admin role
        runs = self.runs
        if runs(Role.WORKER) or runs(Role.ADMIN):
            try:
                self.model = ServedModel(settings.model, settings.val_images)
            except EngineCheckError as exc:  # model.engine = "litert" and its form did not pass
                self.db_engine.dispose()
                raise StartupError(f"model.engine is {settings.model.engine!r}: {exc}") from None
        if runs(Role.SCP):
            self.contexts = load_contexts()
            self.store = StoreContext(settings, self.sessions, self.contexts, on_stored=[self.wakeups.set])
            self.scp_ae = make_scp_ae(settings, self.contexts)
            self.stow = StowReceiver(self.store)  # POST /dicom-web/studies on this process's HTTP port
        if runs(Role.WORKER):
            # One Isolation for the process's threads: a job whose worker process died runs alone.
            isolation = Isolation(settings.pipeline.workers)
            self.workers.extend(
                Worker(settings, self.sessions, self.model, model_path=settings.model.path if i == 0 else None,
                       index=i, on_done=self.report_wake.set, load=self.model.reload, isolation=isolation)
                for i in range(settings.pipeline.workers)
            )
            scu, stow = StoreSCU(settings, load_contexts()), StowClient(settings)
            self.senders = [Sender(settings, self.sessions, stow if dest.kind == "dicomweb" else scu, dest, self.name)
                            for dest in settings.destinations]
        if runs(Role.ADMIN):
            self.retrain = self._retrain_manager()
            self.retrain.recover()
        if self.role is Role.ALL:
            self.worker_process = WorkerProcess(settings)
            self.store.on_stored.append(self.worker_process.wake)

    def runs(self, part: Role) -> bool:
        """Whether this process runs ``part`` itself (``all`` runs its worker in a child process)."""
        if self.role is Role.ALL:
            return part in (Role.SCP, Role.ADMIN)
        return self.role is part

    def _retrain_manager(self):
        """Where retraining starts: the one place serving code imports training (the import-linter
        contract names this door). The manager's own module loads no TensorFlow; a run does."""
        from arcade_pacs.training.retrain import RetrainManager

        return RetrainManager(self.sessions, self.settings.arcade_dir, self.settings.model.path, self.model.promote)

    def report_once(self) -> int:
        """Cancel deliveries to removed destinations, write the SRs of ready studies, wake the senders."""
        # Imported here: only a worker reports, and the report code (highdicom, drawing) is a
        # second of start-up that the scp and admin roles need not pay.
        from arcade_pacs.report.reporter import report_ready_studies

        with self.sessions() as session:
            outbox.cancel_removed([d.name for d in self.settings.destinations], session=session)
            return report_ready_studies(self.settings, session=session, owner=self.name, on_sr=self.wake_senders,
                                        on_derived=self.wake_senders,
                                        serving=None if self.model is None else lambda: self.model.get().info)

    def wake_senders(self) -> None:
        """New deliveries are queued: every sender looks now, not at its next poll."""
        for sender in self.senders:
            sender.wake.set()

    def retention_once(self) -> int:
        """Delete the pixel data that ``storage.keep_days`` no longer keeps (0: retention off)."""
        with self.sessions() as session:
            purged = retention.purge_delivered(self.settings.storage.keep_days, session=session)
        if purged:
            log.info("retention: pixel data of %d delivered instances deleted", purged)
        return purged

    def _report_loop(self) -> None:
        from arcade_pacs.report.drawing import warm_up

        try:
            warm_up()
        except Exception:  # only a head start: the first report loads what failed here
            log.exception("reporter warm-up failed")
        next_retention = 0.0
        while not self.stopping.is_set():
            try:
                self.report_once()
                if self.settings.storage.keep_days > 0 and time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + RETENTION_INTERVAL_S
                    self.retention_once()
            except Exception:
                log.exception("reporter error")
            self.report_wake.wait(REPORT_INTERVAL_S)  # set as each job ends, so SRs follow at once
            self.report_wake.clear()

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
        if self.workers:
            self.wakeups.listen(self.settings.database.url)
            for worker in self.workers:
                self._thread(f"worker-{worker.name.rsplit(':', 1)[-1]}", worker.run)
            self._thread("reporter", self._report_loop)
            for sender in self.senders:
                self._thread(f"sender-{sender.destination.name}", sender.run)
            log.info("worker %s: model %s, %d destinations", self.name, self.model.get().info.version,
                     len(self.senders))
        if self.worker_process is not None:
            self._thread("worker-process", self.worker_process.run)
        if self.model is not None:
            thread = self.model.build_in_background(self.stopping)
            if thread is not None:
                self._threads.append(thread)

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
        self.report_wake.set()
        self.wakeups.stop()
        if self.worker_process is not None:
            self.worker_process.stop()
        for worker in self.workers:
            worker.stop()
        for sender in self.senders:
            sender.stop()
        if self._server is not None:
            self._server.shutdown()
        # One deadline for all the loops, well inside the grace periods of compose (60 s) and the
        # Kubernetes manifests: a loop stuck on a database that went away at the same moment
        # (each attempt waits for name resolution) must not turn a clean stop into a SIGKILL.
        # A job cut short here is not lost: its lease runs out and another worker takes it.
        deadline = time.monotonic() + STOP_WAIT_S
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            log.warning("stopping without waiting longer for %s (%.0f s passed)", ", ".join(stuck), STOP_WAIT_S)
        self.db_engine.dispose()

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
        from arcade_pacs.admin.server import server_config

        scp = self.runs(Role.SCP)
        state = AdminState(
            self.settings, self.sessions, self.model, self.retrain,
            scp_listening=self.scp_listening if scp else None,
            active_associations=self.active_associations if scp else None,
            stow=self.stow if scp else None,
        )
        app = create_app(state, full=self.runs(Role.ADMIN))
        uvicorn.Server(server_config(app, self.settings)).run()
