"""The reference engine: Keras on the ``.keras`` file (development, building forms, fallback).

The only serving-side module that loads TensorFlow and Keras; the serving modules reach it only
where ``model.engine`` asks for Keras or ``auto`` falls back to it (the import-linter contract
names those doors). A LiteRT-served process never imports this module.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from arcade_pacs.model.engine import in_batches


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's start-up chatter and bound its thread pools (once, before first use)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))
        except RuntimeError:  # already initialised: keep what is there
            pass


class KerasEngine:
    """Keras ``predict_on_batch`` in chunks of ``batch_size`` (the reference engine)."""

    name = "keras"

    def __init__(self, model, batch_size: int = 16):
        self.model = model
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, batch_size: int = 16, threads: int | None = None) -> KerasEngine:
        configure_tensorflow(threads)
        import keras

        return cls(keras.models.load_model(path, compile=False), batch_size)

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        with self._lock:
            return in_batches(tensors, self.batch_size, lambda batch: self.model.predict_on_batch(batch))
