"""The served model's one owner: which engine serves it and why, loaded, warmed up, swapped.

:class:`ServedModel` is what the worker, ``/predict``, ``/status``, the bench and retraining
ask. It loads the configured model (``settings.model``, whole) with the engine ``model.engine``
chooses, by these rules, without any data folder:

``litert``
    the shipped float LiteRT form beside each member's ``.keras`` file, verified at load
    (:func:`arcade_pacs.model.forms.verify`: digests, the build's val check, the golden pairs
    within tolerance, no decision flipped), or refuse to start (:class:`EngineCheckError`).
``litert-int8``
    the shipped full-integer form of a single network, served as the model it was validated
    as (:mod:`arcade_pacs.training.quantize`: its own calibration, threshold, version and
    Device UID replace the sidecar's), verified at load the same way against its own golden
    outputs, or refuse to start.
``auto`` (default)
    the int8 form when its own validation passed and it verifies (about twice the float form's
    passes per second); else the float form when it verifies; otherwise Keras, with the
    refusals as the reason (and, where the data are, the float form is built in the background
    and swapped in once it passed).
``keras``
    Keras on the ``.keras`` file (development; the only path that loads TensorFlow).

Whatever serves, :attr:`Classifier.info` is the identity of what computes the scores: the SR,
``/status`` and the results name the int8 model when the int8 form serves.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from arcade_pacs.model.classifier import Classifier, ModelInfo
from arcade_pacs.model.engine import ENGINE_CHOICES, Engine, EngineCheckError
from arcade_pacs.model.forms import LITERT_INT8, REBUILD, Form, shipped, verify
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.settings import ModelSettings

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """The engine chosen to serve and why (logged, shown by ``/status`` and the bench)."""

    engine: Engine
    reason: str
    needs_build: bool = False  # ``auto`` serves Keras because no form of these weights exists
    check: dict | None = None
    forms: list[dict] = field(default_factory=list)


def _keras(path: Path, settings: ModelSettings):
    from arcade_pacs.model.keras_engine import KerasEngine  # TensorFlow: only when Keras serves

    return KerasEngine.load(path, settings.batch_size, settings.threads or None)


def select(member: Path, settings: ModelSettings, raw_threshold: float) -> Selection:
    """Load the engine ``settings.engine`` asks for, for one member's ``.keras`` file (see the module)."""
    choice = settings.engine
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"unknown engine {choice!r}: one of {', '.join(ENGINE_CHOICES)}")
    member = Path(member)
    if choice == "keras":
        return Selection(_keras(member, settings), "configured")
    try:
        engine, check = verify(member, raw_threshold, threads=settings.threads, batch_size=settings.litert_batch)
    except EngineCheckError as exc:
        if choice == "litert":
            raise
        log.warning("serving Keras: %s", exc)
        missing = shipped(member) is None or REBUILD in str(exc)
        return Selection(_keras(member, settings), f"LiteRT refused: {exc}", needs_build=missing)
    form = shipped(member)
    return Selection(engine, f"shipped form verified (golden max |dp| {check['max_abs_diff']:.1e}, "
                     f"{check['flips']} flips)", check=check, forms=[form.summary()])


def int8_info(info: ModelInfo, form: Form) -> ModelInfo:
    """The model the int8 form was validated as: the sidecar's, with the form's own operating point
    (calibration, threshold), val figures, version and Device UID."""
    own = form.own
    return replace(info, name=f"{info.name}, int8", version=own["version"], device_uid=own["device_uid"],
                   threshold=own["threshold"], calibration=own["calibration"], metrics={"val": own["val"]})


def select_int8(path: Path, settings: ModelSettings, info: ModelInfo) -> tuple[Selection, ModelInfo]:
    """The verified int8 form of a single network and the identity it serves under; else
    :class:`EngineCheckError` with the reason."""
    if info.members:
        raise EngineCheckError("an int8 form serves a single network, not an ensemble")
    form = shipped(path, LITERT_INT8)
    if form is None:
        raise EngineCheckError(f"no int8 form of {Path(path).name}: arcade-pacs engine --int8 makes one")
    served = int8_info(info, form) if form.servable else info
    # verify() refuses a form whose own validation did not pass before it reads the identity.
    engine, check = verify(path, served.platt.inverse(served.threshold), kind=LITERT_INT8,
                           threads=settings.threads, batch_size=settings.litert_batch)
    reason = (f"int8 form validated as its own model (val sensitivity {served.metrics['val']['image_sensitivity']:.3f}, "
              f"FPR {served.metrics['val']['negative_window_fpr']:.3f}) and verified (golden max |dp| "
              f"{check['max_abs_diff']:.1e}, {check['flips']} flips)")
    return Selection(engine, reason, check=check, forms=[form.summary()]), served


