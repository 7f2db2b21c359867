"""Serving forms: the LiteRT form gives Keras' answers on real windows, ships beside the model
with a manifest, is verified at every load without data, and a form that is stale, changed,
of another model or failed its check is never served."""

import json
import shutil

import numpy as np
import pytest

from arcade_pacs.model import build, forms, golden, serving
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.model.engine import EngineCheckError, LiteRTEngine, file_digest
from arcade_pacs.model.keras_engine import KerasEngine
from arcade_pacs.pipeline.tensors import frame_tensors
from arcade_pacs.settings import ModelSettings
from tests.factory import real_frame
from tests.project import SHIPPED_MODEL

CHECK = ModelSettings(check_images=3)


@pytest.fixture(scope="session")
def val_images(arcade_dir):
    return arcade_dir / "stenosis" / "val" / "images"


@pytest.fixture
def tiny(tmp_path, tiny_model):
    """A private copy of the tiny model (each test owns its forms and golden pairs)."""
    path = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, path)
    shutil.copy(ModelInfo.sidecar(tiny_model), ModelInfo.sidecar(path))
    return path


def _select(path, engine):
    return serving.select(path, ModelSettings(path=path, engine=engine), 0.5)


def test_build_writes_a_checked_form_beside_the_model_with_manifest_and_golden_pairs(tiny, val_images):
    built = build.build(tiny, 0.5, val_images, CHECK)
    assert built.path == tiny.with_suffix(".tflite")
    assert built.path.is_file()
    manifest = json.loads(forms.manifest_path(tiny).read_text())
    assert manifest["digest"] == file_digest(tiny)
    (entry,) = manifest["forms"]
    assert entry["kind"] == "litert"
    assert entry["sha256"] == file_digest(built.path)
    assert entry["tolerance"] == golden.MAX_ABS_DIFF
    assert "ai-edge-litert" in manifest["versions"]
    check = manifest["check"]
    assert check["passed"]
    assert check["images"] == 3
    assert check["passes"] == 3 * 18
    assert check["max_abs_diff"] <= golden.MAX_ABS_DIFF
    assert check["flips"] == 0
    pairs = golden.Golden.read(tiny)
    assert pairs.digest == file_digest(tiny)
    assert pairs.windows.dtype == np.uint8
    assert pairs.windows.shape == (golden.GOLDEN_WINDOWS, 224, 224)
    assert len(np.unique(pairs.windows.reshape(len(pairs.windows), -1).mean(axis=1))) > 1  # real, varied windows
    assert set(manifest["passes_per_s"]) == {"keras", "litert"}
    chosen = _select(tiny, "litert")
    assert chosen.engine.name == "litert"
    assert chosen.check["max_abs_diff"] <= golden.MAX_ABS_DIFF
    assert "verified" in chosen.reason


def test_a_changed_model_is_stale_served_by_keras_under_auto_and_rebuilt(tiny, val_images):
    import keras

    build.build(tiny, 0.5, val_images, CHECK)
    model = keras.models.load_model(tiny, compile=False)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.save(tiny)  # what a retrain promotion does to the serving file
    assert forms.current(tiny) is None
    chosen = _select(tiny, "auto")
    assert chosen.engine.name == "keras"
    assert chosen.needs_build
    assert "another model" in chosen.reason
    with pytest.raises(EngineCheckError, match="made from another model"):
        _select(tiny, "litert")
    built = build.build(tiny, 0.5, val_images, CHECK)
    assert built.check_passed
    assert forms.current(tiny) is not None
    pairs = golden.Golden.read(tiny)
    assert pairs.digest == file_digest(tiny)
    np.testing.assert_allclose(pairs.probabilities, chosen.engine.predict(pairs.tensors()), atol=1e-6)


