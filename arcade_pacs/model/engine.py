"""Inference engines for the serving model, chosen by measurement, checked against Keras.

The ``.keras`` file is the source of truth (training, retraining, promotion). Serving may run
a form derived from it by the LiteRT converter (``ai-edge-litert``'s interpreter with its
XNNPACK CPU kernels), which on a 2-core AVX-512 machine runs EfficientNetB0 about twice as fast
as Keras ``predict_on_batch`` with answers equal to ~1e-6. A derived form is only served after
it has given the same answers as Keras:

- **at build** (once per model digest): every pass of the ``val`` split's grid windows, as given
  and mirrored (the serving protocol), is scored by Keras and by the converted model; the build
  passes when ``max |p_litert - p_keras| <= 1e-4`` and no window's TTA decision at the stored
  threshold flips. Both engines' passes per second on those same inputs are recorded.
- **at every load**: the golden pairs stored beside the model (real ``val`` windows as uint8,
  ``<stem>_golden.npz``, with Keras' outputs and the digest of the weights that made them) are
  scored again; the same two conditions must hold.

The converted form is cached beside the model in ``.engines/<stem>-<digest>/`` (``model.tflite``
and ``manifest.json``), keyed by the SHA-256 of the ``.keras`` file: a retrained and promoted
model has another digest, so its form is rebuilt, and forms of older digests are removed.

``model.engine``: ``keras`` serves Keras; ``litert`` serves the checked LiteRT form or refuses
to start (:class:`EngineCheckError`); ``auto`` serves the fastest engine that passed (Keras
while a form is being built, or when the form fails its check).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

ENGINE_CHOICES = ("auto", "litert", "keras")
MAX_ABS_DIFF = 1e-4
"""Largest difference in probability allowed between a derived engine and Keras, any pass."""
CACHE_DIR = ".engines"
GOLDEN_WINDOWS = 36
"""Golden windows stored with a model (each also scored mirrored: 72 passes, ~0.5 s to check)."""
GOLDEN_SOURCE_IMAGES = 16
INPUT_SIDE = 224


class EngineCheckError(RuntimeError):
    """A derived engine did not give Keras' answers (or could not be built or checked)."""


class Engine(Protocol):
    """Scores ``(N, 224, 224, 3)`` float32 windows in [0, 1]: probabilities ``(N,)``."""

    name: str

    def predict(self, tensors: np.ndarray) -> np.ndarray: ...


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


def model_digest(path: Path) -> str:
    """SHA-256 of the ``.keras`` file: the cache key of every form derived from it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


class KerasEngine:
    """Keras ``predict_on_batch`` in chunks of ``batch_size`` (the reference engine)."""

    name = "keras"

    def __init__(self, model, batch_size: int = 16):
        self.model = model
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, batch_size: int = 16) -> KerasEngine:
        configure_tensorflow()
        import keras

        return cls(keras.models.load_model(path, compile=False), batch_size)

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        with self._lock:
            return in_batches(tensors, self.batch_size, lambda batch: self.model.predict_on_batch(batch))


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


# --- golden pairs -------------------------------------------------------------------------


def window_tensors(windows: np.ndarray) -> np.ndarray:
    """Golden uint8 windows ``(N, 224, 224)`` -> model input ``(2N, 224, 224, 3)``: as given, then mirrored."""
    x = np.asarray(windows, dtype=np.float32) / 255.0
    both = np.concatenate([x, x[:, :, ::-1]], axis=0)
    return np.repeat(both[..., np.newaxis], 3, axis=-1)


@dataclass(frozen=True)
class Golden:
    """Real ``val`` windows with the outputs Keras gave for them (as given, then mirrored)."""

    windows: np.ndarray  # (N, 224, 224) uint8
    probabilities: np.ndarray  # (2N,) float32
    digest: str  # of the .keras file whose outputs these are

    @staticmethod
    def path_for(model_path: Path) -> Path:
        model_path = Path(model_path)
        return model_path.with_name(model_path.stem + "_golden.npz")

    @classmethod
    def read(cls, model_path: Path) -> Golden | None:
        path = cls.path_for(model_path)
        if not path.is_file():
            return None
        with np.load(path) as data:
            return cls(data["windows"], data["probabilities"], str(data["digest"]))

    def write(self, model_path: Path) -> Path:
        path = self.path_for(model_path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, windows=self.windows, probabilities=self.probabilities, digest=np.array(self.digest))
        tmp.replace(path)
        return path

    def tensors(self) -> np.ndarray:
        return window_tensors(self.windows)


def val_images(images_dir: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """The ``val`` split's pictures as 512x512 float frames in [0, 1], in file-name order."""
    from PIL import Image

    paths = sorted(Path(images_dir).glob("*.png"), key=lambda p: (len(p.stem), p.stem))
    if not paths:
        raise EngineCheckError(f"no val images to check an engine with in {images_dir}")
    for path in paths[:limit] if limit else paths:
        with Image.open(path) as img:
            grey = img.convert("L")
            if grey.size != (512, 512):
                grey = grey.resize((512, 512), Image.Resampling.BOX)
            yield np.asarray(grey, dtype=np.float32) / 255.0


