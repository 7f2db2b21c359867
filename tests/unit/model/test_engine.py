"""Inference engines: the LiteRT form gives Keras' answers on real windows, is cached by the
model's digest and rebuilt when stale, and a form that fails its check is never served."""

import json
import shutil

import numpy as np
import pytest

from arcade_pacs.model import engine as engines
from arcade_pacs.model.classifier import Classifier, ModelInfo
from arcade_pacs.pipeline.tensors import frame_tensors
from arcade_pacs.settings import ModelSettings
from tests.factory import real_frame
from tests.project import SHIPPED_MODEL

CHECK_IMAGES = 3


@pytest.fixture(scope="session")
def val_images(arcade_dir):
    return arcade_dir / "stenosis" / "val" / "images"


@pytest.fixture
def tiny(tmp_path, tiny_model):
    """A private copy of the tiny model (each test owns its cache and golden pairs)."""
    path = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, path)
    shutil.copy(ModelInfo.sidecar(tiny_model), ModelInfo.sidecar(path))
    return path


def test_build_caches_a_checked_form_keyed_by_the_digest_with_golden_pairs(tiny, val_images):
    built = engines.build(tiny, 0.5, val_images, check_images=CHECK_IMAGES)
    digest = engines.model_digest(tiny)
    assert built.tflite.parent == engines.cache_dir(tiny, digest) and built.tflite.is_file()
    check = built.manifest["check"]
    assert check["passed"] and check["images"] == CHECK_IMAGES and check["passes"] == CHECK_IMAGES * 18
    assert check["max_abs_diff"] <= engines.MAX_ABS_DIFF and check["flips"] == 0
    golden = engines.Golden.read(tiny)
    assert golden.digest == digest and golden.windows.dtype == np.uint8
    assert golden.windows.shape == (engines.GOLDEN_WINDOWS, 224, 224)
    assert len(np.unique(golden.windows.reshape(len(golden.windows), -1).mean(axis=1))) > 1  # real, varied windows
    assert set(built.manifest["passes_per_s"]) == {"keras", "litert"}
    chosen = engines.select(tiny, "litert", 0.5, val_images)
    assert chosen.engine.name == "litert" and chosen.check["max_abs_diff"] <= engines.MAX_ABS_DIFF


def test_a_changed_model_is_stale_served_by_keras_under_auto_and_rebuilt(tiny, val_images):
    import keras

    engines.build(tiny, 0.5, val_images, check_images=CHECK_IMAGES)
    old = engines.cache_dir(tiny, engines.model_digest(tiny))
    model = keras.models.load_model(tiny, compile=False)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.save(tiny)  # what a retrain promotion does to the serving file
    assert engines.cached(tiny) is None
    chosen = engines.select(tiny, "auto", 0.5, val_images)
    assert chosen.engine.name == "keras" and chosen.needs_build
    built = engines.build(tiny, 0.5, val_images, check_images=CHECK_IMAGES)
    assert built.check_passed and not old.exists(), "the stale form is removed"
    golden = engines.Golden.read(tiny)
    assert golden.digest == engines.model_digest(tiny)
    np.testing.assert_allclose(golden.probabilities, chosen.engine.predict(golden.tensors()), atol=1e-6)


def test_a_form_failing_its_golden_check_falls_back_under_auto_and_refuses_when_explicit(tiny, val_images):
    engines.build(tiny, 0.5, val_images, check_images=CHECK_IMAGES)
    golden = engines.Golden.read(tiny)
    shifted = golden.probabilities.copy()
    shifted[0] += 0.01  # as if the runtime computed a different answer for one window
    engines.Golden(golden.windows, shifted, golden.digest).write(tiny)
    auto = engines.select(tiny, "auto", 0.5, val_images)
    assert auto.engine.name == "keras" and "refused" in auto.reason
    with pytest.raises(engines.EngineCheckError, match="golden"):
        engines.select(tiny, "litert", 0.5, val_images)


def test_a_form_that_failed_its_val_check_is_never_served(tiny, val_images):
    built = engines.build(tiny, 0.5, val_images, check_images=CHECK_IMAGES)
    manifest = built.manifest | {"check": built.manifest["check"] | {"passed": False, "max_abs_diff": 0.2}}
    (built.tflite.parent / "manifest.json").write_text(json.dumps(manifest))
    assert engines.select(tiny, "auto", 0.5, val_images).engine.name == "keras"
    with pytest.raises(engines.EngineCheckError, match="val check"):
        engines.select(tiny, "litert", 0.5, val_images)


def test_the_classifier_serves_the_configured_engine_behind_its_batcher(tiny, val_images):
    engines.build(tiny, 0.5, val_images, check_images=CHECK_IMAGES)
    litert, _ = Classifier.serving(ModelSettings(path=tiny, engine="litert"), val_images)
    keras_clf, _ = Classifier.serving(ModelSettings(path=tiny, engine="keras"), val_images)
    assert (litert.engine_name, keras_clf.engine_name) == ("litert", "keras")
    x = frame_tensors(np.linspace(0, 1, 512 * 512, dtype=np.float32).reshape(512, 512))
    np.testing.assert_allclose(litert.predict(x), keras_clf.predict(x), atol=engines.MAX_ABS_DIFF)
    assert litert.warm_up() >= 0 and litert.model is not None  # Keras loads on demand


@pytest.mark.slow
def test_the_shipped_model_in_litert_gives_keras_answers_on_real_cine_windows(shipped_litert, rubo):
    """The shipped EfficientNetB0: both views of every grid window of real Rubo keyframes."""
    info = ModelInfo.read(SHIPPED_MODEL)
    keras_engine = engines.KerasEngine.load(SHIPPED_MODEL)
    litert = engines.LiteRTEngine(shipped_litert.tflite)
    for number in (30, 56, 81):
        t = frame_tensors(real_frame(rubo, number).astype(np.float32) / 255.0)
        both = np.concatenate([t, t[:, :, ::-1]])
        result = engines.compare(keras_engine.predict(both), litert.predict(both), info.threshold)
        assert result["max_abs_diff"] <= engines.MAX_ABS_DIFF and result["flips"] == 0, result
    assert shipped_litert.check_passed and shipped_litert.manifest["check"]["images"] == 200