def test_a_tampered_form_is_refused_at_load(tiny, val_images):
    """One byte of the flatbuffer changed: refused by its digest before the runtime reads it."""
    built = build.build(tiny, 0.5, val_images, CHECK)
    data = bytearray(built.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    built.path.write_bytes(bytes(data))
    with pytest.raises(EngineCheckError, match="not the file its manifest checked"):
        _select(tiny, "litert")
    auto = _select(tiny, "auto")
    assert auto.engine.name == "keras"
    assert "changed or corrupt" in auto.reason


def test_the_form_of_another_model_is_refused_at_load(tiny, tmp_path, val_images):
    """Another model's form and manifest copied beside this model: its digest names other weights."""
    import keras

    other = tmp_path / "other" / "tiny.keras"
    other.parent.mkdir()
    model = keras.models.load_model(tiny, compile=False)
    model.set_weights([w * 2.0 for w in model.get_weights()])
    model.save(other)
    shutil.copy(ModelInfo.sidecar(tiny), ModelInfo.sidecar(other))
    build.build(other, 0.5, val_images, CHECK)
    for f in (forms.form_path(other), forms.manifest_path(other), golden.Golden.path_for(other)):
        shutil.copy(f, tiny.with_name(f.name))
    with pytest.raises(EngineCheckError, match="made from another model"):
        _select(tiny, "litert")
    assert _select(tiny, "auto").engine.name == "keras"
    with pytest.raises(EngineCheckError, match="no LiteRT form"):
        _select(_no_form(tmp_path, tiny), "litert")


def _no_form(tmp_path, tiny):
    bare = tmp_path / "bare" / "tiny.keras"
    bare.parent.mkdir()
    shutil.copy(tiny, bare)
    shutil.copy(ModelInfo.sidecar(tiny), ModelInfo.sidecar(bare))
    return bare


def test_a_form_failing_its_golden_check_falls_back_under_auto_and_refuses_when_explicit(tiny, val_images):
    build.build(tiny, 0.5, val_images, CHECK)
    pairs = golden.Golden.read(tiny)
    shifted = pairs.probabilities.copy()
    shifted[0] += 0.01  # as if the runtime computed a different answer for one window
    golden.Golden(pairs.windows, shifted, pairs.digest).write(tiny)
    auto = _select(tiny, "auto")
    assert auto.engine.name == "keras"
    assert "refused" in auto.reason
    with pytest.raises(EngineCheckError, match="golden"):
        _select(tiny, "litert")


def test_a_form_that_failed_its_val_check_is_never_served(tiny, val_images):
    built = build.build(tiny, 0.5, val_images, CHECK)
    manifest = built.manifest | {"check": built.manifest["check"] | {"passed": False, "max_abs_diff": 0.2}}
    forms.manifest_path(tiny).write_text(json.dumps(manifest))
    assert _select(tiny, "auto").engine.name == "keras"
    with pytest.raises(EngineCheckError, match="val check"):
        _select(tiny, "litert")


def test_the_classifier_serves_the_configured_engine_behind_its_batcher(tiny, val_images):
    build.build(tiny, 0.5, val_images, CHECK)
    litert, _ = serving.load(ModelSettings(path=tiny, engine="litert"))
    keras_clf, _ = serving.load(ModelSettings(path=tiny, engine="keras"))
    assert (litert.engine_name, keras_clf.engine_name) == ("litert", "keras")
    x = frame_tensors(np.linspace(0, 1, 512 * 512, dtype=np.float32).reshape(512, 512))
    np.testing.assert_allclose(litert.predict(x), keras_clf.predict(x), atol=golden.MAX_ABS_DIFF)
    assert litert.warm_up() >= 0
    assert litert.model is not None  # Keras loads on demand


def test_the_shipped_model_package_holds_its_checked_form():
    """models/ ships the form of models/arcade_stenosis.keras, checked on the whole val split."""
    form = forms.current(SHIPPED_MODEL)
    assert form is not None, "run `arcade-pacs engine --build` and commit models/arcade_stenosis.tflite + _forms.json"
    assert form.check_passed
    assert form.manifest["check"]["images"] == 200
    assert form.manifest["check"]["flips"] == 0
    info = ModelInfo.read(SHIPPED_MODEL)
    engine, check = forms.verify(SHIPPED_MODEL, info.platt.inverse(info.threshold))
    assert engine.name == "litert"
    assert check["flips"] == 0


@pytest.mark.slow
def test_the_shipped_model_in_litert_gives_keras_answers_on_real_cine_windows(shipped_litert, rubo):
    """The shipped model: both views of every grid window of real Rubo keyframes."""
    info = ModelInfo.read(SHIPPED_MODEL)
    keras_engine = KerasEngine.load(SHIPPED_MODEL)
    litert = LiteRTEngine(shipped_litert.path)
    for number in (30, 56, 81):
        t = frame_tensors(real_frame(rubo, number).astype(np.float32) / 255.0)
        both = np.concatenate([t, t[:, :, ::-1]])
        result = golden.compare(keras_engine.predict(both), litert.predict(both), info.threshold)
        assert result["max_abs_diff"] <= golden.MAX_ABS_DIFF, result
        assert result["flips"] == 0, result
    assert shipped_litert.check_passed
    assert shipped_litert.manifest["check"]["images"] == 200
