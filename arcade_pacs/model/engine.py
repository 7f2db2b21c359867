"""Inference engines of the served model: the protocol and the LiteRT engine.

The ``.keras`` file is the source of truth (training, retraining, promotion). Serving runs the
LiteRT form derived from it (``ai-edge-litert``'s interpreter with its XNNPACK CPU kernels),
shipped beside it and checked against Keras where the data are (:mod:`.build`), verified again
at every load without any data (:mod:`.forms`, :mod:`.golden`). Keras itself stays as the
reference engine for development and as the fallback of ``model.engine = "auto"``
(:mod:`.keras_engine`, the one serving module that loads TensorFlow, and only when asked).

This module never imports TensorFlow or Keras (an import-linter contract says so).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

ENGINE_CHOICES = ("auto", "litert", "litert-int8", "keras")
INPUT_SIDE = 224


class EngineCheckError(RuntimeError):
    """A derived engine did not give Keras' answers (or could not be built, found or checked)."""


class Engine(Protocol):
    """Scores ``(N, 224, 224, 3)`` float32 windows in [0, 1]: probabilities ``(N,)``."""

    name: str
    batch_size: int  # windows per call of the runtime: predict runs longer inputs in chunks of it

    def predict(self, tensors: np.ndarray) -> np.ndarray: ...


def file_digest(path: Path) -> str:
    """SHA-256 of a file (the ``.keras`` file: the key every derived form is checked against)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


model_digest = file_digest


def versions() -> dict[str, str]:
    """Versions of the runtimes an engine figure depends on (for manifests and the bench)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def in_batches(tensors: np.ndarray, batch_size: int, run) -> np.ndarray:
    """``run`` over ``tensors`` ``batch_size`` windows at a time; the ``(N,)`` probabilities."""
    tensors = np.asarray(tensors, dtype=np.float32)
    out = np.zeros(len(tensors), dtype=np.float32)
    for start in range(0, len(tensors), batch_size):
        batch = tensors[start : start + batch_size]
        out[start : start + len(batch)] = np.asarray(run(batch)).reshape(-1)
    return out


class LiteRTEngine:
    """A LiteRT (``ai-edge-litert``) interpreter on its default XNNPACK CPU delegate.

    One interpreter; its input is resized to each batch's size (XNNPACK reshapes its subgraph
    without re-packing weights: a few milliseconds). ``invoke`` releases the GIL, so decoding
    and tensor preparation in other threads overlap with inference.
    """

    name = "litert"

    def __init__(self, path: Path, threads: int = 0, batch_size: int = 16):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        self._it = Interpreter(model_path=str(path), num_threads=self.threads)
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._size: int | None = None
        self._lock = threading.Lock()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n != self._size:
            self._it.resize_tensor_input(self._in, [n, INPUT_SIDE, INPUT_SIDE, 3])
            self._it.allocate_tensors()
            self._size = n
        self._it.set_tensor(self._in, np.ascontiguousarray(batch, dtype=np.float32))
        self._it.invoke()
        return self._it.get_tensor(self._out).reshape(-1).copy()

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        with self._lock:
            return in_batches(tensors, self.batch_size, self._run)
