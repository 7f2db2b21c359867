"""The running plugin: every resource created once, every loop started and stopped in one place.

``arcade-pacs serve`` builds a :class:`Service` and runs it in the foreground:

- the database engine (schema brought to the newest migration),
- the model (loaded once, swappable by retraining),
- the SCP (pynetdicom, background threads),
- the analysis worker (a thread),
- the dispatcher (a thread: writes SRs of quiet studies, empties the outbox),
- the admin API (uvicorn, in the foreground).
"""

from __future__ import annotations

import logging
import threading

from arcade_pacs.conformance import load_contexts
from arcade_pacs.db import make_engine, make_session_factory, migrate
from arcade_pacs.model.classifier import Classifier, configure_tensorflow
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.send import outbox
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.settings import Settings
from arcade_pacs.training.retrain import RetrainManager
from arcade_pacs.worker import Worker

log = logging.getLogger(__name__)

DISPATCH_INTERVAL_S = 1.0


class Service:
    """All long-lived resources and loops of one plugin process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.storage.root.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.database.url)
        migrate(self.engine)
        self.sessions = make_session_factory(self.engine)
        configure_tensorflow(settings.model.threads or None)
        self.model = ModelHolder(Classifier.load(settings.model.path, settings.model.batch_size))
        self.contexts = load_contexts()
        self.worker = Worker(settings, self.sessions, self.model)
        self.store = StoreContext(settings, self.sessions, self.contexts, on_stored=[lambda _id: self.worker.wake.set()])
        self.scp_ae = make_scp_ae(settings, self.contexts)
        self.scu = StoreSCU(settings, self.contexts)
        self.retrain = RetrainManager(self.sessions, settings.data_dir / "arcade", settings.model.path, self._promoted)
        self.retrain.recover()
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None

    def _promoted(self, classifier: Classifier) -> None:
        """A retrained model won: serve it from the next job on, with this service's batch size."""
        classifier.batch_size = self.settings.model.batch_size
        self.model.swap(classifier)

    def dispatch_once(self) -> None:
        """Write the SRs of ready studies, then attempt due deliveries."""
        with self.sessions() as session:
            report_ready_studies(self.settings, session=session)
        with self.sessions() as session:
            outbox.send_due(self.scu, session=session)

    def _dispatch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.dispatch_once()
            except Exception:
                log.exception("dispatcher error")
            self.stopping.wait(DISPATCH_INTERVAL_S)

    def start(self) -> None:
        """Start the SCP, the worker and the dispatcher (non-blocking)."""
        self._server = start_scp(self.scp_ae, self.settings, self.store)
        for name, target in (("worker", self.worker.run), ("dispatcher", self._dispatch_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "SCP %s listening on %s:%d; model %s",
            self.settings.scp.ae_title, self.settings.scp.host, self.settings.scp.port,
            self.model.get().info.version,
        )

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
        self.worker.stop()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=60)
        self.engine.dispose()

    def serve_forever(self) -> None:
        """Run everything, the admin API in the foreground, until interrupted."""
        import uvicorn

        from arcade_pacs.admin.app import AdminState, create_app

        self.start()
        app = create_app(AdminState(
            self.settings, self.sessions, self.model, self.retrain,
            scp_listening=self.scp_listening, active_associations=self.active_associations,
        ))
        try:
            uvicorn.run(app, host=self.settings.admin.host, port=self.settings.admin.port, log_level="warning")
        finally:
            self.stop()
