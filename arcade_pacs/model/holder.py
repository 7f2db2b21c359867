"""The serving classifier, held once per process and swappable at run time (retraining)."""

from __future__ import annotations

import threading

from arcade_pacs.model.classifier import Classifier


class ModelHolder:
    """Holds the classifier every component serves from; a promotion swaps it in place.

    A job that already took the classifier with :meth:`get` finishes with it; the next
    :meth:`get` returns the new one, so a swap never interrupts work in progress.
    """

    def __init__(self, classifier: Classifier):
        self._classifier = classifier
        self._lock = threading.Lock()

    def get(self) -> Classifier:
        """The classifier serving now."""
        with self._lock:
            return self._classifier

    def swap(self, classifier: Classifier) -> None:
        """Serve ``classifier`` from the next :meth:`get` on."""
        with self._lock:
            self._classifier = classifier
