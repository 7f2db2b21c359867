"""The serving classifier, held once per process and swappable at run time (retraining)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from arcade_pacs.model.classifier import Classifier, ModelInfo

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int] | None:
    """When the model file and its sidecar last changed (``None`` while one is missing)."""
    try:
        return Path(path).stat().st_mtime_ns, ModelInfo.sidecar(path).stat().st_mtime_ns
    except OSError:
        return None


class ModelHolder:
    """Holds the classifier every component serves from; a promotion swaps it in place.

    A job that already took the classifier with :meth:`get` finishes with it; the next
    :meth:`get` returns the new one, so a swap never interrupts work in progress.
    """

    def __init__(self, classifier: Classifier):
        self._classifier = classifier
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._load: Callable[[Path], Classifier] | None = None
        self._refreshing = threading.Lock()

    def watch(self, path: Path, load: Callable[[Path], Classifier] | None = None) -> None:
        """Follow the model file at ``path``: :meth:`refresh` reloads it when it changes on disk.

        A worker in another process than the admin learns of a promoted model this way;
        ``load`` builds the new classifier (:meth:`ServedModel.reload`: the configured engine),
        Keras by default.
        """
        self._path, self._stamp, self._load = Path(path), _stamp(path), load

    def refresh(self) -> bool:
        """Reload the watched model if its files changed since loaded; True when a new one serves."""
        if self._path is None:
            return False
        with self._refreshing:  # several worker threads of one process: one reload
            return self._reload()

    def _reload(self) -> bool:
        stamp = _stamp(self._path)
        if stamp is None or stamp == self._stamp:
            return False
        current = self.get()
        classifier = self._load(self._path) if self._load else Classifier.load(self._path, current.batch_size)
        self._stamp = stamp
        if classifier.info.version == current.info.version:
            return False
        self.swap(classifier)
        log.info("model %s loaded from disk (was %s)", classifier.info.version, current.info.version)
        return True

    def get(self) -> Classifier:
        """The classifier serving now."""
        with self._lock:
            return self._classifier

    def swap(self, classifier: Classifier) -> None:
        """Serve ``classifier`` from the next :meth:`get` on."""
        with self._lock:
            self._classifier = classifier
