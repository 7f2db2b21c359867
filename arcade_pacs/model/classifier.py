"""The serving classifier: a Keras model file plus its metadata sidecar, loaded once.

Every ``.keras`` file has a JSON sidecar with the same stem (``arcade_effb0.json``) holding what
the SR and the admin must say about the model: name, version, Device UID, the operating
threshold chosen on the validation split, and the metrics measured when it was made.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from arcade_pacs import metrics
from arcade_pacs.settings import ModelSettings

MODEL_NAME = "ARCADE EfficientNetB0 stenosis classifier"
PREDICT_BATCH = ModelSettings.model_fields["batch_size"].default
"""Windows per inference call when none is configured: ``model.batch_size``'s default."""


@dataclass
class ModelInfo:
    """What is known about one trained model file (the sidecar JSON)."""

    name: str = MODEL_NAME
    version: str = "unversioned"
    device_uid: str = ""
    threshold: float = 0.5
    created: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @staticmethod
    def sidecar(model_path: Path) -> Path:
        return Path(model_path).with_suffix(".json")

    @classmethod
    def read(cls, model_path: Path) -> ModelInfo:
        path = cls.sidecar(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"model metadata missing: {path}")
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def write(self, model_path: Path) -> None:
        path = self.sidecar(model_path)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's start-up chatter and bound its thread pools (once, before first use)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))
        except RuntimeError:  # already initialised: keep what is there
            pass


class Classifier:
    """A loaded model: batched, thread-safe prediction with test-time augmentation."""

    def __init__(self, keras_model, info: ModelInfo, path: Path | None = None, batch_size: int = PREDICT_BATCH):
        self.model = keras_model
        self.info = info
        self.path = path
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, batch_size: int = PREDICT_BATCH) -> Classifier:
        """Load ``path`` (``.keras``) and its sidecar; raise ``FileNotFoundError`` when either is missing."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        info = ModelInfo.read(path)
        configure_tensorflow()
        import keras

        model = keras.models.load_model(path, compile=False)
        return cls(model, info, path, batch_size)

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        """Probabilities ``(N,)`` for ``(N, 224, 224, 3)`` float32 tensors in [0, 1]."""
        tensors = np.asarray(tensors, dtype=np.float32)
        out = np.zeros(len(tensors), dtype=np.float32)
        with self._lock:
            for start in range(0, len(tensors), self.batch_size):
                batch = tensors[start : start + self.batch_size]
                out[start : start + len(batch)] = np.asarray(
                    self.model.predict_on_batch(batch)
                ).reshape(-1)
                metrics.INFERENCE_PASSES.inc()
        metrics.INFERENCE_IMAGES.inc(len(tensors))
        return out