def load(settings: ModelSettings) -> tuple[Classifier, Selection]:
    """The configured model with its engine(s): one selection per member, one reason for all."""
    path = Path(settings.path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    info = ModelInfo.read(path)
    int8_refused = ""
    if settings.engine == LITERT_INT8 or (settings.engine == "auto" and shipped(path, LITERT_INT8) is not None):
        try:
            chosen, served = select_int8(path, settings, info)
            return Classifier(None, served, path, settings.batch_size, chosen.engine), chosen
        except EngineCheckError as exc:
            if settings.engine == LITERT_INT8:
                raise
            log.info("int8 form not served: %s", exc)
            int8_refused = f"; int8 not served: {exc}"
    # Forms are checked on raw outputs: the stored threshold mapped back through the calibration.
    raw_threshold = info.platt.inverse(info.threshold)
    chosen = [select(member, settings, raw_threshold) for member in info.member_paths(path)]
    first = chosen[0]
    if len(chosen) > 1 or int8_refused:  # the ensemble serves one engine kind; a build still needed by any member counts
        first = Selection(first.engine, "; ".join(c.reason for c in chosen) + int8_refused,
                          needs_build=any(c.needs_build for c in chosen), check=first.check,
                          forms=[f for c in chosen for f in c.forms])
    keras_model = getattr(first.engine, "model", None)
    classifier = Classifier(keras_model, info, path, settings.batch_size, first.engine,
                            [c.engine for c in chosen[1:]])
    return classifier, first


def warm_up(classifier: Classifier) -> float:
    """First inference and first tensor preparation now, not in the first study; the seconds."""
    from arcade_pacs.pipeline.tensors import frame_tensors

    started = time.perf_counter()
    frame_tensors(np.zeros((512, 512), dtype=np.float32))
    classifier.warm_up()
    return time.perf_counter() - started


class ServedModel(ModelHolder):
    """The model this process serves, and why: loaded and warmed up once, swapped on promotion.

    A :class:`ModelHolder` (jobs take the classifier with :meth:`get`; a swap never interrupts
    one), which also owns the engine choice: :meth:`describe` answers "what is serving and
    why", :meth:`promote` and :meth:`reload` apply the same rules to a new model, and under
    ``auto`` :meth:`build_in_background` makes a missing form where the data are.
    """

    def __init__(self, settings: ModelSettings, val_images: Path | None = None):
        self.settings = settings
        self.val_images = val_images
        self._build_lock = threading.Lock()
        classifier, self.selection = self._open()
        super().__init__(classifier)

    def _open(self) -> tuple[Classifier, Selection]:
        classifier, selection = load(self.settings)
        log.info("model %s served by %s (%s); warmed up in %.1fs", classifier.info.version,
                 classifier.engine_name, selection.reason, warm_up(classifier))
        return classifier, selection

    @property
    def needs_build(self) -> bool:
        return self.selection.needs_build

    def describe(self) -> dict:
        """What serves and why (``/status``, ``arcade-pacs bench``)."""
        classifier = self.get()
        return {"version": classifier.info.version, "engine": classifier.engine_name,
                "configured": self.settings.engine, "reason": self.selection.reason,
                "forms": self.selection.forms}

    def reload(self, _path=None) -> Classifier:
        """The model changed on disk (promoted by another process): load it by the same rules."""
        classifier, self.selection = self._open()
        return classifier

    def watch_file(self) -> None:
        """Follow the configured model file: a promotion elsewhere is loaded before the next job."""
        self.watch(self.settings.path, self.reload)

    def promote(self, classifier: Classifier) -> None:
        """A retrained model won (its files already replaced the serving ones): serve it from the
        next job on, with its verified form where there is one (Keras meanwhile under ``auto``;
        under ``litert`` a new model without a passing form keeps the old one serving)."""
        try:
            classifier, self.selection = self._open()
        except EngineCheckError:
            log.exception("the promoted model has no form that passed its check: the previous model keeps serving")
            return
        self.swap(classifier)
        self.build_in_background()

    def build_in_background(self, stopping: threading.Event | None = None) -> threading.Thread | None:
        """Under ``auto`` with no form for these weights: build it (where the val images are) and
        serve it once it passed. Returns the thread, or ``None`` when there is nothing to do."""
        if not self.needs_build:
            return None
        if self.val_images is None or not Path(self.val_images).is_dir():
            log.info("no LiteRT form for %s and no val images at %s to build one: Keras serves",
                     Path(self.settings.path).name, self.val_images)
            return None
        thread = threading.Thread(target=self._build, args=(stopping,), name="engine-build", daemon=True)
        thread.start()
        return thread

    def _build(self, stopping: threading.Event | None) -> None:
        from arcade_pacs.model.build import BuildBusy, build_forms  # TensorFlow: only where forms are built

        with self._build_lock:
            before = self.get()
            try:
                build_forms(self.settings.path, self.settings, self.val_images, wait=False)
                classifier, selection = load(self.settings)
            except BuildBusy as exc:
                log.info("%s: Keras keeps serving until a restart finds the form", exc)
                return
            except Exception:
                log.exception("building the LiteRT form failed: Keras keeps serving")
                return
            current = self.get()
            if selection.needs_build or (stopping is not None and stopping.is_set()):
                return
            if classifier.engine_name == current.engine_name or current is not before:
                return  # nothing better, or another model was promoted meanwhile (its own build follows)
            log.info("model %s now served by %s (%s); warmed up in %.1fs", classifier.info.version,
                     classifier.engine_name, selection.reason, warm_up(classifier))
            self.selection = selection
            self.swap(classifier)
