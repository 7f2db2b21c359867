"""int8 where it holds: the full-integer LiteRT form of a model, and the gate it must pass.

EfficientNet-Lite0 was designed to survive full-integer quantisation, which runs about 2.4x as
many passes per second as the float form on this kind of CPU. Whether it holds for *this*
model is measured, never assumed, by a rule stated before measuring (issue 17):

- **the gate**: on the whole ``val`` grid, scored by the serving protocol (each window's TTA
  mean), the int8 form's window AUC is at most :data:`MAX_AUC_DROP` below the float form's, and
  at most :data:`MAX_FLIP_FRACTION` of the window decisions at the model's threshold flip;
- **calibration**: the converter's defaults, on :data:`CALIBRATION_IMAGES` ``train`` images'
  grid windows (never ``val``, which judges it).

The gate asks int8 to *be* the float model. On the shipped Lite0 it does not: the AUC holds
(it rises), but about 2 % of the window decisions at the float threshold flip, because int8
moves scores near the threshold by up to 0.2. So the int8 form is also judged **as a model in
its own right**, by the same accuracy rule as any candidate (issue 17, item 4):

- **its own operating point**: a Platt map and a threshold fitted on its own ``val`` views, at
  the target FPR the float model was trained for (:func:`~arcade_pacs.training.calibrate.fit_on_views`);
- **the rule** (:func:`own_validation`): val window AUC at most :data:`MAX_AUC_DROP` below the
  float form's (the gate's two figures, same windows, same TTA), and at its own threshold an
  image sensitivity of at least :data:`MIN_SENSITIVITY` with a negative-window FPR of at most
  :data:`MAX_FPR` (the targets every candidate is held to);
- **its own identity**: version ``<float version>-int8`` and a Device UID derived from the int8
  file's digest (an SR names the form that computed it), and its own golden outputs (the
  model's golden windows scored by the int8 form) that every load must reproduce.

The form is written beside the model (``<stem>_int8.tflite``) and listed in the forms manifest
as kind ``litert-int8`` with the gate's figures and its own validation (``own``), passed or
not. Serving (:mod:`arcade_pacs.model.serving`) serves it under ``model.engine = "auto"`` or
``"litert-int8"`` only when its own validation passed and its golden outputs are reproduced at
load; a form that failed is kept as the measurement behind that decision, never served.
``test`` is not read here: the served form's test figures are measured once, by
``arcade-pacs evaluate --engine litert-int8 --split test``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from arcade_pacs.model.build import build_lock, convert_to_litert, measure_rates
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.model.engine import EngineCheckError, LiteRTEngine, file_digest
from arcade_pacs.model.forms import INT8_TOLERANCE, LITERT_INT8, current, form_path, write_manifest
from arcade_pacs.model.golden import Golden
from arcade_pacs.pipeline.tensors import frame_tensors, stack_tensors
from arcade_pacs.training.calibrate import fit_on_views, tta_views
from arcade_pacs.training.data import Split, load_split
from arcade_pacs.training.evaluate import score_split, window_auc
from arcade_pacs.training.train import device_uid_for

log = logging.getLogger(__name__)

MAX_AUC_DROP = 0.003
"""Largest drop in val window AUC from the float form that int8 may cost."""
MAX_FLIP_FRACTION = 0.01
"""Largest share of val window decisions (at the model's threshold) that may flip."""
MIN_SENSITIVITY = 0.90
"""Own validation: the least image sensitivity on ``val`` at the form's own threshold."""
MAX_FPR = 0.15
"""Own validation: the largest negative-window FPR on ``val`` at the form's own threshold."""
DEFAULT_TARGET_FPR = 0.10
"""The FPR its threshold is chosen for when the model's training configuration names none."""
CALIBRATION_IMAGES = 112
"""``train`` images whose 9 grid windows each (1,008) calibrate the quantisation ranges."""


def calibration_windows(train: Split) -> np.ndarray:
    """Every grid window of the ``train`` images, as the model's input (a view: grey held once)."""
    return stack_tensors([frame_tensors(image.astype(np.float32) / 255.0) for image in train.images])


def gate(float_engine, int8_engine, val: Split, raw_threshold: float) -> dict:
    """The int8 form against the float form on every ``val`` grid window (TTA mean): the rule above."""
    a = score_split(float_engine.predict, val)
    b = score_split(int8_engine.predict, val)
    flips = int(((a.window_scores >= raw_threshold) != (b.window_scores >= raw_threshold)).sum())
    windows = int(a.window_scores.size)
    auc_float, auc_int8 = window_auc(a), window_auc(b)
    result = {
        "images": len(val), "windows": windows,
        "auc_float": round(auc_float, 5), "auc_int8": round(auc_int8, 5),
        "auc_drop": round(auc_float - auc_int8, 5),
        "flips": flips, "flip_fraction": round(flips / windows, 5),
        "max_abs_diff": round(float(np.abs(a.window_scores - b.window_scores).max()), 5),
        "max_auc_drop_allowed": MAX_AUC_DROP, "max_flip_fraction_allowed": MAX_FLIP_FRACTION,
    }
    result["passed"] = result["auc_drop"] <= MAX_AUC_DROP and result["flip_fraction"] <= MAX_FLIP_FRACTION
    return result


def own_validation(int8_engine, val: Split, gate_result: dict, target_fpr: float) -> dict:
    """The int8 form as a model in its own right on ``val``: its Platt map, threshold and figures.

    ``gate_result`` gives the AUC comparison (:func:`gate`: both forms' raw TTA means on the same
    windows); the operating figures are the form's own, at the threshold chosen for
    ``target_fpr`` on its calibrated scores. Returns the ``own`` entry of the manifest.
    """
    fitted = fit_on_views(tta_views(int8_engine.predict, val), target_fpr)
    figures = fitted.metrics | {"ece_raw": fitted.ece_raw, "ece_calibrated": fitted.ece_calibrated}
    checks = {
        "auc": gate_result["auc_drop"] <= MAX_AUC_DROP,
        "sensitivity": figures["image_sensitivity"] >= MIN_SENSITIVITY,
        "fpr": figures["negative_window_fpr"] <= MAX_FPR,
    }
    return {
        "rule": (f"val window AUC >= float - {MAX_AUC_DROP}; at its own threshold (target FPR {target_fpr}) "
                 f"image sensitivity >= {MIN_SENSITIVITY} and negative-window FPR <= {MAX_FPR}"),
        "checks": checks, "passed": all(checks.values()),
        "target_fpr": target_fpr, "threshold": float(fitted.threshold),
        "calibration": fitted.platt.to_json(), "val": figures,
    }


def quantize(model_path: Path, arcade_dir: Path, *, threads: int = 0, batch_size: int = 4,
             limit_val: int | None = None, calibration_images: int = CALIBRATION_IMAGES) -> dict:
    """Build ``<stem>_int8.tflite`` of ``model_path``, run its gate and its own validation, list it
    in the forms manifest.

    The float form and the golden pairs must be current (``arcade-pacs engine --build`` first):
    the gate compares with the float form, and the int8 form's golden outputs are taken on the
    model's golden windows. Returns the manifest entry written (``gate`` and ``own`` say passed
    or not; ``served`` is ``own``'s verdict).
    """
    model_path = Path(model_path)
    info = ModelInfo.read(model_path)
    if len(info.member_paths(model_path)) > 1:
        raise EngineCheckError("an int8 form is built for a single network, not an ensemble")
    raw_threshold = info.platt.inverse(info.threshold)
    with build_lock(model_path):
        digest = file_digest(model_path)
        float_form = current(model_path, digest)
        if float_form is None or not float_form.check_passed:
            raise EngineCheckError(f"no checked float LiteRT form of {model_path.name}: arcade-pacs engine --build first")
        golden = Golden.read(model_path)
        if golden is None or golden.digest != digest:
            raise EngineCheckError(f"no golden pairs of {model_path.name}'s weights: arcade-pacs engine --build first")
        started = time.perf_counter()
        train = load_split(arcade_dir, "train", calibration_images)
        windows = calibration_windows(train)
        target = form_path(model_path, LITERT_INT8)
        with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".engine-build-") as tmp:
            tflite = convert_to_litert(model_path, Path(tmp) / target.name, representative=windows)
            converted = time.perf_counter()
            fp32 = LiteRTEngine(float_form.path, threads, batch_size)
            int8 = LiteRTEngine(tflite, threads, batch_size)
            int8.name = LITERT_INT8
            val = load_split(arcade_dir, "val", limit_val)
            result = gate(fp32, int8, val, raw_threshold)
            target_fpr = float(info.training.get("config", {}).get("target_fpr") or DEFAULT_TARGET_FPR)
            own = own_validation(int8, val, result, target_fpr)
            sha = file_digest(tflite)
            own |= {"version": f"{info.version}-int8", "device_uid": device_uid_for(sha),
                    "golden": [float(p) for p in int8.predict(golden.tensors())]}
            result["passes_per_s"] = measure_rates([fp32, int8], np.ascontiguousarray(windows[:batch_size]))
            result["calibration_windows"] = len(windows)
            result["build_s"] = {"convert": round(converted - started, 1),
                                 "total": round(time.perf_counter() - started, 1)}
            entry = {"kind": LITERT_INT8, "file": target.name, "sha256": sha, "bytes": tflite.stat().st_size,
                     "precision": "int8", "tolerance": INT8_TOLERANCE, "served": own["passed"],
                     "gate": result, "own": own}
            manifest = dict(float_form.manifest)
            manifest["forms"] = [e for e in manifest.get("forms", []) if e.get("kind") != LITERT_INT8] + [entry]
            tflite.replace(target)
            write_manifest(model_path, manifest, Path(tmp))
    log.info("int8 form of %s: val AUC %.4f vs %.4f float, %d of %d decisions flipped: gate %s; as its own "
             "model (threshold %.4f: sensitivity %.3f, FPR %.3f): %s; passes/s %s",
             model_path.name, result["auc_int8"], result["auc_float"], result["flips"], result["windows"],
             "passed" if result["passed"] else "FAILED", own["threshold"], own["val"]["image_sensitivity"],
             own["val"]["negative_window_fpr"], "passed" if own["passed"] else "FAILED", result["passes_per_s"])
    return entry
