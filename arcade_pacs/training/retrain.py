"""Retraining as a feature: train a candidate, promote it only if it is at least as good.

``arcade-pacs train --promote`` and ``POST /retrain`` run the same :func:`retrain`: the
candidate gets its own version and Device UID (from :func:`arcade_pacs.training.train.train`),
is written under ``models/candidates/``, and replaces the serving model only when its
validation window AUC (TTA, the fixed protocol) is at least the serving model's. Both figures
are measured here, by one function (:func:`measured_val_auc`): the same validation images (the
candidate's own split), each model loaded the same way and scored by the path serving uses
(its :class:`~arcade_pacs.model.classifier.Classifier`: members averaged, calibrated view by
view, original and mirror averaged). Neither figure is read back from a sidecar: the serving
model's may come from another data folder or a ``limit_val``, and the candidate's, from
training's calibration, scores the views by another path (windows resampled mirrored, float64
calibration), which on a weak model can order a near tie differently. Twins thus compare equal. Promotion
copies the files atomically, loads the new model and swaps it into the running worker: a job
already running finishes with the model it started with, the next one uses the new model, and
every result records the model version that produced it.

A serving model whose package holds an int8 form gets a winner with one too: the winner's int8
form is made and judged (gate and own validation, :mod:`arcade_pacs.training.quantize`) before
the promotion, so it serves the same way the old one did when it passes its own rule, and its
float form serves otherwise.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.db.retraining import ACTIVE_STATES, RetrainBusy, RetrainState
from arcade_pacs.db.tables import RetrainRun, utcnow
from arcade_pacs.model.classifier import Classifier, ModelInfo
from arcade_pacs.model.forms import LITERT_INT8, form_path, manifest_path, shipped
from arcade_pacs.training.data import check_layout, load_split
from arcade_pacs.training.evaluate import score_split, window_auc
from arcade_pacs.training.train import Progress, TrainConfig, train, write_forms

log = logging.getLogger(__name__)

KIND_FIELDS = ("backbone", "init", "members")
"""The training fields that make a model's kind: a retraining takes them from the serving model."""


def same_kind(serving: ModelInfo | None) -> dict:
    """The kind of the serving model as training fields: its network (backbone, initialisation)
    and its number of members (each calibrated as one). Both ways of retraining (``POST
    /retrain`` and ``arcade-pacs train --promote``) make a candidate of this kind, but for the
    fields their request names."""
    if serving is None:
        return {}
    return {"backbone": serving.backbone, "init": serving.init, "members": 1 + len(serving.members)}


@dataclass(frozen=True)
class Outcome:
    """What a retraining produced and whether it now serves."""

    candidate: Path
    candidate_info: ModelInfo
    candidate_val_auc: float | None  # measured as the serving model's is (measured_val_auc)
    serving_val_auc: float | None
    promoted: bool


def measured_val_auc(model: Path, cfg: TrainConfig) -> float | None:
    """A model's val window AUC, measured now on the candidate's validation images.

    Same split and ``limit_val`` as the candidate's training, the product's TTA protocol
    (:func:`arcade_pacs.training.evaluate.score_split` with the model's own ``predict``), the
    model loaded with Keras: applied to the serving model and to the candidate alike, so the
    comparison is like for like. ``None`` when there is no model at ``model`` or the split has
    only one class of windows.
    """
    if not Path(model).is_file():
        return None
    split = load_split(cfg.data_dir, "val", cfg.limit_val)
    auc = window_auc(score_split(Classifier.load(model).predict, split, tta=True))
    return auc if math.isfinite(auc) else None


def write_int8_form(out: Path, data_dir: Path, limit_val: int | None = None, limit_train: int | None = None) -> None:
    """Make and judge the int8 form of a winner (:func:`arcade_pacs.training.quantize.quantize`),
    calibrated on the train images it was trained on (at most the usual number). A failure is
    logged: the float form then serves, as for a model without one."""
    from arcade_pacs.training.quantize import CALIBRATION_IMAGES, quantize

    try:
        entry = quantize(out, data_dir, limit_val=limit_val,
                         calibration_images=min(CALIBRATION_IMAGES, limit_train or CALIBRATION_IMAGES))
    except Exception:
        log.exception("the int8 form of %s could not be made: its float form will serve", out)
        return
    log.info("int8 form of %s: own validation %s", out, "passed" if entry["own"]["passed"] else "failed")


def should_promote(candidate_auc: float | None, serving_auc: float | None) -> bool:
    """A candidate replaces the serving model when its val AUC is known and not lower."""
    return candidate_auc is not None and (serving_auc is None or candidate_auc >= serving_auc)


def model_files(path: Path) -> list[Path]:
    """The files that make up a model, in the order a promotion copies them: each member's serving
    forms, manifest and golden pairs first, then the weights of the further members its sidecar
    names (an ensemble), the main weights, the training curves and the sidecar last (a worker
    reloads when the weights and the sidecar changed, and then finds the forms that vouch for them)."""
    from arcade_pacs.model.golden import Golden

    path = Path(path)
    info = ModelInfo.read_if_present(path)
    members = info.member_paths(path)[1:] if info is not None else []
    package = [f(m) for m in (path, *members) for f in (form_path, Golden.path_for, manifest_path)]
    package.insert(1, form_path(path, LITERT_INT8))  # a single network's int8 form, if any (the manifest vouches)
    return [*package, *members, path, path.with_name(path.stem + "_training.png"), ModelInfo.sidecar(path)]


