"""The running plugin: every resource created once, every loop started and stopped in one place.

``arcade-pacs serve`` builds a :class:`Service` and runs it in the foreground:

- the database engine (schema brought to the newest migration),
- the model (loaded once with the engine ``model.engine`` selects, warmed up, swappable by
  retraining; under ``auto`` a missing LiteRT form is built in the background and swapped in
  once it passed its check),
- the SCP (pynetdicom, background threads),
- the analysis workers (``pipeline.workers`` threads sharing one batched inference engine),
- the dispatcher (a thread: writes SRs of quiet studies, empties the outbox),
- the admin API (uvicorn, in the foreground).
"""

from __future__ import annotations

import logging
import threading

from arcade_pacs.conformance import load_contexts
from arcade_pacs.db import make_engine, make_session_factory, migrate
from arcade_pacs.model import engine as engines
from arcade_pacs.model.classifier import Classifier, configure_tensorflow
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.pipeline.tensors import frame_tensors
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from arcade_pacs.report.reporter import report_ready_studies
from arcade_pacs.send import outbox
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.settings import Settings
from arcade_pacs.training.retrain import RetrainManager
from arcade_pacs.worker import Worker, recover_running

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
        self.stopping = threading.Event()
        self.dispatch_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._build_lock = threading.Lock()
        classifier, selection = Classifier.serving(settings.model, self.val_images)
        log.info("model served by %s (%s)", classifier.engine_name, selection.reason)
        self.warm_up(classifier)
        self.model = ModelHolder(classifier)
        self._pending_build = selection.needs_build
        self.contexts = load_contexts()
        self.workers = [
            Worker(settings, self.sessions, self.model, index=i, on_done=self.dispatch_wake.set, recover=False)
            for i in range(settings.pipeline.workers)
        ]
        self.store = StoreContext(settings, self.sessions, self.contexts, on_stored=[self._wake_workers])
        self.scp_ae = make_scp_ae(settings, self.contexts)
        self.scu = StoreSCU(settings, self.contexts)
        self.retrain = RetrainManager(self.sessions, settings.data_dir / "arcade", settings.model.path, self._promoted)
        self.retrain.recover()
        self._server = None

    @property
    def val_images(self):
        """Where derived engines are checked (ARCADE's val pictures)."""
        return self.settings.data_dir / "arcade" / "stenosis" / "val" / "images"

    @staticmethod
    def warm_up(classifier: Classifier) -> None:
        """First inference and first tensor preparation now, not in the first study."""
        import numpy as np

        frame_tensors(np.zeros((512, 512), dtype=np.float32))
        log.info("model warmed up in %.1fs", classifier.warm_up())

    def _wake_workers(self, _instance_id=None) -> None:
        for worker in self.workers:
            worker.wake.set()

    def _promoted(self, classifier: Classifier) -> None:
        """A retrained model won: serve it from the next job on, then its derived engine if any.

        Under ``litert`` the new model's form is built and checked before it serves (a failure
        keeps the old model serving); under ``auto`` Keras serves it at once and the form
        is built in the background.
        """
        choice = self.settings.model.engine
        if choice == "litert":
            classifier, _ = Classifier.serving(self.settings.model, self.val_images)
        else:
            classifier.batch_size = self.settings.model.batch_size
        self.warm_up(classifier)
        self.model.swap(classifier)
        if choice == "auto":
            self._start_build()

    def _start_build(self) -> None:
        thread = threading.Thread(target=self._build_engine, name="engine-build", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _build_engine(self) -> None:
        """Build and check the LiteRT form of the serving model; serve it if it passed and is faster."""
        with self._build_lock:
            try:
                m = self.settings.model
                info = self.model.get().info
                engines.build(m.path, info.threshold, self.val_images, threads=m.threads, batch_size=m.batch_size,
                              check_images=m.check_images or None, wait=False)
                classifier, selection = Classifier.serving(m, self.val_images)
            except engines.BuildBusy as exc:
                log.info("%s: Keras keeps serving until a restart finds the form", exc)
                return
            except Exception:
                log.exception("building the LiteRT form failed: Keras keeps serving")
                return
            if selection.needs_build or self.stopping.is_set() or classifier.engine_name == self.model.get().engine_name:
                return
            if classifier.info.version != self.model.get().info.version:
                return  # another model was promoted meanwhile; its own build follows
            self.warm_up(classifier)
            self.model.swap(classifier)
            log.info("model now served by %s (%s)", classifier.engine_name, selection.reason)

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
            self.dispatch_wake.wait(DISPATCH_INTERVAL_S)
            self.dispatch_wake.clear()

    def start(self) -> None:
        """Start the SCP, the worker and the dispatcher (non-blocking)."""
        recover_running(self.sessions)
        self._server = start_scp(self.scp_ae, self.settings, self.store)
        loops = [(f"worker-{w.name.rsplit(':', 1)[-1]}", w.run) for w in self.workers]
        for name, target in [*loops, ("dispatcher", self._dispatch_loop)]:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self._pending_build:
            self._pending_build = False
            self._start_build()
        log.info(
            "SCP %s listening on %s:%d; model %s",
            self.settings.scp.ae_title, self.settings.scp.host, self.settings.scp.port,
            self.model.get().info.version,
        )

    def stop(self) -> None:
        """Stop accepting associations, then let the loops finish their current step."""
        self.stopping.set()
        self.dispatch_wake.set()
        for worker in self.workers:
            worker.stop()
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
        app = create_app(AdminState(self.settings, self.sessions, self.model, self.retrain))
        try:
            uvicorn.run(app, host=self.settings.admin.host, port=self.settings.admin.port, log_level="warning")
        finally:
            self.stop()
