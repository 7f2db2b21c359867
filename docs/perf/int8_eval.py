"""Measurement behind the int8 decision (issue 10): full-integer LiteRT vs the float32 form.

Run from the repository root after ``arcade-pacs engine --build`` and a SavedModel export of the
model (``keras_model.export(SAVED_MODEL, format="tf_saved_model")``)::

    python docs/perf/int8_eval.py --saved-model /tmp/wt10exp/sm --out /tmp/wt10exp

Result on 2026-11-26 (2-core AMD EPYC, AVX-512 VNNI): 313 vs 127 passes/s at batch 4, but val
window AUC 0.8200 vs 0.8250 (drop 0.0050 > 0.003) and 153/1800 decision flips (8.5 % > 1 %):
not allowed; float32 stays the only engine.

It stays here, beside the figures it produced, rather than in ``arcade_pacs.bench``: it measures
a form the product decided not to ship, and it needs TensorFlow's converter, which serving does
not load. ``ruff check .`` lints it with the rest of the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the log level is set)

from arcade_pacs.model import engine as engines  # noqa: E402
from arcade_pacs.model.build import measure_rates  # noqa: E402
from arcade_pacs.model.classifier import ModelInfo  # noqa: E402
from arcade_pacs.model.forms import form_path  # noqa: E402
from arcade_pacs.pipeline.tensors import frame_tensors  # noqa: E402
from arcade_pacs.training.data import load_split  # noqa: E402
from arcade_pacs.training.evaluate import score_split, window_auc  # noqa: E402

MODEL = Path("models/arcade_effb0.keras")
CALIBRATION_WINDOWS = 300


def calibration_windows(data: Path, rng: np.random.Generator) -> np.ndarray:
    """Windows of 60 train images, shuffled, as the converter's representative dataset."""
    train = load_split(data, "train", 60)
    windows = np.concatenate([frame_tensors(image.astype(np.float32) / 255.0) for image in train.images])
    return windows[rng.permutation(len(windows))[:CALIBRATION_WINDOWS]]


def convert_int8(saved_model: Path, windows: np.ndarray, out: Path) -> Path:
    """Full-integer LiteRT form of ``saved_model`` (float32 input and output), calibrated on ``windows``."""

    def representative():
        for window in windows:
            yield [window[None]]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    started = time.time()
    out.write_bytes(converter.convert())
    print("convert", time.time() - started, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", type=Path, default=Path("/tmp/wt10exp/sm"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/wt10exp"), help="where the int8 form is written")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/arcade"))
    args = parser.parse_args()

    threshold = ModelInfo.read(MODEL).threshold
    windows = calibration_windows(args.data, np.random.default_rng(0))
    int8_path = convert_int8(args.saved_model, windows, args.out / "int8_cal.tflite")
    fp32 = engines.LiteRTEngine(form_path(MODEL), 0, 4)
    int8 = engines.LiteRTEngine(int8_path, 0, 4)
    int8.name = "int8"

    val = load_split(args.data, "val")
    a, b = score_split(fp32.predict, val), score_split(int8.predict, val)
    flips = int(((a.window_scores >= threshold) != (b.window_scores >= threshold)).sum())
    result = {
        "auc_fp32": window_auc(a),
        "auc_int8": window_auc(b),
        "flips": flips,
        "windows": int(a.window_scores.size),
        "max_abs_diff_tta": float(np.abs(a.window_scores - b.window_scores).max()),
        "rates": measure_rates([fp32, int8], windows[:4], seconds=3),
    }
    result["auc_drop"] = result["auc_fp32"] - result["auc_int8"]
    result["flip_fraction"] = flips / result["windows"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