def make_golden(reference: Engine, images_dir: Path, threshold: float, digest: str,
                windows: np.ndarray | None = None) -> Golden:
    """Score golden windows with ``reference`` (Keras); choose them from ``val`` when not given.

    Chosen: of the grid windows of the first val images, half those scored nearest the
    threshold (where a flip would show) and half spread over the range of scores.
    """
    from arcade_pacs.pipeline.tensors import frame_tensors

    if windows is None:
        tensors = np.concatenate([frame_tensors(f) for f in val_images(images_dir, GOLDEN_SOURCE_IMAGES)])
        scores = reference.predict(tensors)
        near = np.argsort(np.abs(scores - threshold))[: GOLDEN_WINDOWS // 2]
        rest = np.setdiff1d(np.argsort(scores), near)
        spread = rest[np.linspace(0, len(rest) - 1, GOLDEN_WINDOWS - len(near)).round().astype(int)]
        chosen = np.sort(np.concatenate([near, spread]))
        windows = np.clip(np.rint(tensors[chosen, :, :, 0] * 255.0), 0, 255).astype(np.uint8)
    probabilities = reference.predict(window_tensors(windows)).astype(np.float32)
    return Golden(windows=windows, probabilities=probabilities, digest=digest)


def compare(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> dict:
    """Max |difference| over passes and TTA decision flips at ``threshold``.

    Both arrays hold ``2N`` passes: ``N`` windows as given, then the same ``N`` mirrored; a
    window's decision is its TTA mean at or above the threshold (as the pipeline decides).
    """
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(-1)
    n = len(reference) // 2
    mean_ref = (reference[:n] + reference[n:]) / 2
    mean_cand = (candidate[:n] + candidate[n:]) / 2
    flips = int(np.sum((mean_ref >= threshold) != (mean_cand >= threshold)))
    diff = float(np.max(np.abs(reference - candidate))) if len(reference) else 0.0
    return {"passes": int(len(reference)), "windows": n, "max_abs_diff": diff, "flips": flips}


def passed(comparison: dict) -> bool:
    return comparison["max_abs_diff"] <= MAX_ABS_DIFF and comparison["flips"] == 0


def check_golden(engine: Engine, golden: Golden, threshold: float) -> dict:
    """Score the golden windows with ``engine``; raise :class:`EngineCheckError` unless equal to Keras'."""
    result = compare(golden.probabilities, engine.predict(golden.tensors()), threshold)
    if not passed(result):
        raise EngineCheckError(
            f"{engine.name} differs from Keras on the golden windows: max |dp| {result['max_abs_diff']:.2e} "
            f"(allowed {MAX_ABS_DIFF:.0e}), {result['flips']} decision flips"
        )
    return result


# --- conversion and cache -----------------------------------------------------------------


def cache_root(model_path: Path) -> Path:
    return Path(model_path).parent / CACHE_DIR


def cache_dir(model_path: Path, digest: str) -> Path:
    return cache_root(model_path) / f"{Path(model_path).stem}-{digest[:16]}"


def convert_to_litert(keras_path: Path, out: Path) -> Path:
    """Derive a float32 LiteRT flatbuffer from ``keras_path`` (SavedModel export, builtin ops only)."""
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
        flatbuffer = converter.convert()
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(flatbuffer)
    tmp_out.replace(out)
    return out


@dataclass(frozen=True)
class Built:
    """A derived form on disk and what its build measured."""

    tflite: Path
    manifest: dict

    @property
    def check_passed(self) -> bool:
        return bool(self.manifest.get("check", {}).get("passed"))

    def faster_than_keras(self) -> bool:
        rates = self.manifest.get("passes_per_s", {})
        return rates.get("litert", 0.0) > rates.get("keras", float("inf"))


def cached(model_path: Path, digest: str | None = None) -> Built | None:
    """The derived form of the model as it is now, if one was built (checked or not)."""
    digest = digest or model_digest(model_path)
    folder = cache_dir(model_path, digest)
    manifest_path, tflite = folder / "manifest.json", folder / "model.tflite"
    if not (manifest_path.is_file() and tflite.is_file()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("digest") != digest:
        return None
    return Built(tflite, manifest)


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


class BuildBusy(RuntimeError):
    """Another process is building a form of this model right now."""


@contextlib.contextmanager
def build_lock(model_path: Path, wait: bool = True):
    """One build of a model's forms at a time across processes (``flock`` on a file in the cache).

    Leftovers of builds that were killed (``.engine-build-*`` folders) are removed once the lock
    is held, since no other build can be using them then.
    """
    root = cache_root(model_path)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{Path(model_path).stem}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BuildBusy(f"a build of {Path(model_path).name} is running in another process") from None
        for left in Path(model_path).parent.glob(".engine-build-*"):
            shutil.rmtree(left, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(model_path: Path, threshold: float, images_dir: Path, *, threads: int = 0, batch_size: int = 16,
          check_images: int | None = None, reference: KerasEngine | None = None, wait: bool = True) -> Built:
    """Convert, check on ``val`` and cache the LiteRT form of ``model_path``; refresh its golden pairs.

    The manifest records the check whether it passed or not (a failed form is never served,
    and is not rebuilt until the model or the runtime changes). Forms of other digests of the
    same model file are removed. Builds are serialised across processes; a form another
    process built meanwhile is returned as it is. ``wait=False`` raises :class:`BuildBusy`
    instead of waiting for another process's build.
    """
    model_path = Path(model_path)
    with build_lock(model_path, wait):
        digest = model_digest(model_path)
        done = cached(model_path, digest)
        if done is not None:
            return done
        return _build(model_path, digest, threshold, images_dir, threads=threads, batch_size=batch_size,
                      check_images=check_images, reference=reference)


def _build(model_path: Path, digest: str, threshold: float, images_dir: Path, *, threads: int, batch_size: int,
           check_images: int | None, reference: KerasEngine | None) -> Built:
    started = time.perf_counter()
    reference = reference or KerasEngine.load(model_path, batch_size)
    golden = Golden.read(model_path)
    if golden is None or golden.digest != digest:
        golden = make_golden(reference, images_dir, threshold, digest, None if golden is None else golden.windows)
        golden.write(model_path)
        log.info("golden pairs for %s written (%d windows)", model_path.name, len(golden.windows))
    folder = cache_dir(model_path, digest)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".engine-build-") as tmp:
        tflite = convert_to_litert(model_path, Path(tmp) / "model.tflite")
        converted = time.perf_counter()
        candidate = LiteRTEngine(tflite, threads, batch_size)
        comparison = verify_on_val(candidate, reference, images_dir, threshold, check_images or None)
        golden_check = compare(golden.probabilities, candidate.predict(golden.tensors()), threshold)
        rates = measure_rates([reference, candidate], golden.tensors()[:batch_size])
        ok = passed(comparison) and passed(golden_check)
        manifest = {
            "digest": digest,
            "model": model_path.name,
            "engine": "litert",
            "precision": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": versions(),
            "threshold": threshold,
            "check": comparison | {"golden": golden_check, "max_abs_diff_allowed": MAX_ABS_DIFF, "passed": ok},
            "passes_per_s": rates,
            "build_s": {"convert": round(converted - started, 1), "total": round(time.perf_counter() - started, 1)},
        }
        del candidate
        root = cache_root(model_path)
        for old in root.glob(f"{model_path.stem}-*"):
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        staging = Path(tmp) / "out"
        staging.mkdir()
        shutil.move(str(tflite), staging / "model.tflite")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        root.mkdir(exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
    log.info(
        "LiteRT form of %s built in %.0fs: max |dp| %.1e, %d flips on %d val windows: %s; passes/s %s",
        model_path.name, manifest["build_s"]["total"], comparison["max_abs_diff"], comparison["flips"],
        comparison["windows"], "passed" if ok else "FAILED", rates,
    )
    return Built(folder / "model.tflite", manifest)


@dataclass
class Selection:
    """The engine chosen to serve and why (logged, shown by the bench)."""

    engine: Engine
    reason: str
    needs_build: bool = False  # ``auto`` served Keras because no form of this digest exists yet
    check: dict | None = None


def select(model_path: Path, choice: str, threshold: float, images_dir: Path, *, threads: int = 0,
           batch_size: int = 16, check_images: int | None = None, litert_batch: int | None = None) -> Selection:
    """Load the engine ``choice`` asks for (see the module docstring for the rules).

    ``batch_size`` is Keras' windows per call; ``litert_batch`` LiteRT's (default: the same).
    """
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"unknown engine {choice!r}: one of {', '.join(ENGINE_CHOICES)}")
    model_path = Path(model_path)
    if choice == "keras":
        return Selection(KerasEngine.load(model_path, batch_size), "configured")
    digest = model_digest(model_path)
    built = cached(model_path, digest)
    if built is None and choice == "auto":
        return Selection(KerasEngine.load(model_path, batch_size), "no checked LiteRT form yet", needs_build=True)
    if built is None:
        try:
            built = build(model_path, threshold, images_dir, threads=threads, batch_size=batch_size,
                          check_images=check_images)
        except EngineCheckError:
            raise
        except Exception as exc:  # a converter or runtime failure: say it as a check failure
            raise EngineCheckError(f"could not build the LiteRT form of {model_path}: {exc}") from exc
    try:
        if not built.check_passed:
            c = built.manifest.get("check", {})
            raise EngineCheckError(
                f"the LiteRT form of {model_path.name} failed its val check: max |dp| "
                f"{c.get('max_abs_diff', float('nan')):.2e}, {c.get('flips')} flips"
            )
        if choice == "auto" and not built.faster_than_keras():
            return Selection(KerasEngine.load(model_path, batch_size),
                             f"Keras measured faster ({built.manifest.get('passes_per_s')})")
        golden = Golden.read(model_path)
        if golden is None or golden.digest != digest:
            raise EngineCheckError(f"golden pairs of {model_path.name} are missing or of another model")
        engine = LiteRTEngine(built.tflite, threads, litert_batch or batch_size)
        check = check_golden(engine, golden, threshold)
    except EngineCheckError as exc:
        if choice == "litert":
            raise
        log.warning("serving Keras: %s", exc)
        return Selection(KerasEngine.load(model_path, batch_size), f"LiteRT refused: {exc}")
    return Selection(engine, f"checked (golden max |dp| {check['max_abs_diff']:.1e}); "
                     f"passes/s at build {built.manifest.get('passes_per_s')}", check=check)
