"""The serving classifier: a Keras model file plus its metadata sidecar, loaded once.

Every ``.keras`` file has a JSON sidecar with the same stem (``arcade_stenosis.json``) holding what
the SR and the admin must say about the model: name, version, Device UID, the operating
threshold chosen on the validation split, and the metrics measured when it was made.

A model may be an ensemble: the sidecar's ``members`` names further ``.keras`` files beside it
whose probabilities are averaged with the main file's, pass by pass, each through its own
shipped, checked form (which engine serves is :mod:`arcade_pacs.model.serving`'s choice). The sidecar's ``calibration`` (a Platt map fitted on ``val``,
:mod:`arcade_pacs.model.calibration`) is applied to that average, so every probability the
plugin reports, and the threshold, are on the calibrated scale.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from arcade_pacs.model.batcher import Batcher
from arcade_pacs.model.calibration import Platt
from arcade_pacs.model.engine import Engine
from arcade_pacs.settings import ModelSettings

__all__ = ["Classifier", "ModelInfo", "MODEL_NAME", "PREDICT_BATCH"]

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
    calibration: dict = field(default_factory=dict)  # Platt map (empty: raw scores)
    members: list[str] = field(default_factory=list)  # further .keras files beside this one, averaged
    backbone: str = "effb0"  # the network it was trained as ("effb0", "lite0"): training/network.py
    init: str = "scratch"  # how its backbone started: "scratch" or "imagenet"

    @property
    def platt(self) -> Platt:
        """The calibration map (the identity for a model stored without one)."""
        return Platt.from_json(self.calibration)

    def member_paths(self, model_path: Path) -> list[Path]:
        """Every member's weights file, the main one first."""
        model_path = Path(model_path)
        return [model_path, *(model_path.with_name(name) for name in self.members)]

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

    @classmethod
    def read_if_present(cls, model_path: Path) -> ModelInfo | None:
        """The sidecar of ``model_path``, or ``None`` where there is none (no serving model yet)."""
        return cls.read(model_path) if cls.sidecar(model_path).is_file() else None

    def write(self, model_path: Path) -> None:
        path = self.sidecar(model_path)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


class Classifier:
    """A loaded model: its metadata and the engine serving it, behind one shared batcher.

    ``predict`` may be called from many threads at once (worker jobs, ``/predict``); the
    :class:`~arcade_pacs.model.batcher.Batcher` packs their windows into batches for the one
    engine. ``model`` is the Keras model (the source of truth), loaded on first use when the
    serving engine is a derived one (training and development only: it loads TensorFlow).
    """

    def __init__(self, keras_model, info: ModelInfo, path: Path | None = None, batch_size: int = PREDICT_BATCH,
                 engine: Engine | None = None, members: list[Engine] | None = None):
        self._keras = keras_model
        self.info = info
        self.path = path
        if engine is None:
            from arcade_pacs.model.keras_engine import KerasEngine

            engine = KerasEngine(keras_model, batch_size)
        self.engine = engine
        self.engines = [self.engine, *(members or [])]
        self.calibration = info.platt
        self.batcher = Batcher(self._run, batch_size)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One batch: every member's probabilities, averaged, then calibrated."""
        raw = self.engines[0].predict(batch)
        if len(self.engines) > 1:
            raw = np.mean([np.asarray(raw, np.float64)] + [e.predict(batch) for e in self.engines[1:]], axis=0)
        return self.calibration(np.asarray(raw, np.float32))

    @property
    def batch_size(self) -> int:
        return self.batcher.max_batch

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        """The batcher's largest batch (and Keras' windows per call; LiteRT keeps its own)."""
        self.batcher.max_batch = value
        if self.engine.name == "keras":
            self.engine.batch_size = value

    @property
    def model(self):
        """The Keras model (loaded from ``path`` on first use when another engine serves)."""
        if self._keras is None:
            if self.engine.name == "keras":
                self._keras = self.engine.model
            else:
                from arcade_pacs.model.keras_engine import KerasEngine

                self._keras = KerasEngine.load(self.path).model
        return self._keras

    @classmethod
    def load(cls, path: Path, batch_size: int = PREDICT_BATCH) -> Classifier:
        """Load ``path`` (``.keras``) with Keras, and its sidecar; ``FileNotFoundError`` when either is missing.

        Training, evaluation and development; serving loads through :mod:`arcade_pacs.model.serving`.
        """
        from arcade_pacs.model.keras_engine import KerasEngine

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        info = ModelInfo.read(path)
        engine = KerasEngine.load(path, batch_size)
        members = [KerasEngine.load(p, batch_size) for p in info.member_paths(path)[1:]]
        return cls(engine.model, info, path, batch_size, engine, members)

    @property
    def engine_name(self) -> str:
        return self.engine.name if len(self.engines) == 1 else f"{self.engine.name} x{len(self.engines)}"

    def warm_up(self) -> float:
        """Run one full batch and one single window, so the first job is as fast as the tenth.

        Returns the seconds it took (graph tracing, XNNPACK weight packing, buffer allocation).
        """
        started = time.perf_counter()
        # The engine's own batch (Keras: the batcher's; LiteRT: litert_batch), not the batcher's:
        # a LiteRT engine runs 16 windows as four calls of the same shape, and each pass costs start-up.
        for n in (self.engine.batch_size, 1):
            self.predict(np.full((n, 224, 224, 3), 0.5, dtype=np.float32))
        return time.perf_counter() - started

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        """Probabilities ``(N,)`` for ``(N, 224, 224, 3)`` float32 tensors in [0, 1]."""
        return self.batcher.predict(tensors)

