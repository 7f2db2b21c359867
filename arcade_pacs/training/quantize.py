"""int8 where it holds: the full-integer LiteRT form of a model, and the gate it must pass.

EfficientNet-Lite0 was designed to survive full-integer quantisation, which runs about 2.4x as
many passes per second as the float form on this kind of CPU. Whether it holds for *this*
model is measured, never assumed, by a rule stated before measuring (issue 17):

- **the gate**: on the whole ``val`` grid, scored by the serving protocol (each window's TTA
  mean), the int8 form's window AUC is at most :data:`MAX_AUC_DROP` below the float form's, and
  at most :data:`MAX_FLIP_FRACTION` of the window decisions at the model's threshold flip;
- **calibration**: the converter's defaults, on :data:`CALIBRATION_IMAGES` ``train`` images'
  grid windows (never ``val``, which judges it).

The form is written beside the model (``<stem>_int8.tflite``) and listed in the forms manifest
as kind ``litert-int8`` with its gate's figures, passed or not, so that ``arcade-pacs engine``
and ``arcade-pacs bench`` report them. Serving loads only the float form (``litert``): a form
that failed its gate is kept as the measurement behind that decision, not served.
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
from arcade_pacs.model.forms import LITERT_INT8, current, form_path, write_manifest
from arcade_pacs.pipeline.tensors import frame_tensors, stack_tensors
from arcade_pacs.training.data import Split, load_split
from arcade_pacs.training.evaluate import score_split, window_auc

log = logging.getLogger(__name__)

MAX_AUC_DROP = 0.003
"""Largest drop in val window AUC from the float form that int8 may cost."""
MAX_FLIP_FRACTION = 0.01
"""Largest share of val window decisions (at the model's threshold) that may flip."""
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


def quantize(model_path: Path, arcade_dir: Path, *, threads: int = 0, batch_size: int = 4,
             limit_val: int | None = None, calibration_images: int = CALIBRATION_IMAGES) -> dict:
    """Build ``<stem>_int8.tflite`` of ``model_path``, run its gate, list it in the forms manifest.

    The float form must be current (``arcade-pacs engine --build`` first): the gate compares
    with what serves. Returns the manifest entry written (its ``gate`` says passed or not).
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
            result = gate(fp32, int8, load_split(arcade_dir, "val", limit_val), raw_threshold)
            result["passes_per_s"] = measure_rates([fp32, int8], np.ascontiguousarray(windows[:batch_size]))
            result["calibration_windows"] = len(windows)
            result["build_s"] = {"convert": round(converted - started, 1),
                                 "total": round(time.perf_counter() - started, 1)}
            entry = {"kind": LITERT_INT8, "file": target.name, "sha256": file_digest(tflite),
                     "bytes": tflite.stat().st_size, "precision": "int8", "served": False, "gate": result}
            manifest = dict(float_form.manifest)
            manifest["forms"] = [e for e in manifest.get("forms", []) if e.get("kind") != LITERT_INT8] + [entry]
            tflite.replace(target)
            write_manifest(model_path, manifest, Path(tmp))
    log.info("int8 form of %s: val AUC %.4f vs %.4f float, %d of %d decisions flipped: gate %s; passes/s %s",
             model_path.name, result["auc_int8"], result["auc_float"], result["flips"], result["windows"],
             "passed" if result["passed"] else "FAILED", result["passes_per_s"])
    return entry