def promote(candidate: Path, serving: Path) -> None:
    """Copy the candidate's files over the serving ones, each atomically (copy, then rename)."""
    serving = Path(serving)
    for src in model_files(candidate):
        dst = serving.with_name(src.name.replace(Path(candidate).stem, serving.stem, 1))
        if src.is_file():
            tmp = dst.with_name(dst.name + ".promote.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
    info = ModelInfo.read(serving)
    renamed = [name.replace(Path(candidate).stem, serving.stem, 1) for name in info.members]
    if renamed != info.members:  # the sidecar names its members by file name
        info.members = renamed
        info.write(serving)


def retrain(
    cfg: TrainConfig,
    serving: Path,
    on_promote: Callable[[Classifier], None] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Outcome:
    """Train a candidate to ``cfg.out``; promote it over ``serving`` if its val AUC is not lower.

    The serving model is untouched unless the candidate wins; ``on_promote`` receives the
    loaded new classifier (the running service swaps it in).
    """
    check_layout(cfg.data_dir)
    info = train(cfg, progress=progress)
    current = measured_val_auc(serving, cfg)
    candidate = measured_val_auc(cfg.out, cfg)
    better = should_promote(candidate, current)
    if better:
        write_forms(cfg.out, cfg.data_dir, cfg.limit_val)  # the winner ships ready to serve (a loser pays nothing)
        if shipped(serving, LITERT_INT8) is not None:  # the same kind of package: an int8 form, judged
            write_int8_form(cfg.out, cfg.data_dir, cfg.limit_val, cfg.limit_train)
        promote(cfg.out, serving)
        if on_promote is not None:
            on_promote(Classifier.load(serving))
        log.info("model %s promoted (val AUC %.4f >= %s)", info.version, candidate, current)
    else:
        log.info("model %s kept as a candidate (val AUC %s < %s)", info.version, candidate, current)
    return Outcome(cfg.out, info, candidate, current, better)


class RetrainManager:
    """Runs one retraining at a time in a background thread; its state lives in the database."""

    def __init__(self, sessions: sessionmaker[Session], data_dir: Path, serving: Path,
                 on_promote: Callable[[Classifier], None]):
        self.sessions = sessions
        self.data_dir = Path(data_dir)
        self.serving = Path(serving)
        self.on_promote = on_promote
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, params: dict) -> int:
        """Queue a run with ``params`` (TrainConfig fields, data excluded: they come from the
        configuration); raises :class:`RetrainBusy` while another run is queued or running."""
        with self._lock:
            with self.sessions() as s:
                active = s.scalar(select(RetrainRun.id).where(RetrainRun.state.in_(ACTIVE_STATES)).limit(1))
                if self.busy() or active is not None:
                    raise RetrainBusy("a retraining is already running")
                run = RetrainRun(state=RetrainState.QUEUED.value, params=params)
                s.add(run)
                s.commit()
                run_id = run.id
            self._thread = threading.Thread(target=self._run, args=(run_id, params), name="retrain", daemon=True)
            self._thread.start()
            return run_id

    def _update(self, run_id: int, **values) -> None:
        with self.sessions() as s:
            run = s.get(RetrainRun, run_id)
            for key, value in values.items():
                setattr(run, key, value)
            s.commit()

    def _run(self, run_id: int, params: dict) -> None:
        out = self.serving.parent / "candidates" / f"run{run_id}" / self.serving.name
        fields = {k: v for k, v in params.items() if k in TrainConfig.__dataclass_fields__ and k not in ("data_dir", "out")}
        info = ModelInfo.read_if_present(self.serving)
        serving = info.version if info is not None else None
        fields = same_kind(info) | fields
        self._update(run_id, state=RetrainState.RUNNING.value, candidate_path=str(out), serving_version=serving)
        try:
            cfg = TrainConfig(data_dir=self.data_dir, out=out, **fields)
            outcome = retrain(
                cfg, self.serving, on_promote=self.on_promote,
                progress=lambda p: self._update(run_id, progress={
                    "epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps,
                    "loss": round(p.loss, 5), "val_auc": p.val_auc, "eta_s": round(p.eta_s, 1),
                }),
            )
            self._update(
                run_id,
                state=(RetrainState.PROMOTED if outcome.promoted else RetrainState.REJECTED).value,
                candidate_version=outcome.candidate_info.version,
                candidate_val_auc=outcome.candidate_val_auc,
                serving_val_auc=outcome.serving_val_auc,
                promoted=outcome.promoted,
                finished_at=utcnow(),
            )
        except Exception as exc:
            log.warning("retraining %s failed: %s", run_id, exc)
            log.debug(traceback.format_exc())
            self._update(run_id, state=RetrainState.FAILED.value, error=f"{type(exc).__name__}: {exc}"[:2000],
                         finished_at=utcnow())

    def get(self, run_id: int) -> dict | None:
        with self.sessions() as s:
            run = s.get(RetrainRun, run_id)
            if run is None:
                return None
            return {c: getattr(run, c) for c in (
                "id", "state", "params", "progress", "candidate_version", "candidate_val_auc",
                "serving_version", "serving_val_auc", "promoted", "error", "created_at", "finished_at")}

    def recover(self) -> None:
        """Runs left queued/running by a stopped process are marked failed (a restart does not resume them)."""
        with self.sessions() as s:
            for run in s.scalars(select(RetrainRun).where(RetrainRun.state.in_(ACTIVE_STATES))):
                run.state = RetrainState.FAILED.value
                run.error = "interrupted: the service stopped during training"
                run.finished_at = utcnow()
            s.commit()
