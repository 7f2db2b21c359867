"""Building the shipped forms of a model, where the data are (training, ``calibrate``, a
promoted retrain, ``arcade-pacs engine --build``): convert, check on ``val``, write beside it.

Loads TensorFlow and Keras (the converter and the reference): never imported by serving code.

- **Convert**: the ``.keras`` file to a float32 LiteRT flatbuffer (SavedModel export, builtin
  ops only).
- **Check once, on the whole val grid**: every pass of the ``val`` split's grid windows, as
  given and mirrored (the serving protocol), is scored by Keras and by the form; the form
  passes when ``max |p_litert - p_keras| <= tolerance`` and no window's TTA decision at the
  stored threshold flips. Both engines' passes per second on the same inputs are recorded
  (for the record: serving does not decide by them).
- **Write** ``<stem>.tflite``, the golden pairs (refreshed for new weights) and the manifest
  ``<stem>_forms.json`` (:mod:`.forms`), each file replaced atomically. A form that failed its
  check is written with ``passed: false`` and never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from arcade_pacs.model.engine import Engine, EngineCheckError, LiteRTEngine, file_digest, versions
from arcade_pacs.model.forms import LITERT, Form, current, form_path, read_manifest, write_manifest
from arcade_pacs.model.golden import MAX_ABS_DIFF, Golden, compare, make_golden, passed, val_images
from arcade_pacs.model.keras_engine import KerasEngine, configure_tensorflow
from arcade_pacs.settings import ModelSettings

log = logging.getLogger(__name__)


class BuildBusy(RuntimeError):
    """Another process is building a form of this model right now."""


def convert_to_litert(keras_path: Path, out: Path, representative: np.ndarray | None = None) -> Path:
    """Derive a LiteRT flatbuffer from ``keras_path`` (SavedModel export, builtin ops only).

    float32 by default. With ``representative`` windows ``(N, 224, 224, 3)``: full-integer int8
    post-training quantisation calibrated on them (the converter's defaults), float32 input and
    output so that it takes the same tensors as the float form.
    """
    configure_tensorflow()
    import keras
    import tensorflow as tf

    model = keras.models.load_model(keras_path, compile=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        saved = Path(tmp) / "saved_model"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([np.asarray(w[None], np.float32)] for w in representative)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.float32
        flatbuffer = converter.convert()
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(flatbuffer)
    tmp_out.replace(out)
    return out


def verify_on_val(candidate: Engine, reference: Engine, images_dir: Path, threshold: float,
                  limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Score every val grid window (as given and mirrored) with both engines and compare."""
    from arcade_pacs.pipeline.tensors import frame_tensors

    ref_scores, cand_scores = [], []
    images = list(val_images(images_dir, limit))
    for i, frame in enumerate(images):
        t = frame_tensors(frame)
        both = np.concatenate([t, t[:, :, ::-1]], axis=0)
        ref_scores.append(reference.predict(both))
        cand_scores.append(candidate.predict(both))
        if progress:
            progress(i + 1, len(images))
    # Order passes as compare() expects: all windows as given, then all mirrored.
    ref, cand = np.stack(ref_scores), np.stack(cand_scores)  # (images, 18)
    half = ref.shape[1] // 2
    order = lambda a: np.concatenate([a[:, :half].ravel(), a[:, half:].ravel()])  # noqa: E731
    return compare(order(ref), order(cand), threshold) | {"images": len(images)}


def measure_rates(engines: list[Engine], tensors: np.ndarray, seconds: float = 3.0, rounds: int = 2) -> dict:
    """Passes per second of each engine on the same inputs: the best of ``rounds`` blocks each.

    Blocks, not alternation call by call: a runtime's worker threads keep spinning for a while
    after a call and would slow down whichever engine ran next. A pause separates the blocks.
    """
    best = {e.name: 0.0 for e in engines}
    for engine in engines:
        engine.predict(tensors)  # warm-up, excluded
    for _ in range(rounds):
        for engine in engines:
            time.sleep(0.5)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                engine.predict(tensors)
                n += len(tensors)
            best[engine.name] = max(best[engine.name], n / (time.perf_counter() - t0))
    return {name: round(rate, 2) for name, rate in best.items()}


@contextlib.contextmanager
def build_lock(model_path: Path, wait: bool = True):
    """One build of a model's forms at a time across processes (``flock`` on a hidden file beside it).

    Leftovers of builds that were killed (``.engine-build-*`` folders) are removed once the lock
    is held, since no other build can be using them then.
    """
    model_path = Path(model_path)
    with open(model_path.parent / f".{model_path.stem}.build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BuildBusy(f"a build of {model_path.name} is running in another process") from None
        for left in model_path.parent.glob(".engine-build-*"):
            shutil.rmtree(left, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(model_path: Path, threshold: float, images_dir: Path, settings: ModelSettings | None = None, *,
          force: bool = False, wait: bool = True, reference: KerasEngine | None = None) -> Form:
    """Convert, check on ``val`` and write the LiteRT form of ``model_path``; refresh its golden pairs.

    ``threshold`` is on the raw scale (the calibrated threshold mapped back). A form whose
    manifest already names the model as it is now is returned as it is, unless ``force``.
    Builds are serialised across processes; ``wait=False`` raises :class:`BuildBusy` instead of
    waiting for another process's build.
    """
    settings = settings or ModelSettings()
    model_path = Path(model_path)
    with build_lock(model_path, wait):
        digest = file_digest(model_path)
        done = None if force else current(model_path, digest)
        if done is not None:
            return done
        return _build(model_path, digest, threshold, images_dir, settings, reference)


def _build(model_path: Path, digest: str, threshold: float, images_dir: Path, settings: ModelSettings,
           reference: KerasEngine | None) -> Form:
    started = time.perf_counter()
    batch_size = settings.batch_size
    reference = reference or KerasEngine.load(model_path, batch_size)
    golden = Golden.read(model_path)
    if golden is None or golden.digest != digest:
        golden = make_golden(reference, images_dir, threshold, digest, None if golden is None else golden.windows)
        golden.write(model_path)
        log.info("golden pairs for %s written (%d windows)", model_path.name, len(golden.windows))
    target = form_path(model_path)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".engine-build-") as tmp:
        tflite = convert_to_litert(model_path, Path(tmp) / target.name)
        converted = time.perf_counter()
        candidate = LiteRTEngine(tflite, settings.threads, batch_size)
        comparison = verify_on_val(candidate, reference, images_dir, threshold, settings.check_images or None)
        golden_check = compare(golden.probabilities, candidate.predict(golden.tensors()), threshold)
        rates = measure_rates([reference, candidate], golden.tensors()[:batch_size])
        ok = passed(comparison) and passed(golden_check)
        del candidate
        entry = {"kind": LITERT, "file": target.name, "sha256": file_digest(tflite), "bytes": tflite.stat().st_size,
                 "precision": "float32", "tolerance": MAX_ABS_DIFF}
        # Other forms of these same weights (the int8 form and its gate) stay listed; those of
        # other weights go with the old manifest.
        previous = read_manifest(model_path) or {}
        others = [e for e in previous.get("forms", []) if e.get("kind") != LITERT] if previous.get("digest") == digest else []
        manifest = {
            "model": model_path.name,
            "digest": digest,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": versions(),
            "threshold": threshold,
            "forms": [entry, *others],
            "check": comparison | {"golden": golden_check, "max_abs_diff_allowed": MAX_ABS_DIFF, "passed": ok},
            "passes_per_s": rates,
            "build_s": {"convert": round(converted - started, 1), "total": round(time.perf_counter() - started, 1)},
        }
        # The form first, then the manifest that vouches for it: a reader between the two
        # replacements finds a manifest of the old digest and refuses (never a wrong pairing).
        tflite.replace(target)
        write_manifest(model_path, manifest, Path(tmp))
    log.info(
        "LiteRT form of %s built in %.0fs: max |dp| %.1e, %d flips on %d val windows: %s; passes/s %s",
        model_path.name, manifest["build_s"]["total"], comparison["max_abs_diff"], comparison["flips"],
        comparison["windows"], "passed" if ok else "FAILED", rates,
    )
    return Form(model_path, manifest, entry)


def build_forms(model_path: Path, settings: ModelSettings, images_dir: Path, *, force: bool = False,
                wait: bool = True) -> list[Form]:
    """Build and check the LiteRT form of every member of the model at ``model_path``.

    Forms are checked on raw outputs, so decisions are compared at the stored (calibrated)
    threshold mapped back through the calibration.
    """
    from arcade_pacs.model.classifier import ModelInfo

    info = ModelInfo.read(model_path)
    raw_threshold = info.platt.inverse(info.threshold)
    if not Path(images_dir).is_dir():
        raise EngineCheckError(f"no val images at {images_dir}: a form is built where the data are")
    return [build(member, raw_threshold, images_dir, settings, force=force, wait=wait)
            for member in info.member_paths(model_path)]
